//! The wired pod in a real container runtime: the StatefulSet's pod exactly
//! as the operator's wiring leaves its template, run by the kubelet stand-in
//! (`innoxide_testkit::kubelet`) in podman from the project's images (`make
//! images`): the install init container from the static agent image, then
//! `innoxide-agent init` and the sidecar in the test MySQL 9.7 image beside
//! mysqld, with the pod's users, groups, Secret modes and security settings.
//! The operator runs in-process against the API (as in the other e2e suites)
//! and reaches the pod's agent over gRPC + mTLS with the certificate it issued.
//!
//! Each variant takes a backup to S3, addressed by a host name that only the
//! pod's /etc/hosts knows (the static agent must resolve it inside the MySQL
//! image), then an InPlace restore: staged in the sidecar, armed, the pod
//! deleted by the operator, stopped and run again by the stand-in (its init
//! container swaps the datadir), and the consistency oracle judges the data.
//!
//! - `official_image_user`: mysqld as 999 by its container's securityContext,
//!   no fsGroup (the official images' way);
//! - `pod_security_restricted`: a pod the `restricted` Pod Security level
//!   admits (checked), fsGroup, read-only root file systems.
//!
//! Host networking (see the kubelet module): pods run one at a time, as the
//! agent's metrics port is fixed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use innoxide_operator::api::{MySQLBackup, MySQLRestore, RestorePhase};
use innoxide_operator::wiring::{self, WiringSettings};
use innoxide_testkit::oracle::{self, OracleInput};
use innoxide_testkit::pod_security::restricted_violations;
use innoxide_testkit::{
    Cluster, Kubelet, MysqlServer, PodFate, RunningPod, S3Server, Sysbench, apply, mysql_async,
    stateful_set_pod,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::{Api, PostParams};
use mysql_async::prelude::Queryable;

const AGENT_IMAGE: &str = concat!(
    "ghcr.io/innoxide/innoxide-agent:",
    env!("CARGO_PKG_VERSION")
);
const MYSQL_IMAGE: &str = "localhost/innoxide-test-mysql:9.7.4";
/// A name only the pod's /etc/hosts resolves (hostAliases).
const S3_HOST: &str = "s3.innoxide.test";
const DONE_WITHIN: Duration = Duration::from_secs(300);
const START_WITHIN: Duration = Duration::from_secs(120);
const REPL_USER: &str = "e2e_repl";
const REPL_PASSWORD: &str = "Repl-Pw-4c1a";

/// One real pod at a time: every pod shares the host's network.
static ONE_POD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, Copy, PartialEq)]
enum Variant {
    OfficialImageUser,
    Restricted,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The user's StatefulSet: the test MySQL image with mysqld's settings as
/// arguments, one data claim, and the variant's security settings.
fn stateful_set(variant: Variant, mysql_port: u16, agent_port: u16) -> StatefulSet {
    let args = [
        format!("--port={mysql_port}"),
        "--bind-address=127.0.0.1".into(),
        "--socket=/var/run/mysqld/mysqld.sock".into(),
        "--mysqlx=OFF".into(),
        "--server-id=2".into(),
        "--log-bin=binlog".into(),
        "--relay-log=relay-bin".into(),
        "--skip-replica-start=ON".into(),
        "--skip-name-resolve=ON".into(),
        "--innodb-buffer-pool-size=134217728".into(),
    ];
    let (pod_security, mysql_security, extra_mounts, extra_volumes) = match variant {
        Variant::OfficialImageUser => (
            serde_json::json!(null),
            serde_json::json!({"runAsUser": 999, "runAsGroup": 999}),
            serde_json::json!([]),
            serde_json::json!([]),
        ),
        Variant::Restricted => (
            serde_json::json!({
                "runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
                "seccompProfile": {"type": "RuntimeDefault"},
            }),
            serde_json::json!({
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": true,
            }),
            serde_json::json!([{"name": "tmp", "mountPath": "/tmp"}]),
            serde_json::json!([{"name": "tmp", "emptyDir": {}}]),
        ),
    };
    let mut mounts = vec![serde_json::json!({"name": "data", "mountPath": "/var/lib/mysql"})];
    mounts.extend(extra_mounts.as_array().unwrap().iter().cloned());
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "db",
            "namespace": "db",
            "labels": {"app": "db", wiring::AGENT_LABEL: wiring::AGENT_LABEL_VALUE},
            "annotations": {wiring::AGENT_PORT_ANNOTATION: agent_port.to_string()},
        },
        "spec": {
            "replicas": 1,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "securityContext": pod_security,
                    "terminationGracePeriodSeconds": 30,
                    "hostAliases": [{"ip": "127.0.0.1", "hostnames": [S3_HOST]}],
                    "containers": [{
                        "name": "mysql",
                        "image": MYSQL_IMAGE,
                        "args": args,
                        "securityContext": mysql_security,
                        "volumeMounts": mounts,
                    }],
                    "volumes": extra_volumes,
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    }))
    .unwrap()
}

