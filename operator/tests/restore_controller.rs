//! The MySQLRestore reconcile end to end against an in-memory Kubernetes
//! API (kube-fake-client) and the fake agent: an InPlace restore stages on
//! the primary with the resource's UID, arms the swap, deletes the pod only
//! then, and completes once the replacement pod's agent reports the swap and
//! the backup's GTID set; a second restore of the same StatefulSet is
//! refused; a NewStatefulSet restore writes its spec Secret and completes
//! when the new pod serves the backup's GTID set; deleting a restore
//! withdraws its armed swap before the finalizer goes.
//!
//! The seeded restores carry someone else's finalizer: the fake API stores
//! an empty finalizer list as absent, which trips kube's JSON-patch test
//! when the list starts empty (a real API server does not).

use std::sync::Arc;

use innoxide_operator::agent::fake::FakeAgent;
use innoxide_operator::api::{
    MySQLBackup, MySQLRestore, RESTORE_FINALIZER, RESTORE_SPEC_KEY, RestorePhase,
};
use innoxide_operator::clock::ManualClock;
use innoxide_operator::context::{Context, Settings};
use innoxide_operator::metrics::Metrics;
use innoxide_operator::restore::controller::reconcile;
use innoxide_operator::wiring::WiringSettings;
use innoxide_proto::agent::v1 as pb;
use innoxide_proto::restore_spec::{RestoreSpec, SecretSource};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::PostParams;
use kube::core::DeserializeGuard;
use kube::{Api, Client, ResourceExt};
use kube_fake_client::ClientBuilder;

const GTID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77";

fn sts(name: &str, annotations: &str) -> StatefulSet {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}, namespace: prod, uid: uid-sts-{name}, annotations: {{{annotations}}}}}
spec:
  serviceName: {name}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      schedulingGates: [{{name: innoxide.dev/agent}}]
      initContainers: [{{name: innoxide-agent-install, image: agent}}, {{name: innoxide-agent-init, image: "mysql:9.7"}}]
      containers: [{{name: mysql, image: "mysql:9.7"}}, {{name: innoxide-agent, image: "mysql:9.7"}}]
"#
    ))
    .unwrap()
}

fn pod(sts: &str, name: &str, uid: &str, role: &str, ready: bool) -> Pod {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: prod
  uid: {uid}
  creationTimestamp: "2026-11-21T03:01:00Z"
  labels: {{app: {sts}, innoxide.dev/role: {role}}}
  ownerReferences: [{{apiVersion: apps/v1, kind: StatefulSet, name: {sts}, uid: uid-sts-{sts}, controller: true}}]
spec:
  containers: [{{name: mysql, image: "mysql:9.7"}}, {{name: innoxide-agent, image: "mysql:9.7"}}]
status:
  phase: Running
  podIP: 10.0.0.10
  conditions: [{{type: Ready, status: "{ready}"}}]
"#,
        ready = if ready { "True" } else { "False" }
    ))
    .unwrap()
}

const BACKUP: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackup
metadata: {name: nightly, namespace: prod, uid: uid-nightly, generation: 1}
spec:
  mysql: {statefulSetName: db, roleLabel: innoxide.dev/role}
  source: Primary
  storage:
    s3: {bucket: backups, prefix: prod, endpoint: "http://minio:9000", credentialsSecretRef: {name: s3-keys, accessKeyIdKey: AWS_ACCESS_KEY_ID, secretAccessKeyKey: AWS_SECRET_ACCESS_KEY}}
  compression: None
  deletionPolicy: Retain
status:
  phase: Completed
  backupName: nightly
  location: s3://backups/prod/nightly
  gtidExecuted: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77"
  lsn: {start: 1000, end: 2000, last: 2048}
"#;

fn restore(name: &str, target: &str, mode: &str, created: &str) -> MySQLRestore {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLRestore
metadata: {{name: {name}, namespace: prod, uid: uid-{name}, generation: 1, creationTimestamp: "{created}", finalizers: [example.com/keep]}}
spec:
  source: {{backupName: nightly}}
  target: {{statefulSetName: {target}, mode: {mode}, roleLabel: innoxide.dev/role}}
"#
    ))
    .unwrap()
}

fn keys() -> Secret {
    let mut keys: Secret = serde_yaml::from_str(
        r#"
apiVersion: v1
kind: Secret
metadata: {name: s3-keys, namespace: prod}
stringData: {AWS_ACCESS_KEY_ID: AKIA, AWS_SECRET_ACCESS_KEY: sekrit}
"#,
    )
    .unwrap();
    // What the API server makes of stringData.
    keys.data = keys.string_data.take().map(|d| {
        d.into_iter()
            .map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes())))
            .collect()
    });
    keys
}

