//! Scenario 9: point-in-time replay speed. A backup of the idle source,
//! then a sysbench write load; the binlogs it wrote are replayed onto the
//! backup two ways, each ending at the same GTID set:
//! `apply-log --binlog-dir --stop-gtid` (the mini instance's own applier,
//! parallel workers, its time as the agent records it in
//! `prepared/innoxide_pitr.json`) and the usual manual way, `mysqlbinlog
//! FILES | mysql` into a server restored from the same backup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::Bench;
use crate::child::{Cmd, remove_dir};
use crate::results::{Metric, Scenario, Unit};
use crate::stats::Series;

pub async fn run(b: &mut Bench) -> Result<Scenario> {
    let mut s = Scenario::new(
        "replay",
        "9. Point-in-time replay",
        "A backup of the idle source, then a sysbench write load; the binlogs the load wrote are \
         replayed onto that backup up to the source's final GTID set by `innoxide-agent apply-log \
         --binlog-dir --stop-gtid` (the server's own applier in the recovery instance, parallel \
         workers) and by `mysqlbinlog FILES | mysql` into a server restored from the same \
         backup. Transactions per second of the replay alone (the agent's recovery and shutdown, \
         the yardstick's restore and start are not counted).",
    );
    let backup = b.scratch("replay-backup");
    let socket = b.source.socket().to_owned();
    b.agent
        .backup(
            &b.runner,
            "replay-backup",
            &socket,
            &crate::agent::BackupTarget {
                location: backup.display().to_string(),
                ..Default::default()
            },
        )
        .await
        .context("the backup the replay starts from")?;
    let seconds = if b.plan.label == "smoke" { 10 } else { 60 };
    b.sysbench
        .run(b.opts.load_threads, Duration::from_secs(seconds))
        .await
        .context("the write load whose binlogs are replayed")?;
    let target = b.source.gtid_executed().await?;
    let binlogs = b.scratch("replay-binlogs");
    let manifest = manifest(&backup)?;
    let (from_file, from_position) = binlog_point(&manifest)?;
    let files = copy_binlogs(b.source.datadir(), &binlogs, &from_file)?;
    let backup_set = manifest["gtid_executed"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let transactions = count(&target)? - count(&backup_set)?;
    tracing::info!(transactions, files = files.len(), "9. replay");

    let (mut ours, mut ours_total, mut theirs) = (Series::new(), Series::new(), Series::new());
    for i in 0..b.repeat() {
        remove_dir(&backup.join("prepared"));
        let cmd = Cmd::new(&b.agent.bin)
            .arg("apply-log")
            .arg("--backup-dir")
            .arg(&backup)
            .arg("--mysqld")
            .arg(b.mysqld())
            .arg("--binlog-dir")
            .arg(&binlogs)
            .arg("--stop-gtid")
            .arg(&target);
        match b.runner.run(&format!("replay-apply-log-{i}"), &cmd).await {
            Ok(run) => {
                ours_total.push(run.seconds());
                ours.record(replay_seconds(&backup).map(|s| transactions as f64 / s));
            }
            Err(e) => {
                let why = format!("{e:#}");
                ours.fail(why.clone());
                ours_total.fail(why);
            }
        }
        theirs.record(
            mysqlbinlog_into_a_restore(b, &backup, &files, from_position, &target, i)
                .await
                .map(|s| transactions as f64 / s),
        );
    }
    remove_dir(&backup);
    remove_dir(&binlogs);

    s.push(
        Metric::from_series(
            "replay_tps",
            "Innoxide apply-log replay: transactions/s",
            Unit::Tps,
            &ours,
        )
        .higher_is_better(),
    );
    s.push(
        Metric::from_series(
            "mysqlbinlog_tps",
            "mysqlbinlog | mysql: transactions/s",
            Unit::Tps,
            &theirs,
        )
        .higher_is_better(),
    );
    s.ratio(
        "replay_speedup",
        "replay TPS ÷ mysqlbinlog | mysql TPS",
        "replay_tps",
        "mysqlbinlog_tps",
    );
    s.push(Metric::from_series(
        "replay_apply_log_time",
        "Innoxide apply-log to the GTID set: whole time (recovery + replay + shutdown)",
        Unit::Seconds,
        &ours_total,
    ));
    s.push(Metric::new(
        "replay_transactions",
        "Transactions replayed",
        Unit::Count,
        crate::stats::Outcome::Measured(
            crate::stats::Stats::of(&[transactions as f64]).expect("one value"),
        ),
    ));
    Ok(s)
}

/// The load's binlog files (in order) copied into `to`.
/// The source's binlogs from `first` (the backup's file) on: both
/// replays get only what follows the backup, not the dataset's load before
/// it (gigabytes at full size, which `mysqlbinlog | mysql` would push
/// through the client only for the server to skip them).
fn copy_binlogs(datadir: &Path, to: &Path, first: &str) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(to)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(datadir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Same basename and zero-padded width: names order as numbers.
        if name.starts_with("binlog.0") && name.as_str() >= first {
            let dest = to.join(&name);
            std::fs::copy(entry.path(), &dest)?;
            files.push(dest);
        }
    }
    files.sort();
    Ok(files)
}

