//! Point-in-time restore: apply-log, then the source's binlogs replayed up
//! to a GTID set, a time or a binlog position, all in one run of the mini
//! instance, so `prepared/` holds exactly the data at that point.
//!
//! 1. Read the binlogs (a folder of plain files, or fetched from an
//!    archive), keep the files that continue the backup with no gap
//!    ([`stream`]), and resolve the target to the exact transaction the
//!    replay ends with, or refuse it naming why ([`target`]) — all before
//!    the long apply-log starts.
//! 2. Stage the relay log: the files copied, the last one cut at the
//!    target's end ([`relay`]).
//! 3. apply-log as usual; once recovery has settled, the mini instance's
//!    own applier replays the relay log on a channel of its own with
//!    parallel workers and GTID auto-skip, until `gtid_executed` is the
//!    target; the channel is removed and the instance shuts down cleanly
//!    ([`replay`]).
//! 4. `prepared/xtrabackup_binlog_info` says the source's binlog file,
//!    position and GTID set of the restored data, and
//!    `prepared/innoxide_pitr.json` the target it was prepared to.
//!
//! The raw backup is only read, the user's binlogs too. A failed replay
//! leaves `prepared.partial/` (and the relay folder) for inspection, and
//! the error names the transaction the applier stopped at.

pub mod base;
pub mod relay;
pub mod replay;
pub mod repository;
pub mod stream;
pub mod target;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use replay::ReplayError;
pub use stream::StreamError;
pub use target::{BackupPoint, Cut, StopTarget, TargetError};

use super::{ApplyLogOptions, ApplyLogReport, Error, PARTIAL_DIR, Work};
use crate::fileops::FileError;
use crate::meta::{self, BinlogInfo};

/// The relay log of a replay, beside the working copy; removed when done.
pub const RELAY_DIR: &str = "prepared.relay";
/// Binlogs fetched from an archive for a replay; removed when done.
pub const FETCH_DIR: &str = "prepared.binlogs";
/// In the prepared datadir: the point it was prepared to.
pub const RECORD_FILE: &str = "innoxide_pitr.json";

/// Where the binlogs to replay come from.
#[derive(Debug, Clone)]
pub enum BinlogSource {
    /// A folder of plain binlog files: the source's own while it still has
    /// them, or copies.
    Dir(PathBuf),
    /// An archive written by `archive-binlogs` (docs/binlog-archive.md).
    Archive(Box<ArchiveSource>),
}

/// An archive written by `archive-binlogs`, and how to read it.
#[derive(Debug, Clone)]
pub struct ArchiveSource {
    pub location: String,
    pub repo: crate::repo::RepoOptions,
    /// The key of an encrypted archive.
    pub key: Option<crate::repo::Key>,
}

#[derive(Debug, Clone)]
pub struct PointInTimeOptions {
    pub apply: ApplyLogOptions,
    pub binlogs: BinlogSource,
    pub target: StopTarget,
}

/// What a point-in-time apply-log did.
#[derive(Debug, Clone)]
pub struct PointInTimeReport {
    pub apply: ApplyLogReport,
    /// What the prepared data holds.
    pub record: PitrRecord,
}

/// `prepared/innoxide_pitr.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PitrRecord {
    /// As the user gave it (`GTID set …`, `time …`, `position …`).
    pub target: String,
    /// The restored `gtid_executed`.
    pub gtid_executed: String,
    /// The source's binlog coordinates of the restored data.
    pub binlog_file: String,
    pub binlog_position: u64,
    pub backup_gtid_executed: String,
    pub transactions_replayed: u64,
    /// The last transaction replayed, and when it committed (RFC 3339).
    pub last_transaction: Option<String>,
    pub last_committed: Option<String>,
    /// How long the server's applier took to replay them.
    #[serde(default)]
    pub replay_seconds: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PitrError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error(
        "the backup has no GTID set (the source ran with gtid_mode=OFF): point-in-time replay \
         needs GTIDs to skip what the backup holds and to stop exactly"
    )]
    NoGtids,
    #[error("the backup's GTID set {text:?} does not parse: {problem}")]
    BadBackupSet { text: String, problem: String },
    #[error(
        "{dir} is prepared already, to {at}; move it away (or delete it) to prepare to {target}"
    )]
    PreparedElsewhere {
        dir: PathBuf,
        at: String,
        target: String,
    },
    #[error("the binlog archive: {0}")]
    Archive(String),
    #[error("the backup repository {0}")]
    Repository(String),
    #[error("no base backup in the repository {0}")]
    NoBase(String),
}

