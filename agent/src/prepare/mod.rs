//! apply-log (prepare): turns a raw backup into a datadir a server can start
//! on, with the server's own mysqld as the recovery engine.
//!
//! 1. Check the backup (manifest, type, no earlier attempt in the way) and
//!    the mysqld (the source's exact version) before touching anything.
//! 2. Build the working copy `D/prepared.partial/`: the data files
//!    (reflinked where possible), `auto.cnf` with the source's server UUID,
//!    and `#innodb_redo/#ib_redo0` synthesized from `xtrabackup_logfile`
//!    and cut at last_lsn.
//! 3. Start the mini instance on it, wait until it serves, prove from its
//!    error log that crash recovery started at the backup's checkpoint and
//!    applied the log up to exactly last_lsn, let it roll back what was
//!    uncommitted, and shut it down slowly and cleanly.
//! 4. Mark it `full-prepared` and rename it to `D/prepared/`.
//!
//! The raw backup is only ever read: a failure at any step leaves it
//! byte-identical (it still verifies against its manifest) and leaves
//! `prepared.partial/` for inspection; a rerun refuses until `--force`
//! says to remove that folder, and nothing else, and start again.

pub mod incremental;
mod memory;
mod mini;
pub mod overlay;
pub mod pitr;
mod recovery_log;
mod redo_file;
pub mod sums;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use mini::{MAX_SOCKET_PATH, MiniError, Mysqld, ServerDirs, parse_version, same_version};
pub use recovery_log::{RecoveryProof, RecoveryProofError, shutdown_lsn};
pub use redo_file::{RedoFileError, SynthesizedRedo};

use crate::fileops::{self, FileError, Transfer};
use crate::meta::{self, BackupType, Checkpoints, FileEntry, FileKind, Manifest};
use crate::mycnf::OptionFile;

/// The prepared datadir inside a backup directory; copy-back reads it.
pub const PREPARED_DIR: &str = "prepared";
/// The working copy while apply-log runs, and what a failed run leaves.
pub const PARTIAL_DIR: &str = "prepared.partial";
/// The mini instance's option file, kept in the working copy so a failed
/// run can be repeated by hand (`mysqld --defaults-file=...`).
pub const MINI_CNF: &str = "innoxide-mysqld.cnf";
/// Files apply-log adds to the prepared datadir that are not part of it:
/// copy-back leaves them out.
pub const OWN_FILES: &[&str] = &[
    meta::CHECKPOINTS,
    meta::SLAVE_INFO,
    meta::MINI_STDOUT,
    meta::MINI_STDERR,
    MINI_CNF,
    sums::SUMS_FILE,
    incremental::CHAIN_FILE,
    // A point-in-time prepare's record of where it stopped.
    meta::BINLOG_INFO,
    pitr::RECORD_FILE,
];

/// Where a compressed or encrypted `xtrabackup_logfile` is decoded to while
/// the redo file is synthesized from it (removed afterwards).
const DECODED_LOGFILE: &str = ".xtrabackup_logfile.decoded";

/// Decodes one stored file of a local backup into `to`, checking it against
/// the manifest (stored and original checksums) as it streams.
fn decode_file(
    backup_dir: &Path,
    entry: &FileEntry,
    key: Option<&crate::repo::Key>,
    to: &Path,
) -> Result<(), Error> {
    decode_file_unsynced(backup_dir, entry, key, to)?
        .sync_all()
        .map_err(|e| FileError::at("write", to, e))?;
    Ok(())
}

/// [`decode_file`] without the sync; returns the written file.
fn decode_file_unsynced(
    backup_dir: &Path,
    entry: &FileEntry,
    key: Option<&crate::repo::Key>,
    to: &Path,
) -> Result<std::fs::File, Error> {
    use std::io::Write;
    let store = crate::repo::Store::Local {
        root: backup_dir.to_owned(),
    };
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| FileError::at("create", parent, e))?;
    }
    let file = std::fs::File::create(to).map_err(|e| FileError::at("create", to, e))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    crate::repo::reader::read_verified(&store, entry, key, &mut |bytes| writer.write_all(bytes))
        .map_err(|e| {
            Error::Unsupported(format!("{e}; the backup is damaged or the key is wrong"))
        })?;
    writer
        .into_inner()
        .map_err(|e| FileError::at("write", to, e.into_error()))
        .map_err(Error::from)
}

