//! The restore's steps, one situation each: a MySQLRestore as YAML (spec
//! and the status so far, as a restarted operator would read it) and what
//! the reconcile observed.

use innoxide_proto::agent::v1 as pb;
use jiff::Timestamp;

use super::*;
use crate::api::RestorePhase::*;
use crate::conditions::find;
use crate::restore::source::Source;

const IN_PLACE: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLRestore
metadata: {name: back, namespace: prod, uid: uid-back, generation: 1, creationTimestamp: "2026-11-21T10:00:00Z"}
spec:
  source: {backupName: nightly}
  target: {statefulSetName: db, mode: InPlace}
"#;

const NEW_STS: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLRestore
metadata: {name: clone, namespace: prod, uid: uid-clone, generation: 1, creationTimestamp: "2026-11-21T10:00:00Z"}
spec:
  source: {backupName: nightly}
  target: {statefulSetName: db2, mode: NewStatefulSet}
"#;

const GTID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77";

fn now() -> Timestamp {
    "2026-11-21T10:05:00Z".parse().unwrap()
}

/// The restore as YAML with a status block appended.
fn restore(yaml: &str, status: &str) -> MySQLRestore {
    let text = if status.is_empty() {
        yaml.to_owned()
    } else {
        format!("{yaml}status:\n{status}")
    };
    serde_yaml::from_str(&text).expect("a MySQLRestore fixture")
}

fn source() -> Source {
    Source {
        storage: Default::default(),
        backup_name: "nightly".into(),
        location: "s3://bk/nightly".into(),
        encryption_key: None,
        gtid_executed: Some(GTID.into()),
        last_lsn: Some(2048),
        point_in_time: None,
        chain: Vec::new(),
    }
}

fn pod(uid: &str) -> PodView {
    PodView {
        name: "db-0".into(),
        uid: uid.into(),
        ready: true,
        deleting: false,
        created: Some("2026-11-21T10:01:00Z".parse().unwrap()),
        init_problem: None,
    }
}

/// The restore in Restarting, its pod back as `pod-b`, and the agent
/// answering ServerInfo with `server(armed, last, gtid)`.
fn back_from_the_restart(armed: &str, last: Option<&str>, gtid: &str) -> (MySQLRestore, World) {
    let mut w = running();
    w.pod = Some(pod("pod-b"));
    w.server = server(armed, last, gtid);
    (
        restore(IN_PLACE, &SWITCHED.replace("Switching", "Restarting")),
        w,
    )
}

/// IN_PLACE with `startDeadlineSeconds: 60`.
fn in_place_with_a_minute_to_start() -> String {
    IN_PLACE.replace(
        "  target: {statefulSetName: db, mode: InPlace}",
        "  target: {statefulSetName: db, mode: InPlace}\n  startDeadlineSeconds: 60",
    )
}

/// A running StatefulSet whose pod db-0 (uid `pod-a`) is ready.
fn running() -> World {
    World {
        source: Some(Ok(source())),
        stateful_set: Some(StatefulSetView::default()),
        pod: Some(pod("pod-a")),
        server: Answer::Found(pb::ServerInfoResponse::default()),
        ..World::default()
    }
}

fn stage_op(state: pb::OperationState, phase: pb::Phase) -> pb::Operation {
    pb::Operation {
        operation_id: "uid-back".into(),
        kind: pb::OperationKind::StageRestore as i32,
        state: state as i32,
        progress: Some(pb::Progress {
            phase: phase as i32,
            bytes_done: 25,
            bytes_total: 100,
            ..pb::Progress::default()
        }),
        ..pb::Operation::default()
    }
}

