//! The MySQLBackup reconcile end to end against an in-memory Kubernetes API
//! (kube-fake-client: real `kube::Client`, typed `Api<K>`, no watch) and
//! the fake agent: the finalizer goes on, the backup starts once with the
//! resource's UID on the chosen pod, progress and the result reach the
//! status, a missing Secret makes it wait, deletion cancels a running one.
//!
//! The seeded backup carries someone else's finalizer: the fake API stores
//! an empty finalizer list as absent, which trips kube's JSON-patch test
//! when the list starts empty (a real API server does not).

use std::sync::Arc;

use innoxide_operator::agent::fake::FakeAgent;
use innoxide_operator::api::{BACKUP_FINALIZER, BackupPhase, MySQLBackup};
use innoxide_operator::backup::controller::reconcile;
use innoxide_operator::clock::ManualClock;
use innoxide_operator::context::{Context, Settings};
use innoxide_operator::metrics::Metrics;
use innoxide_operator::wiring::WiringSettings;
use innoxide_proto::agent::v1 as pb;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::core::DeserializeGuard;
use kube::{Api, Client};
use kube_fake_client::ClientBuilder;

const MYSQL: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: prod, uid: uid-sts}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: mysql, image: "mysql:9.7"}]
"#;

fn pod(name: &str, role: &str, ip: &str) -> Pod {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: prod
  labels: {{app: db, innoxide.dev/role: {role}}}
  ownerReferences: [{{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: uid-sts, controller: true}}]
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

const BACKUP: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackup
metadata: {name: nightly, namespace: prod, uid: uid-nightly, generation: 1, finalizers: [example.com/keep]}
spec:
  mysql: {statefulSetName: db, roleLabel: innoxide.dev/role}
  source: PreferReplica
  storage:
    s3: {bucket: backups, prefix: prod, credentialsSecretRef: {name: s3-keys, accessKeyIdKey: AWS_ACCESS_KEY_ID, secretAccessKeyKey: AWS_SECRET_ACCESS_KEY}}
  compression: None
  deletionPolicy: Retain
"#;

const KEYS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: s3-keys, namespace: prod}
stringData: {AWS_ACCESS_KEY_ID: AKIA, AWS_SECRET_ACCESS_KEY: sekrit}
"#;

struct World {
    client: Client,
    agent: FakeAgent,
    ctx: Arc<Context<FakeAgent>>,
}

async fn world(with_keys: bool) -> World {
    let sts: StatefulSet = serde_yaml::from_str(MYSQL).unwrap();
    let backup: MySQLBackup = serde_yaml::from_str(BACKUP).unwrap();
    let mut builder = ClientBuilder::new()
        .with_resource::<MySQLBackup>()
        .with_status_subresource::<MySQLBackup>()
        .with_object(sts)
        .with_object(pod("db-0", "primary", "10.0.0.10"))
        .with_object(pod("db-1", "replica", "10.0.0.11"))
        .with_object(backup);
    if with_keys {
        let mut keys: Secret = serde_yaml::from_str(KEYS).unwrap();
        // What the API server makes of stringData.
        keys.data = keys.string_data.take().map(|d| {
            d.into_iter()
                .map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes())))
                .collect()
        });
        builder = builder.with_object(keys);
    }
    let client = builder.build().await.expect("fake API");
    let agent = FakeAgent::new();
    let ctx = Arc::new(Context::new(
        client.clone(),
        agent.clone(),
        Arc::new(ManualClock::at("2026-11-21T03:00:00Z".parse().unwrap())),
        Arc::new(Metrics::new()),
        Settings {
            namespace: "innoxide-system".into(),
            ca_secret: "innoxide-operator-ca".into(),
            wiring: WiringSettings {
                agent_image: "innoxide/innoxide-agent:test".into(),
            },
            agent_lost_timeout: innoxide_operator::context::DEFAULT_AGENT_LOST_TIMEOUT,
        },
    ));
    World { client, agent, ctx }
}

impl World {
    fn backups(&self) -> Api<MySQLBackup> {
        Api::namespaced(self.client.clone(), "prod")
    }

    async fn backup(&self) -> MySQLBackup {
        self.backups().get("nightly").await.unwrap()
    }

    async fn reconcile(&self) {
        self.reconcile_named("nightly").await;
    }

    async fn reconcile_named(&self, name: &str) {
        let backup = self.backups().get(name).await.unwrap();
        reconcile(Arc::new(DeserializeGuard(Ok(backup))), self.ctx.clone())
            .await
            .expect("reconcile");
    }
}

