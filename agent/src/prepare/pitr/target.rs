//! Where a point-in-time replay stops. Pure: takes the scanned binlog
//! stream, the backup's point and the user's target, and says which
//! transactions are replayed (always a prefix of the stream after the
//! backup: the server's applier runs them in binlog order) and where the
//! relay log is cut, or refuses a target the binlogs cannot reach with
//! the reason and the nearest reachable points.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::stream::{StreamFile, Txn};
use crate::binlog::GtidSet;

/// What a user restores to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopTarget {
    /// The restored `gtid_executed` is exactly this set.
    Gtid(GtidSet),
    /// Every transaction that committed at or before this instant (by its
    /// original commit timestamp), and none after it.
    Time(OffsetDateTime),
    /// Every transaction up to this transaction boundary of the source's
    /// binlog file.
    Position { file: String, pos: u64 },
}

impl StopTarget {
    /// `--stop-position FILE:POS`.
    pub fn parse_position(text: &str) -> Result<StopTarget, String> {
        let (file, pos) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not FILE:POS (e.g. binlog.000007:1234)"))?;
        let pos = pos
            .parse()
            .map_err(|_| format!("{pos:?} in {text:?} is not a byte position"))?;
        if file.is_empty() {
            return Err(format!("{text:?} names no binlog file"));
        }
        Ok(StopTarget::Position {
            file: file.to_owned(),
            pos,
        })
    }

    /// `--stop-datetime`, RFC 3339 (`2026-12-06T20:31:05.25Z`, `…+01:00`).
    pub fn parse_time(text: &str) -> Result<StopTarget, String> {
        OffsetDateTime::parse(text.trim(), &Rfc3339)
            .map(StopTarget::Time)
            .map_err(|e| {
                format!(
                    "{text:?} is not an RFC 3339 time ({e}); write it like 2026-12-06T20:31:05Z or \
                     2026-12-06T21:31:05.250+01:00"
                )
            })
    }
}

impl fmt::Display for StopTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopTarget::Gtid(set) => write!(f, "GTID set {set}"),
            StopTarget::Time(t) => write!(f, "time {}", rfc3339(*t)),
            StopTarget::Position { file, pos } => write!(f, "position {file}:{pos}"),
        }
    }
}

/// The backup the replay continues.
#[derive(Debug, Clone)]
pub struct BackupPoint {
    pub gtid_executed: GtidSet,
    pub binlog_file: String,
    pub binlog_position: u64,
}

/// A transaction, named for a person: GTID, file, bytes, commit time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    pub txn: Txn,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} bytes {}..{}, committed {})",
            self.txn.gtid,
            self.file,
            self.txn.start,
            self.txn.end,
            micros_text(self.txn.committed_micros)
        )
    }
}

/// The relay log to give the applier: stream files `first..=last`, the
/// last one cut at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelaySpan {
    pub first: usize,
    pub last: usize,
    pub end: u64,
}

/// Where the replay stops, and what the prepared data then is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// None when the target is the backup's own point: nothing to replay.
    pub relay: Option<RelaySpan>,
    /// The restored `gtid_executed`.
    pub gtid_executed: GtidSet,
    /// Only the transactions replayed (`gtid_executed` minus the backup's).
    pub replayed: GtidSet,
    pub transactions: u64,
    /// The last transaction replayed.
    pub last: Option<Located>,
    /// The source's binlog coordinates of the restored data.
    pub binlog_file: String,
    pub binlog_position: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "these binlogs are not the history of this backup: {0}; give the binlogs of the server \
         the backup was taken from"
    )]
    NotThisBackup(String),
    #[error(
        "the target lacks transactions the backup already holds ({missing}): it is before the \
         backup; restore from an older backup"
    )]
    GtidBeforeBackup { missing: String },
    #[error("the target holds transactions the binlogs do not have ({missing}); they end at {end}")]
    GtidBeyond { missing: String, end: String },
    #[error(
        "the target set cannot be reached: {skipped} comes before {wanted} in the binlogs but is \
         not in the target (the server's applier replays in binlog order, so a target must hold \
         every transaction before its last one); the nearest reachable sets are {before} and {after}"
    )]
    GtidNotPrefix {
        skipped: String,
        wanted: String,
        before: String,
        after: String,
    },
    #[error(
        "{target} is before the backup: it holds transactions committed after it (the last is \
         {last}); restore from an older backup"
    )]
    TimeBeforeBackup { target: String, last: String },
    #[error(
        "{target} is beyond the binlogs: their last transaction is {last}, and nothing says what \
         was committed after it (give a time at or before it, or the binlogs that follow)"
    )]
    TimeBeyond { target: String, last: String },
    #[error("{file} is not among the binlogs given (they are {first} … {last})")]
    UnknownFile {
        file: String,
        first: String,
        last: String,
    },
    #[error("{file}:{pos} is beyond the binlogs: {file} holds whole transactions up to byte {end}")]
    PositionBeyond { file: String, pos: u64, end: u64 },
    #[error(
        "{file}:{pos} is not a transaction boundary; the nearest are {file}:{before} and {after}"
    )]
    NotBoundary {
        file: String,
        pos: u64,
        before: u64,
        after: String,
    },
    #[error("{file}:{pos} is before the backup's point ({backup}); restore from an older backup")]
    PositionBeforeBackup {
        file: String,
        pos: u64,
        backup: String,
    },
}

