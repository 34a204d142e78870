//! Point-in-time restore against a real MySQL 9.7: one full backup taken
//! under sysbench load, the load going on, a GTID set, a time and a binlog
//! position sampled after it; the binlogs copied, archived by
//! archive-binlogs and purged on the source; apply-log replays them (from
//! the copies or the archive) to each target with the mini instance's own
//! applier, and the restored
//! server must have exactly the expected `gtid_executed` and the same
//! table checksums as a reference replica stopped at that set (`START
//! REPLICA UNTIL SQL_AFTER_GTIDS`). Targets the binlogs cannot reach are
//! refused before anything is built, and a replay that fails names the
//! transaction and leaves the raw backup as it was.

mod support;
use support::{agent, restore_into, text};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use innoxide_agent::binlog::GtidSet;
use innoxide_agent::meta::Manifest;
use innoxide_agent::prepare::pitr::{PitrRecord, read_record};
use innoxide_testkit::oracle::ReferenceReplica;
use innoxide_testkit::{MysqlServer, Sysbench, mysql_prefix};

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

fn mysqld() -> String {
    mysql_prefix()
        .unwrap()
        .join("bin/mysqld")
        .display()
        .to_string()
}

fn set(text: &str) -> GtidSet {
    text.parse().unwrap()
}

async fn backup(server: &MysqlServer, dir: &Path) -> Manifest {
    let socket = server.socket().display().to_string();
    let dir_arg = dir.display().to_string();
    let out = agent(&[
        "backup",
        "--socket",
        &socket,
        "--user",
        "root",
        "--no-timestamp",
        "--backup-dir",
        &dir_arg,
    ])
    .await;
    assert!(
        out.status.success(),
        "backup failed:\n{}",
        text(&out.stderr)
    );
    innoxide_agent::verify::read_manifest(dir).unwrap()
}

/// `apply-log --binlog-dir binlogs` to one target (`--stop-gtid SET`, …).
async fn apply_log_to(dir: &Path, binlogs: &Path, stop: &[&str]) -> Output {
    apply_log_from(dir, "--binlog-dir", binlogs, stop).await
}

/// `apply-log` with the binlogs from `--binlog-dir` or `--binlog-archive`.
async fn apply_log_from(dir: &Path, source: &str, binlogs: &Path, stop: &[&str]) -> Output {
    let (dir, binlogs, mysqld) = (
        dir.display().to_string(),
        binlogs.display().to_string(),
        mysqld(),
    );
    let mut args = vec![
        "apply-log",
        "--backup-dir",
        &dir,
        "--mysqld",
        &mysqld,
        "--use-memory",
        "128M",
        source,
        &binlogs,
    ];
    args.extend_from_slice(stop);
    agent(&args).await
}

