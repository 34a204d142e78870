//! What a MySQLBackupSchedule must do now: pure, from the schedule, the
//! backups it owns and the time. Which run is due (and whether it missed
//! its deadline), full or incremental (and which backup an incremental
//! continues), what the concurrency policy allows, which backups retention
//! deletes (the repository's own prune rule, applied to the MySQLBackup
//! objects, then every base a kept incremental needs taken back out), and
//! the status to write.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::cron::Cron;
use crate::api::{
    BackupPhase, BackupType, ConcurrencyPolicy, DeletionPolicy, MySQLBackup, MySQLBackupSchedule,
    MySQLBackupScheduleStatus,
};
use crate::conditions::{self, Wanted};
use crate::units;

/// How far back a schedule looks for a missed run when it has no deadline
/// and many runs were missed (the operator was down for long): only the
/// latest missed run is ever started.
const MAX_MISSED_SEARCH: usize = 1000;
/// How soon a run held back by `Forbid` is looked at again (the end of the
/// running backup also wakes the schedule up).
const HELD_BACK_RECHECK: Duration = Duration::from_secs(30);

/// A schedule checked: its cron and time zone.
#[derive(Debug, Clone)]
pub struct Checked {
    pub cron: Cron,
    /// When incrementals are taken between the fulls.
    pub incremental: Option<Cron>,
    pub tz: TimeZone,
    pub keep_within: Option<Duration>,
}

/// The spec problems the API server cannot see (the cron fields' values,
/// the time zone's name, the age's size): the message tells what to fix.
pub fn check(schedule: &MySQLBackupSchedule, now: Timestamp) -> Result<Checked, String> {
    let spec = &schedule.spec;
    let cron = Cron::parse(&spec.schedule).map_err(|e| e.to_string())?;
    let incremental = match &spec.incremental {
        Some(i) => {
            Some(Cron::parse(&i.schedule).map_err(|e| format!("incremental.schedule: {e}"))?)
        }
        None => None,
    };
    let tz = match spec.time_zone.as_deref() {
        None | Some("") => TimeZone::UTC,
        Some(name) => TimeZone::get(name)
            .map_err(|_| format!("timeZone {name:?} is not a known IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)"))?,
    };
    if cron.next_after(now, &tz).is_none() {
        return Err(format!(
            "schedule {:?} never runs (no such date within five years)",
            spec.schedule
        ));
    }
    let keep_within = match spec.retention.as_ref().and_then(|r| r.max_age.as_deref()) {
        Some(age) => Some(units::parse_age(age).map_err(|e| format!("retention.maxAge: {e}"))?),
        None => None,
    };
    Ok(Checked {
        cron,
        incremental,
        tz,
        keep_within,
    })
}

/// A backup to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBackup {
    pub name: String,
    pub scheduled_at: Timestamp,
    pub backup_type: BackupType,
    /// The MySQLBackup an incremental continues.
    pub base: Option<String>,
}

/// An Event to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub create: Option<NewBackup>,
    /// Running backups to delete first (`Replace`); their finalizer
    /// cancels the operation.
    pub replace: Vec<String>,
    /// Finished backups retention deletes (their finalizer deletes the
    /// data when their deletionPolicy is Delete).
    pub prune: Vec<String>,
    pub notes: Vec<Note>,
    pub status: MySQLBackupScheduleStatus,
    pub requeue_after: Duration,
}

/// What pruning a backup does to its data, said where it happens: a
/// `Retain` backup's data stays in storage (and costs) after its
/// MySQLBackup is gone, so the Event names where.
fn pruned_message(backup: &MySQLBackup) -> String {
    let status = backup.status.clone().unwrap_or_default();
    let location = status
        .location
        .or(status.backup_name)
        .unwrap_or_else(|| "its storage".into());
    let victim = name(backup);
    if backup.phase() == BackupPhase::Failed {
        // A failed backup's partial output is removed when it fails.
        return format!("deleting failed MySQLBackup {victim} (retention)");
    }
    match backup.spec.deletion_policy {
        DeletionPolicy::Retain => format!(
            "deleting MySQLBackup {victim} (retention); deletionPolicy Retain: its data stays at {location} until deleted from the store"
        ),
        DeletionPolicy::Delete => format!(
            "deleting MySQLBackup {victim} and its data at {location} (retention, deletionPolicy Delete)"
        ),
    }
}

