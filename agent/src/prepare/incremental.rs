//! apply-incremental-backup: brings a prepared full backup forward to an
//! incremental's consistent point.
//!
//! The raw backups are only read. `FULL/prepared/` is rebuilt, not
//! patched: the tablespaces of the raw full and of every incremental
//! applied so far plus this one are overlaid ([`super::overlay`], which
//! says why that is exact), and this incremental's redo is recovered by the
//! mini instance as apply-log does. The chain applied so far is recorded in
//! `prepared/innoxide_chain.json`; the next incremental must continue its
//! last backup (its base's backup id says which backup it continues),
//! and the incrementals already applied must still be where they were.
//! The old `prepared/` is replaced only once the new one is sealed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::overlay::Member;
use super::{
    ApplyLogReport, Error, PARTIAL_DIR, Work, check_metadata, clear_partial, finish, is_prepared,
    prepared_dir, probe_mysqld, refuse_unsupported_source,
};
use crate::fileops::FileError;
use crate::meta::{self, BackupType, FileEntry, Manifest};

/// The chain a prepared datadir was built from.
pub const CHAIN_FILE: &str = "innoxide_chain.json";
/// Where the prepared datadir an incremental replaces waits until the new
/// one is in place.
pub const SUPERSEDED_DIR: &str = "prepared.superseded";

#[derive(Debug, Clone)]
pub struct ApplyIncrementalOptions {
    /// The full backup (already prepared by apply-log).
    pub backup_dir: PathBuf,
    pub incremental_dir: PathBuf,
    pub mysqld: Option<PathBuf>,
    pub force: bool,
    pub buffer_pool: u64,
    pub key: Option<crate::repo::Key>,
}

/// `prepared/innoxide_chain.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChainRecord {
    /// The incrementals applied, in order (the full is the backup folder).
    pub incrementals: Vec<Link>,
    /// The files of the rebuilt datadir as the chain's last backup
    /// recorded them (copy-back places them by kind and original path).
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Link {
    pub dir: PathBuf,
    pub backup_id: String,
    pub start_checkpoint_lsn: u64,
    pub to_lsn: u64,
    pub last_lsn: u64,
    pub gtid_executed: String,
}

