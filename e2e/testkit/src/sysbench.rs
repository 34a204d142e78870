//! sysbench's OLTP workloads against a [`MysqlServer`]: data to back up, write
//! load during a backup, and a yardstick for how much a backup slows the server.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::mysql::MysqlServer;

const USER: &str = "sbtest";
const PASSWORD: &str = "sbtest-Pw-1";
const DB: &str = "sbtest";

/// sysbench's bundled OLTP scripts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Workload {
    /// Point selects, ranges, updates and a delete+insert per transaction.
    #[default]
    ReadWrite,
    /// Only the updates and the delete+insert.
    WriteOnly,
    ReadOnly,
}

impl Workload {
    fn script(self) -> &'static str {
        match self {
            Workload::ReadWrite => "oltp_read_write",
            Workload::WriteOnly => "oltp_write_only",
            Workload::ReadOnly => "oltp_read_only",
        }
    }
}

/// sysbench set up against one server: `tables` tables `sbtest.sbtest1..N` of
/// `table_size` rows, user `sbtest` (caching_sha2_password) over the socket.
#[derive(Debug, Clone)]
pub struct Sysbench {
    socket: PathBuf,
    tables: u32,
    table_size: u64,
    workload: Workload,
    extra_args: Vec<String>,
}

impl Sysbench {
    /// Creates database and user `sbtest` and fills the tables
    /// (`sysbench ... prepare`; 4 × 100,000 rows take about 10 s here).
    pub async fn prepare(server: &MysqlServer, tables: u32, table_size: u64) -> Result<Self> {
        server
            .exec(&format!("CREATE DATABASE IF NOT EXISTS {DB}"))
            .await?;
        server.create_user(USER, PASSWORD).await?;
        let sb = Self::attach(server, tables, table_size);
        let threads = tables.clamp(1, 2); // tables are filled in parallel
        let out = sb
            .command("prepare", threads)
            .kill_on_drop(true)
            .output()
            .await
            .context("running sysbench prepare")?;
        if !out.status.success() {
            bail!(
                "sysbench prepare failed ({}):\n{}\n{}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stdout), 20),
                tail(&String::from_utf8_lossy(&out.stderr), 20)
            );
        }
        Ok(sb)
    }

    /// sysbench for a server that already has the user and tables (say, one
    /// started on a restored backup of a prepared server).
    pub fn attach(server: &MysqlServer, tables: u32, table_size: u64) -> Self {
        Self {
            socket: server.socket().to_path_buf(),
            tables,
            table_size,
            workload: Workload::default(),
            extra_args: vec!["--rand-type=uniform".into()],
        }
    }

    /// The workload of later runs (default [`Workload::ReadWrite`]).
    pub fn workload(mut self, workload: Workload) -> Self {
        self.workload = workload;
        self
    }

    /// One more sysbench option for later runs, e.g. `--rand-type=special`
    /// (default here: `--rand-type=uniform`, so writes spread over all pages
    /// and rarely deadlock).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// `sbtest.sbtest1` .. `sbtest.sbtestN`.
    pub fn table_names(&self) -> Vec<String> {
        (1..=self.tables)
            .map(|i| format!("{DB}.sbtest{i}"))
            .collect()
    }

    pub fn tables(&self) -> u32 {
        self.tables
    }

    pub fn table_size(&self) -> u64 {
        self.table_size
    }

    /// Starts `sysbench run` for `duration` (whole seconds, at least 1) and
    /// returns at once; sysbench stops by itself when the time is up.
    pub fn run_background(&self, threads: u32, duration: Duration) -> Result<SysbenchRun> {
        let secs = duration.as_secs_f64().ceil().max(1.0) as u64;
        // Output goes to files, not pipes: nobody has to keep reading while
        // the run lasts, whatever the test's runtime is doing.
        let stdout = tempfile::tempfile().context("creating sysbench's output file")?;
        let stderr = tempfile::tempfile().context("creating sysbench's output file")?;
        let child = self
            .command("run", threads)
            .arg(format!("--time={secs}"))
            .arg("--events=0")
            // Only for stop(): sysbench prints no final statistics on SIGINT.
            .arg("--report-interval=1")
            .stdout(stdout.try_clone()?)
            .stderr(stderr.try_clone()?)
            .kill_on_drop(true)
            .spawn()
            .context("starting sysbench run")?;
        Ok(SysbenchRun {
            child,
            stdout,
            stderr,
        })
    }

