//! Scenario 1: an idle full backup to a local folder, against two anchors on
//! the same data: `cp -a` of the stopped server's datadir and the server's
//! own `CLONE LOCAL DATA DIRECTORY`. Innoxide and CLONE take turns run by run;
//! the copies follow with the server stopped.

use anyhow::Result;

use super::{Bench, cp_a};
use crate::agent::{BackupTarget, manifest_facts};
use crate::child::{dir_bytes, remove_dir, warm_page_cache};
use crate::results::{Metric, Scenario, Unit};
use crate::stats::Series;

pub async fn run(b: &mut Bench) -> Result<Scenario> {
    let mut s = Scenario::new(
        "idle_backup",
        "1. Idle full backup: Innoxide vs cp -a vs CLONE LOCAL",
        "Wall time of a full backup of the idle server to a local folder (`innoxide-agent backup`, fsyncs \
         included), of `cp -a` of the same datadir with the server stopped followed by an fsync of every \
         copied file, and of the server's `CLONE LOCAL DATA DIRECTORY`. Page cache warm for all three: the \
         datadir is read once before the first run.",
    );
    let clone_plugin = b
        .source
        .exec("INSTALL PLUGIN clone SONAME 'mysql_clone.so'")
        .await;
    let (mut inno, mut cpu, mut clone, mut copy) =
        (Series::new(), Series::new(), Series::new(), Series::new());
    let mut sizes = Vec::new();
    let datadir = b.source.datadir().to_path_buf();
    let warmed = tokio::task::spawn_blocking(move || warm_page_cache(&datadir)).await?;
    tracing::info!(
        mib = warmed >> 20,
        "1. datadir read once, so the first run finds the page cache warm too"
    );
    for i in 0..b.repeat() {
        tracing::info!(run = i + 1, of = b.repeat(), "1. idle backup");
        let dir = b.scratch(&format!("idle-{i}"));
        let target = BackupTarget {
            location: dir.display().to_string(),
            ..Default::default()
        };
        match b
            .agent
            .backup(
                &b.runner,
                &format!("idle-backup-{i}"),
                b.source.socket(),
                &target,
            )
            .await
        {
            Ok(run) => {
                inno.push(run.seconds());
                cpu.push(run.cpu.as_secs_f64());
                let written = dir_bytes(&dir);
                let held = manifest_facts(&dir).ok().and_then(|f| f.original_bytes);
                b.kept
                    .idle_backup_bytes
                    .get_or_insert(held.unwrap_or(written));
                if i == 0 {
                    sizes.push(format!("Innoxide {}", Unit::Bytes.format(written as f64)));
                }
                b.kept.idle_runs.push(run);
            }
            Err(e) => inno.fail(format!("{e:#}")),
        }
        remove_dir(&dir);

        let clone_dir = b.scratch(&format!("clone-{i}"));
        match &clone_plugin {
            Ok(()) => {
                let started = std::time::Instant::now();
                let sql = format!("CLONE LOCAL DATA DIRECTORY = '{}'", clone_dir.display());
                match b.source.exec(&sql).await {
                    Ok(()) => {
                        clone.push(started.elapsed().as_secs_f64());
                        if i == 0 {
                            sizes.push(format!(
                                "CLONE {}",
                                Unit::Bytes.format(dir_bytes(&clone_dir) as f64)
                            ));
                        }
                    }
                    Err(e) => clone.fail(format!("{e:#}")),
                }
            }
            Err(e) => clone.fail(format!("installing the clone plugin: {e:#}")),
        }
        remove_dir(&clone_dir);
    }

    tracing::info!("1. cp -a of the stopped datadir");
    b.source.stop().await?;
    for i in 0..b.repeat() {
        let dst = b.scratch(&format!("cp-{i}"));
        let result = b
            .runner
            .run(&format!("cp-a-{i}"), &cp_a(b.source.datadir(), &dst))
            .await;
        if i == 0 && result.is_ok() {
            sizes.push(format!(
                "cp -a {}",
                Unit::Bytes.format(dir_bytes(&dst) as f64)
            ));
        }
        copy.record(result.map(|r| r.seconds()));
        remove_dir(&dst);
    }
    b.source.restart().await?;

    s.push(Metric::from_series(
        "innoxide",
        "Innoxide backup (file://)",
        Unit::Seconds,
        &inno,
    ));
    s.push(
        Metric::from_series("clone", "CLONE LOCAL DATA DIRECTORY", Unit::Seconds, &clone).anchor(),
    );
    s.push(
        Metric::from_series(
            "cp",
            "cp -a, server stopped (+ fsync)",
            Unit::Seconds,
            &copy,
        )
        .anchor(),
    );
    s.push(Metric::from_series(
        "innoxide_cpu",
        "Innoxide backup: CPU time (user + sys)",
        Unit::Seconds,
        &cpu,
    ));
    s.ratio("vs_cp", "Backup time ÷ cp -a", "innoxide", "cp");
    s.ratio("vs_clone", "Backup time ÷ CLONE LOCAL", "innoxide", "clone");
    s.note(format!(
        "Bytes written by the first run of each: {}. The datadir is {} of which the redo log \
         (`innodb_redo_log_capacity`) is {}: cp -a copies all of it, the backup and CLONE only the redo they need.",
        sizes.join(", "),
        Unit::Bytes.format(b.dataset.datadir_bytes as f64),
        Unit::Bytes.format(b.opts.redo_capacity as f64),
    ));
    s.note(format!(
        "`--parallel={}` on {} cores.",
        b.agent.parallel,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    Ok(s)
}
