//! Hot full backups of a real MySQL 9.7: what a user relies on is that the
//! backup holds one consistent point (LSNs, binlog, GTIDs agree), that the
//! captured redo is complete, and that the server is left as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use innoxide_agent::backup::{self, BackupOptions, BackupReport, Progress};
use innoxide_agent::innodb::redo::{self, BLOCK_SIZE, BlockState, FILE_HDR_SIZE, FileHeader};
use innoxide_agent::meta::{self, BinlogInfo, Checkpoints};
use innoxide_testkit::{MysqlServer, Sysbench};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

mod support;
use support::{assert_refused_with_nothing_left, server_holds_backup_state};

fn options(server: &MysqlServer, root: &Path) -> BackupOptions {
    support::local_backup_options(server, root)
}

async fn take(options: &BackupOptions) -> Result<BackupReport, backup::Error> {
    backup::run(options, Progress::new(), CancellationToken::new()).await
}

/// Every file the manifest lists has exactly the listed size and SHA-256,
/// computed here independently of the engine.
fn assert_manifest_matches_bytes(dir: &Path) {
    let manifest =
        meta::Manifest::parse(&std::fs::read_to_string(dir.join(meta::MANIFEST)).unwrap()).unwrap();
    assert!(!manifest.files.is_empty());
    for file in &manifest.files {
        let bytes = std::fs::read(dir.join(&file.path)).unwrap();
        assert_eq!(bytes.len() as u64, file.size, "{}", file.path);
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            file.sha256,
            "{}",
            file.path
        );
    }
}

/// The captured redo is contiguous from the start checkpoint's block to the
/// block holding last_lsn: every block valid, numbered for its LSN, full
/// except possibly the last. Returns the number of blocks checked.
fn assert_redo_contiguous(dir: &Path, start_checkpoint: u64, last_lsn: u64) -> u64 {
    let log = std::fs::read(dir.join(meta::LOGFILE)).unwrap();
    let header = FileHeader::parse(&log[..BLOCK_SIZE]).unwrap();
    let first = redo::align_down(start_checkpoint, BLOCK_SIZE as u64);
    assert_eq!(header.start_lsn, first);
    let last_block = redo::align_down(last_lsn, BLOCK_SIZE as u64);
    let mut lsn = first;
    let mut checked = 0;
    while lsn <= last_block {
        let at = FILE_HDR_SIZE + (lsn - first) as usize;
        let block: &[u8; BLOCK_SIZE] = log
            .get(at..at + BLOCK_SIZE)
            .unwrap_or_else(|| panic!("captured log ends before LSN {lsn} (last_lsn {last_lsn})"))
            .try_into()
            .unwrap();
        match redo::classify_block(block, lsn) {
            BlockState::Valid { full: true, .. } => {}
            BlockState::Valid {
                header,
                full: false,
            } if lsn == last_block => {
                assert!(
                    lsn + u64::from(header.data_len) >= last_lsn,
                    "last block too short"
                );
            }
            // A log ending right at a block boundary has a header-only block next.
            BlockState::Valid { .. } if lsn == last_block && last_lsn == lsn + 12 => {}
            other => panic!("block at LSN {lsn} is {other:?}"),
        }
        lsn += BLOCK_SIZE as u64;
        checked += 1;
    }
    checked
}

/// What the seed's files, the manifest and the server say agree.
fn assert_metadata_consistent(report: &BackupReport) {
    let dir = Path::new(&report.location);
    let checkpoints =
        Checkpoints::parse(&std::fs::read_to_string(dir.join(meta::CHECKPOINTS)).unwrap()).unwrap();
    assert!(
        checkpoints.from_lsn <= checkpoints.to_lsn && checkpoints.to_lsn <= checkpoints.last_lsn
    );
    let m = &report.manifest;
    assert_eq!(
        (checkpoints.to_lsn, checkpoints.last_lsn),
        (m.redo.to_lsn, m.redo.last_lsn)
    );
    assert!(m.redo.start_checkpoint_lsn <= m.redo.to_lsn);
    let binlog =
        BinlogInfo::parse(&std::fs::read_to_string(dir.join(meta::BINLOG_INFO)).unwrap()).unwrap();
    assert_eq!(
        (
            binlog.file.as_str(),
            binlog.position,
            binlog.gtid_executed.as_str()
        ),
        (
            m.binlog_file.as_str(),
            m.binlog_position,
            m.gtid_executed.as_str()
        )
    );
    // The copied binlog is exactly the server's file up to the position.
    assert_eq!(
        std::fs::metadata(dir.join(&binlog.file)).unwrap().len(),
        binlog.position
    );
    assert_manifest_matches_bytes(dir);
    assert_redo_contiguous(dir, m.redo.start_checkpoint_lsn, m.redo.last_lsn);
}

