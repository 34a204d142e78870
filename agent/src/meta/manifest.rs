//! `innoxide.json`: what the backup holds, file by file, with checksums of
//! the stored bytes and of the original bytes. Written last: a backup
//! directory without it is a failed or running backup, never a backup.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Error;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub tool: String,
    pub tool_version: String,
    pub backup_type: String,
    pub server_version: String,
    pub server_uuid: String,
    pub server_id: u32,
    pub page_size: u32,
    pub redo: RedoRange,
    pub binlog_file: String,
    pub binlog_position: u64,
    pub gtid_executed: String,
    /// Absolute paths of the source server, for copy-back.
    pub source_datadir: PathBuf,
    pub source_undo_directory: PathBuf,
    pub compression: Option<String>,
    pub encryption: Option<String>,
    /// Public id of the encryption key (never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key_id: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub lock_seconds: f64,
    pub files: Vec<FileEntry>,
    /// The server's page tracking ran, without a gap, from this LSN, a
    /// point made before this backup read any page: the next incremental
    /// asks for the pages changed since it (see `backup::page_track`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_tracking_lsn: Option<u64>,
    /// Set for an incremental backup: its base and its tablespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
}

/// What makes a backup incremental: the backup it continues and the
/// tablespaces it describes, each stored whole or as a delta.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Incremental {
    /// How the changed pages were found.
    pub method: ChangedPages,
    /// Every page whose LSN is at or above this was copied: the base's
    /// start checkpoint (see `prepare::overlay` for why not its to_lsn).
    pub since_lsn: u64,
    pub base: BaseRef,
    /// Every InnoDB tablespace at this backup's point.
    pub tablespaces: Vec<Tablespace>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ChangedPages {
    /// Every page read, those with an LSN at or above `since_lsn` kept.
    FullScan,
    /// The pages the server's page tracking (component_mysqlbackup) listed,
    /// each still checked against `since_lsn`.
    PageTracking,
}

impl ChangedPages {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangedPages::FullScan => "full-scan",
            ChangedPages::PageTracking => "page-tracking",
        }
    }
}

/// The backup an incremental continues, as it was when this one was taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BaseRef {
    /// Where it was found (a folder or a URL).
    pub location: String,
    /// Its [`Manifest::backup_id`].
    pub backup_id: String,
    pub backup_type: String,
    pub start_checkpoint_lsn: u64,
    pub to_lsn: u64,
    pub last_lsn: u64,
    pub gtid_executed: String,
}

/// One InnoDB tablespace of an incremental backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tablespace {
    /// Path of the tablespace inside a datadir built from the backup.
    pub path: String,
    pub kind: FileKind,
    pub space_id: u32,
    /// Bytes (whole pages) when it was copied.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_path: Option<PathBuf>,
    /// Stored as `<path>.delta` (the pages changed since the base); else
    /// stored whole at `path` (new since the base, or a new space id).
    pub delta: bool,
}

impl Tablespace {
    /// What identifies a tablespace file across a chain: its space id, and
    /// for a system tablespace made of several files, which file.
    pub fn key(&self) -> (u32, String) {
        tablespace_key(self.space_id, self.kind, &self.path)
    }
}

/// [`Tablespace::key`] of a file.
pub fn tablespace_key(space_id: u32, kind: FileKind, path: &str) -> (u32, String) {
    if kind == FileKind::SystemTablespace {
        (space_id, path.to_owned())
    } else {
        (space_id, String::new())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RedoRange {
    /// The checkpoint LSN the captured log starts from (apply-log starts here).
    pub start_checkpoint_lsn: u64,
    pub from_lsn: u64,
    pub to_lsn: u64,
    pub last_lsn: u64,
    /// Bytes of redo captured, header included.
    pub captured_bytes: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    SystemTablespace,
    UndoTablespace,
    Tablespace,
    NonInnodb,
    Redo,
    Binlog,
    Metadata,
    /// The changed pages of one tablespace (incremental backups).
    Delta,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Path inside the backup, `/`-separated.
    pub path: String,
    pub kind: FileKind,
    /// Where the file lived on the source, for files outside the datadir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_path: Option<PathBuf>,
    pub size: u64,
    pub sha256: String,
    /// Stored form, when it differs from the original (compressed/encrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_sha256: Option<String>,
    /// The tablespace id of an InnoDB data file or delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<u32>,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, Error> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| Error::Invalid {
            file: super::MANIFEST,
            problem: e.to_string(),
        })?;
        if manifest.format_version > FORMAT_VERSION {
            return Err(Error::Invalid {
                file: super::MANIFEST,
                problem: format!(
                    "format version {} is newer than this tool understands ({FORMAT_VERSION}); use a newer innoxide-agent",
                    manifest.format_version
                ),
            });
        }
        Ok(manifest)
    }

    pub fn render(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("manifest serialises");
        text.push('\n');
        text
    }

    /// What identifies this backup wherever it is stored, and however
    /// (fetching a compressed or encrypted backup rewrites its manifest):
    /// SHA-256 of the server and the points it was taken at.
    pub fn backup_id(&self) -> String {
        use sha2::Digest;
        let identity = format!(
            "{}|{}|{}|{}|{}|{}|{}",
            self.server_uuid,
            self.redo.start_checkpoint_lsn,
            self.redo.to_lsn,
            self.redo.last_lsn,
            self.started_at,
            self.finished_at,
            self.gtid_executed
        );
        hex::encode(sha2::Sha256::digest(identity.as_bytes()))
    }

    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The InnoDB tablespaces the backup describes; `None` for a full
    /// backup taken before tablespace ids were recorded.
    pub fn tablespaces(&self) -> Option<Vec<Tablespace>> {
        if let Some(incremental) = &self.incremental {
            return Some(incremental.tablespaces.clone());
        }
        self.files
            .iter()
            .filter(|f| {
                matches!(
                    f.kind,
                    FileKind::SystemTablespace | FileKind::UndoTablespace | FileKind::Tablespace
                )
            })
            .map(|f| {
                Some(Tablespace {
                    path: f.path.clone(),
                    kind: f.kind,
                    space_id: f.space_id?,
                    size: f.size,
                    original_path: f.original_path.clone(),
                    delta: false,
                })
            })
            .collect()
    }
}

/// Writes `contents` to `dir/name` so that a reader sees either nothing or
/// all of it: a temporary file, fsync, rename, fsync of the directory.
pub fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> Result<(), Error> {
    let target = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &target)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|source| Error::Write {
        path: target,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_from_a_newer_tool_is_refused_with_advice() {
        let text = r#"{"format_version": 99}"#;
        // Unknown future fields fail on their own; a newer version must say so.
        assert!(Manifest::parse(text).is_err());
    }

    #[test]
    fn atomic_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomically(dir.path(), "x.json", b"{}").unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.json")]);
    }
}