/// apply-log to a point in time: see the module documentation.
#[tracing::instrument(name = "apply_log_to_point", skip_all, fields(backup = %options.apply.backup_dir.display(), target = %options.target))]
pub async fn apply_log_to_point(
    options: &PointInTimeOptions,
    cancel: CancellationToken,
) -> Result<PointInTimeReport, Error> {
    let dir = &options.apply.backup_dir;
    let manifest = crate::verify::read_manifest(dir)?;
    let prepared = super::prepared_dir(dir);
    let wanted = options.target.to_string();
    if super::is_prepared(&prepared)? {
        let record = read_record(&prepared)?;
        return match record {
            Some(record) if record.target == wanted => {
                tracing::info!(dir = %prepared.display(), "prepared to this target already: nothing to do");
                Ok(PointInTimeReport {
                    apply: ApplyLogReport::nothing_done(prepared),
                    record,
                })
            }
            other => Err(PitrError::PreparedElsewhere {
                dir: prepared,
                at: other.map_or_else(
                    || "the backup's own point".to_owned(),
                    |r| format!("{} ({})", r.target, r.gtid_executed),
                ),
                target: wanted,
            }
            .into()),
        };
    }
    if prepared.exists() {
        return Err(Error::PreparedDamaged { dir: prepared });
    }
    let (checkpoints, backup_cnf) = super::check_metadata(dir, &manifest)?;
    super::refuse_unsupported(
        &manifest,
        &checkpoints,
        &backup_cnf,
        options.apply.key.as_ref(),
    )?;
    let backup = backup_point(&manifest)?;

    let partial = dir.join(PARTIAL_DIR);
    super::clear_partial(&partial, options.apply.force)?;
    // Scratch of an earlier run that died (its partial is gone by now).
    let (relay_dir, fetch_dir) = (dir.join(RELAY_DIR), dir.join(FETCH_DIR));
    for scratch in [&relay_dir, &fetch_dir] {
        if scratch.exists() {
            std::fs::remove_dir_all(scratch).map_err(|e| FileError::at("remove", scratch, e))?;
        }
    }

    // Everything that can refuse the target runs before the long part.
    let files = gather(&options.binlogs, &backup, &options.target, &fetch_dir).await?;
    let (files, cut) = {
        let (backup, target) = (backup.clone(), options.target.clone());
        tokio::task::spawn_blocking(move || -> Result<_, PitrError> {
            let files = stream::continuing(files, &backup.gtid_executed)?;
            let cut = target::resolve(&files, &backup, &target)?;
            Ok((files, cut))
        })
        .await
        .expect("the planning task does not panic")?
    };
    tracing::info!(
        transactions = cut.transactions,
        gtid_executed = %cut.gtid_executed,
        binlog_file = %cut.binlog_file,
        binlog_position = cut.binlog_position,
        last = ?cut.last.as_ref().map(ToString::to_string),
        "replay planned"
    );
    let mysqld =
        super::probe_mysqld(options.apply.mysqld.as_deref(), &manifest.server_version).await?;

    std::fs::create_dir(&partial).map_err(|e| FileError::at("create", &partial, e))?;
    let plan = match cut.relay {
        None => None,
        Some(span) => {
            let (staged, dir) = (files.clone(), relay_dir.clone());
            let relay = tokio::task::spawn_blocking(move || relay::stage(&staged, span, &dir))
                .await
                .expect("the staging task does not panic")?;
            Some(replay::ReplayPlan {
                relay,
                cut: cut.clone(),
                backup_gtid_executed: backup.gtid_executed.clone(),
                files,
                workers: replay_workers(),
            })
        }
    };
    let work = Work {
        chain: None,
        backup_dir: dir,
        partial: &partial,
        manifest: &manifest,
        backup_cnf: &backup_cnf,
        mysqld: &mysqld,
        buffer_pool: options.apply.buffer_pool,
        key: options.apply.key.as_ref(),
        cancel: &cancel,
        replay: plan.as_ref(),
    };
    let (mut report, shutdown_lsn) = work.run_for("apply-log").await?;
    let mut record = record_of(&options.target, &backup, &cut);
    record.replay_seconds = report.replay_seconds;
    write_record(&partial, &record)?;
    super::finish(
        dir,
        &partial,
        &prepared,
        &checkpoints,
        &backup_cnf,
        shutdown_lsn,
        None,
    )?;
    for scratch in [&relay_dir, &fetch_dir] {
        if scratch.exists() {
            std::fs::remove_dir_all(scratch).map_err(|e| FileError::at("remove", scratch, e))?;
        }
    }
    report.prepared_dir = prepared;
    Ok(PointInTimeReport {
        apply: report,
        record,
    })
}

/// The backup's consistent point, which replay starts from.
fn backup_point(manifest: &meta::Manifest) -> Result<BackupPoint, PitrError> {
    let text = manifest.gtid_executed.trim();
    if text.is_empty() {
        return Err(PitrError::NoGtids);
    }
    let gtid_executed =
        text.parse()
            .map_err(|e: crate::binlog::GtidError| PitrError::BadBackupSet {
                text: text.to_owned(),
                problem: e.to_string(),
            })?;
    Ok(BackupPoint {
        gtid_executed,
        binlog_file: manifest.binlog_file.clone(),
        binlog_position: manifest.binlog_position,
    })
}