struct World {
    client: Client,
    agent: FakeAgent,
    clock: ManualClock,
    ctx: Arc<Context<FakeAgent>>,
}

async fn world(restores: Vec<MySQLRestore>, extra_sts: Option<StatefulSet>) -> World {
    let backup: MySQLBackup = serde_yaml::from_str(BACKUP).unwrap();
    let mut builder = ClientBuilder::new()
        .with_resource::<MySQLRestore>()
        .with_status_subresource::<MySQLRestore>()
        .with_resource::<MySQLBackup>()
        .with_status_subresource::<MySQLBackup>()
        .with_object(sts("db", ""))
        .with_object(pod("db", "db-0", "pod-a", "primary", true))
        .with_object(pod("db", "db-1", "pod-r", "replica", true))
        .with_object(backup)
        .with_object(keys());
    if let Some(extra) = extra_sts {
        builder = builder.with_object(extra);
    }
    for r in restores {
        builder = builder.with_object(r);
    }
    let client = builder.build().await.expect("fake API");
    let agent = FakeAgent::new();
    let clock = ManualClock::at("2026-11-21T10:00:00Z".parse().unwrap());
    let ctx = Arc::new(Context::new(
        client.clone(),
        agent.clone(),
        Arc::new(clock.clone()),
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
    World {
        client,
        agent,
        clock,
        ctx,
    }
}

impl World {
    async fn restore(&self, name: &str) -> MySQLRestore {
        Api::<MySQLRestore>::namespaced(self.client.clone(), "prod")
            .get(name)
            .await
            .unwrap()
    }

    /// One reconcile (two the first time: the finalizer goes on first).
    async fn reconcile(&self, name: &str) -> MySQLRestore {
        let restore = self.restore(name).await;
        let fresh = !restore.finalizers().iter().any(|f| f == RESTORE_FINALIZER);
        reconcile(Arc::new(DeserializeGuard(Ok(restore))), self.ctx.clone())
            .await
            .expect("reconcile");
        if fresh {
            let restore = self.restore(name).await;
            assert!(restore.finalizers().iter().any(|f| f == RESTORE_FINALIZER));
            assert_eq!(
                restore.status, None,
                "the finalizer goes on before anything starts"
            );
            reconcile(Arc::new(DeserializeGuard(Ok(restore))), self.ctx.clone())
                .await
                .expect("reconcile");
        }
        self.restore(name).await
    }

    /// One reconcile of the restore as if deleted at `at` (the finalizer
    /// still on it).
    async fn reconcile_deleted(&self, name: &str, at: &str) {
        let mut deleting = self.restore(name).await;
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at.parse().unwrap()),
        );
        reconcile(Arc::new(DeserializeGuard(Ok(deleting))), self.ctx.clone())
            .await
            .expect("cleanup");
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "prod")
    }

    fn at(&self, time: &str) {
        self.clock.set(time.parse().unwrap());
    }
}

fn phase(r: &MySQLRestore) -> RestorePhase {
    r.phase()
}

