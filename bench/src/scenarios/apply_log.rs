//! Scenario 3: apply-log (prepare) of the backups taken under load: its wall
//! time, and the redo it replays (last LSN − start checkpoint LSN, from the
//! manifest) per second of it. Then the same where prepare matters: backups
//! paced slow (`--throttle`) under a long write load, so each holds
//! hundreds of MiB of redo ([`heavy`]).

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{Bench, OPEN_ENDED};
use crate::agent::{BackupTarget, manifest_facts};
use crate::child::remove_dir;
use crate::prepare_phases::{Phases, phases};
use crate::results::{Metric, Scenario, Unit};
use crate::stats::{Outcome, Series};

pub async fn run(b: &mut Bench) -> Result<Scenario> {
    let mut s = Scenario::new(
        "apply_log",
        "3. Apply-log (prepare)",
        "`innoxide-agent apply-log --mysqld <9.7 mysqld>` on each backup taken under load in scenario 2: wall \
         time (start of the recovery instance, redo replay, rollback, clean shutdown), and the redo \
         recovery goes through (from the backup's start checkpoint to its last LSN) divided by that time.",
    );
    let (mut times, mut rates, mut redo) = (Series::new(), Series::new(), Series::new());
    let mut breakdown = Breakdown::default();
    let mut baseline = Baseline {
        agent: b.opts.baseline_agent.clone(),
        times: Series::new(),
    };
    let backups = std::mem::take(&mut b.kept.load_backups);
    if backups.is_empty() {
        times.fail("no backup taken under load to prepare (scenario 2 did not run or failed)");
    }
    for (i, dir) in backups.iter().enumerate() {
        tracing::info!(run = i + 1, of = backups.len(), "3. apply-log");
        let redo_bytes = manifest_facts(dir).ok().and_then(|f| f.redo_bytes);
        if let Some(bytes) = redo_bytes {
            redo.push(bytes as f64);
        }
        let mysqld = b.mysqld();
        // The older agent prepares a copy of the same backup, first on even
        // runs and second on odd ones, so neither always runs in the
        // other's wake.
        let baseline_first = i % 2 == 0;
        if baseline_first {
            baseline.push(b, dir, i, &mysqld).await;
        }
        let ours = b
            .agent
            .apply_log(&b.runner, &format!("apply-log-{i}"), dir, &mysqld)
            .await;
        if !baseline_first {
            baseline.push(b, dir, i, &mysqld).await;
        }
        match ours {
            Ok(run) => {
                times.push(run.seconds());
                breakdown.add(dir, run.seconds(), redo_bytes);
                if let Some(bytes) = redo_bytes {
                    rates.push(bytes as f64 / run.seconds());
                }
                b.kept.apply_runs.push(run);
                if b.kept.prepared.is_none() {
                    b.kept.prepared = Some(dir.clone());
                    continue;
                }
            }
            Err(e) => {
                let why = format!("{e:#}");
                b.kept.apply_log_error.get_or_insert(why.clone());
                times.fail(why);
            }
        }
        remove_dir(dir);
    }
    if b.kept.prepared.is_none() {
        // Nothing prepared: keep one raw backup so copy-back is still tried
        // (and says itself what it needs).
        if let Some(first) = backups.first() {
            b.kept.prepared = Some(first.clone());
        }
    }

    s.push(Metric::from_series(
        "apply_time",
        "Innoxide apply-log: time",
        Unit::Seconds,
        &times,
    ));
    let rate = match times.outcome() {
        Outcome::Unavailable { unavailable } => Outcome::unavailable(unavailable),
        Outcome::Measured(_) => rates.outcome(),
    };
    s.push(Metric::new(
        "redo_rate",
        "Innoxide apply-log: redo per second",
        Unit::BytesPerSecond,
        rate,
    ));
    s.push(Metric::from_series(
        "redo_bytes",
        "Redo captured per backup",
        Unit::Bytes,
        &redo,
    ));
    breakdown.report(&mut s, "", "");
    if let Some(agent) = &baseline.agent {
        s.push(Metric::from_series(
            "apply_time_baseline",
            &format!("apply-log of the same backups by {}", agent.display()),
            Unit::Seconds,
            &baseline.times,
        ));
        s.ratio(
            "apply_speedup",
            "apply-log time ÷ the baseline agent's, same backups",
            "apply_time",
            "apply_time_baseline",
        );
    }
    s.note(
        "The redo a backup holds is what the load wrote while it ran, so at this size the time is mostly \
         the recovery instance's start and clean shutdown, and the rate understates what replay alone does.",
    );
    heavy(b, &mut s).await;
    Ok(s)
}

