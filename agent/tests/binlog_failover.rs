//! The binlog archive across a real failover, on two real MySQL 9.7
//! servers (a source and its GTID replica): archive-binlogs follows the
//! source under writes, the source stops, the replica is promoted and
//! takes writes, and archive-binlogs against it continues the SAME
//! archive. The index must have no gap and name every transaction exactly
//! once, and a restore from a backup taken before the failover to a point
//! after it must give exactly the expected `gtid_executed` and rows. A
//! "failover" to a replica that lacks archived transactions is a
//! `diverged` gap, reported and refused by name.

mod support;
use support::{agent, restore_into, text};

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use innoxide_agent::binlog::{ArchiveIndex, GapKind, GtidSet};
use innoxide_agent::repo::{self, RepoOptions};
use innoxide_testkit::mysql_async::prelude::Queryable;
use innoxide_testkit::{MysqlServer, mysql_prefix};

const AGENT: &str = env!("CARGO_BIN_EXE_innoxide-agent");
const TABLES: &[&str] = &["app.log"];

fn set(text: &str) -> GtidSet {
    text.parse().unwrap()
}

/// Small binlog files, so the writes span several of them.
async fn server(id: u32) -> MysqlServer {
    MysqlServer::builder()
        .server_id(id)
        .redo_capacity(32 << 20)
        .extra("max_binlog_size=65536")
        .start()
        .await
        .unwrap()
}

/// `replica` replicates `source` from its first transaction (GTID auto-position).
async fn replicate(source: &MysqlServer, replica: &MysqlServer) {
    source
        .exec(
            "CREATE USER IF NOT EXISTS 'failover_repl'@'%' IDENTIFIED WITH caching_sha2_password \
             BY 'Failover-1'; GRANT REPLICATION SLAVE ON *.* TO 'failover_repl'@'%'",
        )
        .await
        .unwrap();
    replica
        .exec(&format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={}, \
             SOURCE_USER='failover_repl', SOURCE_PASSWORD='Failover-1', SOURCE_AUTO_POSITION=1, \
             GET_SOURCE_PUBLIC_KEY=1; START REPLICA",
            source.port()
        ))
        .await
        .unwrap();
}

/// Waits until `replica` has applied `wanted`.
async fn caught_up(replica: &MysqlServer, wanted: &GtidSet) {
    let waited: i64 = replica
        .query_scalar(&format!(
            "SELECT WAIT_FOR_EXECUTED_GTID_SET('{wanted}', 120)"
        ))
        .await
        .unwrap();
    assert_eq!(waited, 0, "the replica did not apply {wanted} in 120 s");
}

/// The replica becomes a primary: replication stopped and forgotten.
async fn promote(replica: &MysqlServer) {
    replica
        .exec("STOP REPLICA; RESET REPLICA ALL; SET GLOBAL super_read_only = OFF, read_only = OFF")
        .await
        .unwrap();
}

/// Autocommit INSERTs, one transaction each, until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(server: &MysqlServer, tag: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let opts = server.opts();
        let (s, w) = (stop.clone(), written.clone());
        let task = tokio::spawn(async move {
            let mut conn = innoxide_testkit::mysql_async::Conn::new(opts)
                .await
                .unwrap();
            while !s.load(Ordering::Relaxed) {
                let n = w.load(Ordering::Relaxed);
                conn.exec_drop(
                    "INSERT INTO app.log (tag, n, pad) VALUES (?, ?, REPEAT('x', 200))",
                    (tag, n),
                )
                .await
                .unwrap();
                w.fetch_add(1, Ordering::Relaxed);
            }
        });
        Writer {
            stop,
            written,
            task,
        }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.written.load(Ordering::Relaxed)
    }
}

