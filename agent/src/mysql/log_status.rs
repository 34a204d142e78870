//! The one consistent read of `performance_schema.log_status`: while the
//! server answers it, logging is briefly blocked, so the binlog position, the
//! GTID set and the InnoDB LSN in its row describe one single point.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};

use super::{Error, Result, stmt};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStatus {
    pub server_uuid: String,
    /// Empty when binary logging is off.
    pub binlog_file: String,
    pub binlog_position: u64,
    /// `gtid_executed` at this point, normalised to one line.
    pub gtid_executed: String,
    /// The InnoDB LSN at this point: the backup's `last_lsn`.
    pub lsn: u64,
    /// The InnoDB checkpoint LSN at this point: the backup's `to_lsn`.
    pub lsn_checkpoint: u64,
    /// Replication channels as the server reports them (JSON), for `--slave-info`.
    pub replication: serde_json::Value,
}

impl LogStatus {
    /// Parses the row's JSON columns. Pure, so it is tested on the server's text.
    pub fn from_columns(
        server_uuid: String,
        local: &str,
        replication: &str,
        storage_engines: &str,
    ) -> Result<LogStatus> {
        let bad = |detail: String| Error::Unexpected {
            what: "performance_schema.log_status",
            detail,
        };
        let local: serde_json::Value =
            serde_json::from_str(local).map_err(|e| bad(format!("LOCAL: {e}")))?;
        let engines: serde_json::Value = serde_json::from_str(storage_engines)
            .map_err(|e| bad(format!("STORAGE_ENGINES: {e}")))?;
        let replication: serde_json::Value =
            serde_json::from_str(replication).map_err(|e| bad(format!("REPLICATION: {e}")))?;
        let innodb = engines
            .get("InnoDB")
            .ok_or_else(|| bad(format!("no InnoDB in STORAGE_ENGINES: {engines}")))?;
        let number = |v: &serde_json::Value, key: &str| {
            v.get(key)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad(format!("no numeric {key} in {v}")))
        };
        Ok(LogStatus {
            server_uuid,
            binlog_file: local
                .get("binary_log_file")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            binlog_position: local
                .get("binary_log_position")
                .and_then(|v| v.as_u64())
                .unwrap_or_default(),
            gtid_executed: normalise_gtid_set(
                local
                    .get("gtid_executed")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default(),
            ),
            lsn: number(innodb, "LSN")?,
            lsn_checkpoint: number(innodb, "LSN_checkpoint")?,
            replication,
        })
    }
}

/// GTID sets come back with `,\n` between source UUIDs; files and
/// comparisons want them on one line.
pub fn normalise_gtid_set(set: &str) -> String {
    set.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn read(conn: &mut Conn) -> Result<LogStatus> {
    let row: Option<(String, String, String, String)> = conn
        .query_first(
            "SELECT SERVER_UUID, LOCAL, REPLICATION, STORAGE_ENGINES \
             FROM performance_schema.log_status",
        )
        .await
        .map_err(stmt("SELECT … FROM performance_schema.log_status"))?;
    let (uuid, local, replication, engines) = row.ok_or(Error::Unexpected {
        what: "performance_schema.log_status",
        detail: "no row".into(),
    })?;
    LogStatus::from_columns(uuid, &local, &replication, &engines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_row_a_9_7_server_returns() {
        let status = LogStatus::from_columns(
            "6f1c1a2e-0000-11ef-9d2f-0242ac120002".into(),
            r#"{"gtid_executed": "6f1c1a2e-0000-11ef-9d2f-0242ac120002:1-1204,\naaaaaaaa-0000-11ef-9d2f-0242ac120002:1-3", "binary_log_file": "binlog.000002", "binary_log_position": 41235}"#,
            r#"{"channels": []}"#,
            r#"{"InnoDB": {"LSN": 33489112, "LSN_checkpoint": 31999744}}"#,
        )
        .unwrap();
        assert_eq!(status.binlog_file, "binlog.000002");
        assert_eq!(status.binlog_position, 41235);
        assert_eq!(
            status.gtid_executed,
            "6f1c1a2e-0000-11ef-9d2f-0242ac120002:1-1204,aaaaaaaa-0000-11ef-9d2f-0242ac120002:1-3"
        );
        assert_eq!((status.lsn, status.lsn_checkpoint), (33489112, 31999744));
    }

    #[test]
    fn a_row_without_innodb_is_an_error() {
        let err = LogStatus::from_columns("u".into(), "{}", "{}", "{}").unwrap_err();
        assert!(err.to_string().contains("no InnoDB"), "{err}");
    }
}
