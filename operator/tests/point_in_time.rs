//! Point-in-time recovery in the operator, against an in-memory Kubernetes
//! API and the fake agent, from YAML: a schedule with `binlogArchive` has
//! the primary's agent archive into its storage's `binlogs` folder, shows
//! the window, lag and gaps (a gap is a Warning Event, the lag a metric),
//! moves the archiver after a failover, and prunes the archive up to the
//! oldest kept backup; a MySQLRestore to a time picks the newest backup
//! before it, asks the agent to replay the archive to that time, and
//! completes once the server has the target's GTID set.

use std::sync::Arc;

use innoxide_operator::agent::fake::FakeAgent;
use innoxide_operator::api::{
    MySQLBackup, MySQLBackupSchedule, MySQLRestore, RESTORE_FINALIZER, RestorePhase,
};
use innoxide_operator::clock::ManualClock;
use innoxide_operator::context::{Context, Settings};
use innoxide_operator::metrics::Metrics;
use innoxide_operator::wiring::WiringSettings;
use innoxide_proto::agent::v1 as pb;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::{Api, Client, ResourceExt};
use kube_fake_client::ClientBuilder;

const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

const SCHEDULE: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackupSchedule
metadata: {name: nightly, namespace: prod, uid: uid-schedule, generation: 1, creationTimestamp: "2026-11-01T00:00:00Z"}
spec:
  schedule: "0 3 * * *"
  retention: {keepLast: 2}
  binlogArchive: {uploadIntervalSeconds: 10}
  backupTemplate:
    spec:
      mysql: {statefulSetName: db}
      compression: Zstd
      storage:
        s3: {bucket: backups, prefix: prod, endpoint: "http://minio:9000", credentialsSecretRef: {name: s3-keys}}
status:
  lastScheduleTime: "2026-11-21T03:00:00Z"
"#;

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: prod, uid: uid-sts-db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: mysql, image: "mysql:9.7"}, {name: innoxide-agent, image: "mysql:9.7"}]
"#;

fn pod(name: &str, uid: &str, role: &str, ip: &str) -> Pod {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: prod
  uid: {uid}
  creationTimestamp: "2026-11-21T03:01:00Z"
  labels: {{app: db, innoxide.dev/role: {role}}}
  ownerReferences: [{{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: uid-sts-db, controller: true}}]
spec:
  containers: [{{name: mysql, image: "mysql:9.7"}}, {{name: innoxide-agent, image: "mysql:9.7"}}]
status:
  phase: Running
  podIP: {ip}
  conditions: [{{type: Ready, status: "True"}}]
"#
    ))
    .unwrap()
}

/// A completed backup of the schedule, holding `A:1-<last>`.
fn completed(day: u32, last: u64) -> MySQLBackup {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackup
metadata:
  name: nightly-202611{day:02}0300
  namespace: prod
  uid: uid-{day}
  labels: {{innoxide.dev/schedule: nightly}}
  creationTimestamp: "2026-11-{day:02}T03:00:00Z"
spec:
  mysql: {{statefulSetName: db}}
  storage:
    s3: {{bucket: backups, prefix: prod, endpoint: "http://minio:9000", credentialsSecretRef: {{name: s3-keys}}}}
status:
  phase: Completed
  pod: db-0
  backupName: nightly-202611{day:02}0300-uid{day}
  gtidExecuted: "{A}:1-{last}"
  completionTime: "2026-11-{day:02}T03:20:00Z"
"#
    ))
    .unwrap()
}

fn keys() -> Secret {
    serde_yaml::from_str(
        r#"
apiVersion: v1
kind: Secret
metadata: {name: s3-keys, namespace: prod}
data: {AWS_ACCESS_KEY_ID: QUtJQQ==, AWS_SECRET_ACCESS_KEY: c2Vrcml0}
"#,
    )
    .unwrap()
}

struct World {
    client: Client,
    agent: FakeAgent,
    metrics: Arc<Metrics>,
    ctx: Arc<Context<FakeAgent>>,
}

