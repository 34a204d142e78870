//! `make demo`: the whole product on one machine, with real parts.
//!
//! A MySQL 9.7 server under a sysbench write load is backed up hot by
//! `innoxide-agent backup`; the backup is verified, prepared with
//! `apply-log` (the server's own mysqld applies the captured redo), and
//! copied into an empty datadir with `copy-back`; a server started there is
//! judged by the consistency oracle against the source. The last lines are
//! the verdict and the timings.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use innoxide_testkit::oracle::{self, OracleInput};
use innoxide_testkit::{MysqlServer, Sysbench, mysql_prefix};

const TABLES: u32 = 4;
const ROWS: u64 = 50_000;
const LOAD_THREADS: u32 = 4;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `innoxide-agent` built beside this binary (same cargo profile).
fn agent_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let agent = me.with_file_name("innoxide-agent");
    if !agent.exists() {
        bail!(
            "{} not found: build it first (make demo does)",
            agent.display()
        );
    }
    Ok(agent)
}

struct Steps {
    started: Instant,
    rows: Vec<(String, Duration)>,
}

impl Steps {
    fn step(&mut self, what: &str) {
        println!("\n==> {what}");
        self.started = Instant::now();
    }

    fn done(&mut self, what: &str) {
        let took = self.started.elapsed();
        println!("    done in {took:.1?}");
        self.rows.push((what.to_owned(), took));
    }
}

async fn agent(args: &[&str]) -> Result<String> {
    let binary = agent_binary()?;
    println!("    $ innoxide-agent {}", args.join(" "));
    let out = tokio::process::Command::new(&binary)
        .args(args)
        .env("INNOXIDE_LOG_JSON", "false")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .with_context(|| format!("running {}", binary.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        println!("      {line}");
    }
    if !out.status.success() {
        bail!("innoxide-agent {} failed:\n{stderr}", args[0]);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn run() -> Result<bool> {
    let total = Instant::now();
    let mut steps = Steps {
        started: Instant::now(),
        rows: Vec::new(),
    };
    let work = tempfile::Builder::new()
        .prefix("innoxide-demo-")
        .tempdir()?;
    let backups = work.path().join("backups");
    let restored_datadir = work.path().join("restored-datadir");

    steps.step("start a MySQL 9.7 source and load sysbench data");
    let source = MysqlServer::builder().server_id(1).start().await?;
    println!("    {} on port {}", source.version().await?, source.port());
    let bench = Sysbench::prepare(&source, TABLES, ROWS).await?;
    steps.done("source + sysbench prepare");

    steps.step("hot backup while sysbench writes");
    let load = bench.run_background(LOAD_THREADS, Duration::from_secs(600))?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let socket = source.socket().display().to_string();
    let location = agent(&[
        "backup",
        "--socket",
        &socket,
        "--user",
        "root",
        &backups.display().to_string(),
    ])
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.stop().await?;
    steps.done("backup (under load)");
    println!(
        "    sysbench during the run: {:.0} TPS, {} transactions, {} errors",
        report.tps, report.transactions, report.errors
    );
    let backup_dir = PathBuf::from(&location);
    let manifest = std::fs::read_to_string(backup_dir.join("innoxide.json"))?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest)?;
    let gtid = manifest["gtid_executed"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!(
        "    backup at {} — binlog {}:{}, last_lsn {}",
        backup_dir.display(),
        manifest["binlog_file"].as_str().unwrap_or_default(),
        manifest["binlog_position"],
        manifest["redo"]["last_lsn"]
    );

    steps.step("verify the backup against its manifest");
    agent(&["verify", "--backup-dir", &location]).await?;
    steps.done("verify");

    steps.step("apply-log: the source's own mysqld applies the captured redo");
    let mysqld = mysql_prefix()?.join("bin/mysqld");
    agent(&[
        "apply-log",
        "--backup-dir",
        &location,
        "--mysqld",
        &mysqld.display().to_string(),
    ])
    .await?;
    steps.done("apply-log");

    steps.step("copy-back into an empty datadir (a clone: new server UUID)");
    agent(&[
        "copy-back",
        "--backup-dir",
        &location,
        "--datadir",
        &restored_datadir.display().to_string(),
        "--new-server-uuid",
    ])
    .await?;
    steps.done("copy-back");

    steps.step("start MySQL on the restored datadir");
    let restored = MysqlServer::builder()
        .server_id(2)
        .existing_datadir(&restored_datadir)
        .start()
        .await?;
    steps.done("restored server start");

    steps.step("consistency oracle");
    let tables = bench.table_names();
    let verdict = oracle::check(OracleInput {
        source: &source,
        restored: &restored,
        backup_gtid_set: &gtid,
        tables: &tables,
    })
    .await?;
    steps.done("oracle");

    println!("\n================ summary ================");
    print!("{verdict}");
    println!("timings:");
    for (what, took) in &steps.rows {
        println!("  {what:<28} {took:>8.1?}");
    }
    println!("  {:<28} {:>8.1?}", "total", total.elapsed());
    let size: u64 = manifest["files"]
        .as_array()
        .map(|files| files.iter().filter_map(|f| f["size"].as_u64()).sum())
        .unwrap_or(0);
    println!("backup size: {:.1} MiB", size as f64 / (1 << 20) as f64);
    println!(
        "verdict: {}",
        if verdict.passed() {
            "the restored server holds exactly the data of the backup's consistent point"
        } else {
            "FAILED"
        }
    );
    Ok(verdict.passed())
}
