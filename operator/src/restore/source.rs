//! What a MySQLRestore restores and whether it may start: pure, from the
//! spec, the MySQLBackup it names and the other restores of the namespace.

use crate::api::{
    BackupPhase, BackupStorage, MySQLBackup, MySQLRestore, RestorePhase, SecretKeyRef,
};
use crate::backup::request::backup_name_for;

/// The backup, resolved to what the agent needs to fetch it.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub storage: BackupStorage,
    /// The backup's folder in the repository.
    pub backup_name: String,
    /// Where it is, for people.
    pub location: String,
    pub encryption_key: Option<SecretKeyRef>,
    /// The GTID set the backup holds, when known before staging (a
    /// MySQLBackup's status, or the manifest the operator read).
    pub gtid_executed: Option<String>,
    pub last_lsn: Option<u64>,
    /// A point-in-time restore: the target and the archive replayed.
    pub point_in_time: Option<super::point_in_time::PointInTimeSource>,
    /// The chain a restore applies, when the MySQLBackup's status knows it
    /// (the agent reports the one it applied).
    pub chain: Vec<String>,
}

/// Why there is no source (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// May clear by itself (the backup is still running).
    Wait {
        reason: &'static str,
        message: String,
    },
    /// Will not clear: the restore fails.
    Fail {
        reason: &'static str,
        message: String,
    },
}

/// The source of `restore`; `backup` is the MySQLBackup its
/// `source.backupName` names, if that exists.
pub fn resolve(restore: &MySQLRestore, backup: Option<&MySQLBackup>) -> Result<Source, Unresolved> {
    let spec = &restore.spec;
    if let Some(location) = &spec.source.location {
        return Ok(Source {
            location: location.storage.location_of(&location.backup_name),
            storage: location.storage.clone(),
            backup_name: location.backup_name.clone(),
            encryption_key: spec.encryption_key_secret_ref.clone(),
            gtid_executed: None,
            last_lsn: None,
            point_in_time: None,
            chain: Vec::new(),
        });
    }
    let name = match &spec.source.point_in_time {
        // A point in time: `backup` is the base its resolution picked.
        Some(_) => backup
            .and_then(|b| b.metadata.name.clone())
            .unwrap_or_default(),
        None => spec.source.backup_name.clone().unwrap_or_default(),
    };
    let Some(backup) = backup else {
        return Err(Unresolved::Wait {
            reason: "BackupNotFound",
            message: format!(
                "MySQLBackup {name} does not exist in this namespace; the restore starts once it exists and is Completed"
            ),
        });
    };
    match backup.phase() {
        BackupPhase::Completed => {}
        BackupPhase::Failed => {
            return Err(Unresolved::Fail {
                reason: "BackupFailed",
                message: format!(
                    "MySQLBackup {name} failed; it cannot be restored. Restore another backup"
                ),
            });
        }
        phase => {
            return Err(Unresolved::Wait {
                reason: "BackupNotComplete",
                message: format!(
                    "MySQLBackup {name} is {}; the restore starts once it is Completed",
                    phase.as_str()
                ),
            });
        }
    }
    let status = backup.status.clone().unwrap_or_default();
    let backup_name = status.backup_name.clone().unwrap_or_else(|| {
        backup_name_for(&name, backup.metadata.uid.as_deref().unwrap_or_default())
    });
    Ok(Source {
        location: status
            .location
            .clone()
            .unwrap_or_else(|| backup.spec.storage.location_of(&backup_name)),
        storage: backup.spec.storage.clone(),
        backup_name,
        encryption_key: spec
            .encryption_key_secret_ref
            .clone()
            .or_else(|| backup.spec.encryption_key_secret_ref.clone()),
        gtid_executed: status.gtid_executed.clone(),
        last_lsn: status.lsn.as_ref().map(|l| l.last.unwrap_or(l.end)),
        point_in_time: None,
        chain: status
            .incremental
            .as_ref()
            .map(|i| i.chain.clone())
            .unwrap_or_default(),
    })
}

