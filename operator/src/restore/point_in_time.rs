//! A point-in-time restore resolved: pure, from the restore's
//! `source.pointInTime`, the schedule it names (its binlog archive and the
//! archive's status) and the schedule's backups. Picks the base backup (the
//! newest Completed one before the target) and refuses, before anything
//! runs, a target the archive cannot reach as far as the operator can see
//! (the agent checks again against the archive's index when it replays).

use innoxide_agent::binlog::GtidSet;
use innoxide_proto::restore_spec::StopTarget;
use jiff::Timestamp;

use super::source::{self, Source, Unresolved};
use crate::api::{
    BINLOG_ARCHIVE_FOLDER, BackupPhase, BackupStorage, BinlogGapStatus, MySQLBackup,
    MySQLBackupSchedule, MySQLRestore, PointInTime, PointInTimeStatus,
};

/// What a point-in-time restore adds to its source.
#[derive(Debug, Clone, PartialEq)]
pub struct PointInTimeSource {
    pub target: StopTarget,
    /// The binlog archive: the schedule's storage + `/binlogs`.
    pub archive: BackupStorage,
    /// The MySQLBackup the restore starts from.
    pub base_backup: String,
}

impl PointInTimeSource {
    /// The status that names the base and the target.
    pub fn status(&self) -> PointInTimeStatus {
        PointInTimeStatus {
            target: self.target.to_string(),
            base_backup: self.base_backup.clone(),
            archive: self.archive.repository_url(),
            gtid_executed: None,
            transactions_replayed: None,
        }
    }
}

/// The target of a `pointInTime`, checked.
pub fn stop_target(point: &PointInTime) -> Result<StopTarget, String> {
    match (&point.gtid, &point.time, &point.position) {
        (Some(gtid), None, None) => {
            let set: GtidSet = gtid
                .parse()
                .map_err(|e| format!("pointInTime.gtid {gtid:?}: {e}"))?;
            Ok(StopTarget::Gtid(set.to_string()))
        }
        (None, Some(time), None) => Ok(StopTarget::Time(time.0.to_string())),
        (None, None, Some(position)) => {
            let (file, pos) = position
                .rsplit_once(':')
                .and_then(|(f, p)| Some((f, p.parse::<u64>().ok()?)))
                .filter(|(f, _)| !f.is_empty())
                .ok_or_else(|| {
                    format!(
                        "pointInTime.position {position:?}: FILE:POSITION, e.g. binlog.000012:4567"
                    )
                })?;
            Ok(StopTarget::Position {
                file: file.to_owned(),
                position: pos,
            })
        }
        _ => Err("pointInTime: set exactly one of gtid, time or position".into()),
    }
}

/// The source of a point-in-time restore: the base backup (resolved like
/// `source.backupName`) with the archive and the target; `schedule` is the
/// one `pointInTime.scheduleName` names, `backups` its MySQLBackups.
pub fn resolve(
    restore: &MySQLRestore,
    schedule: Option<&MySQLBackupSchedule>,
    backups: &[MySQLBackup],
) -> Result<Source, Unresolved> {
    let Some(point) = restore.spec.source.point_in_time.as_ref() else {
        return Err(fail("InvalidSpec", "source.pointInTime is not set".into()));
    };
    let name = &point.schedule_name;
    let Some(schedule) = schedule else {
        return Err(Unresolved::Wait {
            reason: "ScheduleNotFound",
            message: format!(
                "MySQLBackupSchedule {name} does not exist in this namespace; the restore starts once it exists"
            ),
        });
    };
    if schedule.spec.binlog_archive.is_none() {
        return Err(fail(
            "NoBinlogArchive",
            format!(
                "MySQLBackupSchedule {name} does not archive binlogs (spec.binlogArchive): there is nothing to replay to a point in time. Restore a backup (source.backupName), or turn archiving on and restore to a later point"
            ),
        ));
    }
    let target = stop_target(point).map_err(|m| fail("InvalidTarget", m))?;
    let base = pick_base(&target, backups).map_err(|m| fail("NoBaseBackup", m))?;
    let archive_status = schedule
        .status
        .as_ref()
        .and_then(|s| s.binlog_archive.clone())
        .unwrap_or_default();
    if let StopTarget::Time(text) = &target {
        let at = point.time.as_ref().map(|t| t.0).unwrap_or_default();
        let base_done = completed_at(base).unwrap_or(Timestamp::UNIX_EPOCH);
        if let Some(gap) = archive_status
            .gaps
            .iter()
            .find(|g| gap_between(g, base_done, at))
        {
            return Err(fail(
                "ArchiveGap",
                format!(
                    "the binlog archive of {name} cannot reach {text} from MySQLBackup {}: {}. Restore to a point before the gap, or from a backup taken after it",
                    base.metadata.name.as_deref().unwrap_or_default(),
                    describe_gap(gap)
                ),
            ));
        }
        let latest = archive_status.latest.as_ref().map(|t| t.0);
        if latest.is_none_or(|latest| latest < at) {
            return Err(Unresolved::Wait {
                reason: "ArchiveBehind",
                message: format!(
                    "the binlog archive of {name} reaches {} so far, not yet {text}; the restore starts once it does (archive lag {})",
                    latest.map_or_else(|| "nothing".to_owned(), |t| t.to_string()),
                    archive_status
                        .lag_seconds
                        .map_or_else(|| "unknown".to_owned(), |s| format!("{s:.0}s"))
                ),
            });
        }
    }
    let base_name = base.metadata.name.clone().unwrap_or_default();
    let mut source = source::resolve(restore, Some(base))?;
    source.point_in_time = Some(PointInTimeSource {
        target,
        archive: schedule
            .spec
            .backup_template
            .spec
            .storage
            .child(BINLOG_ARCHIVE_FOLDER),
        base_backup: base_name,
    });
    Ok(source)
}

