//! Point-in-time restore from a repository of several backups, against a
//! real MySQL 9.7: three full backups with writes between them, the
//! binlogs archived by archive-binlogs and purged on the source; `apply-log
//! --backup-repository` must choose, for a GTID set, a time and a position
//! between the backups, the newest backup before the target, say so, and
//! restore exactly (the restored server's `gtid_executed` and table
//! checksums equal the source's at that point, sampled while it was
//! there). A target before the first backup is refused naming the oldest
//! backup's point; the repository (with the archive in it, as the
//! operator keeps it) is never written to, and prune takes the archive
//! for no orphan.

mod support;
use support::{agent, restore_into, text};

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use innoxide_agent::binlog::GtidSet;
use innoxide_testkit::{MysqlServer, mysql_prefix};

const TABLES: &[&str] = &["app.t"];

fn set(text: &str) -> GtidSet {
    text.parse().unwrap()
}

fn mysqld() -> String {
    mysql_prefix()
        .unwrap()
        .join("bin/mysqld")
        .display()
        .to_string()
}

/// A full backup into `repository/name`, compressed (the fetch must
/// undo it).
async fn backup(server: &MysqlServer, repository: &Path, name: &str) {
    let socket = server.socket().display().to_string();
    let dir = repository.join(name).display().to_string();
    let out = agent(&[
        "backup",
        "--socket",
        &socket,
        "--user",
        "root",
        "--compress",
        "--no-timestamp",
        "--backup-dir",
        &dir,
    ])
    .await;
    assert!(
        out.status.success(),
        "backup {name}:\n{}",
        text(&out.stderr)
    );
}

/// Ten single-row transactions.
async fn write(server: &MysqlServer, batch: u32) {
    for i in 0..10 {
        server
            .exec(&format!(
                "INSERT INTO app.t (batch, v) VALUES ({batch}, {i})"
            ))
            .await
            .unwrap();
    }
}

/// What the source holds now: its `gtid_executed` and table checksums.
async fn point(server: &MysqlServer) -> (GtidSet, std::collections::BTreeMap<String, u64>) {
    (
        set(&server.gtid_executed().await.unwrap()),
        server.checksum_tables(TABLES).await.unwrap(),
    )
}

async fn utc_now(server: &MysqlServer) -> String {
    server
        .query_scalar("SELECT DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%dT%H:%i:%s.%fZ')")
        .await
        .unwrap()
}

/// `apply-log --backup-repository` into `work`, to one target.
async fn apply_log(repository: &Path, work: &Path, archive: &Path, stop: &[&str]) -> Output {
    let (repository, work, archive, mysqld) = (
        repository.display().to_string(),
        work.display().to_string(),
        archive.display().to_string(),
        mysqld(),
    );
    let mut args = vec![
        "apply-log",
        "--backup-repository",
        &repository,
        "--backup-dir",
        &work,
        "--binlog-archive",
        &archive,
        "--mysqld",
        &mysqld,
        "--use-memory",
        "128M",
    ];
    args.extend_from_slice(stop);
    agent(&args).await
}

/// copy-back of the prepared `work` into a new datadir, started.
async fn restore(work: &Path, datadir: &Path, server_id: u32) -> MysqlServer {
    restore_into(work, datadir, MysqlServer::builder().server_id(server_id)).await
}

