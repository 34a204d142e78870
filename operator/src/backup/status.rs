//! A MySQLBackup's status from what a reconcile observed: pure, so every
//! mapping from the agent's operation to phase, progress, positions and
//! conditions is tested exactly.

use innoxide_proto::agent::v1 as pb;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use std::time::Duration;

use crate::api::{
    BackupPhase, BackupProgress, BinlogPosition, DEFAULT_START_DEADLINE_SECONDS, LsnRange,
    MySQLBackup, MySQLBackupStatus,
};
use crate::conditions::{self, Wanted};
use crate::units;

/// What a reconcile found.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// The backup cannot start yet: a pod, a Secret, another backup.
    Waiting {
        reason: &'static str,
        message: String,
    },
    /// The backup can never work as specified, or the agent lost it.
    Failed {
        reason: &'static str,
        message: String,
    },
    /// The agent's operation, on this pod.
    Operation {
        pod: String,
        operation: Box<pb::Operation>,
    },
}

/// A phase change, told as an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: Option<BackupPhase>,
    pub to: BackupPhase,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

fn time_of(ts: Option<&innoxide_proto::prost_types::Timestamp>) -> Option<Time> {
    ts.and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
        .map(Time)
}

/// The agent's step names, as the status shows them.
pub fn step_name(phase: i32) -> Option<&'static str> {
    Some(match pb::Phase::try_from(phase).ok()? {
        pb::Phase::Unspecified => return None,
        pb::Phase::Connecting => "Connecting",
        pb::Phase::CopyingTablespaces => "CopyingTablespaces",
        pb::Phase::ConsistentPoint => "ConsistentPoint",
        pb::Phase::FinishingRedo => "FinishingRedo",
        pb::Phase::WritingMetadata => "WritingMetadata",
        pb::Phase::Fetching => "Fetching",
        pb::Phase::Verifying => "Verifying",
        pb::Phase::ApplyingLog => "ApplyingLog",
        pb::Phase::Done => "Done",
    })
}

pub fn progress_of(p: &pb::Progress, done: bool) -> BackupProgress {
    BackupProgress {
        step: step_name(p.phase).map(str::to_owned),
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        files_done: p.files_done,
        files_total: p.files_total,
        percent: Some(if done {
            "100%".into()
        } else {
            units::percent(p.bytes_done, p.bytes_total)
        }),
    }
}