/// Resolves `target` on `files` (from [`super::stream::continuing`]).
pub fn resolve(
    files: &[StreamFile],
    backup: &BackupPoint,
    target: &StopTarget,
) -> Result<Cut, TargetError> {
    let split = split_at_backup(files, backup)?;
    let last_new = match target {
        StopTarget::Gtid(set) => by_gtid(files, &split, backup, set)?,
        StopTarget::Time(time) => by_time(files, &split, *time)?,
        StopTarget::Position { file, pos } => by_position(files, &split, backup, file, *pos)?,
    };
    Ok(cut(files, &split, backup, last_new))
}

/// The stream as (file index, transaction), split where the backup ends.
struct Split<'a> {
    /// Transactions the backup already holds (skipped by GTID auto-skip).
    old: Vec<(usize, &'a Txn)>,
    /// Transactions after the backup, in binlog order.
    new: Vec<(usize, &'a Txn)>,
}

fn split_at_backup<'a>(
    files: &'a [StreamFile],
    backup: &BackupPoint,
) -> Result<Split<'a>, TargetError> {
    if files.is_empty() {
        return Ok(Split {
            old: Vec::new(),
            new: Vec::new(),
        });
    }
    let all: Vec<(usize, &Txn)> = files
        .iter()
        .enumerate()
        .flat_map(|(i, f)| f.transactions.iter().map(move |t| (i, t)))
        .collect();
    let held = |t: &Txn| backup.gtid_executed.contains(&t.gtid);
    let first_new = all.iter().position(|(_, t)| !held(t)).unwrap_or(all.len());
    let (old, new) = all.split_at(first_new);
    if let Some((i, t)) = new.iter().find(|(_, t)| held(t)) {
        return Err(TargetError::NotThisBackup(format!(
            "{} is in the backup's set but comes after {}, which is not",
            locate(files, *i, t),
            locate(files, new[0].0, new[0].1)
        )));
    }
    let mut reached = files
        .first()
        .map(|f| f.previous_gtids.clone())
        .unwrap_or_default();
    for (_, t) in old {
        reached.insert(&t.gtid);
    }
    let unexplained = backup.gtid_executed.subtract(&reached);
    if !unexplained.is_empty() {
        return Err(TargetError::NotThisBackup(format!(
            "the backup holds {unexplained}, which these binlogs do not have before their first \
             transaction after it"
        )));
    }
    // Where the backup recorded its position, that file must agree.
    if let Some(f) = files.iter().position(|f| f.name == backup.binlog_file) {
        let file = &files[f];
        let pos = backup.binlog_position;
        let boundary = file.boundaries().contains(&pos);
        let before_held = file.transactions.iter().filter(|t| t.end <= pos).all(&held);
        let after_new = file
            .transactions
            .iter()
            .filter(|t| t.start >= pos)
            .all(|t| !held(t));
        if !(boundary && before_held && after_new) {
            return Err(TargetError::NotThisBackup(format!(
                "the backup's position {}:{pos} is not where its transactions end in {}",
                backup.binlog_file,
                file.path.display()
            )));
        }
    }
    Ok(Split {
        old: old.to_vec(),
        new: new.to_vec(),
    })
}

/// The index in `split.new` of the last transaction to replay (None:
/// none, the backup's own point).
type LastNew = Option<usize>;

