//! Which backup an Incremental continues: pure, from its spec and the
//! MySQLBackups of its namespace. Chosen once, before the backup starts,
//! and kept in its status: the agent's operation is keyed by the backup's
//! UID, so a base chosen again later could not change what runs.
//!
//! The base is the backup the spec names, else the newest Completed backup
//! of the same MySQL and storage (a chain lives in one repository). The
//! incremental runs on the base's pod: it must continue the same server.

use kube::ResourceExt;

use super::request::backup_name_for;
use super::status::Observed;
use crate::api::{BackupPhase, BackupType, IncrementalStatus, MySQLBackup};

/// The base chosen, and the pod the incremental runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub incremental: IncrementalStatus,
    pub pod: Option<String>,
}

/// Whether `backup` still needs its base chosen.
pub fn needs_choice(backup: &MySQLBackup) -> bool {
    backup.spec.backup_type == BackupType::Incremental
        && !backup.phase().is_terminal()
        && backup
            .status
            .as_ref()
            .and_then(|s| s.incremental.as_ref())
            .is_none()
}

/// The base of `backup` among `others` (the namespace's MySQLBackups), or
/// why there is none yet (Waiting) or ever (Failed).
pub fn choose(backup: &MySQLBackup, others: &[MySQLBackup]) -> Result<Chosen, Observed> {
    let me = backup.name_any();
    let same_place = |b: &MySQLBackup| {
        b.spec.mysql == backup.spec.mysql && b.spec.storage == backup.spec.storage
    };
    let base = match &backup.spec.incremental_base {
        Some(named) => {
            if *named == me {
                return Err(failed(
                    "InvalidSpec",
                    format!(
                        "incrementalBase names this backup itself ({me}); name the backup it continues"
                    ),
                ));
            }
            let Some(base) = others.iter().find(|b| b.name_any() == *named) else {
                return Err(Observed::Waiting {
                    reason: "BaseNotFound",
                    message: format!(
                        "the base MySQLBackup {named} does not exist in this namespace; the incremental starts once it exists and is Completed"
                    ),
                });
            };
            if base.metadata.deletion_timestamp.is_some() {
                return Err(failed(
                    "BaseDeleted",
                    format!(
                        "the base MySQLBackup {named} is being deleted; name another base or take a Full backup"
                    ),
                ));
            }
            match base.phase() {
                BackupPhase::Completed => {}
                BackupPhase::Failed => {
                    return Err(failed(
                        "BaseFailed",
                        format!(
                            "the base MySQLBackup {named} failed; name another base or take a Full backup"
                        ),
                    ));
                }
                phase => {
                    return Err(Observed::Waiting {
                        reason: "WaitingForBase",
                        message: format!(
                            "the base MySQLBackup {named} is {}; the incremental starts once it is Completed",
                            phase.as_str()
                        ),
                    });
                }
            }
            if !same_place(base) {
                return Err(failed(
                    "BaseMismatch",
                    format!(
                        "the base MySQLBackup {named} backs up another MySQL or stores elsewhere; an incremental continues a backup of the same mysql and storage"
                    ),
                ));
            }
            base
        }
        None => {
            let candidates: Vec<&MySQLBackup> = others
                .iter()
                .filter(|b| b.name_any() != me && b.metadata.deletion_timestamp.is_none())
                .filter(|b| same_place(b))
                .collect();
            // One started before this one will be the newest when it
            // completes: continue that one, not the one before it.
            let created = |b: &MySQLBackup| b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            if let Some(earlier) = candidates
                .iter()
                .find(|b| !b.phase().is_terminal() && created(b) < created(backup))
            {
                return Err(Observed::Waiting {
                    reason: "WaitingForBase",
                    message: format!(
                        "MySQLBackup {} of the same MySQL and storage is {}; this incremental continues it once it is Completed",
                        earlier.name_any(),
                        earlier.phase().as_str()
                    ),
                });
            }
            let completion = |b: &MySQLBackup| {
                b.status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .map(|t| t.0)
            };
            let Some(newest) = candidates
                .into_iter()
                .filter(|b| b.phase() == BackupPhase::Completed)
                .max_by_key(|b| (completion(b), created(b), b.name_any()))
            else {
                return Err(failed(
                    "NoBase",
                    "an Incremental continues a Completed backup of the same mysql and storage, and there is none: take a Full backup first (or name one in incrementalBase)".to_owned(),
                ));
            };
            newest
        }
    };
    let status = base.status.clone().unwrap_or_default();
    let base_name = base.name_any();
    Ok(Chosen {
        incremental: IncrementalStatus {
            base_backup_name: status.backup_name.clone().unwrap_or_else(|| {
                backup_name_for(&base_name, base.metadata.uid.as_deref().unwrap_or_default())
            }),
            base_name,
            ..IncrementalStatus::default()
        },
        pod: status.pod,
    })
}