/// The long heavy load's part: `--heavy-redo-seconds` of sysbench during
/// each backup, which `--throttle` stretches to about that long (the rows
/// and metrics keyed `_heavy`).
async fn heavy(b: &mut Bench, s: &mut Scenario) {
    let seconds = b.opts.heavy_redo_seconds;
    if seconds == 0 {
        s.note("The heavy-redo series was skipped (`--heavy-redo-seconds 0`).");
        return;
    }
    // What a backup copies, spread over the wanted time.
    let bytes = b
        .kept
        .idle_backup_bytes
        .unwrap_or_else(|| b.dataset.datadir_bytes.saturating_sub(b.opts.redo_capacity));
    let throttle = (bytes / seconds).max(1 << 20);
    let (mut times, mut rates, mut redo) = (Series::new(), Series::new(), Series::new());
    let (mut backup_times, mut fixed) = (Series::new(), Series::new());
    let mut breakdown = Breakdown::default();
    let mut baseline = Baseline {
        agent: b.opts.baseline_agent.clone(),
        times: Series::new(),
    };
    let mysqld = b.mysqld();
    for i in 0..b.repeat() {
        tracing::info!(
            run = i + 1,
            of = b.repeat(),
            throttle,
            "3. heavy redo: backup under a long load"
        );
        let dir = b.scratch(&format!("heavy-{i}"));
        let target = BackupTarget {
            location: dir.display().to_string(),
            throttle: Some(throttle.to_string()),
            pacing: Some("off".into()),
            ..Default::default()
        };
        let taken = async {
            let load = b.sysbench.run_background(b.opts.load_threads, OPEN_ENDED)?;
            let run = b
                .agent
                .backup(
                    &b.runner,
                    &format!("heavy-{i}-backup"),
                    b.source.socket(),
                    &target,
                )
                .await;
            load.stop().await?;
            run
        }
        .await;
        let run = match taken {
            Ok(run) => run,
            Err(e) => {
                times.fail(format!("the backup under load: {e:#}"));
                remove_dir(&dir);
                continue;
            }
        };
        backup_times.push(run.seconds());
        let redo_bytes = manifest_facts(&dir).ok().and_then(|f| f.redo_bytes);
        if let Some(bytes) = redo_bytes {
            redo.push(bytes as f64);
        }
        tracing::info!(run = i + 1, redo_bytes, "3. heavy redo: apply-log");
        let baseline_first = i % 2 == 0;
        if baseline_first {
            baseline.push(b, &dir, i as usize + 100, &mysqld).await;
        }
        let ours = b
            .agent
            .apply_log(&b.runner, &format!("apply-log-heavy-{i}"), &dir, &mysqld)
            .await;
        if !baseline_first {
            baseline.push(b, &dir, i as usize + 100, &mysqld).await;
        }
        match ours {
            Ok(run) => {
                times.push(run.seconds());
                if let Some(p) = breakdown.add(&dir, run.seconds(), redo_bytes) {
                    fixed.push((run.seconds() - p.redo).max(0.0));
                }
                if let Some(bytes) = redo_bytes {
                    rates.push(bytes as f64 / run.seconds());
                }
            }
            Err(e) => times.fail(format!("{e:#}")),
        }
        remove_dir(&dir);
    }
    s.push(Metric::from_series(
        "backup_time_heavy",
        &format!(
            "Heavy redo: backup under load, --throttle={:.1}M (time)",
            throttle as f64 / f64::from(1 << 20)
        ),
        Unit::Seconds,
        &backup_times,
    ));
    s.push(Metric::from_series(
        "redo_bytes_heavy",
        "Heavy redo: redo captured per backup",
        Unit::Bytes,
        &redo,
    ));
    s.push(Metric::from_series(
        "apply_time_heavy",
        "Heavy redo: Innoxide apply-log time",
        Unit::Seconds,
        &times,
    ));
    let rate = match times.outcome() {
        Outcome::Unavailable { unavailable } => Outcome::unavailable(unavailable),
        Outcome::Measured(_) => rates.outcome(),
    };
    s.push(Metric::new(
        "redo_rate_heavy",
        "Heavy redo: apply-log redo per second",
        Unit::BytesPerSecond,
        rate,
    ));
    s.push(Metric::from_series(
        "fixed_heavy",
        "Heavy redo: fixed overhead (all but redo scan and apply)",
        Unit::Seconds,
        &fixed,
    ));
    breakdown.report(s, "_heavy", "Heavy redo: ");
    if let Some(agent) = &baseline.agent {
        s.push(Metric::from_series(
            "apply_time_heavy_baseline",
            &format!(
                "Heavy redo: apply-log of the same backups by {}",
                agent.display()
            ),
            Unit::Seconds,
            &baseline.times,
        ));
        s.ratio(
            "apply_speedup_heavy",
            "Heavy redo: apply-log time ÷ the baseline agent's, same backups",
            "apply_time_heavy",
            "apply_time_heavy_baseline",
        );
    }
    s.note(format!(
        "Heavy redo: sysbench `{}` with {} threads runs during each backup, which \
         `--throttle={throttle} --pacing=off` ({:.1} MiB/s) stretches to about {seconds} s, so \
         the redo from the backup's start checkpoint to its last LSN piles up; apply-log then \
         replays it (the phases as above). Fixed overhead is apply-log's time minus the redo scan \
         and apply.",
        b.opts.workload_script(),
        b.opts.load_threads,
        throttle as f64 / f64::from(1 << 20),
    ));
}

