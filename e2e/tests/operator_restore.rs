//! MySQLRestore end to end, on loopback: the operator's controllers
//! in-process on a real API server, a real `innoxide-agent serve` per pod
//! over gRPC + mTLS, real MySQL 9.7 with sysbench data, the in-process S3
//! server, and the test as the kubelet: when the operator deletes the pod,
//! it stops mysqld, runs the real `innoxide-agent init` (what the pod's
//! init container runs) on the datadir, starts mysqld again and lets the
//! pod come back. The consistency oracle judges the restored server.
//!
//! InPlace restores the pod of a replica (server B of primary A): the
//! oracle needs a source that still has every transaction after the
//! backup, and it makes the restored server a replica of it to check that
//! it catches up. Each test prints its timings: staging (while B serves),
//! the unavailability the operator measured (pod deletion → its agent
//! answering), and mysqld stop → ready as the kubelet saw it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innoxide_operator::api::{
    BackupType, MySQLBackup, MySQLRestore, RESTORE_FROM_ANNOTATION, RESTORE_SPEC_KEY, RestorePhase,
};
use innoxide_testkit::oracle::{self, OracleInput};
use innoxide_testkit::{Cluster, MysqlServer, PodDeleted, PodFate, PodMysql, S3Server, Sysbench};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

const DONE_WITHIN: Duration = Duration::from_secs(240);
const REPL_USER: &str = "e2e_repl";
const REPL_PASSWORD: &str = "Repl-Pw-4c1a";

async fn cluster() -> Cluster {
    Cluster::builder()
        .agent_binary(env!("CARGO_BIN_EXE_e2e-agent"))
        .start()
        .await
        .unwrap()
}

fn backup(s3: &S3Server, sts: &str) -> MySQLBackup {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "innoxide.dev/v1alpha1",
        "kind": "MySQLBackup",
        "metadata": {"name": "nightly"},
        "spec": {
            "mysql": {"statefulSetName": sts},
            "storage": {"s3": {
                "bucket": s3.bucket(),
                "prefix": "prod/db",
                "endpoint": s3.endpoint(),
                "region": s3.region(),
                "credentialsSecretRef": {"name": "s3-keys"},
            }},
            "compression": "Zstd",
        },
    }))
    .unwrap()
}

fn restore(name: &str, sts: &str, mode: &str) -> MySQLRestore {
    restore_of(name, "nightly", sts, mode)
}

fn restore_of(name: &str, backup_name: &str, sts: &str, mode: &str) -> MySQLRestore {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "innoxide.dev/v1alpha1",
        "kind": "MySQLRestore",
        "metadata": {"name": name},
        "spec": {
            "source": {"backupName": backup_name},
            "target": {"statefulSetName": sts, "mode": mode},
            "useMemory": "256Mi",
        },
    }))
    .unwrap()
}

/// Takes a MySQLBackup of StatefulSet `sts` and waits for it.
async fn take_backup(cluster: &Cluster, s3: &S3Server, sts: &str) -> MySQLBackup {
    take(cluster, backup(s3, sts)).await
}

/// Takes an Incremental MySQLBackup `name` of StatefulSet `sts` (its base
/// the newest Completed backup) and waits for it.
async fn take_incremental(cluster: &Cluster, s3: &S3Server, sts: &str, name: &str) -> MySQLBackup {
    let mut incremental = backup(s3, sts);
    incremental.metadata.name = Some(name.into());
    incremental.spec.backup_type = BackupType::Incremental;
    take(cluster, incremental).await
}

async fn take(cluster: &Cluster, backup: MySQLBackup) -> MySQLBackup {
    let name = backup.metadata.name.clone().unwrap_or_default();
    cluster
        .api::<MySQLBackup>()
        .create(&PostParams::default(), &backup)
        .await
        .unwrap();
    let done = cluster
        .wait_backup_finished(&name, DONE_WITHIN)
        .await
        .unwrap();
    assert!(
        done.phase() == innoxide_operator::api::BackupPhase::Completed,
        "{:?}",
        done.status
    );
    done
}