/// Reads the chain record of a prepared datadir (`None` for a full backup
/// prepared alone).
pub fn read_chain(prepared: &Path) -> Result<Option<ChainRecord>, Error> {
    let path = prepared.join(CHAIN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::Chain(format!(
                "{}: {e}; remove the prepared folder and apply again",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::at("read", &path, e).into()),
    }
}

/// A backup's manifest and the id that identifies it.
fn read_member(dir: &Path) -> Result<(Member, String), Error> {
    let manifest = crate::verify::read_manifest(dir)?;
    let id = manifest.backup_id();
    let dir = std::path::absolute(dir).map_err(|e| FileError::at("resolve", dir, e))?;
    Ok((Member { dir, manifest }, id))
}

fn link(member: &Member, backup_id: &str) -> Link {
    let redo = &member.manifest.redo;
    Link {
        dir: member.dir.clone(),
        backup_id: backup_id.to_owned(),
        start_checkpoint_lsn: redo.start_checkpoint_lsn,
        to_lsn: redo.to_lsn,
        last_lsn: redo.last_lsn,
        gtid_executed: member.manifest.gtid_executed.clone(),
    }
}

#[tracing::instrument(name = "apply_incremental", skip_all, fields(backup = %options.backup_dir.display(), incremental = %options.incremental_dir.display()))]
pub async fn apply_incremental(
    options: &ApplyIncrementalOptions,
    cancel: CancellationToken,
) -> Result<ApplyLogReport, Error> {
    let dir = &options.backup_dir;
    let (full, full_id) = read_member(dir)?;
    let prepared = prepared_dir(dir);
    if !is_prepared(&prepared)? {
        return Err(Error::Chain(format!(
            "{} is not prepared: run apply-log --backup-dir {} first, then apply the incrementals \
             in order",
            dir.display(),
            dir.display()
        )));
    }
    let applied = read_chain(&prepared)?.map_or_else(Vec::new, |r| r.incrementals);
    let (incremental, incremental_id) = read_member(&options.incremental_dir)?;
    let inc_dir = incremental.dir.clone();
    let (checkpoints, backup_cnf) = check_metadata(&inc_dir, &incremental.manifest)?;
    let Some(continues) = incremental.manifest.incremental.as_ref().map(|i| &i.base) else {
        return Err(Error::Chain(format!(
            "{} is a {} backup, not an incremental one",
            inc_dir.display(),
            incremental.manifest.backup_type
        )));
    };
    if checkpoints.backup_type != BackupType::Incremental {
        return Err(Error::Chain(format!(
            "{}: its {} says backup_type = {}, not incremental",
            inc_dir.display(),
            meta::CHECKPOINTS,
            checkpoints.backup_type.as_str()
        )));
    }
    if incremental.manifest.server_uuid != full.manifest.server_uuid {
        return Err(Error::Chain(format!(
            "{} is a backup of server {}, {} of server {}",
            inc_dir.display(),
            incremental.manifest.server_uuid,
            dir.display(),
            full.manifest.server_uuid
        )));
    }
    refuse_unsupported_source(&incremental.manifest, &backup_cnf, options.key.as_ref())?;

    // Which backup the prepared datadir is at, and does this one continue it?
    let last = applied
        .last()
        .cloned()
        .unwrap_or_else(|| link(&full, &full_id));
    if applied.iter().any(|l| l.backup_id == incremental_id) {
        tracing::info!(dir = %prepared.display(), "this incremental is already applied: nothing to do");
        return Ok(already_applied(prepared));
    }
    if continues.backup_id != last.backup_id {
        return Err(Error::Chain(not_continuing(&inc_dir, continues, &last)));
    }

    // Every backup of the chain, as it was when it was applied.
    let mut chain = vec![full];
    for link in &applied {
        let (member, id) = read_member(&link.dir).map_err(|e| {
            Error::Chain(format!(
                "{} was applied to {} before and is needed again (the prepared datadir is rebuilt \
                 from the raw full backup and every incremental of the chain): {e}",
                link.dir.display(),
                dir.display()
            ))
        })?;
        if id != link.backup_id {
            return Err(Error::Chain(format!(
                "{} is not the incremental applied to {} before (its backup id differs); put that \
                 one back, or start again from apply-log on the full backup",
                link.dir.display(),
                dir.display()
            )));
        }
        chain.push(member);
    }
    let mut links = applied.clone();
    links.push(link(&incremental, &incremental_id));
    chain.push(incremental);
    let last_manifest: &Manifest = &chain.last().expect("just pushed").manifest;
    let record = ChainRecord {
        incrementals: links,
        files: datadir_files(last_manifest),
    };

    let partial = dir.join(PARTIAL_DIR);
    clear_partial(&partial, options.force)?;
    let mysqld = probe_mysqld(options.mysqld.as_deref(), &last_manifest.server_version).await?;
    std::fs::create_dir(&partial).map_err(|e| FileError::at("create", &partial, e))?;
    let work = Work {
        chain: Some(&chain[..]),
        backup_dir: &inc_dir,
        partial: &partial,
        manifest: last_manifest,
        backup_cnf: &backup_cnf,
        mysqld: &mysqld,
        buffer_pool: options.buffer_pool,
        key: options.key.as_ref(),
        cancel: &cancel,
        replay: None,
    };
    let (mut report, shutdown_lsn) = work.run_for("apply-incremental-backup").await?;
    let text = serde_json::to_string_pretty(&record).expect("the chain record serialises");
    finish(
        dir,
        &partial,
        &prepared,
        &checkpoints,
        &backup_cnf,
        shutdown_lsn,
        Some(&text),
    )?;
    report.prepared_dir = prepared;
    Ok(report)
}

fn already_applied(prepared: PathBuf) -> ApplyLogReport {
    ApplyLogReport::nothing_done(prepared)
}

/// Why an incremental does not continue the chain, with what was expected.
fn not_continuing(inc_dir: &Path, base: &meta::BaseRef, last: &Link) -> String {
    // last_lsn, not to_lsn: the checkpoint may not move between two
    // backups of a quiet server, the log always does.
    let what = if base.last_lsn > last.last_lsn {
        format!(
            "an incremental is missing between them (LSN gap: the chain ends at last_lsn {}, this \
             incremental continues from a backup at last_lsn {})",
            last.last_lsn, base.last_lsn
        )
    } else if base.last_lsn < last.last_lsn {
        format!(
            "wrong order: it continues an earlier backup (last_lsn {}) than the chain's last \
             (last_lsn {})",
            base.last_lsn, last.last_lsn
        )
    } else {
        "it continues another backup taken at the same LSN".to_owned()
    };
    format!(
        "{} does not continue the chain: it continues {} (backup id {}), but the prepared datadir \
         is at {} (to_lsn {}, last_lsn {}, backup id {}); {what}. Expected an incremental whose \
         base is {}",
        inc_dir.display(),
        base.location,
        short(&base.backup_id),
        last.dir.display(),
        last.to_lsn,
        last.last_lsn,
        short(&last.backup_id),
        last.dir.display(),
    )
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The last backup's datadir files: its own (non-InnoDB files, binlog)
/// and the tablespaces the chain rebuilt.
fn datadir_files(manifest: &Manifest) -> Vec<FileEntry> {
    let mut files: Vec<FileEntry> = manifest
        .files
        .iter()
        .filter(|f| super::is_datadir_file(f.kind) && !super::is_tablespace(f.kind))
        .cloned()
        .collect();
    for t in manifest.tablespaces().unwrap_or_default() {
        files.push(FileEntry {
            path: t.path,
            kind: t.kind,
            original_path: t.original_path,
            size: t.size,
            sha256: String::new(),
            stored_size: None,
            stored_sha256: None,
            space_id: Some(t.space_id),
        });
    }
    files
}
