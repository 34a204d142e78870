//! What an operation is, as the agent stores it on the volume and shows it
//! through the API: its kind, state, progress, result or failure. Plain
//! data, no I/O; a record never holds a credential.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tonic::Code;

use crate::backup;
use crate::meta::{ChangedPages, Manifest};

/// The version of the record files' format.
pub const RECORD_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Backup,
    StageRestore,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::StageRestore => "stage-restore",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl State {
    pub fn is_terminal(self) -> bool {
        self != State::Running
    }
}

/// Where an operation is; the engine's backup phases plus the restore's.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Connecting,
    CopyingTablespaces,
    ConsistentPoint,
    FinishingRedo,
    WritingMetadata,
    Fetching,
    Verifying,
    ApplyingLog,
    Done,
}

impl From<backup::Phase> for Phase {
    fn from(phase: backup::Phase) -> Self {
        match phase {
            backup::Phase::Connecting => Phase::Connecting,
            backup::Phase::CopyingTablespaces => Phase::CopyingTablespaces,
            backup::Phase::ConsistentPoint => Phase::ConsistentPoint,
            backup::Phase::FinishingRedo => Phase::FinishingRedo,
            backup::Phase::WritingMetadata => Phase::WritingMetadata,
            backup::Phase::Done => Phase::Done,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressRecord {
    pub phase: Option<Phase>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub redo_start_lsn: u64,
    pub redo_copied_lsn: u64,
    pub pages_reread: u64,
}

/// Why an operation did not succeed: a gRPC code, a stable reason and a
/// message for people that says what to do.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub reason: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, reason: &str, message: impl Into<String>) -> Self {
        Failure {
            code: code as i32,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.code == Code::Cancelled as i32
    }
}

/// What a finished backup is: where, and the consistent point it holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BackupOutcome {
    pub location: String,
    pub backup_name: String,
    pub server_version: String,
    pub server_uuid: String,
    pub page_size: u32,
    pub start_checkpoint_lsn: u64,
    pub to_lsn: u64,
    pub last_lsn: u64,
    pub binlog_file: String,
    pub binlog_position: u64,
    pub gtid_executed: String,
    pub bytes: u64,
    pub files: u32,
    pub lock_seconds: f64,
    #[serde(default)]
    pub incremental: bool,
    /// The base's to_lsn; 0 for a full backup.
    #[serde(default)]
    pub from_lsn: u64,
    /// The chain a restore of this backup applies, the full first and this
    /// one last. Empty when unknown (a backup whose agent stopped after its
    /// manifest was written is recorded without reading its chain).
    #[serde(default)]
    pub chain: Vec<ChainLink>,
    /// An incremental: how its changed pages were found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_pages: Option<ChangedPages>,
    /// The point it marked in the server's page tracking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_tracking_lsn: Option<u64>,
}

/// One backup of an incremental chain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ChainLink {
    pub backup_name: String,
    pub incremental: bool,
    pub from_lsn: u64,
    pub to_lsn: u64,
    pub last_lsn: u64,
    pub gtid_executed: String,
}

impl ChainLink {
    pub fn from_manifest(backup_name: String, manifest: &Manifest) -> Self {
        ChainLink {
            backup_name,
            incremental: manifest.incremental.is_some(),
            from_lsn: manifest.redo.from_lsn,
            to_lsn: manifest.redo.to_lsn,
            last_lsn: manifest.redo.last_lsn,
            gtid_executed: manifest.gtid_executed.clone(),
        }
    }
}

impl BackupOutcome {
    pub fn from_manifest(location: String, backup_name: String, manifest: &Manifest) -> Self {
        BackupOutcome {
            location,
            backup_name,
            server_version: manifest.server_version.clone(),
            server_uuid: manifest.server_uuid.clone(),
            page_size: manifest.page_size,
            start_checkpoint_lsn: manifest.redo.start_checkpoint_lsn,
            to_lsn: manifest.redo.to_lsn,
            last_lsn: manifest.redo.last_lsn,
            binlog_file: manifest.binlog_file.clone(),
            binlog_position: manifest.binlog_position,
            gtid_executed: manifest.gtid_executed.clone(),
            bytes: manifest
                .files
                .iter()
                .map(|f| f.stored_size.unwrap_or(f.size))
                .sum(),
            files: u32::try_from(manifest.files.len()).unwrap_or(u32::MAX),
            lock_seconds: manifest.lock_seconds,
            incremental: manifest.incremental.is_some(),
            from_lsn: manifest.redo.from_lsn,
            chain: Vec::new(),
            changed_pages: manifest.incremental.as_ref().map(|i| i.method),
            page_tracking_lsn: manifest.page_tracking_lsn,
        }
    }
}

/// A staged restore that is ready to be swapped in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StageOutcome {
    pub prepared_dir: PathBuf,
    pub backup_location: String,
    pub server_version: String,
    pub last_lsn: u64,
    pub binlog_file: String,
    pub binlog_position: u64,
    /// What the prepared datadir has executed: the backup's set, or with a
    /// point in time the set at that point.
    pub gtid_executed: String,
    /// A point-in-time restore: the replay on top of the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<Replayed>,
    /// The chain applied, the full first (one link for a full backup).
    #[serde(default)]
    pub chain: Vec<ChainLink>,
}

/// The binlog replay of a point-in-time restore.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Replayed {
    /// The backup's own set, before the replay.
    pub backup_gtid_executed: String,
    pub transactions: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Backup(BackupOutcome),
    StageRestore(StageOutcome),
}

/// One operation as it is stored on the volume. Never holds a credential.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Record {
    pub format: u32,
    pub id: String,
    pub kind: Kind,
    pub state: State,
    pub repository_url: String,
    pub backup_name: String,
    /// The local folder this operation writes (the backup directory, or the
    /// restore's staging folder).
    pub destination: Option<PathBuf>,
    /// The operation made `destination` (or found it empty), so removing
    /// it after a failure removes nothing of anyone else's.
    pub owns_destination: bool,
    pub progress: ProgressRecord,
    pub cancel_requested: bool,
    pub error: Option<Failure>,
    pub result: Option<Outcome>,
    pub created_at: SystemTime,
    pub finished_at: Option<SystemTime>,
    /// The agent process that ran it, for whoever reads the file.
    pub agent_pid: u32,
}

/// Checks an operation id or a backup name: it names a file and a folder,
/// so it is one path segment of safe characters.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 128 {
        return Err(format!("{what} must be 1 to 128 characters long"));
    }
    if name.starts_with('.') || !name.chars().all(safe) {
        return Err(format!(
            "{what} {name:?} may hold only A-Z a-z 0-9 . _ - and must not start with a dot"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_safe_path_segment() {
        assert!(check_name("id", "2b1f6c1e-9d0a-4f7e-8c55-0a7b1d2e3f40").is_ok());
        assert!(check_name("id", "nightly_2026.11.21").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "a b", "x\0", &"x".repeat(129)] {
            assert!(check_name("id", bad).is_err(), "{bad:?}");
        }
    }
}