fn staged() -> pb::Operation {
    let mut op = stage_op(pb::OperationState::Succeeded, pb::Phase::Done);
    op.created_at = Some(innoxide_proto::prost_types::Timestamp {
        seconds: 100,
        nanos: 0,
    });
    op.finished_at = Some(innoxide_proto::prost_types::Timestamp {
        seconds: 142,
        nanos: 500_000_000,
    });
    op.result = Some(pb::operation::Result::StageRestore(
        pb::StageRestoreResult {
            prepared_dir: "/var/lib/mysql/.innoxide-agent/staging/uid-back/data".into(),
            backup_location: "s3://bk/nightly".into(),
            last_lsn: 2048,
            gtid_executed: GTID.into(),
            ..pb::StageRestoreResult::default()
        },
    ));
    op
}

fn server(armed: &str, last: Option<&str>, gtid: &str) -> Answer<pb::ServerInfoResponse> {
    Answer::Found(pb::ServerInfoResponse {
        datadir: "/var/lib/mysql".into(),
        gtid_executed: gtid.into(),
        swap: Some(pb::SwapState {
            armed_operation_id: armed.into(),
            last_swap: last.map(|id| pb::SwapRecord {
                operation_id: id.into(),
                completed_at: None,
                previous_datadir: format!("/var/lib/mysql/.innoxide-agent/previous/{id}"),
                gtid_executed: GTID.into(),
                kind: "swap".into(),
            }),
        }),
        ..pb::ServerInfoResponse::default()
    })
}

const SWITCHED: &str = r#"  phase: Switching
  pod: db-0
  backup: {location: "s3://bk/nightly", gtidExecuted: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77"}
  switch: {podUid: pod-a, deletedAt: "2026-11-21T10:04:30Z"}
"#;

// ---- InPlace, in order ----

#[test]
fn a_new_restore_asks_the_agent_to_stage_on_the_primary() {
    let d = step(&restore(IN_PLACE, ""), &running(), now());
    assert_eq!(d.action, Some(Act::StageRestore));
    assert_eq!(d.status.phase, Some(Pending));
    assert_eq!(d.status.pod.as_deref(), Some("db-0"));
    assert_eq!(d.status.target.as_deref(), Some("db/db-0"));
    assert_eq!(
        d.status.backup.unwrap().gtid_executed.as_deref(),
        Some(GTID)
    );
}

#[test]
fn staging_shows_fetching_then_preparing_with_progress() {
    let r = restore(IN_PLACE, "  phase: Pending\n  pod: db-0\n");
    let mut w = running();
    w.operation = Answer::Found(stage_op(pb::OperationState::Running, pb::Phase::Fetching));
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Fetching));
    assert_eq!(d.action, None);
    let progress = d.status.progress.clone().unwrap();
    assert_eq!((progress.bytes_done, progress.bytes_total), (25, 100));
    assert_eq!(progress.percent.as_deref(), Some("25%"));
    let t = d.transition.unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (Some(Pending), Fetching, "Staging")
    );
    assert_eq!(
        find(&d.status.conditions, "Progressing").unwrap().status,
        "True"
    );

    let r = restore(IN_PLACE, "  phase: Fetching\n  pod: db-0\n");
    w.operation = Answer::Found(stage_op(
        pb::OperationState::Running,
        pb::Phase::ApplyingLog,
    ));
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Preparing));
    assert!(d.status.message.unwrap().contains("ApplyingLog"));
}

#[test]
fn a_staged_restore_is_ready_with_its_result_and_staging_time() {
    let r = restore(IN_PLACE, "  phase: Preparing\n  pod: db-0\n");
    let mut w = running();
    w.operation = Answer::Found(staged());
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Ready));
    assert_eq!(d.status.staging_seconds, Some(42.5));
    let backup = d.status.backup.unwrap();
    assert_eq!(
        (backup.last_lsn, backup.gtid_executed.as_deref()),
        (Some(2048), Some(GTID))
    );
    assert_eq!(d.action, None, "nothing is touched in Ready");
}

