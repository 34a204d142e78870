//! Runs one command the way a measurement needs it: wall time, the process's
//! peak RSS and its CPU time, output kept in a log file, and a failure turned
//! into the one line that says why.
//!
//! Peak RSS is `VmHWM` of `/proc/<pid>/status`, sampled every 10 ms: the
//! kernel keeps the high-water mark, so sampling only misses growth in the
//! last few milliseconds, and it counts this process alone (not the mysqld
//! that apply-log starts). CPU time is the growth of `getrusage(RUSAGE_CHILDREN)`
//! across the run: exact when no other child of the bench exits meanwhile,
//! which holds where it is used (idle backups, no load running).

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::resource::{UsageWho, getrusage};

/// A command to measure.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    stdin: Option<PathBuf>,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Feeds this file to the command's standard input (`mysql < dump.sql`).
    pub fn stdin_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.stdin = Some(path.into());
        self
    }

    fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// What a successful run measured.
#[derive(Debug, Clone)]
pub struct Run {
    pub wall: Duration,
    /// Peak resident set of the process itself, bytes (0 if never sampled).
    pub peak_rss: u64,
    /// User + system CPU of the process and the children it waited for.
    pub cpu: Duration,
    pub stdout: String,
}

impl Run {
    pub fn seconds(&self) -> f64 {
        self.wall.as_secs_f64()
    }
}

/// Runs commands with their output in `logs/NNN-label.{out,err}`.
#[derive(Debug)]
pub struct Runner {
    logs: PathBuf,
    counter: AtomicUsize,
}

impl Runner {
    pub fn new(logs: impl Into<PathBuf>) -> Result<Self> {
        let logs = logs.into();
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        Ok(Self {
            logs,
            counter: AtomicUsize::new(0),
        })
    }

    /// Runs `cmd` to the end. A non-zero exit is an error whose text is the
    /// command's own last word on it (its `error:` line, else its last lines).
    pub async fn run(&self, label: &str, cmd: &Cmd) -> Result<Run> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let base = self.logs.join(format!("{n:03}-{}", file_safe(label)));
        let out_path = base.with_extension("out");
        let err_path = base.with_extension("err");
        let mut command = tokio::process::Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .kill_on_drop(true);
        match &cmd.stdin {
            Some(path) => command
                .stdin(File::open(path).with_context(|| format!("opening {}", path.display()))?),
            None => command.stdin(Stdio::null()),
        };
        if let Some(dir) = &cmd.cwd {
            command.current_dir(dir);
        }
        tracing::debug!(label, command = cmd.display(), "running");
        let cpu_before = children_cpu();
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", cmd.program.display()))?;
        let pid = child.id();
        let mut peak_rss = 0;
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        let status = loop {
            tokio::select! {
                status = child.wait() => break status?,
                _ = ticker.tick() => {
                    if let Some(hwm) = pid.and_then(vm_hwm) {
                        peak_rss = peak_rss.max(hwm);
                    }
                }
            }
        };
        let wall = started.elapsed();
        let cpu = children_cpu().saturating_sub(cpu_before);
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        if !status.success() {
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            bail!("{} ({status})", failure_text(&stderr, &stdout));
        }
        Ok(Run {
            wall,
            peak_rss,
            cpu,
            stdout,
        })
    }
}

/// The line that says why a command failed: an `error:` line if it printed
/// one (the agent prints `innoxide-agent: error: ...`), else its last lines.
pub fn failure_text(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    if let Some(line) = text
        .lines()
        .rev()
        .find(|l| l.contains("error:") || l.contains("ERROR") || l.starts_with("FATAL"))
    {
        return line.trim().to_string();
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        "no output".into()
    } else {
        tail
    }
}

fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `VmHWM` of a live process, bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    parse_vm_hwm(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn children_cpu() -> Duration {
    let Ok(usage) = getrusage(UsageWho::RUSAGE_CHILDREN) else {
        return Duration::ZERO;
    };
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// Sum of the sizes of every file under `dir` (not following links).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Reads every file under `dir` once and throws the bytes away, so the
/// page cache holds the folder before a measurement that claims a warm
/// cache. The server writes its data files with O_DIRECT, so right after
/// `sysbench prepare` they are not cached, and the first run of whatever
/// reads them first would pay for the others (innodb_flush_method is
/// O_DIRECT by default since MySQL 8.4). Returns the bytes read.
pub fn warm_page_cache(dir: &Path) -> u64 {
    use std::io::Read;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += warm_page_cache(&entry.path()),
            Ok(t) if t.is_file() => {
                // A file that vanishes or cannot be read is simply not warmed.
                if let Ok(mut file) = std::fs::File::open(entry.path()) {
                    while let Ok(n @ 1..) = file.read(&mut buf) {
                        total += n as u64;
                    }
                }
            }
            _ => {}
        }
    }
    total
}

/// Removes a folder the bench made; a folder that is not there is fine.
pub fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), "could not remove: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_line_is_the_reason() {
        let stderr = "{\"level\":\"INFO\"}\ninnoxide-agent: error: apply-log is not built yet\n";
        assert_eq!(
            failure_text(stderr, ""),
            "innoxide-agent: error: apply-log is not built yet"
        );
        assert_eq!(failure_text("", "a\nb\nc\nd\n"), "b | c | d");
        assert_eq!(failure_text("", ""), "no output");
    }

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(1234 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tzombie\n"), None);
    }

    #[tokio::test]
    async fn a_run_reports_time_memory_and_failure() {
        let dir = tempfile::tempdir().unwrap();
        let runner = Runner::new(dir.path()).unwrap();
        let ok = runner
            .run("sleep", &Cmd::new("sh").args(["-c", "sleep 0.05; echo hi"]))
            .await
            .unwrap();
        assert!(ok.wall >= Duration::from_millis(50));
        assert_eq!(ok.stdout.trim(), "hi");
        assert!(ok.peak_rss > 0, "sampled VmHWM of sh");
        let err = runner
            .run(
                "fail",
                &Cmd::new("sh").args(["-c", "echo 'x: error: nope' >&2; exit 3"]),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("x: error: nope"), "{err}");
    }
}
