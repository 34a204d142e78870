//! Proof, from the mini instance's error log, that crash recovery did what
//! apply-log needs: it started at the backup's checkpoint and applied the
//! redo up to exactly last_lsn. A server that merely started proves nothing
//! (with the wrong checkpoint, or a log that ends early, mysqld starts just
//! as happily on an inconsistent datadir).
//!
//! Lines are recognised by their error codes (stable across versions and
//! message languages); the numbers come from their text. Seen on 9.7.4:
//!
//! ```text
//! [Note] [MY-012555] [InnoDB] The redo log file was created by mysqlbackup --apply-log at MEB innoxide. ...
//! [Note] [MY-013883] [InnoDB] The latest found checkpoint is at lsn = 69304147 in redo log file ...#ib_redo0.
//! [Note] [MY-012552] [InnoDB] Starting crash recovery.
//! [Note] [MY-012550] [InnoDB] Doing recovery: scanned up to log sequence number 83545535
//! [Note] [MY-012535] [InnoDB] Apply batch completed!
//! [Note] [MY-012976] [InnoDB] 9.7.4 started; log sequence number 83558290
//! ```
//!
//! The last "scanned up to" is where the scan found the end of the log:
//! with the log cut at last_lsn it must be last_lsn itself.

/// The checkpoint recovery started from.
const CHECKPOINT: &str = "[MY-013883]";
const CRASH_RECOVERY: &str = "[MY-012552]";
const SCANNED_UP_TO: &str = "[MY-012550]";
const BATCH_APPLIED: &str = "[MY-012535]";
const MEB_CREATOR: &str = "[MY-012555]";
/// "<version> started; log sequence number N".
const STARTED: &str = "[MY-012976]";
/// "Starting in background the rollback of uncommitted transactions" and
/// "Rollback of non-prepared transactions completed".
const ROLLBACK_STARTED: &str = "[MY-013014]";
const ROLLBACK_COMPLETED: &str = "[MY-013015]";
/// "Shutdown completed; log sequence number N": InnoDB closed cleanly.
const SHUTDOWN_COMPLETED: &str = "[MY-012980]";

/// What the error log says recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryProof {
    pub checkpoint_lsn: u64,
    /// Where the redo scan ended; equals last_lsn.
    pub scanned_to_lsn: u64,
    /// "Apply batch completed!" lines.
    pub batches_applied: usize,
    /// mysqld took the log as written by a backup tool (MEB creator).
    pub backup_creator_recognised: bool,
    /// The LSN InnoDB reported once started (recovery's own writes follow
    /// last_lsn).
    pub started_at_lsn: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryProofError {
    #[error(
        "the mini instance's error log has no \"latest found checkpoint\" line ({CHECKPOINT}): \
         cannot tell where recovery started"
    )]
    NoCheckpoint,
    #[error(
        "crash recovery started at checkpoint {found}, but the backup's start checkpoint is \
         {expected}: the synthesized redo was not used as written"
    )]
    WrongCheckpoint { found: u64, expected: u64 },
    #[error(
        "the redo log holds changes up to {last_lsn} past the checkpoint {checkpoint}, but mysqld \
         did not run crash recovery ({CRASH_RECOVERY} missing)"
    )]
    NoCrashRecovery { checkpoint: u64, last_lsn: u64 },
    #[error(
        "crash recovery logged no \"scanned up to\" line ({SCANNED_UP_TO}): cannot tell how far it went"
    )]
    NoScanEnd,
    #[error(
        "crash recovery scanned the redo up to {scanned} but the backup's last_lsn is {last_lsn}: \
         the datadir is not at the backup's consistent point"
    )]
    WrongEnd { scanned: u64, last_lsn: u64 },
}

/// Checks the error log of a mini instance that has started.
pub fn prove(
    log: &str,
    checkpoint_lsn: u64,
    last_lsn: u64,
) -> Result<RecoveryProof, RecoveryProofError> {
    let lines = || log.lines();
    let found_checkpoint = lines()
        .filter(|l| l.contains(CHECKPOINT))
        .filter_map(|l| number_after(l, "lsn = "))
        .next_back()
        .ok_or(RecoveryProofError::NoCheckpoint)?;
    if found_checkpoint != checkpoint_lsn {
        return Err(RecoveryProofError::WrongCheckpoint {
            found: found_checkpoint,
            expected: checkpoint_lsn,
        });
    }
    let crash_recovery = lines().any(|l| l.contains(CRASH_RECOVERY));
    let scanned = lines()
        .filter(|l| l.contains(SCANNED_UP_TO))
        .filter_map(last_number)
        .next_back();
    let scanned_to_lsn = match (crash_recovery, scanned) {
        (true, Some(scanned)) => scanned,
        (true, None) => return Err(RecoveryProofError::NoScanEnd),
        // Nothing after the checkpoint: a clean log, no recovery to run.
        (false, _) if last_lsn == checkpoint_lsn => checkpoint_lsn,
        (false, _) => {
            return Err(RecoveryProofError::NoCrashRecovery {
                checkpoint: checkpoint_lsn,
                last_lsn,
            });
        }
    };
    if scanned_to_lsn != last_lsn {
        return Err(RecoveryProofError::WrongEnd {
            scanned: scanned_to_lsn,
            last_lsn,
        });
    }
    Ok(RecoveryProof {
        checkpoint_lsn,
        scanned_to_lsn,
        batches_applied: lines().filter(|l| l.contains(BATCH_APPLIED)).count(),
        backup_creator_recognised: lines().any(|l| l.contains(MEB_CREATOR)),
        started_at_lsn: lines()
            .filter(|l| l.contains(STARTED))
            .filter_map(last_number)
            .next_back(),
    })
}

