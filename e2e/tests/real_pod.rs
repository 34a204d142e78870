//! The wired pod in a real container runtime. The user's StatefulSet is
//! created in the API (core kinds on mirror CRDs with real server-side
//! apply), the operator wires it, and the test checks that the API holds
//! every field the wiring applied beside every field the user wrote. The
//! StatefulSet controller stand-in makes the pod from the stored template,
//! and the kubelet stand-in (`innoxide_testkit::kubelet`) runs that pod,
//! exactly as the API holds it, in podman from the project's images (`make
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
    Cluster, Kubelet, MysqlServer, PodFate, PodRunHook, RunningPod, S3Server, Sysbench, mysql_async,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Secret};
use kube::api::{Api, PostParams};
use mysql_async::prelude::Queryable;
use serde_json::Value;

const AGENT_IMAGE: &str = concat!(
    "ghcr.io/innoxide/innoxide-agent:",
    env!("CARGO_PKG_VERSION")
);
/// `make test-images` tags the test bed's MySQL image `:latest` beside its
/// version, so the test follows whatever 9.7 patch release the test bed has.
const MYSQL_IMAGE: &str = "localhost/innoxide-test-mysql:latest";
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

/// Where `want` is not contained in `have` (every field of an object, with
/// the same value; each object of a list in some object of the other; lists
/// of plain values equal), as a path; None when it is. The API may add
/// fields (defaults such as a port's `protocol`) and the user's items
/// beside the operator's, never lose or change one.
fn not_contained(want: &Value, have: &Value, path: &str) -> Option<String> {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().find_map(|(k, v)| match h.get(k) {
            Some(hv) => not_contained(v, hv, &format!("{path}.{k}")),
            None if v.is_null() => None,
            None => Some(format!("{path}.{k}: missing")),
        }),
        // Lists of objects (containers, mounts, ports, env: merged by
        // their keys): each wanted item is in some item the API holds.
        (Value::Array(w), Value::Array(h)) if w.iter().all(Value::is_object) => {
            w.iter().find_map(|wv| {
                h.iter()
                    .all(|hv| not_contained(wv, hv, path).is_some())
                    .then(|| format!("{path}: {wv} not in {have}"))
            })
        }
        _ if want == have => None,
        _ => Some(format!("{path}: want {want}, have {have}")),
    }
}

fn template_spec(sts: &StatefulSet) -> &PodSpec {
    sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn named<'a>(containers: &'a [Container], name: &str) -> Option<&'a Container> {
    containers.iter().find(|c| c.name == name)
}

/// The StatefulSet as the API stores it after the operator's apply (real
/// server-side apply on the mirror CRDs): every container, init container
/// and volume of `wiring::desired` with all of its fields, the init
/// containers in the wiring's order (install, then init) before none of
/// the user's, and the user's own container with every field the user
/// wrote.
fn assert_wiring_applied(user: &StatefulSet, stored: &StatefulSet) {
    let desired = wiring::desired(
        user,
        &WiringSettings {
            agent_image: AGENT_IMAGE.into(),
        },
    )
    .unwrap();
    let want = template_spec(&desired.patch);
    let have = template_spec(stored);
    let json = |v: &Container| serde_json::to_value(v).unwrap();
    let have_init = have.init_containers.as_deref().unwrap_or_default();
    let want_init = want.init_containers.as_deref().unwrap_or_default();
    let names = |cs: &[Container]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(have_init),
        names(want_init),
        "init containers, in order"
    );
    assert_eq!(
        names(want_init),
        [wiring::INSTALL_CONTAINER, wiring::INIT_CONTAINER]
    );
    for w in want.containers.iter().chain(want_init) {
        let h = named(&have.containers, &w.name)
            .or_else(|| named(have_init, &w.name))
            .unwrap_or_else(|| panic!("the API lost the wiring's container {}", w.name));
        if let Some(diff) = not_contained(&json(w), &json(h), &w.name) {
            panic!("the API does not hold what the operator applied: {diff}");
        }
    }
    for w in want.volumes.iter().flatten() {
        let h = have
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == w.name)
            .unwrap_or_else(|| panic!("the API lost the wiring's volume {}", w.name));
        let (w, h) = (
            serde_json::to_value(w).unwrap(),
            serde_json::to_value(h).unwrap(),
        );
        if let Some(diff) = not_contained(&w, &h, "volume") {
            panic!("the API does not hold the wiring's volume: {diff}");
        }
    }
    // The user's container keeps every field the user wrote; the wiring
    // only adds mounts to it.
    let mine = &template_spec(user).containers[0];
    let kept = named(&have.containers, &mine.name).expect("the user's mysql container");
    let (mut mine, mut kept) = (json(mine), json(kept));
    let my_mounts = mine["volumeMounts"].take();
    let kept_mounts = kept["volumeMounts"].take();
    if let Some(diff) = not_contained(&mine, &kept, "mysql") {
        panic!("the operator's apply changed the user's container: {diff}");
    }
    for mount in my_mounts.as_array().unwrap() {
        assert!(
            kept_mounts
                .as_array()
                .unwrap()
                .iter()
                .any(|k| not_contained(mount, k, "").is_none()),
            "the user's mount {mount} stays: {kept_mounts}"
        );
    }
}

