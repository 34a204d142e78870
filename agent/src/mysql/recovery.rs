//! Statements apply-log sends to its mini instance: the private mysqld that
//! has just run crash recovery over a backup's working copy.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::{Result, stmt};

/// Transactions crash recovery found active (not prepared) and is still
/// rolling back in the background.
pub async fn transactions_rolling_back(conn: &mut Conn) -> Result<u64> {
    let count: Option<u64> = conn
        .query_first(
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX \
             WHERE trx_state = 'ROLLING BACK'",
        )
        .await
        .map_err(stmt("count recovered transactions"))?;
    Ok(count.unwrap_or(0))
}

/// The xids of XA transactions in the PREPARED state (`XA RECOVER`), as
/// `gtrid` + `bqual` text.
pub async fn prepared_xa(conn: &mut Conn) -> Result<Vec<String>> {
    let rows: Vec<mysql_async::Row> = conn.query("XA RECOVER").await.map_err(stmt("XA RECOVER"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let data: Option<Vec<u8>> = row.get("data");
            String::from_utf8_lossy(&data.unwrap_or_default()).into_owned()
        })
        .collect())
}

/// Asks the server to shut down; it answers before it is gone.
pub async fn shutdown(conn: &mut Conn) -> Result<()> {
    conn.query_drop("SHUTDOWN").await.map_err(stmt("SHUTDOWN"))
}

/// Where each replication channel's applier stood in the recovered data:
/// the source's binary log file and the position after the last
/// transaction applied. Read from the applier's crash-safe InnoDB tables,
/// which every applied transaction updates in its own commit, so they
/// match the recovered data exactly (the replica's `SHOW REPLICA STATUS`
/// at the backup only approximates them while its applier runs).
pub async fn applied_replica_positions(conn: &mut Conn) -> Result<Vec<super::ReplicaChannel>> {
    /// Channel, source log file and position, auto-position.
    type Coordinator = (String, Option<String>, Option<u64>, Option<u64>);
    let coordinators: Vec<Coordinator> = conn
        .query(
            "SELECT r.Channel_name, r.Master_log_name, r.Master_log_pos, m.Enabled_auto_position \
             FROM mysql.slave_relay_log_info r \
             LEFT JOIN mysql.slave_master_info m ON m.Channel_name = r.Channel_name",
        )
        .await
        .map_err(stmt("read mysql.slave_relay_log_info"))?;
    let workers: Vec<(String, String, u64)> = conn
        .query("SELECT Channel_name, Master_log_name, Master_log_pos FROM mysql.slave_worker_info")
        .await
        .map_err(stmt("read mysql.slave_worker_info"))?;
    let channels = coordinators
        .into_iter()
        .map(
            |(name, file, position, auto_position)| super::ReplicaChannel {
                name,
                source_log_file: file.unwrap_or_default(),
                source_log_position: position.unwrap_or(0),
                auto_position: auto_position == Some(1),
            },
        )
        .collect();
    Ok(newest_applied(channels, &workers))
}

/// With a multi-threaded applier the channel's own row is only a periodic
/// checkpoint; each worker's row holds the end of the last transaction it
/// committed. With commit order preserved (the backup refuses otherwise)
/// the newest of them all is where the applier stood, with nothing applied
/// past it and nothing missing before it. Pure.
pub fn newest_applied(
    mut channels: Vec<super::ReplicaChannel>,
    workers: &[(String, String, u64)],
) -> Vec<super::ReplicaChannel> {
    for channel in &mut channels {
        for (_, file, position) in workers.iter().filter(|w| w.0 == channel.name) {
            let worker = (binlog_order(file), *position);
            let current = (
                binlog_order(&channel.source_log_file),
                channel.source_log_position,
            );
            if !file.is_empty() && worker > current {
                channel.source_log_file = file.clone();
                channel.source_log_position = *position;
            }
        }
    }
    channels.sort_by(|a, b| a.name.cmp(&b.name));
    channels
}

/// Binary log files sort by their numeric extension (`binlog.999999` comes
/// before `binlog.1000000`); an empty name is before everything.
fn binlog_order(file: &str) -> (u64, String) {
    let number = file
        .rsplit_once('.')
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .unwrap_or(0);
    (number, file.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::ReplicaChannel;

    fn channel(name: &str, file: &str, position: u64) -> ReplicaChannel {
        ReplicaChannel {
            name: name.into(),
            source_log_file: file.into(),
            source_log_position: position,
            auto_position: false,
        }
    }

    #[test]
    fn the_newest_worker_position_wins_over_the_checkpoint() {
        let workers = [
            ("".to_owned(), "binlog.000009".to_owned(), 900),
            ("".to_owned(), "binlog.000010".to_owned(), 120),
            ("".to_owned(), "".to_owned(), 0),
            ("east".to_owned(), "binlog.000002".to_owned(), 50),
        ];
        let channels = newest_applied(
            vec![
                channel("east", "binlog.000002", 400),
                channel("", "binlog.000009", 500),
            ],
            &workers,
        );
        assert_eq!(
            channels,
            vec![
                channel("", "binlog.000010", 120),
                channel("east", "binlog.000002", 400),
            ]
        );
        let wide = newest_applied(
            vec![channel("", "binlog.999999", 900)],
            &[("".to_owned(), "binlog.1000000".to_owned(), 4)],
        );
        assert_eq!(wide, vec![channel("", "binlog.1000000", 4)]);
    }
}