/// The CLI, following the server every second, in the background.
fn follow(server: &MysqlServer, archive: &Path) -> tokio::process::Child {
    tokio::process::Command::new(AGENT)
        .args(["archive-binlogs", "--user=root", "--upload-interval=1"])
        .arg(format!("--socket={}", server.socket().display()))
        .arg(archive)
        .env("INNOXIDE_LOG_JSON", "true")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn until_current(server: &MysqlServer, archive: &Path) -> Output {
    let socket = format!("--socket={}", server.socket().display());
    agent(&[
        "archive-binlogs",
        "--user=root",
        &socket,
        "--until-current",
        &archive.display().to_string(),
    ])
    .await
}

async fn index(archive: &Path) -> ArchiveIndex {
    let store = repo::open(&archive.display().to_string(), &RepoOptions::default()).unwrap();
    ArchiveIndex::load(&store).await.unwrap().unwrap()
}

/// No transaction is named by two files of the index.
fn each_once(index: &ArchiveIndex) -> GtidSet {
    let mut seen = GtidSet::new();
    for file in &index.files {
        assert!(
            !seen.intersects(&file.gtids),
            "{} ({}) names again {}",
            file.name,
            file.server_uuid,
            seen.intersection(&file.gtids)
        );
        seen.union_with(&file.gtids);
    }
    seen
}

async fn uuid(server: &MysqlServer) -> String {
    server.query_scalar("SELECT @@server_uuid").await.unwrap()
}

async fn gtid_executed(server: &MysqlServer) -> GtidSet {
    set(&server.gtid_executed().await.unwrap())
}

async fn create_table(source: &MysqlServer) {
    source
        .exec(
            "CREATE DATABASE app; CREATE TABLE app.log (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
             tag INT NOT NULL, n BIGINT NOT NULL, pad VARCHAR(255) NOT NULL)",
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_archive_continues_across_a_failover_and_a_restore_crosses_it_exactly() {
    let started = Instant::now();
    let mut source = server(1).await;
    let replica = server(2).await;
    create_table(&source).await;
    replicate(&source, &replica).await;
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("archive");

    // The source under writes, followed by the archiver; a backup of it.
    let writer = Writer::start(&source, 1);
    let mut follower = follow(&source, &archive);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let backup_dir = work.path().join("backup");
    let socket = source.socket().display().to_string();
    let out = agent(&[
        "backup",
        "--socket",
        &socket,
        "--user",
        "root",
        "--no-timestamp",
        "--backup-dir",
        &backup_dir.display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "backup:\n{}", text(&out.stderr));
    let backup_set = set(&innoxide_agent::verify::read_manifest(&backup_dir)
        .unwrap()
        .gtid_executed);
    // The replica starts a new binlog file after the backup: its first
    // file after the failover begins before the source's last
    // transactions, and logs them again (replicated).
    tokio::time::sleep(Duration::from_secs(1)).await;
    replica.exec("FLUSH BINARY LOGS").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written_on_source = writer.stop().await;

    // Failover: the source stops (the archiver may not have its last
    // transactions), the replica has them all and is promoted.
    let source_set = gtid_executed(&source).await;
    caught_up(&replica, &source_set).await;
    source.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    follower.start_kill().unwrap();
    follower.wait().await.unwrap();
    let before_failover = index(&archive).await;
    let new_primary = uuid(&replica).await;
    assert!(
        before_failover.history().is_subset(&source_set),
        "the archive holds what the source had"
    );
    promote(&replica).await;
    println!("source archived, failover: {:.1?}", started.elapsed());

    // The new primary takes writes; the archiver follows it into the same archive.
    let writer = Writer::start(&replica, 2);
    let mut follower = follow(&replica, &archive);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let paused = writer.stop().await;
    let target = gtid_executed(&replica).await;
    let target_sums = replica.checksum_tables(TABLES).await.unwrap();
    let writer = Writer::start(&replica, 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    follower.start_kill().unwrap();
    follower.wait().await.unwrap();
    let written_after = paused + writer.stop().await;
    let out = until_current(&replica, &archive).await;
    assert!(
        out.status.success(),
        "archive-binlogs:\n{}",
        text(&out.stderr)
    );
    let final_set = gtid_executed(&replica).await;
    assert_eq!(text(&out.stdout).trim(), final_set.to_string());

    // One unbroken history: no gap, every transaction named once, from
    // the source's files then the new primary's.
    let index = index(&archive).await;
    assert!(index.gaps.is_empty(), "{:?}", index.gaps);
    let named = each_once(&index);
    assert_eq!(
        index.files[0].previous_gtids.union(&named),
        final_set,
        "the archive holds every transaction"
    );
    let servers: Vec<&str> = index.files.iter().map(|f| f.server_uuid.as_str()).collect();
    let switch = servers.iter().position(|s| *s == new_primary).unwrap();
    assert!(switch > 0, "the source's files come first");
    assert!(
        servers[switch..].iter().all(|s| *s == new_primary),
        "{servers:?}"
    );
    assert!(
        !source_set.is_subset(&index.files[switch].previous_gtids),
        "the new primary's first archived file begins before the source's last transactions \
         (the case under test)"
    );
    let rows: u64 = replica
        .query_scalar("SELECT COUNT(*) FROM app.log")
        .await
        .unwrap();
    assert_eq!(rows, written_on_source + written_after);
    println!(
        "archive across the failover checked: {:.1?}",
        started.elapsed()
    );

    // A restore from the backup taken before the failover, to a point after it.
    let mysqld = mysql_prefix().unwrap().join("bin/mysqld");
    let out = agent(&[
        "apply-log",
        "--backup-dir",
        &backup_dir.display().to_string(),
        "--mysqld",
        &mysqld.display().to_string(),
        "--use-memory",
        "128M",
        "--binlog-archive",
        &archive.display().to_string(),
        "--stop-gtid",
        &target.to_string(),
    ])
    .await;
    assert!(out.status.success(), "apply-log:\n{}", text(&out.stderr));
    let record = innoxide_agent::prepare::pitr::read_record(&backup_dir.join("prepared"))
        .unwrap()
        .unwrap();
    assert_eq!(set(&record.gtid_executed), target);
    assert_eq!(
        record.transactions_replayed,
        target.subtract(&backup_set).count(),
        "each transaction replayed once"
    );
    let datadir = work.path().join("restored");
    let mut restored =
        restore_into(&backup_dir, &datadir, MysqlServer::builder().server_id(9)).await;
    assert_eq!(gtid_executed(&restored).await, target);
    assert_eq!(restored.checksum_tables(TABLES).await.unwrap(), target_sums);
    restored.stop().await.unwrap();
    println!(
        "restored across the failover exactly: {:.1?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_to_a_replica_that_lacks_archived_transactions_is_a_diverged_gap() {
    let mut source = server(1).await;
    let replica = server(2).await;
    create_table(&source).await;
    replicate(&source, &replica).await;
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("archive");

    // The replica stops applying; the source writes on and is archived.
    let writer = Writer::start(&source, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    writer.stop().await;
    caught_up(&replica, &gtid_executed(&source).await).await;
    replica.exec("STOP REPLICA").await.unwrap();
    let replica_had = gtid_executed(&replica).await;
    let writer = Writer::start(&source, 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    writer.stop().await;
    let out = until_current(&source, &archive).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let source_set = gtid_executed(&source).await;
    let lost = source_set.subtract(&replica_had);
    assert!(!lost.is_empty());
    source.stop().await.unwrap();

    // The lagging replica is promoted and takes writes.
    promote(&replica).await;
    let writer = Writer::start(&replica, 3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    writer.stop().await;
    let out = until_current(&replica, &archive).await;
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "the divergence was not reported: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("diverged") && stderr.contains(&lost.to_string()),
        "{stderr}"
    );
    let index = index(&archive).await;
    assert_eq!(index.gaps.len(), 1, "{:?}", index.gaps);
    assert_eq!(index.gaps[0].kind, GapKind::Diverged);
    assert_eq!(index.gaps[0].missing, lost);
    assert_eq!(index.gaps[0].server_uuid, uuid(&replica).await);
    // The new primary's own transactions are archived all the same, once.
    let named = each_once(&index);
    let replica_set = gtid_executed(&replica).await;
    assert!(replica_set.subtract(&source_set).is_subset(&named));

    // A replay that needs both histories is refused, naming the gap.
    let store = repo::open(&archive.display().to_string(), &RepoOptions::default()).unwrap();
    let fetched = work.path().join("fetched");
    std::fs::create_dir(&fetched).unwrap();
    let err = innoxide_agent::binlog::fetch_for_replay(
        &store,
        None,
        &GtidSet::new(),
        &innoxide_agent::binlog::ReplayTarget::Gtids(source_set.union(&replica_set)),
        &fetched,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("another history") && err.contains(&lost.to_string()),
        "{err}"
    );
}