/// The stand-in ran the API's pod: its init containers to completion in
/// the pod's order (the wiring's install, then init), then every container
/// of the pod, mysqld and the agent sidecar, still running.
fn assert_runs_as_the_api_says(running: &RunningPod, api_pod: &Pod) {
    let spec = api_pod.spec.as_ref().unwrap();
    let names = |cs: &[Container]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        running.init_containers_run(),
        names(spec.init_containers.as_deref().unwrap_or_default())
    );
    assert_eq!(running.containers_started(), names(&spec.containers));
    assert!(
        running
            .containers_started()
            .contains(&wiring::AGENT_CONTAINER.to_owned())
    );
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
    let agent_port = free_port();
    let user = stateful_set(variant, mysqld.port, agent_port);
    let stored = cluster.create_custom_stateful_set(&user).await.unwrap();
    assert_wiring_applied(&user, &stored);

    // The kubelet stand-in runs the pod exactly as the API holds it (made
    // from the stored template by the StatefulSet controller stand-in),
    // each time it is made.
    let mut kubelet = Kubelet::new(
        dir.path().join("pods"),
        Api::<Secret>::namespaced(cluster.client(), "db"),
    )
    .await
    .unwrap();
    kubelet.provide_claim("data-db-0", &claim);
    let kubelet = Arc::new(kubelet);
    let pod: Arc<tokio::sync::Mutex<Option<RunningPod>>> = Arc::default();
    let ran: Arc<std::sync::Mutex<Vec<Pod>>> = Arc::default();
    let run: PodRunHook = {
        let (kubelet, pod, ran) = (kubelet.clone(), pod.clone(), ran.clone());
        Arc::new(move |api_pod: Pod| {
            let (kubelet, pod, ran) = (kubelet.clone(), pod.clone(), ran.clone());
            Box::pin(async move {
                let running = run_pod(&kubelet, &api_pod).await?;
                assert_runs_as_the_api_says(&running, &api_pod);
                *pod.lock().await = Some(running);
                ran.lock().unwrap().push(api_pod);
                Ok(())
            })
        })
    };
    let ready = cluster
        .register_real_pod("db", 0, agent_port, run)
        .await
        .unwrap();
    let api_pod = cluster.api::<Pod>().get("db-0").await.unwrap();
    assert_eq!(ran.lock().unwrap()[0].spec, api_pod.spec);
    assert_eq!(ready.spec, api_pod.spec);
    let violations = restricted_violations(api_pod.spec.as_ref().unwrap());
    if variant == Variant::Restricted {
        assert!(
            violations.is_empty(),
            "Pod Security `restricted` would reject the wired pod: {violations:?}"
        );
    }
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

    // The kubelet's part of the restart: the deleted pod's containers stop;
    // the pod made again runs through the run hook above (its init
    // container swaps the datadir).
    cluster.on_pod_deleted({
        let pod = pod.clone();
        Arc::new(move |_| {
            let pod = pod.clone();
            Box::pin(async move {
                if let Some(mut old) = pod.lock().await.take()
                    && let Err(e) = old.stop().await
                {
                    eprintln!("stopping the deleted pod: {e:#}");
                }
                PodFate::Recreate
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
    assert_eq!(ran.lock().unwrap().len(), 2, "the pod ran again");
    let init = pod
        .lock()
        .await
        .as_ref()
        .and_then(|p| p.init_log(wiring::INIT_CONTAINER))
        .unwrap_or_default()
        .to_owned();
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
