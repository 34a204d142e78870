//! The repository commands: `verify`, `list` and `prune`, built on
//! [`crate::repo::lifecycle`], plus the local manifest reader that
//! apply-log and copy-back use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::meta::{self, Manifest};
use crate::repo::lifecycle::{self, Verified};
use crate::repo::{self, Key, RepoOptions, Store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{dir} has no {manifest}: it is not a complete backup (a failed or running backup, or not a backup at all)"
    )]
    NoManifest {
        dir: PathBuf,
        manifest: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Meta(#[from] meta::Error),
    #[error(transparent)]
    Lifecycle(#[from] lifecycle::Error),
    #[error(transparent)]
    Repo(#[from] repo::RepoError),
}

/// Reads the manifest of a backup in a local folder.
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
    pub location: String,
    pub files: usize,
    pub bytes: u64,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} files, {} bytes, all match the manifest",
            self.location, self.files, self.bytes
        )
    }
}

/// Checks every file of a local, unencrypted backup against its manifest
/// (blocking).
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, Error> {
    let manifest = read_manifest(dir)?;
    let store = Store::Local {
        root: dir.to_owned(),
    };
    let Verified { files, bytes } = lifecycle::verify(&store, &manifest, None)?;
    Ok(VerifyReport {
        location: store.describe(),
        files,
        bytes,
    })
}

/// Checks every object of the backup at `location` (a folder or a URL)
/// against its manifest, decrypting with `key` when it is encrypted.
pub async fn verify(
    location: &str,
    options: &RepoOptions,
    key: Option<Key>,
) -> Result<VerifyReport, Error> {
    let store = repo::open(location, options)?;
    let manifest = lifecycle::read_manifest(&store).await?;
    let checked = store.clone();
    let Verified { files, bytes } =
        tokio::task::spawn_blocking(move || lifecycle::verify(&checked, &manifest, key.as_ref()))
            .await
            .expect("verify thread panicked")?;
    Ok(VerifyReport {
        location: store.describe(),
        files,
        bytes,
    })
}

/// One line per complete backup in the repository, oldest first.
pub async fn list(location: &str, options: &RepoOptions) -> Result<Vec<String>, Error> {
    let store = repo::open(location, options)?;
    Ok(lifecycle::list(&store)
        .await?
        .into_iter()
        .map(|b| {
            let m = &b.manifest;
            let bytes: u64 = m
                .files
                .iter()
                .map(|f| f.stored_size.unwrap_or(f.size))
                .sum();
            format!(
                "{}\t{}\t{}\tlast_lsn={}\t{} bytes\t{}",
                b.name, m.backup_type, m.finished_at, m.redo.last_lsn, bytes, m.gtid_executed
            )
        })
        .collect())
}

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub keep_last: Option<usize>,
    pub keep_within: Option<Duration>,
    pub orphans_older_than: Duration,
}

/// Deletes what retention does not keep, and orphans; returns the names.
pub async fn prune(
    location: &str,
    options: &RepoOptions,
    retention: Retention,
    dry_run: bool,
) -> Result<Vec<String>, Error> {
    let store = repo::open(location, options)?;
    let now = SystemTime::now();
    let backups: Vec<(String, SystemTime)> = lifecycle::list(&store)
        .await?
        .into_iter()
        .map(|b| {
            let finished = lifecycle::finished_at(&b.manifest);
            (b.name, finished)
        })
        .collect();
    let mut doomed =
        lifecycle::plan_prune(&backups, retention.keep_last, retention.keep_within, now);
    doomed.extend(lifecycle::orphans(&store, retention.orphans_older_than, now).await?);
    if !dry_run {
        for name in &doomed {
            lifecycle::delete(&store, name).await?;
            tracing::info!(backup = %name, "deleted by retention");
        }
    }
    Ok(doomed)
}