/// The backup's manifest, `innoxide.json`.
fn manifest(backup: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(backup.join("innoxide.json"))?;
    Ok(serde_json::from_str(&text)?)
}

/// The backup's binlog coordinates (file, position).
fn binlog_point(manifest: &serde_json::Value) -> Result<(String, u64)> {
    let file = manifest["binlog_file"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(!file.is_empty(), "the backup names no binlog file");
    Ok((file, manifest["binlog_position"].as_u64().unwrap_or(4)))
}

fn count(set: &str) -> Result<u64> {
    innoxide_testkit::gtid_count(set)
}

/// The applier's own time, as apply-log recorded it.
fn replay_seconds(backup: &Path) -> Result<f64> {
    let path = backup.join("prepared").join("innoxide_pitr.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    json["replay_seconds"]
        .as_f64()
        .filter(|s| *s > 0.0)
        .with_context(|| format!("no replay_seconds in {}", path.display()))
}

/// The yardstick: the backup restored as it was taken (plain apply-log on
/// a copy, copy-back, start), then `mysqlbinlog FILES | mysql` timed;
/// checked to end at `target`.
async fn mysqlbinlog_into_a_restore(
    b: &Bench,
    backup: &Path,
    files: &[PathBuf],
    from_position: u64,
    target: &str,
    i: u32,
) -> Result<f64> {
    let copy = b.scratch(&format!("replay-plain-{i}"));
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(backup)
        .arg(&copy)
        .status()?;
    if !status.success() {
        bail!("cp -a {} failed", backup.display());
    }
    remove_dir(&copy.join("prepared"));
    let datadir = b.scratch(&format!("replay-datadir-{i}"));
    let result = async {
        b.agent
            .apply_log(
                &b.runner,
                &format!("replay-plain-apply-log-{i}"),
                &copy,
                &b.mysqld(),
            )
            .await?;
        b.agent
            .copy_back(&b.runner, &format!("replay-copy-back-{i}"), &copy, &datadir)
            .await?;
        let mut server = b
            .server_builder()
            .server_id(300 + i)
            .existing_datadir(&datadir)
            .start()
            .await?;
        let pipe = Cmd::new("sh").args(
            [
                "-c".to_owned(),
                r#"m="$1"; c="$2"; d="$3"; shift 3; "$m" "$@" | "$c" --defaults-file="$d""#
                    .to_owned(),
                "replay".to_owned(),
                b.source.bin("mysqlbinlog").display().to_string(),
                b.source.bin("mysql").display().to_string(),
                server.defaults_file().display().to_string(),
                // The first file from the backup's position on.
                format!("--start-position={from_position}"),
            ]
            .into_iter()
            .chain(files.iter().map(|f| f.display().to_string())),
        );
        let run = b
            .runner
            .run(&format!("replay-mysqlbinlog-{i}"), &pipe)
            .await;
        let reached = server.gtid_executed().await;
        server.stop().await?;
        let run = run?;
        let reached = reached?;
        if count(&reached)? != count(target)? {
            bail!("mysqlbinlog | mysql ended at {reached}, not at {target}");
        }
        Ok(run.seconds())
    }
    .await;
    remove_dir(&copy);
    remove_dir(&datadir);
    result
}
