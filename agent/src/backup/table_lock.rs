//! The locks a backup takes and how long it may wait for them, and the
//! read lock on non-InnoDB tables taken without ever freezing the server.
//!
//! There is no `FLUSH TABLES WITH READ LOCK`: it queues behind any long
//! statement (even a `SELECT`) and, while it queues, holds every write on
//! the server. Instead the backup waits, holding and queueing for nothing,
//! until no session writes to the non-InnoDB tables (optionally ending
//! writes that run too long), then takes `LOCK TABLES … READ` of just those
//! tables under a short lock wait. Readers never block it; only writes to
//! those tables wait, and only while their files are copied.

use std::time::{Duration, Instant};

use mysql_async::Conn;

use super::Error;
use crate::mysql::{self, TableName, TableWriter};

/// How long the backup may wait for its locks. The defaults never stall
/// writes for more than a few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOptions {
    /// The longest wait for `LOCK INSTANCE FOR BACKUP` (it waits only for
    /// running DDL; while it waits new DDL queues, DML never does).
    pub backup_lock_timeout: Duration,
    /// The longest wait for the read lock on non-InnoDB tables. While it
    /// waits, writes to those tables queue, so it is short.
    pub table_lock_timeout: Duration,
    /// How long to wait, before asking for the read lock, for sessions that
    /// write to non-InnoDB tables to finish (innobackupex's
    /// `--ftwrl-wait-timeout`). Nothing is held or queued meanwhile.
    pub writers_wait_timeout: Duration,
    /// End (`KILL QUERY`) statements that still write to non-InnoDB tables
    /// after this long of the wait (innobackupex's
    /// `--kill-long-queries-timeout`); `None` never ends anything.
    pub kill_writers_after: Option<Duration>,
    /// innobackupex's `--lock-ddl=REDUCED`: copy without the backup lock
    /// (DDL runs on), and take it only at the end, briefly, to re-copy the
    /// tablespaces whose indexes were built without redo meanwhile. A file
    /// created, renamed or deleted during the copy makes the backup refuse.
    pub reduced_ddl_lock: bool,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            backup_lock_timeout: Duration::from_secs(600),
            table_lock_timeout: Duration::from_secs(5),
            writers_wait_timeout: Duration::from_secs(60),
            kill_writers_after: None,
            reduced_ddl_lock: false,
        }
    }
}

const POLL: Duration = Duration::from_millis(200);

/// Read-locks `tables` on `conn` once no other session writes to them.
/// Gives up with [`Error::Busy`] (holding nothing) when writers are still
/// there after `writers_wait_timeout`.
pub async fn lock_for_read(
    conn: &mut Conn,
    tables: &[TableName],
    options: &LockOptions,
) -> Result<(), Error> {
    let started = Instant::now();
    let mut killed = Vec::new();
    loop {
        let writers = mysql::table_writers(conn, tables).await?;
        if writers.is_empty() {
            break;
        }
        let waited = started.elapsed();
        if waited >= options.writers_wait_timeout {
            return Err(Error::Busy(format!(
                "non-InnoDB tables are still being written after waiting {} s, so the backup \
                 did not lock them (nothing is held): {}; retry later, raise \
                 --ftwrl-wait-timeout, or set --kill-long-queries-timeout",
                waited.as_secs(),
                describe(&writers)
            )));
        }
        if options
            .kill_writers_after
            .is_some_and(|after| waited >= after)
        {
            let to_kill: Vec<&TableWriter> = writers
                .iter()
                .filter(|w| w.running && !killed.contains(&w.connection_id))
                .collect();
            for writer in to_kill {
                tracing::warn!(writer = %writer, "ending a long write that blocks the backup's read lock");
                mysql::kill_query(conn, writer.connection_id).await?;
                killed.push(writer.connection_id);
            }
        }
        tokio::time::sleep(POLL).await;
    }
    mysql::lock_tables_for_read(conn, tables, options.table_lock_timeout).await?;
    Ok(())
}

fn describe(writers: &[TableWriter]) -> String {
    writers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