fn server_binlog_prefix(server: &MysqlServer, file: &str, len: u64) -> Vec<u8> {
    let bytes = std::fs::read(server.datadir().join(file)).unwrap();
    bytes[..len as usize].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_backup_records_what_the_server_reports() {
    let server = MysqlServer::builder().start().await.unwrap();
    server
        .exec(
            "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(50)); \
               INSERT INTO shop.t VALUES (1, 'one'), (2, 'two')",
        )
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let report = take(&options(&server, &root.path().join("b")))
        .await
        .unwrap();
    assert_metadata_consistent(&report);

    // Idle: the server is still exactly at the backup's point.
    assert_eq!(
        server.binlog_position().await.unwrap(),
        (
            report.manifest.binlog_file.clone(),
            report.manifest.binlog_position
        )
    );
    assert_eq!(
        server.gtid_executed().await.unwrap(),
        report.manifest.gtid_executed
    );
    assert_eq!(
        std::fs::read(Path::new(&report.location).join(&report.manifest.binlog_file)).unwrap(),
        server_binlog_prefix(
            &server,
            &report.manifest.binlog_file,
            report.manifest.binlog_position
        )
    );
    assert!(Path::new(&report.location).join("shop/t.ibd").exists());
    assert_eq!(server_holds_backup_state(&server).await, (false, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_under_write_load_captures_a_contiguous_log() {
    let server = MysqlServer::builder().start().await.unwrap();
    let bench = Sysbench::prepare(&server, 4, 20_000).await.unwrap();
    let load = bench.run_background(4, Duration::from_secs(20)).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let root = tempfile::tempdir().unwrap();
    let report = take(&options(&server, &root.path().join("b")))
        .await
        .unwrap();
    let report_load = load.wait().await.unwrap();
    assert_eq!(report_load.errors, 0);
    assert_metadata_consistent(&report);
    assert_eq!(
        std::fs::read(Path::new(&report.location).join(&report.manifest.binlog_file)).unwrap(),
        server_binlog_prefix(
            &server,
            &report.manifest.binlog_file,
            report.manifest.binlog_position
        )
    );
    // The backup's GTID set is a prefix of what the server executed since.
    let now = server.gtid_executed().await.unwrap();
    let subset: i64 = server
        .query_scalar(&format!(
            "SELECT GTID_SUBSET('{}', '{now}')",
            report.manifest.gtid_executed
        ))
        .await
        .unwrap();
    assert_eq!(subset, 1);
    for table in bench.table_names() {
        let file = format!("{}.ibd", table.replace('.', "/"));
        assert!(
            report.manifest.file(&file).is_some(),
            "{file} missing from the backup"
        );
    }
    assert_eq!(server_holds_backup_state(&server).await, (false, false));
}

/// Writes lots of redo quickly: full-table updates of a padded table.
async fn churn_redo(server: &MysqlServer, stop: Arc<std::sync::atomic::AtomicBool>) -> u64 {
    let mut rounds = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        server
            .exec("UPDATE churn.pad SET v = REPEAT(CHAR(65 + FLOOR(RAND() * 26)), 200)")
            .await
            .unwrap();
        rounds += 1;
    }
    rounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redo_that_wraps_several_times_during_the_backup_is_all_captured() {
    const CAPACITY: u64 = 8 << 20;
    let server = MysqlServer::builder()
        .redo_capacity(CAPACITY)
        .start()
        .await
        .unwrap();
    let bench = Sysbench::prepare(&server, 4, 20_000).await.unwrap();
    server
        .exec("CREATE DATABASE churn; CREATE TABLE churn.pad (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(255)); \
               INSERT INTO churn.pad (v) SELECT REPEAT('x', 200) FROM sbtest.sbtest1 LIMIT 20000")
        .await
        .unwrap();
    let baseline = bench.run(4, Duration::from_secs(8)).await.unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (server_ref, stop) = (&server, stop.clone());
        async move { churn_redo(server_ref, stop).await }
    };
    let load = bench.run_background(4, Duration::from_secs(60)).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut opts = options(&server, &root.path().join("b"));
    // Slow the copy down so that the log wraps during it.
    opts.throttle = Some(8 << 20);
    let backup = async {
        let started = Instant::now();
        let report = take(&opts).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (report, started.elapsed())
    };
    let ((report, took), rounds) = tokio::join!(backup, churn);
    let during = load.stop().await.unwrap();
    let report = report.unwrap();
    let captured = report.manifest.redo.last_lsn - report.manifest.redo.start_checkpoint_lsn;
    eprintln!(
        "wrap test: backup took {took:?}, captured {captured} bytes of redo ({:.1}× the capacity), \
         {rounds} churn rounds; sysbench TPS without backup {:.1}, during backup {:.1}",
        captured as f64 / CAPACITY as f64,
        baseline.tps,
        during.tps
    );
    assert!(
        captured > 3 * CAPACITY,
        "the log did not wrap 3 times: {captured} bytes"
    );
    // The server cannot recycle log a registered consumer has not released,
    // so a log that wrapped three times while ours was registered proves it
    // was advanced as the copy went. Whether the server ever had to wait for
    // it depends on the machine's speed: that is measured by `make bench`
    // (the stall count there), and only reported here.
    let log = std::fs::read_to_string(server.error_log()).unwrap();
    let stalls = log.lines().filter(|l| l.contains("'MEB' consumer")).count();
    eprintln!("wrap test: the server logged {stalls} waits for the backup's redo consumer");
    assert_metadata_consistent(&report);
    assert_eq!(during.errors, 0);
    assert_eq!(server_holds_backup_state(&server).await, (false, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ddl_during_the_backup_waits_and_then_completes() {
    let server = MysqlServer::builder().start().await.unwrap();
    Sysbench::prepare(&server, 2, 20_000).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut opts = options(&server, &root.path().join("b"));
    opts.throttle = Some(6 << 20); // ≈ 10 s for the ~60 MB of files
    let backup = tokio::spawn(async move { take(&opts).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ddl = {
        let conn = server.conn().await.unwrap();
        tokio::spawn(async move {
            let mut conn = conn;
            mysql_async::prelude::Queryable::query_drop(
                &mut conn,
                "ALTER TABLE sbtest.sbtest1 ADD COLUMN added INT",
            )
            .await
        })
    };
    // The ALTER is seen waiting for the backup lock while the backup copies:
    // asked of the server, not inferred from timings.
    let waiting = async {
        loop {
            let n: u64 = server
                .query_scalar(
                    "SELECT COUNT(*) FROM performance_schema.processlist \
                     WHERE INFO LIKE 'ALTER TABLE sbtest.sbtest1%' AND STATE = 'Waiting for backup lock'",
                )
                .await
                .unwrap();
            if n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the ALTER never waited for the backup lock");
    assert!(
        !backup.is_finished(),
        "the backup ended before the ALTER was seen waiting"
    );
    let report = backup.await.unwrap().unwrap();
    ddl.await.unwrap().unwrap();
    let columns: u64 = server
        .query_scalar("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_NAME = 'sbtest1' AND COLUMN_NAME = 'added'")
        .await
        .unwrap();
    assert_eq!(columns, 1);
    assert!(Path::new(&report.location).join(meta::MANIFEST).exists());
    assert!(
        report.manifest.lock_seconds > 0.0,
        "the backup reports no time under the lock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_backup_releases_the_server_and_leaves_no_backup() {
    let server = MysqlServer::builder().start().await.unwrap();
    Sysbench::prepare(&server, 2, 20_000).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut opts = options(&server, &root.path().join("b"));
    opts.throttle = Some(4 << 20);
    let cancel = CancellationToken::new();
    let run = {
        let (opts, cancel) = (opts.clone(), cancel.clone());
        tokio::spawn(async move { backup::run(&opts, Progress::new(), cancel).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        server_holds_backup_state(&server).await,
        (true, true),
        "mid-backup"
    );
    cancel.cancel();
    let err = run.await.unwrap().unwrap_err();
    assert!(matches!(err, backup::Error::Cancelled), "{err}");
    assert_eq!(server_holds_backup_state(&server).await, (false, false));
    assert!(
        !Path::new(&opts.repository).exists(),
        "a cancelled backup left {}",
        opts.repository
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_that_fails_releases_the_server() {
    let server = MysqlServer::builder().start().await.unwrap();
    Sysbench::prepare(&server, 2, 20_000).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    // The target exists and is not empty: refused before anything is held.
    let target = root.path().join("b");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("keep-me"), "user data").unwrap();
    let err = take(&options(&server, &target)).await.unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(target.join("keep-me")).unwrap(),
        "user data"
    );

    // A tablespace that turns out damaged mid-copy: the copy fails and the
    // server is released. (A file the server does not write is corrupted
    // on disk; the engine re-reads it and then gives up.)
    server
        .exec("CREATE DATABASE cold; CREATE TABLE cold.t (id INT PRIMARY KEY) ; INSERT INTO cold.t VALUES (1)")
        .await
        .unwrap();
    server.exec("FLUSH TABLES cold.t FOR EXPORT").await.unwrap();
    corrupt_page(&server.datadir().join("cold/t.ibd"), 3);
    server.exec("UNLOCK TABLES").await.unwrap();
    let err = take(&options(&server, &root.path().join("c")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cold/t.ibd"), "{err}");
    assert!(err.to_string().contains("page 3"), "{err}");
    assert_eq!(server_holds_backup_state(&server).await, (false, false));
    assert!(!root.path().join("c").exists());
}

/// Flips a byte in the middle of page `page_no`.
fn corrupt_page(path: &Path, page_no: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let at = page_no * 16384 + 8000;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, at).unwrap();
    byte[0] ^= 0x40;
    file.write_all_at(&byte, at).unwrap();
    file.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_of_the_cli_releases_the_server_and_leaves_no_backup() {
    let server = MysqlServer::builder().start().await.unwrap();
    Sysbench::prepare(&server, 2, 20_000).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let target: PathBuf = root.path().join("b");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_innoxide-agent"))
        .args(["backup", "--user=root", "--no-timestamp", "--throttle=4M"])
        .arg(format!("--socket={}", server.socket().display()))
        .arg(&target)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        server_holds_backup_state(&server).await,
        (true, true),
        "mid-backup"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    assert_eq!(server_holds_backup_state(&server).await, (false, false));
    assert!(!target.join(meta::MANIFEST).exists());
    assert!(!target.exists(), "the partial backup was left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_server_mid_backup_fails_clearly_with_no_manifest() {
    let mut server = MysqlServer::builder().start().await.unwrap();
    let bench = Sysbench::prepare(&server, 2, 20_000).await.unwrap();
    let load = bench.run_background(2, Duration::from_secs(30)).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut opts = options(&server, &root.path().join("b"));
    opts.throttle = Some(4 << 20);
    let run = {
        let opts = opts.clone();
        tokio::spawn(async move { take(&opts).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.kill();
    let _ = load.stop().await;
    let err = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the backup noticed the dead server within a minute")
        .unwrap()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("MySQL") || text.contains("redo") || text.contains("connect"),
        "not a clear error: {text}"
    );
    assert!(!Path::new(&opts.repository).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redo_logging_disabled_is_refused_with_nothing_left_behind() {
    let server = MysqlServer::builder().start().await.unwrap();
    Sysbench::prepare(&server, 1, 5_000).await.unwrap();
    server
        .exec("ALTER INSTANCE DISABLE INNODB REDO_LOG")
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("b");
    let err = take(&options(&server, &target)).await.unwrap_err();
    assert!(
        err.to_string().contains("redo logging is disabled"),
        "not the reason: {err}"
    );
    assert_refused_with_nothing_left(&server, &target).await;

    // With redo logging back on, the same backup is taken.
    server
        .exec("ALTER INSTANCE ENABLE INNODB REDO_LOG")
        .await
        .unwrap();
    let report = take(&options(&server, &target)).await.unwrap();
    assert_metadata_consistent(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redo_consumer_held_by_another_tool_is_refused_and_left_alone() {
    let server = MysqlServer::builder().start().await.unwrap();
    Sysbench::prepare(&server, 1, 5_000).await.unwrap();
    // Another tool (here: another session) holds the server's one consumer.
    let mut other = server.conn().await.unwrap();
    innoxide_agent::mysql::register_redo_consumer(&mut other)
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("b");
    let err = take(&options(&server, &target)).await.unwrap_err();
    assert!(
        err.to_string().contains("another redo log consumer"),
        "not the reason: {err}"
    );
    assert!(
        !target.exists(),
        "a refused backup left {}",
        target.display()
    );
    let locks: u64 = server
        .query_scalar(
            "SELECT COUNT(*) FROM performance_schema.metadata_locks WHERE OBJECT_TYPE = 'BACKUP LOCK'",
        )
        .await
        .unwrap();
    assert_eq!(locks, 0, "the refused backup kept its backup lock");
    // The other tool's registration is untouched.
    let probe = innoxide_agent::mysql::redo_consumer_registered(&mut server.conn().await.unwrap())
        .await
        .unwrap();
    assert!(probe, "the other tool's consumer was unregistered");
    innoxide_agent::mysql::unregister_redo_consumer(&mut other)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_consumer_advance_unregisters_the_consumer() {
    use innoxide_agent::backup::consumer;
    use innoxide_agent::mysql;
    let server = MysqlServer::builder().start().await.unwrap();
    let mut conn = server.conn().await.unwrap();
    mysql::register_redo_consumer(&mut conn).await.unwrap();
    // The server refuses to move a consumer backwards (it answers 1): push
    // it far ahead first, so the next ordinary advance fails for real.
    mysql::advance_redo_consumer(&mut conn, 1 << 50)
        .await
        .unwrap();
    let conn = Arc::new(tokio::sync::Mutex::new(conn));
    let (durable, watched) = tokio::sync::watch::channel(0u64);
    let advancer = tokio::spawn(consumer::advance_while_durable(conn.clone(), watched));
    durable.send(1 << 20).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), advancer)
        .await
        .expect("the advancer stopped at its failure")
        .unwrap();
    assert!(outcome.is_err(), "the advance should have failed");
    // Its session is still open, and yet the server has no consumer to wait
    // for: the failure unregistered it.
    assert!(
        mysql_async::prelude::Queryable::ping(&mut *conn.lock().await)
            .await
            .is_ok(),
        "the consumer's session was closed, which would hide what the test is about"
    );
    let registered = mysql::redo_consumer_registered(&mut server.conn().await.unwrap())
        .await
        .unwrap();
    assert!(!registered, "a failed advance left the consumer registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_privilege_is_refused_before_anything_is_copied() {
    let server = MysqlServer::builder().start().await.unwrap();
    Sysbench::prepare(&server, 1, 5_000).await.unwrap();
    // Everything a backup needs but RELOAD (for FLUSH … LOGS at the point).
    server
        .exec(
            "CREATE USER 'halfbak'@'localhost' IDENTIFIED BY 'Half-bak-1'; \
             GRANT SELECT, LOCK TABLES, PROCESS, REPLICATION CLIENT, BACKUP_ADMIN ON *.* TO 'halfbak'@'localhost'",
        )
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("b");
    let mut opts = options(&server, &target);
    opts.connect.user = Some("halfbak".into());
    opts.connect.password = Some(innoxide_agent::secret::Secret::new("Half-bak-1"));
    let started = Instant::now();
    let err = take(&opts).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("RELOAD"),
        "the refusal does not name RELOAD: {text}"
    );
    assert!(!text.contains("Half-bak-1"), "the password leaked: {text}");
    assert_refused_with_nothing_left(&server, &target).await;
    println!("refused after {:.2?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_that_holds_a_myisam_table_makes_the_backup_give_up_cleanly() {
    let server = MysqlServer::builder().start().await.unwrap();
    server
        .exec(
            "CREATE DATABASE m; CREATE TABLE m.t (id INT PRIMARY KEY) ENGINE=MyISAM; \
             INSERT INTO m.t VALUES (1)",
        )
        .await
        .unwrap();
    // Another session write-locks the table and keeps it.
    let mut holder = server.conn().await.unwrap();
    mysql_async::prelude::Queryable::query_drop(&mut holder, "LOCK TABLES m.t WRITE")
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("b");
    let mut opts = options(&server, &target);
    opts.locks.writers_wait_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = take(&opts).await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, backup::Error::Busy(_)), "{err}");
    assert!(
        err.to_string().contains("m.t"),
        "the table is not named: {err}"
    );
    assert!(waited < Duration::from_secs(30), "gave up after {waited:?}");
    assert_refused_with_nothing_left(&server, &target).await;
    // Nothing queued behind the holder: other sessions still read the table.
    let rows: u64 = server
        .query_scalar("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'm'")
        .await
        .unwrap();
    assert_eq!(rows, 1);
    mysql_async::prelude::Queryable::query_drop(&mut holder, "UNLOCK TABLES")
        .await
        .unwrap();
    // Once it lets go, the backup is taken.
    take(&opts).await.unwrap();
}

/// `--lock-ddl=reduced` lets DDL run during the copy, but a table created
/// during it is a file the copy may have missed: the backup is refused,
/// naming the tablespace, with nothing left behind; the table itself is
/// created at once, not after the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_reduced_ddl_lock_a_table_created_during_the_copy_refuses_the_backup() {
    let server = MysqlServer::builder().start().await.unwrap();
    Sysbench::prepare(&server, 2, 10_000).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("b");
    let mut opts = options(&server, &target);
    opts.throttle = Some(8 << 20);
    opts.locks.reduced_ddl_lock = true;
    let backup = tokio::spawn(async move { take(&opts).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    server
        .exec("CREATE TABLE sbtest.during (id INT PRIMARY KEY, v VARCHAR(20))")
        .await
        .unwrap();
    let ddl_took = started.elapsed();
    assert!(
        !backup.is_finished(),
        "the backup ended before the CREATE: the test proves nothing"
    );
    assert!(
        ddl_took < Duration::from_secs(5),
        "the CREATE waited {ddl_took:?}: the copy held the backup lock"
    );
    let err = backup.await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains("(./sbtest/during.ibd) was created at LSN")
            && err.contains("--lock-ddl=reduced")
            && err.contains("no backup was written"),
        "not the reason: {err}"
    );
    assert_refused_with_nothing_left(&server, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slave_info_of_a_replica_applying_out_of_order_is_refused_up_front() {
    let server = MysqlServer::builder().gtid(false).start().await.unwrap();
    // A positional channel whose parallel applier may leave gaps.
    server
        .exec(
            "SET GLOBAL replica_preserve_commit_order = OFF; \
             CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=1, \
             SOURCE_LOG_FILE='binlog.000001', SOURCE_LOG_POS=4",
        )
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("b");
    let mut opts = options(&server, &target);
    opts.slave_info = true;
    let err = take(&opts).await.unwrap_err();
    assert!(
        err.to_string().contains("replica_preserve_commit_order"),
        "not the reason: {err}"
    );
    assert_refused_with_nothing_left(&server, &target).await;
    // In commit order, the same backup is taken.
    server
        .exec("SET GLOBAL replica_preserve_commit_order = ON")
        .await
        .unwrap();
    take(&opts).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encrypted_table_is_refused_up_front_by_name_with_nothing_left() {
    let server = MysqlServer::builder()
        .keyring_file_component()
        .start()
        .await
        .unwrap();
    let keyring: String = server
        .query_scalar(
            "SELECT STATUS_VALUE FROM performance_schema.keyring_component_status \
             WHERE STATUS_KEY = 'Component_status'",
        )
        .await
        .unwrap();
    assert_eq!(keyring, "Active");
    server
        .exec(
            "CREATE DATABASE vault; \
             CREATE TABLE vault.secrets (id INT PRIMARY KEY, note TEXT) ENCRYPTION='Y'; \
             INSERT INTO vault.secrets VALUES (1, 'only with the keyring')",
        )
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("b");
    let started = Instant::now();
    let err = take(&options(&server, &target)).await.unwrap_err();
    assert!(matches!(err, backup::Error::Unsupported(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("vault/secrets.ibd") && text.contains("keyring"),
        "the refusal does not name the table and the reason: {text}"
    );
    assert_refused_with_nothing_left(&server, &target).await;
    println!("refused after {:.2?}: {text}", started.elapsed());
    // Decrypted, the same backup is taken.
    server
        .exec("ALTER TABLE vault.secrets ENCRYPTION='N'")
        .await
        .unwrap();
    take(&options(&server, &target)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redo_log_archiving_held_by_another_tool_is_refused_and_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    // mysqld wants the archive folders private (0700), outside its own.
    let archive = tempfile::tempdir().unwrap();
    let sub = archive.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
    let server = MysqlServer::builder()
        .extra(format!(
            "innodb_redo_log_archive_dirs=other:{}",
            archive.path().display()
        ))
        .start()
        .await
        .unwrap();
    let mut other = server.conn().await.unwrap();
    mysql_async::prelude::Queryable::query_drop(
        &mut other,
        "DO innodb_redo_log_archive_start('other', 'sub')",
    )
    .await
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("b");
    let err = take(&options(&server, &target)).await.unwrap_err();
    assert!(
        err.to_string().contains("redo log archiving is running"),
        "not the reason: {err}"
    );
    assert_refused_with_nothing_left(&server, &target).await;
    // The other tool's archive still runs, untouched.
    mysql_async::prelude::Queryable::query_drop(&mut other, "DO innodb_redo_log_archive_flush()")
        .await
        .unwrap();
    mysql_async::prelude::Queryable::query_drop(&mut other, "DO innodb_redo_log_archive_stop()")
        .await
        .unwrap();
    take(&options(&server, &target)).await.unwrap();
}

/// What adaptive pacing watches: prepared statements (how most drivers and
/// sysbench send writes) count as the server's work, and a client waiting
/// in a statement is seen in flight (a stalled server is not an idle one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pacing_signal_counts_prepared_writes_and_a_client_that_waits() {
    use innoxide_agent::backup::pacing::statement_totals;
    use mysql_async::prelude::Queryable;
    let server = MysqlServer::builder().start().await.unwrap();
    server
        .exec("CREATE DATABASE p; CREATE TABLE p.t (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
        .await
        .unwrap();
    let mut watcher = mysql_async::Conn::new(server.opts()).await.unwrap();
    let before = statement_totals(&mut watcher).await.unwrap();
    let mut client = mysql_async::Conn::new(server.opts()).await.unwrap();
    for v in 0..50 {
        client
            .exec_drop("INSERT INTO p.t (v) VALUES (?)", (v,))
            .await
            .unwrap();
    }
    // (Sampled until the summary shows them: once, in a loaded run of this
    // whole file, the first sample fell short; why was not found.)
    let mut after = statement_totals(&mut watcher).await.unwrap();
    for _ in 0..20 {
        if after.count >= before.count + 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = statement_totals(&mut watcher).await.unwrap();
    }
    assert!(
        after.count >= before.count + 50,
        "{before:?} then {after:?}"
    );
    assert!(after.wait_ps > before.wait_ps, "{before:?} then {after:?}");
    assert_eq!(after.in_flight, 0, "nobody is waiting: {after:?}");

    let mut sleeper = mysql_async::Conn::new(server.opts()).await.unwrap();
    let sleeping = tokio::spawn(async move { sleeper.query_drop("SELECT SLEEP(3)").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let waiting = statement_totals(&mut watcher).await.unwrap();
    assert_eq!(waiting.in_flight, 1, "{waiting:?}");
    sleeping.await.unwrap().unwrap();

    // The agent's own sessions are not the server's load: a backup of an
    // idle server advances its redo consumer every 50 ms and holds
    // statements of its own running, and must still see an idle server.
    let agent = innoxide_agent::mysql::ConnectOptions {
        socket: Some(server.socket().to_owned()),
        user: Some("root".into()),
        ..Default::default()
    };
    let mut consumer = innoxide_agent::mysql::connect(&agent).await.unwrap();
    let mut own_sleeper = innoxide_agent::mysql::connect(&agent).await.unwrap();
    let own_sleep = tokio::spawn(async move { own_sleeper.query_drop("SELECT SLEEP(2)").await });
    let quiet = statement_totals(&mut watcher).await.unwrap();
    innoxide_agent::mysql::register_redo_consumer(&mut consumer)
        .await
        .unwrap();
    for _ in 0..10 {
        let lsn: u64 = consumer
            .query_first(
                "SELECT VARIABLE_VALUE FROM performance_schema.global_status \
                          WHERE VARIABLE_NAME = 'Innodb_redo_log_current_lsn'",
            )
            .await
            .unwrap()
            .map(|v: String| v.parse().unwrap())
            .unwrap();
        innoxide_agent::mysql::advance_redo_consumer(&mut consumer, lsn)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still_quiet = statement_totals(&mut watcher).await.unwrap();
    assert_eq!(
        (still_quiet.count, still_quiet.in_flight),
        (quiet.count, 0),
        "the agent's own sessions counted as load: {quiet:?} then {still_quiet:?}"
    );
    own_sleep.await.unwrap().unwrap();
    innoxide_agent::mysql::unregister_redo_consumer(&mut consumer)
        .await
        .unwrap();
}