/// A snapshot of the repository's files (names and sizes): it must not change.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                all.push((entry.path().display().to_string(), meta.len()));
            }
        }
    }
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_newest_backup_before_the_target_is_chosen_and_restored_exactly() {
    let started = Instant::now();
    let source = MysqlServer::builder()
        .redo_capacity(32 << 20)
        .start()
        .await
        .unwrap();
    source
        .exec(
            "CREATE DATABASE app; CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, \
             batch INT NOT NULL, v INT NOT NULL)",
        )
        .await
        .unwrap();
    write(&source, 0).await;
    let (before_first, _) = point(&source).await;
    let time_before_first = utc_now(&source).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The first backup holds more than `before_first`.
    write(&source, 100).await;

    let work = tempfile::tempdir().unwrap();
    let repository = work.path().join("repository");
    // Three backups, with writes, rotations and sampled targets between.
    backup(&source, &repository, "b1").await;
    source.exec("FLUSH BINARY LOGS").await.unwrap();
    write(&source, 1).await;
    let after_b1 = point(&source).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let time_after_b1 = utc_now(&source).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    write(&source, 2).await;

    backup(&source, &repository, "b2").await;
    write(&source, 3).await;
    source.exec("FLUSH BINARY LOGS").await.unwrap();
    write(&source, 4).await;
    let (position_file, position) = source.binlog_position().await.unwrap();
    let after_b2 = point(&source).await;
    write(&source, 5).await;

    backup(&source, &repository, "b3").await;
    write(&source, 6).await;
    let after_b3 = point(&source).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let time_after_b3 = utc_now(&source).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A commit after the time proves the binlogs reach past it.
    write(&source, 7).await;
    println!("backups and writes: {:.1?}", started.elapsed());

    // The binlogs archived beside the backups (the operator's layout),
    // then purged on the source: replay reads the archive.
    let archive = repository.join("binlogs");
    let socket = source.socket().display().to_string();
    let out = agent(&[
        "archive-binlogs",
        "--socket",
        &socket,
        "--user",
        "root",
        "--until-current",
        &archive.display().to_string(),
    ])
    .await;
    assert!(
        out.status.success(),
        "archive-binlogs:\n{}",
        text(&out.stderr)
    );
    source.exec("FLUSH BINARY LOGS").await.unwrap();
    let (current, _) = source.binlog_position().await.unwrap();
    source
        .exec(&format!("PURGE BINARY LOGS TO '{current}'"))
        .await
        .unwrap();
    let repository_before = listing(&repository);
    // The archive is neither a backup nor an orphan to prune.
    let out = agent(&[
        "prune",
        "--dry-run",
        "--orphans-older-than",
        "0s",
        &repository.display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "prune:\n{}", text(&out.stderr));
    assert!(text(&out.stdout).trim().is_empty(), "{}", text(&out.stdout));

    let position_arg = format!("{position_file}:{position}");
    let (gtid_b1, gtid_b2) = (after_b1.0.to_string(), after_b2.0.to_string());
    let cases = [
        ("--stop-gtid", gtid_b1.as_str(), "b1", &after_b1),
        ("--stop-datetime", time_after_b1.as_str(), "b1", &after_b1),
        ("--stop-position", position_arg.as_str(), "b2", &after_b2),
        ("--stop-datetime", time_after_b3.as_str(), "b3", &after_b3),
    ];
    for (n, (flag, value, base, (want, sums))) in cases.into_iter().enumerate() {
        let dir = work.path().join(format!("work-{n}"));
        let out = apply_log(&repository, &dir, &archive, &[flag, value]).await;
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{flag} {value}:\n{stderr}");
        assert!(
            stderr.contains(&format!("base backup {base} (")),
            "{flag} {value} should start from {base}:\n{stderr}"
        );
        let record = innoxide_agent::prepare::pitr::read_record(&dir.join("prepared"))
            .unwrap()
            .unwrap();
        assert_eq!(set(&record.gtid_executed), *want, "{flag} {value}");
        let datadir = work.path().join(format!("restored-{n}"));
        let mut restored = restore(&dir, &datadir, 20 + n as u32).await;
        assert_eq!(
            set(&restored.gtid_executed().await.unwrap()),
            *want,
            "{flag} {value}: the restored gtid_executed"
        );
        assert_eq!(
            restored.checksum_tables(TABLES).await.unwrap(),
            *sums,
            "{flag} {value}: the restored rows"
        );
        restored.stop().await.unwrap();
        drop(restored);
        std::fs::remove_dir_all(&datadir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        println!("{flag} from {base}: exact ({:.1?})", started.elapsed());
    }

    // Before the first backup: refused, naming the oldest backup's point,
    // nothing fetched.
    let before_first = before_first.to_string();
    for stop in [
        ["--stop-gtid", before_first.as_str()],
        ["--stop-datetime", time_before_first.as_str()],
    ] {
        let dir = work.path().join("refused");
        let out = apply_log(&repository, &dir, &archive, &stop).await;
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{stop:?} was accepted");
        assert!(
            stderr.contains("no full backup is at or before")
                && stderr.contains("oldest full backup: b1 ("),
            "{stop:?}: {stderr}"
        );
        assert!(!dir.exists(), "{stop:?}: something was fetched");
    }
    // A work folder holding another backup is never overwritten.
    let dir = work.path().join("work-b1");
    let out = apply_log(&repository, &dir, &archive, &["--stop-gtid", &gtid_b1]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = apply_log(&repository, &dir, &archive, &["--stop-gtid", &gtid_b2]).await;
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("holds another backup"),
        "{stderr}"
    );
    // The same target again: prepared already, nothing to do.
    let out = apply_log(&repository, &dir, &archive, &["--stop-gtid", &gtid_b1]).await;
    assert!(
        out.status.success() && text(&out.stderr).contains("nothing to do"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        listing(&repository),
        repository_before,
        "the repository was written to"
    );
    println!("done: {:.1?}", started.elapsed());
}
