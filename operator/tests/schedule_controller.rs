//! The MySQLBackupSchedule reconcile against an in-memory Kubernetes API
//! with a clock the test moves: a due run becomes a MySQLBackup owned by
//! the schedule (once, however often it reconciles), retention deletes the
//! old completed ones, an invalid time zone is reported and waited on.

use std::sync::Arc;
use std::time::Duration;

use innoxide_operator::agent::fake::FakeAgent;
use innoxide_operator::api::{MySQLBackup, MySQLBackupSchedule};
use innoxide_operator::clock::ManualClock;
use innoxide_operator::context::{Context, Settings};
use innoxide_operator::metrics::Metrics;
use innoxide_operator::schedule::controller::reconcile;
use innoxide_operator::wiring::WiringSettings;
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt};
use kube_fake_client::ClientBuilder;

const SCHEDULE: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackupSchedule
metadata: {name: nightly, namespace: prod, uid: uid-schedule, generation: 1, creationTimestamp: "2026-11-01T00:00:00Z"}
spec:
  schedule: "0 3 * * *"
  concurrencyPolicy: Forbid
  retention: {keepLast: 2, keepFailed: 3}
  backupTemplate:
    metadata: {labels: {team: dba}}
    spec:
      mysql: {statefulSetName: db}
      storage: {s3: {bucket: backups}}
status:
  lastScheduleTime: "2026-11-20T03:00:00Z"
"#;

/// A completed backup of this schedule.
fn completed(day: u32) -> MySQLBackup {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackup
metadata:
  name: nightly-202611{day:02}0300
  namespace: prod
  labels: {{innoxide.dev/schedule: nightly}}
  ownerReferences: [{{apiVersion: innoxide.dev/v1alpha1, kind: MySQLBackupSchedule, name: nightly, uid: uid-schedule, controller: true}}]
spec:
  mysql: {{statefulSetName: db}}
  storage: {{s3: {{bucket: backups}}}}
status:
  phase: Completed
  pod: db-0
  completionTime: "2026-11-{day:02}T03:20:00Z"
"#
    ))
    .unwrap()
}

struct World {
    client: Client,
    clock: ManualClock,
    ctx: Arc<Context<FakeAgent>>,
}

async fn world(schedule: &str, backups: Vec<MySQLBackup>) -> World {
    let schedule: MySQLBackupSchedule = serde_yaml::from_str(schedule).unwrap();
    let client = ClientBuilder::new()
        .with_resource::<MySQLBackup>()
        .with_resource::<MySQLBackupSchedule>()
        .with_status_subresource::<MySQLBackup>()
        .with_object(schedule)
        .with_objects(backups)
        .build()
        .await
        .expect("fake API");
    let clock = ManualClock::at("2026-11-21T03:00:10Z".parse().unwrap());
    let ctx = Arc::new(Context::new(
        client.clone(),
        FakeAgent::new(),
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
    World { client, clock, ctx }
}

impl World {
    async fn reconcile(&self) -> Action {
        let api: Api<MySQLBackupSchedule> = Api::namespaced(self.client.clone(), "prod");
        let schedule = api.get("nightly").await.unwrap();
        reconcile(Arc::new(DeserializeGuard(Ok(schedule))), self.ctx.clone())
            .await
            .expect("reconcile")
    }

    async fn backup_names(&self) -> Vec<String> {
        let api: Api<MySQLBackup> = Api::namespaced(self.client.clone(), "prod");
        let mut names: Vec<String> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|b| b.name_any())
            .collect();
        names.sort();
        names
    }

    async fn schedule(&self) -> MySQLBackupSchedule {
        let api: Api<MySQLBackupSchedule> = Api::namespaced(self.client.clone(), "prod");
        api.get("nightly").await.unwrap()
    }
}

#[tokio::test]
async fn a_due_run_becomes_one_labelled_backup_and_retention_prunes() {
    let w = world(SCHEDULE, vec![completed(18), completed(19), completed(20)]).await;
    let action = w.reconcile().await;
    assert_eq!(
        w.backup_names().await,
        [
            "nightly-202611190300",
            "nightly-202611200300",
            "nightly-202611210300"
        ],
        "the run of the 21st is made; keepLast 2 prunes the 18th"
    );
    let api: Api<MySQLBackup> = Api::namespaced(w.client.clone(), "prod");
    let made = api.get("nightly-202611210300").await.unwrap();
    assert_eq!(made.labels()["team"], "dba");
    assert!(
        made.owner_references().is_empty(),
        "deleting the schedule must not cascade into its backups"
    );
    // Those an older operator made owned are let go.
    let older = api.get("nightly-202611200300").await.unwrap();
    assert!(older.owner_references().is_empty(), "{:?}", older.metadata);
    let status = w.schedule().await.status.unwrap();
    assert_eq!(
        status.last_schedule_time.unwrap().0.to_string(),
        "2026-11-21T03:00:00Z"
    );
    assert_eq!(status.active, ["nightly-202611210300"]);
    assert_eq!(action, Action::requeue(Duration::from_secs(24 * 3600 - 10)));

    // Reconciling again a minute later makes nothing new.
    w.clock.advance(Duration::from_secs(60));
    w.reconcile().await;
    assert_eq!(w.backup_names().await.len(), 3);
}

#[tokio::test]
async fn an_unknown_time_zone_is_reported_and_waited_on() {
    let w = world(
        &SCHEDULE.replace(
            "schedule: \"0 3 * * *\"",
            "schedule: \"0 3 * * *\"\n  timeZone: Mars/Olympus",
        ),
        vec![],
    )
    .await;
    assert_eq!(w.reconcile().await, Action::await_change());
    assert!(w.backup_names().await.is_empty());
    let ready = w
        .schedule()
        .await
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(ready.message.contains("Mars/Olympus"));
}
