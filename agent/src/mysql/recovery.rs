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