/// The LSN of InnoDB's clean shutdown, when the log says it completed one.
pub fn shutdown_lsn(log: &str) -> Option<u64> {
    log.lines()
        .filter(|l| l.contains(SHUTDOWN_COMPLETED))
        .filter_map(last_number)
        .next_back()
}

/// Whether InnoDB is still rolling back transactions recovery found
/// active (it does so in the background, after the server is up).
pub fn rollback_pending(log: &str) -> bool {
    log.contains(ROLLBACK_STARTED) && !log.contains(ROLLBACK_COMPLETED)
}

/// The decimal number right after `marker` in `line`.
fn number_after(line: &str, marker: &str) -> Option<u64> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The last run of digits in `line`.
fn last_number(line: &str) -> Option<u64> {
    let end = line.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = line[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    line[start..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recovery part of a real 9.7.4 mini instance's log.
    const LOG: &str = "\
2026-11-21T20:58:56.699114Z 1 [Note] [MY-012555] [InnoDB] The redo log file was created by mysqlbackup --apply-log at MEB innoxide. The following crash recovery is part of a normal restore.
2026-11-21T20:58:56.699509Z 1 [Note] [MY-013883] [InnoDB] The latest found checkpoint is at lsn = 69304147 in redo log file /tmp/exp1/prepared.partial/#innodb_redo/#ib_redo0.
2026-11-21T20:58:56.699544Z 1 [Note] [MY-012560] [InnoDB] The log sequence number 19049775 in the system tablespace does not match the log sequence number 69304147 in the redo log files!
2026-11-21T20:58:56.699554Z 1 [Note] [MY-012551] [InnoDB] Database was not shutdown normally!
2026-11-21T20:58:56.699558Z 1 [Note] [MY-012552] [InnoDB] Starting crash recovery.
2026-11-21T20:58:56.699714Z 1 [Note] [MY-013086] [InnoDB] Starting to parse redo log at lsn = 69303849, whereas checkpoint_lsn = 69304147 and start_lsn = 69303808
2026-11-21T20:58:56.760426Z 1 [Note] [MY-012550] [InnoDB] Doing recovery: scanned up to log sequence number 74546688
2026-11-21T20:58:56.853860Z 1 [Note] [MY-012550] [InnoDB] Doing recovery: scanned up to log sequence number 79789568
2026-11-21T20:58:56.920140Z 1 [Note] [MY-012550] [InnoDB] Doing recovery: scanned up to log sequence number 83545535
2026-11-21T20:58:56.920269Z 1 [Note] [MY-012532] [InnoDB] Applying a batch of 1735 redo log records ...
2026-11-21T20:58:57.105174Z 1 [Note] [MY-012535] [InnoDB] Apply batch completed!
2026-11-21T20:58:57.498480Z 1 [Note] [MY-012976] [InnoDB] 9.7.4 started; log sequence number 83558290
";

    #[test]
    fn a_real_recovery_to_last_lsn_is_proven() {
        let proof = prove(LOG, 69_304_147, 83_545_535).unwrap();
        assert_eq!(
            proof,
            RecoveryProof {
                checkpoint_lsn: 69_304_147,
                scanned_to_lsn: 83_545_535,
                batches_applied: 1,
                backup_creator_recognised: true,
                started_at_lsn: Some(83_558_290),
            }
        );
    }

    #[test]
    fn a_scan_that_ends_elsewhere_is_refused() {
        assert_eq!(
            prove(LOG, 69_304_147, 83_600_000),
            Err(RecoveryProofError::WrongEnd {
                scanned: 83_545_535,
                last_lsn: 83_600_000
            })
        );
    }

    #[test]
    fn another_checkpoint_is_refused() {
        assert!(matches!(
            prove(LOG, 80_579_576, 83_545_535),
            Err(RecoveryProofError::WrongCheckpoint {
                found: 69_304_147,
                ..
            })
        ));
    }

    #[test]
    fn no_recovery_is_only_fine_when_there_was_nothing_to_apply() {
        let clean = "x [Note] [MY-013883] [InnoDB] The latest found checkpoint is at lsn = 9000 in redo log file f.\n";
        assert_eq!(prove(clean, 9000, 9000).unwrap().scanned_to_lsn, 9000);
        assert_eq!(
            prove(clean, 9000, 9500),
            Err(RecoveryProofError::NoCrashRecovery {
                checkpoint: 9000,
                last_lsn: 9500
            })
        );
        assert_eq!(prove("", 9000, 9000), Err(RecoveryProofError::NoCheckpoint));
    }

    #[test]
    fn a_clean_shutdown_is_found_with_its_lsn() {
        let log = "2026-11-21T20:58:59.260098Z 0 [Note] [MY-012980] [InnoDB] Shutdown completed; log sequence number 83741270\n";
        assert_eq!(shutdown_lsn(log), Some(83_741_270));
        assert_eq!(shutdown_lsn(LOG), None);
    }

    #[test]
    fn a_background_rollback_is_pending_until_it_says_completed() {
        let started = "x [Note] [MY-013014] [InnoDB] Starting in background the rollback of uncommitted transactions\n\
                       x [Note] [MY-013011] [InnoDB] Rolling back trx with id 1668, 8000 rows to undo\n";
        assert!(rollback_pending(started));
        let done = format!(
            "{started}x [Note] [MY-013015] [InnoDB] Rollback of non-prepared transactions completed\n"
        );
        assert!(!rollback_pending(&done));
        assert!(!rollback_pending(LOG));
    }

    #[test]
    fn numbers_are_read_where_they_stand() {
        assert_eq!(number_after("at lsn = 123 in", "lsn = "), Some(123));
        assert_eq!(
            last_number("scanned up to log sequence number 83545535"),
            Some(83_545_535)
        );
        assert_eq!(last_number("no digits"), None);
    }
}
