//! The test bed itself: a real MySQL 9.7 under sysbench load, the in-process S3
//! server with its SigV4 check and fault injection, and servers that never
//! outlive their test.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use innoxide_testkit::mysql_async::prelude::Queryable;
use innoxide_testkit::{
    Fault, MysqlServer, S3Server, Sysbench, Workload, gtid_count, orphan, pid_is_running,
    sweep_orphans_in,
};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_97_runs_sysbench_load_with_gtids() -> Result<()> {
    let server = MysqlServer::start().await?;
    let version = server.version().await?;
    assert!(version.starts_with("9.7"), "version {version}");
    assert_eq!(
        server.query_scalar::<String>("SELECT @@gtid_mode").await?,
        "ON"
    );
    assert_eq!(server.query_scalar::<i64>("SELECT @@log_bin").await?, 1);

    // The 9.7 client by full path, over the socket.
    let out = server
        .mysql_client()
        .args(["-N", "-e", "SELECT @@version"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("9.7"));

    let sysbench = Sysbench::prepare(&server, 4, 10_000).await?;
    assert_row_counts(&server, &sysbench, 10_000).await?;
    let gtids_before = gtid_count(&server.gtid_executed().await?)?;

    let report = sysbench
        .run_background(4, Duration::from_secs(5))?
        .wait()
        .await?;
    println!("sysbench: {report:?}");

    assert!(report.tps > 0.0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    let gtids_after = gtid_count(&server.gtid_executed().await?)?;
    assert!(
        gtids_after - gtids_before >= report.transactions,
        "gtid_executed grew by {} but sysbench committed {} transactions",
        gtids_after - gtids_before,
        report.transactions
    );
    // oltp_read_write deletes and re-inserts the same id: counts stay.
    assert_row_counts(&server, &sysbench, 10_000).await?;
    Ok(())
}

#[tokio::test]
async fn a_sysbench_run_stopped_early_still_reports() -> Result<()> {
    let server = MysqlServer::start().await?;
    let sysbench = Sysbench::prepare(&server, 1, 1_000)
        .await?
        .workload(Workload::WriteOnly);
    let run = sysbench.run_background(2, Duration::from_secs(600))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = std::time::Instant::now();
    let report = run.stop().await?;
    println!("stopped sysbench: {report:?}");
    // Stopped, not run to its 600 s end (the bound is loose: CI is busy).
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(report.transactions > 0, "{report:?}");
    assert!(report.duration < Duration::from_secs(60), "{report:?}");
    Ok(())
}

async fn assert_row_counts(server: &MysqlServer, sysbench: &Sysbench, rows: u64) -> Result<()> {
    for table in sysbench.table_names() {
        let count: u64 = server
            .query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .await?;
        assert_eq!(count, rows, "rows in {table}");
    }
    Ok(())
}

#[tokio::test]
async fn servers_survive_kill_and_stop_and_start_on_a_copied_datadir() -> Result<()> {
    let mut server = MysqlServer::builder().server_id(7).start().await?;
    let port = server.port();
    server
        .exec(
            "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO app.t VALUES (1, 'one'), (2, 'two'), (3, 'three')",
        )
        .await?;
    let checksums = server.checksum_tables(&["app.t"]).await?;

    // A crash: committed rows come back through crash recovery.
    let pid = server.pid().context("no pid")?;
    server.kill();
    assert!(!pid_is_running(pid as i32));
    server.restart().await?;
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), Some(pid));
    assert_eq!(server.checksum_tables(&["app.t"]).await?, checksums);

    // Root over TCP works too (created at initialize as root@127.0.0.1).
    let mut tcp = innoxide_testkit::mysql_async::Conn::from_url(server.tcp_url()).await?;
    let id: Option<u32> = tcp.query_first("SELECT @@server_id").await?;
    assert_eq!(id, Some(7));
    tcp.disconnect().await?;

    // A clean stop, then a second server on a copy of the datadir, the way a
    // restored backup is started.
    let gtids = server.gtid_executed().await?;
    server.stop().await?;
    assert!(!server.is_running());
    let copy = tempfile::tempdir()?;
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(server.datadir())
        .arg(copy.path().join("data"))
        .status()?;
    assert!(status.success());
    let restored = MysqlServer::builder()
        .existing_datadir(copy.path().join("data"))
        .start()
        .await?;
    assert_eq!(restored.checksum_tables(&["app.t"]).await?, checksums);
    assert_eq!(restored.gtid_executed().await?, gtids);
    drop(restored);
    assert!(
        copy.path().join("data/mysql.ibd").exists(),
        "an existing datadir is not ours to delete"
    );

    server.restart().await?;
    assert_eq!(server.checksum_tables(&["app.t"]).await?, checksums);
    Ok(())
}

