//! `make bench`: Innoxide measured on real servers against the yardsticks a
//! reader already knows: `cp -a`, the server's own `CLONE LOCAL`, logical
//! reloads (mydumper/myloader, mysqldump) and, as a peer on a different
//! server, mariadb-backup on MariaDB 10.11.
//!
//! A run loads one sysbench dataset (its size is `--size`), runs the nine
//! scenarios of [`scenarios`] in order, each `--repeat` times, and writes
//! `bench/results/<date>-<size>.{json,md}` plus PNG charts ([`report`]). A
//! measurement whose command fails (a verb not built yet, a refused option)
//! is recorded as "unavailable: <its error>", and the run goes on.

#![forbid(unsafe_code)]

pub mod agent;
pub mod child;
pub mod machine;
pub mod mariadb;
pub mod plan;
pub mod prepare_phases;
pub mod report;
pub mod results;
pub mod scenarios;
pub mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use innoxide_testkit::Workload;

use crate::agent::Agent;
use crate::child::Runner;
use crate::machine::Machine;
use crate::plan::DatasetPlan;
use crate::results::{Results, Scenario};
use crate::scenarios::{Bench, Options};

/// The scenarios, in the order they run (later ones use what earlier ones leave).
pub const SCENARIOS: [&str; 10] = [
    "idle_backup",
    "under_load",
    "apply_log",
    "restore",
    "throughput",
    "rss",
    "peer",
    "incremental",
    "replay",
    "archive_lag",
];