fn by_gtid(
    files: &[StreamFile],
    split: &Split,
    backup: &BackupPoint,
    set: &GtidSet,
) -> Result<LastNew, TargetError> {
    let missing = backup.gtid_executed.subtract(set);
    if !missing.is_empty() {
        return Err(TargetError::GtidBeforeBackup {
            missing: missing.to_string(),
        });
    }
    let wanted = set.subtract(&backup.gtid_executed);
    let mut available = GtidSet::new();
    for (_, t) in &split.new {
        available.insert(&t.gtid);
    }
    let beyond = wanted.subtract(&available);
    if !beyond.is_empty() {
        return Err(TargetError::GtidBeyond {
            missing: beyond.to_string(),
            end: stream_end(files, split),
        });
    }
    let Some(last) = split
        .new
        .iter()
        .rposition(|(_, t)| wanted.contains(&t.gtid))
    else {
        return Ok(None);
    };
    if let Some(skip) = split.new[..last]
        .iter()
        .position(|(_, t)| !wanted.contains(&t.gtid))
    {
        let through = |k: Option<usize>| {
            let mut s = backup.gtid_executed.clone();
            for (_, t) in &split.new[..k.map_or(0, |k| k + 1)] {
                s.insert(&t.gtid);
            }
            s.to_string()
        };
        let (i, t) = split.new[skip];
        let (wi, wt) = split.new[last];
        return Err(TargetError::GtidNotPrefix {
            skipped: locate(files, i, t).to_string(),
            wanted: wt.gtid.to_string() + &format!(" ({})", files[wi].name),
            before: through(skip.checked_sub(1)),
            after: through(Some(last)),
        });
    }
    Ok(Some(last))
}

fn by_time(
    files: &[StreamFile],
    split: &Split,
    time: OffsetDateTime,
) -> Result<LastNew, TargetError> {
    let micros = i128::from(time.unix_timestamp()) * 1_000_000 + i128::from(time.microsecond());
    let target = format!("time {}", rfc3339(time));
    let after = |t: &Txn| i128::from(t.committed_micros) > micros;
    if let Some((i, t)) = split.old.last()
        && after(t)
    {
        return Err(TargetError::TimeBeforeBackup {
            target,
            last: locate(files, *i, t).to_string(),
        });
    }
    match split.new.iter().position(|(_, t)| after(t)) {
        Some(first_after) => Ok(first_after.checked_sub(1)),
        None => {
            // No transaction after the target proves the binlogs reach it.
            let last = split.new.last().or(split.old.last());
            match last {
                Some((i, t)) if i128::from(t.committed_micros) == micros => {
                    Ok(split.new.len().checked_sub(1))
                }
                Some((i, t)) => Err(TargetError::TimeBeyond {
                    target,
                    last: locate(files, *i, t).to_string(),
                }),
                None => Err(TargetError::TimeBeyond {
                    target,
                    last: "none (the binlogs hold no transaction)".into(),
                }),
            }
        }
    }
}

fn by_position(
    files: &[StreamFile],
    split: &Split,
    backup: &BackupPoint,
    name: &str,
    pos: u64,
) -> Result<LastNew, TargetError> {
    let Some(f) = files.iter().position(|f| f.name == name) else {
        return Err(TargetError::UnknownFile {
            file: name.to_owned(),
            first: files.first().map(|f| f.name.clone()).unwrap_or_default(),
            last: files.last().map(|f| f.name.clone()).unwrap_or_default(),
        });
    };
    let file = &files[f];
    if pos > file.end && f + 1 == files.len() {
        return Err(TargetError::PositionBeyond {
            file: name.to_owned(),
            pos,
            end: file.end,
        });
    }
    let boundaries = file.boundaries();
    if !boundaries.contains(&pos) {
        let before = boundaries
            .iter()
            .rev()
            .find(|b| **b < pos)
            .copied()
            .unwrap_or(4);
        let after = match boundaries.iter().find(|b| **b > pos) {
            Some(b) => format!("{name}:{b}"),
            None => match files.get(f + 1) {
                Some(next) => format!("{}:{}", next.name, next.header_end),
                None => "none (the binlogs end there)".into(),
            },
        };
        return Err(TargetError::NotBoundary {
            file: name.to_owned(),
            pos,
            before,
            after,
        });
    }
    // Transactions of the stream up to the boundary: those of earlier
    // files and those of this file that end at or before it.
    let through = |(i, t): &(usize, &Txn)| *i < f || (*i == f && t.end <= pos);
    let new_through = split.new.iter().filter(|x| through(x)).count();
    if new_through > 0 {
        return Ok(Some(new_through - 1));
    }
    let old_through = split.old.iter().filter(|x| through(x)).count();
    if old_through == split.old.len() {
        return Ok(None);
    }
    Err(TargetError::PositionBeforeBackup {
        file: name.to_owned(),
        pos,
        backup: format!("{}:{}", backup.binlog_file, backup.binlog_position),
    })
}