/// Largest synthesized redo file: mysqld's limit, or less when the
/// environment's `INNOXIDE_REDO_FILE_MAX_BYTES` says so, which lets a test
/// prove the many-file layout on a real mysqld without 16 GiB of redo.
fn redo_file_limit() -> u64 {
    std::env::var("INNOXIDE_REDO_FILE_MAX_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::innodb::synth::MAX_FILE_SIZE)
}

/// Creator written into the synthesized redo header.
///
/// mysqld treats a log whose creator starts with "MEB" as one written by a
/// backup tool over pages copied from a running server: it turns the
/// doublewrite buffer off for the recovery ("the dblwr file is not redo
/// logged and we can have pages in there that were written after the redo
/// log was copied", log0log.cc), and after recovery it marks that log full
/// and starts new files with its own creator. That is exactly our case. Any
/// other creator gets an "unknown creator" warning, a recovery that
/// consults a doublewrite buffer we never copied, and our header left in
/// the current redo file. ("MySQL Clone" would take clone-only paths.)
pub const REDO_CREATOR: &str = "MEB innoxide";

/// Recovery runs at tens of MB/s; allow this long to start, plus a second
/// per [`START_BYTES_PER_SECOND`] of redo.
const START_TIMEOUT_BASE: Duration = Duration::from_secs(300);
const START_BYTES_PER_SECOND: u64 = 4 << 20;
/// A slow shutdown purges all history first.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long recovered transactions may take to roll back.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct ApplyLogOptions {
    pub backup_dir: PathBuf,
    pub mysqld: Option<PathBuf>,
    pub force: bool,
    pub buffer_pool: u64,
    /// The key of an encrypted backup.
    pub key: Option<crate::repo::Key>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Backup(#[from] crate::verify::Error),
    #[error(transparent)]
    Meta(#[from] meta::Error),
    #[error(transparent)]
    OptionFile(#[from] crate::mycnf::Error),
    #[error(
        "{dir} holds the working copy of an earlier apply-log that did not finish (its mysql-stderr \
         says why); rerun with --force to remove it and start again"
    )]
    PartialLeft { dir: PathBuf },
    #[error(
        "a mini instance (pid {pids:?}) of an earlier apply-log still runs on {dir}; stop it \
         (kill {pids:?}) before --force removes its files"
    )]
    MiniStillRunning { dir: PathBuf, pids: Vec<u32> },
    #[error(
        "the mini instance did not shut down cleanly ({detail}): the result would need redo \
         it does not have; see {log}"
    )]
    NotCleanShutdown { detail: String, log: PathBuf },
    #[error(
        "{dir} exists but is not a prepared datadir (no `backup_type = full-prepared` in its \
         xtrabackup_checkpoints); move it away and run apply-log again"
    )]
    PreparedDamaged { dir: PathBuf },
    #[error("{0}")]
    Unsupported(String),
    /// An incremental that does not continue what was applied, or a chain
    /// whose backups are missing or changed.
    #[error("{0}")]
    Chain(String),
    #[error(
        "{path}: {size} bytes, the manifest says {expected}; the backup is damaged (run `verify`)"
    )]
    SizeMismatch {
        path: PathBuf,
        size: u64,
        expected: u64,
    },
    #[error(
        "{path} is damaged: its SHA-256 is {found}, the manifest says {expected}; apply-log stopped \
         before using it (the raw backup is unchanged; run `verify` to list every damaged file)"
    )]
    Damaged {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "{path} is read by apply-log but the manifest does not list it; the backup is not intact"
    )]
    Unlisted { path: PathBuf },
    #[error(transparent)]
    Sums(#[from] sums::SumsError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Redo(#[from] RedoFileError),
    #[error(transparent)]
    Mini(#[from] MiniError),
    #[error(transparent)]
    Recovery(#[from] RecoveryProofError),
    #[error(
        "{count} transaction(s) recovered as active were still rolling back after {ROLLBACK_TIMEOUT:?}"
    )]
    RollbackTimeout { count: u64 },
    #[error("apply-log was cancelled; {dir} is left as it was (rerun with --force)")]
    Cancelled { dir: PathBuf },
    #[error(transparent)]
    PointInTime(#[from] pitr::PitrError),
}

/// What apply-log did.
#[derive(Debug, Clone)]
pub struct ApplyLogReport {
    pub prepared_dir: PathBuf,
    /// The backup was prepared before: nothing was done.
    pub already_prepared: bool,
    /// How crash recovery went, from the mini instance's error log.
    pub recovery: Option<RecoveryProof>,
    /// XA transactions left PREPARED (user XA prepared at the consistent
    /// point): they come back prepared on the restored server.
    pub prepared_xa: Vec<String>,
    /// With `--slave-info` at backup: the exact replication coordinates of
    /// the prepared data, as also written to `prepared/xtrabackup_slave_info`.
    pub slave_info: Option<String>,
    /// The LSN the mini instance shut down at (and stamped on ibdata1);
    /// the restored server's new redo starts there.
    pub flushed_lsn: Option<u64>,
    pub files_reflinked: usize,
    pub files_copied: usize,
    /// Point-in-time: how long the applier took to replay the binlogs.
    pub replay_seconds: Option<f64>,
}

impl ApplyLogReport {
    /// The report of a run that found `prepared` done already.
    pub fn nothing_done(prepared: PathBuf) -> Self {
        ApplyLogReport {
            prepared_dir: prepared,
            already_prepared: true,
            recovery: None,
            prepared_xa: Vec::new(),
            slave_info: None,
            flushed_lsn: None,
            files_reflinked: 0,
            files_copied: 0,
            replay_seconds: None,
        }
    }
}

/// `D/prepared` when apply-log has finished with `D`.
pub fn prepared_dir(backup_dir: &Path) -> PathBuf {
    backup_dir.join(PREPARED_DIR)
}

/// Whether `dir` is a finished prepared datadir (its marker says so).
pub fn is_prepared(dir: &Path) -> Result<bool, Error> {
    match std::fs::read_to_string(dir.join(meta::CHECKPOINTS)) {
        Ok(text) => Ok(Checkpoints::parse(&text)?.backup_type == BackupType::FullPrepared),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FileError::at("read", &dir.join(meta::CHECKPOINTS), e).into()),
    }
}