/// Where each apply-log's time went (from its mini instance's error log).
#[derive(Default)]
struct Breakdown {
    start: Series,
    redo: Series,
    to_ready: Series,
    rollback: Series,
    shutdown: Series,
    agent: Series,
    /// mysqld's own time around the recovery: everything it did but the
    /// redo scan and apply (the floor of apply-log's fixed overhead).
    mysqld_fixed: Series,
    batches: Series,
    /// Redo bytes ÷ the redo scan and apply phase: how fast the server's
    /// own crash recovery goes, the ceiling of apply-log's rate.
    recovery_rate: Series,
    /// Redo bytes ÷ all of mysqld's time (start to clean shutdown): what
    /// apply-log would reach if the agent's own work took no time.
    server_rate: Series,
}

impl Breakdown {
    /// Adds one apply-log's phases, and returns them.
    fn add(
        &mut self,
        backup: &std::path::Path,
        total: f64,
        redo_bytes: Option<u64>,
    ) -> Option<Phases> {
        let log = backup.join("prepared").join("mysql-stderr");
        let Some(p) = std::fs::read_to_string(&log)
            .ok()
            .as_deref()
            .and_then(phases)
        else {
            let why = format!("no phases in {}", log.display());
            for series in [
                &mut self.start,
                &mut self.redo,
                &mut self.agent,
                &mut self.mysqld_fixed,
            ] {
                series.fail(why.clone());
            }
            return None;
        };
        let Phases {
            start,
            redo,
            to_ready,
            rollback,
            shutdown,
            batches,
        } = p.clone();
        self.start.push(start);
        self.redo.push(redo);
        self.to_ready.push(to_ready);
        self.rollback.push(rollback);
        self.shutdown.push(shutdown);
        self.agent.push((total - p.mysqld_total()).max(0.0));
        self.mysqld_fixed.push(p.mysqld_total() - redo);
        self.batches.push(batches as f64);
        if let Some(bytes) = redo_bytes.filter(|_| redo > 0.0) {
            self.recovery_rate.push(bytes as f64 / redo);
            self.server_rate.push(bytes as f64 / p.mysqld_total());
        }
        Some(p)
    }