#[derive(Parser, Debug, Clone)]
#[command(
    name = "innoxide-bench",
    about = "Benchmark Innoxide on real servers (make bench)"
)]
pub struct Args {
    /// sysbench dataset size: `smoke` (≈50 MB, a quick end-to-end check) or a size like 2G, 500M.
    #[arg(long, env = "BENCH_SIZE", default_value = "2G")]
    pub size: String,
    /// Runs of each measurement (median, min, max).
    #[arg(long, env = "BENCH_REPEAT", default_value_t = 3)]
    pub repeat: u32,
    /// Runs of each logical reload (minutes each at full size).
    #[arg(long, default_value_t = 1)]
    pub logical_repeat: u32,
    /// Where the JSON, markdown and charts go.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// The innoxide-agent binary (default: next to this one).
    #[arg(long, env = "INNOXIDE_AGENT")]
    pub agent: Option<PathBuf>,
    /// Another innoxide-agent (an older build) whose apply-log runs on a copy
    /// of each backup scenario 3 prepares, in turns with this one: the
    /// speed-up, measured side by side.
    #[arg(long)]
    pub baseline_agent: Option<PathBuf>,
    /// `--parallel` of the agent and of mariadb-backup.
    #[arg(long, default_value_t = 4)]
    pub parallel: u32,
    /// sysbench threads of the write load.
    #[arg(long, default_value_t = 4)]
    pub load_threads: u32,
    /// Seconds of write load during each heavy-redo backup of scenario 3
    /// (throttled to last that long, so its redo piles up); 0 skips them.
    #[arg(long, default_value_t = 90)]
    pub heavy_redo_seconds: u64,
    /// `--throttle` of the second series of backups under load (bytes/s, K/M/G suffixes).
    #[arg(long, default_value = "100M")]
    pub load_throttle: String,
    /// innodb_buffer_pool_size of every server, MiB.
    #[arg(long, default_value_t = 1024)]
    pub buffer_pool_mib: u64,
    /// innodb_redo_log_capacity (MySQL) / innodb_log_file_size (MariaDB), MiB.
    #[arg(long, default_value_t = 512)]
    pub redo_mib: u64,
    /// The peak-RSS scenario's second dataset is --size divided by this.
    #[arg(long, default_value_t = 8)]
    pub rss_divisor: u64,
    /// Only these scenarios (comma-separated ids: idle_backup, under_load, apply_log, restore,
    /// throughput, rss, peer, incremental, replay).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Parent of the scratch folder (default: the system temp folder).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Re-render the markdown and charts of this results JSON, and stop.
    #[arg(long)]
    pub rerender: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<PathBuf> {
    if let Some(json) = &args.rerender {
        let (_, md) = report::rerender(json)?;
        return Ok(md);
    }
    for id in &args.only {
        if !SCENARIOS.contains(&id.as_str()) {
            bail!(
                "--only {id:?}: not a scenario; the scenarios are {}",
                SCENARIOS.join(", ")
            );
        }
    }
    let started = Instant::now();
    let started_at = time::OffsetDateTime::now_utc();
    let plan = DatasetPlan::parse(&args.size)?;
    let agent = Agent {
        bin: match &args.agent {
            Some(path) => path.clone(),
            None => Agent::next_to_this_binary()?,
        },
        parallel: args.parallel,
    };
    if !agent.bin.is_file() {
        bail!(
            "no agent binary at {}: build it (cargo build --release -p innoxide-agent) or pass --agent",
            agent.bin.display()
        );
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix("innoxide-bench-");
    let work = match &args.work_dir {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .context("creating the scratch folder")?;
    let runner = Runner::new(work.path().join("logs"))?;
    let opts = Options {
        repeat: args.repeat.max(1),
        logical_repeat: args.logical_repeat.max(1),
        load_threads: args.load_threads.max(1),
        buffer_pool: args.buffer_pool_mib << 20,
        redo_capacity: args.redo_mib << 20,
        rss_divisor: args.rss_divisor.max(2),
        workload: Workload::WriteOnly,
        load_throttle: args.load_throttle.clone(),
        baseline_agent: args.baseline_agent.clone(),
        heavy_redo_seconds: args.heavy_redo_seconds,
    };
    let machine = Machine::describe(work.path());
    tracing::info!(machine = machine.summary(), size = %plan.label, repeat = opts.repeat, "starting");

    let mut bench = Bench::setup(
        opts.clone(),
        plan.clone(),
        runner,
        agent.clone(),
        work.path().to_path_buf(),
    )
    .await?;
    let mut versions = versions(&bench).await;
    let mut done = Vec::new();
    for id in SCENARIOS {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == id) {
            continue;
        }
        let scenario_started = Instant::now();
        let load_before = machine::load_average();
        let result = match id {
            "idle_backup" => scenarios::idle_backup::run(&mut bench).await,
            "under_load" => scenarios::under_load::run(&mut bench).await,
            "apply_log" => scenarios::apply_log::run(&mut bench).await,
            "restore" => scenarios::restore::run(&mut bench).await,
            "throughput" => scenarios::throughput::run(&mut bench).await,
            "rss" => scenarios::rss::run(&mut bench).await,
            "replay" => scenarios::replay::run(&mut bench).await,
            "peer" => scenarios::peer::run(&mut bench, &mut versions).await,
            "incremental" => scenarios::incremental::run(&mut bench).await,
            "archive_lag" => scenarios::archive_lag::run(&mut bench).await,
            _ => unreachable!("SCENARIOS lists only these"),
        };
        let mut scenario = result.unwrap_or_else(|e| {
            tracing::error!(scenario = id, "failed: {e:#}");
            let mut s = Scenario::new(id, id, "The scenario could not run.");
            s.note(format!("failed: {e:#}"));
            s
        });
        scenario.note(format!(
            "Scenario time: {:.0} s; 1-minute load average {} at its start, {} at its end \
             (above {} means other work competed for the cores).",
            scenario_started.elapsed().as_secs_f64(),
            load_before,
            machine::load_average(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ));
        tracing::info!(
            scenario = id,
            seconds = scenario_started.elapsed().as_secs(),
            "done"
        );
        done.push(scenario);
    }
    bench.source.stop().await?;

    let settings = BTreeMap::from([
        (
            "innodb_buffer_pool_size".to_string(),
            format!("{}M", args.buffer_pool_mib),
        ),
        (
            "innodb_redo_log_capacity".to_string(),
            format!("{}M", args.redo_mib),
        ),
        ("agent --parallel".to_string(), args.parallel.to_string()),
        (
            "sysbench workload".to_string(),
            opts.workload_script().to_string(),
        ),
        (
            "sysbench load threads".to_string(),
            opts.load_threads.to_string(),
        ),
        (
            "page cache".to_string(),
            "warm (no drop_caches)".to_string(),
        ),
    ]);
    let mut results = Results {
        date: started_at.date().to_string(),
        size: plan.label.clone(),
        started_at: started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        total_seconds: started.elapsed().as_secs_f64(),
        command: command_line(),
        repeat: opts.repeat,
        machine,
        versions,
        dataset: bench.dataset.clone(),
        settings,
        scenarios: done,
        charts: Vec::new(),
    };
    let (json, md) = report::write_all(&mut results, &args.out, true)?;
    tracing::info!(json = %json.display(), markdown = %md.display(), "results written");
    Ok(md)
}

async fn versions(b: &Bench) -> BTreeMap<String, String> {
    let first_line = |program: PathBuf, arg: &'static str| async move {
        match tokio::process::Command::new(&program)
            .arg(arg)
            .output()
            .await
        {
            Ok(o) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.lines().next().unwrap_or_default().trim().to_string()
            }
            Err(e) => format!("{}: {e}", program.display()),
        }
    };
    let mut v = BTreeMap::new();
    v.insert("innoxide-agent".into(), b.agent.version().await);
    v.insert(
        "mysql".into(),
        b.source
            .version()
            .await
            .unwrap_or_else(|e| format!("{e:#}")),
    );
    v.insert(
        "sysbench".into(),
        first_line("sysbench".into(), "--version").await,
    );
    v.insert(
        "mydumper".into(),
        first_line("mydumper".into(), "--version").await,
    );
    v.insert("git".into(), git_revision().await);
    v
}

async fn git_revision() -> String {
    let out = tokio::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("innoxide-bench {}", args.join(" "))
}
