//! The operator end to end, on loopback: MySQLBackup and
//! MySQLBackupSchedule on a real API server, the operator's controllers
//! in-process, a real `innoxide-agent serve` per pod over real gRPC +
//! mTLS, real MySQL 9.7 under sysbench load, and the in-process S3 server
//! (see `innoxide_testkit::cluster`). Each test has its own cluster, so
//! they run in parallel.

use std::path::Path;
use std::time::{Duration, Instant};

use innoxide_agent::repo::{self, RepoOptions, lifecycle};
use innoxide_operator::api::{BackupPhase, MySQLBackup, MySQLBackupSchedule};
use innoxide_testkit::oracle::{self, OracleInput};
use innoxide_testkit::{Cluster, MysqlServer, PodDeleted, PodFate, PodMysql, S3Server, Sysbench};
use kube::api::{DeleteParams, ListParams, PostParams};

const BACKUP_USER: &str = "backup";
const BACKUP_PASSWORD: &str = "Backup-Pw-9f3e";
const DONE_WITHIN: Duration = Duration::from_secs(90);

async fn cluster() -> Cluster {
    cluster_with(Cluster::builder()).await
}

async fn cluster_with(builder: innoxide_testkit::ClusterBuilder) -> Cluster {
    builder
        .agent_binary(env!("CARGO_BIN_EXE_e2e-agent"))
        .agent_lost_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap()
}

fn s3_options(s3: &S3Server) -> RepoOptions {
    RepoOptions {
        s3_endpoint: Some(s3.endpoint()),
        s3_region: Some(s3.region().to_owned()),
        s3_access_key_id: Some(s3.access_key().to_owned()),
        s3_secret_access_key: Some(innoxide_agent::secret::Secret::new(
            s3.secret_key().to_owned(),
        )),
        ..RepoOptions::default()
    }
}