    /// The phases as metrics, their keys ending in `suffix` and their
    /// labels starting with `prefix`.
    fn report(&self, s: &mut Scenario, suffix: &str, prefix: &str) {
        for (key, label, series) in [
            (
                "phase_agent",
                "  of which the agent's own work (checks, copy, redo file, seal)",
                &self.agent,
            ),
            (
                "phase_start",
                "  of which mysqld start, up to crash recovery",
                &self.start,
            ),
            ("phase_redo", "  of which redo scan and apply", &self.redo),
            (
                "phase_to_ready",
                "  of which the rest of the start (dictionary, binlog recovery)",
                &self.to_ready,
            ),
            (
                "phase_rollback",
                "  of which rollback of recovered transactions and checks",
                &self.rollback,
            ),
            ("phase_shutdown", "  of which the shutdown", &self.shutdown),
            (
                "phase_mysqld_fixed",
                "  mysqld's own start and shutdown (all its phases but the redo scan and apply)",
                &self.mysqld_fixed,
            ),
        ] {
            s.push(Metric::from_series(
                &format!("{key}{suffix}"),
                &with_prefix(prefix, label),
                Unit::Seconds,
                series,
            ));
        }
        s.push(Metric::from_series(
            &format!("apply_batches{suffix}"),
            &with_prefix(prefix, "Recovery apply batches"),
            Unit::Count,
            &self.batches,
        ));
        s.push(Metric::from_series(
            &format!("recovery_rate{suffix}"),
            &with_prefix(
                prefix,
                "mysqld's own redo scan and apply, redo per second (apply-log's ceiling)",
            ),
            Unit::BytesPerSecond,
            &self.recovery_rate,
        ));
        s.push(Metric::from_series(
            &format!("server_rate{suffix}"),
            &with_prefix(
                prefix,
                "mysqld's whole recovery run (start to clean shutdown), redo per second \
                 (apply-log's ceiling were its own work free)",
            ),
            Unit::BytesPerSecond,
            &self.server_rate,
        ));
    }
}

/// `label` after `prefix`, keeping a sub-row's indent in front.
fn with_prefix(prefix: &str, label: &str) -> String {
    let indent = label.len() - label.trim_start().len();
    format!("{}{prefix}{}", &label[..indent], label.trim_start())
}

/// The older agent's apply-log on copies of the same backups.
struct Baseline {
    agent: Option<PathBuf>,
    times: Series,
}

impl Baseline {
    async fn push(&mut self, b: &Bench, dir: &Path, i: usize, mysqld: &Path) {
        let Some(agent) = &self.agent else {
            return;
        };
        let copy = dir.with_extension("baseline");
        if let Err(e) = copy_raw_backup(dir, &copy) {
            self.times.fail(format!("copying {}: {e:#}", dir.display()));
            remove_dir(&copy);
            return;
        }
        let older = crate::agent::Agent {
            bin: agent.clone(),
            parallel: b.agent.parallel,
        };
        let run = older
            .apply_log(&b.runner, &format!("apply-log-baseline-{i}"), &copy, mysqld)
            .await;
        self.times.record(run.map(|r| r.seconds()));
        remove_dir(&copy);
    }
}

/// The raw backup `dir` into `copy`, without what an apply-log of it left
/// (`prepared/`, `prepared.partial/`): the other agent must prepare it
/// from the raw files, not find it prepared already.
fn copy_raw_backup(dir: &Path, copy: &Path) -> Result<()> {
    std::fs::create_dir(copy)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "prepared" || name == "prepared.partial" {
            continue;
        }
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(entry.path())
            .arg(copy)
            .status()?;
        anyhow::ensure!(status.success(), "cp -a {} failed", entry.path().display());
    }
    Ok(())
}