async fn wait_restore(cluster: &Cluster, name: &str) -> MySQLRestore {
    let api = cluster.api::<MySQLRestore>();
    let deadline = Instant::now() + DONE_WITHIN;
    loop {
        let restore = api.get(name).await.unwrap();
        if restore.phase().is_terminal() {
            return restore;
        }
        assert!(
            Instant::now() < deadline,
            "MySQLRestore {name} did not finish within {DONE_WITHIN:?}: {:?}",
            restore.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Makes `replica` a GTID replica of `source` and waits until it has
/// everything the source has.
async fn replicate(replica: &MysqlServer, source: &MysqlServer) {
    source
        .exec(&format!(
            "SET sql_log_bin = 0; \
             CREATE USER IF NOT EXISTS '{REPL_USER}'@'%' IDENTIFIED WITH caching_sha2_password BY '{REPL_PASSWORD}'; \
             GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'; \
             SET sql_log_bin = 1"
        ))
        .await
        .unwrap();
    replica
        .exec(&format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={}, \
             SOURCE_USER='{REPL_USER}', SOURCE_PASSWORD='{REPL_PASSWORD}', \
             SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1; START REPLICA",
            source.port()
        ))
        .await
        .unwrap();
    caught_up(replica, source).await;
}

async fn caught_up(replica: &MysqlServer, source: &MysqlServer) {
    let set = source.gtid_executed().await.unwrap();
    let timed_out: i64 = replica
        .query_scalar(&format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{set}', 120)"))
        .await
        .unwrap();
    assert_eq!(timed_out, 0, "the replica did not catch up to {set}");
}

/// Runs the real `innoxide-agent init` as the pod's init container would.
async fn agent_init(args: &[String]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_e2e-agent"))
        .arg("init")
        .args(args)
        .env("INNOXIDE_LOG_JSON", "false")
        .env("RUST_LOG", "warn")
        .env_remove("INNOXIDE_STATE_DIR")
        .env_remove("INNOXIDE_RESTORE_SPEC")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "innoxide-agent init {args:?}: {stderr}"
    );
    stderr
}

/// What the kubelet saw of the restart.
#[derive(Debug, Default, Clone)]
struct Restart {
    /// mysqld stop → init done → mysqld ready.
    stop_to_ready: Option<Duration>,
    init: Option<Duration>,
    init_output: String,
}

/// What an in-place restore restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restored {
    /// A full backup.
    Full,
    /// The second of two incrementals, each taken under load after writes
    /// since its base: the restore applies the chain of three.
    Chain,
}

async fn in_place(tables: u32, rows: u64, restored: Restored) {
    let started = Instant::now();
    let (s3, (source, bench)) = tokio::join!(async { S3Server::start().await.unwrap() }, async {
        let source = MysqlServer::builder().server_id(1).start().await.unwrap();
        let bench = Sysbench::prepare(&source, tables, rows).await.unwrap();
        (source, bench)
    });
    // B, the pod's server: a replica of A that does not reconnect by itself
    // at start (a restored B must show exactly the backup's set).
    let replica = MysqlServer::builder()
        .server_id(2)
        .extra("skip_replica_start=ON")
        .start()
        .await
        .unwrap();
    replicate(&replica, &source).await;
    let cluster = cluster().await;
    cluster.create_s3_secret("s3-keys", &s3).await.unwrap();
    cluster
        .add_stateful_set("db", &[PodMysql::of(&replica)])
        .await
        .unwrap();

    let backed_up = take_backup(&cluster, &s3, "db").await;
    let (backed_up, backup_name) = match restored {
        Restored::Full => (backed_up, "nightly"),
        Restored::Chain => {
            // Writes since the full, then an incremental under load; more
            // writes, then a second incremental under load on the first.
            let full = backed_up.status.clone().unwrap();
            bench.run(2, Duration::from_secs(3)).await.unwrap();
            let load = bench.run_background(2, Duration::from_secs(6)).unwrap();
            let first = take_incremental(&cluster, &s3, "db", "hourly").await;
            load.wait().await.unwrap();
            let first_status = first.status.clone().unwrap();
            let first_chain = first_status.incremental.clone().unwrap();
            let full_folder = full.backup_name.clone().unwrap();
            let first_folder = first_status.backup_name.clone().unwrap();
            assert_eq!(
                (first_chain.base_name.as_str(), first_chain.chain_length),
                ("nightly", Some(2)),
                "{first_chain:?}"
            );
            assert_eq!(
                first_chain.chain,
                [full_folder.clone(), first_folder.clone()]
            );
            assert_eq!(first_chain.from_lsn, full.lsn.as_ref().map(|l| l.end));

            bench.run(2, Duration::from_secs(3)).await.unwrap();
            let load = bench.run_background(2, Duration::from_secs(6)).unwrap();
            let second = take_incremental(&cluster, &s3, "db", "hourly-2").await;
            load.wait().await.unwrap();
            let second_status = second.status.clone().unwrap();
            let second_chain = second_status.incremental.clone().unwrap();
            assert_eq!(
                (second_chain.base_name.as_str(), second_chain.chain_length),
                ("hourly", Some(3)),
                "{second_chain:?}"
            );
            assert_eq!(
                second_chain.chain,
                [
                    full_folder,
                    first_folder,
                    second_status.backup_name.clone().unwrap()
                ]
            );
            assert_eq!(
                second_chain.from_lsn,
                first_status.lsn.as_ref().map(|l| l.end)
            );
            // Each incremental holds transactions its base does not.
            assert_ne!(first_status.gtid_executed, full.gtid_executed);
            assert_ne!(second_status.gtid_executed, first_status.gtid_executed);
            (second, "hourly-2")
        }
    };
    let backup_status = backed_up.status.clone().unwrap();
    let backup_gtid = backup_status.gtid_executed.clone().unwrap();

    // Writes after the backup, on A and so on B: the restore must undo them.
    bench.run(2, Duration::from_secs(3)).await.unwrap();
    caught_up(&replica, &source).await;
    assert_ne!(replica.gtid_executed().await.unwrap(), backup_gtid);

    // The kubelet: a deleted pod's mysqld stops, init swaps, mysqld starts.
    let datadir = replica.datadir().to_owned();
    let replica = Arc::new(tokio::sync::Mutex::new(replica));
    let seen = Arc::new(Mutex::new(Restart::default()));
    let restarts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    cluster.on_pod_deleted({
        let (replica, seen, datadir) = (replica.clone(), seen.clone(), datadir.clone());
        let restarts = restarts.clone();
        Arc::new(move |deleted: PodDeleted| {
            let (replica, seen, datadir) = (replica.clone(), seen.clone(), datadir.clone());
            restarts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                let t0 = Instant::now();
                let mut server = replica.lock().await;
                server.stop().await.unwrap();
                let state = deleted.pods.state_dir(&deleted.pod);
                let init_started = Instant::now();
                let output = agent_init(&[
                    format!("--datadir={}", datadir.display()),
                    format!("--state-dir={}", state.display()),
                ])
                .await;
                let init = init_started.elapsed();
                server.restart().await.unwrap();
                let mut seen = seen.lock().unwrap();
                seen.stop_to_ready = Some(t0.elapsed());
                seen.init = Some(init);
                seen.init_output = output;
                PodFate::Recreate
            })
        })
    });

    cluster
        .api::<MySQLRestore>()
        .create(
            &PostParams::default(),
            &restore_of("back", backup_name, "db", "InPlace"),
        )
        .await
        .unwrap();
    let done = wait_restore(&cluster, "back").await;
    let status = done.status.clone().unwrap();
    assert_eq!(done.phase(), RestorePhase::Completed, "{status:?}");
    assert_eq!(status.gtid_executed.as_deref(), Some(backup_gtid.as_str()));
    assert_eq!(
        status
            .backup
            .as_ref()
            .and_then(|b| b.gtid_executed.as_deref()),
        Some(backup_gtid.as_str())
    );
    assert!(status.previous_datadir.is_some(), "{status:?}");
    let chain_used = status.backup.as_ref().unwrap().chain.clone();
    let chain_taken = match &backup_status.incremental {
        Some(incremental) => incremental.chain.clone(),
        None => vec![backup_status.backup_name.clone().unwrap()],
    };
    assert_eq!(
        chain_used, chain_taken,
        "the restore shows the chain it applied"
    );
    let expected_length = match restored {
        Restored::Full => 1,
        Restored::Chain => 3,
    };
    assert_eq!(chain_used.len(), expected_length, "{chain_used:?}");
    let restart = seen.lock().unwrap().clone();
    assert!(
        restart.init_output.contains("done"),
        "{}",
        restart.init_output
    );
    let events: Vec<String> = cluster
        .events_about("back")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for reason in ["Staging", "Staged", "Switching", "Restarting", "Completed"] {
        assert!(events.iter().any(|r| r == reason), "{reason} in {events:?}");
    }

    let server = replica.lock().await;
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
    drop(server);

    // Deleting the restore gives back the space of the datadir it replaced.
    let previous = std::path::PathBuf::from(status.previous_datadir.clone().unwrap());
    assert!(previous.join("ibdata1").is_file(), "{previous:?}");
    let restores = cluster.api::<MySQLRestore>();
    restores
        .delete("back", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + DONE_WITHIN;
    while restores.get_opt("back").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "MySQLRestore back not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!previous.exists(), "{previous:?} kept");
    let discarded = cluster
        .events_about("back")
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("Discarded"))
        .and_then(|e| e.note)
        .unwrap_or_default();
    assert!(discarded.contains("previous/"), "{discarded}");

    // The same MySQLRestore applied again (a GitOps re-sync: a new UID) is
    // recognised as done: no restore over what was written since.
    replica
        .lock()
        .await
        .exec("CREATE DATABASE written_after_the_restore")
        .await
        .unwrap();
    let written = replica.lock().await.gtid_executed().await.unwrap();
    let first_uid = done.metadata.uid.clone().unwrap();
    restores
        .create(
            &PostParams::default(),
            &restore_of("back", backup_name, "db", "InPlace"),
        )
        .await
        .unwrap();
    let again = wait_restore(&cluster, "back").await;
    let status = again.status.clone().unwrap();
    assert_eq!(again.phase(), RestorePhase::Completed, "{status:?}");
    assert_ne!(again.metadata.uid.as_deref(), Some(first_uid.as_str()));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "AlreadyRestored", "{ready:?}");
    assert!(ready.message.contains(&first_uid), "{}", ready.message);
    assert_eq!(
        restarts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one restart, the first restore's"
    );
    assert_eq!(replica.lock().await.gtid_executed().await.unwrap(), written);
    let status = done.status.clone().unwrap();
    eprintln!(
        "in-place restore ({restored:?}) of {tables}x{rows} rows: staging {:.1}s while serving; unavailable {:.1}s (operator: pod deletion → agent answering); mysqld stop → ready {:.1?} (init {:.1?}); {:.1?} wall time",
        status.staging_seconds.unwrap_or_default(),
        status.unavailability_seconds.unwrap_or_default(),
        restart.stop_to_ready.unwrap_or_default(),
        restart.init.unwrap_or_default(),
        started.elapsed(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_place_restore_of_2x10k_rows_swaps_at_one_restart_and_passes_the_oracle() {
    in_place(2, 10_000, Restored::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_place_restore_of_an_incremental_applies_its_chain_and_passes_the_oracle_at_its_gtid_set()
 {
    in_place(2, 10_000, Restored::Chain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_place_restore_of_4x50k_rows_swaps_at_one_restart_and_passes_the_oracle() {
    in_place(4, 50_000, Restored::Full).await;
}

/// What the kubelet stand-in saw of the pods it started.
#[derive(Default)]
struct Started {
    /// Per started pod: it had the init container that restores.
    wired: Vec<bool>,
    init: Option<Duration>,
    /// The restored server, once started.
    server: Option<MysqlServer>,
}

/// The NewStatefulSet restore against a StatefulSet controller at its
/// worst: pod-0 is made from the unwired template the moment the
/// StatefulSet exists. The operator's scheduling gate holds it; the operator
/// replaces it once the template is wired and lets the new one start, whose
/// init container restores into the empty volume before mysqld first runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_statefulset_starts_on_the_backup_with_its_own_server_uuid() {
    let started = Instant::now();
    let (s3, (source, bench)) = tokio::join!(async { S3Server::start().await.unwrap() }, async {
        let source = MysqlServer::builder().server_id(1).start().await.unwrap();
        let bench = Sysbench::prepare(&source, 2, 10_000).await.unwrap();
        (source, bench)
    });
    let cluster = cluster().await;
    cluster.create_s3_secret("s3-keys", &s3).await.unwrap();
    cluster
        .add_stateful_set("db", &[PodMysql::of(&source)])
        .await
        .unwrap();
    let backed_up = take_backup(&cluster, &s3, "db").await;
    let backup_gtid = backed_up.status.unwrap().gtid_executed.unwrap();
    bench.run(2, Duration::from_secs(2)).await.unwrap();

    cluster
        .api::<MySQLRestore>()
        .create(
            &PostParams::default(),
            &restore("clone", "db2", "NewStatefulSet"),
        )
        .await
        .unwrap();

    // The kubelet: a pod that starts runs what its init container would,
    // on a fresh empty volume, then mysqld on that volume.
    let volume = tempfile::tempdir().unwrap();
    let seen = Arc::new(tokio::sync::Mutex::new(Started::default()));
    let mysqld = source.bin("mysqld");
    let on_start: innoxide_testkit::PodStartHook = {
        let (seen, root) = (seen.clone(), volume.path().to_owned());
        Arc::new(move |start: innoxide_testkit::PodStart| {
            let (seen, root, mysqld) = (seen.clone(), root.clone(), mysqld.clone());
            Box::pin(async move {
                let mut seen = seen.lock().await;
                let spec = start.pod.spec.clone().unwrap_or_default();
                let init = spec
                    .init_containers
                    .iter()
                    .flatten()
                    .find(|c| c.name == innoxide_operator::wiring::INIT_CONTAINER)
                    .and_then(|c| c.args.clone())
                    .unwrap_or_default();
                let wired = init.iter().any(|a| a.starts_with("--restore-spec="));
                seen.wired.push(wired);
                anyhow::ensure!(
                    wired,
                    "pod {} started without the restore's init container: mysqld would initialise the empty volume",
                    start.pod.metadata.name.clone().unwrap_or_default()
                );
                let spec_file = root.join("restore-spec.json");
                std::fs::write(&spec_file, restore_spec_of(&start).await?)?;
                let datadir = root.join("data");
                std::fs::create_dir(&datadir)?;
                let init_started = Instant::now();
                agent_init(&[
                    format!("--datadir={}", datadir.display()),
                    format!("--state-dir={}", datadir.join(".innoxide-agent").display()),
                    format!("--restore-spec={}", spec_file.display()),
                    format!("--mysqld={}", mysqld.display()),
                ])
                .await;
                seen.init = Some(init_started.elapsed());
                let restored = MysqlServer::builder()
                    .server_id(3)
                    .existing_datadir(&datadir)
                    .start()
                    .await?;
                let mysql = PodMysql::of(&restored);
                seen.server = Some(restored);
                Ok(mysql)
            })
        })
    };
    let made = cluster
        .create_gated_stateful_set("db2", &[(RESTORE_FROM_ANNOTATION, "clone")], on_start)
        .await
        .unwrap();

    let done = wait_restore(&cluster, "clone").await;
    let status = done.status.clone().unwrap();
    assert_eq!(done.phase(), RestorePhase::Completed, "{status:?}");
    assert_eq!(status.gtid_executed.as_deref(), Some(backup_gtid.as_str()));

    // The race happened and was held: pod-0 was first made unwired, never
    // started, and replaced; only the wired one started.
    let made: Vec<bool> = made
        .lock()
        .unwrap()
        .iter()
        .map(|pod| {
            pod.spec
                .iter()
                .flat_map(|s| s.init_containers.iter().flatten())
                .any(|c| c.name == innoxide_operator::wiring::INIT_CONTAINER)
        })
        .collect();
    assert_eq!(
        made.first(),
        Some(&false),
        "pod-0 was first made from the unwired template"
    );
    assert_eq!(made.last(), Some(&true), "{made:?}");
    let seen = seen.lock().await;
    assert_eq!(seen.wired, [true], "only the wired pod started");
    let replaced = cluster.events_about("db2").await.unwrap();
    assert!(
        replaced
            .iter()
            .any(|e| e.reason.as_deref() == Some("PodReplaced")),
        "{replaced:?}"
    );

    let restored = seen.server.as_ref().unwrap();
    let source_uuid: String = source.query_scalar("SELECT @@server_uuid").await.unwrap();
    let restored_uuid: String = restored.query_scalar("SELECT @@server_uuid").await.unwrap();
    assert_ne!(
        source_uuid, restored_uuid,
        "a clone has its own server_uuid"
    );
    let verdict = oracle::check(OracleInput {
        source: &source,
        restored,
        backup_gtid_set: &backup_gtid,
        tables: &bench.table_names(),
    })
    .await
    .unwrap();
    assert!(verdict.passed(), "{verdict}");
    eprintln!(
        "new StatefulSet from 2x10k rows, pod-0 made before the wiring: init restore {:.1?}; {:.1?} wall time",
        seen.init.unwrap_or_default(),
        started.elapsed()
    );
}

/// The restore's spec, from the Secret the pod's init container mounts.
async fn restore_spec_of(start: &innoxide_testkit::PodStart) -> anyhow::Result<Vec<u8>> {
    let spec = start.pod.spec.clone().unwrap_or_default();
    let secret_name = spec
        .volumes
        .iter()
        .flatten()
        .find_map(|v| {
            v.secret
                .as_ref()
                .and_then(|s| s.secret_name.clone())
                .filter(|n| n.ends_with("-restore-spec"))
        })
        .ok_or_else(|| anyhow::anyhow!("the pod mounts no restore spec"))?;
    let secrets: Api<Secret> = Api::namespaced(
        start.pods.client(),
        start.pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let secret = secrets.get(&secret_name).await?;
    // kube-apiserver folds stringData into data; the stand-in API keeps it.
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(RESTORE_SPEC_KEY))
        .map(|v| v.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(RESTORE_SPEC_KEY))
                .map(|v| v.clone().into_bytes())
        })
        .ok_or_else(|| anyhow::anyhow!("Secret {secret_name} has no {RESTORE_SPEC_KEY}"))
}

/// The real API server (our CRD's schema and CEL rules) refuses impossible
/// restores with the message the CRD gives, and keeps a spec as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_impossible_restores() {
    let cluster = cluster().await;
    let api = cluster.api::<MySQLRestore>();
    // Untyped, so a spec the Rust types could not even hold is sent too.
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        cluster.client(),
        cluster.namespace(),
        &kube::api::ApiResource::erase::<MySQLRestore>(&()),
    );
    let refused = |spec: serde_json::Value| {
        let raw = raw.clone();
        async move {
            let restore: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "innoxide.dev/v1alpha1",
                "kind": "MySQLRestore",
                "metadata": {"name": "bad"},
                "spec": spec,
            }))
            .unwrap();
            match raw.create(&PostParams::default(), &restore).await {
                Err(kube::Error::Api(e)) => e.message,
                other => panic!("accepted: {other:?}"),
            }
        }
    };
    let location = serde_json::json!({
        "backupName": "nightly",
        "storage": {"s3": {"bucket": "backups", "endpoint": "http://minio:9000"}},
    });
    let both = refused(serde_json::json!({
        "source": {"backupName": "nightly", "location": location.clone()},
        "target": {"statefulSetName": "db", "mode": "InPlace"},
    }))
    .await;
    assert!(
        both.contains("source: set exactly one of backupName"),
        "{both}"
    );
    let keyless = refused(serde_json::json!({
        "source": {"location": location},
        "target": {"statefulSetName": "db", "mode": "InPlace"},
    }))
    .await;
    assert!(
        keyless.contains("an S3-compatible endpoint needs credentialsSecretRef"),
        "{keyless}"
    );
    let pod_for_new = refused(serde_json::json!({
        "source": {"backupName": "nightly"},
        "target": {"statefulSetName": "db", "mode": "NewStatefulSet", "pod": "db-0"},
    }))
    .await;
    assert!(pod_for_new.contains("target.pod"), "{pod_for_new}");
    let unknown_mode = refused(serde_json::json!({
        "source": {"backupName": "nightly"},
        "target": {"statefulSetName": "db", "mode": "Overwrite"},
    }))
    .await;
    assert!(unknown_mode.contains("Unsupported value"), "{unknown_mode}");

    // A good one is kept as written: its spec cannot change. A merge patch
    // carries no resourceVersion, so the controller's own writes to the
    // object (finalizer, status) cannot turn the answer into a conflict.
    api.create(&PostParams::default(), &restore("good", "db", "InPlace"))
        .await
        .unwrap();
    let moved = serde_json::json!({"spec": {"source": {"backupName": "weekly"}}});
    match api
        .patch("good", &PatchParams::default(), &Patch::Merge(&moved))
        .await
    {
        Err(kube::Error::Api(e)) => assert!(e.message.contains("spec is immutable"), "{e:?}"),
        other => panic!("the spec changed: {other:?}"),
    }
}
