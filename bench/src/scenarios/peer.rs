//! Scenario 7: the peer reference. mariadb-backup `--backup`/`--prepare` on
//! MariaDB 10.11 (Debian's package, a private instance) with a sysbench
//! dataset of the same tables × rows, measured the way scenarios 1–3 measure
//! Innoxide: idle backup vs `cp -a`, TPS under load, prepare time. A
//! different server: compare the ratios, not the absolute numbers.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use super::{Bench, MIN_LOAD_WINDOW, cp_a};
use crate::child::{Cmd, Run, dir_bytes, remove_dir};
use crate::mariadb::{MariaDb, PeerSysbench};
use crate::results::{Metric, Scenario, Unit};
use crate::stats::Series;

pub async fn run(
    b: &mut Bench,
    versions: &mut std::collections::BTreeMap<String, String>,
) -> Result<Scenario> {
    let mut s = Scenario::new(
        "peer",
        "7. Peer reference: mariadb-backup on MariaDB 10.11 (a different server)",
        "A private MariaDB 10.11 instance with the same buffer pool, redo size and durability \
         (binlog, sync_binlog=1, flush at commit) gets a sysbench dataset of the same tables × rows; \
         then scenarios 1–3 again with `mariadb-backup --backup` / `--prepare` (same `--parallel`). \
         MariaDB is not MySQL 9.7: read the ratios, not the absolute times.",
    );
    versions.insert("mariadb-backup".into(), mariadb_backup_version().await);
    let mut server = MariaDb::start(b.opts.buffer_pool, b.opts.redo_capacity)
        .await
        .context("starting MariaDB (scripts/testbed.sh bench-peers installs it)")?;
    versions.insert("mariadb".into(), server.version().await);

    tracing::info!("7. sysbench prepare on MariaDB");
    let started = Instant::now();
    let sysbench = PeerSysbench::prepare(
        &server,
        b.opts.workload_script(),
        b.plan.tables,
        b.plan.rows_per_table,
    )
    .await?;
    let prepare_s = started.elapsed().as_secs_f64();
    server.sql("FLUSH BINARY LOGS").await?;
    let status = server.sql("SHOW MASTER STATUS").await?;
    let current = status
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    server
        .sql(&format!("PURGE BINARY LOGS TO '{current}'"))
        .await?;
    settle(&server).await?;
    let datadir_bytes = dir_bytes(server.datadir());
    s.note(format!(
        "MariaDB dataset: prepared in {prepare_s:.0} s; datadir {} (MySQL 9.7: {}).",
        Unit::Bytes.format(datadir_bytes as f64),
        Unit::Bytes.format(b.dataset.datadir_bytes as f64)
    ));

    let (mut idle, mut copy, mut rss) = (Series::new(), Series::new(), Series::new());
    for i in 0..b.repeat() {
        tracing::info!(run = i + 1, of = b.repeat(), "7. mariadb-backup, idle");
        let dir = b.scratch(&format!("mb-idle-{i}"));
        let run = backup(b, &server, &dir, &format!("mariadb-backup-idle-{i}")).await;
        if let Ok(r) = &run {
            rss.push(r.peak_rss as f64);
        }
        idle.record(run.map(|r| r.seconds()));
        remove_dir(&dir);
    }
    server.stop().await?;
    for i in 0..b.repeat() {
        let dst = b.scratch(&format!("mb-cp-{i}"));
        let run = b
            .runner
            .run(&format!("mariadb-cp-a-{i}"), &cp_a(server.datadir(), &dst))
            .await;
        copy.record(run.map(|r| r.seconds()));
        remove_dir(&dst);
    }
    server.start_again().await?;

    tracing::info!("7. warming up the load on MariaDB (10 s)");
    let threads = b.opts.load_threads;
    let warm = sysbench.run_background(threads)?;
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    warm.stop().await?;
    let (mut during, mut without, mut load_times) = (Series::new(), Series::new(), Series::new());
    let mut kept = Vec::new();
    for i in 0..b.repeat() {
        tracing::info!(run = i + 1, of = b.repeat(), "7. mariadb-backup under load");
        let dir = b.scratch(&format!("mb-load-{i}"));
        let load = sysbench.run_background(threads)?;
        let started = Instant::now();
        let run = backup(b, &server, &dir, &format!("mariadb-backup-load-{i}")).await;
        if let Some(rest) = MIN_LOAD_WINDOW.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        let window = started.elapsed();
        let tps = load.stop().await;
        match (run, tps) {
            (Ok(run), Ok(tps)) => {
                load_times.push(run.seconds());
                during.push(tps);
                kept.push(dir);
            }
            (run, tps) => {
                let why = run
                    .err()
                    .or(tps.err())
                    .map(|e| format!("{e:#}"))
                    .unwrap_or_default();
                load_times.fail(why.clone());
                during.fail(why);
                remove_dir(&dir);
                continue;
            }
        }
        let load = sysbench.run_background(threads)?;
        tokio::time::sleep(window).await;
        without.record(load.stop().await);
    }
    server.stop().await?;

    let (mut prepare, mut rates) = (Series::new(), Series::new());
    for (i, dir) in kept.iter().enumerate() {
        tracing::info!(run = i + 1, of = kept.len(), "7. mariadb-backup --prepare");
        let redo = redo_bytes(dir);
        let cmd = Cmd::new("mariadb-backup")
            .arg("--prepare")
            .arg(format!("--target-dir={}", dir.display()));
        match b
            .runner
            .run(&format!("mariadb-backup-prepare-{i}"), &cmd)
            .await
        {
            Ok(run) => {
                prepare.push(run.seconds());
                if let Some(bytes) = redo {
                    rates.push(bytes as f64 / run.seconds());
                }
            }
            Err(e) => prepare.fail(format!("{e:#}")),
        }
        remove_dir(dir);
    }
    if kept.is_empty() {
        prepare.fail("no backup under load to prepare");
    }

    s.push(
        Metric::from_series(
            "idle",
            "mariadb-backup --backup, idle",
            Unit::Seconds,
            &idle,
        )
        .peer(),
    );
    s.push(
        Metric::from_series(
            "cp",
            "cp -a of the stopped MariaDB datadir (+ fsync)",
            Unit::Seconds,
            &copy,
        )
        .peer(),
    );
    s.push(
        Metric::from_series(
            "tps_without",
            "MariaDB: sysbench TPS, no backup",
            Unit::Tps,
            &without,
        )
        .peer(),
    );
    s.push(
        Metric::from_series(
            "tps_during",
            "MariaDB: TPS during mariadb-backup",
            Unit::Tps,
            &during,
        )
        .peer(),
    );
    s.push(
        Metric::from_series(
            "load_backup",
            "mariadb-backup under load: time",
            Unit::Seconds,
            &load_times,
        )
        .peer(),
    );
    s.push(
        Metric::from_series(
            "prepare",
            "mariadb-backup --prepare: time",
            Unit::Seconds,
            &prepare,
        )
        .peer(),
    );
    s.push(
        Metric::from_series(
            "redo_rate",
            "--prepare: redo replayed per second",
            Unit::BytesPerSecond,
            &rates,
        )
        .peer(),
    );
    s.push(
        Metric::from_series(
            "rss",
            "mariadb-backup --backup: peak RSS",
            Unit::Bytes,
            &rss,
        )
        .peer(),
    );
    s.ratio("vs_cp", "MariaDB: backup time ÷ cp -a", "idle", "cp")
        .subject = crate::results::Subject::Peer;
    let r = s.ratio(
        "tps_ratio",
        "MariaDB: TPS during backup ÷ without",
        "tps_during",
        "tps_without",
    );
    r.subject = crate::results::Subject::Peer;
    r.higher_is_better = true;
    Ok(s)
}