#[test]
fn a_staged_incremental_shows_the_chain_it_applied() {
    let r = restore(IN_PLACE, "  phase: Preparing\n  pod: db-0\n");
    let mut w = running();
    let mut op = staged();
    let link = |name: &str, backup_type: pb::BackupType| pb::ChainLink {
        backup_name: name.into(),
        backup_type: backup_type as i32,
        ..pb::ChainLink::default()
    };
    if let Some(pb::operation::Result::StageRestore(result)) = &mut op.result {
        result.backup_type = pb::BackupType::Incremental as i32;
        result.chain = vec![
            link("weekly-1", pb::BackupType::Full),
            link("hourly-1", pb::BackupType::Incremental),
            link("hourly-2", pb::BackupType::Incremental),
        ];
    }
    w.operation = Answer::Found(op);
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Ready));
    assert_eq!(
        d.status.backup.unwrap().chain,
        ["weekly-1", "hourly-1", "hourly-2"]
    );
}

#[test]
fn ready_moves_to_switching_by_arming_the_swap() {
    let r = restore(IN_PLACE, "  phase: Ready\n  pod: db-0\n");
    let d = step(&r, &running(), now());
    assert_eq!(d.status.phase, Some(Switching));
    assert_eq!(d.action, Some(Act::ArmSwap));
    assert_eq!(
        d.status.switch, None,
        "no pod deletion before the swap is acknowledged"
    );
}

#[test]
fn the_pod_is_deleted_only_once_the_swap_is_acknowledged_and_recorded() {
    let r = restore(IN_PLACE, "  phase: Switching\n  pod: db-0\n");
    let mut w = running();
    // Not armed yet: arm, do not delete.
    w.server = server("", None, "old:1-5");
    assert_eq!(step(&r, &w, now()).action, Some(Act::ArmSwap));
    // Armed for another restore (the agent would refuse): still no delete.
    w.server = server("uid-other", None, "old:1-5");
    assert_eq!(step(&r, &w, now()).action, Some(Act::ArmSwap));
    // Armed for us: record, then delete that very pod.
    w.server = server("uid-back", None, "old:1-5");
    let d = step(&r, &w, now());
    assert_eq!(
        d.action,
        Some(Act::DeletePod {
            name: "db-0".into(),
            uid: "pod-a".into()
        })
    );
    let record = d.status.switch.unwrap();
    assert_eq!(record.pod_uid, "pod-a");
    assert_eq!(record.deleted_at.0, now());
}

#[test]
fn a_refused_arm_fails_without_touching_the_pod() {
    let r = restore(IN_PLACE, "  phase: Switching\n  pod: db-0\n");
    let mut w = running();
    w.server = server("uid-other", None, "old:1-5");
    w.arm_refused = Some("another swap is armed".into());
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Failed));
    assert_eq!(d.action, None);
    assert!(d.status.message.unwrap().contains("was not restarted"));
    assert!(d.transition.unwrap().warning);
}

#[test]
fn after_the_deletion_the_restore_waits_for_the_replacement_pod() {
    let r = restore(IN_PLACE, SWITCHED);
    let mut w = running();
    w.pod = None;
    w.server = Answer::NotAsked;
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Restarting));
    assert_eq!(d.action, None);
    assert!(d.status.message.unwrap().contains("unavailable for 30s"));
    // Recreated but not ready yet.
    let r = restore(IN_PLACE, &SWITCHED.replace("Switching", "Restarting"));
    w.pod = Some(PodView {
        ready: false,
        ..pod("pod-b")
    });
    let d = step(&r, &w, now());
    assert_eq!((d.status.phase, d.transition), (Some(Restarting), None));
}

#[test]
fn the_swapped_server_with_the_backups_gtid_set_completes_the_restore() {
    let (r, w) = back_from_the_restart("", Some("uid-back"), GTID);
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Completed));
    assert_eq!(d.status.unavailability_seconds, Some(30.0));
    assert_eq!(d.status.unavailability.as_deref(), Some("30s"));
    assert_eq!(d.status.gtid_executed.as_deref(), Some(GTID));
    assert_eq!(
        d.status.previous_datadir.as_deref(),
        Some("/var/lib/mysql/.innoxide-agent/previous/uid-back")
    );
    let ready = find(&d.status.conditions, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.observed_generation),
        ("True", Some(1))
    );
    assert!(d.status.completion_time.is_some());
    assert!(!d.status.message.unwrap().contains("Not restored"));
}

