//! `--slave-info`: how to make a restore of this replica a replica of the
//! same source, taken inside the consistent point for every channel.
//!
//! With GTIDs the point's `gtid_executed` says it all. A channel that
//! replicates by file and position needs the source coordinates its applier
//! had executed at exactly the point's InnoDB LSN; the applier moves on
//! while we look, so the appliers of such channels are stopped (each
//! finishes its transaction first) just around the point and started again
//! right after: a pause of the applier, not of the server or its receiver.

use mysql_async::Conn;

use crate::mysql::{self, ReplicaChannel, quote_string};

/// The appliers this backup stopped, to start again after the point.
#[derive(Debug, Default)]
pub struct Paused {
    channels: Vec<String>,
}

/// Stops the appliers of running channels that replicate by position (all
/// channels when the server has no GTIDs).
pub async fn pause_positional_appliers(
    conn: &mut Conn,
    gtid_mode: &str,
) -> Result<Paused, mysql::Error> {
    let mut paused = Paused::default();
    for channel in mysql::replica_channels(conn).await? {
        if channel.applier_running && !(gtid_mode == "ON" && channel.auto_position) {
            tracing::info!(channel = %channel.name, "pausing the replica applier for the consistent point");
            if let Err(e) = mysql::stop_replica_applier(conn, &channel.name).await {
                resume(conn, &paused).await;
                return Err(e);
            }
            paused.channels.push(channel.name);
        }
    }
    Ok(paused)
}

/// Starts the appliers [`pause_positional_appliers`] stopped. Failures are
/// logged, not returned: the backup's outcome does not depend on them, and
/// the operator must see a replica left stopped.
pub async fn resume(conn: &mut Conn, paused: &Paused) {
    for channel in &paused.channels {
        if let Err(e) = mysql::start_replica_applier(conn, channel).await {
            tracing::error!(%channel, error = %e, "could not restart the replica applier the backup paused: START REPLICA SQL_THREAD by hand");
        }
    }
}

/// The `xtrabackup_slave_info` text for `channels` read at the point whose
/// `gtid_executed` is given.
pub fn slave_info(channels: &[ReplicaChannel], gtid_mode: &str, gtid_executed: &str) -> String {
    if channels.is_empty() {
        return "-- this server was not a replica when the backup was taken\n".into();
    }
    let mut text = String::new();
    if gtid_mode == "ON" {
        text.push_str(&format!(
            "SET GLOBAL gtid_purged={};\n",
            quote_string(gtid_executed)
        ));
    }
    for channel in channels {
        let how = if gtid_mode == "ON" && channel.auto_position {
            "SOURCE_AUTO_POSITION=1".to_owned()
        } else {
            format!(
                "SOURCE_LOG_FILE={}, SOURCE_LOG_POS={}",
                quote_string(&channel.source_log_file),
                channel.source_log_position
            )
        };
        text.push_str(&format!(
            "CHANGE REPLICATION SOURCE TO {how} FOR CHANNEL {};\n",
            quote_string(&channel.name)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str, auto_position: bool) -> ReplicaChannel {
        ReplicaChannel {
            name: name.into(),
            source_log_file: "binlog.000007".into(),
            source_log_position: 4242,
            auto_position,
            applier_running: true,
        }
    }

    #[test]
    fn every_channel_gets_its_own_line() {
        let text = slave_info(&[channel("", false), channel("east", true)], "ON", "u:1-5");
        assert_eq!(
            text,
            "SET GLOBAL gtid_purged='u:1-5';\n\
             CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000007', SOURCE_LOG_POS=4242 FOR CHANNEL '';\n\
             CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=1 FOR CHANNEL 'east';\n"
        );
        let positional = slave_info(&[channel("it's", true)], "OFF", "");
        assert_eq!(
            positional,
            "CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000007', SOURCE_LOG_POS=4242 FOR CHANNEL 'it''s';\n"
        );
        assert!(slave_info(&[], "ON", "u:1").starts_with("--"));
    }
}