#[tracing::instrument(name = "apply_log", skip_all, fields(backup = %options.backup_dir.display()))]
pub async fn apply_log(
    options: &ApplyLogOptions,
    cancel: CancellationToken,
) -> Result<ApplyLogReport, Error> {
    let dir = &options.backup_dir;
    let manifest = crate::verify::read_manifest(dir)?;
    let prepared = prepared_dir(dir);
    if is_prepared(&prepared)? {
        tracing::info!(dir = %prepared.display(), "the backup is already prepared: nothing to do");
        return Ok(ApplyLogReport::nothing_done(prepared));
    }
    if prepared.exists() {
        return Err(Error::PreparedDamaged { dir: prepared });
    }
    let (checkpoints, backup_cnf) = check_metadata(dir, &manifest)?;
    refuse_unsupported(&manifest, &checkpoints, &backup_cnf, options.key.as_ref())?;

    let partial = dir.join(PARTIAL_DIR);
    clear_partial(&partial, options.force)?;
    let mysqld = probe_mysqld(options.mysqld.as_deref(), &manifest.server_version).await?;

    std::fs::create_dir(&partial).map_err(|e| FileError::at("create", &partial, e))?;
    let work = Work {
        chain: None,
        backup_dir: dir,
        partial: &partial,
        manifest: &manifest,
        backup_cnf: &backup_cnf,
        mysqld: &mysqld,
        buffer_pool: options.buffer_pool,
        key: options.key.as_ref(),
        cancel: &cancel,
        replay: None,
    };
    let (mut report, shutdown_lsn) = work.run_for("apply-log").await?;
    finish(
        dir,
        &partial,
        &prepared,
        &checkpoints,
        &backup_cnf,
        shutdown_lsn,
        None,
    )?;
    report.prepared_dir = prepared;
    Ok(report)
}

/// Checks the backup's metadata files (small) against its manifest before
/// any of it is believed (each data file and the captured redo are checked
/// as they are used), and reads the two apply-log needs.
fn check_metadata(dir: &Path, manifest: &Manifest) -> Result<(Checkpoints, OptionFile), Error> {
    for name in [meta::CHECKPOINTS, meta::BACKUP_CNF] {
        check_plain(manifest, name, &dir.join(name))?;
    }
    for entry in manifest
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Metadata && f.stored_sha256.is_none())
    {
        let path = dir.join(&entry.path);
        check_bytes(entry, &path, &path)?;
    }
    Ok((
        read_checkpoints(dir)?,
        OptionFile::load(&dir.join(meta::BACKUP_CNF))?,
    ))
}

/// Refuses what an earlier run left in `partial`, or removes it with
/// `force` (never while its mini instance still runs).
fn clear_partial(partial: &Path, force: bool) -> Result<(), Error> {
    if partial.symlink_metadata().is_err() {
        return Ok(());
    }
    if !force {
        return Err(Error::PartialLeft {
            dir: partial.to_owned(),
        });
    }
    let pids = mini::processes_using(&partial.join(MINI_CNF));
    if !pids.is_empty() {
        return Err(Error::MiniStillRunning {
            dir: partial.to_owned(),
            pids,
        });
    }
    tracing::warn!(dir = %partial.display(), "--force: removing what an earlier apply-log left");
    std::fs::remove_dir_all(partial).map_err(|e| FileError::at("remove", partial, e))?;
    Ok(())
}

/// The mysqld to recover with; it must be the source's exact version.
async fn probe_mysqld(path: Option<&Path>, server_version: &str) -> Result<Mysqld, Error> {
    let mysqld = mini::probe(&mini::locate(path)?).await?;
    if !same_version(&mysqld.version, server_version) {
        return Err(MiniError::VersionMismatch {
            path: mysqld.path,
            found: mysqld.version,
            wanted: server_version.to_owned(),
        }
        .into());
    }
    tracing::info!(mysqld = %mysqld.path.display(), version = %mysqld.version, "preparing");
    Ok(mysqld)
}

/// Checks a plain (not compressed or encrypted) file of the backup, named
/// `name` in the manifest, against its entry.
fn check_plain(manifest: &Manifest, name: &str, path: &Path) -> Result<(), Error> {
    let entry = manifest.file(name).ok_or_else(|| Error::Unlisted {
        path: path.to_owned(),
    })?;
    check_bytes(entry, path, path)
}

/// Checks that the bytes at `read` are those the manifest lists for
/// `entry` (`named` is the backup file the error blames).
fn check_bytes(entry: &FileEntry, named: &Path, read: &Path) -> Result<(), Error> {
    let (size, found) = fileops::sha256_file(read)?;
    if size != entry.size {
        return Err(Error::SizeMismatch {
            path: named.to_owned(),
            size,
            expected: entry.size,
        });
    }
    if found != entry.sha256 {
        return Err(Error::Damaged {
            path: named.to_owned(),
            found,
            expected: entry.sha256.clone(),
        });
    }
    Ok(())
}