#[test]
fn a_completed_restore_names_the_pods_it_did_not_restore() {
    let (r, mut w) = back_from_the_restart("", Some("uid-back"), GTID);
    w.stateful_set.as_mut().unwrap().pods = vec!["db-0".into(), "db-1".into(), "db-2".into()];
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Completed));
    let message = d.status.message.unwrap();
    assert!(message.contains("Not restored: db-1, db-2"), "{message}");
    assert!(message.contains("reseed them from db-0"), "{message}");
}

#[test]
fn a_gtid_mismatch_fails_and_says_how_to_revert() {
    let (r, w) = back_from_the_restart(
        "",
        Some("uid-back"),
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-70",
    );
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Failed));
    let message = d.status.message.unwrap();
    assert!(
        message.contains(
            "innoxide-agent init --datadir /var/lib/mysql --state-dir /var/lib/mysql/.innoxide-agent --revert uid-back"
        ),
        "{message}"
    );
    assert!(message.contains("previous/uid-back"), "{message}");
}

#[test]
fn a_reverted_swap_is_not_taken_for_the_restore() {
    let (r, mut w) = back_from_the_restart("", Some("uid-back"), "old:1-5");
    if let Answer::Found(info) = &mut w.server {
        info.swap.as_mut().unwrap().last_swap.as_mut().unwrap().kind = "revert".into();
    }
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Failed));
    assert_eq!(
        find(&d.status.conditions, "Ready").unwrap().reason,
        "Reverted"
    );
}

#[test]
fn a_restart_without_the_swap_fails_and_disarms() {
    let (r, w) = back_from_the_restart("uid-back", None, "old:1-5");
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Failed));
    assert_eq!(d.action, Some(Act::DisarmSwap));
    assert!(d.status.message.unwrap().contains("innoxide-agent-init"));
}

// ---- failures while staging: the live datadir is never touched ----

#[test]
fn a_failed_stage_fails_the_restore_and_deletes_nothing() {
    let r = restore(IN_PLACE, "  phase: Fetching\n  pod: db-0\n");
    let mut w = running();
    let mut op = stage_op(pb::OperationState::Failed, pb::Phase::Verifying);
    op.error = Some(pb::OperationError {
        code: 15,
        reason: "DATA_DAMAGED".into(),
        message: "ibdata1: chunk 3 does not match the manifest".into(),
    });
    w.operation = Answer::Found(op);
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Failed));
    assert_eq!(d.action, None);
    let message = d.status.message.unwrap();
    assert!(
        message.contains("DATA_DAMAGED") && message.contains("untouched"),
        "{message}"
    );
}

#[test]
fn a_lost_operation_or_a_refusal_fails_with_a_message() {
    let r = restore(IN_PLACE, "  phase: Fetching\n  pod: db-0\n");
    let mut w = running();
    w.operation = Answer::NotFound;
    assert_eq!(step(&r, &w, now()).status.phase, Some(Failed));
    let fresh = restore(IN_PLACE, "");
    w.operation = Answer::Refused("encryption_key: not built yet".into());
    let d = step(&fresh, &w, now());
    assert_eq!(d.status.phase, Some(Failed));
    assert!(d.status.message.unwrap().contains("Nothing was changed"));
}

#[test]
fn an_unreachable_agent_keeps_the_phase_and_says_so() {
    let r = restore(IN_PLACE, "  phase: Fetching\n  pod: db-0\n");
    let mut w = running();
    w.operation = Answer::Unreachable("cannot reach the agent in pod db-0: refused".into());
    let d = step(&r, &w, now());
    assert_eq!((d.status.phase, d.transition), (Some(Fetching), None));
    assert_eq!(
        find(&d.status.conditions, "Ready").unwrap().reason,
        "AgentUnreachable"
    );
}

// ---- refusals and waiting before the start ----