/// Another restore of the same StatefulSet that goes first, as a message
/// that says what to do. One restore per StatefulSet runs at a time: the
/// one already past Pending, else the one created first (then by name).
pub fn blocked_by(restore: &MySQLRestore, others: &[MySQLRestore]) -> Option<String> {
    let me = restore.metadata.uid.as_deref();
    let sts = &restore.spec.target.stateful_set_name;
    let key = |r: &MySQLRestore| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.metadata.name.clone().unwrap_or_default(),
        )
    };
    others
        .iter()
        .filter(|o| o.metadata.uid.as_deref() != me && &o.spec.target.stateful_set_name == sts)
        .filter(|o| !o.phase().is_terminal() && o.metadata.deletion_timestamp.is_none())
        .find(|o| o.phase() != RestorePhase::Pending || key(o) < key(restore))
        .map(|o| {
            format!(
                "MySQLRestore {} is restoring StatefulSet {sts} ({}); one restore per StatefulSet runs at a time",
                o.metadata.name.as_deref().unwrap_or_default(),
                o.phase().as_str()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{BackupBuilder, RestoreBuilder};

    #[test]
    fn a_completed_backup_gives_its_storage_name_gtid_and_key() {
        let backup = BackupBuilder::named("nightly")
            .on_stateful_set("db")
            .storing_in_s3("bk", Some("prod"))
            .completed_on("db-0")
            .with_gtid("u:1-10")
            .encrypted_with("keys", "aes")
            .build();
        let restore = RestoreBuilder::from_backup("r", "nightly")
            .in_place("db")
            .build();
        let source = resolve(&restore, Some(&backup)).unwrap();
        // A backup that has not recorded its folder: its name and UID's start.
        assert_eq!(source.backup_name, "nightly-uidnight");
        assert_eq!(source.location, "s3://bk/prod/nightly-uidnight");
        assert_eq!(source.gtid_executed.as_deref(), Some("u:1-10"));
        assert_eq!(source.encryption_key.unwrap().name, "keys");
    }

    #[test]
    fn a_backup_still_running_makes_the_restore_wait_and_a_failed_one_fails_it() {
        let restore = RestoreBuilder::from_backup("r", "nightly")
            .in_place("db")
            .build();
        let running = BackupBuilder::named("nightly")
            .on_stateful_set("db")
            .running_on("db-0")
            .build();
        assert!(matches!(
            resolve(&restore, Some(&running)),
            Err(Unresolved::Wait {
                reason: "BackupNotComplete",
                ..
            })
        ));
        assert!(matches!(
            resolve(&restore, None),
            Err(Unresolved::Wait {
                reason: "BackupNotFound",
                ..
            })
        ));
        let failed = BackupBuilder::named("nightly").failed().build();
        assert!(matches!(
            resolve(&restore, Some(&failed)),
            Err(Unresolved::Fail {
                reason: "BackupFailed",
                ..
            })
        ));
    }

    #[test]
    fn a_location_is_taken_as_written() {
        let restore = RestoreBuilder::from_location("r", "bk", "other/db", "nightly")
            .in_place("db")
            .build();
        let source = resolve(&restore, None).unwrap();
        assert_eq!(source.location, "s3://bk/other/db/nightly");
        assert_eq!(source.gtid_executed, None, "learned when staged");
    }

    #[test]
    fn the_first_restore_of_a_statefulset_goes_first() {
        let first = RestoreBuilder::from_backup("a", "nightly")
            .in_place("db")
            .created_at("2026-11-21T10:00:00Z")
            .build();
        let second = RestoreBuilder::from_backup("b", "nightly")
            .in_place("db")
            .created_at("2026-11-21T10:00:05Z")
            .build();
        let elsewhere = RestoreBuilder::from_backup("c", "nightly")
            .in_place("other")
            .created_at("2026-11-21T09:00:00Z")
            .build();
        let all = [first.clone(), second.clone(), elsewhere];
        assert_eq!(blocked_by(&first, &all), None);
        let message = blocked_by(&second, &all).unwrap();
        assert!(
            message.contains("MySQLRestore a is restoring StatefulSet db"),
            "{message}"
        );
        // A later restore already running blocks an earlier pending one.
        let running = RestoreBuilder::from_backup("b", "nightly")
            .in_place("db")
            .created_at("2026-11-21T10:00:05Z")
            .phase(RestorePhase::Fetching)
            .build();
        assert!(blocked_by(&first, &[first.clone(), running.clone()]).is_some());
        // Ended restores block nothing.
        let done = RestoreBuilder::from_backup("b", "nightly")
            .in_place("db")
            .phase(RestorePhase::Completed)
            .build();
        assert_eq!(blocked_by(&first, &[done]), None);
    }
}