#[tokio::test]
async fn an_in_place_restore_stages_swaps_at_a_restart_and_checks_the_gtid_set() {
    let w = world(
        vec![restore("back", "db", "InPlace", "2026-11-21T09:59:00Z")],
        None,
    )
    .await;
    let r = w.reconcile("back").await;
    let requests = w.agent.stage_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].operation_id, "uid-back", "keyed by the UID");
    assert_eq!(requests[0].backup_name, "nightly");
    let repository = requests[0].repository.clone().unwrap();
    assert_eq!(repository.url, "s3://backups/prod");
    assert_eq!(repository.options["endpoint"], "http://minio:9000");
    assert_eq!(phase(&r), RestorePhase::Fetching);
    let status = r.status.clone().unwrap();
    assert_eq!(status.pod.as_deref(), Some("db-0"), "the primary");
    assert_eq!(status.target.as_deref(), Some("db/db-0"));

    // Progress, then prepared.
    w.agent.update("uid-back", |op| {
        op.progress = Some(pb::Progress {
            phase: pb::Phase::ApplyingLog as i32,
            bytes_done: 80,
            bytes_total: 100,
            ..pb::Progress::default()
        })
    });
    let r = w.reconcile("back").await;
    assert_eq!(phase(&r), RestorePhase::Preparing);
    assert_eq!(
        w.agent.stage_requests().len(),
        1,
        "polled, never staged twice"
    );
    assert!(
        w.agent.swap_calls().is_empty(),
        "nothing armed while staging"
    );

    w.agent.update("uid-back", |op| {
        op.state = pb::OperationState::Succeeded as i32;
        op.result = Some(pb::operation::Result::StageRestore(
            pb::StageRestoreResult {
                gtid_executed: GTID.into(),
                last_lsn: 2048,
                backup_location: "s3://backups/prod/nightly".into(),
                ..pb::StageRestoreResult::default()
            },
        ));
    });
    let r = w.reconcile("back").await;
    assert_eq!(phase(&r), RestorePhase::Restarting);
    assert_eq!(w.agent.swap_calls(), ["arm uid-back"]);
    assert_eq!(
        w.agent
            .server_state("db-0")
            .swap
            .unwrap()
            .armed_operation_id,
        "uid-back",
        "armed before the pod went"
    );
    assert!(
        w.pods().get_opt("db-0").await.unwrap().is_none(),
        "the pod was deleted"
    );
    assert!(w.pods().get_opt("db-1").await.unwrap().is_some());
    let switch = r.status.clone().unwrap().switch.unwrap();
    assert_eq!(switch.pod_uid, "pod-a");

    // Still restarting: nothing more happens.
    w.at("2026-11-21T10:00:10Z");
    let r = w.reconcile("back").await;
    assert_eq!(phase(&r), RestorePhase::Restarting);
    assert!(
        r.status
            .unwrap()
            .message
            .unwrap()
            .contains("unavailable for 10s")
    );

    // The "kubelet": the pod comes back, its init container swapped.
    w.agent.perform_swap("db-0");
    w.pods()
        .create(
            &PostParams::default(),
            &pod("db", "db-0", "pod-b", "primary", true),
        )
        .await
        .unwrap();
    w.at("2026-11-21T10:00:21Z");
    let r = w.reconcile("back").await;
    let status = r.status.clone().unwrap();
    assert_eq!(phase(&r), RestorePhase::Completed, "{:?}", status.message);
    assert_eq!(status.gtid_executed.as_deref(), Some(GTID));
    assert_eq!(status.unavailability_seconds, Some(21.0));
    assert_eq!(
        status.previous_datadir.as_deref(),
        Some("/var/lib/mysql/.innoxide-agent/previous/uid-back")
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");

    // Completed is the end: a later reconcile touches nothing.
    let again = w.reconcile("back").await;
    assert_eq!(again.status, r.status);
    assert_eq!(w.agent.swap_calls(), ["arm uid-back"]);

    // Deleting it gives back the space of the datadir it replaced.
    w.reconcile_deleted("back", "2026-11-22T10:00:00Z").await;
    assert_eq!(w.agent.swap_calls(), ["arm uid-back", "discard uid-back"]);
}

#[tokio::test]
async fn a_failed_stage_leaves_the_pod_alone() {
    let w = world(
        vec![restore("back", "db", "InPlace", "2026-11-21T09:59:00Z")],
        None,
    )
    .await;
    w.reconcile("back").await;
    w.agent.update("uid-back", |op| {
        op.state = pb::OperationState::Failed as i32;
        op.error = Some(pb::OperationError {
            code: 9,
            reason: "INSUFFICIENT_SPACE".into(),
            message: "the volume has 2 GiB free; the staged copy needs 5 GiB".into(),
        });
    });
    let r = w.reconcile("back").await;
    assert_eq!(phase(&r), RestorePhase::Failed);
    assert!(w.agent.swap_calls().is_empty());
    assert_eq!(
        w.pods().get("db-0").await.unwrap().metadata.uid.as_deref(),
        Some("pod-a"),
        "the server keeps running"
    );
}

#[tokio::test]
async fn a_second_restore_of_the_same_statefulset_waits_for_the_first() {
    let w = world(
        vec![
            restore("first", "db", "InPlace", "2026-11-21T09:00:00Z"),
            restore("second", "db", "InPlace", "2026-11-21T09:30:00Z"),
        ],
        None,
    )
    .await;
    let first = w.reconcile("first").await;
    assert_eq!(phase(&first), RestorePhase::Fetching);
    let second = w.reconcile("second").await;
    assert_eq!(phase(&second), RestorePhase::Pending);
    let message = second.status.unwrap().message.unwrap();
    assert!(
        message.contains("MySQLRestore first is restoring StatefulSet db"),
        "{message}"
    );
    assert_eq!(w.agent.stage_requests().len(), 1);

    // The first one fails (say its backup is bad): the second one starts.
    w.agent.update("uid-first", |op| {
        op.state = pb::OperationState::Failed as i32;
        op.error = Some(pb::OperationError {
            reason: "BACKUP_INVALID".into(),
            message: "a flipped bit".into(),
            ..Default::default()
        });
    });
    assert_eq!(phase(&w.reconcile("first").await), RestorePhase::Failed);
    assert_eq!(phase(&w.reconcile("second").await), RestorePhase::Fetching);
    assert_eq!(w.agent.stage_requests().len(), 2);
}