/// The newest Completed backup before the target, by the rule the CLI's
/// `apply-log --backup-repository` uses too
/// ([`innoxide_agent::prepare::pitr::base`]): its GTID set within the
/// target set, its completion at or before the time (its consistent point
/// comes before it, so such a backup never holds a transaction after the
/// target), its binlog position in the same binlog sequence, not past it.
pub fn pick_base<'a>(
    target: &StopTarget,
    backups: &'a [MySQLBackup],
) -> Result<&'a MySQLBackup, String> {
    use innoxide_agent::binlog::CommitTime;
    use innoxide_agent::prepare::pitr::StopTarget as Target;
    use innoxide_agent::prepare::pitr::base::{BaseCandidate, TargetContext, bases_before};
    let wanted = match target {
        StopTarget::Gtid(text) => {
            Target::Gtid(text.parse().map_err(|e| format!("gtid {text:?}: {e}"))?)
        }
        StopTarget::Time(text) => Target::parse_time(text).map_err(|e| format!("time: {e}"))?,
        StopTarget::Position { file, position } => Target::Position {
            file: file.clone(),
            pos: *position,
        },
    };
    let candidates = backups
        .iter()
        .filter(|b| b.phase() == BackupPhase::Completed && b.metadata.deletion_timestamp.is_none())
        .map(|b| {
            let status = b.status.as_ref();
            BaseCandidate {
                item: b,
                gtid_executed: status
                    .and_then(|s| s.gtid_executed.as_deref())
                    .and_then(|g| g.parse::<GtidSet>().ok()),
                binlog: status
                    .and_then(|s| s.binlog.as_ref())
                    .map(|at| (at.file.clone(), at.position)),
                server_uuid: None,
                finished_at: completed_at(b)
                    .map(|t| CommitTime(u64::try_from(t.as_microsecond()).unwrap_or(0))),
                tie_break: b.metadata.name.clone().unwrap_or_default(),
            }
        });
    bases_before(&wanted, &TargetContext::default(), candidates)
        .into_iter()
        .next()
        .map(|c| c.item)
        .ok_or_else(|| {
            format!(
                "no Completed MySQLBackup of the schedule is before {target}: a point-in-time restore starts from a backup taken before the point. Pick a later point"
            )
        })
}

fn completed_at(backup: &MySQLBackup) -> Option<Timestamp> {
    backup
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0)
}

/// A gap lies between the base and the target: what the replay would need
/// is missing. A gap without times is taken to lie anywhere.
fn gap_between(gap: &BinlogGapStatus, from: Timestamp, to: Timestamp) -> bool {
    let starts = gap.from_time.as_ref().map(|t| t.0);
    let ends = gap.to_time.as_ref().map(|t| t.0);
    starts.is_none_or(|s| s <= to) && ends.is_none_or(|e| e >= from)
}

