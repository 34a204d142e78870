//! What deleting a MySQLBackup must do before its finalizer goes: stop the
//! operation if it may still run, then, with `deletionPolicy: Delete`,
//! delete the data from the object store (the operator does this itself,
//! so it works when the MySQL pod is gone). Pure decisions here; the
//! controller does the I/O.

use std::time::Duration;

use crate::api::{BackupPhase, DeletionPolicy, MySQLBackup};

/// How long a deletion waits for an agent that should answer but does
/// not, before it lets the resource go anyway (with a Warning Event):
/// a finalizer stuck forever is worse than an operation the agent will
/// find cancelled when it comes back.
pub const GIVE_UP_ON_AGENT_AFTER: Duration = Duration::from_secs(10 * 60);

/// What the agent said (or could not say) about the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAnswer {
    /// No pod was ever chosen, or the agent has no such operation.
    Nothing,
    /// The operation is still running (after a cancel was asked).
    Running,
    /// The operation has ended (any terminal state).
    Ended,
    /// The pod is gone or not ready: nothing can run there.
    PodGone,
    /// The pod is there but its agent does not answer.
    Unreachable(String),
}

/// How long a deletion keeps trying to delete data the operator cannot
/// delete (no credentials of its own, e.g. with workload identity only in
/// the agents; a store that refuses) before it lets the resource go and
/// says what it left: a finalizer that never goes would block the
/// namespace's deletion forever.
pub const GIVE_UP_ON_DATA_AFTER: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Wait for the cancelled operation to release the server and remove
    /// its partial output.
    WaitForStop(String),
    /// Delete the backup from the repository.
    DeleteData {
        repository: String,
        backup_name: String,
    },
    /// Deleting the data failed and is tried again later (the message says
    /// why and for how long).
    RetryDataDeletion(String),
    /// Nothing left to do: remove the finalizer.
    Release { warning: Option<String> },
}

/// Whether the operation may be running in an agent: it was started (a pod
/// is pinned) and did not end.
pub fn may_be_running(backup: &MySQLBackup) -> bool {
    let status = backup.status.as_ref();
    status.and_then(|s| s.pod.as_ref()).is_some() && !backup.phase().is_terminal()
}

/// The next step of the cleanup. `answer` is what the agent said after a
/// cancel was asked (only looked at when the operation may be running);
/// `data_deleted` is whether the data has been deleted in this cleanup.
pub fn next_step(
    backup: &MySQLBackup,
    answer: &AgentAnswer,
    deleting_for: Duration,
    data_deleted: bool,
) -> Step {
    let mut warning = None;
    if may_be_running(backup) {
        match answer {
            AgentAnswer::Running => {
                if deleting_for < GIVE_UP_ON_AGENT_AFTER {
                    return Step::WaitForStop("the backup is stopping in its agent".into());
                }
                warning = Some(format!(
                    "the agent did not stop the backup within {}; deleting anyway",
                    humantime::format_duration(GIVE_UP_ON_AGENT_AFTER)
                ));
            }
            AgentAnswer::Unreachable(message) => {
                if deleting_for < GIVE_UP_ON_AGENT_AFTER {
                    return Step::WaitForStop(format!(
                        "cannot reach the agent to cancel the backup: {message}"
                    ));
                }
                warning = Some(format!(
                    "could not reach the agent to cancel the backup for {}: deleting anyway ({message})",
                    humantime::format_duration(GIVE_UP_ON_AGENT_AFTER)
                ));
            }
            AgentAnswer::Nothing | AgentAnswer::Ended | AgentAnswer::PodGone => {}
        }
    }
    let started = backup.status.as_ref().is_some_and(|s| s.pod.is_some());
    if backup.spec.deletion_policy == DeletionPolicy::Delete
        && backup.spec.storage.is_object_store()
        && started
        && !data_deleted
    {
        let backup_name = backup
            .status
            .as_ref()
            .and_then(|s| s.backup_name.clone())
            .unwrap_or_else(|| {
                super::request::backup_name_for(
                    backup.metadata.name.as_deref().unwrap_or_default(),
                    backup.metadata.uid.as_deref().unwrap_or_default(),
                )
            });
        return Step::DeleteData {
            repository: backup.spec.storage.repository_url(),
            backup_name,
        };
    }
    Step::Release { warning }
}

/// After deleting the data failed with `error`: try again later
/// ([`Step::RetryDataDeletion`]), or, past [`GIVE_UP_ON_DATA_AFTER`], let the
/// resource go with a warning that says where the data was left.
pub fn after_failed_data_deletion(
    repository: &str,
    backup_name: &str,
    error: &str,
    deleting_for: Duration,
) -> Step {
    let limit = humantime::format_duration(GIVE_UP_ON_DATA_AFTER);
    if deleting_for < GIVE_UP_ON_DATA_AFTER {
        return Step::RetryDataDeletion(format!(
            "cannot delete backup {backup_name} from {repository}: {error}; retrying for up to {limit} after the deletion began, then the MySQLBackup goes and its data stays"
        ));
    }
    Step::Release {
        warning: Some(format!(
            "could not delete backup {backup_name} from {repository} within {limit} ({error}): the MySQLBackup is gone and its data was left in place; delete it from the store yourself"
        )),
    }
}

