//! The Argo CD health checks in docs/argocd/ run in Lua 5.1 (the Lua Argo
//! CD embeds) against the operator's own resource types, in each state a
//! user meets; and docs/gitops.md shows each script exactly as it is.

use innoxide_operator::api::{MySQLBackup, MySQLBackupSchedule, MySQLRestore};
use mlua::{Lua, LuaSerdeExt, SerializeOptions, Table};
use serde::Serialize;

const BACKUP: &str = include_str!("../../docs/argocd/mysqlbackup.lua");
const RESTORE: &str = include_str!("../../docs/argocd/mysqlrestore.lua");
const SCHEDULE: &str = include_str!("../../docs/argocd/mysqlbackupschedule.lua");
const DOC: &str = include_str!("../../docs/gitops.md");

/// What the script says of `object`: (status, message).
fn health(script: &str, object: &impl Serialize) -> (String, String) {
    let lua = Lua::new();
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let obj = lua.to_value_with(object, options).expect("to Lua");
    lua.globals().set("obj", obj).expect("obj");
    let hs: Table = lua.load(script).eval().expect("the script runs");
    (
        hs.get("status").expect("hs.status"),
        hs.get("message").unwrap_or_default(),
    )
}

fn backup(status: &str) -> MySQLBackup {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackup
metadata: {{name: nightly, namespace: prod, generation: 1}}
spec:
  mysql: {{statefulSetName: db}}
  storage: {{s3: {{bucket: bk}}}}
{status}"#
    ))
    .expect("a MySQLBackup")
}

#[test]
fn a_backup_is_healthy_once_completed_and_degraded_when_failed() {
    assert_eq!(health(BACKUP, &backup("")).0, "Progressing");
    let (state, message) = health(
        BACKUP,
        &backup("status: {phase: Running, observedGeneration: 1, message: copying 42%}"),
    );
    assert_eq!(
        (state.as_str(), message.as_str()),
        ("Progressing", "copying 42%")
    );
    assert_eq!(
        health(
            BACKUP,
            &backup("status: {phase: Completed, observedGeneration: 1}")
        )
        .0,
        "Healthy"
    );
    let (state, message) = health(
        BACKUP,
        &backup("status: {phase: Failed, observedGeneration: 1, message: lost the agent}"),
    );
    assert_eq!(
        (state.as_str(), message.as_str()),
        ("Degraded", "lost the agent")
    );
    // A status of an older generation says nothing yet.
    let mut newer = backup("status: {phase: Completed, observedGeneration: 1}");
    newer.metadata.generation = Some(2);
    assert_eq!(health(BACKUP, &newer).0, "Progressing");
}

#[test]
fn a_backup_whose_data_cannot_be_deleted_is_degraded() {
    let stuck = backup(
        r#"status:
  phase: Completed
  observedGeneration: 1
  conditions:
  - {type: DataDeleted, status: "False", reason: DeletionFailed, message: "no credentials", lastTransitionTime: "2026-12-06T04:00:00Z"}"#,
    );
    assert_eq!(
        health(BACKUP, &stuck),
        ("Degraded".to_owned(), "no credentials".to_owned())
    );
}

fn restore(status: &str) -> MySQLRestore {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLRestore
metadata: {{name: back, namespace: prod, generation: 1}}
spec:
  source: {{backupName: nightly}}
  target: {{statefulSetName: db, mode: InPlace}}
{status}"#
    ))
    .expect("a MySQLRestore")
}

#[test]
fn a_restore_is_healthy_once_completed_and_degraded_when_failed() {
    assert_eq!(health(RESTORE, &restore("")).0, "Progressing");
    for phase in [
        "Pending",
        "Fetching",
        "Preparing",
        "Ready",
        "Switching",
        "Restarting",
    ] {
        let (state, _) = health(
            RESTORE,
            &restore(&format!(
                "status: {{phase: {phase}, observedGeneration: 1}}"
            )),
        );
        assert_eq!(state, "Progressing", "{phase}");
    }
    let (state, message) = health(
        RESTORE,
        &restore("status: {phase: Completed, observedGeneration: 1, message: already restored}"),
    );
    assert_eq!(
        (state.as_str(), message.as_str()),
        ("Healthy", "already restored")
    );
    assert_eq!(
        health(
            RESTORE,
            &restore("status: {phase: Failed, observedGeneration: 1}")
        )
        .0,
        "Degraded"
    );
}

fn schedule(extra_spec: &str, status: &str) -> MySQLBackupSchedule {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackupSchedule
metadata: {{name: nightly, namespace: prod, generation: 1}}
spec:
  schedule: "0 3 * * *"
  backupTemplate:
    spec:
      mysql: {{statefulSetName: db}}
      storage: {{s3: {{bucket: bk}}}}
{extra_spec}
{status}"#
    ))
    .expect("a MySQLBackupSchedule")
}

fn ready(status: &str, reason: &str, message: &str) -> String {
    format!(
        "status:\n  observedGeneration: 1\n  conditions:\n  - {{type: Ready, status: \"{status}\", reason: {reason}, message: \"{message}\", lastTransitionTime: \"2026-12-06T04:00:00Z\"}}"
    )
}

#[test]
fn a_schedule_is_healthy_when_ready_and_suspended_when_suspended() {
    assert_eq!(health(SCHEDULE, &schedule("", "")).0, "Progressing");
    assert_eq!(
        health(
            SCHEDULE,
            &schedule("", &ready("True", "Scheduled", "next run at 03:00"))
        ),
        ("Healthy".to_owned(), "next run at 03:00".to_owned())
    );
    assert_eq!(
        health(
            SCHEDULE,
            &schedule("", &ready("False", "InvalidSpec", "bad time zone"))
        ),
        ("Degraded".to_owned(), "bad time zone".to_owned())
    );
    assert_eq!(
        health(
            SCHEDULE,
            &schedule("  suspend: true", &ready("True", "Suspended", "suspended"))
        )
        .0,
        "Suspended"
    );
}

#[test]
fn the_gitops_doc_shows_each_script_as_it_is() {
    for (kind, script) in [
        ("MySQLBackup", BACKUP),
        ("MySQLRestore", RESTORE),
        ("MySQLBackupSchedule", SCHEDULE),
    ] {
        let indented: String = script
            .lines()
            .map(|l| {
                if l.is_empty() {
                    "\n".to_owned()
                } else {
                    format!("    {l}\n")
                }
            })
            .collect();
        let entry = format!("  resource.customizations.health.innoxide.dev_{kind}: |\n{indented}");
        assert!(
            DOC.contains(&entry),
            "docs/gitops.md does not show {kind}'s script as it is"
        );
    }
}
