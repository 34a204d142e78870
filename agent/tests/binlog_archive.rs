//! The binlog archive on a real MySQL 9.7: `archive-binlogs` under writes,
//! killed and restarted, across a server restart, the source's binlogs
//! purged afterwards, a binlog purged before it was archived, and an archive
//! in S3 compressed and encrypted. Judged by GTID sets and by the events of
//! the files `fetch_for_replay` gives back, never by exit codes alone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use innoxide_agent::binlog::events;
use innoxide_agent::binlog::{
    ArchiveError, ArchiveIndex, ArchiveOptions, ArchiveReport, ArchiveStatus, GapKind, GtidSet,
    ReplayTarget, Stop, archive_binlogs, fetch_for_replay,
};
use innoxide_agent::mysql::ConnectOptions;
use innoxide_agent::repo::{self, Key, RepoOptions, Transform};
use innoxide_testkit::mysql_async::prelude::Queryable;
use innoxide_testkit::{MysqlServer, S3Server};

mod support;

const AGENT: &str = env!("CARGO_BIN_EXE_innoxide-agent");

/// Small binlog files, so a few seconds of writes span several of them.
async fn server() -> MysqlServer {
    let server = MysqlServer::builder()
        .extra("max_binlog_size=65536")
        .start()
        .await
        .unwrap();
    server
        .exec("CREATE DATABASE pitr; CREATE TABLE pitr.log (id BIGINT PRIMARY KEY AUTO_INCREMENT, v BIGINT NOT NULL)")
        .await
        .unwrap();
    server
}

fn options(
    server: &MysqlServer,
    location: String,
    repo: RepoOptions,
    transform: Transform,
) -> ArchiveOptions {
    ArchiveOptions {
        connect: ConnectOptions {
            socket: Some(server.socket().to_owned()),
            user: Some("root".into()),
            ..Default::default()
        },
        location,
        repo,
        transform,
        upload_interval: Duration::from_secs(1),
        binlog_dir: None,
        status: Arc::new(ArchiveStatus::default()),
    }
}

/// Autocommit INSERTs, one transaction each, until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(server: &MysqlServer) -> Writer {
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
                conn.exec_drop("INSERT INTO pitr.log (v) VALUES (?)", (n,))
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

/// A binlog's bytes with the "in use" flag of its format description
/// event cleared. The server sets that flag while the file is its active
/// log and clears it in place when the file rotates, so an archive of the
/// active file differs from the closed file in that one bit and nowhere
/// else. (The event's checksum is computed as if the flag were clear, so
/// both forms are valid.)
fn without_in_use_flag(mut binlog: Vec<u8>) -> Vec<u8> {
    // The magic, then the event header: timestamp (4), type (1),
    // server id (4), size (4), next position (4), flags (2, little endian).
    const FLAGS_AT: usize = 4 + 4 + 1 + 4 + 4 + 4;
    const IN_USE: u8 = 0x01;
    if let Some(flags) = binlog.get_mut(FLAGS_AT) {
        *flags &= !IN_USE;
    }
    binlog
}

async fn gtid_executed(server: &MysqlServer) -> GtidSet {
    server.gtid_executed().await.unwrap().parse().unwrap()
}

async fn until_current(options: &ArchiveOptions) -> Result<ArchiveReport, ArchiveError> {
    archive_binlogs(options, Stop::UntilCurrent).await
}

/// The CLI, following the server every second, in the background.
fn spawn_cli(server: &MysqlServer, location: &Path) -> tokio::process::Child {
    tokio::process::Command::new(AGENT)
        .args(["archive-binlogs", "--user=root", "--upload-interval=1"])
        .arg(format!("--socket={}", server.socket().display()))
        .arg(location)
        .env("INNOXIDE_LOG_JSON", "true")
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Every transaction in the fetched files, each as often as it occurs.
fn transactions_in(files: &[std::path::PathBuf]) -> (GtidSet, u64) {
    let mut set = GtidSet::new();
    let mut count = 0;
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        let (_, scan) = events::read_file(&bytes).unwrap();
        for t in &scan.transactions {
            set.insert(t.gtid.as_ref().unwrap());
            count += 1;
        }
    }
    (set, count)
}

