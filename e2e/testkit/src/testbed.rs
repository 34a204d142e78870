//! Where the test bed lives, and installing it on first use.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The cache folder of the test bed: `$INNOXIDE_CACHE`, else `~/.cache/innoxide`
/// (the same rule as `scripts/testbed.sh`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("INNOXIDE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/innoxide")
}

/// The MySQL 9.7 prefix (`PREFIX/bin/mysqld`, `PREFIX/root/usr/...`).
///
/// Runs `scripts/testbed.sh` once per process when the prefix is not installed
/// yet (or sysbench is missing): about 30 s on a fresh machine, nothing after.
pub fn mysql_prefix() -> Result<PathBuf> {
    let prefix = cache_dir().join("mysql-9.7");
    if prefix.join(".installed").is_file() && sysbench_on_path() {
        return Ok(prefix);
    }
    static INSTALL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALL
        .get_or_init(|| run_testbed_script().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn sysbench_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("sysbench").is_file()))
}

fn run_testbed_script() -> Result<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testbed.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}); its stderr:\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let prefix = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .with_context(|| format!("{} printed no prefix", script.display()))?;
    if !prefix.join("bin/mysqld").is_file() {
        bail!(
            "{} reported prefix {} but it has no bin/mysqld",
            script.display(),
            prefix.display()
        );
    }
    Ok(prefix)
}