async fn backup(b: &Bench, server: &MariaDb, dir: &Path, label: &str) -> Result<Run> {
    let cmd = Cmd::new("mariadb-backup")
        .arg(format!(
            "--defaults-file={}",
            server.defaults_file().display()
        ))
        .arg("--backup")
        .arg(format!("--socket={}", server.socket().display()))
        .arg("--user=root")
        .arg(format!("--parallel={}", b.agent.parallel))
        .arg(format!("--target-dir={}", dir.display()));
    b.runner.run(label, &cmd).await
}

/// Redo a prepare replays: `last_lsn − to_lsn` of `xtrabackup_checkpoints`.
fn redo_bytes(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("xtrabackup_checkpoints")).ok()?;
    let value = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_start_matches('=').trim().parse().ok())
    };
    value("last_lsn")?.checked_sub(value("to_lsn")?)
}

async fn mariadb_backup_version() -> String {
    match tokio::process::Command::new("mariadb-backup")
        .arg("--version")
        .output()
        .await
    {
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines().last().unwrap_or_default().trim().to_string()
        }
        Err(e) => format!("not installed ({e}): scripts/testbed.sh bench-peers"),
    }
}

/// As [`super::settle`], for MariaDB.
async fn settle(server: &MariaDb) -> Result<()> {
    server
        .sql("SET GLOBAL innodb_max_dirty_pages_pct = 0")
        .await?;
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    while Instant::now() < deadline {
        let dirty = server
            .sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")
            .await?;
        if dirty.trim() == "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    server
        .sql("SET GLOBAL innodb_max_dirty_pages_pct = DEFAULT")
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redo_comes_from_xtrabackup_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("xtrabackup_checkpoints"),
            "backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 1000\nlast_lsn = 5000\n",
        )
        .unwrap();
        assert_eq!(redo_bytes(dir.path()), Some(4000));
        assert_eq!(redo_bytes(&dir.path().join("none")), None);
    }
}