async fn load_index(location: &str, repo: &RepoOptions) -> ArchiveIndex {
    let store = repo::open(location, repo).unwrap();
    ArchiveIndex::load(&store).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn archives_under_writes_across_agent_kill_and_server_restart_then_outlives_a_purge() {
    let started = Instant::now();
    let mut server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("binlogs");
    let location = archive.to_string_lossy().into_owned();

    // Writes, followed by the CLI; killed (SIGKILL) in the middle.
    let writer = Writer::start(&server);
    let mut cli = spawn_cli(&server, &archive);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cli.start_kill().unwrap();
    cli.wait().await.unwrap();
    let after_kill = load_index(&location, &RepoOptions::default()).await;
    assert!(!after_kill.files.is_empty(), "nothing archived in 3 s");

    // Restarted; the server restarts under it (a new binlog file).
    let mut cli = spawn_cli(&server, &archive);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written_before_restart = writer.stop().await;
    server.restart().await.unwrap();
    let writer = Writer::start(&server);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cli.start_kill().unwrap();
    cli.wait().await.unwrap();

    // --until-current while the writes go on: exactly the server's set at the call.
    let options = options(
        &server,
        location.clone(),
        RepoOptions::default(),
        Transform::default(),
    );
    let before_call = gtid_executed(&server).await;
    let report = until_current(&options).await.unwrap();
    let after_call = gtid_executed(&server).await;
    let at_call = report.target_gtid_executed.clone().unwrap();
    assert!(before_call.is_subset(&at_call) && at_call.is_subset(&after_call));
    assert_eq!(
        report.history, at_call,
        "the archive holds exactly the server's set at the call"
    );
    let written = written_before_restart + writer.stop().await;

    // Quiet now: the CLI's --until-current catches up to the last write.
    let output = tokio::process::Command::new(AGENT)
        .args(["archive-binlogs", "--user=root", "--until-current"])
        .arg(format!("--socket={}", server.socket().display()))
        .arg(&archive)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let executed = gtid_executed(&server).await;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        executed.to_string()
    );
    let index = load_index(&location, &RepoOptions::default()).await;
    assert_eq!(index.history(), executed);
    assert!(index.gaps.is_empty(), "{:?}", index.gaps);
    assert!(
        index.files.iter().filter(|f| f.complete).count() >= 2,
        "the writes should span several binlog files"
    );

    // The source purges its binlogs: the archive still has every transaction,
    // each once.
    let (current, _) = server.binlog_position().await.unwrap();
    server
        .exec(&format!("PURGE BINARY LOGS TO '{current}'"))
        .await
        .unwrap();
    let store = repo::open(&location, &RepoOptions::default()).unwrap();
    let fetched = dir.path().join("fetched");
    std::fs::create_dir(&fetched).unwrap();
    let base = index.files[0].previous_gtids.clone();
    let files = fetch_for_replay(
        &store,
        None,
        &base,
        &ReplayTarget::Gtids(executed.clone()),
        &fetched,
    )
    .await
    .unwrap();
    let (replayable, count) = transactions_in(&files);
    assert_eq!(base.union(&replayable), executed);
    assert_eq!(count, replayable.count(), "a transaction is archived twice");
    let rows: u64 = server
        .query_scalar("SELECT COUNT(*) FROM pitr.log")
        .await
        .unwrap();
    assert_eq!(rows, written);
    eprintln!(
        "{written} writes, {} files, {count} transactions archived in {:?}",
        files.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_binlog_purged_before_it_was_archived_is_a_gap_named_and_refused() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("binlogs").to_string_lossy().into_owned();
    let options = options(
        &server,
        location.clone(),
        RepoOptions::default(),
        Transform::default(),
    );
    let writer = Writer::start(&server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.stop().await;
    let first = until_current(&options).await.unwrap();

    // More transactions in files the archiver never sees.
    let archived_until = gtid_executed(&server).await;
    assert_eq!(first.history, archived_until);
    for _ in 0..3 {
        server
            .exec("INSERT INTO pitr.log (v) VALUES (1)")
            .await
            .unwrap();
        server.exec("FLUSH BINARY LOGS").await.unwrap();
    }
    let (current, _) = server.binlog_position().await.unwrap();
    server
        .exec(&format!("PURGE BINARY LOGS TO '{current}'"))
        .await
        .unwrap();
    server
        .exec("INSERT INTO pitr.log (v) VALUES (2)")
        .await
        .unwrap();
    let lost = {
        let mut conn = server.conn().await.unwrap();
        let previous: String = conn
            .query_first("SELECT @@GLOBAL.gtid_purged")
            .await
            .unwrap()
            .unwrap();
        previous
            .parse::<GtidSet>()
            .unwrap()
            .subtract(&archived_until)
    };
    assert_eq!(lost.count(), 3);

    // The CLI's --until-current archives what comes after and exits
    // non-zero, naming the lost transactions.
    let output = tokio::process::Command::new(AGENT)
        .args(["archive-binlogs", "--user=root", "--until-current"])
        .arg(format!("--socket={}", server.socket().display()))
        .arg(&location)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a gap was not reported: {stderr}");
    assert!(
        stderr.contains(&lost.to_string()) && stderr.contains("purged"),
        "{stderr}"
    );
    let index = load_index(&location, &RepoOptions::default()).await;
    assert_eq!(index.gaps.len(), 1);
    assert_eq!(index.gaps[0].kind, GapKind::Purged);
    assert_eq!(index.gaps[0].missing, lost);
    // What came after the gap is archived all the same.
    assert_eq!(index.history().union(&lost), gtid_executed(&server).await);
    // The gap is recorded once: the next run goes on from the index.
    let again = until_current(&options).await.unwrap();
    assert!(again.new_gaps.is_empty());
    assert_eq!(
        load_index(&location, &RepoOptions::default())
            .await
            .gaps
            .len(),
        1
    );

    // Replay across it is refused, naming the lost transactions.
    let store = repo::open(&location, &RepoOptions::default()).unwrap();
    let err = fetch_for_replay(
        &store,
        None,
        &first.history,
        &ReplayTarget::Gtids(gtid_executed(&server).await),
        dir.path(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&lost.to_string()) && err.contains("purged"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_archive_in_s3_compressed_and_encrypted_gives_back_the_servers_bytes() {
    let server = server().await;
    let s3 = S3Server::start().await.unwrap();
    let repo = support::s3_options(&s3);
    let location = format!("s3://{}/db1/binlogs", s3.bucket());
    let key = Key::from_file_contents(&[7u8; 32]).unwrap();
    let transform = Transform {
        zstd_level: Some(1),
        key: Some(key.clone()),
    };
    let options = options(&server, location.clone(), repo.clone(), transform);
    let writer = Writer::start(&server);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = until_current(&options).await.unwrap();
    writer.stop().await;
    let index = load_index(&location, &repo).await;
    assert_eq!(index.key_id.as_deref(), Some(key.id()));
    assert_eq!(index.compression.as_deref(), Some("zstd"));
    assert_eq!(index.history(), report.target_gtid_executed.unwrap());

    // Without the key: refused by name, nothing written.
    let store = repo::open(&location, &repo).unwrap();
    let fetched = tempfile::tempdir().unwrap();
    let err = fetch_for_replay(
        &store,
        None,
        &GtidSet::new(),
        &ReplayTarget::Everything,
        fetched.path(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--encrypt-key-file"), "{err}");

    // With it: each file is the server's, byte for byte, up to where it was archived.
    let files = fetch_for_replay(
        &store,
        Some(&key),
        &GtidSet::new(),
        &ReplayTarget::Everything,
        fetched.path(),
    )
    .await
    .unwrap();
    // Every file that holds a transaction (a file of header events only
    // has nothing to replay).
    let holding: Vec<_> = index.files.iter().filter(|f| !f.gtids.is_empty()).collect();
    assert!(!holding.is_empty());
    let fetched_names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for entry in &holding {
        assert!(
            fetched_names.contains(&entry.name),
            "{} not fetched",
            entry.name
        );
    }
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        let entry = index.files.iter().find(|f| f.name == name).unwrap();
        let ours = std::fs::read(file).unwrap();
        let theirs = std::fs::read(server.datadir().join(&entry.name)).unwrap();
        assert_eq!(ours.len() as u64, entry.size);
        assert!(
            without_in_use_flag(theirs).starts_with(&without_in_use_flag(ours)),
            "{} differs from the server's",
            entry.name
        );
    }
    // A segment is not stored in clear.
    let segment = &index.files[0].segments[0];
    let stored = std::fs::read(s3.object_path(&format!("db1/binlogs/{}", segment.path))).unwrap();
    assert!(
        !stored.windows(4).any(|w| w == events::MAGIC),
        "the stored segment is readable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_through_the_running_archiver_drops_only_files_a_kept_backup_covers() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("binlogs").to_string_lossy().into_owned();
    let options = options(
        &server,
        location.clone(),
        RepoOptions::default(),
        Transform::default(),
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = {
        let (options, cancel) = (options.clone(), cancel.clone());
        tokio::spawn(async move { archive_binlogs(&options, Stop::Cancelled(cancel)).await })
    };
    let writer = Writer::start(&server);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // What a backup taken now would hold.
    let backup = gtid_executed(&server).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    writer.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before = load_index(&location, &RepoOptions::default()).await;
    let pruned = options.status.prune(backup.clone()).await.unwrap();
    assert!(
        !pruned.removed.is_empty(),
        "files before the backup should go"
    );
    let after = load_index(&location, &RepoOptions::default()).await;
    assert_eq!(after.files.len() + pruned.removed.len(), before.files.len());
    for file in &before.files[..pruned.removed.len()] {
        assert!(
            file.gtids.is_subset(&backup),
            "{} held transactions after the backup",
            file.name
        );
        for segment in &file.segments {
            assert!(!Path::new(&location).join(&segment.path).exists());
        }
    }
    assert!(after.files[0].previous_gtids.is_subset(&backup));

    // The archiver goes on writing the same index; a restore from the
    // backup still reaches the end.
    server
        .exec("INSERT INTO pitr.log (v) VALUES (3)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cancel.cancel();
    let report = running.await.unwrap().unwrap();
    assert_eq!(report.history, gtid_executed(&server).await);
    let store = repo::open(&location, &RepoOptions::default()).unwrap();
    let fetched = dir.path().join("fetched");
    std::fs::create_dir(&fetched).unwrap();
    let files = fetch_for_replay(&store, None, &backup, &ReplayTarget::Everything, &fetched)
        .await
        .unwrap();
    let (replayable, _) = transactions_in(&files);
    assert_eq!(backup.union(&replayable), gtid_executed(&server).await);
}