async fn world(backups: Vec<MySQLBackup>) -> World {
    let schedule: MySQLBackupSchedule = serde_yaml::from_str(SCHEDULE).unwrap();
    let sts: StatefulSet = serde_yaml::from_str(STS).unwrap();
    let client = ClientBuilder::new()
        .with_resource::<MySQLBackup>()
        .with_resource::<MySQLBackupSchedule>()
        .with_resource::<MySQLRestore>()
        .with_status_subresource::<MySQLBackup>()
        .with_status_subresource::<MySQLRestore>()
        .with_object(schedule)
        .with_object(sts)
        .with_object(pod("db-0", "pod-0", "primary", "10.0.0.10"))
        .with_object(pod("db-1", "pod-1", "replica", "10.0.0.11"))
        .with_object(keys())
        .with_objects(backups)
        .build()
        .await
        .expect("fake API");
    let agent = FakeAgent::new();
    let metrics = Arc::new(Metrics::new());
    let clock = ManualClock::at("2026-11-21T12:00:00Z".parse().unwrap());
    let ctx = Arc::new(Context::new(
        client.clone(),
        agent.clone(),
        Arc::new(clock),
        metrics.clone(),
        Settings {
            namespace: "innoxide-system".into(),
            ca_secret: "innoxide-operator-ca".into(),
            wiring: WiringSettings {
                agent_image: "innoxide/innoxide-agent:test".into(),
            },
            agent_lost_timeout: innoxide_operator::context::DEFAULT_AGENT_LOST_TIMEOUT,
        },
    ));
    World {
        client,
        agent,
        metrics,
        ctx,
    }
}

fn at(text: &str) -> innoxide_proto::prost_types::Timestamp {
    let t: jiff::Timestamp = text.parse().unwrap();
    innoxide_proto::prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: 0,
    }
}

impl World {
    async fn reconcile_schedule(&self) -> MySQLBackupSchedule {
        let api: Api<MySQLBackupSchedule> = Api::namespaced(self.client.clone(), "prod");
        let schedule = api.get("nightly").await.unwrap();
        innoxide_operator::schedule::controller::reconcile(
            Arc::new(DeserializeGuard(Ok(schedule))),
            self.ctx.clone(),
        )
        .await
        .expect("reconcile");
        api.get("nightly").await.unwrap()
    }

    async fn restore(&self, name: &str) -> MySQLRestore {
        Api::<MySQLRestore>::namespaced(self.client.clone(), "prod")
            .get(name)
            .await
            .unwrap()
    }

    async fn reconcile_restore(&self, name: &str) -> MySQLRestore {
        for _ in 0..2 {
            let restore = self.restore(name).await;
            let fresh = !restore.finalizers().iter().any(|f| f == RESTORE_FINALIZER);
            innoxide_operator::restore::controller::reconcile(
                Arc::new(DeserializeGuard(Ok(restore))),
                self.ctx.clone(),
            )
            .await
            .expect("reconcile");
            if !fresh {
                break;
            }
        }
        self.restore(name).await
    }

    /// The archiver on `pod` reports this window.
    fn archiving(&self, pod: &str, latest: &str) {
        self.agent.archive(pod, "uid-schedule", |s| {
            s.state = pb::ArchiveState::Running as i32;
            s.server_uuid = A.into();
            s.lag_seconds = 1.5;
            s.earliest = Some(at("2026-11-19T03:00:00Z"));
            s.latest = Some(at(latest));
        });
    }
}