/// The name of the backup for the run at `at`: the same on every
/// reconcile, so a create that raced with another is harmless.
pub fn backup_name(schedule: &str, at: Timestamp) -> String {
    format!("{schedule}-{}", at.strftime("%Y%m%d%H%M"))
}

fn started_at(backup: &MySQLBackup) -> Timestamp {
    backup
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn name(backup: &MySQLBackup) -> String {
    backup.metadata.name.clone().unwrap_or_default()
}

fn secs(d: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_secs(d)
}

/// The latest run time of `cron` in (earliest, now], if any.
fn latest_due(
    cron: &Cron,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> Option<Timestamp> {
    let mut due = None;
    let mut cursor = earliest;
    for _ in 0..MAX_MISSED_SEARCH {
        match cron.next_after(cursor, tz) {
            Some(t) if t <= now => {
                due = Some(t);
                cursor = t;
            }
            _ => return due,
        }
    }
    // Very many runs missed: only the latest counts; look for it in the
    // last eight days (every schedule that runs this often runs weekly).
    let recent = now
        .checked_sub(secs(8 * 86_400))
        .unwrap_or(earliest)
        .max(earliest);
    if recent > cursor {
        return latest_due(cron, tz, recent, now).or(due);
    }
    due
}

/// The run due now and its type: the latest of either schedule, and a full
/// whenever a full run is due (a full missed by an outage is not replaced
/// by a later incremental).
fn run_due(
    checked: &Checked,
    earliest: Timestamp,
    now: Timestamp,
) -> Option<(Timestamp, BackupType)> {
    let full = latest_due(&checked.cron, &checked.tz, earliest, now);
    let incremental = checked
        .incremental
        .as_ref()
        .and_then(|cron| latest_due(cron, &checked.tz, earliest, now));
    match (full, incremental) {
        (Some(f), Some(i)) => Some((f.max(i), BackupType::Full)),
        (Some(f), None) => Some((f, BackupType::Full)),
        (None, Some(i)) => Some((i, BackupType::Incremental)),
        (None, None) => None,
    }
}

/// The next run of either schedule.
fn next_run(checked: &Checked, now: Timestamp) -> Option<Timestamp> {
    let full = checked.cron.next_after(now, &checked.tz);
    let incremental = checked
        .incremental
        .as_ref()
        .and_then(|cron| cron.next_after(now, &checked.tz));
    match (full, incremental) {
        (Some(f), Some(i)) => Some(f.min(i)),
        (f, i) => f.or(i),
    }
}

/// The backup an incremental continues: its chosen base, else the one its
/// spec names.
pub fn base_of(backup: &MySQLBackup) -> Option<String> {
    backup
        .status
        .as_ref()
        .and_then(|s| s.incremental.as_ref())
        .map(|i| i.base_name.clone())
        .or_else(|| backup.spec.incremental_base.clone())
}

fn completed_at(backup: &MySQLBackup) -> Timestamp {
    backup
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0)
        .unwrap_or_else(|| started_at(backup))
}

/// Retention's candidates less every backup a kept one needs (its base,
/// the base's base, back to the full), ordered so that a backup comes
/// after every backup that continues it: a chain is deleted from its
/// newest end, and a restore of what is left always finds its bases.
fn keep_chains_whole(candidates: Vec<String>, live: &[&MySQLBackup]) -> Vec<String> {
    let by_name: BTreeMap<String, &MySQLBackup> = live.iter().map(|b| (name(b), *b)).collect();
    let doomed: BTreeSet<&str> = candidates.iter().map(String::as_str).collect();
    let mut needed = BTreeSet::new();
    for kept in live.iter().filter(|b| !doomed.contains(name(b).as_str())) {
        if kept.phase() == BackupPhase::Failed {
            continue;
        }
        let mut base = base_of(kept);
        while let Some(b) = base {
            if !needed.insert(b.clone()) {
                break;
            }
            base = by_name.get(&b).and_then(|b| base_of(b));
        }
    }
    let pruned: Vec<String> = candidates
        .into_iter()
        .filter(|c| !needed.contains(c))
        .collect();
    let mut ordered = Vec::with_capacity(pruned.len());
    let mut placed = BTreeSet::new();
    for victim in &pruned {
        place_after_dependants(victim, &pruned, &by_name, &mut placed, &mut ordered);
    }
    ordered
}

fn place_after_dependants(
    victim: &str,
    pruned: &[String],
    by_name: &BTreeMap<String, &MySQLBackup>,
    placed: &mut BTreeSet<String>,
    ordered: &mut Vec<String>,
) {
    if !placed.insert(victim.to_owned()) {
        return;
    }
    let mut dependants: Vec<&MySQLBackup> = pruned
        .iter()
        .filter_map(|p| by_name.get(p).copied())
        .filter(|b| base_of(b).as_deref() == Some(victim))
        .collect();
    dependants.sort_by_key(|b| std::cmp::Reverse((completed_at(b), name(b))));
    for dependant in dependants {
        place_after_dependants(&name(dependant), pruned, by_name, placed, ordered);
    }
    ordered.push(victim.to_owned());
}

/// Decides what to do. `owned` are the MySQLBackups this schedule made.
pub fn plan(
    schedule: &MySQLBackupSchedule,
    checked: &Checked,
    owned: &[MySQLBackup],
    now: Timestamp,
) -> Plan {
    let spec = &schedule.spec;
    let schedule_name = schedule.metadata.name.clone().unwrap_or_default();
    let old = schedule.status.clone().unwrap_or_default();
    let mut status = MySQLBackupScheduleStatus {
        observed_generation: schedule.metadata.generation,
        ..old.clone()
    };
    let mut notes = Vec::new();
    let mut create = None;
    let mut replace = Vec::new();
    let mut requeue_after = None;

    let live: Vec<&MySQLBackup> = owned
        .iter()
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        .collect();
    let active: Vec<&MySQLBackup> = live
        .iter()
        .copied()
        .filter(|b| !b.phase().is_terminal())
        .collect();

    let created = schedule
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    // The latest run since the last one is found even past its deadline,
    // so a missed run is told (and recorded) rather than silently passed.
    let earliest = old
        .last_schedule_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(created);
    let due = if spec.suspend {
        None
    } else {
        run_due(checked, earliest, now)
    };

    let mut held_back = None;
    if let Some((at, due_type)) = due {
        let late = now.duration_since(at);
        let missed = spec
            .starting_deadline_seconds
            .is_some_and(|d| late > secs(d));
        let name = backup_name(&schedule_name, at);
        if missed {
            notes.push(Note {
                warning: true,
                reason: "MissedSchedule",
                message: format!(
                    "skipped the run of {at}: it could not start within startingDeadlineSeconds ({}s)",
                    spec.starting_deadline_seconds.unwrap_or_default()
                ),
            });
            status.last_schedule_time = Some(Time(at));
        } else if owned
            .iter()
            .any(|b| b.metadata.name.as_deref() == Some(name.as_str()))
        {
            // Made already (by an earlier reconcile whose status write was lost).
            status.last_schedule_time = Some(Time(at));
        } else {
            match (spec.concurrency_policy, active.is_empty()) {
                (ConcurrencyPolicy::Forbid, false) => {
                    let running: Vec<String> = active.iter().map(|b| name_of(b)).collect();
                    held_back = Some(format!(
                        "the run of {at} waits: {} still running (concurrencyPolicy Forbid)",
                        running.join(", ")
                    ));
                    requeue_after = Some(HELD_BACK_RECHECK);
                }
                (policy, _) => {
                    if policy == ConcurrencyPolicy::Replace {
                        replace = active.iter().map(|b| name_of(b)).collect();
                        for victim in &replace {
                            notes.push(Note {
                                warning: false,
                                reason: "Replaced",
                                message: format!("deleting running backup {victim} for the run of {at} (concurrencyPolicy Replace)"),
                            });
                        }
                    }
                    // An incremental continues the newest completed backup
                    // of this schedule; with none, the chain starts here.
                    let base = (due_type == BackupType::Incremental)
                        .then(|| {
                            live.iter()
                                .filter(|b| b.phase() == BackupPhase::Completed)
                                .max_by_key(|b| (completed_at(b), name_of(b)))
                                .map(|b| name_of(b))
                        })
                        .flatten();
                    let (backup_type, what) = match (&base, due_type) {
                        (Some(base), _) => (
                            BackupType::Incremental,
                            format!("an incremental continuing {base}"),
                        ),
                        (None, BackupType::Incremental) => (
                            BackupType::Full,
                            "a full backup: no completed backup to continue yet".to_owned(),
                        ),
                        (None, BackupType::Full) => (BackupType::Full, "a full backup".to_owned()),
                    };
                    notes.push(Note {
                        warning: false,
                        reason: "BackupCreated",
                        message: format!("created MySQLBackup {name} ({what}) for the run of {at}"),
                    });
                    create = Some(NewBackup {
                        name: name.clone(),
                        scheduled_at: at,
                        backup_type,
                        base,
                    });
                    status.last_schedule_time = Some(Time(at));
                }
            }
        }
    }

    // Retention waits while the schedule is paused: a paused schedule
    // never loses its last backups to maxAge.
    let mut prune = Vec::new();
    if let Some(retention) = spec.retention.as_ref().filter(|_| !spec.suspend) {
        let mut completed: Vec<(String, SystemTime)> = live
            .iter()
            .filter(|b| b.phase() == BackupPhase::Completed)
            .map(|b| {
                let done = b
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .map(|t| t.0)
                    .unwrap_or_else(|| started_at(b));
                (name(b), SystemTime::from(done))
            })
            .collect();
        completed.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        // The newest completed backup is always kept, whatever maxAge says.
        let keep_last = Some(retention.keep_last.unwrap_or(1).max(1) as usize);
        prune = keep_chains_whole(
            innoxide_agent::repo::lifecycle::plan_prune(
                &completed,
                keep_last,
                checked.keep_within,
                SystemTime::from(now),
            ),
            &live,
        );
        let mut failed: Vec<&MySQLBackup> = live
            .iter()
            .copied()
            .filter(|b| b.phase() == BackupPhase::Failed)
            .collect();
        failed.sort_by_key(|b| (started_at(b), name(b)));
        let extra = failed.len().saturating_sub(retention.keep_failed as usize);
        prune.extend(failed.iter().take(extra).map(|b| name(b)));
        for victim in &prune {
            let message = match live.iter().find(|b| name(b) == *victim) {
                Some(backup) => pruned_message(backup),
                None => format!("deleting MySQLBackup {victim} (retention)"),
            };
            notes.push(Note {
                warning: false,
                reason: "Pruned",
                message,
            });
        }
    }

    let newest_success = live
        .iter()
        .filter(|b| b.phase() == BackupPhase::Completed)
        .filter_map(|b| {
            b.status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .map(|t| t.0)
        })
        .max();
    status.last_successful_time = match (
        old.last_successful_time.as_ref().map(|t| t.0),
        newest_success,
    ) {
        (Some(a), Some(b)) => Some(Time(a.max(b))),
        (a, b) => a.or(b).map(Time),
    };
    let mut active_names: Vec<String> = active
        .iter()
        .map(|b| name(b))
        .filter(|n| !replace.contains(n))
        .chain(create.iter().map(|c| c.name.clone()))
        .collect();
    active_names.sort();
    status.active = active_names;
    status.last_backup = create
        .as_ref()
        .map(|c| c.name.clone())
        .or_else(|| {
            live.iter()
                .max_by_key(|b| (started_at(b), name(b)))
                .map(|b| name(b))
        })
        .or(old.last_backup.clone());

    let next = if spec.suspend {
        None
    } else {
        next_run(checked, now)
    };
    status.next_schedule_time = next.map(Time);
    let ready = match (&held_back, spec.suspend, next) {
        (Some(message), _, _) => Wanted::new("Ready", true, "HeldBack", message.clone()),
        (None, true, _) => Wanted::new(
            "Ready",
            true,
            "Suspended",
            "suspended: no new backups, no retention",
        ),
        (None, false, Some(next)) => {
            Wanted::new("Ready", true, "Scheduled", format!("next run at {next}"))
        }
        (None, false, None) => {
            Wanted::new("Ready", false, "NeverRuns", "the schedule has no next run")
        }
    };
    status.conditions =
        conditions::merge(&old.conditions, &[ready], schedule.metadata.generation, now);

    let until_next = next
        .map(|n| n.duration_since(now).unsigned_abs())
        .unwrap_or(Duration::from_secs(3600))
        .max(Duration::from_secs(1));
    Plan {
        create,
        replace,
        prune,
        notes,
        status,
        requeue_after: requeue_after.map_or(until_next, |r| r.min(until_next)),
    }
}

fn name_of(backup: &MySQLBackup) -> String {
    name(backup)
}

/// The conditions and status of a schedule whose spec cannot be followed.
pub fn invalid_status(
    schedule: &MySQLBackupSchedule,
    message: &str,
    now: Timestamp,
) -> MySQLBackupScheduleStatus {
    let old = schedule.status.clone().unwrap_or_default();
    MySQLBackupScheduleStatus {
        observed_generation: schedule.metadata.generation,
        conditions: conditions::merge(
            &old.conditions,
            &[Wanted::new("Ready", false, "InvalidSpec", message)],
            schedule.metadata.generation,
            now,
        ),
        next_schedule_time: None,
        ..old
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{BackupBuilder, ScheduleBuilder, ts};

    fn plan_at(schedule: &MySQLBackupSchedule, owned: &[MySQLBackup], now: &str) -> Plan {
        let checked = check(schedule, ts(now)).unwrap();
        plan(schedule, &checked, owned, ts(now))
    }

    fn running(name: &str) -> MySQLBackup {
        BackupBuilder::named(name)
            .of_schedule("nightly", "2026-11-20T03:00:00Z")
            .running_on("db-0")
            .build()
    }

    fn completed(name: &str, at: &str) -> MySQLBackup {
        BackupBuilder::named(name)
            .of_schedule("nightly", at)
            .completed_at(at)
            .build()
    }

    fn failed(name: &str, at: &str) -> MySQLBackup {
        BackupBuilder::named(name)
            .of_schedule("nightly", at)
            .failed()
            .build()
    }

    #[test]
    fn nothing_is_due_before_the_first_run() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .created_at("2026-11-21T12:00:00Z")
            .build();
        let p = plan_at(&schedule, &[], "2026-11-21T18:00:00Z");
        assert_eq!(p.create, None);
        assert_eq!(
            p.status.next_schedule_time,
            Some(Time(ts("2026-11-22T03:00:00Z")))
        );
        assert_eq!(p.requeue_after, Duration::from_secs(9 * 3600));
    }

    #[test]
    fn a_due_run_creates_a_backup_named_after_its_time() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-20T03:00:00Z")
            .build();
        let p = plan_at(&schedule, &[], "2026-11-21T03:00:05Z");
        assert_eq!(
            p.create,
            Some(NewBackup {
                name: "nightly-202611210300".into(),
                scheduled_at: ts("2026-11-21T03:00:00Z"),
                backup_type: BackupType::Full,
                base: None,
            })
        );
        assert_eq!(
            p.status.last_schedule_time,
            Some(Time(ts("2026-11-21T03:00:00Z")))
        );
        assert_eq!(p.status.active, ["nightly-202611210300"]);
        assert!(p.notes.iter().any(|n| n.reason == "BackupCreated"));
    }

    #[test]
    fn after_an_outage_only_the_latest_missed_run_starts() {
        let schedule = ScheduleBuilder::cron("0 * * * *")
            .last_scheduled("2026-11-20T00:00:00Z")
            .build();
        let p = plan_at(&schedule, &[], "2026-11-21T18:30:00Z");
        assert_eq!(p.create.unwrap().scheduled_at, ts("2026-11-21T18:00:00Z"));
    }

    #[test]
    fn a_run_past_its_starting_deadline_is_skipped_with_a_warning() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-20T03:00:00Z")
            .deadline_seconds(600)
            .build();
        let on_time = plan_at(&schedule, &[], "2026-11-21T03:09:00Z");
        assert!(on_time.create.is_some());
        let late = plan_at(&schedule, &[], "2026-11-21T03:11:00Z");
        assert_eq!(late.create, None);
        assert_eq!(
            late.status.last_schedule_time,
            Some(Time(ts("2026-11-21T03:00:00Z")))
        );
        assert!(
            late.notes
                .iter()
                .any(|n| n.warning && n.reason == "MissedSchedule")
        );
    }

    #[test]
    fn a_suspended_schedule_makes_nothing_and_prunes_nothing() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-01T03:00:00Z")
            .max_age("1d")
            .suspended()
            .build();
        let old = [completed("old", "2026-11-02T03:00:00Z")];
        let p = plan_at(&schedule, &old, "2026-11-21T03:00:05Z");
        assert_eq!((p.create, p.prune.len()), (None, 0));
        assert_eq!(p.status.next_schedule_time, None);
        assert_eq!(p.status.conditions[0].reason, "Suspended");
    }

    #[test]
    fn forbid_holds_the_run_back_while_a_backup_runs() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-20T03:00:00Z")
            .build();
        let p = plan_at(
            &schedule,
            &[running("nightly-202611200300")],
            "2026-11-21T03:00:05Z",
        );
        assert_eq!(p.create, None);
        assert_eq!(
            p.status.last_schedule_time,
            Some(Time(ts("2026-11-20T03:00:00Z"))),
            "not recorded: it starts once the running one ends"
        );
        assert_eq!(p.requeue_after, HELD_BACK_RECHECK);
        assert!(
            p.status.conditions[0]
                .message
                .contains("nightly-202611200300 still running")
        );
        // The running one ends: the held-back run starts.
        let p = plan_at(
            &schedule,
            &[completed("nightly-202611200300", "2026-11-21T03:20:00Z")],
            "2026-11-21T03:20:05Z",
        );
        assert_eq!(p.create.unwrap().scheduled_at, ts("2026-11-21T03:00:00Z"));
    }

    #[test]
    fn replace_deletes_the_running_backup_and_starts_the_new_one() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-20T03:00:00Z")
            .concurrency(ConcurrencyPolicy::Replace)
            .build();
        let p = plan_at(
            &schedule,
            &[running("nightly-202611200300")],
            "2026-11-21T03:00:05Z",
        );
        assert_eq!(p.replace, ["nightly-202611200300"]);
        assert_eq!(p.create.unwrap().name, "nightly-202611210300");
        assert_eq!(p.status.active, ["nightly-202611210300"]);
    }

    #[test]
    fn allow_starts_beside_a_running_backup() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-20T03:00:00Z")
            .concurrency(ConcurrencyPolicy::Allow)
            .build();
        let p = plan_at(
            &schedule,
            &[running("nightly-202611200300")],
            "2026-11-21T03:00:05Z",
        );
        assert!(p.replace.is_empty());
        assert_eq!(
            p.status.active,
            ["nightly-202611200300", "nightly-202611210300"]
        );
    }

    #[test]
    fn a_backup_already_made_for_the_run_is_not_made_twice() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-20T03:00:00Z")
            .build();
        let p = plan_at(
            &schedule,
            &[running("nightly-202611210300")],
            "2026-11-21T03:00:09Z",
        );
        assert_eq!(p.create, None);
        assert_eq!(
            p.status.last_schedule_time,
            Some(Time(ts("2026-11-21T03:00:00Z")))
        );
    }

    #[test]
    fn retention_keeps_the_newest_and_deletes_the_rest() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-21T03:00:00Z")
            .keep_last(2)
            .build();
        let owned = [
            completed("d18", "2026-11-18T03:10:00Z"),
            completed("d20", "2026-11-20T03:10:00Z"),
            completed("d19", "2026-11-19T03:10:00Z"),
            completed("d21", "2026-11-21T03:10:00Z"),
            running("d22"),
        ];
        let p = plan_at(&schedule, &owned, "2026-11-21T12:00:00Z");
        assert_eq!(p.prune, ["d18", "d19"]);
        assert_eq!(
            p.status.last_successful_time,
            Some(Time(ts("2026-11-21T03:10:00Z")))
        );
    }

    #[test]
    fn pruning_says_what_becomes_of_the_data() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-21T03:00:00Z")
            .keep_last(1)
            .build();
        let mut retained = completed("d19", "2026-11-19T03:10:00Z");
        retained.status.as_mut().unwrap().location = Some("s3://bk/db/d19-uidd19".into());
        let mut deleted = completed("d20", "2026-11-20T03:10:00Z");
        deleted.spec.deletion_policy = DeletionPolicy::Delete;
        deleted.status.as_mut().unwrap().location = Some("s3://bk/db/d20-uidd20".into());
        let owned = [retained, deleted, completed("d21", "2026-11-21T03:10:00Z")];
        let p = plan_at(&schedule, &owned, "2026-11-21T12:00:00Z");
        assert_eq!(p.prune, ["d19", "d20"]);
        let said: Vec<&str> = p
            .notes
            .iter()
            .filter(|n| n.reason == "Pruned")
            .map(|n| n.message.as_str())
            .collect();
        assert_eq!(
            said,
            [
                "deleting MySQLBackup d19 (retention); deletionPolicy Retain: its data stays at s3://bk/db/d19-uidd19 until deleted from the store",
                "deleting MySQLBackup d20 and its data at s3://bk/db/d20-uidd20 (retention, deletionPolicy Delete)",
            ]
        );
    }

    #[test]
    fn max_age_never_deletes_the_newest_completed_backup() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-21T03:00:00Z")
            .max_age("2d")
            .build();
        // Backups have failed for a week: the last good one stays.
        let owned = [
            completed("d10", "2026-11-10T03:10:00Z"),
            completed("d12", "2026-11-12T03:10:00Z"),
            failed("d20", "2026-11-20T03:00:00Z"),
        ];
        let p = plan_at(&schedule, &owned, "2026-11-21T12:00:00Z");
        assert_eq!(p.prune, ["d10"]);
    }

    #[test]
    fn only_the_newest_failed_backups_are_kept() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-21T03:00:00Z")
            .keep_last(5)
            .keep_failed(1)
            .build();
        let owned = [
            failed("f19", "2026-11-19T03:00:00Z"),
            failed("f21", "2026-11-21T03:00:00Z"),
            failed("f20", "2026-11-20T03:00:00Z"),
        ];
        assert_eq!(
            plan_at(&schedule, &owned, "2026-11-21T12:00:00Z").prune,
            ["f19", "f20"]
        );
    }

    #[test]
    fn backups_being_deleted_count_for_nothing() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .last_scheduled("2026-11-20T03:00:00Z")
            .build();
        let leaving = BackupBuilder::named("x")
            .of_schedule("nightly", "2026-11-20T03:00:00Z")
            .running_on("db-0")
            .being_deleted()
            .build();
        let p = plan_at(&schedule, &[leaving], "2026-11-21T03:00:05Z");
        assert!(
            p.create.is_some(),
            "a backup on its way out does not hold a Forbid schedule back"
        );
    }

    #[test]
    fn schedules_follow_their_time_zone() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .in_zone("America/New_York")
            .last_scheduled("2026-11-20T08:00:00Z")
            .build();
        let p = plan_at(&schedule, &[], "2026-11-21T08:00:30Z");
        assert_eq!(p.create.unwrap().name, "nightly-202611210800");
    }

    fn incremental(name: &str, base: &str, at: &str) -> MySQLBackup {
        BackupBuilder::named(name)
            .of_schedule("nightly", at)
            .incremental(Some(base))
            .completed_at(at)
            .build()
    }

    /// Fulls on Sundays at 03:00, incrementals every hour.
    fn weekly_and_hourly() -> ScheduleBuilder {
        ScheduleBuilder::cron("0 3 * * 0").incrementals("0 * * * *")
    }

    #[test]
    fn incrementals_run_between_the_fulls_and_continue_the_newest_backup() {
        // Sunday 2026-11-22.
        let schedule = weekly_and_hourly()
            .last_scheduled("2026-11-22T03:00:00Z")
            .build();
        let owned = [
            completed("nightly-202611220300", "2026-11-22T03:20:00Z"),
            failed("nightly-old", "2026-11-22T03:30:00Z"),
        ];
        let p = plan_at(&schedule, &owned, "2026-11-22T04:00:05Z");
        let new = p.create.unwrap();
        assert_eq!(
            (new.name.as_str(), new.backup_type, new.base.as_deref()),
            (
                "nightly-202611220400",
                BackupType::Incremental,
                Some("nightly-202611220300")
            )
        );
        assert!(p.notes.iter().any(|n| {
            n.message
                .contains("an incremental continuing nightly-202611220300")
        }));
        assert_eq!(
            p.status.next_schedule_time,
            Some(Time(ts("2026-11-22T05:00:00Z")))
        );

        // The next incremental continues the last one.
        let owned = [
            completed("nightly-202611220300", "2026-11-22T03:20:00Z"),
            incremental(
                "nightly-202611220400",
                "nightly-202611220300",
                "2026-11-22T04:02:00Z",
            ),
        ];
        let schedule = weekly_and_hourly()
            .last_scheduled("2026-11-22T04:00:00Z")
            .build();
        let new = plan_at(&schedule, &owned, "2026-11-22T05:00:05Z")
            .create
            .unwrap();
        assert_eq!(new.base.as_deref(), Some("nightly-202611220400"));
    }

    #[test]
    fn a_full_wins_when_both_are_due_and_the_first_run_is_always_a_full() {
        let schedule = weekly_and_hourly()
            .last_scheduled("2026-11-22T02:00:00Z")
            .build();
        let owned = [completed("nightly-202611220200", "2026-11-22T02:05:00Z")];
        let new = plan_at(&schedule, &owned, "2026-11-22T03:00:05Z")
            .create
            .unwrap();
        assert_eq!((new.backup_type, new.base), (BackupType::Full, None));

        // Nothing completed yet: the hourly run starts the chain with a full.
        let fresh = weekly_and_hourly()
            .created_at("2026-11-23T09:30:00Z")
            .build();
        let p = plan_at(
            &fresh,
            &[failed("f", "2026-11-23T09:40:00Z")],
            "2026-11-23T10:00:05Z",
        );
        let new = p.create.unwrap();
        assert_eq!((new.backup_type, new.base), (BackupType::Full, None));
        assert!(
            p.notes
                .iter()
                .any(|n| n.message.contains("no completed backup to continue yet"))
        );
    }

    #[test]
    fn retention_never_deletes_a_base_a_kept_incremental_needs() {
        let schedule = weekly_and_hourly()
            .last_scheduled("2026-11-22T06:00:00Z")
            .keep_last(2)
            .build();
        // Two chains: w1 ← h1 ← h2 (last week's) and w2 ← h3 ← h4, plus a
        // running incremental continuing h4.
        let owned = [
            completed("w1", "2026-11-15T03:10:00Z"),
            incremental("h1", "w1", "2026-11-15T04:01:00Z"),
            incremental("h2", "h1", "2026-11-15T05:01:00Z"),
            completed("w2", "2026-11-22T03:10:00Z"),
            incremental("h3", "w2", "2026-11-22T04:01:00Z"),
            incremental("h4", "h3", "2026-11-22T05:01:00Z"),
            BackupBuilder::named("h5")
                .of_schedule("nightly", "2026-11-22T06:00:00Z")
                .continuing("h4")
                .running_on("db-0")
                .build(),
        ];
        let p = plan_at(&schedule, &owned, "2026-11-22T06:00:30Z");
        // keepLast 2 keeps h3 and h4; their chain back to w2 stays whole.
        // The old chain goes, its newest end first.
        assert_eq!(p.prune, ["h2", "h1", "w1"]);
    }

    #[test]
    fn a_chain_outside_retention_is_kept_while_an_incremental_of_it_is_kept() {
        let schedule = weekly_and_hourly()
            .last_scheduled("2026-11-22T06:00:00Z")
            .max_age("2h")
            .build();
        // Only h2 is young enough, and it needs h1 and w1: nothing goes.
        let owned = [
            completed("w1", "2026-11-15T03:10:00Z"),
            incremental("h1", "w1", "2026-11-15T04:01:00Z"),
            incremental("h2", "h1", "2026-11-22T05:01:00Z"),
        ];
        assert!(
            plan_at(&schedule, &owned, "2026-11-22T06:00:30Z")
                .prune
                .is_empty()
        );
        // A base chosen when the incremental started (not named in its
        // spec) is protected the same way.
        let owned = [
            completed("w1", "2026-11-15T03:10:00Z"),
            BackupBuilder::named("h1")
                .of_schedule("nightly", "2026-11-22T05:00:00Z")
                .continuing("w1")
                .completed_at("2026-11-22T05:01:00Z")
                .build(),
            completed("x", "2026-11-14T03:10:00Z"),
        ];
        assert_eq!(
            plan_at(&schedule, &owned, "2026-11-22T06:00:30Z").prune,
            ["x"]
        );
    }

    #[test]
    fn specs_the_api_server_cannot_check_are_refused_with_a_message() {
        let now = ts("2026-11-21T00:00:00Z");
        let message = |s: MySQLBackupSchedule| check(&s, now).unwrap_err();
        assert!(message(ScheduleBuilder::cron("0 25 * * *").build()).contains("hour field"));
        assert!(
            message(
                ScheduleBuilder::cron("0 3 * * *")
                    .in_zone("Mars/Olympus")
                    .build()
            )
            .contains("IANA")
        );
        assert!(message(ScheduleBuilder::cron("0 0 31 2 *").build()).contains("never runs"));
        assert!(
            message(
                ScheduleBuilder::cron("@weekly")
                    .incrementals("0 * * *")
                    .build()
            )
            .starts_with("incremental.schedule: ")
        );
        let invalid = invalid_status(&ScheduleBuilder::cron("x").build(), "bad", now);
        assert_eq!(invalid.conditions[0].reason, "InvalidSpec");
        assert_eq!(invalid.conditions[0].status, "False");
    }
}