/// A MySQLBackup spec of StatefulSet `sts` into `s3://bucket/prefix`, as a
/// user writes it; `extra` is merged into the spec.
fn backup_spec(
    s3: &S3Server,
    sts: &str,
    prefix: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "mysql": {"statefulSetName": sts},
        "storage": {"s3": {
            "bucket": s3.bucket(),
            "prefix": prefix,
            "endpoint": s3.endpoint(),
            "region": s3.region(),
            "credentialsSecretRef": {"name": "s3-keys"},
        }},
        "compression": "Zstd",
        "mysqlCredentials": {
            "user": BACKUP_USER,
            "passwordSecretRef": {"name": "mysql-backup", "key": "password"},
        },
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

fn backup(name: &str, spec: serde_json::Value) -> MySQLBackup {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "innoxide.dev/v1alpha1",
        "kind": "MySQLBackup",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

async fn create(cluster: &Cluster, backup: &MySQLBackup) {
    cluster
        .api::<MySQLBackup>()
        .create(&PostParams::default(), backup)
        .await
        .unwrap();
}

/// The Secrets every backup here names.
async fn secrets(cluster: &Cluster, s3: &S3Server) {
    cluster.create_s3_secret("s3-keys", s3).await.unwrap();
    cluster
        .create_secret("mysql-backup", &[("password", BACKUP_PASSWORD.as_bytes())])
        .await
        .unwrap();
}

async fn source_with_data(server_id: u32, rows: u64) -> (MysqlServer, Sysbench) {
    let server = MysqlServer::builder()
        .server_id(server_id)
        .start()
        .await
        .unwrap();
    let bench = Sysbench::prepare(&server, 2, rows).await.unwrap();
    server
        .create_user(BACKUP_USER, BACKUP_PASSWORD)
        .await
        .unwrap();
    (server, bench)
}

fn phase(backup: &MySQLBackup) -> BackupPhase {
    backup.phase()
}

fn message(backup: &MySQLBackup) -> String {
    backup
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

/// Whether the backup's folder under `prefix` holds a manifest.
fn manifest_exists(s3: &S3Server, prefix: &str, backup: &MySQLBackup) -> bool {
    s3.object_path(&format!("{prefix}/{}/innoxide.json", folder(backup)))
        .exists()
}

/// The backup's folder in its repository: its name and its UID's start.
fn folder(backup: &MySQLBackup) -> String {
    let status = backup.status.as_ref();
    let recorded = status.and_then(|s| s.backup_name.clone()).unwrap();
    let uid = backup.metadata.uid.as_deref().unwrap();
    assert_eq!(
        recorded,
        format!("{}-{}", backup.metadata.name.as_deref().unwrap(), &uid[..8])
    );
    recorded
}

fn report(test: &str, started: Instant) {
    eprintln!("{test}: {:.1?} wall time", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_completes_matches_its_manifest_and_restores_to_its_consistent_point() {
    let started = Instant::now();
    let (s3, (source, bench)) = tokio::join!(
        async { S3Server::start().await.unwrap() },
        source_with_data(1, 8_000)
    );
    let cluster = cluster().await;
    secrets(&cluster, &s3).await;
    cluster
        .add_stateful_set("db", &[PodMysql::of(&source)])
        .await
        .unwrap();

    let load = bench.run_background(2, Duration::from_secs(120)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    create(
        &cluster,
        &backup(
            "nightly",
            backup_spec(&s3, "db", "prod/db", serde_json::json!({})),
        ),
    )
    .await;
    let done = cluster
        .wait_backup_finished("nightly", DONE_WITHIN)
        .await
        .unwrap();
    let load = load.stop().await.unwrap();
    assert!(
        load.transactions > 0,
        "sysbench wrote during the backup: {load:?}"
    );
    let status = done.status.clone().unwrap();
    assert_eq!(phase(&done), BackupPhase::Completed, "{status:?}");

    // Its folder is its name and its UID's start: a MySQLBackup created
    // again with the same name never meets this one's files.
    let uid = done.metadata.uid.clone().unwrap();
    let folder = format!("nightly-{}", &uid[..8]);
    assert_eq!(status.backup_name.as_deref(), Some(folder.as_str()));
    // The status says what the stored manifest says.
    let store = repo::open(&format!("s3://{}/prod/db", s3.bucket()), &s3_options(&s3))
        .unwrap()
        .child(&folder);
    let manifest = lifecycle::read_manifest(&store).await.unwrap();
    assert_eq!(
        manifest
            .compression
            .as_deref()
            .map(|c| c.starts_with("zstd")),
        Some(true)
    );
    let lsn = status.lsn.clone().unwrap();
    assert_eq!(
        (lsn.start, lsn.end, lsn.last),
        (
            manifest.redo.start_checkpoint_lsn,
            manifest.redo.to_lsn,
            Some(manifest.redo.last_lsn)
        )
    );
    let binlog = status.binlog.clone().unwrap();
    assert_eq!(
        (binlog.file.as_str(), binlog.position),
        (manifest.binlog_file.as_str(), manifest.binlog_position)
    );
    assert_eq!(
        status.gtid_executed.as_deref(),
        Some(manifest.gtid_executed.as_str())
    );
    assert!(!manifest.gtid_executed.is_empty());
    // Size is what the backup takes in storage: zstd made it smaller.
    let stored: u64 = manifest
        .files
        .iter()
        .map(|f| f.stored_size.unwrap_or(f.size))
        .sum();
    let original: u64 = manifest.files.iter().map(|f| f.size).sum();
    assert_eq!(status.size_bytes, Some(stored));
    assert!(stored < original, "stored {stored} of {original} bytes");
    assert_eq!(
        status.server_uuid.as_deref(),
        Some(manifest.server_uuid.as_str())
    );
    // Printer columns: Phase, Progress, Size, Pod, Location.
    assert_eq!(
        status.progress.as_ref().and_then(|p| p.percent.as_deref()),
        Some("100%")
    );
    assert!(status.size.as_deref().is_some_and(|s| !s.is_empty()));
    assert_eq!(status.pod.as_deref(), Some("db-0"));
    assert_eq!(
        status.location.as_deref(),
        Some(format!("s3://{}/prod/db/{folder}", s3.bucket()).as_str())
    );
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Completed")
    );
    assert_eq!(ready.observed_generation, done.metadata.generation);
    let events = cluster.events_about("nightly").await.unwrap();
    let reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
    assert!(
        reasons.contains(&"Started") && reasons.contains(&"Completed"),
        "{reasons:?}"
    );
    // Secrets appear in neither the status nor the Events.
    let shown = format!(
        "{}{}",
        serde_json::to_string(&status).unwrap(),
        serde_json::to_string(&events).unwrap()
    );
    assert!(!shown.contains(BACKUP_PASSWORD) && !shown.contains(s3.secret_key()));

    // The stored backup verifies, and fetched, prepared and started it is
    // exactly the source at the backup's GTID set.
    let (checked, m, s) = (store.clone(), manifest.clone(), store.clone());
    let verified = tokio::task::spawn_blocking(move || lifecycle::verify(&checked, &m, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verified.files, manifest.files.len());
    let work = tempfile::tempdir().unwrap();
    let fetched = work.path().join("fetched");
    let (m, dest) = (manifest.clone(), fetched.clone());
    tokio::task::spawn_blocking(move || lifecycle::fetch(&s, &m, None, &dest, &mut |_| {}))
        .await
        .unwrap()
        .unwrap();
    let datadir = work.path().join("restored");
    agent_cli(&[
        "apply-log",
        "--backup-dir",
        &fetched.display().to_string(),
        "--mysqld",
        &source.bin("mysqld").display().to_string(),
    ])
    .await;
    agent_cli(&[
        "copy-back",
        "--backup-dir",
        &fetched.display().to_string(),
        "--datadir",
        &datadir.display().to_string(),
        "--new-server-uuid",
    ])
    .await;
    let restored = MysqlServer::builder()
        .server_id(2)
        .existing_datadir(&datadir)
        .start()
        .await
        .unwrap();
    let verdict = oracle::check(OracleInput {
        source: &source,
        restored: &restored,
        backup_gtid_set: status.gtid_executed.as_deref().unwrap(),
        tables: &bench.table_names(),
    })
    .await
    .unwrap();
    assert!(verdict.passed(), "{verdict}");
    report("happy path", started);
}

async fn agent_cli(args: &[&str]) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_e2e-agent"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "innoxide-agent {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_that_cannot_work_end_failed_with_a_message_and_no_manifest() {
    let started = Instant::now();
    let (s3, (live, _bench), (mut stopped, _)) = tokio::join!(
        async { S3Server::start().await.unwrap() },
        source_with_data(1, 5_000),
        source_with_data(2, 1_000),
    );
    let cluster = cluster().await;
    secrets(&cluster, &s3).await;
    cluster
        .add_stateful_set("db", &[PodMysql::of(&live)])
        .await
        .unwrap();
    cluster
        .add_stateful_set("silent", &[PodMysql::of(&live)])
        .await
        .unwrap();
    cluster
        .add_stateful_set("dead", &[PodMysql::of(&stopped)])
        .await
        .unwrap();
    // Ready pods: one whose agent does not listen, one whose mysqld is down.
    cluster.pods().stop_agent("silent-0");
    stopped.stop().await.unwrap();
    s3.faults().fail_matching("refused/", None);

    let deadline = serde_json::json!({"startDeadlineSeconds": 3});
    for (name, sts, prefix) in [
        ("unreachable", "silent", "silent"),
        ("mysql-down", "dead", "dead"),
        ("storage-refused", "db", "refused"),
    ] {
        create(
            &cluster,
            &backup(name, backup_spec(&s3, sts, prefix, deadline.clone())),
        )
        .await;
    }
    let (unreachable, mysql_down, refused) = tokio::join!(
        cluster.wait_backup_finished("unreachable", DONE_WITHIN),
        cluster.wait_backup_finished("mysql-down", DONE_WITHIN),
        cluster.wait_backup_finished("storage-refused", DONE_WITHIN),
    );
    let (unreachable, mysql_down, refused) =
        (unreachable.unwrap(), mysql_down.unwrap(), refused.unwrap());
    let took = started.elapsed();

    assert_eq!(phase(&unreachable), BackupPhase::Failed);
    let text = message(&unreachable);
    assert!(
        text.contains("startDeadlineSeconds (3s)")
            && text.contains("cannot reach the agent in pod silent-0"),
        "{text}"
    );
    assert_eq!(phase(&mysql_down), BackupPhase::Failed);
    let text = message(&mysql_down);
    assert!(
        text.contains("MYSQL_UNAVAILABLE") && text.contains("dead-0"),
        "{text}"
    );
    assert_eq!(phase(&refused), BackupPhase::Failed);
    let text = message(&refused);
    assert!(
        text.contains("failed (IO): cannot write s3://") && text.contains("db-0"),
        "{text}"
    );
    assert!(s3.faults().injected() > 0);
    for (backup, prefix) in [
        (&unreachable, "silent"),
        (&mysql_down, "dead"),
        (&refused, "refused"),
    ] {
        let name = backup.metadata.name.as_deref().unwrap();
        assert!(
            !manifest_exists(&s3, prefix, backup),
            "{name} left a manifest"
        );
        let status = backup.status.as_ref().unwrap();
        assert!(status.lsn.is_none() && status.size.is_none(), "{status:?}");
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
        let events = cluster.events_about(name).await.unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("Failed")
                    && e.type_.as_deref() == Some("Warning")),
            "{name}: {events:?}"
        );
    }
    eprintln!("failures: all three Failed after {took:.1?}");
    report("failures", started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_makes_a_backup_per_run_and_retention_deletes_the_oldest_with_their_data() {
    let started = Instant::now();
    let (s3, (source, _bench)) = tokio::join!(
        async { S3Server::start().await.unwrap() },
        source_with_data(1, 5_000)
    );
    let cluster = cluster_with(Cluster::builder().manual_clock(jiff::Timestamp::now())).await;
    secrets(&cluster, &s3).await;
    cluster
        .add_stateful_set("db", &[PodMysql::of(&source)])
        .await
        .unwrap();
    let schedule: MySQLBackupSchedule = serde_json::from_value(serde_json::json!({
        "apiVersion": "innoxide.dev/v1alpha1",
        "kind": "MySQLBackupSchedule",
        "metadata": {"name": "hourly"},
        "spec": {
            "schedule": "* * * * *",
            "retention": {"keepLast": 2},
            "backupTemplate": {"spec": backup_spec(&s3, "db", "sched", serde_json::json!({"deletionPolicy": "Delete"}))},
        },
    }))
    .unwrap();
    let created = cluster
        .api::<MySQLBackupSchedule>()
        .create(&PostParams::default(), &schedule)
        .await
        .unwrap();
    // The clock starts at the schedule's creation (the API server's real
    // time, which the setup above took a while to reach): each minute it
    // advances then holds exactly one run.
    cluster
        .set_clock(created.metadata.creation_timestamp.unwrap().0)
        .unwrap();
    let backups = cluster.api::<MySQLBackup>();
    let mut made = Vec::new();
    let mut folders = Vec::new();
    for run in 1..=3 {
        cluster.advance_clock(Duration::from_secs(60)).unwrap();
        // The run's backup appears and completes before the clock moves on.
        let deadline = Instant::now() + DONE_WITHIN;
        let name = loop {
            let listed = backups.list(&ListParams::default()).await.unwrap().items;
            if let Some(new) = listed
                .iter()
                .map(|b| b.metadata.name.clone().unwrap())
                .find(|n| !made.contains(n))
            {
                break new;
            }
            assert!(Instant::now() < deadline, "run {run} made no backup");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let done = cluster
            .wait_backup_finished(&name, DONE_WITHIN)
            .await
            .unwrap();
        assert_eq!(phase(&done), BackupPhase::Completed, "{:?}", done.status);
        assert!(manifest_exists(&s3, "sched", &done));
        made.push(name);
        folders.push(folder(&done));
    }
    // keepLast 2: the oldest is deleted, resource and data.
    cluster
        .wait_backup_gone(&made[0], DONE_WITHIN)
        .await
        .unwrap();
    let mut left: Vec<String> = backups
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|b| b.metadata.name.unwrap())
        .collect();
    left.sort();
    assert_eq!(left, made[1..].to_vec());
    let stored = lifecycle::list(
        &repo::open(&format!("s3://{}/sched", s3.bucket()), &s3_options(&s3)).unwrap(),
    )
    .await
    .unwrap();
    let mut stored: Vec<String> = stored.into_iter().map(|b| b.name).collect();
    stored.sort();
    assert_eq!(stored, folders[1..].to_vec());
    assert!(dir_is_empty(
        &s3.object_path(&format!("sched/{}", folders[0]))
    ));
    assert!(made.iter().all(|n| n.starts_with("hourly-")), "{made:?}");
    let pruned = cluster.events_about("hourly").await.unwrap();
    assert!(
        pruned
            .iter()
            .any(|e| e.note.as_deref().is_some_and(|n| n.contains(&format!(
                "deleting MySQLBackup {} and its data at s3://{}/sched/{}",
                made[0],
                s3.bucket(),
                folders[0]
            )))),
        "retention says what it deletes: {pruned:?}"
    );

    // Deleting the schedule (or a GitOps tool pruning it) leaves its
    // backups alone: they carry no ownerReference for the garbage
    // collector to follow (this API server runs none: the reference is
    // what would be followed), so neither they nor their data go.
    cluster
        .api::<MySQLBackupSchedule>()
        .delete("hourly", &DeleteParams::default())
        .await
        .unwrap();
    for backup in backups.list(&ListParams::default()).await.unwrap() {
        assert!(
            backup
                .metadata
                .owner_references
                .as_deref()
                .unwrap_or_default()
                .is_empty(),
            "{:?}",
            backup.metadata
        );
        assert!(manifest_exists(&s3, "sched", &backup));
    }
    report("schedule", started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletion_policy_holds_without_the_agent_and_a_backup_that_loses_its_agent_fails() {
    let started = Instant::now();
    let (s3, (source, _bench)) = tokio::join!(
        async { S3Server::start().await.unwrap() },
        source_with_data(1, 5_000)
    );
    let cluster = cluster().await;
    secrets(&cluster, &s3).await;
    cluster
        .add_stateful_set("db", &[PodMysql::of(&source)])
        .await
        .unwrap();
    let mut kept = Vec::new();
    for (name, policy) in [("keep", "Retain"), ("drop", "Delete")] {
        create(
            &cluster,
            &backup(
                name,
                backup_spec(
                    &s3,
                    "db",
                    "del",
                    serde_json::json!({"deletionPolicy": policy}),
                ),
            ),
        )
        .await;
        let done = cluster
            .wait_backup_finished(name, DONE_WITHIN)
            .await
            .unwrap();
        assert_eq!(phase(&done), BackupPhase::Completed, "{:?}", done.status);
        assert!(manifest_exists(&s3, "del", &done));
        kept.push(done);
    }

    // A slow backup runs; its pod goes away for good.
    create(
        &cluster,
        &backup(
            "slow",
            backup_spec(&s3, "db", "slow", serde_json::json!({"throttle": "256Ki"})),
        ),
    )
    .await;
    cluster
        .wait_backup("slow", DONE_WITHIN, |b| {
            b.status
                .as_ref()
                .and_then(|s| s.progress.as_ref())
                .is_some_and(|p| p.bytes_done > 0)
        })
        .await
        .unwrap();
    cluster.on_pod_deleted(std::sync::Arc::new(|_: PodDeleted| {
        Box::pin(async { PodFate::Gone })
    }));
    let lost_at = Instant::now();
    cluster.pods().delete_pod("db-0").await.unwrap();
    let slow = cluster
        .wait_backup_finished("slow", DONE_WITHIN)
        .await
        .unwrap();
    let lost_after = lost_at.elapsed();
    assert_eq!(phase(&slow), BackupPhase::Failed);
    let text = message(&slow);
    assert!(text.contains("lost the agent of pod db-0"), "{text}");
    assert!(!manifest_exists(&s3, "slow", &slow));
    assert!(
        lost_after < Duration::from_secs(60),
        "failed {lost_after:?} after the pod went (agent-lost timeout 5s)"
    );
    eprintln!("agent lost: Failed {lost_after:.1?} after its pod was deleted");

    // With no pod and no agent, the operator deletes the data itself.
    let api = cluster.api::<MySQLBackup>();
    for name in ["keep", "drop"] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in ["keep", "drop"] {
        cluster.wait_backup_gone(name, DONE_WITHIN).await.unwrap();
    }
    assert!(
        manifest_exists(&s3, "del", &kept[0]),
        "Retain keeps the data"
    );
    assert!(
        dir_is_empty(&s3.object_path(&format!("del/{}", folder(&kept[1])))),
        "Delete deletes the data"
    );
    let events = cluster.events_about("drop").await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("DataDeleted")),
        "{events:?}"
    );
    // Retain says what it leaves behind, and where.
    let events = cluster.events_about("keep").await.unwrap();
    let retained = format!("stays at s3://{}/del/{}", s3.bucket(), folder(&kept[0]));
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("DataRetained")
                && e.note.as_deref().is_some_and(|n| n.contains(&retained))),
        "{events:?}"
    );
    report("deletion policy + agent lost", started);
}

fn dir_is_empty(dir: &Path) -> bool {
    walk(dir).is_empty()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_the_operator_cannot_delete_fails_visibly_and_never_blocks_deletion_forever() {
    let started = Instant::now();
    let (s3, (source, _bench)) = tokio::join!(
        async { S3Server::start().await.unwrap() },
        source_with_data(1, 2_000)
    );
    let cluster = cluster_with(Cluster::builder().manual_clock(jiff::Timestamp::now())).await;
    secrets(&cluster, &s3).await;
    cluster
        .add_stateful_set("db", &[PodMysql::of(&source)])
        .await
        .unwrap();
    create(
        &cluster,
        &backup(
            "orphan",
            backup_spec(
                &s3,
                "db",
                "nocreds",
                serde_json::json!({"deletionPolicy": "Delete"}),
            ),
        ),
    )
    .await;
    let done = cluster
        .wait_backup_finished("orphan", DONE_WITHIN)
        .await
        .unwrap();
    assert_eq!(phase(&done), BackupPhase::Completed, "{:?}", done.status);

    // The operator loses its credentials (as with workload identity that
    // only the agents have), then the backup is deleted.
    cluster
        .api::<k8s_openapi::api::core::v1::Secret>()
        .delete("s3-keys", &DeleteParams::default())
        .await
        .unwrap();
    let api = cluster.api::<MySQLBackup>();
    api.delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    let failing = cluster
        .wait_backup("orphan", DONE_WITHIN, |b| {
            b.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "DataDeleted" && c.status == "False")
            })
        })
        .await
        .unwrap();
    let condition = failing
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "DataDeleted")
        .unwrap()
        .clone();
    assert!(
        condition.message.contains("s3-keys") && condition.message.contains("10m"),
        "says why and for how long: {}",
        condition.message
    );
    let events = cluster.events_about("orphan").await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("DataNotDeleted")
                && e.type_.as_deref() == Some("Warning")),
        "{events:?}"
    );

    // Bounded: past the limit the finalizer goes, with a Warning that says
    // what was left, and the data is where it was.
    let deleted_at = failing.metadata.deletion_timestamp.clone().unwrap().0;
    cluster
        .set_clock(deleted_at + jiff::SignedDuration::from_secs(11 * 60))
        .unwrap();
    cluster
        .wait_backup_gone("orphan", DONE_WITHIN)
        .await
        .unwrap();
    let events = cluster.events_about("orphan").await.unwrap();
    let left = format!("backup {} from s3://{}/nocreds", folder(&done), s3.bucket());
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("DataLeftBehind")
                && e.type_.as_deref() == Some("Warning")
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains(&left) && n.contains("left in place"))),
        "{events:?}"
    );
    assert!(manifest_exists(&s3, "nocreds", &done), "nothing was lost");
    report("no credentials", started);
}