#[test]
fn a_restore_that_cannot_start_fails_at_its_start_deadline_and_never_once_staging() {
    let short = in_place_with_a_minute_to_start();
    let mut w = running();
    w.operation = Answer::Unreachable("cannot reach the agent in pod db-0: refused".into());
    // Five minutes after creation, a minute of deadline: Failed, saying why.
    let pending = restore(&short, "");
    let d = step(&pending, &w, now());
    assert_eq!(d.status.phase, Some(Failed));
    let message = d.status.message.unwrap();
    assert!(
        message.contains("startDeadlineSeconds (60s)")
            && message.contains("cannot reach the agent"),
        "{message}"
    );
    // The default hour has not passed: still waiting.
    let d = step(&restore(IN_PLACE, ""), &w, now());
    assert_eq!(d.status.phase, Some(Pending));
    // Once staging began, waiting for the agent never times out.
    let fetching = restore(&short, "  phase: Fetching\n  pod: db-0\n");
    assert_eq!(step(&fetching, &w, now()).status.phase, Some(Fetching));
}

#[test]
fn a_second_in_place_restore_of_the_statefulset_waits_its_turn() {
    let mut w = running();
    w.blocked_by = Some("MySQLRestore first is restoring StatefulSet db (Fetching)".into());
    let d = step(&restore(IN_PLACE, ""), &w, now());
    assert_eq!((d.status.phase, d.action.clone()), (Some(Pending), None));
    let message = d.status.message.clone().unwrap();
    assert!(message.contains("starts after it ends"), "{message}");
    assert_eq!(
        find(&d.status.conditions, "Ready").unwrap().reason,
        "Queued"
    );
    // Not forever: the start deadline bounds the wait.
    let short = in_place_with_a_minute_to_start();
    let d = step(&restore(&short, ""), &w, now());
    assert_eq!(d.status.phase, Some(Failed));
    let message = d.status.message.unwrap();
    assert!(message.contains("startDeadlineSeconds (60s)"), "{message}");
    assert!(message.contains("MySQLRestore first"), "{message}");
}

#[test]
fn a_second_new_statefulset_restore_of_the_statefulset_is_refused() {
    let mut w = running();
    w.blocked_by = Some("MySQLRestore first is restoring StatefulSet db (Fetching)".into());
    let d = step(&restore(NEW_STS, ""), &w, now());
    assert_eq!(d.status.phase, Some(Failed));
    assert_eq!(d.action, None);
    assert_eq!(
        find(&d.status.conditions, "Ready").unwrap().reason,
        "AnotherRestoreRunning"
    );
}

#[test]
fn a_backup_not_yet_complete_or_a_pod_not_ready_makes_it_wait() {
    let mut w = running();
    w.source = Some(Err(Unresolved::Wait {
        reason: "BackupNotComplete",
        message: "MySQLBackup nightly is Running".into(),
    }));
    let d = step(&restore(IN_PLACE, ""), &w, now());
    assert_eq!((d.status.phase, d.action.clone()), (Some(Pending), None));
    let mut w = running();
    w.pod = Some(PodView {
        ready: false,
        ..pod("pod-a")
    });
    let d = step(&restore(IN_PLACE, ""), &w, now());
    assert_eq!((d.status.phase, d.action), (Some(Pending), None));
    assert!(d.status.message.unwrap().contains("not ready"));
}

// ---- an operator restart in each phase picks up where it was ----

