//! Everything the engine asks of a running MySQL server: connecting, the
//! facts a backup needs (version, paths, redo settings), the backup lock, the
//! redo log consumer and the one consistent read of `log_status`.
//!
//! Every statement the engine sends lives here, so what a backup does to the
//! server can be read in one place.

pub mod binlogs;
mod connect;
pub mod facts;
pub mod log_status;
pub mod page_tracking;
pub mod recovery;
pub mod replay;

pub use connect::{ConnectOptions, PROGRAM_NAME, connect};
pub use facts::{ServerFacts, Version, from_variables as facts_from_variables};

/// Builds [`ServerFacts`] from `(name, value)` pairs, for tests and fixtures.
pub fn facts_from_pairs(pairs: &[(&str, &str)]) -> Result<ServerFacts> {
    facts_from_variables(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
}
pub use log_status::LogStatus;

use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to MySQL at {target}: {source}")]
    Connect {
        target: String,
        source: mysql_async::Error,
    },
    #[error("MySQL refused `{what}`: {source}")]
    Statement {
        what: &'static str,
        source: mysql_async::Error,
    },
    #[error("the server answered `{what}` with something unexpected: {detail}")]
    Unexpected { what: &'static str, detail: String },
    #[error(
        "MySQL {found} is not supported: Innoxide needs 8.0.30 or later (the redo format of #innodb_redo)"
    )]
    UnsupportedVersion { found: String },
    #[error(
        "the MySQL user lacks {missing}; grant it, e.g. GRANT {missing} ON *.* TO <user> (see the docs for the full list)"
    )]
    MissingPrivilege { missing: String },
    #[error("`{what}` waited {seconds} s for a lock and gave up; nothing is held. {hint}")]
    LockWaitTimeout {
        what: &'static str,
        seconds: u64,
        hint: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

fn stmt(what: &'static str) -> impl FnOnce(mysql_async::Error) -> Error {
    move |source| Error::Statement { what, source }
}

/// MySQL's `ER_LOCK_WAIT_TIMEOUT`: the session's `lock_wait_timeout` ran out.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// Sends one lock statement under a bounded `lock_wait_timeout`, so that a
/// lock that cannot be had gives up instead of queueing (and making others
/// queue behind it) for the server's default of one year.
async fn lock_within(
    conn: &mut Conn,
    what: &'static str,
    statement: &str,
    timeout: Duration,
    hint: &'static str,
) -> Result<()> {
    let seconds = timeout.as_secs().max(1);
    conn.query_drop(format!("SET SESSION lock_wait_timeout = {seconds}"))
        .await
        .map_err(stmt("SET SESSION lock_wait_timeout"))?;
    match conn.query_drop(statement).await {
        Ok(()) => Ok(()),
        Err(mysql_async::Error::Server(e)) if e.code == ER_LOCK_WAIT_TIMEOUT => {
            Err(Error::LockWaitTimeout {
                what,
                seconds,
                hint,
            })
        }
        Err(source) => Err(Error::Statement { what, source }),
    }
}

/// `LOCK INSTANCE FOR BACKUP`: DML goes on, DDL and non-redo-logged bulk
/// loads wait. Bound to this session: closing the connection releases it.
/// Waits at most `timeout` for running DDL (while it waits, new DDL queues
/// behind it; DML never does).
pub async fn lock_instance_for_backup(conn: &mut Conn, timeout: Duration) -> Result<()> {
    lock_within(
        conn,
        "LOCK INSTANCE FOR BACKUP",
        "LOCK INSTANCE FOR BACKUP",
        timeout,
        "A long DDL statement is running; retry when it has finished, or raise --backup-lock-timeout.",
    )
    .await
}

/// A table by schema and name, as the server's dictionary spells them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A quoted identifier: backticks around, backticks inside doubled.
fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `LOCK TABLES … READ` of exactly these tables. Readers (even a long
/// `SELECT`) never block it and are not blocked by it; writes to these
/// tables wait while it is held, or while it waits, which is at most
/// `timeout`. Nothing else on the server is held up. Released by
/// [`unlock_tables`] or by closing the session.
pub async fn lock_tables_for_read(
    conn: &mut Conn,
    tables: &[TableName],
    timeout: Duration,
) -> Result<()> {
    let list = tables
        .iter()
        .map(|t| {
            format!(
                "{}.{} READ",
                quote_identifier(&t.schema),
                quote_identifier(&t.name)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    lock_within(
        conn,
        "LOCK TABLES … READ",
        &format!("LOCK TABLES {list}"),
        timeout,
        "A write to a non-InnoDB table started after the wait for writers; retry, or raise --lock-wait-timeout.",
    )
    .await
}

/// A session holding a lock that keeps `LOCK TABLES … READ` of a table waiting.
/// Its statement's text is not kept: it may carry data, and this ends up
/// in logs and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableWriter {
    pub connection_id: u64,
    pub table: TableName,
    /// The metadata lock it holds (`SHARED_WRITE`, `EXCLUSIVE`, …).
    pub lock_type: String,
    /// Whether it is running a statement now (not idle in a transaction or
    /// under its own `LOCK TABLES`).
    pub running: bool,
    /// How long its current statement has run, or it has been idle.
    pub seconds: u64,
}

impl std::fmt::Display for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connection {} holds {} on {} ({} for {} s)",
            self.connection_id,
            self.lock_type,
            self.table,
            if self.running {
                "running a statement"
            } else {
                "idle"
            },
            self.seconds
        )
    }
}

/// The sessions, other than this one, whose granted metadata locks conflict
/// with a read lock on any of `tables`: writers, `LOCK TABLES … WRITE`
/// holders and DDL. Asked of `performance_schema.metadata_locks`, so it is
/// exact, not a guess from statement texts.
pub async fn table_writers(conn: &mut Conn, tables: &[TableName]) -> Result<Vec<TableWriter>> {
    type Row = (String, String, String, Option<u64>, Option<u64>, bool);
    let rows: Vec<Row> = conn
        .query(
            "SELECT m.OBJECT_SCHEMA, m.OBJECT_NAME, m.LOCK_TYPE, t.PROCESSLIST_ID, \
             t.PROCESSLIST_TIME, t.PROCESSLIST_INFO IS NOT NULL \
             FROM performance_schema.metadata_locks m \
             JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID \
             WHERE m.OBJECT_TYPE = 'TABLE' AND m.LOCK_STATUS = 'GRANTED' \
             AND m.LOCK_TYPE IN ('SHARED_WRITE', 'SHARED_WRITE_LOW_PRIO', \
             'SHARED_NO_READ_WRITE', 'EXCLUSIVE') \
             AND m.OWNER_THREAD_ID <> PS_CURRENT_THREAD_ID()",
        )
        .await
        .map_err(stmt("read performance_schema.metadata_locks"))?;
    Ok(rows
        .into_iter()
        .filter_map(|(schema, name, lock_type, id, seconds, running)| {
            let table = TableName { schema, name };
            tables.contains(&table).then(|| TableWriter {
                connection_id: id.unwrap_or(0),
                table,
                lock_type,
                running,
                seconds: seconds.unwrap_or(0),
            })
        })
        .collect())
}

/// `KILL QUERY`: ends the statement a session runs, not the session.
pub async fn kill_query(conn: &mut Conn, connection_id: u64) -> Result<()> {
    conn.query_drop(format!("KILL QUERY {connection_id}"))
        .await
        .map_err(stmt("KILL QUERY"))
}

pub async fn unlock_instance(conn: &mut Conn) -> Result<()> {
    conn.query_drop("UNLOCK INSTANCE")
        .await
        .map_err(stmt("UNLOCK INSTANCE"))
}

pub async fn unlock_tables(conn: &mut Conn) -> Result<()> {
    conn.query_drop("UNLOCK TABLES")
        .await
        .map_err(stmt("UNLOCK TABLES"))
}

/// Registers this session as the server's redo log consumer: from now on the
/// server keeps every redo file we have not advanced past. The server allows
/// one consumer; it ends with the session.
///
/// The function answers 1, not an error, when a consumer is already
/// registered (by any session), so the answer must be checked.
pub async fn register_redo_consumer(conn: &mut Conn) -> Result<()> {
    let answer: Option<i64> = conn
        .query_first("SELECT innodb_redo_log_consumer_register()")
        .await
        .map_err(stmt("innodb_redo_log_consumer_register()"))?;
    match answer {
        Some(0) => Ok(()),
        other => Err(Error::Unexpected {
            what: "innodb_redo_log_consumer_register()",
            detail: format!(
                "answered {other:?}: another redo log consumer is registered \
                 (another backup running, or MySQL Enterprise Backup / XtraBackup)"
            ),
        }),
    }
}

/// Tells the server we have safely stored the redo log up to `lsn`. Like
/// registration, the function answers non-zero rather than failing.
///
/// Sent as plain text, not as a prepared statement: the server counts each
/// prepared execution as `statement/com/Execute`, which adaptive pacing
/// reads as the clients' writes, and this runs every 50 ms of a backup.
pub async fn advance_redo_consumer(conn: &mut Conn, lsn: u64) -> Result<()> {
    let answer: Option<i64> = conn
        .query_first(format!("SELECT innodb_redo_log_consumer_advance({lsn})"))
        .await
        .map_err(stmt("innodb_redo_log_consumer_advance()"))?;
    match answer {
        Some(0) => Ok(()),
        other => Err(Error::Unexpected {
            what: "innodb_redo_log_consumer_advance()",
            detail: format!("answered {other:?} for LSN {lsn}"),
        }),
    }
}

pub async fn unregister_redo_consumer(conn: &mut Conn) -> Result<()> {
    conn.query_drop("DO innodb_redo_log_consumer_unregister()")
        .await
        .map_err(stmt("innodb_redo_log_consumer_unregister()"))
}

/// The status `Innodb_redo_log_enabled`: OFF after `ALTER INSTANCE DISABLE
/// INNODB REDO_LOG`. That statement waits for the backup lock, so once it
/// is held the answer cannot change under the backup.
pub async fn redo_log_enabled(conn: &mut Conn) -> Result<bool> {
    let value = global_status(conn, "Innodb_redo_log_enabled").await?;
    Ok(!matches!(value.as_deref(), Some("OFF")))
}

/// One global status variable's value, None when the server has no such
/// variable.
async fn global_status(conn: &mut Conn, name: &'static str) -> Result<Option<String>> {
    // Text, not a prepared statement: `name` is one of ours, and text keeps
    // the agent's own statements simple to tell apart in the server's
    // statement counters.
    conn.query_first(format!(
        "SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = '{name}'"
    ))
    .await
    .map_err(stmt(name))
}

/// The LSN of the server's last checkpoint (`Innodb_redo_log_checkpoint_lsn`):
/// every change before it is on disk.
pub async fn checkpoint_lsn(conn: &mut Conn) -> Result<u64> {
    let value = global_status(conn, "Innodb_redo_log_checkpoint_lsn").await?;
    value
        .as_deref()
        .and_then(|v| v.parse().ok())
        .ok_or(Error::Unexpected {
            what: "Innodb_redo_log_checkpoint_lsn",
            detail: format!("answered {value:?}"),
        })
}

/// Makes InnoDB write and flush its redo log up to the current LSN, so the
/// redo copier can read everything up to the consistent point from the files.
pub async fn flush_engine_logs(conn: &mut Conn) -> Result<()> {
    conn.query_drop("FLUSH NO_WRITE_TO_BINLOG ENGINE LOGS")
        .await
        .map_err(stmt("FLUSH ENGINE LOGS"))
}

/// Starts a new binary log so that the one holding the consistent point is
/// small to copy; rotation also waits for prepared XIDs to commit.
pub async fn flush_binary_logs(conn: &mut Conn) -> Result<()> {
    conn.query_drop("FLUSH NO_WRITE_TO_BINLOG BINARY LOGS")
        .await
        .map_err(stmt("FLUSH BINARY LOGS"))
}

/// User tables in engines other than InnoDB: those are not covered by the
/// redo log and are read-locked while their files are copied.
pub async fn non_innodb_user_tables(conn: &mut Conn) -> Result<Vec<TableName>> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND ENGINE IS NOT NULL AND ENGINE <> 'InnoDB' \
             AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')",
        )
        .await
        .map_err(stmt("list non-InnoDB tables"))?;
    Ok(rows
        .into_iter()
        .map(|(schema, name)| TableName { schema, name })
        .collect())
}

