//! Point-in-time recovery end to end, on loopback: the operator's
//! controllers in-process on a real API server, a real `innoxide-agent
//! serve` over gRPC + mTLS that archives the pod's binlogs into the
//! in-process S3 server, real MySQL 9.7 under sysbench load.
//!
//! The pod's server B is a replica of A (the oracle needs a source that
//! keeps every transaction). A MySQLBackupSchedule with `binlogArchive`
//! makes B's agent archive its binlogs; a backup of the schedule is taken
//! under load; more writes; a time T is picked (writes paused around it,
//! so T separates two sets exactly); more writes and "the mistake" (DROP
//! TABLE); then a MySQLRestore to T from S3. The restored B must have
//! exactly the set it had at T, its tables the checksums of a replica of A
//! stopped there (the oracle's reference replica), and the dropped table
//! back as it was at T.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use innoxide_operator::api::{MySQLBackup, MySQLBackupSchedule, MySQLRestore, RestorePhase};
use innoxide_testkit::oracle::ReferenceReplica;
use innoxide_testkit::{Cluster, MysqlServer, PodDeleted, PodFate, PodMysql, S3Server, Sysbench};
use kube::api::PostParams;

const DONE_WITHIN: Duration = Duration::from_secs(300);
const REPL_USER: &str = "e2e_repl";
const REPL_PASSWORD: &str = "Repl-Pw-4c1a";

fn storage(s3: &S3Server) -> serde_json::Value {
    serde_json::json!({"s3": {
        "bucket": s3.bucket(),
        "prefix": "prod/db",
        "endpoint": s3.endpoint(),
        "region": s3.region(),
        "credentialsSecretRef": {"name": "s3-keys"},
    }})
}

fn schedule(s3: &S3Server) -> MySQLBackupSchedule {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "innoxide.dev/v1alpha1",
        "kind": "MySQLBackupSchedule",
        "metadata": {"name": "nightly"},
        "spec": {
            // Not due during the test: the test takes the backup itself.
            "schedule": "0 3 1 1 *",
            "binlogArchive": {"uploadIntervalSeconds": 1},
            "backupTemplate": {"spec": {
                "mysql": {"statefulSetName": "db"},
                "storage": storage(s3),
                "compression": "Zstd",
            }},
        },
    }))
    .unwrap()
}

/// A backup of the schedule (labelled with it), as one of its runs.
fn backup(s3: &S3Server) -> MySQLBackup {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "innoxide.dev/v1alpha1",
        "kind": "MySQLBackup",
        "metadata": {"name": "nightly-base", "labels": {"innoxide.dev/schedule": "nightly"}},
        "spec": {
            "mysql": {"statefulSetName": "db"},
            "storage": storage(s3),
            "compression": "Zstd",
        },
    }))
    .unwrap()
}