fn cut(files: &[StreamFile], split: &Split, backup: &BackupPoint, last_new: LastNew) -> Cut {
    let Some(last) = last_new else {
        return Cut {
            relay: None,
            gtid_executed: backup.gtid_executed.clone(),
            replayed: GtidSet::new(),
            transactions: 0,
            last: None,
            binlog_file: backup.binlog_file.clone(),
            binlog_position: backup.binlog_position,
        };
    };
    let mut replayed = GtidSet::new();
    for (_, t) in &split.new[..=last] {
        replayed.insert(&t.gtid);
    }
    let (first_file, _) = split.new[0];
    let (last_file, last_txn) = split.new[last];
    Cut {
        relay: Some(RelaySpan {
            first: first_file,
            last: last_file,
            end: last_txn.end,
        }),
        gtid_executed: backup.gtid_executed.union(&replayed),
        replayed,
        transactions: last as u64 + 1,
        last: Some(locate(files, last_file, last_txn)),
        binlog_file: files[last_file].name.clone(),
        binlog_position: last_txn.end,
    }
}

fn locate(files: &[StreamFile], file: usize, txn: &Txn) -> Located {
    Located {
        file: files[file].name.clone(),
        txn: txn.clone(),
    }
}

/// The last transaction of the stream, for "beyond" messages.
fn stream_end(files: &[StreamFile], split: &Split) -> String {
    match split.new.last().or(split.old.last()) {
        Some((i, t)) => locate(files, *i, t).to_string(),
        None => "the backup's own point (the binlogs hold no later transaction)".into(),
    }
}

pub fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_else(|_| time.to_string())
}

/// Microseconds since the epoch as RFC 3339 UTC.
pub fn micros_text(micros: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map(rfc3339)
        .unwrap_or_else(|_| format!("{micros} µs after the epoch"))
}

#[cfg(test)]
mod tests {
    use super::super::stream::tests::{U, file, set};
    use super::*;

    /// b.000001: gnos 1-5 at t=100..104 s, the backup after gno 3 (byte
    /// 500); b.000002: gnos 6-10 at t=110..114 s.
    fn stream() -> (Vec<StreamFile>, BackupPoint) {
        let files = vec![
            file("b.000001", "", 1..=5, 100),
            file("b.000002", &format!("{U}:1-5"), 6..=10, 110),
        ];
        let backup = BackupPoint {
            gtid_executed: set(&format!("{U}:1-3")),
            binlog_file: "b.000001".into(),
            binlog_position: 500,
        };
        (files, backup)
    }

    fn at(seconds: i64, micros: i64) -> StopTarget {
        StopTarget::Time(
            OffsetDateTime::from_unix_timestamp(seconds).unwrap()
                + time::Duration::microseconds(micros),
        )
    }

    #[test]
    fn a_gtid_set_is_reached_exactly() {
        let (files, backup) = stream();
        let cut = resolve(&files, &backup, &StopTarget::Gtid(set(&format!("{U}:1-7")))).unwrap();
        assert_eq!(cut.gtid_executed, set(&format!("{U}:1-7")));
        assert_eq!(cut.replayed, set(&format!("{U}:4-7")));
        assert_eq!(cut.transactions, 4);
        assert_eq!(
            cut.relay,
            Some(RelaySpan {
                first: 0,
                last: 1,
                end: 400
            })
        );
        assert_eq!(
            (cut.binlog_file.as_str(), cut.binlog_position),
            ("b.000002", 400)
        );
        // The backup's own set: nothing to replay.
        let cut = resolve(&files, &backup, &StopTarget::Gtid(set(&format!("{U}:1-3")))).unwrap();
        assert_eq!(cut.relay, None);
        assert_eq!(
            (cut.binlog_file.as_str(), cut.binlog_position),
            ("b.000001", 500)
        );
    }