/// One InnoDB data file as the server's dictionary describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnodbFile {
    pub name: String,
    /// `TABLESPACE`, `UNDO LOG`, `TEMPORARY`, … as `information_schema.FILES` says.
    pub file_type: String,
    pub space_id: Option<u32>,
    /// FSP flags, which give the page size even before page 0 reaches disk.
    pub flags: Option<u32>,
}

/// InnoDB data files the server knows of, with their tablespace ids and flags.
pub async fn innodb_data_files(conn: &mut Conn) -> Result<Vec<InnodbFile>> {
    let rows: Vec<(String, String, Option<u64>, Option<u64>)> = conn
        .query(
            "SELECT f.FILE_NAME, f.FILE_TYPE, f.FILE_ID, t.FLAG \
             FROM information_schema.FILES f \
             LEFT JOIN information_schema.INNODB_TABLESPACES t ON t.SPACE = f.FILE_ID \
             WHERE f.ENGINE = 'InnoDB' AND f.FILE_NAME IS NOT NULL",
        )
        .await
        .map_err(stmt("list InnoDB data files"))?;
    Ok(rows
        .into_iter()
        .map(|(name, file_type, space_id, flags)| InnodbFile {
            name,
            file_type,
            space_id: space_id.and_then(|v| u32::try_from(v).ok()),
            flags: flags.and_then(|v| u32::try_from(v).ok()),
        })
        .collect())
}