/// What a released backup leaves in storage on purpose (`deletionPolicy:
/// Retain`, or a claim the operator cannot reach), said as an Event so
/// nobody has to guess where the data went.
pub fn retained_note(backup: &MySQLBackup) -> Option<String> {
    let status = backup.status.as_ref()?;
    if backup.phase() != BackupPhase::Completed {
        return None;
    }
    let location = status
        .location
        .clone()
        .or_else(|| status.backup_name.clone())?;
    match backup.spec.deletion_policy {
        DeletionPolicy::Retain => Some(format!(
            "deletionPolicy Retain: the backup's data stays at {location}; restore it with a MySQLRestore source.location, delete it from the store when no longer needed"
        )),
        DeletionPolicy::Delete if !backup.spec.storage.is_object_store() => Some(format!(
            "the backup's data stays at {location}: the operator cannot delete from a claim"
        )),
        DeletionPolicy::Delete => None,
    }
}

/// Whether the first look should ask for a cancel.
pub fn should_cancel(backup: &MySQLBackup) -> bool {
    may_be_running(backup) && backup.phase() != BackupPhase::Completed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::BackupBuilder;

    const SOON: Duration = Duration::from_secs(5);
    const LATE: Duration = Duration::from_secs(3600);

    #[test]
    fn a_retained_completed_backup_is_released_at_once() {
        let backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("bk", None)
            .completed_on("db-0")
            .build();
        assert!(!should_cancel(&backup));
        assert_eq!(
            next_step(&backup, &AgentAnswer::Nothing, SOON, false),
            Step::Release { warning: None }
        );
    }

    #[test]
    fn a_deleted_completed_backup_loses_its_data_first() {
        let backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("bk", Some("db1"))
            .deleting_data()
            .completed_on("db-0")
            .build();
        assert_eq!(
            next_step(&backup, &AgentAnswer::Nothing, SOON, false),
            Step::DeleteData {
                repository: "s3://bk/db1".into(),
                backup_name: "b-uidb".into()
            }
        );
        assert_eq!(
            next_step(&backup, &AgentAnswer::Nothing, SOON, true),
            Step::Release { warning: None }
        );
    }

    #[test]
    fn data_the_operator_cannot_delete_holds_deletion_back_only_for_a_while() {
        let soon = after_failed_data_deletion("s3://bk/db1", "b-uidb", "no credentials", SOON);
        let Step::RetryDataDeletion(message) = soon else {
            panic!("retried at first: {soon:?}");
        };
        assert!(
            message.contains("no credentials") && message.contains("10m"),
            "{message}"
        );
        let Step::Release {
            warning: Some(warning),
        } = after_failed_data_deletion("s3://bk/db1", "b-uidb", "no credentials", LATE)
        else {
            panic!("released with a warning after the grace period");
        };
        assert!(
            warning.contains("backup b-uidb from s3://bk/db1") && warning.contains("left in place"),
            "{warning}"
        );
    }

    #[test]
    fn a_retained_backup_says_where_its_data_stays() {
        let mut backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("bk", None)
            .completed_on("db-0")
            .build();
        backup.status.as_mut().unwrap().location = Some("s3://bk/b-uidb".into());
        let note = retained_note(&backup).expect("a note");
        assert!(note.contains("stays at s3://bk/b-uidb"), "{note}");
        backup.spec.deletion_policy = DeletionPolicy::Delete;
        assert_eq!(retained_note(&backup), None, "its data is deleted");
        let never_started = BackupBuilder::named("n")
            .on_stateful_set("db")
            .storing_in_s3("bk", None)
            .build();
        assert_eq!(retained_note(&never_started), None, "nothing was stored");
    }

    #[test]
    fn a_running_backup_is_cancelled_and_waited_for() {
        let backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("bk", None)
            .deleting_data()
            .running_on("db-0")
            .build();
        assert!(should_cancel(&backup));
        assert!(matches!(
            next_step(&backup, &AgentAnswer::Running, SOON, false),
            Step::WaitForStop(_)
        ));
        assert!(matches!(
            next_step(&backup, &AgentAnswer::Ended, SOON, false),
            Step::DeleteData { .. }
        ));
        assert!(
            matches!(
                next_step(&backup, &AgentAnswer::PodGone, SOON, false),
                Step::DeleteData { .. }
            ),
            "the pod is gone, nothing runs there: delete the partial data"
        );
    }

    #[test]
    fn an_unreachable_agent_holds_deletion_back_only_for_a_while() {
        let backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("bk", None)
            .running_on("db-0")
            .build();
        let silent = AgentAnswer::Unreachable("connection refused".into());
        assert!(matches!(
            next_step(&backup, &silent, SOON, false),
            Step::WaitForStop(_)
        ));
        let Step::Release {
            warning: Some(warning),
        } = next_step(&backup, &silent, LATE, false)
        else {
            panic!("released with a warning after the grace period");
        };
        assert!(warning.contains("connection refused"), "{warning}");
    }

    #[test]
    fn a_backup_that_never_started_has_nothing_to_stop_or_delete() {
        let backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("bk", None)
            .deleting_data()
            .build();
        assert!(!should_cancel(&backup));
        assert_eq!(
            next_step(&backup, &AgentAnswer::Nothing, SOON, false),
            Step::Release { warning: None }
        );
    }

    #[test]
    fn claims_are_never_deleted_from_by_the_operator() {
        let mut backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_on_claim("bk", None)
            .completed_on("db-0")
            .build();
        backup.spec.deletion_policy = DeletionPolicy::Delete; // refused by the CRD; pinned here anyway
        assert_eq!(
            next_step(&backup, &AgentAnswer::Nothing, SOON, false),
            Step::Release { warning: None }
        );
    }
}