/// The status to write, and the transition to tell if the phase changed.
/// `backup_name` and `location` are where the backup goes.
pub fn next_status(
    backup: &MySQLBackup,
    observed: &Observed,
    backup_name: &str,
    location: &str,
    now: Timestamp,
) -> (MySQLBackupStatus, Option<Transition>) {
    let old = backup.status.clone().unwrap_or_default();
    let mut status = MySQLBackupStatus {
        observed_generation: backup.metadata.generation,
        backup_name: Some(backup_name.to_owned()),
        location: Some(location.to_owned()),
        ..old.clone()
    };
    let (phase, ready, progressing, message) = match observed {
        Observed::Waiting { reason, message } => {
            // A started backup that cannot be reached for a while is still
            // running in its agent.
            let phase = match old.phase {
                Some(BackupPhase::Running) => BackupPhase::Running,
                _ => BackupPhase::Pending,
            };
            if phase == BackupPhase::Running {
                status.agent_unreachable_since =
                    old.agent_unreachable_since.clone().or(Some(Time(now)));
            }
            (
                phase,
                Wanted::new("Ready", false, reason, message.clone()),
                Wanted::new(
                    "Progressing",
                    phase == BackupPhase::Running,
                    reason,
                    message.clone(),
                ),
                message.clone(),
            )
        }
        Observed::Failed { reason, message } => {
            status.agent_unreachable_since = None;
            (
                BackupPhase::Failed,
                Wanted::new("Ready", false, reason, message.clone()),
                Wanted::new("Progressing", false, reason, message.clone()),
                message.clone(),
            )
        }
        Observed::Operation { pod, operation } => {
            status.agent_unreachable_since = None;
            status.pod = Some(pod.clone());
            status.start_time = old
                .start_time
                .clone()
                .or_else(|| time_of(operation.created_at.as_ref()))
                .or(Some(Time(now)));
            let state = pb::OperationState::try_from(operation.state)
                .unwrap_or(pb::OperationState::Unspecified);
            let succeeded = state == pb::OperationState::Succeeded;
            if let Some(p) = &operation.progress {
                status.progress = Some(progress_of(p, succeeded));
            }
            match state {
                pb::OperationState::Running | pb::OperationState::Unspecified => {
                    let step = status
                        .progress
                        .as_ref()
                        .and_then(|p| p.step.clone())
                        .unwrap_or_else(|| "Starting".into());
                    let percent = status
                        .progress
                        .as_ref()
                        .and_then(|p| p.percent.clone())
                        .unwrap_or_default();
                    let message = if operation.cancel_requested {
                        format!("stopping on pod {pod} (cancel requested)")
                    } else {
                        format!("{step} on pod {pod}: {percent}")
                    };
                    (
                        BackupPhase::Running,
                        Wanted::new("Ready", false, "Running", message.clone()),
                        Wanted::new("Progressing", true, "Running", message.clone()),
                        message,
                    )
                }
                pb::OperationState::Succeeded => {
                    status.completion_time =
                        time_of(operation.finished_at.as_ref()).or(Some(Time(now)));
                    if let Some(pb::operation::Result::Backup(result)) = &operation.result {
                        apply_result(&mut status, result);
                    }
                    let message = format!(
                        "backup of pod {pod} is complete: {} at {location}",
                        status.size.clone().unwrap_or_else(|| "?".into())
                    );
                    (
                        BackupPhase::Completed,
                        Wanted::new("Ready", true, "Completed", message.clone()),
                        Wanted::new("Progressing", false, "Completed", message.clone()),
                        message,
                    )
                }
                pb::OperationState::Failed | pb::OperationState::Cancelled => {
                    status.completion_time =
                        time_of(operation.finished_at.as_ref()).or(Some(Time(now)));
                    let (reason, text) = match &operation.error {
                        Some(e) => (e.reason.as_str(), e.message.as_str()),
                        None if state == pb::OperationState::Cancelled => {
                            ("CANCELLED", "the backup was cancelled")
                        }
                        None => ("UNKNOWN", "the agent gave no reason"),
                    };
                    let message = format!("backup on pod {pod} failed ({reason}): {text}");
                    let condition_reason = if state == pb::OperationState::Cancelled {
                        "Cancelled"
                    } else {
                        "Failed"
                    };
                    (
                        BackupPhase::Failed,
                        Wanted::new("Ready", false, condition_reason, message.clone()),
                        Wanted::new("Progressing", false, condition_reason, message.clone()),
                        message,
                    )
                }
            }
        }
    };
    status.phase = Some(phase);
    status.message = Some(message.clone());
    status.conditions = conditions::merge(
        &old.conditions,
        &[ready, progressing],
        backup.metadata.generation,
        now,
    );
    let transition = (old.phase != Some(phase)).then(|| Transition {
        from: old.phase,
        to: phase,
        warning: phase == BackupPhase::Failed,
        reason: match phase {
            BackupPhase::Pending => "Pending",
            BackupPhase::Running => "Started",
            BackupPhase::Completed => "Completed",
            BackupPhase::Failed => "Failed",
        },
        message,
    });
    (status, transition)
}

/// A wait that has lasted too long, as the failure it becomes: a backup
/// that could not start within its start deadline (counted from its
/// creation), or a started one whose agent stayed out of reach longer than
/// `agent_lost_timeout`. Anything else is returned unchanged.
pub fn past_deadline(
    backup: &MySQLBackup,
    observed: Observed,
    now: Timestamp,
    agent_lost_timeout: Duration,
) -> Observed {
    let Observed::Waiting { message, .. } = &observed else {
        return observed;
    };
    let waited = |since: Option<&Time>| since.map(|t| elapsed_since(t.0, now)).unwrap_or_default();
    let status = backup.status.clone().unwrap_or_default();
    if backup.phase() == BackupPhase::Running {
        let lost_for = waited(status.agent_unreachable_since.as_ref());
        if lost_for > agent_lost_timeout {
            return Observed::Failed {
                reason: "AgentLost",
                message: format!(
                    "lost the agent of pod {} for over {} while the backup ran ({message}); the backup did not finish: create a new MySQLBackup once the pod is back",
                    status.pod.as_deref().unwrap_or("?"),
                    humantime::format_duration(agent_lost_timeout),
                ),
            };
        }
        return observed;
    }
    let deadline = start_deadline(backup);
    if waited(backup.metadata.creation_timestamp.as_ref()) > deadline {
        return Observed::Failed {
            reason: "StartDeadlineExceeded",
            message: format!(
                "the backup could not start within startDeadlineSeconds ({}s): {message}; fix that and create a new MySQLBackup",
                deadline.as_secs()
            ),
        };
    }
    observed
}