fn backup(s3: &S3Server) -> MySQLBackup {
    let port = s3.endpoint().rsplit(':').next().unwrap().to_owned();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "innoxide.dev/v1alpha1",
        "kind": "MySQLBackup",
        "metadata": {"name": "nightly"},
        "spec": {
            "mysql": {"statefulSetName": "db"},
            "storage": {"s3": {
                "bucket": s3.bucket(),
                "prefix": "prod/db",
                "endpoint": format!("http://{S3_HOST}:{port}"),
                "region": s3.region(),
                "credentialsSecretRef": {"name": "s3-keys"},
            }},
            "compression": "Zstd",
        },
    }))
    .unwrap()
}

fn in_place_restore() -> MySQLRestore {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "innoxide.dev/v1alpha1",
        "kind": "MySQLRestore",
        "metadata": {"name": "back"},
        "spec": {
            "source": {"backupName": "nightly"},
            "target": {"statefulSetName": "db", "mode": "InPlace"},
            "useMemory": "256Mi",
        },
    }))
    .unwrap()
}

/// mysqld in the pod, over TCP as the test's root@127.0.0.1.
struct PodMysqld {
    port: u16,
}

impl PodMysqld {
    async fn conn(&self) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some("root"))
            .prefer_socket(false);
        mysql_async::Conn::new(opts).await.unwrap()
    }

    async fn gtid_executed(&self) -> String {
        let mut conn = self.conn().await;
        let set: String = conn
            .query_first("SELECT @@GLOBAL.gtid_executed")
            .await
            .unwrap()
            .unwrap();
        set.replace('\n', "")
    }

    /// Replicates from the source until it has everything the source has.
    async fn catch_up(&self, source: &MysqlServer) {
        let mut conn = self.conn().await;
        conn.query_drop("START REPLICA").await.unwrap();
        let set = source.gtid_executed().await.unwrap();
        let timed_out: i64 = conn
            .query_first(format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{set}', 120)"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(timed_out, 0, "the pod's mysqld did not catch up to {set}");
        conn.query_drop("STOP REPLICA").await.unwrap();
    }
}

/// The user's StatefulSet with the operator's wiring applied: what
/// server-side apply of `wiring::desired` leaves on a real API server (the
/// in-memory fake's apply replaces lists, so it is merged here).
fn wired(user: &StatefulSet) -> StatefulSet {
    let desired = wiring::desired(
        user,
        &WiringSettings {
            agent_image: AGENT_IMAGE.into(),
        },
    )
    .unwrap();
    serde_json::from_value(apply::merge(
        &serde_json::to_value(user).unwrap(),
        &serde_json::to_value(&desired.patch).unwrap(),
    ))
    .unwrap()
}

fn agent_container(sts: &StatefulSet) -> Container {
    let spec = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    spec.containers
        .iter()
        .find(|c| c.name == wiring::AGENT_CONTAINER)
        .cloned()
        .expect("the agent sidecar")
}

/// Runs the pod and waits until mysqld and the agent serve.
async fn run_pod(kubelet: &Kubelet, pod: &Pod) -> anyhow::Result<RunningPod> {
    let running = kubelet.run(pod).await?;
    running
        .wait_for_log("mysql", "ready for connections", START_WITHIN)
        .await?;
    running
        .wait_for_log(wiring::AGENT_CONTAINER, "listening", START_WITHIN)
        .await?;
    Ok(running)
}