/// Copies the server's binlog files (and index) into `to`.
fn copy_binlogs(server: &MysqlServer, to: &Path) -> Vec<String> {
    std::fs::create_dir_all(to).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(server.datadir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("binlog.") {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
            if name != "binlog.index" {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}

/// The GTIDs in `files` (in order) with their original commit times, as
/// the server's own `mysqlbinlog` prints them: an expectation for a time
/// target that does not come from the code under test.
fn commit_times(server: &MysqlServer, dir: &Path, files: &[String]) -> Vec<(String, u64)> {
    let out = std::process::Command::new(server.bin("mysqlbinlog"))
        .args(files.iter().map(|f| dir.join(f)))
        .output()
        .unwrap();
    assert!(out.status.success(), "mysqlbinlog: {}", text(&out.stderr));
    let mut list = Vec::new();
    let mut time = None;
    for line in text(&out.stdout).lines() {
        if let Some(rest) = line.split("original_committed_timestamp=").nth(1) {
            time = rest.split_whitespace().next().and_then(|t| t.parse().ok());
        } else if let Some(rest) = line.strip_prefix("SET @@SESSION.GTID_NEXT= '")
            && let Some((gtid, _)) = rest.split_once('\'')
            && gtid != "AUTOMATIC"
        {
            list.push((gtid.to_owned(), time.take().expect("a GTID event before")));
        }
    }
    list
}

/// The source's binlog position and `gtid_executed` at one instant.
async fn log_status(server: &MysqlServer) -> (String, u64, String) {
    let rows: Vec<(String, u64, String)> = server
        .query_rows(
            "SELECT LOCAL->>'$.binary_log_file', LOCAL->>'$.binary_log_position', \
             LOCAL->>'$.gtid_executed' FROM performance_schema.log_status",
        )
        .await
        .unwrap();
    let (file, pos, gtids) = rows.into_iter().next().unwrap();
    (
        file,
        pos,
        gtids.chars().filter(|c| !c.is_whitespace()).collect(),
    )
}

/// Copies the prepared backup into a new datadir and starts it.
async fn restore(dir: &Path, datadir: &Path, server_id: u32) -> MysqlServer {
    restore_into(dir, datadir, MysqlServer::builder().server_id(server_id)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gtid_set_a_time_and_a_position_are_restored_exactly() {
    let mut steps = Steps::new("pitr");
    let source = MysqlServer::builder()
        .redo_capacity(32 << 20)
        .start()
        .await
        .unwrap();
    let bench = Sysbench::prepare(&source, 4, 5_000).await.unwrap();
    let tables = bench.table_names();
    let table_refs: Vec<&str> = tables.iter().map(String::as_str).collect();
    steps.done("source with 4 x 5k rows");

    let load = bench.run_background(4, Duration::from_secs(24)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backup");
    let manifest = backup(&source, &dir).await;
    steps.done("backup under 4-thread sysbench load");

    // Three targets after the backup, the load going on, with binlog
    // rotations between them so the replay crosses files.
    source.exec("FLUSH BINARY LOGS").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let gtid_target = source.gtid_executed().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    source.exec("FLUSH BINARY LOGS").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let time_target: String = source
        .query_scalar("SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%fZ')")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (position_file, position, position_gtids) = log_status(&source).await;
    let report = load.wait().await.unwrap();
    assert!(report.transactions > 0, "the load ran: {report:?}");
    steps.done("targets sampled, load finished");

    let binlogs = work.path().join("binlogs");
    let files = copy_binlogs(&source, &binlogs);
    assert!(
        files.len() >= 3,
        "the replay crosses binlog files: {files:?}"
    );
    // The expected set for the time: every transaction before the first
    // one committed after it, by mysqlbinlog's reading of the files.
    let time_micros = {
        let t = time::OffsetDateTime::parse(
            &time_target,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        (t.unix_timestamp_nanos() / 1000) as u64
    };
    let mut time_gtids = GtidSet::new();
    for (gtid, committed) in commit_times(&source, &binlogs, &files) {
        if committed > time_micros {
            break;
        }
        time_gtids.union_with(&set(&gtid));
    }
    let backup_set = set(&manifest.gtid_executed);
    let (gtid_set, position_set) = (set(&gtid_target), set(&position_gtids));
    assert!(backup_set.is_subset(&gtid_set) && backup_set != gtid_set);
    assert!(gtid_set.is_subset(&time_gtids) && gtid_set != time_gtids);
    assert!(time_gtids.is_subset(&position_set) && time_gtids != position_set);
    assert!(position_set != set(&source.gtid_executed().await.unwrap()));

    // The reference: a replica of the source stopped at each set in turn.
    let reference = ReferenceReplica::start(&source).await.unwrap();
    let mut expected = BTreeMap::new();
    for point in [&gtid_set, &time_gtids, &position_set] {
        let sums = reference
            .stop_at(&point.to_string(), &table_refs)
            .await
            .unwrap();
        expected.insert(point.to_string(), sums);
    }
    drop(reference);
    steps.done("reference replica stopped at each target");

    // The binlogs archived (compressed), then purged on the source: the
    // time and position restores below read the archive alone.
    let archive = work.path().join("archive");
    let (socket, archive_arg) = (
        source.socket().display().to_string(),
        archive.display().to_string(),
    );
    let out = agent(&[
        "archive-binlogs",
        "--socket",
        &socket,
        "--user",
        "root",
        "--until-current",
        "--compress",
        &archive_arg,
    ])
    .await;
    assert!(
        out.status.success(),
        "archive-binlogs failed:\n{}",
        text(&out.stderr)
    );
    source.exec("FLUSH BINARY LOGS").await.unwrap();
    let (current, _) = source.binlog_position().await.unwrap();
    // The dropped reference replica's dump thread can keep the file it was
    // reading open until it next writes to the gone replica, and PURGE
    // skips a file in use: end such threads first.
    let dumps: Vec<u64> = source
        .query_rows(
            "SELECT PROCESSLIST_ID FROM performance_schema.threads \
             WHERE PROCESSLIST_COMMAND LIKE 'Binlog Dump%'",
        )
        .await
        .unwrap();
    for id in dumps {
        let _ = source.exec(&format!("KILL {id}")).await;
    }
    let mut left: Vec<(String, u64, String)> = Vec::new();
    for _ in 0..50 {
        source
            .exec(&format!("PURGE BINARY LOGS TO '{current}'"))
            .await
            .unwrap();
        left = source.query_rows("SHOW BINARY LOGS").await.unwrap();
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(left.len(), 1, "the source kept {left:?}");
    steps.done("binlogs archived, then purged on the source");

    let position_arg = format!("{position_file}:{position}");
    let targets = [
        (
            "--binlog-dir",
            &binlogs,
            "--stop-gtid",
            gtid_target.as_str(),
            &gtid_set,
        ),
        (
            "--binlog-archive",
            &archive,
            "--stop-datetime",
            time_target.as_str(),
            &time_gtids,
        ),
        (
            "--binlog-archive",
            &archive,
            "--stop-position",
            position_arg.as_str(),
            &position_set,
        ),
    ];
    for (n, (source_flag, logs, flag, value, want)) in targets.into_iter().enumerate() {
        let out = apply_log_from(&dir, source_flag, logs, &[flag, value]).await;
        assert!(
            out.status.success(),
            "apply-log {flag} {value} failed:\n{}",
            text(&out.stderr)
        );
        println!(
            "{}",
            text(&out.stderr).lines().rev().nth(1).unwrap_or_default()
        );
        innoxide_agent::verify::verify_dir(&dir).expect("the raw backup is unchanged");
        let record: PitrRecord = read_record(&dir.join("prepared")).unwrap().unwrap();
        assert_eq!(set(&record.gtid_executed), *want, "{flag} {value}");
        assert_eq!(
            record.transactions_replayed,
            want.subtract(&backup_set).count()
        );
        let info = std::fs::read_to_string(dir.join("prepared/xtrabackup_binlog_info")).unwrap();
        assert!(info.starts_with(&format!(
            "{}\t{}\t",
            record.binlog_file, record.binlog_position
        )));
        if flag == "--stop-position" {
            assert_eq!(
                (record.binlog_file.as_str(), record.binlog_position),
                (position_file.as_str(), position)
            );
        }
        steps.done(&format!("apply-log {flag}"));

        let datadir = work.path().join(format!("restored-{n}"));
        let mut restored = restore(&dir, &datadir, 10 + n as u32).await;
        let restored_set = set(&restored.gtid_executed().await.unwrap());
        assert_eq!(restored_set, *want, "{flag} {value}: gtid_executed");
        let sums = restored.checksum_tables(&table_refs).await.unwrap();
        assert_eq!(
            sums,
            expected[&want.to_string()],
            "{flag} {value}: checksums"
        );
        restored.stop().await.unwrap();
        drop(restored);
        std::fs::remove_dir_all(&datadir).unwrap();
        std::fs::remove_dir_all(dir.join("prepared")).unwrap();
        steps.done(&format!("restored to {flag}: exact"));
    }

    // Beyond the binlogs or the archive: refused before anything is built.
    let source_uuid: String = source.query_scalar("SELECT @@server_uuid").await.unwrap();
    let beyond = format!("{source_uuid}:1-{}", position_set.count() + 1_000_000);
    let unknown_file = format!("{}:4", files.last().unwrap().replace(".0", ".9"));
    for (source_flag, logs) in [("--binlog-dir", &binlogs), ("--binlog-archive", &archive)] {
        for stop in [
            ["--stop-gtid", beyond.as_str()],
            ["--stop-datetime", "2099-01-01T00:00:00Z"],
            ["--stop-position", unknown_file.as_str()],
        ] {
            let out = apply_log_from(&dir, source_flag, logs, &stop).await;
            let stderr = text(&out.stderr);
            assert!(!out.status.success(), "{source_flag} {stop:?} was accepted");
            assert!(
                [
                    "do not have",
                    "does not hold",
                    "beyond",
                    "past its end",
                    "not among",
                    "no binlog file"
                ]
                .iter()
                .any(|why| stderr.contains(why)),
                "{source_flag} {stop:?}: {stderr}"
            );
            assert!(!dir.join("prepared").exists() && !dir.join("prepared.partial").exists());
        }
    }
    innoxide_agent::verify::verify_dir(&dir).expect("the raw backup is unchanged");
    steps.done("targets beyond the binlogs and the archive refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gap_is_refused_and_a_failing_transaction_is_named() {
    let mut steps = Steps::new("pitr failures");
    let source = MysqlServer::builder()
        .redo_capacity(32 << 20)
        .start()
        .await
        .unwrap();
    source
        .exec(
            "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v INT); \
             INSERT INTO app.t VALUES (1, 1), (2, 2)",
        )
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backup");
    let manifest = backup(&source, &dir).await;
    // After the backup: a row the binlog never saw, then a logged update
    // of it, which a replay of the binlog cannot apply.
    source
        .exec(
            "INSERT INTO app.t VALUES (3, 3); FLUSH BINARY LOGS; INSERT INTO app.t VALUES (4, 4); \
             FLUSH BINARY LOGS; SET sql_log_bin = 0; INSERT INTO app.t VALUES (99, 0); \
             SET sql_log_bin = 1; UPDATE app.t SET v = 1 WHERE id = 99",
        )
        .await
        .unwrap();
    let last = source.gtid_executed().await.unwrap();
    let binlogs = work.path().join("binlogs");
    let files = copy_binlogs(&source, &binlogs);
    steps.done("backup, then binlogs with an unreplayable update");

    // A missing file in the middle is a gap, named by its transactions.
    let hidden = work.path().join("hidden");
    let middle = &files[files.len() - 2];
    std::fs::rename(binlogs.join(middle), &hidden).unwrap();
    let out = apply_log_to(&dir, &binlogs, &["--stop-gtid", &last]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("gap in the binlogs"), "{stderr}");
    assert!(!dir.join("prepared.partial").exists());
    std::fs::rename(&hidden, binlogs.join(middle)).unwrap();

    // A set that skips a transaction cannot be reached in binlog order.
    let uuid: String = source.query_scalar("SELECT @@server_uuid").await.unwrap();
    let backup_set = set(&manifest.gtid_executed);
    let backup_last = backup_set.intervals(backup_set.tsids().next().unwrap())[0].1;
    let skipping = format!("{uuid}:1-{backup_last}:{}", backup_last + 2);
    let out = apply_log_to(&dir, &binlogs, &["--stop-gtid", &skipping]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot be reached"),
        "{}",
        text(&out.stderr)
    );
    steps.done("a gap and an unreachable set refused up front");

    // The update of row 99 fails in the applier: named, raw backup intact.
    let out = apply_log_to(&dir, &binlogs, &["--stop-gtid", &last]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "the replay should fail");
    let failed = format!("{uuid}:{}", set(&last).count());
    assert!(
        stderr.contains(&format!("failed at transaction {failed}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("1032") || stderr.contains("find record"),
        "{stderr}"
    );
    assert!(!dir.join("prepared").exists());
    assert!(dir.join("prepared.partial").exists());
    innoxide_agent::verify::verify_dir(&dir).expect("the raw backup is unchanged");
    // One transaction before it is reachable, after --force.
    let before: String = format!("{uuid}:1-{}", set(&last).count() - 1);
    let out = apply_log_to(&dir, &binlogs, &["--force", "--stop-gtid", &before]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.join("prepared.relay").exists());
    steps.done("a failing transaction named; the one before restored");
}

/// A GTID replica, backed up and restored to a point with its own binlogs,
/// must be able to replicate again: the oracle's step 3 makes it a replica
/// of the source (`CHANGE REPLICATION SOURCE … SOURCE_AUTO_POSITION=1`,
/// `START REPLICA`) and it must catch up with no error. The replay's
/// channel and relay folder must leave no trace in the default channel's
/// relay log metadata (issue #17: START REPLICA failed with ERROR 1872).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_restored_to_a_point_replicates_again() {
    let mut steps = Steps::new("pitr replica");
    let source = MysqlServer::builder()
        .redo_capacity(32 << 20)
        .start()
        .await
        .unwrap();
    let replica = MysqlServer::builder()
        .server_id(2)
        .redo_capacity(32 << 20)
        .start()
        .await
        .unwrap();
    source
        .exec(
            "SET sql_log_bin = 0; \
             CREATE USER 'repl'@'%' IDENTIFIED WITH caching_sha2_password BY 'Repl-pass-1'; \
             GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'; SET sql_log_bin = 1",
        )
        .await
        .unwrap();
    replica
        .exec(&format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT={}, \
             SOURCE_USER='repl', SOURCE_PASSWORD='Repl-pass-1', GET_SOURCE_PUBLIC_KEY=1, \
             SOURCE_AUTO_POSITION=1; START REPLICA",
            source.port()
        ))
        .await
        .unwrap();
    let bench = Sysbench::prepare(&source, 2, 2_000).await.unwrap();
    let tables = bench.table_names();
    let caught_up = |set: String| {
        let replica = &replica;
        async move {
            let waited: i64 = replica
                .query_scalar(&format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{set}', 120)"))
                .await
                .unwrap();
            assert_eq!(waited, 0, "the replica did not reach {set}");
        }
    };
    caught_up(source.gtid_executed().await.unwrap()).await;
    steps.done("source and GTID replica, 2 x 2k rows");

    // The backup of the replica falls while it applies the source's load;
    // the target is a set of the source's after it, the load going on.
    let load = bench.run_background(2, Duration::from_secs(8)).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("backup");
    let manifest = backup(&replica, &dir).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    replica.exec("FLUSH BINARY LOGS").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let target = source.gtid_executed().await.unwrap();
    let report = load.wait().await.unwrap();
    assert!(report.transactions > 0, "the load ran: {report:?}");
    caught_up(source.gtid_executed().await.unwrap()).await;
    assert!(set(&manifest.gtid_executed).is_subset(&set(&target)));
    assert_ne!(set(&manifest.gtid_executed), set(&target));
    steps.done("backup of the replica under load, target sampled");

    // The replica's own binlogs (they hold the source's GTIDs).
    let binlogs = work.path().join("binlogs");
    copy_binlogs(&replica, &binlogs);
    let out = apply_log_to(&dir, &binlogs, &["--stop-gtid", &target]).await;
    assert!(out.status.success(), "apply-log:\n{}", text(&out.stderr));
    innoxide_agent::verify::verify_dir(&dir).expect("the raw backup is unchanged");
    assert!(!dir.join(innoxide_agent::prepare::pitr::RELAY_DIR).exists());
    steps.done("apply-log --stop-gtid from the replica's binlogs");

    // Restored as the replica is restored in place: its replication
    // metadata is the backup's, nothing starts before the oracle says so.
    let datadir = work.path().join("restored");
    let restored = restore_into(
        &dir,
        &datadir,
        MysqlServer::builder()
            .server_id(20)
            .extra("skip_replica_start=ON"),
    )
    .await;
    steps.done("copy-back, start");
    // The channel is the replica's: its source, auto-positioned.
    let channel: Vec<(String, u16, u8)> = restored
        .query_rows(
            "SELECT Host, Port, Enabled_auto_position FROM mysql.slave_master_info \
             WHERE Channel_name = ''",
        )
        .await
        .unwrap();
    assert_eq!(channel, [("127.0.0.1".to_owned(), source.port(), 1)]);
    // Its applier metadata was reset (the relay log it named is not in
    // the backup): no row, or one on the restored server's own relay log.
    let basename: String = restored
        .query_scalar("SELECT @@relay_log_basename")
        .await
        .unwrap();
    let own = Path::new(&basename).file_name().unwrap().to_string_lossy();
    let relay: Vec<String> = restored
        .query_rows("SELECT Relay_log_name FROM mysql.slave_relay_log_info")
        .await
        .unwrap();
    assert!(
        relay.iter().all(|name| name.contains(&format!("{own}."))),
        "the applier is not on the restored server's relay log: {relay:?}"
    );

    let verdict = innoxide_testkit::oracle::check(innoxide_testkit::oracle::OracleInput {
        source: &source,
        restored: &restored,
        backup_gtid_set: &target,
        tables: &tables,
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the oracle could not judge: {e:#}\nthe restored server's log:\n{}",
            restored.error_log_tail(40)
        )
    });
    println!("{verdict}");
    assert!(
        verdict.passed(),
        "{verdict}\nthe restored server's log:\n{}",
        restored.error_log_tail(40)
    );
    steps.done("oracle: exact at the target, replicates again");
}
