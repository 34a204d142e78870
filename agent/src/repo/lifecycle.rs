//! What a repository holds and how it is kept: list, verify, delete, prune,
//! collect orphans, and fetch a backup into a local folder. Everything
//! starts from manifests; a folder without one is an orphan (a failed or a
//! running backup), never a backup.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::chunk::Key;
use super::reader::{self, ReadError};
use super::store::{Store, StoreError};
use crate::meta::{self, Manifest};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{location} has no {manifest}: it is not a complete backup (a failed or running backup, or not a backup at all)"
    )]
    NoManifest {
        location: String,
        manifest: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Meta(#[from] meta::Error),
    #[error("{location}: {count} file(s) failed verification:\n{details}")]
    Verify {
        location: String,
        count: usize,
        details: String,
    },
    #[error(
        "the backup is encrypted with key {expected}; the key given has id {given} (wrong --encrypt-key-file)"
    )]
    WrongKey { expected: String, given: String },
    #[error("the backup is encrypted (key {expected}); give its key with --encrypt-key-file")]
    KeyNeeded { expected: String },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

pub async fn read_manifest(backup: &Store) -> Result<Manifest, Error> {
    match backup.get(meta::MANIFEST).await {
        Ok(bytes) => Ok(Manifest::parse(&String::from_utf8_lossy(&bytes))?),
        Err(e) if e.is_not_found() => Err(Error::NoManifest {
            location: backup.describe(),
            manifest: meta::MANIFEST,
        }),
        Err(e) => Err(e.into()),
    }
}