#[test]
fn after_an_operator_restart_each_phase_resumes_without_repeating_work() {
    // Pending, but the StageRestore went out before the status was
    // written: the agent's operation is followed, not started again.
    let mut w = running();
    w.operation = Answer::Found(stage_op(pb::OperationState::Running, pb::Phase::Verifying));
    let d = step(&restore(IN_PLACE, "  phase: Pending\n"), &w, now());
    assert_eq!((d.status.phase, d.action), (Some(Fetching), None));

    // Switching, the deletion recorded, the pod still the old one (the
    // delete did not go out): delete it, same UID precondition.
    let mut w = running();
    w.server = server("uid-back", None, "old:1-5");
    let d = step(&restore(IN_PLACE, SWITCHED), &w, now());
    assert_eq!(
        d.action,
        Some(Act::DeletePod {
            name: "db-0".into(),
            uid: "pod-a".into()
        })
    );
    assert_eq!(
        d.status.switch.unwrap().deleted_at.0,
        "2026-11-21T10:04:30Z".parse().unwrap(),
        "the first deletion time counts"
    );

    // Switching, the replacement already there: never delete it.
    w.pod = Some(pod("pod-b"));
    w.server = server("", Some("uid-back"), GTID);
    let d = step(&restore(IN_PLACE, SWITCHED), &w, now());
    assert_eq!((d.status.phase, d.action), (Some(Completed), None));

    // Completed stays completed.
    let done = restore(IN_PLACE, "  phase: Completed\n  message: done\n");
    let d = step(&done, &World::default(), now());
    assert_eq!(
        (d.status.phase, d.action, d.transition),
        (Some(Completed), None, None)
    );
}

#[test]
fn the_same_observation_twice_changes_nothing() {
    let r = restore(IN_PLACE, "  phase: Pending\n  pod: db-0\n");
    let mut w = running();
    w.operation = Answer::Found(stage_op(pb::OperationState::Running, pb::Phase::Fetching));
    let first = step(&r, &w, now());
    let mut again = r.clone();
    again.status = Some(first.status.clone());
    let second = step(&again, &w, now() + jiff::SignedDuration::from_secs(5));
    assert_eq!(first.status, second.status);
    assert_eq!(second.transition, None);
}

/// The StatefulSet's record, with `restore` completed at 09:00.
fn recorded(restore: &MySQLRestore) -> crate::restore::record::Records {
    use crate::restore::record;
    let value = record::with_completed(
        &record::Records::new(),
        restore,
        "2026-11-21T09:00:00Z".parse().unwrap(),
    );
    record::parse(Some(&value))
}

#[test]
fn a_completed_restore_created_again_is_not_restored_again() {
    // Completed yesterday under another UID, then deleted; Git brings it back.
    let mut earlier = restore(IN_PLACE, "");
    earlier.metadata.uid = Some("uid-earlier".into());
    let mut w = running();
    w.stateful_set.as_mut().unwrap().restored = recorded(&earlier);
    let again = restore(IN_PLACE, "");
    let d = step(&again, &w, now());
    assert_eq!((d.status.phase, d.action), (Some(Completed), None));
    let ready = find(&d.status.conditions, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "AlreadyRestored")
    );
    assert!(ready.message.contains("uid-earlier"), "{}", ready.message);
    assert_eq!(d.transition.unwrap().reason, "Completed");
    // And says so on every later look.
    let mut done = again.clone();
    done.status = Some(d.status.clone());
    let later = step(&done, &w, now());
    assert_eq!(later.status, d.status);

    // Another backup under the same name is another restore: it runs.
    let other = restore(
        &IN_PLACE.replace("backupName: nightly", "backupName: weekly"),
        "",
    );
    let d = step(&other, &w, now());
    assert_eq!(
        (d.status.phase, d.action),
        (Some(Pending), Some(Act::StageRestore))
    );
}

#[test]
fn a_record_never_stops_a_restore_that_has_begun() {
    let mut w = running();
    w.stateful_set.as_mut().unwrap().restored = recorded(&restore(IN_PLACE, ""));
    w.operation = Answer::Found(stage_op(pb::OperationState::Running, pb::Phase::Fetching));
    let started = restore(IN_PLACE, "  phase: Fetching\n  pod: db-0\n");
    let d = step(&started, &w, now());
    assert_ne!(d.status.phase, Some(Completed));
}

// ---- NewStatefulSet ----

fn new_world() -> World {
    World {
        source: Some(Ok(source())),
        stateful_set: Some(StatefulSetView {
            restore_from: Some("clone".into()),
            has_init: true,
            gated: true,
            ..StatefulSetView::default()
        }),
        spec_secret: true,
        ..World::default()
    }
}

