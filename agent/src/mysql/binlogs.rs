//! What the binlog archiver asks the server: its binlog files, where they
//! are, and how far it has durably written the active one.

use std::path::PathBuf;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::{Error, Result, stmt};

/// The server's binary logging, as the archiver needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogSetup {
    pub server_uuid: String,
    /// The folder the binlog files are in (from `@@log_bin_basename`).
    pub dir: PathBuf,
}

/// Checks that binary logging and GTIDs are on and finds the files' folder.
pub async fn setup(conn: &mut Conn) -> Result<BinlogSetup> {
    let row: Option<(String, String, i64, Option<String>)> = conn
        .query_first("SELECT @@server_uuid, @@gtid_mode, @@log_bin, @@log_bin_basename")
        .await
        .map_err(stmt(
            "SELECT @@server_uuid, @@gtid_mode, @@log_bin, @@log_bin_basename",
        ))?;
    let (server_uuid, gtid_mode, log_bin, basename) = row.ok_or(Error::Unexpected {
        what: "SELECT @@server_uuid, @@gtid_mode, @@log_bin",
        detail: "no row".into(),
    })?;
    let refuse = |detail: &str| Error::Unexpected {
        what: "binary logging",
        detail: detail.into(),
    };
    if log_bin == 0 {
        return Err(refuse(
            "binary logging is off (log_bin): there are no binlogs to archive",
        ));
    }
    if !gtid_mode.eq_ignore_ascii_case("ON") {
        return Err(refuse(&format!(
            "gtid_mode is {gtid_mode}: archiving and point-in-time recovery need gtid_mode=ON"
        )));
    }
    let basename = PathBuf::from(basename.unwrap_or_default());
    let dir = basename
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| refuse("@@log_bin_basename names no folder"))?
        .to_owned();
    Ok(BinlogSetup { server_uuid, dir })
}

/// One binlog file as `SHOW BINARY LOGS` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogFile {
    pub name: String,
    pub size: u64,
}

/// The server's binlog files, oldest first, and the active one's durable
/// end (`SHOW BINARY LOG STATUS`: what the server lets replicas read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogFiles {
    pub files: Vec<BinlogFile>,
    pub active: String,
    pub active_position: u64,
}

pub async fn files(conn: &mut Conn) -> Result<BinlogFiles> {
    let rows: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(stmt("SHOW BINARY LOGS"))?;
    let mut files = Vec::with_capacity(rows.len());
    for row in rows {
        let name: Option<String> = row.get(0);
        let size: Option<u64> = row.get(1);
        let encrypted: Option<String> = row.get(2);
        let (Some(name), Some(size)) = (name, size) else {
            return Err(Error::Unexpected {
                what: "SHOW BINARY LOGS",
                detail: "a row without Log_name or File_size".into(),
            });
        };
        if encrypted.is_some_and(|e| e.eq_ignore_ascii_case("yes")) {
            return Err(Error::Unexpected {
                what: "SHOW BINARY LOGS",
                detail: format!(
                    "{name} is encrypted (binlog_encryption=ON): encrypted binlogs cannot be archived yet"
                ),
            });
        }
        files.push(BinlogFile { name, size });
    }
    let status: Option<mysql_async::Row> = conn
        .query_first("SHOW BINARY LOG STATUS")
        .await
        .map_err(stmt("SHOW BINARY LOG STATUS"))?;
    let (active, active_position) = status
        .and_then(|row| Some((row.get::<String, _>(0)?, row.get::<u64, _>(1)?)))
        .ok_or(Error::Unexpected {
            what: "SHOW BINARY LOG STATUS",
            detail: "no row: binary logging is off".into(),
        })?;
    Ok(BinlogFiles {
        files,
        active,
        active_position,
    })
}
