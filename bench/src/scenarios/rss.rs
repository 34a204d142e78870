//! Scenario 6: the agent's peak RSS (VmHWM of the agent process alone) for
//! two dataset sizes: the main one (scenario 1's backups) and a second,
//! smaller one loaded into a server of its own. A flat line means memory
//! does not grow with the data. apply-log's and copy-back's peaks, from
//! scenarios 3 and 4, come along.

use anyhow::Result;

use super::{Bench, load_dataset};
use crate::agent::BackupTarget;
use crate::child::{Run, dir_bytes, remove_dir};
use crate::results::{Metric, Scenario, Unit};
use crate::stats::Series;

fn peaks(runs: &[Run], missing: &str) -> Series {
    let mut s = Series::new();
    for run in runs {
        s.push(run.peak_rss as f64);
    }
    if runs.is_empty() {
        s.fail(missing);
    }
    s
}

pub async fn run(b: &mut Bench) -> Result<Scenario> {
    let small = b.plan.smaller(b.opts.rss_divisor);
    let mut s = Scenario::new(
        "rss",
        "6. Agent peak RSS",
        &format!(
            "Peak resident memory (`VmHWM` of the agent process, sampled every 10 ms) of full backups of the \
             {} dataset (scenario 1) and of a {} dataset in a server of its own; and of apply-log (the agent \
             alone, not the mysqld it starts) and copy-back.",
            b.plan.label, small.label
        ),
    );
    let main = peaks(&b.kept.idle_runs, "no idle backup ran (scenario 1)");

    tracing::info!(size = %small.label, "6. second dataset");
    let mut second = Series::new();
    let mut second_datadir = 0;
    match b.server_builder().start().await {
        Err(e) => second.fail(format!("starting the second server: {e:#}")),
        Ok(mut server) => {
            match load_dataset(&server, &small, &b.opts).await {
                Err(e) => second.fail(format!("loading the {} dataset: {e:#}", small.label)),
                Ok(_) => {
                    second_datadir = dir_bytes(server.datadir());
                    for i in 0..b.repeat() {
                        let dir = b.scratch(&format!("rss-{i}"));
                        let target = BackupTarget {
                            location: dir.display().to_string(),
                            ..Default::default()
                        };
                        let run = b
                            .agent
                            .backup(
                                &b.runner,
                                &format!("rss-backup-{i}"),
                                server.socket(),
                                &target,
                            )
                            .await;
                        second.record(run.map(|r| r.peak_rss as f64));
                        remove_dir(&dir);
                    }
                }
            }
            server.stop().await?;
        }
    }

    s.push(Metric::from_series(
        "backup_main",
        &format!(
            "backup, {} dataset ({} datadir)",
            b.plan.label,
            Unit::Bytes.format(b.dataset.datadir_bytes as f64)
        ),
        Unit::Bytes,
        &main,
    ));
    s.push(Metric::from_series(
        "backup_small",
        &format!(
            "backup, {} dataset ({} datadir)",
            small.label,
            Unit::Bytes.format(second_datadir as f64)
        ),
        Unit::Bytes,
        &second,
    ));
    s.push(Metric::from_series(
        "apply_log",
        "apply-log (agent only)",
        Unit::Bytes,
        &peaks(
            &b.kept.apply_runs,
            "apply-log did not run successfully (scenario 3)",
        ),
    ));
    s.push(Metric::from_series(
        "copy_back",
        "copy-back",
        Unit::Bytes,
        &peaks(
            &b.kept.copy_back_runs,
            "copy-back did not run successfully (scenario 4)",
        ),
    ));
    s.ratio(
        "growth",
        &format!(
            "Backup peak RSS, {} ÷ {} dataset",
            b.plan.label, small.label
        ),
        "backup_main",
        "backup_small",
    );
    Ok(s)
}
