//! The run registry: one folder per live server under `$CACHE/runs/` (a MySQL
//! server, or the etcd + apiserver pair of a Kubernetes API), so a later test
//! process can kill servers whose owner died without running `Drop` (a test
//! binary killed by SIGKILL, a CI timeout).
//!
//! A run folder holds `owner.pid` (the test process), one `<name>.pid` per
//! server process while it runs (`mysqld.pid`; `etcd.pid`, `apiserver.pid`)
//! and `base_dir` (the server's temp folder). Pids are written as
//! `<pid> <start time>` so a pid the kernel has since reused for an unrelated
//! process is never mistaken for ours: we only ever kill the exact process we
//! started.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::testbed::cache_dir;

/// The temp folders of servers start with one of these, so a sweep only ever
/// deletes folders that are recognisably ours.
pub(crate) const BASE_DIR_PREFIX: &str = "innoxide-mysql-";
pub(crate) const KUBE_BASE_DIR_PREFIX: &str = "innoxide-kube-";
const OUR_BASE_DIR_PREFIXES: [&str; 2] = [BASE_DIR_PREFIX, KUBE_BASE_DIR_PREFIX];

/// What a sweep found and did about one abandoned run folder.
#[derive(Debug, Clone)]
pub struct SweptServer {
    /// The run folder (now removed).
    pub run_dir: PathBuf,
    /// The dead test process that owned it.
    pub owner_pid: i32,
    /// The MySQL server process recorded there, if one was.
    pub mysqld_pid: Option<i32>,
    /// Every server process recorded there (`mysqld`, `etcd`, `apiserver`),
    /// by name.
    pub processes: Vec<(String, i32)>,
    /// Whether any of them was still running and got SIGKILL.
    pub killed: bool,
}

/// A process as recorded in a pid file: its pid and its start time in clock
/// ticks since boot (field 22 of `/proc/PID/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessId {
    pub pid: i32,
    pub start_time: Option<u64>,
}

impl ProcessId {
    pub fn of(pid: i32) -> Self {
        Self {
            pid,
            start_time: proc_stat(pid).map(|s| s.start_time),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split_whitespace();
        let pid = fields.next()?.parse().ok()?;
        let start_time = fields.next().and_then(|t| t.parse().ok());
        Some(Self { pid, start_time })
    }

    fn render(&self) -> String {
        match self.start_time {
            Some(t) => format!("{} {t}\n", self.pid),
            None => format!("{}\n", self.pid),
        }
    }

    /// True while this very process (not a later one with the same pid) runs.
    pub fn is_running(&self) -> bool {
        match proc_stat(self.pid) {
            Some(stat) => {
                !matches!(stat.state, 'Z' | 'X')
                    && self.start_time.is_none_or(|t| t == stat.start_time)
            }
            None => false,
        }
    }
}

struct ProcStat {
    state: char,
    start_time: u64,
}

/// `/proc/PID/stat`; the command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// True if `pid` exists and is not a zombie (a killed process whose parent has
/// not reaped it yet is gone for every purpose of a test).
pub fn pid_is_running(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
}

/// `$INNOXIDE_RUNS_DIR`, else `$CACHE/runs`. The override lets a test run a
/// child test process against a registry of its own.
pub fn runs_dir() -> PathBuf {
    match std::env::var_os("INNOXIDE_RUNS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => cache_dir().join("runs"),
    }
}

/// The registry entry of one server; removing it is the last thing a server's
/// `Drop` does.
#[derive(Debug)]
pub(crate) struct RunEntry {
    dir: PathBuf,
}

impl RunEntry {
    pub fn create(base_dir: &Path) -> Result<Self> {
        let runs = runs_dir();
        fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
        let me = ProcessId::of(std::process::id() as i32);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", me.pid))
            .tempdir_in(&runs)
            .with_context(|| format!("creating a run folder in {}", runs.display()))?
            .keep();
        let entry = Self { dir };
        entry.write("owner.pid", &me.render())?;
        entry.write("base_dir", &base_dir.to_string_lossy())?;
        Ok(entry)
    }

    pub fn record_mysqld(&self, pid: i32) -> Result<()> {
        self.record("mysqld", pid)
    }

    pub fn clear_mysqld(&self) {
        self.clear("mysqld");
    }

    /// Records the server process `name` (`<name>.pid`) as running.
    pub fn record(&self, name: &str, pid: i32) -> Result<()> {
        self.write(&format!("{name}.pid"), &ProcessId::of(pid).render())
    }

    /// Forgets the server process `name` (it was stopped and reaped).
    pub fn clear(&self, name: &str) {
        let _ = fs::remove_file(self.dir.join(format!("{name}.pid")));
    }