    /// `run_background(...)` and `wait()`.
    pub async fn run(&self, threads: u32, duration: Duration) -> Result<SysbenchReport> {
        self.run_background(threads, duration)?.wait().await
    }

    fn command(&self, action: &str, threads: u32) -> Command {
        let mut cmd = Command::new("sysbench");
        cmd.arg(self.workload.script())
            .arg("--db-driver=mysql")
            .arg(format!("--mysql-socket={}", self.socket.display()))
            .arg(format!("--mysql-user={USER}"))
            .arg(format!("--mysql-password={PASSWORD}"))
            .arg(format!("--mysql-db={DB}"))
            .arg(format!("--tables={}", self.tables))
            .arg(format!("--table-size={}", self.table_size))
            .arg(format!("--threads={threads}"))
            .args(&self.extra_args)
            .arg(action)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

/// A `sysbench run` in the background. Dropping it kills sysbench.
#[derive(Debug)]
pub struct SysbenchRun {
    child: Child,
    stdout: File,
    stderr: File,
}

/// What sysbench reported at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct SysbenchReport {
    /// Transactions per second.
    pub tps: f64,
    /// Committed transactions.
    pub transactions: u64,
    /// Errors sysbench ignored (deadlocks, lock wait timeouts) and reconnects.
    pub errors: u64,
    /// sysbench's "total time".
    pub duration: Duration,
}

impl SysbenchRun {
    /// sysbench's pid (for signals of your own).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until sysbench ends by itself and returns its report.
    pub async fn wait(self) -> Result<SysbenchReport> {
        self.finish(false).await
    }

    /// Ends the run early and returns what sysbench did until then; also the
    /// way to collect a run that failed midway (its server was killed).
    ///
    /// sysbench 1.0.20 dies on SIGINT without its final statistics, so this
    /// report is the sum of its per-second interim reports: it covers the
    /// whole seconds before the signal (the last partial second is lost) and
    /// its transaction count is rate × 1 s per line, rounded. A run that
    /// ended by itself before the signal gets its exact final report.
    pub async fn stop(mut self) -> Result<SysbenchReport> {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGINT);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
        }
        self.finish(true).await
    }

    async fn finish(mut self, stopped: bool) -> Result<SysbenchReport> {
        let status = self.child.wait().await.context("waiting for sysbench")?;
        let stdout = read_all(&mut self.stdout)?;
        let stderr = read_all(&mut self.stderr)?;
        let report = if status.success() {
            parse_report(&stdout)
        } else if stopped {
            // Killed by our signal, or failed on its own (say, the server was
            // killed) after some whole seconds of work: report those.
            parse_interim(&stdout).or_else(|| {
                status.signal().map(|_| SysbenchReport {
                    tps: 0.0,
                    transactions: 0,
                    errors: 0,
                    duration: Duration::ZERO,
                })
            })
        } else {
            None
        };
        report.with_context(|| {
            format!(
                "sysbench run failed ({}):\n{}\n{}",
                status,
                tail(&stdout, 20),
                tail(&stderr, 20)
            )
        })
    }
}

/// Parses the final statistics of `sysbench run`.
fn parse_report(stdout: &str) -> Option<SysbenchReport> {
    let mut transactions = None;
    let mut tps = None;
    let mut ignored = None;
    let mut reconnects = None;
    let mut seconds = None;
    for line in stdout.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("transactions:") {
            let (count, rate) = count_and_rate(rest)?;
            transactions = Some(count);
            tps = Some(rate);
        } else if let Some(rest) = line.strip_prefix("ignored errors:") {
            ignored = Some(count_and_rate(rest)?.0);
        } else if let Some(rest) = line.strip_prefix("reconnects:") {
            reconnects = Some(count_and_rate(rest)?.0);
        } else if let Some(rest) = line.strip_prefix("total time:") {
            seconds = rest.trim().trim_end_matches('s').parse::<f64>().ok();
        }
    }
    Some(SysbenchReport {
        tps: tps?,
        transactions: transactions?,
        errors: ignored.unwrap_or(0) + reconnects.unwrap_or(0),
        duration: Duration::from_secs_f64(seconds?),
    })
}