#[tokio::test]
async fn builder_options_reach_the_server() -> Result<()> {
    let server = MysqlServer::builder()
        .binlog(false)
        .gtid(false)
        .redo_capacity(16 << 20)
        .buffer_pool(64 << 20)
        .server_id(42)
        .extra("max_connections=77")
        .start()
        .await?;
    let (log_bin, gtid_mode, redo, pool, id, max_conn): (i64, String, u64, u64, u32, u32) = server
        .query_rows(
            "SELECT @@log_bin, @@gtid_mode, @@innodb_redo_log_capacity, \
             @@innodb_buffer_pool_size, @@server_id, @@max_connections",
        )
        .await?
        .pop()
        .context("no row")?;
    assert_eq!(log_bin, 0);
    assert_eq!(gtid_mode, "OFF");
    assert_eq!(redo, 16 << 20);
    assert_eq!(pool, 64 << 20);
    assert_eq!(id, 42);
    assert_eq!(max_conn, 77);
    Ok(())
}

fn s3_client(s3: &S3Server, secret_key: &str) -> Result<AmazonS3> {
    Ok(AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(s3.bucket())
        .with_region(s3.region())
        .with_access_key_id(s3.access_key())
        .with_secret_access_key(secret_key)
        .build()?)
}

/// Bytes that are not all alike, so a misplaced range shows.
fn pattern(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<_>>()
        .into()
}

#[tokio::test]
async fn s3_round_trips_and_checks_signatures() -> Result<()> {
    let s3 = S3Server::start().await?;
    let store = s3_client(&s3, s3.secret_key())?;

    let small = pattern(100_000, 1);
    let key = ObjectPath::from("backups/small.bin");
    store.put(&key, small.clone().into()).await?;
    assert_eq!(store.get(&key).await?.bytes().await?, small);
    assert_eq!(std::fs::read(s3.object_path("backups/small.bin"))?, small);

    // Two parts: 5 MiB (the S3 minimum for all but the last) + 1 MiB.
    let big = pattern(6 << 20, 2);
    let key = ObjectPath::from("backups/big.bin");
    let mut upload = store.put_multipart(&key).await?;
    upload.put_part(big.slice(..5 << 20).into()).await?;
    upload.put_part(big.slice(5 << 20..).into()).await?;
    upload.complete().await?;
    let got = store.get(&key).await?.bytes().await?;
    assert_eq!(got.len(), big.len());
    assert!(
        got == big,
        "multipart object differs from what was uploaded"
    );

    let forged = s3_client(&s3, "not-the-secret-key")?;
    let key = ObjectPath::from("backups/forged.bin");
    let err = forged
        .put(&key, PutPayload::from_static(b"should not land"))
        .await
        .expect_err("a request signed with the wrong secret must be refused");
    println!("refused as expected: {err}");
    assert!(matches!(
        store.head(&key).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert!(!s3.object_path("backups/forged.bin").exists());
    Ok(())
}

#[tokio::test]
async fn s3_faults_are_injected_over_the_socket() -> Result<()> {
    let s3 = S3Server::start().await?;
    let store = s3_client(&s3, s3.secret_key())?;
    let faults = s3.faults();

    // object_store retries 5xx: two SlowDowns cost two retries, not the put.
    faults.slow_down_next(2);
    let key = ObjectPath::from("retry/slow.bin");
    let payload = pattern(10_000, 3);
    store.put(&key, payload.clone().into()).await?;
    assert_eq!(faults.counts().slow_down, 2);
    let log = faults.requests();
    let puts: Vec<_> = log.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 3, "{log:?}");
    assert_eq!(puts[0].fault, Some(Fault::SlowDown));
    assert_eq!(puts[1].fault, Some(Fault::SlowDown));
    assert_eq!(puts[2].fault, None);
    assert_eq!(store.get(&key).await?.bytes().await?, payload);

    // A path rule: 500 for every GET of one key until cleared.
    faults.fail_matching("retry/broken.bin", None);
    store
        .put(&ObjectPath::from("retry/other.bin"), payload.clone().into())
        .await?;
    let no_retries = AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_bucket_name(s3.bucket())
        .with_region(s3.region())
        .with_access_key_id(s3.access_key())
        .with_secret_access_key(s3.secret_key())
        .with_retry(object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        })
        .build()?;
    let err = no_retries
        .put(
            &ObjectPath::from("retry/broken.bin"),
            payload.clone().into(),
        )
        .await
        .expect_err("the path rule answers 500");
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(faults.counts().internal_error, 1);
    faults.clear();

    // A cut mid-part: the client sees a broken connection and retries the part.
    let requests_for = |method: &str, path: &str| {
        faults
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path))
            .count()
    };
    let parts = "/innoxide-test/retry/cut.bin?partNumber=";
    faults.cut_next_upload_part();
    let big = pattern(6 << 20, 4);
    let key = ObjectPath::from("retry/cut.bin");
    let mut upload = store.put_multipart(&key).await?;
    upload.put_part(big.slice(..5 << 20).into()).await?;
    upload.put_part(big.slice(5 << 20..).into()).await?;
    upload.complete().await?;
    assert_eq!(faults.counts().cut_uploads, 1);
    assert_eq!(requests_for("PUT", parts), 3, "two parts and one retry");
    assert!(store.get(&key).await?.bytes().await? == big);

    // A download cut halfway is resumed by object_store's retrying reader.
    let gets = requests_for("GET", "/innoxide-test/retry/cut.bin");
    faults.cut_next_download();
    let got = store.get(&key).await?.bytes().await?;
    assert_eq!(faults.counts().cut_downloads, 1);
    assert_eq!(
        requests_for("GET", "/innoxide-test/retry/cut.bin"),
        gets + 2
    );
    assert!(got == big, "resumed download differs");
    assert_eq!(faults.injected(), 5);
    Ok(())
}

