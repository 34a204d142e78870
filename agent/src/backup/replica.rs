//! `--slave-info`: how to make a restore of this replica a replica of the
//! same source, for every channel, read inside the consistent point (right
//! after `log_status`, while the non-InnoDB tables are locked).
//!
//! With GTIDs the point's `gtid_executed` says it all and is exact. A
//! channel that replicates by file and position is read from `SHOW REPLICA
//! STATUS` at the point, but its applier keeps running (MySQL refuses
//! `STOP REPLICA SQL_THREAD` under `LOCK INSTANCE FOR BACKUP`, error 3857),
//! so under load its coordinates can be a few transactions off the InnoDB
//! state. The backup's file says so; apply-log reads the exact ones from
//! the recovered applier tables (`mysql.slave_relay_log_info` and
//! `mysql.slave_worker_info`, which InnoDB commits with every applied
//! transaction) and writes them to the prepared datadir.

use crate::mysql::{ReplicaChannel, quote_string};

/// Heads the backup's file when a channel replicates by position.
pub const APPROXIMATE_NOTE: &str = "-- SOURCE_LOG_FILE/SOURCE_LOG_POS were read while the applier ran and can be a few\n\
     -- transactions off the backed-up data; apply-log writes the exact ones to\n\
     -- prepared/xtrabackup_slave_info.\n";

/// Whether `channel` is restored by file and position (not by GTIDs).
pub fn is_positional(channel: &ReplicaChannel, gtid_mode: &str) -> bool {
    !(gtid_mode == "ON" && channel.auto_position)
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
        let how = if !is_positional(channel, gtid_mode) {
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