#[test]
fn a_new_statefulset_restore_writes_its_spec_secret_first() {
    let mut w = new_world();
    w.spec_secret = false;
    w.stateful_set = None;
    let d = step(&restore(NEW_STS, ""), &w, now());
    assert_eq!(
        (d.status.phase, d.action),
        (Some(Pending), Some(Act::WriteSpecSecret))
    );
    // Then waits for the StatefulSet that names it.
    w.spec_secret = true;
    let d = step(&restore(NEW_STS, ""), &w, now());
    assert!(
        d.status
            .message
            .unwrap()
            .contains("innoxide.dev/restore-from: clone")
    );
    assert_eq!(d.status.target.as_deref(), Some("db2 (new)"));
}

#[test]
fn a_statefulset_whose_pods_could_start_before_the_wiring_is_refused() {
    let mut w = new_world();
    w.stateful_set.as_mut().unwrap().gated = false;
    let d = step(&restore(NEW_STS, ""), &w, now());
    assert_eq!((d.status.phase, d.action), (Some(Failed), None));
    let ready = find(&d.status.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "NotGated");
    assert!(
        ready
            .message
            .contains("schedulingGates: [{name: innoxide.dev/agent}]"),
        "says what to add: {}",
        ready.message
    );
}

#[test]
fn a_statefulset_that_does_not_name_the_restore_is_waited_for() {
    let mut w = new_world();
    w.stateful_set = Some(StatefulSetView {
        restore_from: None,
        has_init: true,
        ..StatefulSetView::default()
    });
    let d = step(&restore(NEW_STS, ""), &w, now());
    assert_eq!(d.status.phase, Some(Pending));
    assert_eq!(
        find(&d.status.conditions, "Ready").unwrap().reason,
        "NotAnnotated"
    );
}

#[test]
fn a_new_statefulset_that_already_runs_pods_is_refused() {
    let mut w = new_world();
    w.older_pods = vec!["db2-0".into()];
    let d = step(&restore(NEW_STS, ""), &w, now());
    assert_eq!(d.status.phase, Some(Failed));
    assert!(d.status.message.unwrap().contains("Use mode InPlace"));
}

#[test]
fn the_new_pod_restores_then_completes_on_the_backups_gtid_set() {
    let mut w = new_world();
    w.pod = Some(PodView {
        name: "db2-0".into(),
        ready: false,
        ..pod("pod-n")
    });
    let d = step(&restore(NEW_STS, ""), &w, now());
    assert_eq!(d.status.phase, Some(Fetching));
    assert_eq!(d.status.pod.as_deref(), Some("db2-0"));

    w.pod.as_mut().unwrap().init_problem =
        Some("init container innoxide-agent-init exited 1".into());
    let r = restore(
        NEW_STS,
        "  phase: Fetching\n  pod: db2-0\n  backup: {location: x, gtidExecuted: \"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77\"}\n",
    );
    let d = step(&r, &w, now());
    assert_eq!(
        find(&d.status.conditions, "Ready").unwrap().reason,
        "InitFailing"
    );

    w.pod.as_mut().unwrap().ready = true;
    w.pod.as_mut().unwrap().init_problem = None;
    w.server = server("", None, GTID);
    let d = step(&r, &w, now());
    assert_eq!(d.status.phase, Some(Completed));
    assert_eq!(
        d.status.staging_seconds,
        Some(240.0),
        "pod creation to ready"
    );

    w.server = server("", None, "other:1-3");
    assert_eq!(step(&r, &w, now()).status.phase, Some(Failed));
}

#[test]
fn gtid_sets_compare_as_sets() {
    assert!(gtid_sets_equal("a:1-5,\nb:1-3", "B:1-3, a:1-5"));
    assert!(gtid_sets_equal("", " "));
    assert!(!gtid_sets_equal("a:1-5", "a:1-6"));
}