/// Reads the binlogs that may continue the backup, each scanned whole.
async fn gather(
    source: &BinlogSource,
    backup: &BackupPoint,
    target: &StopTarget,
    fetch_dir: &Path,
) -> Result<Vec<stream::StreamFile>, PitrError> {
    match source {
        BinlogSource::Dir(dir) => {
            let (dir, backup) = (dir.clone(), backup.clone());
            tokio::task::spawn_blocking(move || scan_dir(&dir, &backup))
                .await
                .expect("the scan task does not panic")
        }
        BinlogSource::Archive(archive) => {
            let paths = fetch(archive, backup, target, fetch_dir).await?;
            tokio::task::spawn_blocking(move || {
                paths
                    .iter()
                    .map(|path| {
                        let name = path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        stream::scan_file(path, &name, true).map_err(PitrError::from)
                    })
                    .collect()
            })
            .await
            .expect("the scan task does not panic")
        }
    }
}

/// Downloads from the archive, as plain local files in `dir`, the binlogs
/// holding the transactions after the backup up to the target; the
/// archive refuses a target it cannot reach, naming the gap.
async fn fetch(
    archive: &ArchiveSource,
    backup: &BackupPoint,
    target: &StopTarget,
    dir: &Path,
) -> Result<Vec<PathBuf>, PitrError> {
    let store = crate::repo::open(&archive.location, &archive.repo)
        .map_err(|e| PitrError::Archive(e.to_string()))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| PitrError::Archive(format!("create {}: {e}", dir.display())))?;
    let wanted = replay_target(target);
    crate::binlog::fetch_for_replay(
        &store,
        archive.key.as_ref(),
        &backup.gtid_executed,
        &wanted,
        dir,
    )
    .await
    .map_err(|e| PitrError::Archive(e.to_string()))
}

/// The archive's reading of a target.
fn replay_target(target: &StopTarget) -> crate::binlog::ReplayTarget {
    use crate::binlog::{CommitTime, ReplayTarget};
    match target {
        StopTarget::Gtid(set) => ReplayTarget::Gtids(set.clone()),
        StopTarget::Time(time) => ReplayTarget::Time(CommitTime(
            (time.unix_timestamp_nanos() / 1000).max(0) as u64,
        )),
        StopTarget::Position { file, pos } => ReplayTarget::Position {
            file: file.clone(),
            position: *pos,
        },
    }
}

/// The folder's binlogs from the last one whose Previous_gtids the backup
/// holds (earlier ones are only opened for their header), scanned.
fn scan_dir(dir: &Path, backup: &BackupPoint) -> Result<Vec<stream::StreamFile>, PitrError> {
    let base = stream::split_binlog_name(&backup.binlog_file).map_or("binlog", |(b, _)| b);
    let listed = stream::list_dir(dir, base)?;
    let mut start = 0;
    for (i, (_, path)) in listed.iter().enumerate() {
        if stream::previous_gtids(path)?.is_subset(&backup.gtid_executed) {
            start = i;
        }
    }
    let mut files = Vec::new();
    for (name, path) in &listed[start..] {
        files.push(stream::scan_file(path, name, false)?);
    }
    Ok(files)
}

/// Parallel appliers: the server's default of 4, more on a larger machine.
fn replay_workers() -> u32 {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get() as u32);
    cores.clamp(4, 16)
}

fn record_of(target: &StopTarget, backup: &BackupPoint, cut: &Cut) -> PitrRecord {
    PitrRecord {
        target: target.to_string(),
        gtid_executed: cut.gtid_executed.to_string(),
        binlog_file: cut.binlog_file.clone(),
        binlog_position: cut.binlog_position,
        backup_gtid_executed: backup.gtid_executed.to_string(),
        transactions_replayed: cut.transactions,
        last_transaction: cut.last.as_ref().map(|l| l.txn.gtid.to_string()),
        last_committed: cut
            .last
            .as_ref()
            .map(|l| target::micros_text(l.txn.committed_micros)),
        replay_seconds: None,
    }
}

/// The record and `xtrabackup_binlog_info` of the prepared data (the
/// raw backup's own file keeps describing the raw backup).
fn write_record(partial: &Path, record: &PitrRecord) -> Result<(), Error> {
    let json = serde_json::to_vec_pretty(record).expect("the record serializes");
    meta::write_atomically(partial, RECORD_FILE, &json)?;
    let info = BinlogInfo {
        file: record.binlog_file.clone(),
        position: record.binlog_position,
        gtid_executed: record.gtid_executed.clone(),
    };
    meta::write_atomically(partial, meta::BINLOG_INFO, info.render().as_bytes())?;
    Ok(())
}

/// The record of a prepared datadir, when it was prepared to a point.
pub fn read_record(prepared: &Path) -> Result<Option<PitrRecord>, Error> {
    let path = prepared.join(RECORD_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Unsupported(format!("{} does not parse: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::at("read", &path, e).into()),
    }
}