pub fn describe_gap(gap: &BinlogGapStatus) -> String {
    let mut text = format!("gap ({})", gap.reason);
    if !gap.after_file.is_empty() || !gap.before_file.is_empty() {
        text.push_str(&format!(
            " between {} and {}",
            if gap.after_file.is_empty() {
                "the start"
            } else {
                &gap.after_file
            },
            if gap.before_file.is_empty() {
                "the end"
            } else {
                &gap.before_file
            }
        ));
    }
    if let (Some(from), Some(to)) = (&gap.from_time, &gap.to_time) {
        text.push_str(&format!(" from {} to {}", from.0, to.0));
    }
    if !gap.missing.is_empty() {
        text.push_str(&format!(", missing {}", gap.missing));
    }
    text
}

fn fail(reason: &'static str, message: String) -> Unresolved {
    Unresolved::Fail { reason, message }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::{BinlogArchiveSpec, BinlogArchiveStatus, BinlogPosition};
    use crate::fixtures::{BackupBuilder, RestoreBuilder, ScheduleBuilder, ts};

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn backup(name: &str, done: &str, gtid_end: u64) -> MySQLBackup {
        let mut b = BackupBuilder::named(name)
            .of_schedule("nightly", done)
            .completed_at(done)
            .with_gtid(&format!("{A}:1-{gtid_end}"))
            .build();
        b.status.as_mut().unwrap().binlog = Some(BinlogPosition {
            file: "binlog.000003".into(),
            position: gtid_end * 100,
        });
        b
    }

    fn backups() -> Vec<MySQLBackup> {
        vec![
            backup("d19", "2026-11-19T03:10:00Z", 100),
            backup("d21", "2026-11-21T03:10:00Z", 300),
            backup("d20", "2026-11-20T03:10:00Z", 200),
            BackupBuilder::named("running")
                .of_schedule("nightly", "2026-11-22T03:00:00Z")
                .running_on("db-0")
                .build(),
        ]
    }

    fn name(b: &MySQLBackup) -> &str {
        b.metadata.name.as_deref().unwrap()
    }

    #[test]
    fn a_time_picks_the_newest_backup_completed_at_or_before_it() {
        let all = backups();
        let at = |t: &str| StopTarget::Time(t.into());
        assert_eq!(
            name(pick_base(&at("2026-11-20T12:00:00Z"), &all).unwrap()),
            "d20"
        );
        assert_eq!(
            name(pick_base(&at("2026-11-21T03:10:00Z"), &all).unwrap()),
            "d21"
        );
        let early = pick_base(&at("2026-11-19T03:09:59Z"), &all).unwrap_err();
        assert!(early.contains("no Completed MySQLBackup"), "{early}");
    }

    #[test]
    fn a_gtid_set_picks_the_newest_backup_it_contains() {
        let all = backups();
        let set = |end: u64| StopTarget::Gtid(format!("{A}:1-{end}"));
        assert_eq!(name(pick_base(&set(250), &all).unwrap()), "d20");
        assert_eq!(name(pick_base(&set(300), &all).unwrap()), "d21");
        assert_eq!(name(pick_base(&set(5000), &all).unwrap()), "d21");
        assert!(pick_base(&set(99), &all).is_err());
        // A set of another server holds none of the backups.
        let other = StopTarget::Gtid("4e11fa47-71ca-11e1-9e33-c80aa9429562:1-1000".into());
        assert!(pick_base(&other, &all).is_err());
    }

    #[test]
    fn a_position_picks_the_newest_backup_not_past_it() {
        let all = backups();
        let pos = |file: &str, position: u64| StopTarget::Position {
            file: file.into(),
            position,
        };
        assert_eq!(
            name(pick_base(&pos("binlog.000003", 25_000), &all).unwrap()),
            "d20"
        );
        assert_eq!(
            name(pick_base(&pos("binlog.000004", 4), &all).unwrap()),
            "d21"
        );
        assert!(pick_base(&pos("binlog.000002", 999_999), &all).is_err());
        assert!(pick_base(&pos("other.000009", 4), &all).is_err());
    }

    fn archiving_schedule(latest: &str) -> MySQLBackupSchedule {
        let mut schedule = ScheduleBuilder::cron("0 3 * * *").build();
        schedule.spec.binlog_archive = Some(BinlogArchiveSpec {
            enabled: true,
            upload_interval_seconds: None,
        });
        schedule
            .status
            .get_or_insert_with(Default::default)
            .binlog_archive = Some(BinlogArchiveStatus {
            earliest: Some(Time(ts("2026-11-19T00:00:00Z"))),
            latest: Some(Time(ts(latest))),
            lag_seconds: Some(3.0),
            ..BinlogArchiveStatus::default()
        });
        schedule
    }

    fn pitr(time: &str) -> MySQLRestore {
        RestoreBuilder::to_point_in_time("r", "nightly", time)
            .in_place("db")
            .build()
    }

    #[test]
    fn a_time_in_the_window_resolves_to_the_base_backup_and_the_archive() {
        let schedule = archiving_schedule("2026-11-21T18:00:00Z");
        let source = resolve(&pitr("2026-11-21T17:00:00Z"), Some(&schedule), &backups()).unwrap();
        assert_eq!(source.backup_name, "d21-uidd21");
        assert_eq!(
            source.gtid_executed.as_deref(),
            Some(&*format!("{A}:1-300"))
        );
        let pit = source.point_in_time.unwrap();
        assert_eq!(pit.base_backup, "d21");
        assert_eq!(pit.archive.repository_url(), "s3://bk/binlogs");
        assert_eq!(pit.target, StopTarget::Time("2026-11-21T17:00:00Z".into()));
        let status = pit.status();
        assert_eq!(status.target, "time 2026-11-21T17:00:00Z");
    }

    #[test]
    fn a_time_the_archive_has_not_reached_waits_and_a_gap_fails_naming_it() {
        let mut schedule = archiving_schedule("2026-11-21T12:00:00Z");
        let behind = resolve(&pitr("2026-11-21T17:00:00Z"), Some(&schedule), &backups());
        assert!(
            matches!(&behind, Err(Unresolved::Wait { reason: "ArchiveBehind", message }) if message.contains("2026-11-21T12:00:00Z")),
            "{behind:?}"
        );
        let archive = schedule
            .status
            .as_mut()
            .unwrap()
            .binlog_archive
            .as_mut()
            .unwrap();
        archive.latest = Some(Time(ts("2026-11-22T00:00:00Z")));
        archive.gaps = vec![BinlogGapStatus {
            reason: "PURGED_BEFORE_ARCHIVED".into(),
            after_file: "binlog.000007".into(),
            before_file: "binlog.000009".into(),
            missing: "binlog.000008".into(),
            from_time: Some(Time(ts("2026-11-21T10:00:00Z"))),
            to_time: Some(Time(ts("2026-11-21T11:00:00Z"))),
        }];
        let Err(Unresolved::Fail { reason, message }) =
            resolve(&pitr("2026-11-21T17:00:00Z"), Some(&schedule), &backups())
        else {
            panic!("a gap must fail the restore")
        };
        assert_eq!(reason, "ArchiveGap");
        assert!(
            message.contains("binlog.000007 and binlog.000009")
                && message.contains("PURGED_BEFORE_ARCHIVED"),
            "{message}"
        );
        // Before the gap it can be reached.
        assert!(resolve(&pitr("2026-11-21T09:00:00Z"), Some(&schedule), &backups()).is_ok());
    }

    #[test]
    fn a_schedule_without_an_archive_or_a_missing_one_is_said() {
        let plain = ScheduleBuilder::cron("0 3 * * *").build();
        assert!(matches!(
            resolve(&pitr("2026-11-21T17:00:00Z"), Some(&plain), &backups()),
            Err(Unresolved::Fail {
                reason: "NoBinlogArchive",
                ..
            })
        ));
        assert!(matches!(
            resolve(&pitr("2026-11-21T17:00:00Z"), None, &backups()),
            Err(Unresolved::Wait {
                reason: "ScheduleNotFound",
                ..
            })
        ));
    }

    #[test]
    fn targets_are_checked_and_written_the_way_the_agent_takes_them() {
        let point = |gtid: Option<&str>, position: Option<&str>| PointInTime {
            schedule_name: "nightly".into(),
            gtid: gtid.map(Into::into),
            time: None,
            position: position.map(Into::into),
        };
        assert_eq!(
            stop_target(&point(Some(&format!("{A}:1-5,\n{A}:6-9")), None)).unwrap(),
            StopTarget::Gtid(format!("{A}:1-9"))
        );
        assert!(stop_target(&point(Some("not-a-set"), None)).is_err());
        assert_eq!(
            stop_target(&point(None, Some("binlog.000012:4567"))).unwrap(),
            StopTarget::Position {
                file: "binlog.000012".into(),
                position: 4567
            }
        );
        assert!(stop_target(&point(None, Some(":12"))).is_err());
        assert!(stop_target(&point(None, None)).is_err());
    }
}
