//! apply-log and copy-back against a real MySQL 9.7: a backup taken under
//! write load, prepared by the server's own mysqld, copied into a fresh
//! datadir and started, must be exactly the source at the backup's GTID set
//! (the consistency oracle), including around uncommitted and prepared XA
//! transactions; and a failed or refused step must leave the raw backup as
//! it was.

mod support;
use support::{agent, text};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use innoxide_agent::meta::{FileKind, Manifest};
use innoxide_agent::prepare::{self, ApplyLogOptions, ApplyLogReport};
use innoxide_agent::restore::{self, CopyBackOptions, CopyBackReport};
use innoxide_testkit::oracle::{self, OracleInput, Verdict};
use innoxide_testkit::{MysqlServer, Sysbench, mysql_prefix};
use tokio_util::sync::CancellationToken;

const AGENT: &str = env!("CARGO_BIN_EXE_innoxide-agent");

/// Prints how long each step of a test took (seen with `--nocapture`).
struct Steps {
    test: &'static str,
    started: Instant,
    last: Instant,
}

impl Steps {
    fn new(test: &'static str) -> Self {
        let now = Instant::now();
        Self {
            test,
            started: now,
            last: now,
        }
    }

    fn done(&mut self, step: &str) {
        let now = Instant::now();
        println!(
            "[{}] {step}: {:.1?} (total {:.1?})",
            self.test,
            now - self.last,
            now - self.started
        );
        self.last = now;
    }
}

fn mysqld() -> PathBuf {
    mysql_prefix().unwrap().join("bin/mysqld")
}

/// A hot backup with the CLI, as root over the socket, into `dir`.
async fn backup(server: &MysqlServer, dir: &Path) -> Manifest {
    backup_with(server, dir, &[]).await
}

/// [`backup`] with more arguments.
async fn backup_with(server: &MysqlServer, dir: &Path, extra: &[&str]) -> Manifest {
    let socket = server.socket().display().to_string();
    let dir_arg = dir.display().to_string();
    let mut args = vec![
        "backup",
        "--socket",
        &socket,
        "--user",
        "root",
        "--no-timestamp",
        "--backup-dir",
        &dir_arg,
    ];
    args.extend_from_slice(extra);
    let out = agent(&args).await;
    assert!(
        out.status.success(),
        "backup failed:\n{}",
        text(&out.stderr)
    );
    innoxide_agent::verify::read_manifest(dir).unwrap()
}

async fn apply_log(dir: &Path) -> ApplyLogReport {
    let options = ApplyLogOptions {
        key: None,
        backup_dir: dir.to_owned(),
        mysqld: Some(mysqld()),
        force: false,
        buffer_pool: 128 << 20,
    };
    prepare::apply_log(&options, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("apply-log failed: {e}"))
}

fn copy_back_options(dir: &Path, datadir: &Path) -> CopyBackOptions {
    CopyBackOptions {
        backup_dir: dir.to_owned(),
        datadir: datadir.to_owned(),
        force_non_empty: false,
        new_server_uuid: true,
        move_files: false,
        layout: Default::default(),
        parallel: 4,
    }
}

async fn copy_back(dir: &Path, datadir: &Path) -> CopyBackReport {
    restore::copy_back(&copy_back_options(dir, datadir))
        .await
        .unwrap_or_else(|e| panic!("copy-back failed: {e}"))
}

/// apply-log proved recovery ran from the backup's start checkpoint to
/// exactly its last_lsn, and left the raw backup verifying.
fn assert_prepared_exactly(dir: &Path, manifest: &Manifest, report: &ApplyLogReport) {
    let proof = report.recovery.as_ref().expect("a recovery ran");
    assert_eq!(proof.checkpoint_lsn, manifest.redo.start_checkpoint_lsn);
    assert_eq!(proof.scanned_to_lsn, manifest.redo.last_lsn);
    assert!(proof.backup_creator_recognised);
    assert!(prepare::is_prepared(&dir.join("prepared")).unwrap());
    assert!(!dir.join("prepared.partial").exists());
    innoxide_agent::verify::verify_dir(dir).expect("the raw backup still matches its manifest");
}

/// The restored datadir started as a server of its own.
async fn start_restored(datadir: &Path) -> MysqlServer {
    MysqlServer::builder()
        .server_id(2)
        .existing_datadir(datadir)
        .start()
        .await
        .unwrap()
}

async fn judge(
    source: &MysqlServer,
    restored: &MysqlServer,
    manifest: &Manifest,
    tables: &[String],
) -> Verdict {
    let verdict = oracle::check(OracleInput {
        source,
        restored,
        backup_gtid_set: &manifest.gtid_executed,
        tables,
    })
    .await
    .unwrap();
    println!("{verdict}");
    assert!(verdict.passed(), "{verdict}");
    verdict
}