/// Whether the server has a redo log consumer registered (for tests and the
/// agent's health report). The only probe the server offers is to try to
/// register: 1 means another session holds it; on 0 we let go at once.
pub async fn redo_consumer_registered(conn: &mut Conn) -> Result<bool> {
    match register_redo_consumer(conn).await {
        Ok(()) => {
            unregister_redo_consumer(conn).await?;
            Ok(false)
        }
        Err(Error::Unexpected { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Whether some session runs redo log archiving
/// (`innodb_redo_log_archive_start()`, as MySQL Enterprise Backup does):
/// its consumer thread exists only while it runs.
pub async fn redo_log_archiving_active(conn: &mut Conn) -> Result<bool> {
    let count: Option<u64> = conn
        .query_first(
            "SELECT COUNT(*) FROM performance_schema.threads \
             WHERE NAME = 'thread/innodb/meb::redo_log_archive_consumer_thread'",
        )
        .await
        .map_err(stmt("look for a redo log archiver"))?;
    Ok(count.unwrap_or(0) > 0)
}

/// `@@GLOBAL.gtid_executed`, normalised (one line, no spaces), so that a
/// restore can be checked against the backup's set.
pub async fn gtid_executed(conn: &mut Conn) -> Result<String> {
    let set: Option<String> = conn
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await
        .map_err(stmt("@@GLOBAL.gtid_executed"))?;
    Ok(log_status::normalise_gtid_set(&set.unwrap_or_default()))
}

/// One replication channel of this server, as `SHOW REPLICA STATUS` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaChannel {
    /// Empty for the default channel.
    pub name: String,
    /// The source's binary log and position the applier has executed up to.
    pub source_log_file: String,
    pub source_log_position: u64,
    pub auto_position: bool,
}

/// Every replication channel (none when the server is not a replica).
pub async fn replica_channels(conn: &mut Conn) -> Result<Vec<ReplicaChannel>> {
    let rows: Vec<mysql_async::Row> = conn
        .query("SHOW REPLICA STATUS")
        .await
        .map_err(stmt("SHOW REPLICA STATUS"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let text = |column: &str| -> String {
                row.get::<Option<String>, _>(column)
                    .flatten()
                    .unwrap_or_default()
            };
            ReplicaChannel {
                name: text("Channel_Name"),
                source_log_file: text("Relay_Source_Log_File"),
                source_log_position: row
                    .get::<Option<u64>, _>("Exec_Source_Log_Pos")
                    .flatten()
                    .unwrap_or(0),
                auto_position: row
                    .get::<Option<u64>, _>("Auto_Position")
                    .flatten()
                    .unwrap_or(0)
                    == 1,
            }
        })
        .collect())
}

/// Whether the replica's applier commits in parallel out of source order
/// (`replica_parallel_workers` > 1 with `replica_preserve_commit_order`
/// OFF): then the applied transactions can have gaps, and no file and
/// position describes them.
pub async fn applies_out_of_order(conn: &mut Conn) -> Result<bool> {
    let row: Option<(u64, u64)> = conn
        .query_first(
            "SELECT @@GLOBAL.replica_parallel_workers, @@GLOBAL.replica_preserve_commit_order",
        )
        .await
        .map_err(stmt("read replica_parallel_workers"))?;
    Ok(row.is_some_and(|(workers, ordered)| workers > 1 && ordered == 0))
}

/// A channel name as an SQL string literal.
pub fn quote_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}