fn read_checkpoints(dir: &Path) -> Result<Checkpoints, Error> {
    let path = dir.join(meta::CHECKPOINTS);
    let text = std::fs::read_to_string(&path).map_err(|e| FileError::at("read", &path, e))?;
    Ok(Checkpoints::parse(&text)?)
}

fn refuse_unsupported(
    manifest: &Manifest,
    checkpoints: &Checkpoints,
    backup_cnf: &OptionFile,
    key: Option<&crate::repo::Key>,
) -> Result<(), Error> {
    if checkpoints.backup_type == BackupType::Incremental {
        return Err(Error::Unsupported(
            "this is an incremental backup: run apply-log on its full backup, then \
             apply-incremental-backup --backup-dir FULL --incremental-backup-dir with each \
             incremental in order"
                .into(),
        ));
    }
    if checkpoints.backup_type != BackupType::FullBackuped {
        return Err(Error::Unsupported(format!(
            "backup_type is {}: apply-log prepares raw full backups (full-backuped) only",
            checkpoints.backup_type.as_str()
        )));
    }
    refuse_unsupported_source(manifest, backup_cnf, key)
}

/// What any backup (full or incremental) needs that apply-log lacks.
fn refuse_unsupported_source(
    manifest: &Manifest,
    backup_cnf: &OptionFile,
    key: Option<&crate::repo::Key>,
) -> Result<(), Error> {
    crate::repo::lifecycle::check_key(manifest, key)
        .map_err(|e| Error::Unsupported(e.to_string()))?;
    for option in ["innodb_redo_log_encrypt", "innodb_undo_log_encrypt"] {
        if matches!(backup_cnf.get(&["mysqld"], option), Some("ON" | "1")) {
            return Err(Error::Unsupported(format!(
                "the source ran with {option}=ON: preparing needs its keyring, which is not supported yet"
            )));
        }
    }
    Ok(())
}

/// Marks the working copy prepared and gives it its final name.
fn finish(
    dir: &Path,
    partial: &Path,
    prepared: &Path,
    raw: &Checkpoints,
    backup_cnf: &OptionFile,
    shutdown_lsn: u64,
    chain_record: Option<&str>,
) -> Result<(), Error> {
    // copy-back leaves the redo behind and the restored server starts with
    // new redo at the LSN page 0 of the system tablespace holds: it must be
    // the LSN of this clean shutdown.
    let data_file_path = backup_cnf
        .get(&["mysqld"], "innodb_data_file_path")
        .unwrap_or("ibdata1:12M:autoextend");
    let stamped = system_flushed_lsn(partial, data_file_path);
    if stamped != Some(shutdown_lsn) {
        return Err(Error::NotCleanShutdown {
            detail: format!(
                "InnoDB shut down at LSN {shutdown_lsn} but the system tablespace holds flushed LSN {stamped:?}"
            ),
            log: partial.join(meta::MINI_STDERR),
        });
    }
    let cnf = partial.join(MINI_CNF);
    std::fs::remove_file(&cnf).map_err(|e| FileError::at("remove", &cnf, e))?;
    let marker = Checkpoints {
        backup_type: BackupType::FullPrepared,
        flushed_lsn: shutdown_lsn,
        ..raw.clone()
    };
    meta::write_atomically(partial, meta::CHECKPOINTS, marker.render().as_bytes())?;
    if let Some(record) = chain_record {
        meta::write_atomically(partial, incremental::CHAIN_FILE, record.as_bytes())?;
    }
    // Sealed last: copy-back checks every file against this before it
    // puts anything into a datadir.
    sums::seal(partial)?;
    // A prepared datadir an incremental replaces goes only once the new
    // one is complete.
    let superseded = dir.join(incremental::SUPERSEDED_DIR);
    if superseded.exists() && prepared.exists() {
        // Left by a run stopped between the two renames below.
        std::fs::remove_dir_all(&superseded)
            .map_err(|e| FileError::at("remove", &superseded, e))?;
    }
    if prepared.exists() {
        std::fs::rename(prepared, &superseded)
            .map_err(|e| FileError::new("rename", prepared, &superseded, e))?;
    }
    std::fs::rename(partial, prepared)
        .map_err(|e| FileError::new("rename", partial, prepared, e))?;
    fileops::sync_dir(dir)?;
    if superseded.exists() {
        std::fs::remove_dir_all(&superseded)
            .map_err(|e| FileError::at("remove", &superseded, e))?;
    }
    tracing::info!(dir = %prepared.display(), flushed_lsn = shutdown_lsn, "prepared");
    Ok(())
}

/// The LSN a clean shutdown stamps on page 0 of the system tablespace
/// (FIL_PAGE_FILE_FLUSH_LSN, @26), in its first data file (`ibdata1`
/// unless innodb_data_file_path names another).
fn system_flushed_lsn(datadir: &Path, data_file_path: &str) -> Option<u64> {
    use std::io::Read;
    let files = crate::mysql::facts::system_data_files(data_file_path);
    let first = files.first().map_or("ibdata1", |f| f.file_name());
    let mut page = [0u8; 34];
    std::fs::File::open(datadir.join(first))
        .and_then(|mut f| f.read_exact(&mut page))
        .ok()?;
    Some(u64::from_be_bytes(page[26..34].try_into().ok()?))
}

