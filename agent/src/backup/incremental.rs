//! What makes a backup incremental: its base (the previous backup of the
//! chain, full or incremental), which tablespaces are stored as deltas of
//! the base and which whole, and the record of both in the manifest.
//!
//! A tablespace is a delta when the base holds the same space id (a rename
//! keeps the id, so its delta is applied to the base's file under the new
//! name); it is copied whole when its space id is new since the base
//! (CREATE, TRUNCATE, ALTER … that rebuild a table, and undo truncation,
//! which is not redo-logged, all give a new id). Why the pages at or above
//! the base's *start checkpoint* are the right ones is explained where they
//! are applied (`prepare::overlay`).

use std::collections::BTreeMap;

use super::Error;
use super::datafiles::DataFile;
use crate::meta::{self, BackupType, BaseRef, ChangedPages, Manifest, Tablespace};
use crate::mysql::ServerFacts;
use crate::repo::{self, RepoOptions};

/// `--incremental` with its base.
#[derive(Debug, Clone)]
pub struct IncrementalOptions {
    /// The previous backup of the chain: a folder or a repository URL.
    pub base: String,
    /// Force how changed pages are found; `None` picks page tracking when
    /// the server offers it for the base's range, else a full scan.
    pub method: Option<ChangedPages>,
}

/// The base as read before anything is locked.
#[derive(Debug, Clone)]
pub struct Base {
    pub manifest: Manifest,
    pub reference: BaseRef,
    /// The base's tablespaces by [`Tablespace::key`].
    pub spaces: BTreeMap<(u32, String), Tablespace>,
}

impl Base {
    /// Every page at or above this LSN is copied.
    pub fn since_lsn(&self) -> u64 {
        self.reference.start_checkpoint_lsn
    }
}

/// Reads the base's manifest and refuses a base this server cannot
/// continue.
pub async fn open_base(
    options: &IncrementalOptions,
    repo_options: &RepoOptions,
    facts: &ServerFacts,
) -> Result<Base, Error> {
    let refuse = |reason: String| {
        Error::Unsupported(format!("--incremental base {}: {reason}", options.base))
    };
    let store = repo::open(&options.base, repo_options)?;
    let bytes = match store.get(meta::MANIFEST).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            return Err(refuse(format!(
                "has no {}: it is not a complete backup",
                meta::MANIFEST
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let manifest = Manifest::parse(&String::from_utf8_lossy(&bytes))?;
    if manifest.server_uuid != facts.server_uuid {
        return Err(refuse(format!(
            "it is a backup of server {}, this server is {}; an incremental continues a backup of the same server",
            manifest.server_uuid, facts.server_uuid
        )));
    }
    if manifest.page_size != facts.page_size {
        return Err(refuse(format!(
            "its page size is {}, the server's is {}",
            manifest.page_size, facts.page_size
        )));
    }
    let kind = manifest.backup_type.as_str();
    if kind != BackupType::FullBackuped.as_str() && kind != BackupType::Incremental.as_str() {
        return Err(refuse(format!(
            "its backup_type is {kind}; the base must be a raw full or incremental backup"
        )));
    }
    let Some(tablespaces) = manifest.tablespaces() else {
        return Err(refuse(
            "it does not record its tablespace ids (taken by an older innoxide-agent); take a \
             full backup to start a chain"
                .into(),
        ));
    };
    let reference = BaseRef {
        location: store.describe(),
        backup_id: manifest.backup_id(),
        backup_type: manifest.backup_type.clone(),
        start_checkpoint_lsn: manifest.redo.start_checkpoint_lsn,
        to_lsn: manifest.redo.to_lsn,
        last_lsn: manifest.redo.last_lsn,
        gtid_executed: manifest.gtid_executed.clone(),
    };
    let spaces = tablespaces.into_iter().map(|t| (t.key(), t)).collect();
    Ok(Base {
        manifest,
        reference,
        spaces,
    })
}

/// The LSN from which `file` is stored as a delta, or `None` to copy it
/// whole.
pub fn delta_since(base: &Base, file: &DataFile) -> Option<u64> {
    let key = meta::tablespace_key(file.space_id?, file.kind, &file.dest);
    base.spaces
        .get(&key)
        // A system tablespace stays one; anything else changing kind under
        // one id would be a new file.
        .filter(|t| t.kind == file.kind)
        .map(|_| base.since_lsn())
}

/// The server must have gone on from the base: its log is past the base's
/// and its start checkpoint not before the base's. A server restored from
/// an older backup, or another one with the same UUID, is refused.
pub fn check_continues(base: &Base, start_checkpoint: u64, lsn: u64) -> Result<(), Error> {
    let r = &base.reference;
    if start_checkpoint < r.start_checkpoint_lsn || lsn < r.last_lsn {
        return Err(Error::Unsupported(format!(
            "the server's redo log (checkpoint {start_checkpoint}, LSN {lsn}) is behind the base \
             {} (checkpoint {}, last_lsn {}): the server does not continue from that backup (was \
             it restored since?); take a full backup",
            r.location, r.start_checkpoint_lsn, r.last_lsn
        )));
    }
    Ok(())
}