#[tokio::test]
async fn the_primary_archives_into_the_binlogs_folder_and_follows_a_failover() {
    let w = world(vec![completed(20, 200), completed(21, 300)]).await;
    let schedule = w.reconcile_schedule().await;
    assert_eq!(
        w.agent.archive_calls().first().map(String::as_str),
        Some("start db-0")
    );
    let request = w.agent.archive_requests().remove(0);
    assert_eq!(request.archive_id, "uid-schedule");
    let repository = request.repository.unwrap();
    assert_eq!(repository.url, "s3://backups/prod/binlogs");
    assert_eq!(repository.options["endpoint"], "http://minio:9000");
    assert_eq!(request.compression, pb::Compression::Zstd as i32);
    assert_eq!(request.upload_interval_seconds, 10);
    let status = schedule.status.unwrap().binlog_archive.unwrap();
    assert_eq!(status.state.as_deref(), Some("Archiving"));
    assert_eq!(status.pod.as_deref(), Some("db-0"));
    assert_eq!(
        status.location.as_deref(),
        Some("s3://backups/prod/binlogs")
    );

    // The archiver reports: window and lag in the status, lag as a metric;
    // retention prunes up to the oldest kept backup, once.
    w.archiving("db-0", "2026-11-21T11:59:58Z");
    let status = w
        .reconcile_schedule()
        .await
        .status
        .unwrap()
        .binlog_archive
        .unwrap();
    assert_eq!(status.latest.unwrap().0.to_string(), "2026-11-21T11:59:58Z");
    assert_eq!(
        status.earliest.unwrap().0.to_string(),
        "2026-11-19T03:00:00Z"
    );
    assert_eq!(status.lag_seconds, Some(1.5));
    assert_eq!(
        status.retained_from.as_deref(),
        Some("nightly-202611200300")
    );
    let metrics = w.metrics.render();
    assert!(
        metrics.contains(
            "innoxide_operator_binlog_archive_lag_seconds{namespace=\"prod\",schedule=\"nightly\"} 1.5"
        ),
        "{metrics}"
    );
    let prunes: Vec<String> = w
        .agent
        .archive_calls()
        .into_iter()
        .filter(|c| c.starts_with("prune"))
        .collect();
    assert_eq!(prunes, [format!("prune db-0 {A}:1-200")]);
    w.reconcile_schedule().await;
    assert_eq!(
        w.agent
            .archive_calls()
            .iter()
            .filter(|c| c.starts_with("prune"))
            .count(),
        1,
        "pruned once for a given oldest backup"
    );

    // A gap: in the status, and a Warning Event (the fake API keeps them).
    w.agent.archive("db-0", "uid-schedule", |s| {
        s.gaps.push(pb::BinlogGap {
            after_file: "binlog.000007".into(),
            before_file: "binlog.000009".into(),
            reason: "PURGED".into(),
            missing: format!("{A}:301-350"),
            ..pb::BinlogGap::default()
        })
    });
    let status = w
        .reconcile_schedule()
        .await
        .status
        .unwrap()
        .binlog_archive
        .unwrap();
    assert_eq!(status.gaps.len(), 1);
    assert_eq!(status.gaps[0].missing, format!("{A}:301-350"));

    // Failover: db-1 is the primary now. db-0's archiver stops first, then
    // db-1's starts.
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), "prod");
    for (name, role) in [("db-0", "replica"), ("db-1", "primary")] {
        let patch = serde_json::json!({"metadata": {"labels": {"innoxide.dev/role": role}}});
        pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    let status = w
        .reconcile_schedule()
        .await
        .status
        .unwrap()
        .binlog_archive
        .unwrap();
    assert_eq!(status.state.as_deref(), Some("Moving"));
    assert_eq!(
        w.agent.archive_calls().last().map(String::as_str),
        Some("stop db-0")
    );
    let status = w
        .reconcile_schedule()
        .await
        .status
        .unwrap()
        .binlog_archive
        .unwrap();
    assert_eq!(
        w.agent.archive_calls().last().map(String::as_str),
        Some("start db-1")
    );
    assert_eq!(status.pod.as_deref(), Some("db-1"));
    assert_eq!(status.state.as_deref(), Some("Archiving"));

    // Turned off: the archiver stops, the archive stays.
    let schedules: Api<MySQLBackupSchedule> = Api::namespaced(w.client.clone(), "prod");
    let off = serde_json::json!({"spec": {"binlogArchive": {"enabled": false}}});
    schedules
        .patch("nightly", &PatchParams::default(), &Patch::Merge(&off))
        .await
        .unwrap();
    let status = w
        .reconcile_schedule()
        .await
        .status
        .unwrap()
        .binlog_archive
        .unwrap();
    assert_eq!(status.state.as_deref(), Some("Stopped"));
    assert_eq!(
        w.agent.archive_calls().last().map(String::as_str),
        Some("stop db-1")
    );
}

const PITR: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLRestore
metadata: {name: undo-drop, namespace: prod, uid: uid-undo, generation: 1, creationTimestamp: "2026-11-21T11:59:00Z", finalizers: [example.com/keep]}
spec:
  source: {pointInTime: {scheduleName: nightly, time: "2026-11-21T10:30:00Z"}}
  target: {statefulSetName: db, mode: InPlace}
"#;