/// Sums the interim lines of `--report-interval=1`:
/// `[ 3s ] thds: 4 tps: 250.00 qps: ... err/s: 0.00 reconn/s: 0.00`.
fn parse_interim(stdout: &str) -> Option<SysbenchReport> {
    let mut seconds = 0u64;
    let (mut transactions, mut errors) = (0.0, 0.0);
    for line in stdout.lines() {
        let Some(rest) = line.trim().strip_prefix('[') else {
            continue;
        };
        let Some((at, stats)) = rest.split_once(']') else {
            continue;
        };
        let Ok(at) = at.trim().trim_end_matches('s').parse::<u64>() else {
            continue;
        };
        let value = |key: &str| -> f64 {
            let mut words = stats.split_whitespace();
            words.find(|w| *w == key);
            words.next().and_then(|v| v.parse().ok()).unwrap_or(0.0)
        };
        let interval = at.saturating_sub(seconds) as f64;
        transactions += value("tps:") * interval;
        errors += (value("err/s:") + value("reconn/s:")) * interval;
        seconds = at;
    }
    if seconds == 0 {
        return None;
    }
    let transactions = transactions.round() as u64;
    Some(SysbenchReport {
        tps: transactions as f64 / seconds as f64,
        transactions,
        errors: errors.round() as u64,
        duration: Duration::from_secs(seconds),
    })
}

/// `"   1234   (246.50 per sec.)"` → `(1234, 246.5)`.
fn count_and_rate(text: &str) -> Option<(u64, f64)> {
    let (count, rest) = text.trim().split_once(char::is_whitespace)?;
    let rate = rest.trim().strip_prefix('(')?.split_whitespace().next()?;
    Some((count.parse().ok()?, rate.parse().ok()?))
}

fn read_all(file: &mut File) -> Result<String> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)
        .context("reading sysbench's output")?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
sysbench 1.0.20 (using system LuaJIT 2.1.0-beta3)

Running the test with following options:
Number of threads: 4

SQL statistics:
    queries performed:
        read:                            17290
        write:                           4940
        other:                           2470
        total:                           24700
    transactions:                        1235   (246.62 per sec.)
    queries:                             24700  (4932.41 per sec.)
    ignored errors:                      2      (0.40 per sec.)
    reconnects:                          0      (0.00 per sec.)

General statistics:
    total time:                          5.0056s
    total number of events:              1235
";

    #[test]
    fn parses_the_final_statistics() {
        let r = parse_report(OUTPUT).unwrap();
        assert_eq!(r.transactions, 1235);
        assert!((r.tps - 246.62).abs() < 1e-9);
        assert_eq!(r.errors, 2);
        assert_eq!(r.duration, Duration::from_secs_f64(5.0056));
    }

    #[test]
    fn interim_reports_add_up() {
        let out = "Threads started!\n\
            [ 1s ] thds: 2 tps: 819.37 qps: 4926.21 (r/w/o: 0.00/3285.47/1640.74) lat (ms,95%): 6.09 err/s: 0.00 reconn/s: 0.00\n\
            [ 2s ] thds: 2 tps: 800.63 qps: 4803.78 (r/w/o: 0.00/3202.52/1601.26) lat (ms,95%): 6.21 err/s: 1.00 reconn/s: 0.00\n";
        let r = parse_interim(out).unwrap();
        assert_eq!(r.transactions, 1620);
        assert_eq!(r.errors, 1);
        assert_eq!(r.duration, Duration::from_secs(2));
        assert!((r.tps - 810.0).abs() < 1e-9);
        assert_eq!(parse_interim("Threads started!\n"), None);
    }

    #[test]
    fn output_without_statistics_is_no_report() {
        assert_eq!(parse_report("FATAL: unable to connect\n"), None);
    }
}
