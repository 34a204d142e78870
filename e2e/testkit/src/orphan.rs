//! Scaffolding for the tests of the orphan sweep. A child test process
//! starts servers, reports them on one `ORPHAN …` line and dies by SIGKILL
//! (no `Drop` runs), as a test binary killed by a CI timeout would; the
//! parent reads the line and checks that a sweep kills what was left.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitStatus;

use anyhow::Result;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::registry::pid_is_running;

const LINE_PREFIX: &str = "ORPHAN ";

/// In the child: prints `ORPHAN <fields…>`, flushes, and kills this process.
pub fn report_and_die(fields: &[String]) -> ! {
    println!("{LINE_PREFIX}{}", fields.join(" "));
    std::io::stdout().flush().expect("stdout flushes");
    kill(Pid::this(), Signal::SIGKILL).expect("a process can signal itself");
    unreachable!("SIGKILL cannot be caught")
}

/// How the child ended and what it reported.
pub struct ChildReport {
    pub status: ExitStatus,
    /// The fields of its `ORPHAN` line; None when it printed none.
    pub fields: Option<Vec<String>>,
    pub stdout: String,
    pub stderr: String,
}

/// In the parent: runs `test`, an ignored test of this test binary, in a
/// child process with `$env_flag` set and its own run registry `runs` (so
/// concurrent tests' sweeps cannot get there first).
pub async fn run_child(test: &str, env_flag: &str, runs: &Path) -> Result<ChildReport> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--exact", test, "--ignored", "--nocapture"])
        .env(env_flag, "1")
        .env("INNOXIDE_RUNS_DIR", runs)
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields = stdout
        .lines()
        .find_map(|l| l.strip_prefix(LINE_PREFIX))
        .map(|line| line.split(' ').map(str::to_owned).collect());
    Ok(ChildReport {
        status: out.status,
        fields,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Kills these processes, if they still run, when dropped: a test holds one
/// so that an assertion failing before the sweep leaves nothing behind.
pub struct KillOnDrop(pub Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if pid_is_running(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}
