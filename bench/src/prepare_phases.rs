//! Where apply-log's time goes, from the timestamps of the mini instance's
//! error log (`prepared/mysql-stderr`, which apply-log keeps): mysqld's
//! start, the redo scan and apply, the rest of the start, the wait for
//! rollback, and the shutdown. Lines are found by their error codes, which
//! do not change with the message language. Pure.

/// Seconds spent in each phase of one apply-log, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Phases {
    /// mysqld start → "Starting crash recovery".
    pub start: f64,
    /// Crash recovery's redo scan and apply batches.
    pub redo: f64,
    /// Last apply batch → "ready for connections" (dictionary, binlog
    /// recovery, the rest of the start).
    pub to_ready: f64,
    /// Ready → shutdown requested: apply-log's checks and the wait for
    /// recovered transactions to roll back.
    pub rollback: f64,
    /// Shutdown requested → mysqld's last line.
    pub shutdown: f64,
    /// Apply batches recovery logged (more than one: the buffer pool could
    /// not hold the whole redo's records).
    pub batches: usize,
}

impl Phases {
    pub fn mysqld_total(&self) -> f64 {
        self.start + self.redo + self.to_ready + self.rollback + self.shutdown
    }
}

const CRASH_RECOVERY: &str = "[MY-012552]";
const BATCH_APPLIED: &str = "[MY-012535]";
const INNODB_STARTED: &str = "[MY-012976]";
const READY: &str = "[MY-010931]";
const SHUTDOWN_RECEIVED: &str = "[MY-013172]";

/// The phases of one error log, or None when it lacks a start, a ready or a
/// shutdown line (mysqld did not run to the end).
pub fn phases(log: &str) -> Option<Phases> {
    let stamped: Vec<(f64, &str)> = log
        .lines()
        .filter_map(|line| Some((timestamp(line)?, line)))
        .collect();
    let first = stamped.first()?.0;
    let last = stamped.last()?.0;
    let at = |code: &str| {
        stamped
            .iter()
            .find(|(_, l)| l.contains(code))
            .map(|(t, _)| *t)
    };
    let last_at = |code: &str| {
        stamped
            .iter()
            .rev()
            .find(|(_, l)| l.contains(code))
            .map(|(t, _)| *t)
    };
    let ready = at(READY)?;
    let shutdown = at(SHUTDOWN_RECEIVED)?;
    // No recovery (nothing after the checkpoint): InnoDB's start is the end
    // of the redo phase, which is then empty.
    let innodb = at(INNODB_STARTED).unwrap_or(ready);
    let recovery = at(CRASH_RECOVERY).unwrap_or(innodb);
    let applied = last_at(BATCH_APPLIED).unwrap_or(recovery).max(recovery);
    Some(Phases {
        start: recovery - first,
        redo: applied - recovery,
        to_ready: ready - applied,
        rollback: shutdown - ready,
        shutdown: last - shutdown,
        batches: stamped
            .iter()
            .filter(|(_, l)| l.contains(BATCH_APPLIED))
            .count(),
    })
}

/// Seconds since the epoch of a line's leading RFC 3339 timestamp
/// (`2026-11-21T18:39:12.345678Z 0 [Note] ...`).
fn timestamp(line: &str) -> Option<f64> {
    let word = line.split_whitespace().next()?;
    let at =
        time::OffsetDateTime::parse(word, &time::format_description::well_known::Rfc3339).ok()?;
    Some(at.unix_timestamp_nanos() as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_from_a_recovery_log() {
        let log = "\
2026-12-06T09:00:00.000000Z 0 [System] [MY-010116] [Server] /usr/sbin/mysqld (mysqld 9.7.4) starting as process 7
2026-12-06T09:00:01.000000Z 1 [Note] [MY-012552] [InnoDB] Starting crash recovery.
2026-12-06T09:00:01.500000Z 1 [Note] [MY-012550] [InnoDB] Doing recovery: scanned up to log sequence number 83545535
2026-12-06T09:00:03.000000Z 1 [Note] [MY-012535] [InnoDB] Apply batch completed!
2026-12-06T09:00:04.000000Z 1 [Note] [MY-012535] [InnoDB] Apply batch completed!
2026-12-06T09:00:04.250000Z 1 [Note] [MY-012976] [InnoDB] 9.7.4 started; log sequence number 83558290
2026-12-06T09:00:05.000000Z 0 [System] [MY-010931] [Server] /usr/sbin/mysqld: ready for connections.
not a log line
2026-12-06T09:00:05.500000Z 9 [System] [MY-013172] [Server] Received SHUTDOWN from user root. Shutting down mysqld (Version: 9.7.4).
2026-12-06T09:00:07.000000Z 0 [System] [MY-010910] [Server] /usr/sbin/mysqld: Shutdown complete (mysqld 9.7.4).
";
        let p = phases(log).unwrap();
        assert_eq!(p.start, 1.0);
        assert_eq!(p.redo, 3.0);
        assert_eq!(p.to_ready, 1.0);
        assert_eq!(p.rollback, 0.5);
        assert_eq!(p.shutdown, 1.5);
        assert_eq!(p.batches, 2);
        assert_eq!(p.mysqld_total(), 7.0);
        assert_eq!(
            phases("2026-12-06T09:00:00Z 0 [System] [MY-010116] starting"),
            None
        );
    }
}