fn failed(reason: &'static str, message: String) -> Observed {
    Observed::Failed { reason, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{BackupBuilder, ts};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn of_db(name: &str) -> BackupBuilder {
        BackupBuilder::named(name)
            .on_stateful_set("db")
            .storing_in_s3("bk", Some("db"))
    }

    fn created(mut backup: MySQLBackup, at: &str) -> MySQLBackup {
        backup.metadata.creation_timestamp = Some(Time(ts(at)));
        backup
    }

    fn from_yaml(yaml: &str) -> MySQLBackup {
        serde_yaml::from_str(yaml).unwrap()
    }

    const INCREMENTAL: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackup
metadata: {name: hourly, namespace: prod, uid: uid-hourly, creationTimestamp: "2026-11-21T12:00:00Z"}
spec:
  type: Incremental
  mysql: {statefulSetName: db}
  storage:
    s3: {bucket: bk, prefix: db}
"#;

    #[test]
    fn the_newest_completed_backup_of_the_same_mysql_and_storage_is_the_base() {
        let hourly = from_yaml(INCREMENTAL);
        assert!(needs_choice(&hourly));
        let others = [
            of_db("old").completed_at("2026-11-20T03:00:00Z").build(),
            of_db("new")
                .completed_on("db-1")
                .completed_at("2026-11-21T03:00:00Z")
                .build(),
            of_db("broken").failed().build(),
            BackupBuilder::named("elsewhere")
                .on_stateful_set("db")
                .storing_in_s3("other-bucket", None)
                .completed_at("2026-11-21T11:00:00Z")
                .build(),
            hourly.clone(),
        ];
        let chosen = choose(&hourly, &others).unwrap();
        assert_eq!(chosen.incremental.base_name, "new");
        assert_eq!(chosen.incremental.base_backup_name, "new-uidnew");
        assert_eq!(
            chosen.pod.as_deref(),
            Some("db-1"),
            "it runs where its base ran"
        );
    }

    #[test]
    fn with_nothing_to_continue_the_incremental_fails_saying_to_take_a_full() {
        let hourly = from_yaml(INCREMENTAL);
        let Err(Observed::Failed { reason, message }) =
            choose(&hourly, std::slice::from_ref(&hourly))
        else {
            panic!("an incremental without a base cannot run")
        };
        assert_eq!(reason, "NoBase");
        assert!(message.contains("take a Full backup first"), "{message}");
    }

    #[test]
    fn a_backup_still_running_from_before_is_waited_for() {
        let hourly = from_yaml(INCREMENTAL);
        let others = [
            of_db("done").completed_at("2026-11-20T03:00:00Z").build(),
            created(
                of_db("full").running_on("db-0").build(),
                "2026-11-21T11:59:00Z",
            ),
        ];
        let Err(Observed::Waiting { reason, .. }) = choose(&hourly, &others) else {
            panic!("waits for the running full")
        };
        assert_eq!(reason, "WaitingForBase");
    }

    #[test]
    fn a_named_base_must_be_completed_and_of_the_same_place() {
        let named = |base: &str| {
            let mut b = from_yaml(INCREMENTAL);
            b.spec.incremental_base = Some(base.into());
            b
        };
        let others = [
            of_db("running").running_on("db-0").build(),
            of_db("broken").failed().build(),
            BackupBuilder::named("elsewhere")
                .on_stateful_set("other-db")
                .storing_in_s3("bk", Some("db"))
                .completed_at("2026-11-21T03:00:00Z")
                .build(),
            of_db("old").completed_at("2026-11-19T03:00:00Z").build(),
            of_db("new").completed_at("2026-11-21T03:00:00Z").build(),
        ];
        let reason = |base: &str| match choose(&named(base), &others) {
            Ok(c) => format!("ok {}", c.incremental.base_name),
            Err(Observed::Waiting { reason, .. } | Observed::Failed { reason, .. }) => {
                reason.to_owned()
            }
            Err(other) => panic!("{other:?}"),
        };
        assert_eq!(reason("missing"), "BaseNotFound");
        assert_eq!(reason("running"), "WaitingForBase");
        assert_eq!(reason("broken"), "BaseFailed");
        assert_eq!(reason("elsewhere"), "BaseMismatch");
        assert_eq!(reason("hourly"), "InvalidSpec");
        assert_eq!(
            reason("old"),
            "ok old",
            "a named base need not be the newest"
        );
    }

    #[test]
    fn a_full_backup_or_one_with_its_base_chosen_needs_no_choice() {
        assert!(!needs_choice(&of_db("full").build()));
        assert!(!needs_choice(&of_db("inc").continuing("full").build()));
    }
}
