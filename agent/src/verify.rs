//! `verify` and `list`: what a backup directory holds, checked against its
//! manifest without restoring anything.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::meta::{self, Manifest};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{dir} has no {manifest}: it is not a complete backup (a failed or running backup, or not a backup at all)"
    )]
    NoManifest { dir: PathBuf, manifest: &'static str },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Meta(#[from] meta::Error),
    #[error("{dir}: {count} file(s) do not match the manifest:\n{details}")]
    Mismatch {
        dir: PathBuf,
        count: usize,
        details: String,
    },
}

pub fn read_manifest(dir: &Path) -> Result<Manifest, Error> {
    let path = dir.join(meta::MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NoManifest {
                dir: dir.to_owned(),
                manifest: meta::MANIFEST,
            });
        }
        Err(source) => return Err(Error::Read { path, source }),
    };
    Ok(Manifest::parse(&text)?)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub dir: PathBuf,
    pub files: usize,
    pub bytes: u64,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} files, {} bytes, all match the manifest",
            self.dir.display(),
            self.files,
            self.bytes
        )
    }
}

/// Checks size and SHA-256 of every file the manifest lists.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, Error> {
    let manifest = read_manifest(dir)?;
    let mut problems = Vec::new();
    let mut bytes = 0;
    for file in &manifest.files {
        let path = dir.join(&file.path);
        match crate::backup::hash_file(&path) {
            Ok((size, sha)) => {
                bytes += size;
                if size != file.size {
                    problems.push(format!("  {}: {} bytes, manifest says {}", file.path, size, file.size));
                } else if sha != file.sha256 {
                    problems.push(format!("  {}: SHA-256 differs from the manifest", file.path));
                }
            }
            Err(e) => problems.push(format!("  {}: {e}", file.path)),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Mismatch {
            dir: dir.to_owned(),
            count: problems.len(),
            details: problems.join("\n"),
        });
    }
    Ok(VerifyReport {
        dir: dir.to_owned(),
        files: manifest.files.len(),
        bytes,
    })
}

/// One line per complete backup directly under `root`, oldest first.
pub fn list(root: &Path) -> Result<Vec<String>, Error> {
    let read_err = |source| Error::Read {
        path: root.to_owned(),
        source,
    };
    let mut lines = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(root)
        .map_err(read_err)?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        match read_manifest(&dir) {
            Ok(m) => {
                let bytes: u64 = m.files.iter().map(|f| f.size).sum();
                lines.push(format!(
                    "{}\t{}\t{}\tlast_lsn={}\t{} bytes\t{}",
                    entry.file_name().to_string_lossy(),
                    m.backup_type,
                    m.finished_at,
                    m.redo.last_lsn,
                    bytes,
                    m.gtid_executed
                ));
            }
            Err(Error::NoManifest { .. }) => {
                tracing::debug!(dir = %dir.display(), "skipping a folder without manifest")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(lines)
}