#[tokio::test]
async fn a_restore_to_a_time_starts_from_the_newest_backup_before_it_and_replays_the_archive() {
    let w = world(vec![completed(20, 200), completed(21, 300)]).await;
    w.reconcile_schedule().await;
    w.archiving("db-0", "2026-11-21T11:59:58Z");
    w.reconcile_schedule().await;
    let restore: MySQLRestore = serde_yaml::from_str(PITR).unwrap();
    Api::<MySQLRestore>::namespaced(w.client.clone(), "prod")
        .create(&PostParams::default(), &restore)
        .await
        .unwrap();
    let r = w.reconcile_restore("undo-drop").await;
    assert_eq!(r.phase(), RestorePhase::Fetching, "{:?}", r.status);
    let status = r.status.clone().unwrap();
    let point = status.point_in_time.clone().unwrap();
    assert_eq!(point.base_backup, "nightly-202611210300");
    assert_eq!(point.target, "time 2026-11-21T10:30:00Z");
    assert_eq!(point.archive, "s3://backups/prod/binlogs");
    let request = w.agent.stage_requests().remove(0);
    assert_eq!(request.backup_name, "nightly-202611210300-uid21");
    let Some(pb::restore_point::Target::Time(time)) = request.point_in_time.clone().unwrap().target
    else {
        panic!("no time target: {request:?}")
    };
    assert_eq!(time, at("2026-11-21T10:30:00Z"));
    assert_eq!(
        request.binlog_archive.unwrap().url,
        "s3://backups/prod/binlogs"
    );

    // Staged: the agent replayed to the time; the status names the set.
    let target_set = format!("{A}:1-345");
    w.agent.update("uid-undo", |op| {
        op.state = pb::OperationState::Succeeded as i32;
        op.result = Some(pb::operation::Result::StageRestore(
            pb::StageRestoreResult {
                gtid_executed: target_set.clone(),
                backup_gtid_executed: format!("{A}:1-300"),
                transactions_replayed: 45,
                ..pb::StageRestoreResult::default()
            },
        ));
    });
    let r = w.reconcile_restore("undo-drop").await;
    assert_eq!(r.phase(), RestorePhase::Restarting, "{:?}", r.status);
    let status = r.status.clone().unwrap();
    let point = status.point_in_time.unwrap();
    assert_eq!(point.gtid_executed.as_deref(), Some(target_set.as_str()));
    assert_eq!(point.transactions_replayed, Some(45));
    assert_eq!(
        status.backup.unwrap().gtid_executed.as_deref(),
        Some(&*format!("{A}:1-300"))
    );

    // The pod comes back on the restored data: done when its set is the
    // target's.
    w.agent.perform_swap("db-0");
    Api::<Pod>::namespaced(w.client.clone(), "prod")
        .create(
            &PostParams::default(),
            &pod("db-0", "pod-0b", "primary", "10.0.0.10"),
        )
        .await
        .unwrap();
    let r = w.reconcile_restore("undo-drop").await;
    assert_eq!(r.phase(), RestorePhase::Completed, "{:?}", r.status);
    assert!(
        r.status
            .unwrap()
            .message
            .unwrap()
            .contains("the point in time's"),
    );
}

#[tokio::test]
async fn a_time_past_the_archive_waits_and_one_before_every_backup_fails() {
    let w = world(vec![completed(21, 300)]).await;
    w.reconcile_schedule().await;
    w.archiving("db-0", "2026-11-21T10:00:00Z");
    w.reconcile_schedule().await;
    let restores = Api::<MySQLRestore>::namespaced(w.client.clone(), "prod");
    restores
        .create(&PostParams::default(), &serde_yaml::from_str(PITR).unwrap())
        .await
        .unwrap();
    let r = w.reconcile_restore("undo-drop").await;
    assert_eq!(r.phase(), RestorePhase::Pending);
    let message = r.status.unwrap().message.unwrap();
    assert!(
        message.contains("reaches 2026-11-21T10:00:00Z so far"),
        "{message}"
    );
    assert!(w.agent.stage_requests().is_empty(), "nothing staged");

    let w = world(vec![completed(21, 300)]).await;
    w.reconcile_schedule().await;
    w.archiving("db-0", "2026-11-21T10:00:00Z");
    w.reconcile_schedule().await;
    let early: MySQLRestore = serde_yaml::from_str(
        &PITR
            .replace("undo-drop", "too-early")
            .replace("uid-undo", "uid-early")
            .replace("2026-11-21T10:30:00Z", "2026-11-20T10:30:00Z"),
    )
    .unwrap();
    Api::<MySQLRestore>::namespaced(w.client.clone(), "prod")
        .create(&PostParams::default(), &early)
        .await
        .unwrap();
    let r = w.reconcile_restore("too-early").await;
    assert_eq!(r.phase(), RestorePhase::Failed);
    let message = r.status.unwrap().message.unwrap();
    assert!(message.contains("no Completed MySQLBackup"), "{message}");
}
