//! The namespace-scoped operator (`--watch-namespaces`), on the real API
//! server: its controllers list and watch only the namespaces they were
//! given, so a MySQLBackup elsewhere is never touched (no finalizer, no
//! status), and an operator given that namespace does take it up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use innoxide_operator::agent::TonicAgent;
use innoxide_operator::api::MySQLBackup;
use innoxide_operator::clock::{Clock, SystemClock};
use innoxide_operator::context::{Context, Settings};
use innoxide_operator::metrics::Metrics;
use innoxide_operator::run::{WatchScope, run_scoped_controllers};
use innoxide_operator::wiring::WiringSettings;
use innoxide_operator::wiring::controller::load_or_create_ca;
use innoxide_testkit::KubeApi;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::oneshot;

const OPERATOR_NAMESPACE: &str = "innoxide-system";

fn backup(name: &str) -> MySQLBackup {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "innoxide.dev/v1alpha1",
        "kind": "MySQLBackup",
        "metadata": {"name": name},
        "spec": {
            "mysql": {"statefulSetName": "db"},
            "storage": {"s3": {
                "bucket": "backups",
                "prefix": "db",
                "endpoint": "http://127.0.0.1:9",
                "region": "us-east-1",
                "credentialsSecretRef": {"name": "s3-keys"},
            }},
            "mysqlCredentials": {
                "user": "backup",
                "passwordSecretRef": {"name": "mysql-backup", "key": "password"},
            },
        },
    }))
    .unwrap()
}

/// Operators scoped to `namespaces`, until the sender is dropped or fired.
async fn operator(client: &Client, namespaces: &[&str]) -> oneshot::Sender<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ca = load_or_create_ca(client, OPERATOR_NAMESPACE, "ca", clock.now())
        .await
        .unwrap();
    let agent = Arc::new(TonicAgent::new(ca.clone()).unwrap());
    let ctx = Arc::new(Context::new(
        client.clone(),
        agent,
        clock,
        Arc::new(Metrics::new()),
        Settings {
            namespace: OPERATOR_NAMESPACE.into(),
            ca_secret: "ca".into(),
            wiring: WiringSettings {
                agent_image: "innoxide/innoxide-agent:test".into(),
            },
            agent_lost_timeout: Duration::from_secs(5),
        },
    ));
    let scope =
        WatchScope::from_list(&namespaces.iter().map(|n| n.to_string()).collect::<Vec<_>>());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        run_scoped_controllers(ctx, ca, &scope, async move {
            let _ = stopped.await;
        })
        .await
    });
    stop
}

/// Whether the operator has taken `name` up: its finalizer and a status.
async fn taken_up(api: &Api<MySQLBackup>, name: &str) -> bool {
    let b = api.get(name).await.unwrap();
    !b.finalizers().is_empty() || b.status.is_some()
}

async fn wait_taken_up(api: &Api<MySQLBackup>, name: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !taken_up(api, name).await {
        assert!(
            Instant::now() < deadline,
            "the operator did not take up {name} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_scoped_operator_leaves_other_namespaces_alone() {
    let kube = KubeApi::start().await.unwrap();
    let crds: Vec<_> = innoxide_operator::crd::all()
        .into_iter()
        .map(|(_, crd)| crd)
        .collect();
    kube.install_crds(&crds).await.unwrap();
    let client = kube.routed_client();
    let team_a: Api<MySQLBackup> = Api::namespaced(client.clone(), "team-a");
    let team_b: Api<MySQLBackup> = Api::namespaced(client.clone(), "team-b");
    let team_c: Api<MySQLBackup> = Api::namespaced(client.clone(), "team-c");
    // The unwatched one first: a cluster-wide list would see it before the others.
    team_b
        .create(&PostParams::default(), &backup("nightly"))
        .await
        .unwrap();
    team_a
        .create(&PostParams::default(), &backup("nightly"))
        .await
        .unwrap();
    team_c
        .create(&PostParams::default(), &backup("nightly"))
        .await
        .unwrap();

    let scoped = operator(&client, &["team-a", "team-c", "team-a"]).await;
    wait_taken_up(&team_a, "nightly", Duration::from_secs(30)).await;
    wait_taken_up(&team_c, "nightly", Duration::from_secs(30)).await;
    // A new backup in the unwatched namespace, while the watches run.
    team_b
        .create(&PostParams::default(), &backup("hourly"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["nightly", "hourly"] {
        let b = team_b.get(name).await.unwrap();
        assert!(
            b.finalizers().is_empty() && b.status.is_none(),
            "team-b/{name} was reconciled by an operator that watches team-a and team-c only: {:?} {:?}",
            b.finalizers(),
            b.status
        );
    }

    // The same backups are taken up by an operator that watches team-b.
    let other = operator(&client, &["team-b"]).await;
    wait_taken_up(&team_b, "nightly", Duration::from_secs(30)).await;
    wait_taken_up(&team_b, "hourly", Duration::from_secs(30)).await;
    let _ = scoped.send(());
    let _ = other.send(());
}