struct Work<'a> {
    /// For an incremental: the chain whose tablespaces are rebuilt by
    /// overlay; `backup_dir` and `manifest` are then its last backup's,
    /// whose redo, binlog and other files are used.
    chain: Option<&'a [overlay::Member]>,
    backup_dir: &'a Path,
    partial: &'a Path,
    manifest: &'a Manifest,
    backup_cnf: &'a OptionFile,
    mysqld: &'a Mysqld,
    buffer_pool: u64,
    key: Option<&'a crate::repo::Key>,
    cancel: &'a CancellationToken,
    /// Point-in-time: the binlogs the mini instance replays once recovery
    /// has settled, before its clean shutdown.
    replay: Option<&'a pitr::replay::ReplayPlan>,
}

impl Work<'_> {
    /// Runs the whole recovery for `verb` and returns its report with the
    /// LSN the server shut down at. A cancel names the working copy; any
    /// other failure leaves the working copy for inspection.
    async fn run_for(&self, verb: &str) -> Result<(ApplyLogReport, u64), Error> {
        match self.run().await {
            Ok(report) => {
                let shutdown_lsn = report
                    .flushed_lsn
                    .expect("a finished recovery has a shutdown LSN");
                Ok((report, shutdown_lsn))
            }
            Err(Error::Mini(MiniError::Cancelled)) | Err(Error::Cancelled { .. }) => {
                Err(Error::Cancelled {
                    dir: self.partial.to_owned(),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.partial.display(), "{verb} failed; the working copy is left for inspection");
                Err(e)
            }
        }
    }

    async fn run(&self) -> Result<ApplyLogReport, Error> {
        // The data files and the redo file come from different parts of the
        // backup and go to different places, so they are made at once: the
        // redo's check and write overlap the copies'. Both run to their end
        // even when one fails, so that no task still writes in the working
        // copy once this returns.
        let (files, redo) = tokio::join!(self.make_data_files(), self.synthesize_redo());
        let (reflinked, copied, synced) = files?;
        let redo = redo?;
        self.write_auto_cnf()?;
        tracing::info!(
            checkpoint = redo.checkpoint_lsn,
            last_lsn = redo.last_lsn,
            bytes = redo.file_size,
            files = redo.files,
            "redo file synthesized"
        );
        let (recovery, settled, shutdown_lsn) = self.recover(&redo).await?;
        synced.await.expect("the sync task does not panic")?;
        Ok(ApplyLogReport {
            prepared_dir: self.partial.to_owned(),
            already_prepared: false,
            recovery: Some(recovery),
            prepared_xa: settled.prepared_xa,
            slave_info: settled.slave_info,
            flushed_lsn: Some(shutdown_lsn),
            files_reflinked: reflinked,
            files_copied: copied,
            replay_seconds: settled.replay_seconds,
        })
    }

    /// The working copy's data files, copied (and for a chain, rebuilt by
    /// overlay): how many were reflinked and copied, and the task that
    /// syncs the copies.
    async fn make_data_files(
        &self,
    ) -> Result<(usize, usize, tokio::task::JoinHandle<Result<(), Error>>), Error> {
        let (reflinked, copied, written) = self.copy_data_files().await?;
        tracing::info!(reflinked, copied, "data files in the working copy");
        // The copies reach the disk while the redo is made and mysqld
        // recovers (it reads them from the page cache meanwhile), not
        // before: the result is sealed only once they have.
        let synced = tokio::task::spawn_blocking(move || sync_files(&written));
        if let Some(chain) = self.chain {
            let overlaid = self.overlay(chain).await?;
            tracing::info!(?overlaid, "tablespaces rebuilt from the chain");
        }
        Ok((reflinked, copied, synced))
    }

    /// Every data file of the backup (tablespaces, non-InnoDB files, the
    /// binlog and its index) at the same relative path in the working copy:
    /// how many were reflinked and copied, and the new files, not synced yet.
    async fn copy_data_files(&self) -> Result<(usize, usize, Vec<PathBuf>), Error> {
        let files: Vec<FileEntry> = self
            .manifest
            .files
            .iter()
            .filter(|f| is_datadir_file(f.kind))
            // A chain's tablespaces come from the overlay.
            .filter(|f| self.chain.is_none() || !is_tablespace(f.kind))
            .cloned()
            .collect();
        let (backup_dir, partial, key) = (
            self.backup_dir.to_owned(),
            self.partial.to_owned(),
            self.key.cloned(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = stop.clone();
        // Files are copied and checked on several threads: the checksum of
        // each copy is CPU work, and a large backup has many files.
        let job =
            tokio::task::spawn_blocking(move || -> Result<(usize, usize, Vec<PathBuf>), Error> {
                let copy_one = |entry: &FileEntry| -> Result<Transfer, Error> {
                    let (from, to) = (backup_dir.join(&entry.path), partial.join(&entry.path));
                    if worker_stop.load(Ordering::Relaxed) {
                        return Err(Error::Cancelled { dir: to });
                    }
                    if entry.stored_sha256.is_some() {
                        // Compressed or encrypted: decoded and checked on the way.
                        decode_file_unsynced(&backup_dir, entry, key.as_ref(), &to)?;
                        return Ok(Transfer::Copied);
                    }
                    let size = std::fs::metadata(&from)
                        .map_err(|e| FileError::at("read", &from, e))?
                        .len();
                    if size != entry.size {
                        return Err(Error::SizeMismatch {
                            path: from,
                            size,
                            expected: entry.size,
                        });
                    }
                    let how = fileops::copy_file_unsynced(&from, &to)?;
                    // The copy is what recovery will use: check it, not the source.
                    check_bytes(entry, &from, &to)?;
                    Ok(how)
                };
                let done =
                    fileops::map_parallel(&files, fileops::hash_threads(), &worker_stop, copy_one)?;
                if done.len() < files.len() {
                    return Err(Error::Cancelled {
                        dir: partial.clone(),
                    });
                }
                let reflinked = done.iter().filter(|t| **t == Transfer::Reflinked).count();
                let written = files.iter().map(|f| partial.join(&f.path)).collect();
                Ok((reflinked, done.len() - reflinked, written))
            });
        let _stop_on_cancel = StopOnCancel::new(self.cancel, stop);
        job.await.expect("the copy task does not panic")
    }

    async fn overlay(&self, chain: &[overlay::Member]) -> Result<overlay::OverlayReport, Error> {
        let (chain, partial, key) = (chain.to_vec(), self.partial.to_owned(), self.key.cloned());
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = stop.clone();
        let job = tokio::task::spawn_blocking(move || {
            overlay::build(&chain, &partial, key.as_ref(), &worker_stop)
        });
        let _stop_on_cancel = StopOnCancel::new(self.cancel, stop);
        job.await.expect("the overlay task does not panic")
    }

    /// The source's server UUID, so the prepared datadir (and an in-place
    /// restore of it) is the same server; copy-back drops it for a clone.
    fn write_auto_cnf(&self) -> Result<(), Error> {
        let text = format!("[auto]\nserver-uuid={}\n", self.manifest.server_uuid);
        meta::write_atomically(self.partial, "auto.cnf", text.as_bytes())?;
        Ok(())
    }

    async fn synthesize_redo(&self) -> Result<SynthesizedRedo, Error> {
        let redo_dir = self.partial.join("#innodb_redo");
        std::fs::create_dir(&redo_dir).map_err(|e| FileError::at("create", &redo_dir, e))?;
        let mut logfile = self.backup_dir.join(meta::LOGFILE);
        if let Some(entry) = self
            .manifest
            .file(meta::LOGFILE)
            .filter(|e| e.stored_sha256.is_some())
        {
            // A compressed or encrypted log is decoded beside the working copy first.
            let decoded = self.partial.join(DECODED_LOGFILE);
            let (backup_dir, entry, key, to) = (
                self.backup_dir.to_owned(),
                entry.clone(),
                self.key.cloned(),
                decoded.clone(),
            );
            // A temporary file, removed once the redo is made: not synced.
            tokio::task::spawn_blocking(move || {
                decode_file_unsynced(&backup_dir, &entry, key.as_ref(), &to)
            })
            .await
            .expect("the decode task does not panic")?;
            logfile = decoded;
        } else {
            let (manifest, path) = (self.manifest.clone(), logfile.clone());
            tokio::task::spawn_blocking(move || check_plain(&manifest, meta::LOGFILE, &path))
                .await
                .expect("the check task does not panic")?;
        }
        let out = redo_dir.clone();
        let range = self.manifest.redo;
        let page_size = u64::from(self.manifest.page_size);
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = stop.clone();
        let job = tokio::task::spawn_blocking(move || {
            redo_file::write(
                &logfile,
                &out,
                range.start_checkpoint_lsn,
                range.last_lsn,
                page_size,
                REDO_CREATOR,
                redo_file_limit(),
                &worker_stop,
            )
        });
        let _stop_on_cancel = StopOnCancel::new(self.cancel, stop);
        let made = job.await.expect("the redo task does not panic");
        let _ = std::fs::remove_file(self.partial.join(DECODED_LOGFILE));
        match made {
            Ok(made) => Ok(made),
            Err(RedoFileError::Cancelled(_)) => Err(Error::Cancelled {
                dir: self.partial.to_owned(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the mini instance over the working copy: the recovery proof,
    /// what was read from the settled data, the LSN of the clean shutdown.
    async fn recover(
        &self,
        redo: &SynthesizedRedo,
    ) -> Result<(RecoveryProof, Settled, u64), Error> {
        let runtime = runtime_dir()?;
        let socket = runtime.path().join("mysqld.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(MiniError::SocketPathTooLong(socket).into());
        }
        let config = self.mini_config(runtime.path());
        let cnf_path = self.partial.join(MINI_CNF);
        std::fs::write(&cnf_path, mini::render_defaults(&config))
            .map_err(|e| FileError::at("write", &cnf_path, e))?;
        let stderr = self.partial.join(meta::MINI_STDERR);
        let mut instance = mini::MiniInstance::spawn(
            &self.mysqld.path,
            &cnf_path,
            &socket,
            &self.partial.join(meta::MINI_STDOUT),
            &stderr,
        )?;
        let start_timeout =
            START_TIMEOUT_BASE + Duration::from_secs(redo.file_size / START_BYTES_PER_SECOND);
        instance.wait_ready(start_timeout, self.cancel).await?;

        let log =
            std::fs::read_to_string(&stderr).map_err(|e| FileError::at("read", &stderr, e))?;
        let proof = match recovery_log::prove(&log, redo.checkpoint_lsn, redo.last_lsn) {
            Ok(proof) => proof,
            Err(e) => {
                instance.kill().await;
                return Err(e.into());
            }
        };
        tracing::info!(?proof, "crash recovery reached last_lsn");
        let settled = match self.settle(&instance).await {
            Ok(settled) => settled,
            Err(e) => {
                instance.kill().await;
                return Err(e);
            }
        };
        let mut settled = settled;
        if let Some(plan) = self.replay {
            match pitr::replay::run(&instance, plan, &stderr, self.cancel).await {
                Ok(seconds) => settled.replay_seconds = Some(seconds),
                Err(e) => {
                    instance.kill().await;
                    return Err(match e {
                        pitr::ReplayError::Cancelled => Error::Cancelled {
                            dir: self.partial.to_owned(),
                        },
                        e => pitr::PitrError::from(e).into(),
                    });
                }
            }
        }
        if let Err(e) = forget_relay_logs(&instance).await {
            instance.kill().await;
            return Err(e);
        }
        instance.shutdown(SHUTDOWN_TIMEOUT, self.cancel).await?;
        let log =
            std::fs::read_to_string(&stderr).map_err(|e| FileError::at("read", &stderr, e))?;
        let shutdown_lsn =
            recovery_log::shutdown_lsn(&log).ok_or_else(|| Error::NotCleanShutdown {
                detail: "no \"Shutdown completed\" in its error log".into(),
                log: stderr.clone(),
            })?;
        Ok((proof, settled, shutdown_lsn))
    }

    /// Waits until the transactions recovery found active are rolled back,
    /// and reports the XA transactions left prepared and, for a backup
    /// taken with `--slave-info`, the exact replication coordinates.
    async fn settle(&self, instance: &mini::MiniInstance) -> Result<Settled, Error> {
        let stderr = self.partial.join(meta::MINI_STDERR);
        let mut conn = instance.connect().await?;
        let deadline = tokio::time::Instant::now() + ROLLBACK_TIMEOUT;
        loop {
            // The error log says when the background rollback started and
            // ended; INNODB_TRX shows what is still being rolled back.
            let log =
                std::fs::read_to_string(&stderr).map_err(|e| FileError::at("read", &stderr, e))?;
            let count = crate::mysql::recovery::transactions_rolling_back(&mut conn)
                .await
                .map_err(MiniError::from)?;
            if count == 0 && !recovery_log::rollback_pending(&log) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::RollbackTimeout { count });
            }
            tracing::info!(count, "waiting for recovered transactions to roll back");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = self.cancel.cancelled() => return Err(Error::Cancelled { dir: self.partial.to_owned() }),
            }
        }
        let xa = crate::mysql::recovery::prepared_xa(&mut conn)
            .await
            .map_err(MiniError::from)?;
        if !xa.is_empty() {
            tracing::info!(
                ?xa,
                "XA transactions stay prepared, as on the source at the consistent point"
            );
        }
        let slave_info = if self.manifest.file(meta::SLAVE_INFO).is_some() {
            Some(self.write_exact_slave_info(&mut conn).await?)
        } else {
            None
        };
        let _ = conn.disconnect().await;
        Ok(Settled {
            prepared_xa: xa,
            slave_info,
            replay_seconds: None,
        })
    }

    /// `xtrabackup_slave_info` of the prepared data: each channel's
    /// coordinates as the recovered applier tables hold them, which are
    /// exact where the backup's file could only approximate them.
    async fn write_exact_slave_info(&self, conn: &mut mysql_async::Conn) -> Result<String, Error> {
        let channels = crate::mysql::recovery::applied_replica_positions(conn)
            .await
            .map_err(MiniError::from)?;
        // Backups before backup-my.cnf named it: GTIDs were on if any were executed.
        let gtid_mode = match self.backup_cnf.get(&["mysqld"], "gtid_mode") {
            Some(mode) => mode.to_owned(),
            None if self.manifest.gtid_executed.trim().is_empty() => "OFF".to_owned(),
            None => "ON".to_owned(),
        };
        let text =
            crate::backup::replica::slave_info(&channels, &gtid_mode, &self.manifest.gtid_executed);
        meta::write_atomically(self.partial, meta::SLAVE_INFO, text.as_bytes())?;
        tracing::info!(coordinates = %text.trim(), "exact replication coordinates of the prepared data");
        Ok(text)
    }

    fn mini_config(&self, runtime: &Path) -> mini::MiniConfig {
        let source_capacity = self
            .backup_cnf
            .get(&["mysqld"], "innodb_redo_log_capacity")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(100 << 20);
        // The backup stored the binlog under its own name and the index as
        // `<basename>.index` next to it (backup::binlog::index_for).
        let binlog = (!self.manifest.binlog_file.is_empty()).then(|| {
            let file = &self.manifest.binlog_file;
            let base = file.rsplit_once('.').map_or(file.as_str(), |(b, _)| b);
            (base.to_owned(), format!("{base}.index"))
        });
        let external = self.partial.join(crate::backup::datafiles::EXTERNAL_DIR);
        mini::MiniConfig {
            datadir: self.partial.to_owned(),
            socket: runtime.join("mysqld.sock"),
            pid_file: runtime.join("mysqld.pid"),
            secure_file_priv: runtime.to_owned(),
            dirs: self.mysqld.dirs.clone(),
            backup_cnf: mini::backup_cnf_options(self.backup_cnf),
            // The source's: mysqld takes the synthesized file as it is and
            // resizes the log to this capacity after recovery (seen: "Redo
            // log has been requested to resize from 435M to 16M"). More would
            // only fill the prepared datadir with spare redo files.
            redo_capacity: source_capacity,
            buffer_pool: memory::buffer_pool_for(
                self.buffer_pool,
                self.manifest
                    .redo
                    .last_lsn
                    .saturating_sub(self.manifest.redo.start_checkpoint_lsn),
                memory::free_memory(),
            ),
            binlog,
            gtid_mode: !self.manifest.gtid_executed.trim().is_empty(),
            innodb_directories: if external.is_dir() {
                vec![external]
            } else {
                vec![]
            },
            running_as_root: nix::unistd::Uid::effective().is_root(),
            relay_dir: self.replay.map(|plan| plan.relay.dir.clone()),
        }
    }
}

/// Syncs every file of `files`, a few at once (each sync waits for the disk).
fn sync_files(files: &[PathBuf]) -> Result<(), Error> {
    let stop = AtomicBool::new(false);
    fileops::map_parallel(files, fileops::hash_threads(), &stop, |f| {
        fileops::sync_file(f)
    })?;
    Ok(())
}

/// The files a datadir is made of (the rest of a backup is its metadata
/// and the captured redo).
pub(crate) fn is_datadir_file(kind: FileKind) -> bool {
    matches!(
        kind,
        FileKind::SystemTablespace
            | FileKind::UndoTablespace
            | FileKind::Tablespace
            | FileKind::NonInnodb
            | FileKind::Binlog
    )
}

fn is_tablespace(kind: FileKind) -> bool {
    matches!(
        kind,
        FileKind::SystemTablespace | FileKind::UndoTablespace | FileKind::Tablespace
    )
}

/// A private folder for the socket and pid file: short (socket paths are
/// limited to 107 bytes), mode 0700, removed when dropped.
fn runtime_dir() -> Result<tempfile::TempDir, Error> {
    use std::os::unix::fs::PermissionsExt;
    let make = |base: &Path| {
        tempfile::Builder::new()
            .prefix("innoxide-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base)
    };
    let base = std::env::temp_dir();
    let dir = if base.as_os_str().len() < 60 {
        make(&base)
    } else {
        make(Path::new("/tmp"))
    };
    dir.map_err(|e| FileError::at("create a private folder in", &base, e).into())
}

/// What apply-log reads from the mini instance once recovery has settled.
struct Settled {
    prepared_xa: Vec<String>,
    slave_info: Option<String>,
    replay_seconds: Option<f64>,
}

/// Sets a flag when the token is cancelled, for blocking loops that check it.
struct StopOnCancel {
    task: tokio::task::JoinHandle<()>,
}

impl StopOnCancel {
    fn new(cancel: &CancellationToken, stop: Arc<AtomicBool>) -> Self {
        let cancel = cancel.clone();
        Self {
            task: tokio::spawn(async move {
                cancel.cancelled().await;
                stop.store(true, Ordering::Relaxed);
            }),
        }
    }
}

impl Drop for StopOnCancel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The last step in the recovery instance, for every restore of a replica
/// (plain, incremental or to a point in time): the backup holds no relay
/// log, so its applier metadata names files no restored server has, and
/// START REPLICA would fail with ERROR 1872. The auto-positioned channels
/// forget their relay log (see `reset_auto_positioned_channels` for why,
/// and which); the exact coordinates of `--slave-info` were read before.
async fn forget_relay_logs(instance: &mini::MiniInstance) -> Result<(), Error> {
    let mut conn = instance.connect().await?;
    let reset =
        crate::mysql::replay::reset_auto_positioned_channels(&mut conn, pitr::relay::CHANNEL)
            .await
            .map_err(MiniError::from)?;
    let _ = conn.disconnect().await;
    if !reset.is_empty() {
        tracing::info!(
            channels = ?reset,
            "the backup's auto-positioned channels start on a new relay log when restored"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_files_are_not_datadir_files() {
        assert!(is_datadir_file(FileKind::Binlog));
        assert!(!is_datadir_file(FileKind::Redo));
        assert!(!is_datadir_file(FileKind::Metadata));
    }
}
