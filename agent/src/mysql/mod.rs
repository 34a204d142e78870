//! Everything the engine asks of a running MySQL server: connecting, the
//! facts a backup needs (version, paths, redo settings), the backup lock, the
//! redo log consumer and the one consistent read of `log_status`.
//!
//! Every statement the engine sends lives here, so what a backup does to the
//! server can be read in one place.

mod connect;
pub mod facts;
pub mod log_status;
pub mod recovery;

pub use connect::{ConnectOptions, connect};
pub use facts::{ServerFacts, Version, from_variables as facts_from_variables};

/// Builds [`ServerFacts`] from `(name, value)` pairs, for tests and fixtures.
pub fn facts_from_pairs(pairs: &[(&str, &str)]) -> Result<ServerFacts> {
    facts_from_variables(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
}
pub use log_status::LogStatus;

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
}

pub type Result<T> = std::result::Result<T, Error>;

fn stmt(what: &'static str) -> impl FnOnce(mysql_async::Error) -> Error {
    move |source| Error::Statement { what, source }
}

/// `LOCK INSTANCE FOR BACKUP`: DML goes on, DDL and non-redo-logged bulk
/// loads wait. Bound to this session: closing the connection releases it.
pub async fn lock_instance_for_backup(conn: &mut Conn) -> Result<()> {
    conn.query_drop("LOCK INSTANCE FOR BACKUP")
        .await
        .map_err(stmt("LOCK INSTANCE FOR BACKUP"))
}

pub async fn unlock_instance(conn: &mut Conn) -> Result<()> {
    conn.query_drop("UNLOCK INSTANCE")
        .await
        .map_err(stmt("UNLOCK INSTANCE"))
}

/// `FLUSH TABLES WITH READ LOCK`, taken only when non-InnoDB user tables exist.
pub async fn flush_tables_with_read_lock(conn: &mut Conn) -> Result<()> {
    conn.query_drop("FLUSH NO_WRITE_TO_BINLOG TABLES WITH READ LOCK")
        .await
        .map_err(stmt("FLUSH TABLES WITH READ LOCK"))
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
pub async fn advance_redo_consumer(conn: &mut Conn, lsn: u64) -> Result<()> {
    let answer: Option<i64> = conn
        .exec_first("SELECT innodb_redo_log_consumer_advance(?)", (lsn,))
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
/// redo log and need `FLUSH TABLES WITH READ LOCK` while their files are copied.
pub async fn non_innodb_user_tables(conn: &mut Conn) -> Result<Vec<(String, String, String)>> {
    conn.query(
        "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE FROM information_schema.TABLES \
         WHERE TABLE_TYPE = 'BASE TABLE' AND ENGINE IS NOT NULL AND ENGINE <> 'InnoDB' \
         AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')",
    )
    .await
    .map_err(stmt("list non-InnoDB tables"))
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

/// `@@GLOBAL.gtid_executed`, normalised (one line, no spaces), so that a
/// restore can be checked against the backup's set.
pub async fn gtid_executed(conn: &mut Conn) -> Result<String> {
    let set: Option<String> = conn
        .query_first("SELECT @@GLOBAL.gtid_executed")
        .await
        .map_err(stmt("@@GLOBAL.gtid_executed"))?;
    Ok(log_status::normalise_gtid_set(&set.unwrap_or_default()))
}

/// The source position a replica has executed up to, for `--slave-info`
/// on servers without GTIDs. `None` when the server is not a replica.
pub async fn replica_source_position(conn: &mut Conn) -> Result<Option<(String, u64)>> {
    let row: Option<mysql_async::Row> = conn
        .query_first("SHOW REPLICA STATUS")
        .await
        .map_err(stmt("SHOW REPLICA STATUS"))?;
    Ok(row.and_then(|row| {
        let file: Option<String> = row.get("Relay_Source_Log_File");
        let position: Option<u64> = row.get("Exec_Source_Log_Pos");
        file.zip(position)
    }))
}
