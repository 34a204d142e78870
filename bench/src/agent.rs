//! The `innoxide-agent` binary as the bench calls it: every verb through the
//! measured runner, so each call yields time, peak RSS and CPU, or the
//! agent's own error line (which is what the report shows for a verb that is
//! not built yet).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::child::{Cmd, Run, Runner};

#[derive(Debug, Clone)]
pub struct Agent {
    pub bin: PathBuf,
    /// `--parallel` of every backup.
    pub parallel: u32,
}

/// Where a backup goes and how it is stored.
#[derive(Debug, Clone, Default)]
pub struct BackupTarget {
    /// A folder, or a repository URL (`s3://bucket/prefix`).
    pub location: String,
    pub compress: bool,
    /// `--throttle` (bytes per second of data file reads, e.g. `100M`).
    pub throttle: Option<String>,
    /// `--pacing` (`adaptive`, the agent's default, or `off`).
    pub pacing: Option<String>,
    /// Extra environment (the S3 server's endpoint and keys).
    pub env: Vec<(String, String)>,
    /// Working folder of the agent process: a stray relative path lands here.
    pub cwd: Option<PathBuf>,
    /// More options (`--page-tracking`, `--incremental=…`, the base).
    pub extra: Vec<String>,
}

impl Agent {
    /// `<folder of this executable>/innoxide-agent`: `make bench` builds
    /// both into the same target folder.
    pub fn next_to_this_binary() -> Result<PathBuf> {
        let me = std::env::current_exe().context("locating the bench binary")?;
        Ok(me.with_file_name("innoxide-agent"))
    }

    pub async fn version(&self) -> String {
        tokio::process::Command::new(&self.bin)
            .arg("--version")
            .output()
            .await
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|e| format!("{}: {e}", self.bin.display()))
    }

    /// `backup --socket=S --user=root --no-timestamp --parallel N [--compress] LOCATION`.
    pub async fn backup(
        &self,
        runner: &Runner,
        label: &str,
        socket: &Path,
        target: &BackupTarget,
    ) -> Result<Run> {
        let mut cmd = Cmd::new(&self.bin)
            .arg("backup")
            .arg(format!("--socket={}", socket.display()))
            .arg("--user=root")
            .arg("--no-timestamp")
            .arg(format!("--parallel={}", self.parallel));
        if target.compress {
            cmd = cmd.arg("--compress");
        }
        if let Some(rate) = &target.throttle {
            cmd = cmd.arg(format!("--throttle={rate}"));
        }
        if let Some(pacing) = &target.pacing {
            cmd = cmd.arg(format!("--pacing={pacing}"));
        }
        for extra in &target.extra {
            cmd = cmd.arg(extra);
        }
        cmd = cmd.arg(&target.location);
        for (k, v) in &target.env {
            cmd = cmd.env(k, v);
        }
        if let Some(dir) = &target.cwd {
            cmd = cmd.cwd(dir);
        }
        runner.run(label, &cmd).await
    }

    /// `apply-log --backup-dir D --mysqld M`.
    pub async fn apply_log(
        &self,
        runner: &Runner,
        label: &str,
        backup: &Path,
        mysqld: &Path,
    ) -> Result<Run> {
        let cmd = Cmd::new(&self.bin)
            .arg("apply-log")
            .arg("--backup-dir")
            .arg(backup)
            .arg("--mysqld")
            .arg(mysqld);
        runner.run(label, &cmd).await
    }

    /// `apply-incremental-backup --backup-dir FULL --incremental-backup-dir INC --mysqld M`.
    pub async fn apply_incremental(
        &self,
        runner: &Runner,
        label: &str,
        full: &Path,
        incremental: &Path,
        mysqld: &Path,
    ) -> Result<Run> {
        let cmd = Cmd::new(&self.bin)
            .arg("apply-incremental-backup")
            .arg("--backup-dir")
            .arg(full)
            .arg("--incremental-backup-dir")
            .arg(incremental)
            .arg("--mysqld")
            .arg(mysqld);
        runner.run(label, &cmd).await
    }

    /// `copy-back --backup-dir D --datadir T --parallel N`.
    pub async fn copy_back(
        &self,
        runner: &Runner,
        label: &str,
        backup: &Path,
        datadir: &Path,
    ) -> Result<Run> {
        let cmd = Cmd::new(&self.bin)
            .arg("copy-back")
            .arg("--backup-dir")
            .arg(backup)
            .arg("--datadir")
            .arg(datadir)
            .arg(format!("--parallel={}", self.parallel));
        runner.run(label, &cmd).await
    }
}

/// What a backup's `innoxide.json` says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestFacts {
    /// Redo the apply-log replays: last LSN − start checkpoint LSN.
    pub redo_bytes: Option<u64>,
    /// Original size of every file the backup holds.
    pub original_bytes: Option<u64>,
    /// Original and stored bytes of the files stored in another form
    /// (compressed): their ratio is the compression ratio.
    pub transformed: Option<(u64, u64)>,
}

pub fn manifest_facts(backup: &Path) -> Result<ManifestFacts> {
    let path = backup.join("innoxide.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(facts_of(&json))
}

/// Read loosely (the manifest format is still moving): missing fields give `None`.
fn facts_of(json: &Value) -> ManifestFacts {
    let redo = &json["redo"];
    let redo_bytes = match (
        redo["last_lsn"].as_u64(),
        redo["start_checkpoint_lsn"].as_u64(),
    ) {
        (Some(last), Some(start)) if last >= start => Some(last - start),
        _ => redo["captured_bytes"].as_u64(),
    };
    let mut original = 0;
    let mut stored = 0;
    let mut all = None;
    for file in json["files"].as_array().into_iter().flatten() {
        if let Some(size) = file["size"].as_u64() {
            *all.get_or_insert(0) += size;
        }
        if let (Some(size), Some(stored_size)) =
            (file["size"].as_u64(), file["stored_size"].as_u64())
        {
            original += size;
            stored += stored_size;
        }
    }
    ManifestFacts {
        redo_bytes,
        original_bytes: all,
        transformed: (original > 0).then_some((original, stored)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_facts_are_read_loosely() {
        let json: Value = serde_json::json!({
            "redo": {"start_checkpoint_lsn": 1000, "last_lsn": 5096, "captured_bytes": 8192},
            "files": [
                {"path": "a.ibd", "size": 100, "stored_size": 40},
                {"path": "b.ibd", "size": 50},
                {"path": "c.ibd", "size": 100, "stored_size": 10}
            ]
        });
        assert_eq!(
            facts_of(&json),
            ManifestFacts {
                redo_bytes: Some(4096),
                original_bytes: Some(250),
                transformed: Some((200, 50))
            }
        );
        let old: Value = serde_json::json!({"redo": {"captured_bytes": 7}, "files": []});
        assert_eq!(
            facts_of(&old),
            ManifestFacts {
                redo_bytes: Some(7),
                original_bytes: None,
                transformed: None
            }
        );
    }
}