/// The data claim of pod db-0: a MySQL datadir that server B (a replica of
/// the source) made, owned by mysqld's user 999 as in a volume mysqld has
/// used.
async fn seed_claim(source: &MysqlServer, claim: &Path) -> String {
    let mut seed = MysqlServer::builder()
        .server_id(2)
        .extra("skip_replica_start=ON")
        .extra("relay_log=relay-bin")
        .start()
        .await
        .unwrap();
    source
        .exec(&format!(
            "SET sql_log_bin = 0; \
             CREATE USER IF NOT EXISTS '{REPL_USER}'@'%' IDENTIFIED WITH caching_sha2_password BY '{REPL_PASSWORD}'; \
             GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'; \
             SET sql_log_bin = 1"
        ))
        .await
        .unwrap();
    seed.exec(&format!(
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={}, \
         SOURCE_USER='{REPL_USER}', SOURCE_PASSWORD='{REPL_PASSWORD}', \
         SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1; START REPLICA",
        source.port()
    ))
    .await
    .unwrap();
    let set = source.gtid_executed().await.unwrap();
    let timed_out: i64 = seed
        .query_scalar(&format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{set}', 120)"))
        .await
        .unwrap();
    assert_eq!(timed_out, 0);
    seed.exec("STOP REPLICA").await.unwrap();
    seed.stop().await.unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", seed.datadir().display()))
        .arg(claim)
        .status()
        .unwrap();
    assert!(status.success());
    let status = std::process::Command::new("chown")
        .args(["-R", "999:999"])
        .arg(claim)
        .status()
        .unwrap();
    assert!(status.success());
    set
}

async fn backup_and_restore_in_a_real_pod(variant: Variant) {
    let _one = ONE_POD_AT_A_TIME.lock().await;
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("innoxide-pod-")
        .tempdir()
        .unwrap();
    let claim = dir.path().join("claims/data-db-0");
    std::fs::create_dir_all(&claim).unwrap();
    let (s3, (source, bench)) = tokio::join!(async { S3Server::start().await.unwrap() }, async {
        let source = MysqlServer::builder().server_id(1).start().await.unwrap();
        let bench = Sysbench::prepare(&source, 2, 5_000).await.unwrap();
        (source, bench)
    });
    seed_claim(&source, &claim).await;

    let cluster = Cluster::builder()
        .agent_image(AGENT_IMAGE)
        .agent_binary(env!("CARGO_BIN_EXE_e2e-agent"))
        .start()
        .await
        .unwrap();
    cluster.create_s3_secret("s3-keys", &s3).await.unwrap();
    let mysqld = PodMysqld { port: free_port() };
    let user = stateful_set(variant, mysqld.port, free_port());
    let in_api = cluster.create_custom_stateful_set(&user).await.unwrap();
    let sts = wired(&user);
    assert_eq!(
        agent_container(&in_api),
        agent_container(&sts),
        "the operator applied what wiring::desired says"
    );
    let wired_pod: Pod = stateful_set_pod(&sts, 0).unwrap();
    let violations = restricted_violations(wired_pod.spec.as_ref().unwrap());
    if variant == Variant::Restricted {
        assert!(
            violations.is_empty(),
            "Pod Security `restricted` would reject the wired pod: {violations:?}"
        );
    }

    let mut kubelet = Kubelet::new(
        dir.path().join("pods"),
        Api::<Secret>::namespaced(cluster.kube().fake(), "db"),
    )
    .await
    .unwrap();
    kubelet.provide_claim("data-db-0", &claim);
    let kubelet = Arc::new(kubelet);
    let pod = run_pod(&kubelet, &wired_pod).await.unwrap();
    let agent_port: u16 = sts.metadata.annotations.as_ref().unwrap()[wiring::AGENT_PORT_ANNOTATION]
        .parse()
        .unwrap();
    let pod = Arc::new(tokio::sync::Mutex::new(Some(pod)));
    cluster
        .register_real_pod("db", 0, agent_port)
        .await
        .unwrap();
    let up = started.elapsed();

    // The pod's mysqld has every transaction of the source so far.
    mysqld.catch_up(&source).await;
    cluster
        .api::<MySQLBackup>()
        .create(&PostParams::default(), &backup(&s3))
        .await
        .unwrap();
    let backed_up = cluster
        .wait_backup_finished("nightly", DONE_WITHIN)
        .await
        .unwrap();
    let status = backed_up.status.clone().unwrap();
    assert_eq!(
        backed_up.phase(),
        innoxide_operator::api::BackupPhase::Completed,
        "{status:?}\nagent:\n{}",
        agent_log(&pod).await
    );
    let backup_gtid = status.gtid_executed.unwrap();
    let backup_done = started.elapsed();

    // Writes after the backup reach the pod: the restore must undo them.
    bench.run(2, Duration::from_secs(3)).await.unwrap();
    mysqld.catch_up(&source).await;
    assert_ne!(mysqld.gtid_executed().await, backup_gtid);

    // The kubelet's part of the restart: the deleted pod stops, and the
    // StatefulSet's pod runs again (its init container swaps the datadir).
    let init_log = Arc::new(std::sync::Mutex::new(String::new()));
    cluster.on_pod_deleted({
        let (pod, kubelet, wired_pod, init_log) = (
            pod.clone(),
            kubelet.clone(),
            wired_pod.clone(),
            init_log.clone(),
        );
        Arc::new(move |_| {
            let (pod, kubelet, wired_pod, init_log) = (
                pod.clone(),
                kubelet.clone(),
                wired_pod.clone(),
                init_log.clone(),
            );
            Box::pin(async move {
                let mut slot = pod.lock().await;
                if let Some(mut old) = slot.take()
                    && let Err(e) = old.stop().await
                {
                    eprintln!("stopping the deleted pod: {e:#}");
                }
                match run_pod(&kubelet, &wired_pod).await {
                    Ok(new) => {
                        *init_log.lock().unwrap() = new
                            .init_log(wiring::INIT_CONTAINER)
                            .unwrap_or_default()
                            .to_owned();
                        *slot = Some(new);
                        PodFate::Recreate
                    }
                    Err(e) => {
                        eprintln!("the pod did not come back: {e:#}");
                        PodFate::Gone
                    }
                }
            })
        })
    });
    cluster
        .api::<MySQLRestore>()
        .create(&PostParams::default(), &in_place_restore())
        .await
        .unwrap();
    let restored = wait_restore(&cluster, &pod).await;
    let status = restored.status.clone().unwrap();
    assert_eq!(restored.phase(), RestorePhase::Completed, "{status:?}");
    assert_eq!(status.gtid_executed.as_deref(), Some(backup_gtid.as_str()));
    let init = init_log.lock().unwrap().clone();
    assert!(init.contains("done"), "the init container swapped: {init}");
    assert_eq!(mysqld.gtid_executed().await, backup_gtid);
    let restore_done = started.elapsed();

    // The oracle judges the restored datadir (the claim), served again.
    pod.lock().await.take().unwrap().stop().await.unwrap();
    let server = MysqlServer::builder()
        .server_id(2)
        .extra("skip_replica_start=ON")
        .extra("relay_log=relay-bin")
        .existing_datadir(&claim)
        .start()
        .await
        .unwrap();
    assert_eq!(server.gtid_executed().await.unwrap(), backup_gtid);
    let verdict = oracle::check(OracleInput {
        source: &source,
        restored: &server,
        backup_gtid_set: &backup_gtid,
        tables: &bench.table_names(),
    })
    .await
    .unwrap();
    assert!(verdict.passed(), "{verdict}");
    eprintln!(
        "{variant:?}: pod up after {up:?}, backup done {backup_done:?}, restore done {restore_done:?}, all {:?}",
        started.elapsed()
    );
}

async fn agent_log(pod: &Arc<tokio::sync::Mutex<Option<RunningPod>>>) -> String {
    match pod.lock().await.as_ref() {
        Some(p) => p.logs(wiring::AGENT_CONTAINER).await.unwrap_or_default(),
        None => String::new(),
    }
}

async fn wait_restore(
    cluster: &Cluster,
    pod: &Arc<tokio::sync::Mutex<Option<RunningPod>>>,
) -> MySQLRestore {
    let api = cluster.api::<MySQLRestore>();
    let deadline = Instant::now() + DONE_WITHIN;
    loop {
        let restore = api.get("back").await.unwrap();
        if restore.phase().is_terminal() {
            return restore;
        }
        if Instant::now() > deadline {
            panic!(
                "MySQLRestore back did not finish within {DONE_WITHIN:?}: {:?}\nagent:\n{}",
                restore.status,
                agent_log(pod).await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_image_user() {
    backup_and_restore_in_a_real_pod(Variant::OfficialImageUser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_security_restricted() {
    backup_and_restore_in_a_real_pod(Variant::Restricted).await;
}