fn restore_to(time: &str) -> MySQLRestore {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "innoxide.dev/v1alpha1",
        "kind": "MySQLRestore",
        "metadata": {"name": "undo-the-drop"},
        "spec": {
            "source": {"pointInTime": {"scheduleName": "nightly", "time": time}},
            "target": {"statefulSetName": "db", "mode": "InPlace"},
            "useMemory": "256Mi",
        },
    }))
    .unwrap()
}

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

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DONE_WITHIN;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {DONE_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_to_a_time_from_s3_undoes_a_drop_table_and_matches_a_reference_replica() {
    let started = Instant::now();
    let (s3, (source, bench)) = tokio::join!(async { S3Server::start().await.unwrap() }, async {
        let source = MysqlServer::builder().server_id(1).start().await.unwrap();
        let bench = Sysbench::prepare(&source, 2, 10_000).await.unwrap();
        (source, bench)
    });
    source
        .exec(
            "CREATE DATABASE app; CREATE TABLE app.orders (id INT PRIMARY KEY, item VARCHAR(40)); \
             INSERT INTO app.orders VALUES (1, 'first'), (2, 'second')",
        )
        .await
        .unwrap();
    let replica = MysqlServer::builder()
        .server_id(2)
        .extra("skip_replica_start=ON")
        .start()
        .await
        .unwrap();
    replicate(&replica, &source).await;
    let cluster = Cluster::builder()
        .agent_binary(env!("CARGO_BIN_EXE_e2e-agent"))
        .start()
        .await
        .unwrap();
    cluster.create_s3_secret("s3-keys", &s3).await.unwrap();
    cluster
        .add_stateful_set("db", &[PodMysql::of(&replica)])
        .await
        .unwrap();
    let schedules = cluster.api::<MySQLBackupSchedule>();
    schedules
        .create(&PostParams::default(), &schedule(&s3))
        .await
        .unwrap();
    wait_for("the archiver runs", async || {
        let status = schedules
            .get("nightly")
            .await
            .ok()?
            .status?
            .binlog_archive?;
        (status.state.as_deref() == Some("Archiving")).then_some(())
    })
    .await;

    // A backup under load.
    let load = bench.run_background(2, Duration::from_secs(6)).unwrap();
    cluster
        .api::<MySQLBackup>()
        .create(&PostParams::default(), &backup(&s3))
        .await
        .unwrap();
    let done = cluster
        .wait_backup_finished("nightly-base", DONE_WITHIN)
        .await
        .unwrap();
    assert_eq!(
        done.phase(),
        innoxide_operator::api::BackupPhase::Completed,
        "{:?}",
        done.status
    );
    load.wait().await.unwrap();

    // Writes after the backup, then the point: nothing commits for a
    // second on each side of T.
    bench.run(2, Duration::from_secs(2)).await.unwrap();
    source
        .exec("INSERT INTO app.orders VALUES (3, 'after the backup')")
        .await
        .unwrap();
    caught_up(&replica, &source).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let point = jiff::Timestamp::now();
    let at_point = replica.gtid_executed().await.unwrap();
    let orders_at_point = replica.checksum_tables(&["app.orders"]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // More writes, and the mistake.
    bench.run(2, Duration::from_secs(2)).await.unwrap();
    source.exec("DROP TABLE app.orders").await.unwrap();
    caught_up(&replica, &source).await;
    assert_ne!(replica.gtid_executed().await.unwrap(), at_point);

    // The kubelet: a deleted pod's mysqld stops, init swaps, mysqld starts.
    let datadir = replica.datadir().to_owned();
    let replica = Arc::new(tokio::sync::Mutex::new(replica));
    let restarted = Arc::new(Mutex::new(None::<Duration>));
    cluster.on_pod_deleted({
        let (replica, datadir, restarted) = (replica.clone(), datadir.clone(), restarted.clone());
        Arc::new(move |deleted: PodDeleted| {
            let (replica, datadir, restarted) =
                (replica.clone(), datadir.clone(), restarted.clone());
            Box::pin(async move {
                let t0 = Instant::now();
                let mut server = replica.lock().await;
                server.stop().await.unwrap();
                let state = deleted.pods.state_dir(&deleted.pod);
                agent_init(&[
                    format!("--datadir={}", datadir.display()),
                    format!("--state-dir={}", state.display()),
                ])
                .await;
                server.restart().await.unwrap();
                *restarted.lock().unwrap() = Some(t0.elapsed());
                PodFate::Recreate
            })
        })
    });

    let restores = cluster.api::<MySQLRestore>();
    // Whole seconds: what a person writes.
    let time = jiff::Timestamp::from_second(point.as_second()).unwrap();
    restores
        .create(&PostParams::default(), &restore_to(&time.to_string()))
        .await
        .unwrap();
    let restored = wait_for("the restore ends", async || {
        let r = restores.get("undo-the-drop").await.ok()?;
        r.phase().is_terminal().then_some(r)
    })
    .await;
    let status = restored.status.clone().unwrap();
    assert_eq!(restored.phase(), RestorePhase::Completed, "{status:?}");
    let point_status = status.point_in_time.clone().unwrap();
    assert_eq!(point_status.base_backup, "nightly-base");
    assert_eq!(point_status.target, format!("time {time}"));
    assert_eq!(
        point_status.gtid_executed.as_deref(),
        Some(at_point.as_str())
    );
    assert_eq!(status.gtid_executed.as_deref(), Some(at_point.as_str()));

    let server = replica.lock().await;
    assert_eq!(server.gtid_executed().await.unwrap(), at_point);
    assert_eq!(
        server.checksum_tables(&["app.orders"]).await.unwrap(),
        orders_at_point,
        "the dropped table is back as it was at the point"
    );
    // The oracle's reference replica: a fresh replica of A applied up to
    // exactly the point (as agent/tests/pitr.rs judges a point in time).
    let mut tables = bench.table_names();
    tables.push("app.orders".into());
    let table_refs: Vec<&str> = tables.iter().map(String::as_str).collect();
    let reference = ReferenceReplica::start(&source).await.unwrap();
    let expected = reference.stop_at(&at_point, &table_refs).await.unwrap();
    assert_eq!(
        server.checksum_tables(&table_refs).await.unwrap(),
        expected,
        "the restored tables differ from the source's at the point"
    );
    eprintln!(
        "point-in-time restore of 2x10k rows to {time}: {} transactions replayed on backup {}; staging {:.1}s while serving; unavailable {:.1}s; mysqld stop → ready {:.1?}; {:.1?} wall time",
        point_status.transactions_replayed.unwrap_or_default(),
        point_status.base_backup,
        status.staging_seconds.unwrap_or_default(),
        status.unavailability_seconds.unwrap_or_default(),
        restarted.lock().unwrap().unwrap_or_default(),
        started.elapsed(),
    );
}