#[tokio::test]
async fn a_backup_runs_on_the_replica_and_records_its_result() {
    let w = world(true).await;
    w.reconcile().await;
    let backup = w.backup().await;
    assert!(
        backup
            .metadata
            .finalizers
            .unwrap()
            .contains(&BACKUP_FINALIZER.to_owned())
    );
    assert!(
        w.agent.requests().is_empty(),
        "the finalizer goes on before anything starts"
    );

    w.reconcile().await;
    let requests = w.agent.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].operation_id, "uid-nightly",
        "keyed by the resource's UID"
    );
    assert_eq!(
        requests[0].repository.as_ref().unwrap().url,
        "s3://backups/prod"
    );
    let status = w.backup().await.status.unwrap();
    assert_eq!(status.phase, Some(BackupPhase::Running));
    assert_eq!(
        status.pod.as_deref(),
        Some("db-1"),
        "PreferReplica picked the replica"
    );
    assert_eq!(
        status.location.as_deref(),
        Some("s3://backups/prod/nightly-uidnight"),
        "the name and the UID's start: a re-created backup gets a fresh folder"
    );

    w.agent.update("uid-nightly", |op| {
        op.progress = Some(pb::Progress {
            phase: pb::Phase::CopyingTablespaces as i32,
            bytes_done: 30,
            bytes_total: 120,
            ..pb::Progress::default()
        })
    });
    w.reconcile().await;
    let status = w.backup().await.status.unwrap();
    assert_eq!(status.progress.unwrap().percent.as_deref(), Some("25%"));
    assert_eq!(
        w.agent.requests().len(),
        1,
        "a running backup is polled, never started again"
    );

    w.agent.update("uid-nightly", |op| {
        op.state = pb::OperationState::Succeeded as i32;
        op.result = Some(pb::operation::Result::Backup(pb::BackupResult {
            to_lsn: 2000,
            start_checkpoint_lsn: 1000,
            last_lsn: 2010,
            binlog_file: "binlog.000002".into(),
            binlog_position: 4242,
            gtid_executed: "uuid:1-10".into(),
            bytes: 2048,
            ..pb::BackupResult::default()
        }));
    });
    w.reconcile().await;
    let done = w.backup().await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(BackupPhase::Completed));
    assert_eq!(status.size.as_deref(), Some("2Ki"));
    assert_eq!(status.binlog.unwrap().position, 4242);
    assert_eq!(status.gtid_executed.as_deref(), Some("uuid:1-10"));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.observed_generation),
        ("True", done.metadata.generation)
    );
}

#[tokio::test]
async fn a_missing_secret_makes_the_backup_wait_and_say_so() {
    let w = world(false).await;
    w.reconcile().await;
    w.reconcile().await;
    let status = w.backup().await.status.unwrap();
    assert_eq!(status.phase, Some(BackupPhase::Pending));
    assert!(
        status
            .message
            .unwrap()
            .contains("Secret s3-keys does not exist")
    );
    assert!(w.agent.requests().is_empty());
}

#[tokio::test]
async fn deleting_a_running_backup_cancels_it_and_releases_the_finalizer() {
    let w = world(true).await;
    w.reconcile().await;
    w.reconcile().await;
    let mut deleting = w.backup().await;
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-21T03:00:00Z".parse().unwrap(),
        ));
    reconcile(Arc::new(DeserializeGuard(Ok(deleting))), w.ctx.clone())
        .await
        .expect("cleanup");
    assert_eq!(w.agent.cancelled(), ["uid-nightly"]);
    let finalizers = w.backup().await.metadata.finalizers.unwrap_or_default();
    assert_eq!(finalizers, ["example.com/keep"], "ours is released");
}

#[tokio::test]
async fn an_incremental_continues_the_completed_backup_on_its_pod_with_its_base_recorded_first() {
    let w = world(true).await;
    w.reconcile().await;
    w.reconcile().await;
    w.agent.update("uid-nightly", |op| {
        op.state = pb::OperationState::Succeeded as i32;
        op.result = Some(pb::operation::Result::Backup(pb::BackupResult {
            to_lsn: 2000,
            gtid_executed: "uuid:1-10".into(),
            ..pb::BackupResult::default()
        }));
    });
    w.reconcile().await;
    assert_eq!(w.backup().await.phase(), BackupPhase::Completed);

    let hourly: MySQLBackup = serde_yaml::from_str(
        &BACKUP
            .replace("name: nightly", "name: hourly")
            .replace("uid: uid-nightly", "uid: uid-hourly")
            .replace(
                "  compression: None",
                "  type: Incremental\n  compression: None",
            ),
    )
    .unwrap();
    w.backups()
        .create(&kube::api::PostParams::default(), &hourly)
        .await
        .unwrap();
    w.reconcile_named("hourly").await;
    w.reconcile_named("hourly").await;
    let status = w.backups().get("hourly").await.unwrap().status.unwrap();
    let chosen = status.incremental.clone().unwrap();
    assert_eq!(
        (chosen.base_name.as_str(), chosen.base_backup_name.as_str()),
        ("nightly", "nightly-uidnight")
    );
    assert_eq!(status.pod.as_deref(), Some("db-1"), "where its base ran");
    assert_eq!(
        w.agent.requests().len(),
        1,
        "the base is written down before anything starts"
    );

    w.reconcile_named("hourly").await;
    let requests = w.agent.requests();
    let started = requests.last().unwrap();
    assert_eq!(started.operation_id, "uid-hourly");
    assert_eq!(
        started.incremental.as_ref().unwrap().base_backup_name,
        "nightly-uidnight"
    );
    let status = w.backups().get("hourly").await.unwrap().status.unwrap();
    assert_eq!(status.phase, Some(BackupPhase::Running));
    assert_eq!(status.incremental, Some(chosen), "the choice never changes");
}
