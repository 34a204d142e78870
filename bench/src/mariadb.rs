//! The peer: a private MariaDB 10.11 instance (Debian's package, installed by
//! `scripts/testbed.sh bench-peers`) on its own port, socket and datadir, and
//! sysbench against it. Debian's own service is never used.
//!
//! The testkit drives only MySQL 9.7 servers, so the few sysbench calls the
//! peer needs live here; the options are the ones the testkit uses for 9.7
//! (same workload script, `--rand-type=uniform`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(180);

/// A running MariaDB server. Dropping it kills the process and removes its folder.
#[derive(Debug)]
pub struct MariaDb {
    base: TempDir,
    datadir: PathBuf,
    socket: PathBuf,
    defaults_file: PathBuf,
    error_log: PathBuf,
    child: Option<Child>,
}

impl MariaDb {
    /// Initializes a datadir (root by unix socket) and starts `mariadbd`
    /// with the durability settings of the 9.7 servers (binlog, sync on commit).
    pub async fn start(buffer_pool: u64, redo_bytes: u64) -> Result<Self> {
        let base = tempfile::Builder::new()
            .prefix("innoxide-bench-mariadb-")
            .tempdir()
            .context("creating the MariaDB folder")?;
        let b = base.path().to_path_buf();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut server = Self {
            datadir: b.join("data"),
            socket: b.join("mariadbd.sock"),
            defaults_file: b.join("my.cnf"),
            error_log: b.join("error.log"),
            base,
            child: None,
        };
        let mut cnf = String::from("[mysqld]\n");
        for (k, v) in [
            ("datadir", server.datadir.display().to_string()),
            ("socket", server.socket.display().to_string()),
            ("port", port.to_string()),
            ("bind_address", "127.0.0.1".into()),
            ("pid_file", b.join("mariadbd.pid").display().to_string()),
            ("log_error", server.error_log.display().to_string()),
            ("user", "root".into()),
            ("server_id", "1".into()),
            ("log_bin", "binlog".into()),
            ("sync_binlog", "1".into()),
            ("innodb_flush_log_at_trx_commit", "1".into()),
            ("innodb_buffer_pool_size", buffer_pool.to_string()),
            ("innodb_log_file_size", redo_bytes.to_string()),
            ("skip_name_resolve", "ON".into()),
        ] {
            let _ = writeln!(cnf, "{k}={v}");
        }
        let _ = write!(
            cnf,
            "\n[client]\nsocket={}\nuser=root\n",
            server.socket.display()
        );
        std::fs::write(&server.defaults_file, cnf)?;

        let out = tokio::process::Command::new("mariadb-install-db")
            .arg(format!(
                "--defaults-file={}",
                server.defaults_file.display()
            ))
            .arg("--auth-root-authentication-method=socket")
            .arg("--skip-test-db")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("running mariadb-install-db (install it: scripts/testbed.sh bench-peers)")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        server.spawn_and_wait().await?;
        Ok(server)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    pub fn defaults_file(&self) -> &Path {
        &self.defaults_file
    }

    pub fn base_dir(&self) -> &Path {
        self.base.path()
    }

    /// `mariadb -N -B -e SQL` as root over the socket; the output.
    pub async fn sql(&self, sql: &str) -> Result<String> {
        let out = tokio::process::Command::new("mariadb")
            .arg(format!("--defaults-file={}", self.defaults_file.display()))
            .args(["-N", "-B", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running the mariadb client")?;
        if !out.status.success() {
            bail!(
                "mariadb -e {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub async fn version(&self) -> String {
        self.sql("SELECT VERSION()")
            .await
            .unwrap_or_else(|e| format!("{e:#}"))
    }

    /// Clean shutdown, waiting for the process to exit.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id();
        if self.sql("SHUTDOWN").await.is_err() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && child.try_wait()?.is_some()
            {
                self.child = None;
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                bail!("mariadbd did not shut down within {SHUTDOWN_TIMEOUT:?}: killed it");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the stopped server again on the same datadir.
    pub async fn start_again(&mut self) -> Result<()> {
        self.spawn_and_wait().await
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        let stderr = File::create(self.base.path().join("mariadbd.stderr"))?;
        let child = Command::new("mariadbd")
            .arg(format!("--defaults-file={}", self.defaults_file.display()))
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .spawn()
            .context("starting mariadbd (install it: scripts/testbed.sh bench-peers)")?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "mariadbd exited during startup ({status}):\n{}",
                    self.log_tail(30)
                );
            }
            if self.socket.exists() && self.sql("SELECT 1").await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                bail!(
                    "mariadbd did not accept connections within {READY_TIMEOUT:?}:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.error_log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// sysbench against the MariaDB peer, as root over its socket.
#[derive(Debug, Clone)]
pub struct PeerSysbench {
    socket: PathBuf,
    script: &'static str,
    tables: u32,
    table_size: u64,
}

impl PeerSysbench {
    pub async fn prepare(
        server: &MariaDb,
        script: &'static str,
        tables: u32,
        table_size: u64,
    ) -> Result<Self> {
        server.sql("CREATE DATABASE IF NOT EXISTS sbtest").await?;
        let sb = Self {
            socket: server.socket().to_path_buf(),
            script,
            tables,
            table_size,
        };
        let out = sb
            .command("prepare", tables.clamp(1, 2))
            .kill_on_drop(true)
            .output()
            .await
            .context("running sysbench prepare")?;
        if !out.status.success() {
            bail!(
                "sysbench prepare against MariaDB failed ({}): {}",
                out.status,
                crate::child::failure_text(
                    &String::from_utf8_lossy(&out.stderr),
                    &String::from_utf8_lossy(&out.stdout)
                )
            );
        }
        Ok(sb)
    }

    /// Starts an open-ended run; [`PeerRun::stop`] ends it and reports.
    pub fn run_background(&self, threads: u32) -> Result<PeerRun> {
        let stdout = tempfile::tempfile()?;
        let child = self
            .command("run", threads)
            .args(["--time=0", "--events=0", "--report-interval=1"])
            .stdout(stdout.try_clone()?)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting sysbench run")?;
        Ok(PeerRun { child, stdout })
    }

    fn command(&self, action: &str, threads: u32) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("sysbench");
        cmd.arg(self.script)
            .arg("--db-driver=mysql")
            .arg(format!("--mysql-socket={}", self.socket.display()))
            .arg("--mysql-user=root")
            .arg("--mysql-db=sbtest")
            .arg(format!("--tables={}", self.tables))
            .arg(format!("--table-size={}", self.table_size))
            .arg(format!("--threads={threads}"))
            .arg("--rand-type=uniform")
            .arg(action)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

#[derive(Debug)]
pub struct PeerRun {
    child: tokio::process::Child,
    stdout: File,
}

impl PeerRun {
    /// SIGINT, then the transactions per second over the whole seconds it ran.
    pub async fn stop(mut self) -> Result<f64> {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGINT);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        let mut text = String::new();
        self.stdout.seek(SeekFrom::Start(0))?;
        self.stdout.read_to_string(&mut text)?;
        interim_tps(&text)
            .with_context(|| format!("sysbench printed no per-second report:\n{text}"))
    }
}

/// Mean TPS over sysbench's `--report-interval=1` lines
/// (`[ 3s ] thds: 4 tps: 250.00 qps: ...`).
fn interim_tps(stdout: &str) -> Option<f64> {
    let (mut seconds, mut transactions) = (0u64, 0.0);
    for line in stdout.lines() {
        let Some((at, stats)) = line
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
        else {
            continue;
        };
        let Ok(at) = at.trim().trim_end_matches('s').parse::<u64>() else {
            continue;
        };
        let mut words = stats.split_whitespace();
        let tps: f64 = words
            .by_ref()
            .skip_while(|w| *w != "tps:")
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        transactions += tps * at.saturating_sub(seconds) as f64;
        seconds = at;
    }
    (seconds > 0).then(|| transactions / seconds as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interim_reports_average_to_tps() {
        let out = "Threads started!\n\
            [ 1s ] thds: 4 tps: 100.00 qps: 1.00 (r/w/o: 0/0/0) lat (ms,95%): 6.09 err/s: 0.00 reconn/s: 0.00\n\
            [ 2s ] thds: 4 tps: 300.00 qps: 1.00 (r/w/o: 0/0/0) lat (ms,95%): 6.21 err/s: 0.00 reconn/s: 0.00\n";
        assert_eq!(interim_tps(out), Some(200.0));
        assert_eq!(interim_tps("Threads started!\n"), None);
    }
}