#[tokio::test]
async fn a_new_statefulset_is_seeded_from_the_spec_secret() {
    let w = world(
        vec![restore(
            "clone",
            "db2",
            "NewStatefulSet",
            "2026-11-21T09:00:00Z",
        )],
        Some(sts("db2", "innoxide.dev/restore-from: clone")),
    )
    .await;
    let r = w.reconcile("clone").await;
    assert_eq!(phase(&r), RestorePhase::Pending);
    assert!(
        r.status
            .unwrap()
            .message
            .unwrap()
            .contains("waiting for the first pod")
    );
    let secret = Api::<Secret>::namespaced(w.client.clone(), "prod")
        .get("clone-restore-spec")
        .await
        .expect("the spec Secret");
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, "uid-clone");
    let json = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(RESTORE_SPEC_KEY).cloned())
        .or_else(|| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(RESTORE_SPEC_KEY))
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        })
        .unwrap();
    let spec = RestoreSpec::from_json(&json).unwrap();
    assert_eq!(
        (spec.operation_id.as_str(), spec.backup_name.as_str()),
        ("uid-clone", "nightly")
    );
    assert_eq!(
        spec.repository.s3.unwrap().secret_access_key,
        Some(SecretSource::Value("sekrit".into())),
        "credentials by value from the referenced Secret"
    );

    // The new pod (created after the restore) restores in its init
    // container, then serves.
    let mut new_pod = pod("db2", "db2-0", "pod-n", "primary", false);
    new_pod.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-21T10:01:00Z".parse().unwrap(),
        ));
    w.pods()
        .create(&PostParams::default(), &new_pod)
        .await
        .unwrap();
    let r = w.reconcile("clone").await;
    assert_eq!(phase(&r), RestorePhase::Fetching);
    // Ready: the fake API keeps a pod's status as created, so the pod is
    // created again as kubelet would report it.
    w.pods().delete("db2-0", &Default::default()).await.unwrap();
    let mut ready = new_pod.clone();
    ready.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
    w.pods()
        .create(&PostParams::default(), &ready)
        .await
        .unwrap();
    w.agent.server("db2-0", |s| {
        s.gtid_executed = GTID.into();
        s.server_uuid = "a-new-uuid".into();
    });
    let r = w.reconcile("clone").await;
    assert_eq!(
        phase(&r),
        RestorePhase::Completed,
        "{:?}",
        r.status.unwrap().message
    );
}

#[tokio::test]
async fn a_new_statefulset_that_already_runs_is_refused() {
    // db's pods were created at 03:01, before this restore.
    let w = world(
        vec![restore(
            "clone",
            "db",
            "NewStatefulSet",
            "2026-11-21T09:00:00Z",
        )],
        None,
    )
    .await;
    let r = w.reconcile("clone").await;
    assert_eq!(phase(&r), RestorePhase::Failed);
    assert!(
        r.status
            .unwrap()
            .message
            .unwrap()
            .contains("already runs pods")
    );
}

#[tokio::test]
async fn deleting_a_restore_with_an_armed_swap_withdraws_it() {
    let w = world(
        vec![restore("back", "db", "InPlace", "2026-11-21T09:59:00Z")],
        None,
    )
    .await;
    w.reconcile("back").await;
    // Staged, and the swap armed, but the pod not deleted yet (the status
    // says Switching without a recorded deletion).
    w.agent.update("uid-back", |op| {
        op.state = pb::OperationState::Succeeded as i32;
        op.result = Some(pb::operation::Result::StageRestore(
            pb::StageRestoreResult::default(),
        ));
    });
    let api = Api::<MySQLRestore>::namespaced(w.client.clone(), "prod");
    let switching = w.restore("back").await;
    let mut status = switching.status.clone().unwrap();
    status.phase = Some(RestorePhase::Switching);
    innoxide_operator::context::apply_status(&api, &switching, &status)
        .await
        .unwrap();
    w.agent.server("db-0", |s| {
        s.swap = Some(pb::SwapState {
            armed_operation_id: "uid-back".into(),
            last_swap: None,
        })
    });
    w.reconcile_deleted("back", "2026-11-21T10:00:00Z").await;
    // Then the staged copy goes; the pod's own previous datadirs stay.
    assert_eq!(
        w.agent.swap_calls(),
        ["disarm uid-back", "discard uid-back keeping previous"]
    );
    assert_eq!(
        w.agent
            .server_state("db-0")
            .swap
            .unwrap()
            .armed_operation_id,
        "",
        "nothing is armed any more"
    );
    assert_eq!(
        w.restore("back").await.finalizers(),
        ["example.com/keep"],
        "ours is released"
    );
    assert_eq!(
        w.pods().get("db-0").await.unwrap().metadata.uid.as_deref(),
        Some("pod-a")
    );
}