    fn write(&self, name: &str, text: &str) -> Result<()> {
        let path = self.dir.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for RunEntry {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Kills every registered server whose owning test process is gone, deletes its
/// temp folder and its run folder. [`crate::MysqlBuilder::start`] and
/// [`crate::KubeApi::start`] call this first; servers of live test processes
/// are left alone.
pub fn sweep_orphans() -> Result<Vec<SweptServer>> {
    sweep_orphans_in(&runs_dir())
}

/// [`sweep_orphans`] on the registry folder `runs`.
pub fn sweep_orphans_in(runs: &Path) -> Result<Vec<SweptServer>> {
    let entries = match fs::read_dir(runs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", runs.display())),
    };
    let mut swept = Vec::new();
    for entry in entries.flatten() {
        if let Some(s) = sweep_one(&entry.path())? {
            swept.push(s);
        }
    }
    Ok(swept)
}

fn read_pid_file(path: &Path) -> Option<ProcessId> {
    ProcessId::parse(&fs::read_to_string(path).ok()?)
}

fn sweep_one(dir: &Path) -> Result<Option<SweptServer>> {
    // The folder name starts with the owner's pid, which covers the moment
    // between creating the folder and writing owner.pid.
    let name_pid = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .and_then(|p| p.parse().ok());
    let owner = match read_pid_file(&dir.join("owner.pid")) {
        Some(owner) => owner,
        None => match name_pid {
            Some(pid) => ProcessId {
                pid,
                start_time: None,
            },
            None => return Ok(None), // not ours
        },
    };
    if owner.is_running() {
        return Ok(None);
    }
    let mut processes = Vec::new();
    let mut killed = false;
    for (name, server) in recorded_processes(dir) {
        processes.push((name.clone(), server.pid));
        if !server.is_running() {
            continue;
        }
        let pid = Pid::from_raw(server.pid);
        kill(pid, Signal::SIGKILL)
            .with_context(|| format!("killing orphaned {name} {}", server.pid))?;
        killed = true;
        // Its new parent reaps it; wait until it is gone (or a zombie) so the
        // caller can reuse its port and files.
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mysqld_pid = processes
        .iter()
        .find(|(name, _)| name == "mysqld")
        .map(|(_, pid)| *pid);
    if let Ok(base) = fs::read_to_string(dir.join("base_dir")) {
        let base = PathBuf::from(base.trim());
        let ours = base
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| OUR_BASE_DIR_PREFIXES.iter().any(|p| n.starts_with(p)));
        if ours {
            let _ = fs::remove_dir_all(&base);
        }
    }
    let _ = fs::remove_dir_all(dir);
    Ok(Some(SweptServer {
        run_dir: dir.to_path_buf(),
        owner_pid: owner.pid,
        mysqld_pid,
        processes,
        killed,
    }))
}

/// The server processes a run folder records: every `<name>.pid` but the
/// owner's, sorted by name.
fn recorded_processes(dir: &Path) -> Vec<(String, ProcessId)> {
    let mut found: Vec<(String, ProcessId)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name();
            let name = file.to_str()?.strip_suffix(".pid")?;
            if name == "owner" {
                return None;
            }
            Some((name.to_owned(), read_pid_file(&entry.path())?))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_running_and_a_reused_pid_is_not() {
        let me = ProcessId::of(std::process::id() as i32);
        assert!(me.start_time.is_some());
        assert!(me.is_running());
        let impostor = ProcessId {
            start_time: me.start_time.map(|t| t + 1),
            ..me
        };
        assert!(!impostor.is_running());
    }

    #[test]
    fn a_reaped_child_is_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId::of(child.id() as i32);
        child.wait().unwrap();
        assert!(!id.is_running());
    }

    #[test]
    fn a_sweep_kills_every_recorded_process_of_a_dead_owner() {
        let runs = tempfile::tempdir().unwrap();
        let base = tempfile::Builder::new()
            .prefix(KUBE_BASE_DIR_PREFIX)
            .tempdir()
            .unwrap()
            .keep();
        let mut owner = std::process::Command::new("true").spawn().unwrap();
        let dead = ProcessId::of(owner.id() as i32);
        owner.wait().unwrap();
        let run = runs.path().join(format!("{}-x", dead.pid));
        fs::create_dir(&run).unwrap();
        fs::write(run.join("owner.pid"), dead.render()).unwrap();
        fs::write(run.join("base_dir"), base.to_string_lossy().as_bytes()).unwrap();
        let mut servers: Vec<_> = ["etcd", "apiserver"]
            .into_iter()
            .map(|name| {
                let child = std::process::Command::new("sleep")
                    .arg("60")
                    .spawn()
                    .unwrap();
                let id = ProcessId::of(child.id() as i32);
                fs::write(run.join(format!("{name}.pid")), id.render()).unwrap();
                (name, child, id)
            })
            .collect();

        let swept = sweep_orphans_in(runs.path()).unwrap();

        for (_, child, _) in &mut servers {
            let _ = child.wait();
        }
        assert_eq!(swept.len(), 1, "{swept:?}");
        assert!(swept[0].killed);
        assert_eq!(swept[0].mysqld_pid, None);
        let expected: Vec<(String, i32)> = vec![
            ("apiserver".into(), servers[1].2.pid),
            ("etcd".into(), servers[0].2.pid),
        ];
        assert_eq!(swept[0].processes, expected);
        assert!(servers.iter().all(|(_, _, id)| !id.is_running()));
        assert!(!run.exists() && !base.exists());
    }

    #[test]
    fn pid_files_round_trip() {
        let id = ProcessId {
            pid: 42,
            start_time: Some(7),
        };
        assert_eq!(ProcessId::parse(&id.render()), Some(id));
        assert_eq!(
            ProcessId::parse("42\n"),
            Some(ProcessId {
                pid: 42,
                start_time: None
            })
        );
    }
}
