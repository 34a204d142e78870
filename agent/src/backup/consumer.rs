//! Keeps the server's redo log consumer moving with the captured log, and
//! lets go of it the moment it cannot: a registered consumer that stops
//! advancing makes the server keep all later log and, once its capacity is
//! used, stall every write.

use std::sync::Arc;

use mysql_async::Conn;
use tokio::sync::{Mutex, watch};

use crate::mysql;

/// Advances the consumer registered on `conn` as captured log becomes
/// durable (`durable` publishes the LSN). Ends when the copier ends, or on
/// the first failed advance, after unregistering: the backup then goes on
/// tailing the files, and fails clearly if the server recycles log first.
pub async fn advance_while_durable(
    conn: Arc<Mutex<Conn>>,
    mut durable: watch::Receiver<u64>,
) -> Result<(), mysql::Error> {
    let mut advanced = 0;
    while durable.changed().await.is_ok() {
        let lsn = *durable.borrow_and_update();
        if lsn <= advanced {
            continue;
        }
        let mut conn = conn.lock().await;
        if let Err(e) = mysql::advance_redo_consumer(&mut conn, lsn).await {
            let unregistered = mysql::unregister_redo_consumer(&mut conn).await;
            tracing::warn!(
                error = %e,
                lsn,
                unregistered = unregistered.is_ok(),
                "could not advance the redo log consumer; unregistered it so the server never \
                 waits for us, and tailing the redo files instead"
            );
            return Err(e);
        }
        advanced = lsn;
    }
    Ok(())
}