/// The key must be the one the backup was encrypted with: said by id,
/// before any decryption is tried.
pub fn check_key(manifest: &Manifest, key: Option<&Key>) -> Result<(), Error> {
    match (&manifest.encryption_key_id, key) {
        (None, _) => Ok(()),
        (Some(expected), None) => Err(Error::KeyNeeded {
            expected: expected.clone(),
        }),
        (Some(expected), Some(key)) if key.id() != expected => Err(Error::WrongKey {
            expected: expected.clone(),
            given: key.id().to_owned(),
        }),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub files: usize,
    pub bytes: u64,
}

/// Reads every object of the backup and checks it against the manifest
/// (stored and original checksums, decryption, decompression), restoring
/// nothing. Blocking: call from a blocking thread.
pub fn verify(backup: &Store, manifest: &Manifest, key: Option<&Key>) -> Result<Verified, Error> {
    check_key(manifest, key)?;
    let mut problems = Vec::new();
    let mut bytes = 0;
    for entry in &manifest.files {
        match reader::read_verified(backup, entry, key, &mut |_| Ok(())) {
            Ok(()) => bytes += entry.size,
            Err(e) => problems.push(format!("  {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Verify {
            location: backup.describe(),
            count: problems.len(),
            details: problems.join("\n"),
        });
    }
    Ok(Verified {
        files: manifest.files.len(),
        bytes,
    })
}

/// Copies a backup into a local folder as plain files, verifying each file
/// as it streams; the manifest is written last, so an interrupted fetch is
/// recognisably incomplete. Blocking.
pub fn fetch(
    backup: &Store,
    manifest: &Manifest,
    key: Option<&Key>,
    dest: &Path,
    on_file_done: &mut dyn FnMut(u64),
) -> Result<(), Error> {
    check_key(manifest, key)?;
    for entry in &manifest.files {
        let path = entry
            .path
            .split('/')
            .fold(dest.to_owned(), |p, part| p.join(part));
        let write_err = |source| Error::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        let file = std::fs::File::create(&path).map_err(write_err)?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
        reader::read_verified(backup, entry, key, &mut |bytes| {
            std::io::Write::write_all(&mut writer, bytes)
        })?;
        let file = writer.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        on_file_done(entry.size);
    }
    let mut plain = manifest.clone();
    plain.compression = None;
    plain.encryption = None;
    plain.encryption_key_id = None;
    for entry in &mut plain.files {
        entry.stored_size = None;
        entry.stored_sha256 = None;
    }
    meta::write_atomically(dest, meta::MANIFEST, plain.render().as_bytes())?;
    Ok(())
}

/// One backup in a repository.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub manifest: Manifest,
}

/// Complete backups directly under the repository root, oldest first.
pub async fn list(repository: &Store) -> Result<Vec<Listed>, Error> {
    let mut names: Vec<String> = repository
        .list("")
        .await?
        .into_iter()
        .filter_map(|o| {
            o.path
                .strip_suffix(meta::MANIFEST)
                .and_then(|p| p.strip_suffix('/'))
                .filter(|name| !name.is_empty() && !name.contains('/'))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    let mut backups = Vec::new();
    for name in names {
        let manifest = read_manifest(&repository.child(&name)).await?;
        backups.push(Listed { name, manifest });
    }
    backups.sort_by(|a, b| a.manifest.finished_at.cmp(&b.manifest.finished_at));
    Ok(backups)
}

/// Deletes one backup: its manifest first, so a deletion cut short leaves an
/// orphan (collected later), never a backup with missing files.
pub async fn delete(repository: &Store, name: &str) -> Result<usize, Error> {
    let backup = repository.child(name);
    let manifest_gone = match backup.delete_prefix(meta::MANIFEST).await {
        Ok(n) => n,
        Err(e) if e.is_not_found() => 0,
        Err(e) => return Err(e.into()),
    };
    Ok(manifest_gone + backup.delete_prefix("").await?)
}

/// Which backups retention keeps: the newest `keep_last`, and every one that
/// finished within `keep_within` of `now`. Pure, so it is tested exactly.
/// `backups` is oldest first; returns the names to delete.
pub fn plan_prune(
    backups: &[(String, SystemTime)],
    keep_last: Option<usize>,
    keep_within: Option<Duration>,
    now: SystemTime,
) -> Vec<String> {
    let count = backups.len();
    backups
        .iter()
        .enumerate()
        .filter(|(index, (_, finished))| {
            let among_last = keep_last.is_some_and(|n| index + n >= count);
            let recent = keep_within.is_some_and(|d| {
                now.duration_since(*finished)
                    .map(|age| age <= d)
                    .unwrap_or(true)
            });
            let nothing_said = keep_last.is_none() && keep_within.is_none();
            !(among_last || recent || nothing_said)
        })
        .map(|(_, (name, _))| name.clone())
        .collect()
}

/// Folders without a manifest whose newest object is older than `min_age`:
/// what failed backups left. A younger one may be a backup still running.
pub async fn orphans(
    repository: &Store,
    min_age: Duration,
    now: SystemTime,
) -> Result<Vec<String>, Error> {
    let mut newest: std::collections::BTreeMap<String, (bool, Option<SystemTime>)> =
        Default::default();
    for object in repository.list("").await? {
        let Some((name, rest)) = object.path.split_once('/') else {
            continue;
        };
        let slot = newest.entry(name.to_owned()).or_insert((false, None));
        // A binlog archive kept beside the backups (the operator's
        // `<storage>/binlogs`) is no failed backup.
        slot.0 |= rest == meta::MANIFEST || rest == crate::binlog::archive_index::INDEX;
        slot.1 = slot.1.max(object.modified);
    }
    Ok(newest
        .into_iter()
        .filter(|(_, (has_manifest, modified))| {
            !has_manifest
                && modified.is_some_and(|m| {
                    now.duration_since(m)
                        .map(|age| age >= min_age)
                        .unwrap_or(false)
                })
        })
        .map(|(name, _)| name)
        .collect())
}

pub fn finished_at(manifest: &Manifest) -> SystemTime {
    time::OffsetDateTime::parse(
        &manifest.finished_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map(SystemTime::from)
    .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours_ago: u64, now: SystemTime) -> SystemTime {
        now - Duration::from_secs(hours_ago * 3600)
    }

    #[test]
    fn prune_keeps_the_newest_and_the_recent() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let backups: Vec<(String, SystemTime)> = [100, 50, 30, 10, 2, 1]
            .iter()
            .map(|h| (format!("b{h}"), at(*h, now)))
            .collect();
        assert_eq!(
            plan_prune(&backups, Some(2), None, now),
            vec!["b100", "b50", "b30", "b10"]
        );
        assert_eq!(
            plan_prune(&backups, None, Some(Duration::from_secs(24 * 3600)), now),
            vec!["b100", "b50", "b30"]
        );
        assert_eq!(
            plan_prune(&backups, Some(4), Some(Duration::from_secs(3 * 3600)), now),
            vec!["b100", "b50"]
        );
        assert!(
            plan_prune(&backups, None, None, now).is_empty(),
            "no rule deletes nothing"
        );
        assert!(plan_prune(&backups, Some(10), None, now).is_empty());
    }
}
