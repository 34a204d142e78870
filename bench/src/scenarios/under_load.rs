//! Scenario 2: what a backup costs the server. sysbench's write load runs
//! during an Innoxide backup, then (same length, same threads) without one;
//! the ratio of the two TPS figures is paired run by run. The backups are
//! kept: scenario 3 prepares them.

use anyhow::Result;

use super::{Bench, MIN_LOAD_WINDOW, OPEN_ENDED};
use crate::agent::BackupTarget;
use crate::child::remove_dir;
use crate::results::{Metric, Scenario, Unit};
use crate::stats::Series;

pub async fn run(b: &mut Bench) -> Result<Scenario> {
    let threads = b.opts.load_threads;
    let mut s = Scenario::new(
        "under_load",
        "2. Backup under sysbench write load: the server's TPS",
        &format!(
            "sysbench `{}` with {threads} threads runs while `innoxide-agent backup` copies the server; \
             right after, the same load runs for as long as that backup took, without a backup. \
             TPS are sysbench's per-second reports over each window; the ratio is paired run by run.",
            b.opts.workload_script()
        ),
    );
    tracing::info!("2. warming up the load (10 s)");
    b.sysbench
        .run(threads, std::time::Duration::from_secs(10))
        .await?;

    let (mut during, mut without, mut times) = (Series::new(), Series::new(), Series::new());
    for i in 0..b.repeat() {
        tracing::info!(run = i + 1, of = b.repeat(), "2. backup under load");
        let dir = b.scratch(&format!("load-{i}"));
        let target = BackupTarget {
            location: dir.display().to_string(),
            ..Default::default()
        };
        let load = b.sysbench.run_background(threads, OPEN_ENDED)?;
        let started = std::time::Instant::now();
        let backup = b
            .agent
            .backup(
                &b.runner,
                &format!("load-backup-{i}"),
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
                times.push(run.seconds());
                during.push(report.tps);
                b.kept.load_backups.push(dir);
            }
            (Err(e), _) => {
                times.fail(format!("{e:#}"));
                during.fail(format!("no backup: {e:#}"));
                remove_dir(&dir);
                continue;
            }
            (Ok(_), Err(e)) => {
                during.fail(format!("sysbench: {e:#}"));
                remove_dir(&dir);
                continue;
            }
        }
        let load = b.sysbench.run_background(threads, OPEN_ENDED)?;
        tokio::time::sleep(window).await;
        without.record(load.stop().await.map(|r| r.tps));
    }

    s.push(
        Metric::from_series(
            "tps_without",
            "sysbench TPS, no backup",
            Unit::Tps,
            &without,
        )
        .anchor(),
    );
    s.push(Metric::from_series(
        "tps_during",
        "sysbench TPS during an Innoxide backup",
        Unit::Tps,
        &during,
    ));
    s.push(Metric::from_series(
        "backup_time",
        "Innoxide backup under load: time",
        Unit::Seconds,
        &times,
    ));
    s.ratio(
        "tps_ratio",
        "TPS during backup ÷ without",
        "tps_during",
        "tps_without",
    )
    .higher_is_better = true;
    s.note(format!(
        "On {} cores sysbench, mysqld and the agent share the CPUs: part of the TPS drop is plain CPU \
         contention, which a bigger machine would not show.",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    Ok(s)
}