/// mysqld processes (anyone's) started with an option file inside `dir`.
fn mysqld_running_in(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("mysqld") && cmdline.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_of_a_backup_under_load_is_exactly_the_backup_point() {
    let mut steps = Steps::new("under load");
    let source = MysqlServer::builder()
        .redo_capacity(32 << 20)
        .start()
        .await
        .unwrap();
    let bench = Sysbench::prepare(&source, 4, 10_000).await.unwrap();
    steps.done("source with 4 x 10k rows");
    let load = bench.run_background(4, Duration::from_secs(12)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backup");
    let manifest = backup(&source, &dir).await;
    steps.done("backup under 4-thread sysbench load");
    let report = load.wait().await.unwrap();
    assert!(report.transactions > 0, "the load ran: {report:?}");
    steps.done("rest of the load");

    let prepared = apply_log(&dir).await;
    assert_prepared_exactly(&dir, &manifest, &prepared);
    steps.done("apply-log");
    let datadir = work.path().join("restored");
    let restored_files = copy_back(&dir, &datadir).await;
    steps.done("copy-back");
    assert!(restored_files.files > 0);
    assert!(
        !datadir.join("auto.cnf").exists(),
        "--new-server-uuid drops auto.cnf"
    );
    let restored = start_restored(&datadir).await;
    steps.done("restored server started");
    let source_uuid: String = source.query_scalar("SELECT @@server_uuid").await.unwrap();
    let restored_uuid: String = restored.query_scalar("SELECT @@server_uuid").await.unwrap();
    assert_ne!(restored_uuid, source_uuid);

    let verdict = judge(&source, &restored, &manifest, &bench.table_names()).await;
    assert!(verdict.backup_transactions > 0);
    steps.done("oracle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_uncommitted_transaction_is_not_restored() {
    let mut steps = Steps::new("uncommitted");
    let source = MysqlServer::builder().start().await.unwrap();
    let bench = Sysbench::prepare(&source, 4, 10_000).await.unwrap();
    source
        .exec("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, note VARCHAR(100))")
        .await
        .unwrap();
    // A long transaction, open across the whole backup: thousands of rows
    // in its own table and in sysbench's (ids sysbench never touches, read
    // without locks, so the load is not blocked), written to redo well
    // before the consistent point, committed only afterwards.
    let mut open = source.conn().await.unwrap();
    use mysql_async::prelude::Queryable;
    for statement in [
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET SESSION cte_max_recursion_depth = 10000",
        "BEGIN",
        "INSERT INTO shop.orders WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
         SELECT i, REPEAT('x', 100) FROM n",
        "INSERT INTO sbtest.sbtest1 (id, k, c, pad) SELECT id + 100000, k, c, pad FROM sbtest.sbtest1 WHERE id <= 3000",
    ] {
        open.query_drop(statement).await.unwrap();
    }
    let load = bench.run_background(4, Duration::from_secs(10)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backup");
    let manifest = backup(&source, &dir).await;
    steps.done("source, open transaction, backup under load");
    load.wait().await.unwrap();
    open.query_drop("COMMIT").await.unwrap();
    drop(open);

    let prepared = apply_log(&dir).await;
    assert_prepared_exactly(&dir, &manifest, &prepared);
    steps.done("rest of the load, apply-log");
    let log = std::fs::read_to_string(dir.join("prepared/mysql-stderr")).unwrap();
    let rollback: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("roll"))
        .collect();
    println!(
        "the mini instance on the open transaction:\n{}",
        rollback.join("\n")
    );
    assert!(
        log.contains("rolling back") || log.contains("Rolling back") || log.contains("to undo"),
        "the mini instance rolled the open transaction back:\n{log}"
    );
    let datadir = work.path().join("restored");
    copy_back(&dir, &datadir).await;
    let restored = start_restored(&datadir).await;
    let rows: u64 = restored
        .query_scalar("SELECT COUNT(*) FROM shop.orders")
        .await
        .unwrap();
    assert_eq!(rows, 0, "the uncommitted inserts are not in the restore");
    let copied: u64 = restored
        .query_scalar("SELECT COUNT(*) FROM sbtest.sbtest1 WHERE id > 100000")
        .await
        .unwrap();
    assert_eq!(
        copied, 0,
        "the uncommitted rows in sysbench's table are not in the restore"
    );
    let trx: u64 = restored
        .query_scalar("SELECT COUNT(*) FROM information_schema.INNODB_TRX")
        .await
        .unwrap();
    assert_eq!(
        trx, 0,
        "nothing is left to roll back at the restored server's start"
    );

    let mut tables = bench.table_names();
    tables.push("shop.orders".into());
    steps.done("copy-back, restored server started");
    judge(&source, &restored, &manifest, &tables).await;
    steps.done("oracle");
    let after: u64 = restored
        .query_scalar("SELECT COUNT(*) FROM shop.orders")
        .await
        .unwrap();
    assert_eq!(after, 5000, "the commit after the backup replicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_xa_transaction_prepared_at_the_backup_point_comes_back_prepared() {
    use mysql_async::prelude::Queryable;
    let mut steps = Steps::new("xa");
    let source = MysqlServer::builder().start().await.unwrap();
    let bench = Sysbench::prepare(&source, 4, 10_000).await.unwrap();
    source
        .exec("CREATE DATABASE shop; CREATE TABLE shop.payments (id INT PRIMARY KEY, amount INT)")
        .await
        .unwrap();
    let mut xa = source.conn().await.unwrap();
    for statement in [
        "XA START 'pay-42'",
        "INSERT INTO shop.payments VALUES (1, 100), (2, 200), (3, 300)",
        // A row sysbench never touches: the load is not blocked on its lock.
        "INSERT INTO sbtest.sbtest2 (id, k, c, pad) VALUES (100001, 42, 'xa', 'xa')",
        "XA END 'pay-42'",
        "XA PREPARE 'pay-42'",
    ] {
        xa.query_drop(statement).await.unwrap();
    }
    drop(xa); // a prepared XA transaction outlives its session
    let load = bench.run_background(4, Duration::from_secs(10)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backup");
    let manifest = backup(&source, &dir).await;
    steps.done("source, XA PREPARE, backup under load");
    load.wait().await.unwrap();
    // Decided only after the backup point.
    source.exec("XA COMMIT 'pay-42'").await.unwrap();

    let prepared = apply_log(&dir).await;
    assert_prepared_exactly(&dir, &manifest, &prepared);
    steps.done("rest of the load, apply-log");
    assert_eq!(prepared.prepared_xa, vec!["pay-42".to_string()]);
    let datadir = work.path().join("restored");
    copy_back(&dir, &datadir).await;
    let restored = start_restored(&datadir).await;
    let recovered: Vec<mysql_async::Row> = restored.query_rows("XA RECOVER").await.unwrap();
    let xids: Vec<String> = recovered
        .into_iter()
        .map(|row| String::from_utf8_lossy(&row.get::<Vec<u8>, _>("data").unwrap()).into_owned())
        .collect();
    assert_eq!(
        xids,
        ["pay-42"],
        "the XA transaction is still PREPARED on the restore"
    );
    let visible: u64 = restored
        .query_scalar("SELECT COUNT(*) FROM shop.payments")
        .await
        .unwrap();
    assert_eq!(visible, 0, "a prepared transaction's rows are not visible");

    let mut tables = bench.table_names();
    tables.push("shop.payments".into());
    steps.done("copy-back, restored server started");
    judge(&source, &restored, &manifest, &tables).await;
    steps.done("oracle");
    let recovered: Vec<mysql_async::Row> = restored.query_rows("XA RECOVER").await.unwrap();
    assert!(
        recovered.is_empty(),
        "the XA COMMIT replicated from the source"
    );
    let committed: u64 = restored
        .query_scalar("SELECT COUNT(*) FROM shop.payments")
        .await
        .unwrap();
    assert_eq!(committed, 3);
    let xa_row: u64 = restored
        .query_scalar("SELECT COUNT(*) FROM sbtest.sbtest2 WHERE id = 100001")
        .await
        .unwrap();
    assert_eq!(xa_row, 1);
}

/// A backup of a small database without load, for the stories that are
/// about files and refusals rather than consistency.
async fn small_backup(work: &Path) -> (MysqlServer, PathBuf, Manifest) {
    let source = MysqlServer::builder().start().await.unwrap();
    Sysbench::prepare(&source, 2, 5_000).await.unwrap();
    let dir = work.join("backup");
    let manifest = backup(&source, &dir).await;
    (source, dir, manifest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_apply_log_leaves_the_backup_intact_and_a_retry_needs_force() {
    let mut steps = Steps::new("failed then retried");
    let work = tempfile::tempdir().unwrap();
    let (source, dir, manifest) = small_backup(work.path()).await;
    let dir_arg = dir.display().to_string();
    let real = mysqld();

    // A mysqld that is killed (SIGKILL) during its startup, as soon as it
    // has found the checkpoint to recover from.
    let crashing = work.path().join("crashing-mysqld");
    std::fs::write(
        &crashing,
        format!(
            "#!/bin/sh\n\
             case \"$1\" in --version|--no-defaults) exec '{real}' \"$@\";; esac\n\
             log=\"$(dirname \"${{1#--defaults-file=}}\")/mysql-stderr\"\n\
             '{real}' \"$@\" & pid=$!\n\
             for i in $(seq 3000); do grep -q 'latest found checkpoint' \"$log\" && break; sleep 0.01; done\n\
             kill -9 $pid\nwait $pid\nexit 137\n",
            real = real.display()
        ),
    )
    .unwrap();
    set_executable(&crashing);
    let out = agent(&[
        "apply-log",
        "--backup-dir",
        &dir_arg,
        "--mysqld",
        &crashing.display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("exited during startup"),
        "{}",
        text(&out.stderr)
    );
    let partial = dir.join("prepared.partial");
    assert!(
        partial.join("mysql-stderr").is_file(),
        "the failed attempt's error log is kept"
    );
    assert!(!dir.join("prepared").exists());
    innoxide_agent::verify::verify_dir(&dir).expect("the raw backup is byte-identical");

    // A rerun refuses, and says how to go on.
    let out = agent(&[
        "apply-log",
        "--backup-dir",
        &dir_arg,
        "--mysqld",
        &real.display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert!(partial.exists());
    // copy-back names the unfinished apply-log too.
    let err = restore::copy_back(&copy_back_options(&dir, &work.path().join("t0")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("apply-log --force"), "{err}");

    // Cancelled half-way: the mini instance is killed, nothing else changes.
    std::fs::remove_dir_all(&partial).unwrap();
    let cancel = CancellationToken::new();
    let options = ApplyLogOptions {
        key: None,
        backup_dir: dir.clone(),
        mysqld: Some(real.clone()),
        force: false,
        buffer_pool: 128 << 20,
    };
    let canceller = {
        let cancel = cancel.clone();
        let cnf = partial.join("innoxide-mysqld.cnf");
        tokio::spawn(async move {
            while !cnf.exists() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            cancel.cancel();
        })
    };
    let err = prepare::apply_log(&options, cancel).await.unwrap_err();
    canceller.await.unwrap();
    assert!(matches!(err, prepare::Error::Cancelled { .. }), "{err}");
    assert!(
        mysqld_running_in(&partial).is_empty(),
        "no mini instance is left running"
    );
    innoxide_agent::verify::verify_dir(&dir).unwrap();

    // --force removes only the working copy and prepares.
    let out = agent(&[
        "apply-log",
        "--backup-dir",
        &dir_arg,
        "--mysqld",
        &real.display().to_string(),
        "--force",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!partial.exists());
    assert!(prepare::is_prepared(&dir.join("prepared")).unwrap());
    innoxide_agent::verify::verify_dir(&dir).unwrap();

    // Once prepared, apply-log has nothing to do.
    let out = agent(&[
        "apply-log",
        "--backup-dir",
        &dir_arg,
        "--mysqld",
        &real.display().to_string(),
    ])
    .await;
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("already prepared"),
        "{}",
        text(&out.stderr)
    );

    // And the result restores to the backup point.
    let datadir = work.path().join("restored");
    copy_back(&dir, &datadir).await;
    let restored = start_restored(&datadir).await;
    assert_eq!(
        oracle::GtidSet::parse(&restored.gtid_executed().await.unwrap()).unwrap(),
        oracle::GtidSet::parse(&manifest.gtid_executed).unwrap()
    );
    drop(source);
    steps.done("whole test");
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_mysqld_version_is_refused_before_anything_is_written() {
    let mut steps = Steps::new("version mismatch");
    let work = tempfile::tempdir().unwrap();
    let (_source, dir, manifest) = small_backup(work.path()).await;
    let fake = work.path().join("mysqld-9.6");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"/usr/sbin/mysqld  Ver 9.6.0 for Linux on x86_64 (fake)\"\n",
    )
    .unwrap();
    set_executable(&fake);
    let out = agent(&[
        "apply-log",
        "--backup-dir",
        &dir.display().to_string(),
        "--mysqld",
        &fake.display().to_string(),
    ])
    .await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("9.6.0"),
        "names the binary's version: {stderr}"
    );
    assert!(
        stderr.contains(&manifest.server_version),
        "names the source's version: {stderr}"
    );
    assert!(!dir.join("prepared.partial").exists());
    assert!(!dir.join("prepared").exists());
    innoxide_agent::verify::verify_dir(&dir).unwrap();
    steps.done("whole test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_back_refuses_raw_backups_and_full_datadirs_and_move_back_consumes_the_prepared_copy()
{
    let mut steps = Steps::new("copy-back refusals, move-back");
    let work = tempfile::tempdir().unwrap();
    let (source, dir, manifest) = small_backup(work.path()).await;

    let err = restore::copy_back(&copy_back_options(&dir, &work.path().join("t1")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("run apply-log first"), "{err}");
    assert!(!work.path().join("t1").exists(), "nothing was created");

    // copy-back-and-apply-log prepares on the way.
    let both = work.path().join("both");
    let report = restore::copy_back_and_apply_log(&copy_back_options(&dir, &both), Some(mysqld()))
        .await
        .unwrap();
    assert!(report.files > 0 && both.join("ibdata1").is_file());
    assert!(prepare::is_prepared(&dir.join("prepared")).unwrap());

    let full = work.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep-me"), b"mine").unwrap();
    let err = restore::copy_back(&copy_back_options(&dir, &full))
        .await
        .unwrap_err();
    assert!(matches!(err, restore::Error::NotEmpty(_)), "{err}");
    // Forced, it adds the files and leaves what was there alone.
    let forced = CopyBackOptions {
        force_non_empty: true,
        ..copy_back_options(&dir, &full)
    };
    restore::copy_back(&forced).await.unwrap();
    assert_eq!(std::fs::read(full.join("keep-me")).unwrap(), b"mine");
    assert!(full.join("ibdata1").is_file());
    // A second forced copy would overwrite: refused.
    let err = restore::copy_back(&forced).await.unwrap_err();
    assert!(matches!(err, restore::Error::TargetExists(_)), "{err}");

    // move-back, in place (the source's server UUID kept), consumes the
    // prepared copy; the raw backup stays and can be prepared again.
    let moved = work.path().join("moved");
    let options = CopyBackOptions {
        new_server_uuid: false,
        move_files: true,
        ..copy_back_options(&dir, &moved)
    };
    let report = restore::copy_back(&options).await.unwrap();
    assert!(report.renamed > 0 && report.copied == 0, "{report:?}");
    assert!(!dir.join("prepared").exists());
    innoxide_agent::verify::verify_dir(&dir).unwrap();
    assert!(moved.join("#innodb_redo").is_dir());
    assert_eq!(
        std::fs::read_dir(moved.join("#innodb_redo"))
            .unwrap()
            .count(),
        0
    );
    assert!(!moved.join("mysql-stderr").exists() && !moved.join("xtrabackup_checkpoints").exists());

    let source_uuid: String = source.query_scalar("SELECT @@server_uuid").await.unwrap();
    drop(source); // an in-place restore: the source is gone
    let restored = start_restored(&moved).await;
    let uuid: String = restored.query_scalar("SELECT @@server_uuid").await.unwrap();
    assert_eq!(uuid, source_uuid, "auto.cnf kept: the same server");
    assert_eq!(
        oracle::GtidSet::parse(&restored.gtid_executed().await.unwrap()).unwrap(),
        oracle::GtidSet::parse(&manifest.gtid_executed).unwrap()
    );
    steps.done("whole test");
}

/// Writes one row at a time into an InnoDB table until told to stop and
/// returns the longest single write: how long the server made writers wait.
fn probe_write_stalls(
    server: &MysqlServer,
    table: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(Duration, u64)> {
    use mysql_async::prelude::Queryable;
    let opts = server.opts();
    tokio::spawn(async move {
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let (mut worst, mut writes) = (Duration::ZERO, 0u64);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let started = Instant::now();
            conn.query_drop(format!("INSERT INTO {table} (v) VALUES (1)"))
                .await
                .unwrap();
            worst = worst.max(started.elapsed());
            writes += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (worst, writes)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_query_on_a_myisam_table_does_not_stall_writes_and_the_restore_is_exact() {
    let mut steps = Steps::new("myisam + long query");
    let source = MysqlServer::builder().start().await.unwrap();
    let bench = Sysbench::prepare(&source, 2, 5_000).await.unwrap();
    source
        .exec(
            "CREATE DATABASE probe; \
             CREATE TABLE probe.w (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB; \
             CREATE TABLE probe.slow (id INT PRIMARY KEY, v INT) ENGINE=MyISAM; \
             INSERT INTO probe.slow VALUES (1, 1); \
             CREATE TABLE probe.busy (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=MyISAM",
        )
        .await
        .unwrap();
    // The reported case: one long SELECT on a MyISAM table. A FLUSH TABLES
    // WITH READ LOCK would queue behind it and hold every write meanwhile.
    let long_query = {
        let opts = source.opts();
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            conn.query_drop("SELECT SLEEP(90) FROM probe.slow").await
        })
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let innodb_probe = probe_write_stalls(&source, "probe.w", stop.clone());
    let myisam_probe = probe_write_stalls(&source, "probe.busy", stop.clone());
    let load = bench.run_background(2, Duration::from_secs(60)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    steps.done("long SELECT, probes and load running");

    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backup");
    let manifest = backup(&source, &dir).await;
    steps.done("backup");
    // The backup did not wait for the SELECT: it is still running.
    let still_running: u64 = source
        .query_scalar(
            "SELECT COUNT(*) FROM performance_schema.processlist \
             WHERE INFO = 'SELECT SLEEP(90) FROM probe.slow'",
        )
        .await
        .unwrap();
    assert_eq!(still_running, 1, "the long SELECT ended before the backup");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (innodb_worst, innodb_writes) = innodb_probe.await.unwrap();
    let (myisam_worst, myisam_writes) = myisam_probe.await.unwrap();
    let _ = load.stop().await;
    println!(
        "[myisam + long query] max write stall during the backup: InnoDB {innodb_worst:.3?} \
         over {innodb_writes} writes; the read-locked MyISAM table {myisam_worst:.3?} over \
         {myisam_writes} writes; backup lock held {:.3} s",
        manifest.lock_seconds
    );
    assert!(
        innodb_worst < Duration::from_secs(3),
        "InnoDB writes stalled for {innodb_worst:?}"
    );
    assert!(
        myisam_worst < Duration::from_secs(3),
        "writes to the MyISAM table stalled for {myisam_worst:?}"
    );
    assert!(manifest.files.iter().any(|f| f.path == "probe/busy.MYD"));
    source.exec("KILL QUERY (SELECT ID FROM performance_schema.processlist WHERE INFO = 'SELECT SLEEP(90) FROM probe.slow')").await.ok();
    long_query.abort();

    // Prepared from redo cut into 256 KiB files: the layout apply-log uses
    // past mysqld's 16 GiB per file, proved on the real mysqld.
    let out = tokio::process::Command::new(AGENT)
        .args(["apply-log", "--backup-dir"])
        .arg(&dir)
        .arg("--mysqld")
        .arg(mysqld())
        .env("INNOXIDE_LOG_JSON", "true")
        .env("INNOXIDE_REDO_FILE_MAX_BYTES", (256 << 10).to_string())
        .output()
        .await
        .unwrap();
    let log = text(&out.stderr);
    assert!(out.status.success(), "apply-log failed:\n{log}");
    // JSON log lines: `"files":N` on the synthesized-redo event.
    let files: u64 = log
        .split("\"files\":")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no files= in the apply-log output:\n{log}"));
    println!("[myisam + long query] the captured redo was prepared from {files} redo files");
    assert!(
        files > 1,
        "the redo fit in one file; the test proves nothing"
    );
    assert!(prepare::is_prepared(&dir.join("prepared")).unwrap());
    let datadir = work.path().join("restored");
    copy_back(&dir, &datadir).await;
    let restored = start_restored(&datadir).await;
    steps.done("apply-log from split redo, copy-back, start");
    let checked: Vec<(String, String, String, String)> = restored
        .query_rows("CHECK TABLE probe.busy, probe.slow")
        .await
        .unwrap();
    for (table, _, kind, text) in &checked {
        assert!(
            kind != "error" && (kind != "status" || text == "OK"),
            "{table}: {kind} {text}"
        );
    }
    let mut tables = bench.table_names();
    tables.extend([
        "probe.w".to_owned(),
        "probe.busy".to_owned(),
        "probe.slow".to_owned(),
    ]);
    let verdict = judge(&source, &restored, &manifest, &tables).await;
    assert!(verdict.backup_transactions > 0);
    steps.done("oracle");
}

/// Flips one bit in the middle of a file.
fn flip_bit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

/// Every file name below `dir` with its bytes, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = innoxide_agent::fileops::list_files(dir)
        .unwrap()
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bit_flip_anywhere_in_a_backup_is_refused_before_the_target_changes() {
    let mut steps = Steps::new("bit flips");
    let work = tempfile::tempdir().unwrap();
    let (_source, dir, manifest) = small_backup(work.path()).await;
    steps.done("backup");

    // In the raw backup: apply-log refuses, naming the file, and never
    // produces a prepared datadir copy-back could use.
    for entry in manifest.files.iter().filter(|f| f.size > 0) {
        let path = dir.join(&entry.path);
        flip_bit(&path);
        let options = ApplyLogOptions {
            key: None,
            backup_dir: dir.clone(),
            mysqld: Some(mysqld()),
            force: true,
            buffer_pool: 128 << 20,
        };
        let err = prepare::apply_log(&options, CancellationToken::new())
            .await
            .expect_err(&format!(
                "apply-log accepted a flipped bit in {}",
                entry.path
            ));
        assert!(
            err.to_string().contains(&entry.path),
            "the error does not name {}: {err}",
            entry.path
        );
        assert!(!dir.join("prepared").exists());
        flip_bit(&path);
        let _ = std::fs::remove_dir_all(dir.join("prepared.partial"));
    }
    steps.done(&format!(
        "{} raw files flipped, each refused",
        manifest.files.len()
    ));

    // In the prepared datadir: copy-back refuses before the target changes,
    // whichever file it would restore is damaged. (The mini instance's redo
    // and apply-log's own files are not restored, so not sealed.)
    apply_log(&dir).await;
    let prepared = dir.join("prepared");
    let target = work.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("already-here"), "the user's file").unwrap();
    let before = snapshot(&target);
    let prepared_files = innoxide_agent::fileops::list_files(&prepared).unwrap();
    for file in &prepared_files {
        if restore::plan::is_left_out(file, false) {
            continue;
        }
        let path = prepared.join(file);
        if std::fs::metadata(&path).unwrap().len() == 0 {
            continue;
        }
        flip_bit(&path);
        let mut options = copy_back_options(&dir, &target);
        options.force_non_empty = true;
        let err = restore::copy_back(&options).await.expect_err(&format!(
            "copy-back accepted a flipped bit in {}",
            file.display()
        ));
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "the error does not name {}: {err}",
            file.display()
        );
        assert_eq!(snapshot(&target), before, "copy-back changed the target");
        flip_bit(&path);
    }
    steps.done(&format!(
        "{} prepared files flipped, each refused",
        prepared_files.len()
    ));
    // Intact again, it restores.
    let mut options = copy_back_options(&dir, &target);
    options.force_non_empty = true;
    restore::copy_back(&options).await.unwrap();
}

const REPL_USER: &str = "repl";
const REPL_PASSWORD: &str = "Repl-pass-1";

/// Points `replica` at `source` (file and position taken from `position`,
/// a `CHANGE REPLICATION SOURCE TO …` clause list) and starts it.
async fn replicate_by_position(replica: &MysqlServer, source: &MysqlServer, position: &str) {
    replica
        .exec(&format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={}, \
             SOURCE_USER='{REPL_USER}', SOURCE_PASSWORD='{REPL_PASSWORD}', GET_SOURCE_PUBLIC_KEY=1, \
             {position}; START REPLICA",
            source.port()
        ))
        .await
        .unwrap();
}

/// Waits until `replica` has executed the source's binlog up to where the
/// source is now; fails on any replication error.
async fn wait_caught_up(replica: &MysqlServer, source: &MysqlServer) {
    let (file, position): (String, u64) = source.binlog_position().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut conn = replica.conn().await.unwrap();
        let row: mysql_async::Row =
            mysql_async::prelude::Queryable::query_first(&mut conn, "SHOW REPLICA STATUS")
                .await
                .unwrap()
                .expect("a replica");
        let sql_errno: u64 = row.get("Last_SQL_Errno").unwrap();
        let io_errno: u64 = row.get("Last_IO_Errno").unwrap();
        let sql_error: String = row.get("Last_SQL_Error").unwrap();
        let io_error: String = row.get("Last_IO_Error").unwrap();
        assert_eq!(
            (sql_errno, io_errno),
            (0, 0),
            "replication failed: {sql_error} {io_error}"
        );
        let at: (String, u64) = (
            row.get("Relay_Source_Log_File").unwrap(),
            row.get("Exec_Source_Log_Pos").unwrap(),
        );
        if at == (file.clone(), position) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not caught up: at {at:?}, source at {file}:{position}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `CHANGE REPLICATION SOURCE TO` clauses of the default channel in an
/// `xtrabackup_slave_info` text (comment lines skipped).
fn default_channel_clauses(slave_info: &str) -> String {
    let line = slave_info
        .lines()
        .find(|l| l.starts_with("CHANGE REPLICATION SOURCE TO ") && l.ends_with(" FOR CHANNEL '';"))
        .unwrap_or_else(|| panic!("no default channel in {slave_info}"));
    line.trim_start_matches("CHANGE REPLICATION SOURCE TO ")
        .trim_end_matches(" FOR CHANNEL '';")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slave_info_of_a_busy_replica_restores_into_a_replica_that_catches_up_exactly() {
    let mut steps = Steps::new("slave-info");
    // File-and-position replication, no GTIDs anywhere; the replica applies
    // with the server's default four workers, commit order preserved.
    let source = MysqlServer::builder().gtid(false).start().await.unwrap();
    let replica = MysqlServer::builder()
        .gtid(false)
        .server_id(3)
        .start()
        .await
        .unwrap();
    source
        .exec(&format!(
            "SET sql_log_bin = 0; \
             CREATE USER '{REPL_USER}'@'%' IDENTIFIED WITH caching_sha2_password BY '{REPL_PASSWORD}'; \
             GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'; SET sql_log_bin = 1",
        ))
        .await
        .unwrap();
    let (file, position): (String, u64) = source.binlog_position().await.unwrap();
    replicate_by_position(
        &replica,
        &source,
        &format!("SOURCE_LOG_FILE='{file}', SOURCE_LOG_POS={position}"),
    )
    .await;
    let bench = Sysbench::prepare(&source, 2, 5_000).await.unwrap();
    wait_caught_up(&replica, &source).await;
    steps.done("source and replica by position, 2 x 5k rows");

    // Row-based sysbench transactions applied twice converge to the same
    // rows; inserts do not: one applied twice stops replication with a
    // duplicate key, one skipped is a row missing from the checksum.
    source
        .exec("CREATE DATABASE ledger; CREATE TABLE ledger.entries (id BIGINT AUTO_INCREMENT PRIMARY KEY, at_ms BIGINT)")
        .await
        .unwrap();
    let stop_ledger = Arc::new(AtomicBool::new(false));
    let ledger = tokio::spawn(append_entries(
        source.conn().await.unwrap(),
        stop_ledger.clone(),
    ));
    // The backup's point falls while the replica applies the source's load:
    // the applier's status then lags the data it has committed.
    let load = bench.run_background(2, Duration::from_secs(20)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backup");
    backup_with(&replica, &dir, &["--slave-info"]).await;
    steps.done("backup of the replica under load");
    let at_backup = std::fs::read_to_string(dir.join("xtrabackup_slave_info")).unwrap();
    println!("[slave-info] at the backup:\n{at_backup}");
    assert!(at_backup.starts_with("-- "), "no caveat: {at_backup}");

    let prepared = apply_log(&dir).await;
    let exact = std::fs::read_to_string(dir.join("prepared/xtrabackup_slave_info")).unwrap();
    println!("[slave-info] prepared:\n{exact}");
    assert_eq!(prepared.slave_info.as_deref(), Some(exact.as_str()));
    let datadir = work.path().join("restored");
    copy_back(&dir, &datadir).await;
    assert!(!datadir.join("xtrabackup_slave_info").exists());
    let restored = MysqlServer::builder()
        .gtid(false)
        .server_id(4)
        .extra("skip_replica_start=ON")
        .existing_datadir(&datadir)
        .start()
        .await
        .unwrap();
    steps.done("apply-log, copy-back, start");
    // What a user does with the file: a fresh channel, then its coordinates.
    // One transaction skipped or applied twice shows as a replication error
    // (a row not found, a duplicate key) or as different checksums.
    restored.exec("RESET REPLICA ALL").await.unwrap();
    replicate_by_position(&restored, &source, &default_channel_clauses(&exact)).await;
    let report = load.wait().await.unwrap();
    assert!(report.transactions > 0, "the load ran: {report:?}");
    stop_ledger.store(true, Ordering::Relaxed);
    let entries = ledger.await.unwrap();
    println!("[slave-info] {entries} ledger entries appended during the test");
    wait_caught_up(&restored, &source).await;
    wait_caught_up(&replica, &source).await;
    steps.done("restored replica caught up");
    let mut tables = bench.table_names();
    tables.push("ledger.entries".to_owned());
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
    let at_source = source.checksum_tables(&tables).await.unwrap();
    assert_eq!(restored.checksum_tables(&tables).await.unwrap(), at_source);
    assert_eq!(replica.checksum_tables(&tables).await.unwrap(), at_source);
}

/// An `ALTER TABLE ... ADD INDEX` (a sorted index build: its pages are
/// written without redo and announced by MLOG_INDEX_LOAD) issued while the
/// backup copies waits for the backup lock, so the captured redo, walked
/// record by record under sysbench load, holds no index build to refuse;
/// the restore is exactly the backup point.
/// Inserts one row per transaction into `ledger.entries` until `stop`;
/// returns how many.
async fn append_entries(mut conn: mysql_async::Conn, stop: Arc<AtomicBool>) -> u64 {
    use mysql_async::prelude::Queryable;
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) {
        conn.query_drop(
            "INSERT INTO ledger.entries (at_ms) VALUES (UNIX_TIMESTAMP(NOW(3)) * 1000)",
        )
        .await
        .unwrap();
        count += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_index_added_during_the_copy_waits_for_the_lock_and_the_restore_is_exact() {
    let mut steps = Steps::new("ADD INDEX during the copy");
    let source = MysqlServer::builder().start().await.unwrap();
    let bench = Sysbench::prepare(&source, 2, 10_000).await.unwrap();
    steps.done("source with 2 x 10k rows");
    let load = bench.run_background(2, Duration::from_secs(30)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backup");
    let backup = {
        let (socket, dir) = (source.socket().display().to_string(), dir.clone());
        tokio::spawn(async move {
            let dir = dir.display().to_string();
            agent(&[
                "backup",
                "--socket",
                &socket,
                "--user",
                "root",
                "--no-timestamp",
                "--throttle=8M",
                "--backup-dir",
                &dir,
            ])
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let alter = {
        let opts = source.opts();
        tokio::spawn(async move {
            use mysql_async::prelude::Queryable;
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            let started = Instant::now();
            conn.query_drop("ALTER TABLE sbtest.sbtest1 ADD INDEX k_c (k, c)")
                .await
                .map(|()| started.elapsed())
        })
    };
    let waiting = async {
        loop {
            let n: u64 = source
                .query_scalar(
                    "SELECT COUNT(*) FROM performance_schema.processlist \
                     WHERE INFO LIKE 'ALTER TABLE sbtest.sbtest1 ADD INDEX%' \
                     AND STATE = 'Waiting for backup lock'",
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
    let out = backup.await.unwrap();
    let log = text(&out.stderr);
    assert!(out.status.success(), "backup failed:\n{log}");
    let ddl_wait = alter.await.unwrap().unwrap();
    let _ = load.stop().await;
    let manifest = innoxide_agent::verify::read_manifest(&dir).unwrap();
    println!(
        "[ADD INDEX during the copy] the ALTER took {ddl_wait:.2?}, waiting for the backup lock \
         held {:.2} s",
        manifest.lock_seconds
    );
    steps.done("backup, the ALTER waiting for its lock");
    // The backup walked every record it captured (under sysbench load).
    let walked = log
        .lines()
        .find(|l| l.contains("redo captured and walked"))
        .unwrap_or_else(|| panic!("no walk reported:\n{log}"));
    assert!(!walked.contains("records=0"), "{walked}");
    let indexed: u64 = source
        .query_scalar(
            "SELECT COUNT(*) FROM information_schema.STATISTICS \
             WHERE TABLE_NAME = 'sbtest1' AND INDEX_NAME = 'k_c'",
        )
        .await
        .unwrap();
    assert!(indexed > 0, "the ALTER did not add the index");

    let prepared = apply_log(&dir).await;
    assert_prepared_exactly(&dir, &manifest, &prepared);
    let datadir = work.path().join("restored");
    copy_back(&dir, &datadir).await;
    let restored = start_restored(&datadir).await;
    steps.done("apply-log, copy-back, start");
    let verdict = judge(&source, &restored, &manifest, &bench.table_names()).await;
    assert!(verdict.backup_transactions > 0);
    steps.done("oracle");
}

/// `--lock-ddl=reduced`: the same ALTER does not wait for the copy; the
/// backup takes the lock only at the end, finds the index build in the
/// redo it walked, re-copies that tablespace, and the restore holds the new
/// index intact and is exactly the backup point.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_reduced_ddl_lock_an_index_added_during_the_copy_is_recopied() {
    let mut steps = Steps::new("reduced DDL lock");
    let source = MysqlServer::builder().start().await.unwrap();
    let bench = Sysbench::prepare(&source, 2, 10_000).await.unwrap();
    steps.done("source with 2 x 10k rows");
    let load = bench.run_background(2, Duration::from_secs(30)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backup");
    let backup = {
        let (socket, dir) = (source.socket().display().to_string(), dir.clone());
        tokio::spawn(async move {
            let dir = dir.display().to_string();
            agent(&[
                "backup",
                "--socket",
                &socket,
                "--user",
                "root",
                "--no-timestamp",
                "--throttle=8M",
                "--lock-ddl=reduced",
                "--backup-dir",
                &dir,
            ])
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    source
        .exec("ALTER TABLE sbtest.sbtest1 ADD INDEX k_c (k, c)")
        .await
        .unwrap();
    let ddl_wait = started.elapsed();
    assert!(
        !backup.is_finished(),
        "the backup ended before the ALTER did: the test proves nothing"
    );
    let out = backup.await.unwrap();
    let log = text(&out.stderr);
    assert!(out.status.success(), "backup failed:\n{log}");
    let _ = load.stop().await;
    let manifest = innoxide_agent::verify::read_manifest(&dir).unwrap();
    println!(
        "[reduced DDL lock] the ALTER took {ddl_wait:.2?} during the copy; the backup lock was \
         held {:.2} s at the end",
        manifest.lock_seconds
    );
    assert!(
        log.contains("re-copied under the backup lock") && log.contains("sbtest/sbtest1.ibd"),
        "the index build was not re-copied:\n{log}"
    );
    steps.done("backup with the ALTER running during the copy");

    let prepared = apply_log(&dir).await;
    assert_prepared_exactly(&dir, &manifest, &prepared);
    let datadir = work.path().join("restored");
    copy_back(&dir, &datadir).await;
    let restored = start_restored(&datadir).await;
    steps.done("apply-log, copy-back, start");
    let indexed: u64 = restored
        .query_scalar(
            "SELECT COUNT(*) FROM information_schema.STATISTICS \
             WHERE TABLE_NAME = 'sbtest1' AND INDEX_NAME = 'k_c'",
        )
        .await
        .unwrap();
    assert!(
        indexed > 0,
        "the restore lacks the index added before its point"
    );
    let checked: Vec<(String, String, String, String)> = restored
        .query_rows("CHECK TABLE sbtest.sbtest1")
        .await
        .unwrap();
    for (table, _, kind, text) in &checked {
        assert!(
            kind != "error" && (kind != "status" || text == "OK"),
            "{table}: {kind} {text}"
        );
    }
    let via_index: u64 = restored
        .query_scalar("SELECT COUNT(*) FROM sbtest.sbtest1 FORCE INDEX (k_c) WHERE k >= 0")
        .await
        .unwrap();
    let via_rows: u64 = restored
        .query_scalar("SELECT COUNT(*) FROM sbtest.sbtest1 IGNORE INDEX (k_c, k_1) WHERE k >= 0")
        .await
        .unwrap();
    assert_eq!(via_index, via_rows, "the new index and the rows disagree");
    let verdict = judge(&source, &restored, &manifest, &bench.table_names()).await;
    assert!(verdict.backup_transactions > 0);
    steps.done("index checked, oracle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn system_and_undo_files_in_their_own_folders_restore_where_the_target_keeps_them() {
    let mut steps = Steps::new("odd layout");
    let work = tempfile::tempdir().unwrap();
    let folder = |name: &str| {
        let dir = work.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        dir
    };
    let (undo, system) = (folder("undo"), folder("system"));
    let data_file_path = "innodb_data_file_path=ibdata_a:3M;ibdata_b:12M:autoextend";
    let source = MysqlServer::builder()
        .extra(format!("innodb_undo_directory={}", undo.display()))
        .extra(format!("innodb_data_home_dir={}", system.display()))
        .extra(data_file_path)
        .start()
        .await
        .unwrap();
    source
        .exec("CREATE UNDO TABLESPACE more_undo ADD DATAFILE 'more_undo.ibu'")
        .await
        .unwrap();
    assert!(undo.join("more_undo.ibu").is_file());
    let bench = Sysbench::prepare(&source, 2, 5_000).await.unwrap();
    steps.done("source with its own undo and system folders, 2 x 5k rows");
    let load = bench.run_background(2, Duration::from_secs(8)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dir = work.path().join("backup");
    let manifest = backup(&source, &dir).await;
    load.wait().await.unwrap();
    steps.done("backup under load");
    let kinds: Vec<(&str, FileKind)> = manifest
        .files
        .iter()
        .filter(|f| {
            matches!(
                f.kind,
                FileKind::SystemTablespace | FileKind::UndoTablespace
            )
        })
        .map(|f| (f.path.as_str(), f.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("ibdata_a", FileKind::SystemTablespace),
            ("ibdata_b", FileKind::SystemTablespace),
            ("more_undo.ibu", FileKind::UndoTablespace),
            ("undo_001", FileKind::UndoTablespace),
            ("undo_002", FileKind::UndoTablespace),
        ]
    );

    let prepared = apply_log(&dir).await;
    assert_prepared_exactly(&dir, &manifest, &prepared);
    steps.done("apply-log");
    // The target keeps them elsewhere again; copy-back reads that from its
    // option file, as the seed's does.
    let (target_undo, target_system) = (work.path().join("undo2"), work.path().join("system2"));
    let datadir = work.path().join("restored");
    let cnf = work.path().join("target.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[mysqld]\ndatadir={}\ninnodb_undo_directory={}\ninnodb_data_home_dir={}\n{data_file_path}\n",
            datadir.display(),
            target_undo.display(),
            target_system.display()
        ),
    )
    .unwrap();
    let out = agent(&[
        "copy-back",
        "--backup-dir",
        &dir.display().to_string(),
        "--defaults-file",
        &cnf.display().to_string(),
        "--new-server-uuid",
    ])
    .await;
    assert!(
        out.status.success(),
        "copy-back failed:\n{}",
        text(&out.stderr)
    );
    for name in ["undo_001", "undo_002", "more_undo.ibu"] {
        assert!(
            target_undo.join(name).is_file(),
            "{name} not in the undo folder"
        );
        assert!(!datadir.join(name).exists());
    }
    for name in ["ibdata_a", "ibdata_b"] {
        assert!(
            target_system.join(name).is_file(),
            "{name} not in the system folder"
        );
    }
    assert_eq!(
        std::fs::read_dir(&undo).unwrap().count(),
        3,
        "copy-back wrote into the source's undo folder"
    );
    let restored = MysqlServer::builder()
        .server_id(2)
        .extra(format!("innodb_undo_directory={}", target_undo.display()))
        .extra(format!("innodb_data_home_dir={}", target_system.display()))
        .extra(data_file_path)
        .existing_datadir(&datadir)
        .start()
        .await
        .unwrap();
    steps.done("copy-back, restored server started");
    let undo_tablespaces: Vec<(String, String)> = restored
        .query_rows("SELECT NAME, STATE FROM information_schema.INNODB_TABLESPACES WHERE SPACE_TYPE = 'Undo' ORDER BY NAME")
        .await
        .unwrap();
    assert!(
        undo_tablespaces.contains(&("more_undo".to_owned(), "active".to_owned())),
        "{undo_tablespaces:?}"
    );
    judge(&source, &restored, &manifest, &bench.table_names()).await;
    steps.done("oracle");
}
