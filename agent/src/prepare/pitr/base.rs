//! Which backup a point-in-time restore starts from: the newest one whose
//! consistent point is at or before the target. Pure and shared: the CLI
//! (`apply-log --backup-repository`) and the operator (a `MySQLRestore`
//! to a point) choose with this one rule.
//!
//! - A GTID set: the backup's `gtid_executed` is a subset of it.
//! - A time: the backup finished at or before it. Its consistent point
//!   comes before its end, so such a backup holds no transaction committed
//!   after the time; one that finished after the time is passed over even
//!   if its point was earlier (a longer replay from an older backup,
//!   never a wrong one).
//! - A position: the backup's binlog coordinates are in the same binlog
//!   sequence (same file name stem, and the same server when both are
//!   known: file names repeat across servers after a failover) and not
//!   past it.
//!
//! Whether the binlogs can reach the target from the chosen backup is the
//! replay's check (the archive's index, then the binlogs themselves).

use crate::binlog::{CommitTime, GtidSet};

use super::target::StopTarget;

/// What the rule needs to know about one backup; `item` is the caller's
/// own handle on it (a repository folder name, a `MySQLBackup`).
#[derive(Debug, Clone)]
pub struct BaseCandidate<T> {
    pub item: T,
    /// None: the backup has no (parsable) GTID set.
    pub gtid_executed: Option<GtidSet>,
    /// The source's binlog file and position at the consistent point.
    pub binlog: Option<(String, u64)>,
    /// The server the backup was taken on, when known.
    pub server_uuid: Option<String>,
    /// When the backup finished (its consistent point is before it).
    pub finished_at: Option<CommitTime>,
    /// Among backups that finished at the same time, the greater is newer.
    pub tie_break: String,
}

/// Extra facts about the target, when the caller knows them.
#[derive(Debug, Clone, Default)]
pub struct TargetContext {
    /// For a position: the server whose binlog file the position is in.
    pub position_server_uuid: Option<String>,
}

/// The backups at or before `target`, newest first (the first is the
/// base; the others are the fallbacks when the binlogs cannot reach the
/// target from it). Empty: none qualifies.
pub fn bases_before<T>(
    target: &StopTarget,
    context: &TargetContext,
    candidates: impl IntoIterator<Item = BaseCandidate<T>>,
) -> Vec<BaseCandidate<T>> {
    let mut qualifying: Vec<BaseCandidate<T>> = candidates
        .into_iter()
        .filter(|c| is_before(c, target, context))
        .collect();
    qualifying.sort_by(|a, b| (b.finished_at, &b.tie_break).cmp(&(a.finished_at, &a.tie_break)));
    qualifying
}

/// The backup's consistent point is at or before the target.
pub fn is_before<T>(
    candidate: &BaseCandidate<T>,
    target: &StopTarget,
    context: &TargetContext,
) -> bool {
    match target {
        StopTarget::Gtid(wanted) => candidate
            .gtid_executed
            .as_ref()
            .is_some_and(|set| set.is_subset(wanted)),
        StopTarget::Time(at) => candidate
            .finished_at
            .is_some_and(|done| done <= CommitTime::from_datetime(*at)),
        StopTarget::Position { file, pos } => {
            let same_server = match (&candidate.server_uuid, &context.position_server_uuid) {
                (Some(ours), Some(theirs)) => ours.eq_ignore_ascii_case(theirs),
                _ => true,
            };
            same_server
                && candidate
                    .binlog
                    .as_ref()
                    .is_some_and(|(f, p)| position_not_after(f, *p, file, *pos))
        }
    }
}

/// `a_file:a_pos` is at or before `b_file:b_pos` in one server's binlog
/// sequence (`binlog.000012`: same stem, numbered suffix).
pub fn position_not_after(a_file: &str, a_pos: u64, b_file: &str, b_pos: u64) -> bool {
    let split = |f: &str| -> Option<(String, u64)> {
        let (stem, number) = f.rsplit_once('.')?;
        Some((stem.to_owned(), number.parse().ok()?))
    };
    match (split(a_file), split(b_file)) {
        (Some((a_stem, a_n)), Some((b_stem, b_n))) if a_stem == b_stem => {
            (a_n, a_pos) <= (b_n, b_pos)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

    /// Finished at `done` seconds, holding A:1-`end`, at binlog.000003:`end`*100.
    fn backup(name: &str, done: u64, end: u64) -> BaseCandidate<String> {
        BaseCandidate {
            item: name.to_owned(),
            gtid_executed: Some(format!("{A}:1-{end}").parse().unwrap()),
            binlog: Some(("binlog.000003".into(), end * 100)),
            server_uuid: Some(A.into()),
            finished_at: Some(CommitTime(done * 1_000_000)),
            tie_break: name.to_owned(),
        }
    }

    fn all() -> Vec<BaseCandidate<String>> {
        vec![
            backup("d19", 1900, 100),
            backup("d21", 2100, 300),
            backup("d20", 2000, 200),
        ]
    }

    fn names(target: &StopTarget, context: &TargetContext) -> Vec<String> {
        bases_before(target, context, all())
            .into_iter()
            .map(|c| c.item)
            .collect()
    }

    fn at(seconds: i64) -> StopTarget {
        StopTarget::Time(time::OffsetDateTime::from_unix_timestamp(seconds).unwrap())
    }

    #[test]
    fn a_time_takes_the_backups_finished_at_or_before_it_newest_first() {
        let none = TargetContext::default();
        assert_eq!(names(&at(2050), &none), ["d20", "d19"]);
        assert_eq!(names(&at(2100), &none), ["d21", "d20", "d19"]);
        assert!(names(&at(1899), &none).is_empty());
    }

    #[test]
    fn a_gtid_set_takes_the_backups_it_contains() {
        let none = TargetContext::default();
        let set = |text: String| StopTarget::Gtid(text.parse().unwrap());
        assert_eq!(names(&set(format!("{A}:1-250")), &none), ["d20", "d19"]);
        assert_eq!(names(&set(format!("{A}:1-300")), &none)[0], "d21");
        assert!(names(&set(format!("{A}:1-99")), &none).is_empty());
        assert!(names(&set(format!("{B}:1-1000")), &none).is_empty());
        // A backup without GTIDs never qualifies.
        let mut blind = backup("x", 1, 1);
        blind.gtid_executed = None;
        assert!(bases_before(&set(format!("{A}:1-9")), &none, [blind]).is_empty());
    }

    #[test]
    fn a_position_takes_the_backups_of_that_binlog_sequence_not_past_it() {
        let none = TargetContext::default();
        let pos = |file: &str, pos| StopTarget::Position {
            file: file.into(),
            pos,
        };
        assert_eq!(names(&pos("binlog.000003", 25_000), &none), ["d20", "d19"]);
        assert_eq!(names(&pos("binlog.000004", 4), &none)[0], "d21");
        assert!(names(&pos("binlog.000002", 999_999), &none).is_empty());
        assert!(names(&pos("other.000009", 4), &none).is_empty());
        // The same file name on another server (after a failover).
        let other = TargetContext {
            position_server_uuid: Some(B.into()),
        };
        assert!(names(&pos("binlog.000004", 4), &other).is_empty());
        let same = TargetContext {
            position_server_uuid: Some(A.to_uppercase()),
        };
        assert_eq!(names(&pos("binlog.000004", 4), &same).len(), 3);
    }
}
