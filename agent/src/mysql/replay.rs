//! Statements point-in-time replay sends to apply-log's mini instance: a
//! replication channel whose relay log is the source's binlog files, run
//! by the server's own applier (coordinator and parallel workers), and
//! removed again when it is done.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::{Result, stmt};

/// `@@GLOBAL.gtid_executed`, as the server writes it.
pub async fn gtid_executed(conn: &mut Conn) -> Result<String> {
    let set: Option<String> = conn
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await
        .map_err(stmt("SELECT @@GLOBAL.gtid_executed"))?;
    Ok(set.unwrap_or_default())
}

/// Readies the applier: a server_id no replayed event carries (the applier
/// skips events with its own server_id, and the mini instance runs with
/// the source's), parallel workers, and commits that skip the fsyncs: a
/// replay that dies is redone from the raw backup, never resumed, so
/// durability of each commit buys nothing here. The clean shutdown at the
/// end writes everything.
pub async fn prepare_applier(conn: &mut Conn, server_id: u32, workers: u32) -> Result<()> {
    conn.query_drop(format!(
        "SET GLOBAL server_id = {server_id}, GLOBAL replica_parallel_workers = {workers}, \
         GLOBAL replica_preserve_commit_order = ON, GLOBAL sync_binlog = 0, \
         GLOBAL innodb_flush_log_at_trx_commit = 2"
    ))
    .await
    .map_err(stmt(
        "SET GLOBAL server_id, replica_parallel_workers, sync_binlog",
    ))
}

/// Points `channel` at its relay log: `relay_file` (listed in the
/// channel's relay log index) from its start. The host is a name that
/// never resolves: the receiver thread is never started.
pub async fn point_channel(conn: &mut Conn, channel: &str, relay_file: &str) -> Result<()> {
    conn.query_drop(format!(
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'innoxide-replay.invalid', \
         RELAY_LOG_FILE = {}, RELAY_LOG_POS = 4 FOR CHANNEL {}",
        quote(relay_file),
        quote(channel)
    ))
    .await
    .map_err(stmt("CHANGE REPLICATION SOURCE TO RELAY_LOG_FILE"))
}

pub async fn start_applier(conn: &mut Conn, channel: &str) -> Result<()> {
    conn.query_drop(format!(
        "START REPLICA SQL_THREAD FOR CHANNEL {}",
        quote(channel)
    ))
    .await
    .map_err(stmt("START REPLICA SQL_THREAD"))
}

/// Stops the channel's applier and forgets the channel (its relay log
/// files too), so the prepared data holds no trace of it.
pub async fn remove_channel(conn: &mut Conn, channel: &str) -> Result<()> {
    conn.query_drop(format!(
        "STOP REPLICA SQL_THREAD FOR CHANNEL {}",
        quote(channel)
    ))
    .await
    .map_err(stmt("STOP REPLICA SQL_THREAD"))?;
    conn.query_drop(format!("RESET REPLICA ALL FOR CHANNEL {}", quote(channel)))
        .await
        .map_err(stmt("RESET REPLICA ALL"))
}

/// `RESET REPLICA` (not `ALL`) of each GTID auto-positioned channel other
/// than `except`: the channel forgets where its applier stood in its relay
/// log (the applier metadata row and the workers' rows go, its relay log
/// files too) and keeps its connection metadata (source, user,
/// auto-positioning). Returns the channels reset.
///
/// Why: a backup holds no relay log, so the applier metadata of a backed
/// up replica names a file no restored server has; the server then fails
/// to initialize the channel at startup and `START REPLICA` gives ERROR
/// 1872. Editing that row is not enough: a channel this instance did
/// initialize (its row named no file) has a relay log in the replay's
/// folder, and the server writes that name back at shutdown. After the
/// reset the restored server starts the channel on a relay log of its own,
/// and with auto-positioning its receiver asks the source for exactly what
/// `gtid_executed` lacks, so nothing is lost. File-and-position channels
/// are left as they were: their applier's position is the backup's, not
/// the restored point's, and only the user can say where they resume.
pub async fn reset_auto_positioned_channels(conn: &mut Conn, except: &str) -> Result<Vec<String>> {
    let channels: Vec<String> = conn
        .query(format!(
            "SELECT Channel_name FROM mysql.slave_master_info \
             WHERE Enabled_auto_position = 1 AND Channel_name <> {}",
            quote(except)
        ))
        .await
        .map_err(stmt("read mysql.slave_master_info"))?;
    // Never logged: the instance runs with the source's server UUID.
    conn.query_drop("SET SESSION sql_log_bin = 0")
        .await
        .map_err(stmt("SET sql_log_bin = 0"))?;
    for channel in &channels {
        conn.query_drop(format!("RESET REPLICA FOR CHANNEL {}", quote(channel)))
            .await
            .map_err(stmt("RESET REPLICA FOR CHANNEL"))?;
    }
    conn.query_drop("SET SESSION sql_log_bin = 1")
        .await
        .map_err(stmt("SET sql_log_bin = 1"))?;
    Ok(channels)
}

/// Waits up to `seconds` for `set` to be executed: true when it is.
pub async fn wait_for_gtids(conn: &mut Conn, set: &str, seconds: u32) -> Result<bool> {
    // 0 when the set is executed, 1 on timeout.
    let timed_out: Option<i64> = conn
        .query_first(format!(
            "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {seconds})",
            quote(set)
        ))
        .await
        .map_err(stmt("WAIT_FOR_EXECUTED_GTID_SET"))?;
    Ok(timed_out == Some(0))
}

/// What the channel's applier says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplierStatus {
    pub running: bool,
    pub errno: u32,
    pub error: String,
}

/// `SHOW REPLICA STATUS` of one channel (it works without the
/// performance schema, which the mini instance runs without).
pub async fn applier_status(conn: &mut Conn, channel: &str) -> Result<ApplierStatus> {
    let row: Option<mysql_async::Row> = conn
        .query_first(format!(
            "SHOW REPLICA STATUS FOR CHANNEL {}",
            quote(channel)
        ))
        .await
        .map_err(stmt("SHOW REPLICA STATUS"))?;
    let Some(row) = row else {
        return Err(super::Error::Unexpected {
            what: "SHOW REPLICA STATUS",
            detail: format!("no channel {channel:?}"),
        });
    };
    let text = |name: &str| -> String {
        row.get_opt::<String, _>(name)
            .and_then(|v| v.ok())
            .unwrap_or_default()
    };
    Ok(ApplierStatus {
        running: text("Replica_SQL_Running") == "Yes",
        errno: text("Last_SQL_Errno").parse().unwrap_or(0),
        error: text("Last_SQL_Error"),
    })
}

/// A string literal for a statement that takes no parameters.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote("/b/it's\\x"), "'/b/it''s\\\\x'");
    }
}
