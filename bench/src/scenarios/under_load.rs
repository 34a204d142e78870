//! Scenario 2: what a backup costs the server. sysbench's write load runs
//! during an Innoxide backup, then (same length, same threads) without one;
//! the ratio of the two TPS figures is paired run by run. The same again
//! for each pacing setting: the default adaptive pacing, none, and a fixed
//! `--throttle`, which together draw the trade-off between the server's TPS
//! and the backup's time. The default's backups are kept: scenario 3
//! prepares them.

use anyhow::Result;

use super::{Bench, MIN_LOAD_WINDOW, OPEN_ENDED};
use crate::agent::BackupTarget;
use crate::child::remove_dir;
use crate::results::{Metric, Scenario, Unit};
use crate::stats::Series;

/// TPS with and without a backup, and the backups' times.
#[derive(Default)]
struct Windows {
    during: Series,
    without: Series,
    times: Series,
    /// Per backup: how often the server logged that it waited for the
    /// backup's redo log consumer (its 'MEB' consumer warning).
    consumer_waits: Vec<usize>,
}

/// The server's warning when its redo writers wait for a lagging consumer;
/// ours registers under the name MySQL gives every backup consumer.
const CONSUMER_WAIT: &str = "'MEB' consumer";

/// Warnings about waiting for the backup's consumer in the error log after
/// byte `from`.
fn consumer_waits_since(log: &std::path::Path, from: u64) -> usize {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = text.get(from as usize..).unwrap_or_default();
    String::from_utf8_lossy(tail)
        .lines()
        .filter(|l| l.contains(CONSUMER_WAIT))
        .count()
}

/// One way to run the backup under load: its flags and how the report
/// names it.
struct Setting {
    /// Suffix of the metric keys ("" for the default).
    key: &'static str,
    label: String,
    throttle: Option<String>,
    pacing: Option<&'static str>,
}

pub async fn run(b: &mut Bench) -> Result<Scenario> {
    let threads = b.opts.load_threads;
    let throttle = b.opts.load_throttle.clone();
    let settings = [
        Setting {
            key: "",
            label: "the default (adaptive pacing)".into(),
            throttle: None,
            pacing: None,
        },
        Setting {
            key: "_off",
            label: "--pacing=off".into(),
            throttle: None,
            pacing: Some("off"),
        },
        Setting {
            key: "_t",
            label: format!("--throttle={throttle} --pacing=off"),
            throttle: Some(throttle.clone()),
            pacing: Some("off"),
        },
    ];
    let mut s = Scenario::new(
        "under_load",
        "2. Backup under sysbench write load: the server's TPS",
        &format!(
            "sysbench `{}` with {threads} threads runs while `innoxide-agent backup` copies the server; \
             right after, the same load runs for as long as that backup took, without a backup. \
             TPS are sysbench's per-second reports over each window; the ratio is paired run by run. \
             Each pacing setting is a series of its own: {}. Together they are the trade-off curve: \
             the TPS ratio against the backup's time.",
            b.opts.workload_script(),
            settings
                .iter()
                .map(|s| s.label.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    );
    tracing::info!("2. warming up the load (10 s)");
    b.sysbench
        .run(threads, std::time::Duration::from_secs(10))
        .await?;

    let mut waits = Vec::new();
    for setting in &settings {
        let w = windows(b, setting).await?;
        let (key, label) = (setting.key, &setting.label);
        s.push(
            Metric::from_series(
                &format!("tps_without{key}"),
                &format!("sysbench TPS, no backup (series: {label})"),
                Unit::Tps,
                &w.without,
            )
            .anchor(),
        );
        s.push(Metric::from_series(
            &format!("tps_during{key}"),
            &format!("TPS during a backup, {label}"),
            Unit::Tps,
            &w.during,
        ));
        s.push(Metric::from_series(
            &format!("backup_time{key}"),
            &format!("Backup under load, {label}: time"),
            Unit::Seconds,
            &w.times,
        ));
        s.ratio(
            &format!("tps_ratio{key}"),
            &format!("TPS during backup ÷ without, {label}"),
            &format!("tps_during{key}"),
            &format!("tps_without{key}"),
        )
        .higher_is_better = true;
        waits.push(format!("{:?} ({label})", w.consumer_waits));
    }
    s.note(format!(
        "The server waited for the backup's redo log consumer (its `{CONSUMER_WAIT}` warning) \
         {} times per run, with innodb_redo_log_capacity={} MiB: the consumer is advanced every \
         1 MiB / 50 ms of captured log.",
        waits.join(", "),
        b.opts.redo_capacity >> 20
    ));
    s.note(format!(
        "On {} cores sysbench, mysqld and the agent share the CPUs, and every commit waits for an fsync \
         (sync_binlog=1, innodb_flush_log_at_trx_commit=1) on the disk the backup writes to.",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    Ok(s)
}

/// `repeat` pairs of windows: the load during a backup, then without one.
async fn windows(b: &mut Bench, setting: &Setting) -> Result<Windows> {
    let threads = b.opts.load_threads;
    let mut w = Windows::default();
    for i in 0..b.repeat() {
        tracing::info!(run = i + 1, of = b.repeat(), setting = %setting.label, "2. backup under load");
        let name = format!("load{}-{i}", setting.key.replace('_', "-"));
        let dir = b.scratch(&name);
        let target = BackupTarget {
            location: dir.display().to_string(),
            throttle: setting.throttle.clone(),
            pacing: setting.pacing.map(str::to_owned),
            ..Default::default()
        };
        let error_log = b.source.error_log().to_owned();
        let log_len = std::fs::metadata(&error_log).map_or(0, |m| m.len());
        let load = b.sysbench.run_background(threads, OPEN_ENDED)?;
        let started = std::time::Instant::now();
        let backup = b
            .agent
            .backup(
                &b.runner,
                &format!("{name}-backup"),
                b.source.socket(),
                &target,
            )
            .await;
        if let Some(rest) = MIN_LOAD_WINDOW.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        let window = started.elapsed();
        let report = load.stop().await;
        match (backup, report) {
            (Ok(run), Ok(report)) => {
                w.consumer_waits
                    .push(consumer_waits_since(&error_log, log_len));
                w.times.push(run.seconds());
                w.during.push(report.tps);
                if setting.key.is_empty() {
                    b.kept.load_backups.push(dir);
                } else {
                    remove_dir(&dir);
                }
            }
            (Err(e), _) => {
                w.times.fail(format!("{e:#}"));
                w.during.fail(format!("no backup: {e:#}"));
                remove_dir(&dir);
                continue;
            }
            (Ok(_), Err(e)) => {
                w.during.fail(format!("sysbench: {e:#}"));
                remove_dir(&dir);
                continue;
            }
        }
        let load = b.sysbench.run_background(threads, OPEN_ENDED)?;
        tokio::time::sleep(window).await;
        w.without.record(load.stop().await.map(|r| r.tps));
    }
    Ok(w)
}