    #[test]
    fn unreachable_gtid_sets_are_refused_with_the_reason() {
        let (files, backup) = stream();
        let refuse =
            |text: String| resolve(&files, &backup, &StopTarget::Gtid(set(&text))).unwrap_err();
        assert!(
            matches!(refuse(format!("{U}:1-2")), TargetError::GtidBeforeBackup { missing } if missing == format!("{U}:3"))
        );
        let err = refuse(format!("{U}:1-12"));
        assert!(
            matches!(&err, TargetError::GtidBeyond { missing, .. } if *missing == format!("{U}:11-12")),
            "{err}"
        );
        let err = refuse(format!("{U}:1-5:7"));
        assert!(
            matches!(&err, TargetError::GtidNotPrefix { before, after, .. }
                if *before == format!("{U}:1-5") && *after == format!("{U}:1-7")),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("{U}:6 (b.000002 bytes 200..300")),
            "{err}"
        );
    }

    #[test]
    fn a_time_takes_every_transaction_committed_at_or_before_it() {
        let (files, backup) = stream();
        // gno 7 committed at 111 s exactly: included; 111.5 s the same.
        for target in [at(111, 0), at(111, 500_000)] {
            let cut = resolve(&files, &backup, &target).unwrap();
            assert_eq!(cut.gtid_executed, set(&format!("{U}:1-7")));
        }
        // Between the backup and the first new transaction: the backup's point.
        let cut = resolve(&files, &backup, &at(102, 500_000)).unwrap();
        assert_eq!(cut.gtid_executed, set(&format!("{U}:1-3")));
        assert_eq!(cut.relay, None);
        // The last transaction's own time is the end of what is known.
        let cut = resolve(&files, &backup, &at(114, 0)).unwrap();
        assert_eq!(cut.gtid_executed, set(&format!("{U}:1-10")));
        assert!(matches!(
            resolve(&files, &backup, &at(114, 1)).unwrap_err(),
            TargetError::TimeBeyond { .. }
        ));
        assert!(matches!(
            resolve(&files, &backup, &at(101, 0)).unwrap_err(),
            TargetError::TimeBeforeBackup { .. }
        ));
    }

    #[test]
    fn a_position_must_be_a_transaction_boundary_after_the_backup() {
        let (files, backup) = stream();
        let position = |file: &str, pos| StopTarget::Position {
            file: file.into(),
            pos,
        };
        let cut = resolve(&files, &backup, &position("b.000002", 300)).unwrap();
        assert_eq!(cut.gtid_executed, set(&format!("{U}:1-6")));
        // The end of a file, and the start of the next, are the same point.
        let end = resolve(&files, &backup, &position("b.000001", 700)).unwrap();
        let start = resolve(&files, &backup, &position("b.000002", 200)).unwrap();
        assert_eq!(end.gtid_executed, set(&format!("{U}:1-5")));
        assert_eq!(start.gtid_executed, end.gtid_executed);
        // The backup's own position.
        assert_eq!(
            resolve(&files, &backup, &position("b.000001", 500))
                .unwrap()
                .relay,
            None
        );
        let err = resolve(&files, &backup, &position("b.000002", 350)).unwrap_err();
        assert_eq!(
            err,
            TargetError::NotBoundary {
                file: "b.000002".into(),
                pos: 350,
                before: 300,
                after: "b.000002:400".into()
            }
        );
        assert!(matches!(
            resolve(&files, &backup, &position("b.000001", 400)).unwrap_err(),
            TargetError::PositionBeforeBackup { .. }
        ));
        assert!(matches!(
            resolve(&files, &backup, &position("b.000002", 800)).unwrap_err(),
            TargetError::PositionBeyond { end: 700, .. }
        ));
        assert!(matches!(
            resolve(&files, &backup, &position("b.000009", 4)).unwrap_err(),
            TargetError::UnknownFile { .. }
        ));
    }

    #[test]
    fn binlogs_of_another_history_are_refused() {
        let (files, mut backup) = stream();
        backup.binlog_position = 450;
        assert!(matches!(
            resolve(&files, &backup, &StopTarget::Gtid(set(&format!("{U}:1-4")))).unwrap_err(),
            TargetError::NotThisBackup(_)
        ));
        let (files, mut backup) = stream();
        backup.gtid_executed = set(&format!("{U}:1-3,4f22fa47-71ca-11e1-9e33-c80aa9429562:1"));
        assert!(matches!(
            resolve(
                &files,
                &backup,
                &StopTarget::Gtid(backup.gtid_executed.clone())
            )
            .unwrap_err(),
            TargetError::NotThisBackup(_)
        ));
    }

    #[test]
    fn targets_parse_from_the_command_line() {
        assert_eq!(
            StopTarget::parse_position("binlog.000007:1234").unwrap(),
            StopTarget::Position {
                file: "binlog.000007".into(),
                pos: 1234
            }
        );
        assert!(StopTarget::parse_position("binlog.000007").is_err());
        assert!(StopTarget::parse_position("binlog.000007:x").is_err());
        let StopTarget::Time(t) = StopTarget::parse_time("2026-12-06T21:31:05.25+01:00").unwrap()
        else {
            panic!()
        };
        assert_eq!(t.unix_timestamp(), 1_796_589_065);
        assert_eq!(t.microsecond(), 250_000);
        assert!(StopTarget::parse_time("2026-12-06 20:31:05").is_err());
    }
}