/// Time from `then` to `now`; zero when `then` is later (another clock's
/// stamp, a little ahead of ours).
fn elapsed_since(then: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or_default()
}

/// The backup's start deadline (the spec's or the default).
pub fn start_deadline(backup: &MySQLBackup) -> Duration {
    Duration::from_secs(u64::from(
        backup
            .spec
            .start_deadline_seconds
            .unwrap_or(DEFAULT_START_DEADLINE_SECONDS),
    ))
}

/// How long until a waiting backup that has not started reaches its start
/// deadline (zero once it has).
pub fn until_start_deadline(backup: &MySQLBackup, now: Timestamp) -> Duration {
    let created = backup
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let waited = elapsed_since(created, now);
    start_deadline(backup).saturating_sub(waited)
}

fn apply_result(status: &mut MySQLBackupStatus, result: &pb::BackupResult) {
    status.lsn = Some(LsnRange {
        start: result.start_checkpoint_lsn,
        end: result.to_lsn,
        last: Some(result.last_lsn),
    });
    if !result.binlog_file.is_empty() {
        status.binlog = Some(BinlogPosition {
            file: result.binlog_file.clone(),
            position: result.binlog_position,
        });
    }
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    status.gtid_executed = nonempty(&result.gtid_executed);
    status.server_version = nonempty(&result.server_version);
    status.server_uuid = nonempty(&result.server_uuid);
    status.size_bytes = Some(result.bytes);
    status.size = Some(units::format_bytes(result.bytes));
    if result.backup_type == pb::BackupType::Incremental as i32 {
        // The base names were chosen before the start; the agent adds
        // what only the finished backup knows.
        let incremental = status.incremental.get_or_insert_with(Default::default);
        incremental.from_lsn = Some(result.from_lsn);
        incremental.to_lsn = Some(result.to_lsn);
        if !result.chain.is_empty() {
            incremental.chain = result.chain.iter().map(|l| l.backup_name.clone()).collect();
            incremental.chain_length = u32::try_from(result.chain.len()).ok();
        }
        incremental.changed_pages = match pb::ChangedPages::try_from(result.changed_pages) {
            Ok(pb::ChangedPages::PageTracking) => Some("PageTracking".into()),
            Ok(pb::ChangedPages::FullScan) => Some("FullScan".into()),
            _ => None,
        };
    }
    status.page_tracking_lsn = (result.page_tracking_lsn > 0).then_some(result.page_tracking_lsn);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::find;
    use crate::fixtures::{BackupBuilder, OperationBuilder};

    fn now() -> Timestamp {
        "2026-11-21T18:39:12Z".parse().unwrap()
    }

    fn observe(
        backup: &MySQLBackup,
        observed: Observed,
    ) -> (MySQLBackupStatus, Option<Transition>) {
        next_status(backup, &observed, "nightly", "s3://b/nightly", now())
    }

    #[test]
    fn a_running_operation_shows_its_progress() {
        let backup = BackupBuilder::named("nightly")
            .on_stateful_set("db")
            .storing_in_s3("b", None)
            .build();
        let op = OperationBuilder::running().copying(42, 100).build();
        let (status, transition) = observe(
            &backup,
            Observed::Operation {
                pod: "db-0".into(),
                operation: Box::new(op),
            },
        );
        assert_eq!(status.phase, Some(BackupPhase::Running));
        let progress = status.progress.unwrap();
        assert_eq!((progress.bytes_done, progress.bytes_total), (42, 100));
        assert_eq!(progress.percent.as_deref(), Some("42%"));
        assert_eq!(progress.step.as_deref(), Some("CopyingTablespaces"));
        assert_eq!(status.pod.as_deref(), Some("db-0"));
        assert_eq!(
            find(&status.conditions, "Progressing").unwrap().status,
            "True"
        );
        let t = transition.unwrap();
        assert_eq!(
            (t.from, t.to, t.reason),
            (None, BackupPhase::Running, "Started")
        );
    }

    #[test]
    fn a_succeeded_operation_records_positions_and_size() {
        let backup = BackupBuilder::named("nightly")
            .on_stateful_set("db")
            .storing_in_s3("b", None)
            .running_on("db-0")
            .build();
        let op = OperationBuilder::succeeded()
            .result(|r| {
                r.start_checkpoint_lsn = 1000;
                r.to_lsn = 2000;
                r.last_lsn = 2048;
                r.binlog_file = "binlog.000003".into();
                r.binlog_position = 157;
                r.gtid_executed = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77".into();
                r.bytes = 3 << 29;
            })
            .build();
        let (status, transition) = observe(
            &backup,
            Observed::Operation {
                pod: "db-0".into(),
                operation: Box::new(op),
            },
        );
        assert_eq!(status.phase, Some(BackupPhase::Completed));
        assert_eq!(
            status.lsn,
            Some(LsnRange {
                start: 1000,
                end: 2000,
                last: Some(2048)
            })
        );
        assert_eq!(
            status.binlog,
            Some(BinlogPosition {
                file: "binlog.000003".into(),
                position: 157
            })
        );
        assert_eq!(
            status.gtid_executed.as_deref(),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77")
        );
        assert_eq!(status.size.as_deref(), Some("1.5Gi"));
        assert_eq!(status.progress.unwrap().percent.as_deref(), Some("100%"));
        assert!(status.completion_time.is_some());
        let ready = find(&status.conditions, "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Completed")
        );
        assert_eq!(transition.unwrap().from, Some(BackupPhase::Running));
    }

    #[test]
    fn a_completed_incremental_shows_its_chain_and_lsn_range() {
        let backup = BackupBuilder::named("hourly")
            .on_stateful_set("db")
            .storing_in_s3("b", None)
            .continuing("weekly")
            .running_on("db-0")
            .build();
        let link = |name: &str| pb::ChainLink {
            backup_name: name.into(),
            ..pb::ChainLink::default()
        };
        let op = OperationBuilder::succeeded()
            .result(|r| {
                r.backup_type = pb::BackupType::Incremental as i32;
                r.from_lsn = 1500;
                r.to_lsn = 2000;
                r.chain = vec![link("weekly-uidweekly"), link("hourly")];
                r.changed_pages = pb::ChangedPages::PageTracking as i32;
                r.page_tracking_lsn = 2100;
            })
            .build();
        let (status, _) = observe(
            &backup,
            Observed::Operation {
                pod: "db-0".into(),
                operation: Box::new(op),
            },
        );
        assert_eq!(
            status.incremental,
            Some(crate::api::IncrementalStatus {
                base_name: "weekly".into(),
                base_backup_name: "weekly-uidweekly".into(),
                from_lsn: Some(1500),
                to_lsn: Some(2000),
                chain_length: Some(2),
                chain: vec!["weekly-uidweekly".into(), "hourly".into()],
                changed_pages: Some("PageTracking".into()),
            })
        );
        assert_eq!(status.page_tracking_lsn, Some(2100));
    }

    #[test]
    fn a_failed_operation_says_why_and_warns() {
        let backup = BackupBuilder::named("nightly")
            .on_stateful_set("db")
            .storing_in_s3("b", None)
            .running_on("db-0")
            .build();
        let op = OperationBuilder::failed(
            "REDO_OVERWRITTEN",
            "the redo log wrapped around; raise innodb_redo_log_capacity",
        )
        .build();
        let (status, transition) = observe(
            &backup,
            Observed::Operation {
                pod: "db-0".into(),
                operation: Box::new(op),
            },
        );
        assert_eq!(status.phase, Some(BackupPhase::Failed));
        assert!(status.message.unwrap().contains("REDO_OVERWRITTEN"));
        let t = transition.unwrap();
        assert!(t.warning);
        assert_eq!(t.reason, "Failed");
    }

    #[test]
    fn waiting_keeps_a_started_backup_running_and_an_unstarted_one_pending() {
        let waiting = || Observed::Waiting {
            reason: "AgentUnreachable",
            message: "cannot reach the agent".into(),
        };
        let fresh = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("b", None)
            .build();
        let (status, transition) = observe(&fresh, waiting());
        assert_eq!(status.phase, Some(BackupPhase::Pending));
        assert_eq!(transition.unwrap().to, BackupPhase::Pending);

        let started = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("b", None)
            .running_on("db-0")
            .build();
        let (status, transition) = observe(&started, waiting());
        assert_eq!(status.phase, Some(BackupPhase::Running));
        assert_eq!(transition, None, "no phase change, no event");
        assert_eq!(
            find(&status.conditions, "Ready").unwrap().reason,
            "AgentUnreachable"
        );
    }

    #[test]
    fn the_same_observation_twice_changes_nothing() {
        let backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("b", None)
            .build();
        let op = OperationBuilder::running().copying(10, 100).build();
        let observed = Observed::Operation {
            pod: "db-0".into(),
            operation: Box::new(op),
        };
        let (first, _) = observe(&backup, observed.clone());
        let mut again = backup.clone();
        again.status = Some(first.clone());
        let (second, transition) = next_status(
            &again,
            &observed,
            "nightly",
            "s3://b/nightly",
            now() + jiff::SignedDuration::from_secs(30),
        );
        assert_eq!(first, second, "level-triggered: same input, same status");
        assert_eq!(transition, None);
    }

    fn waiting() -> Observed {
        Observed::Waiting {
            reason: "AgentUnreachable",
            message: "cannot reach the agent in pod db-0: connection refused".into(),
        }
    }

    #[test]
    fn a_backup_that_cannot_start_fails_at_its_start_deadline() {
        let mut backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("b", None)
            .build();
        backup.spec.start_deadline_seconds = Some(30);
        backup.metadata.creation_timestamp =
            Some(Time(now() - jiff::SignedDuration::from_secs(20)));
        let lost = Duration::from_secs(600);
        assert_eq!(past_deadline(&backup, waiting(), now(), lost), waiting());
        let ahead = now() - jiff::SignedDuration::from_secs(3600);
        assert_eq!(
            past_deadline(&backup, waiting(), ahead, lost),
            waiting(),
            "a creation stamp ahead of our clock is no wait at all"
        );
        assert_eq!(
            until_start_deadline(&backup, now()),
            Duration::from_secs(10)
        );
        let later = now() + jiff::SignedDuration::from_secs(11);
        let Observed::Failed { reason, message } = past_deadline(&backup, waiting(), later, lost)
        else {
            panic!("failed at the deadline");
        };
        assert_eq!(reason, "StartDeadlineExceeded");
        assert!(
            message.contains("(30s)") && message.contains("connection refused"),
            "{message}"
        );
    }

    #[test]
    fn a_running_backup_fails_when_its_agent_stays_lost() {
        let backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("b", None)
            .running_on("db-0")
            .build();
        let (status, _) = observe(&backup, waiting());
        assert_eq!(status.phase, Some(BackupPhase::Running));
        assert_eq!(status.agent_unreachable_since, Some(Time(now())));
        let mut lost = backup.clone();
        lost.status = Some(status);
        let timeout = Duration::from_secs(60);
        let soon = now() + jiff::SignedDuration::from_secs(30);
        assert_eq!(past_deadline(&lost, waiting(), soon, timeout), waiting());
        let late = now() + jiff::SignedDuration::from_secs(61);
        let Observed::Failed { reason, message } = past_deadline(&lost, waiting(), late, timeout)
        else {
            panic!("failed after the timeout");
        };
        assert_eq!(reason, "AgentLost");
        assert!(message.contains("db-0"), "{message}");
        // The agent answering again clears the mark.
        let op = OperationBuilder::running().copying(1, 2).build();
        let (status, _) = next_status(
            &lost,
            &Observed::Operation {
                pod: "db-0".into(),
                operation: Box::new(op),
            },
            "b",
            "s3://b/b",
            soon,
        );
        assert_eq!(status.agent_unreachable_since, None);
    }

    #[test]
    fn conditions_carry_the_generation() {
        let backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("b", None)
            .generation(3)
            .build();
        let (status, _) = observe(
            &backup,
            Observed::Failed {
                reason: "InvalidSpec",
                message: "no".into(),
            },
        );
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        assert_eq!(status.observed_generation, Some(3));
    }
}