#[test]
fn a_panicking_test_leaves_no_server_behind() -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = MysqlServer::start().await.expect("server starts");
            tx.send((server.pid().unwrap(), server.base_dir().to_path_buf()))
                .unwrap();
            panic!("deliberate panic while a server runs");
        });
    });
    assert!(test.join().is_err(), "the thread should have panicked");
    let (pid, base_dir) = rx.recv().context("the server never started")?;
    assert_eq!(
        kill(Pid::from_raw(pid as i32), None),
        Err(Errno::ESRCH),
        "mysqld {pid} still exists"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "mysqld {pid} left a zombie"
    );
    assert!(!base_dir.exists(), "{} was not removed", base_dir.display());
    Ok(())
}

const ORPHAN_HELPER: &str = "INNOXIDE_TESTBED_ORPHAN_HELPER";

/// Run by `the_sweep_kills_servers_of_dead_test_processes` in a child process:
/// starts a server, says where it is, and dies by SIGKILL (no Drop).
#[tokio::test]
#[ignore = "helper of the_sweep_kills_servers_of_dead_test_processes"]
async fn orphan_helper() {
    if std::env::var_os(ORPHAN_HELPER).is_none() {
        return;
    }
    let server = MysqlServer::start().await.expect("server starts");
    orphan::report_and_die(&[
        server.pid().unwrap().to_string(),
        server.base_dir().display().to_string(),
    ]);
}

#[tokio::test]
async fn the_sweep_kills_servers_of_dead_test_processes() -> Result<()> {
    let runs = tempfile::tempdir()?;
    let out = orphan::run_child("orphan_helper", ORPHAN_HELPER, runs.path()).await?;
    assert_eq!(
        out.status.signal(),
        Some(Signal::SIGKILL as i32),
        "helper: {}\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    let fields = out.fields.context("the helper did not report its server")?;
    let [pid, base_dir] = fields.as_slice() else {
        anyhow::bail!("malformed helper line: {fields:?}");
    };
    let pid: i32 = pid.parse()?;
    let base_dir = PathBuf::from(base_dir);

    // The owner is dead, its mysqld lives on.
    assert!(
        pid_is_running(pid),
        "the orphaned mysqld {pid} should still run"
    );
    let _guard = orphan::KillOnDrop(vec![pid]); // in case an assertion below fails

    let swept = sweep_orphans_in(runs.path())?;
    assert_eq!(swept.len(), 1, "{swept:?}");
    assert_eq!(swept[0].mysqld_pid, Some(pid));
    assert!(swept[0].killed);
    assert!(!pid_is_running(pid), "mysqld {pid} survived the sweep");
    assert!(!base_dir.exists(), "{} was not removed", base_dir.display());
    assert_eq!(std::fs::read_dir(runs.path())?.count(), 0);
    Ok(())
}
