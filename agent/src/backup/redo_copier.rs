//! Captures the redo log from the start checkpoint to the consistent point.
//!
//! A dedicated thread follows the server's `#innodb_redo/#ib_redoN` files
//! block by block, validates every block (hdr_no, epoch, CRC-32C), and
//! appends it to `xtrabackup_logfile` in the backup. It runs from the first
//! second of the backup, never throttled, and publishes the LSN up to which
//! captured blocks are synced to disk, so the redo consumer can be advanced
//! and the server never waits for us. Log that the server recycled before
//! we read it is a fatal error that says what to change.
//!
//! Every block copied is also walked record by record
//! ([`RedoWalker`]): the walk checks itself against each block header, and
//! reports the index builds without redo and the file operations the
//! captured log holds, for the backup to judge.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::progress::Progress;
use super::spool::{SpoolCipher, SpoolFile};
use crate::innodb::redo::{self, BLOCK_SIZE, BlockHeader, BlockState, FileHeader, Lsn};
use crate::innodb::redo_files::{RedoDir, RedoFile};
use crate::innodb::redo_walk::{RedoWalker, SpaceEvent, WalkError, WalkSummary};
use crate::innodb::synth;

/// Blocks read per pass: 64 KiB, the server's usual write size.
const BLOCKS_PER_READ: usize = 128;
/// Pause when the log has no new full block yet.
const IDLE_PAUSE: Duration = Duration::from_millis(20);
/// How long a block may stay torn (bad CRC) before it counts as damage.
const TORN_PATIENCE: Duration = Duration::from_secs(10);
/// Sync the captured log and publish progress this often while copying.
const SYNC_EVERY_BYTES: u64 = 1 << 20;
const SYNC_EVERY: Duration = Duration::from_millis(50);

pub const CREATOR: &str = "innoxide";

#[derive(Debug, thiserror::Error)]
pub enum RedoCopyError {
    #[error("cannot read the redo log in {dir}: {reason}")]
    Scan { dir: PathBuf, reason: String },
    #[error(
        "no valid checkpoint found in {0}: is this a MySQL 8.0.30+ datadir with its server running?"
    )]
    NoCheckpoint(PathBuf),
    #[error(
        "the redo file {file} is flagged {flags}: redo logging is or was disabled (ALTER INSTANCE \
         DISABLE INNODB REDO_LOG), so a hot copy cannot be made consistent. Run ALTER INSTANCE \
         ENABLE INNODB REDO_LOG and back up again"
    )]
    LoggingDisabled { file: PathBuf, flags: String },
    #[error(
        "the server recycled redo log at LSN {lsn} before it was copied (oldest redo file now starts at {oldest}). \
         Register the redo log consumer (the default; needs BACKUP_ADMIN) or raise innodb_redo_log_capacity \
         (now {capacity_hint}) so it holds the log written during a whole backup"
    )]
    Overwritten {
        lsn: Lsn,
        oldest: Lsn,
        capacity_hint: String,
    },
    #[error(
        "redo block at LSN {lsn} in {file} stayed invalid for {TORN_PATIENCE:?} ({state}); the redo log is damaged"
    )]
    Damaged {
        lsn: Lsn,
        file: PathBuf,
        state: String,
    },
    #[error("cannot write the captured redo to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the captured redo could not be checked record by record, so the backup cannot tell \
         whether an index was built or a file was changed without redo during the copy: {0}"
    )]
    Walk(#[from] WalkError),
    #[error("the redo copier thread died: {0}")]
    Panicked(String),
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Synth(#[from] synth::SynthError),
}

/// What the copier captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub start_checkpoint_lsn: Lsn,
    /// LSN of the first captured block (the checkpoint's block).
    pub first_block_lsn: Lsn,
    pub last_lsn: Lsn,
    /// Bytes of `xtrabackup_logfile`, header included.
    pub bytes: u64,
    /// The walk over its records, up to `last_lsn`.
    pub walk: WalkSummary,
}

struct Shared {
    /// 0 until the consistent point is known; then the LSN to stop at.
    stop_at: AtomicU64,
    cancelled: AtomicBool,
    /// Where the walk over the records has got to, and what it found.
    walked_lsn: AtomicU64,
    events: Mutex<Vec<SpaceEvent>>,
    /// Also walk the block still being written (see [`RedoCopier::walked_to`]).
    walk_partial: AtomicBool,
}

pub struct RedoCopier {
    shared: Arc<Shared>,
    thread: std::thread::JoinHandle<Result<Captured, RedoCopyError>>,
    durable: watch::Receiver<Lsn>,
    start_checkpoint_lsn: Lsn,
}

/// Refuses a redo log the server marked as not covering every change: a
/// file flagged no-logging or crash-unsafe means pages were written without
/// redo, and no amount of captured log makes a copy of them consistent.
fn refuse_unlogged(dir: &RedoDir) -> Result<(), RedoCopyError> {
    for file in &dir.files {
        let flags = file.header.flags;
        let named: Vec<&str> = [
            (redo::FLAG_NO_LOGGING, "no-logging"),
            (redo::FLAG_CRASH_UNSAFE, "crash-unsafe"),
        ]
        .iter()
        .filter(|(mask, _)| flags & mask != 0)
        .map(|(_, name)| *name)
        .collect();
        if !named.is_empty() {
            return Err(RedoCopyError::LoggingDisabled {
                file: file.path.clone(),
                flags: named.join(" and "),
            });
        }
    }
    Ok(())
}

impl RedoCopier {
    /// Finds the newest checkpoint, writes the header of `out` and starts
    /// copying from the checkpoint's block.
    pub fn start(
        redo_dir: &Path,
        out: &Path,
        cipher: Option<SpoolCipher>,
        progress: Arc<Progress>,
        capacity_hint: String,
        page_size: usize,
    ) -> Result<RedoCopier, RedoCopyError> {
        let dir = scan(redo_dir)?;
        let (file_id, checkpoint) = dir
            .find_max_checkpoint()
            .ok_or_else(|| RedoCopyError::NoCheckpoint(redo_dir.to_owned()))?;
        refuse_unlogged(&dir)?;
        let template = dir
            .files
            .iter()
            .find(|f| f.id == file_id)
            .map(|f| f.header.clone());
        let first_block = redo::align_down(checkpoint, BLOCK_SIZE as Lsn);
        let header = synth::logfile_header(template.as_ref(), first_block, checkpoint, CREATOR)?;
        let write_err = |source| RedoCopyError::Write {
            path: out.to_owned(),
            source,
        };
        let mut file = SpoolFile::create_new(out, cipher).map_err(write_err)?;
        file.write_all(&header).map_err(write_err)?;
        progress.redo_start_lsn.store(checkpoint, Ordering::Relaxed);
        progress
            .redo_copied_lsn
            .store(first_block, Ordering::Relaxed);
        tracing::info!(
            checkpoint,
            file_id,
            "redo capture starts at the newest checkpoint"
        );

        let shared = Arc::new(Shared {
            stop_at: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            walked_lsn: AtomicU64::new(0),
            events: Mutex::new(Vec::new()),
            walk_partial: AtomicBool::new(false),
        });
        let (durable_tx, durable) = watch::channel(first_block);
        let mut worker = Worker {
            redo_dir: redo_dir.to_owned(),
            dir,
            out_path: out.to_owned(),
            out: file,
            next_lsn: first_block,
            written: header.len() as u64,
            synced_at: (Instant::now(), 0),
            durable_tx,
            progress,
            shared: shared.clone(),
            capacity_hint,
            start_checkpoint_lsn: checkpoint,
            first_block_lsn: first_block,
            walker: RedoWalker::new(page_size),
        };
        let thread = std::thread::Builder::new()
            .name("redo-copier".into())
            .spawn(move || worker.run())
            .map_err(|e| RedoCopyError::Panicked(e.to_string()))?;
        Ok(RedoCopier {
            shared,
            thread,
            durable,
            start_checkpoint_lsn: checkpoint,
        })
    }

    pub fn start_checkpoint_lsn(&self) -> Lsn {
        self.start_checkpoint_lsn
    }

    /// The LSN up to which captured blocks are synced: safe to advance the
    /// server's redo consumer to.
    pub fn durable_lsn(&self) -> watch::Receiver<Lsn> {
        self.durable.clone()
    }

    /// Waits until the records up to `lsn` were walked, and returns what
    /// the walk found so far. `None` if the copier stopped first.
    pub async fn walked_to(&self, lsn: Lsn) -> Option<Vec<SpaceEvent>> {
        // The block holding `lsn` may stay partial for long on a quiet
        // server: walk into it too.
        self.shared.walk_partial.store(true, Ordering::SeqCst);
        while self.shared.walked_lsn.load(Ordering::SeqCst) < lsn {
            if self.has_stopped() {
                return None;
            }
            tokio::time::sleep(IDLE_PAUSE).await;
        }
        Some(
            self.shared
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    /// Whether the copier stopped (with an error) before being told to.
    pub fn has_stopped(&self) -> bool {
        self.thread.is_finished()
    }

    /// Copies up to exactly `last_lsn`, then stops and returns what was captured.
    pub async fn finish_at(self, last_lsn: Lsn) -> Result<Captured, RedoCopyError> {
        self.shared.stop_at.store(last_lsn, Ordering::SeqCst);
        self.join().await
    }

    /// Stops copying; the captured file is left for the caller to remove.
    pub async fn cancel(self) -> Result<Captured, RedoCopyError> {
        self.shared.cancelled.store(true, Ordering::SeqCst);
        self.join().await
    }

    async fn join(self) -> Result<Captured, RedoCopyError> {
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| RedoCopyError::Panicked(e.to_string()))?
            .map_err(|panic| RedoCopyError::Panicked(format!("{panic:?}")))?
    }
}

/// Scans the redo directory; a file recycled while it is being listed is
/// normal on a busy server, so such a scan is simply repeated.
fn scan(redo_dir: &Path) -> Result<RedoDir, RedoCopyError> {
    let mut attempts = 0;
    loop {
        match RedoDir::scan(redo_dir) {
            Ok(dir) => return Ok(dir),
            Err(e) if e.needs_rescan() && attempts < 20 => attempts += 1,
            Err(e) => {
                return Err(RedoCopyError::Scan {
                    dir: redo_dir.to_owned(),
                    reason: e.to_string(),
                });
            }
        }
    }
}

struct Worker {
    redo_dir: PathBuf,
    dir: RedoDir,
    out_path: PathBuf,
    out: SpoolFile,
    /// LSN of the next block to capture (a multiple of 512).
    next_lsn: Lsn,
    written: u64,
    synced_at: (Instant, u64),
    durable_tx: watch::Sender<Lsn>,
    progress: Arc<Progress>,
    shared: Arc<Shared>,
    capacity_hint: String,
    start_checkpoint_lsn: Lsn,
    first_block_lsn: Lsn,
    walker: RedoWalker,
}

/// What one pass over the log found.
enum Pass {
    /// Copied this many blocks; there may be more.
    Copied(usize),
    /// Reached the consistent point.
    Finished,
}

impl Worker {
    fn run(&mut self) -> Result<Captured, RedoCopyError> {
        let mut torn_since: Option<Instant> = None;
        let mut buffer = vec![0u8; BLOCKS_PER_READ * BLOCK_SIZE];
        loop {
            if self.shared.cancelled.load(Ordering::SeqCst) {
                return Err(RedoCopyError::Cancelled);
            }
            match self.pass(&mut buffer, &mut torn_since)? {
                Pass::Finished => {
                    self.sync()?;
                    let last_lsn = self.shared.stop_at.load(Ordering::SeqCst);
                    return Ok(Captured {
                        start_checkpoint_lsn: self.start_checkpoint_lsn,
                        first_block_lsn: self.first_block_lsn,
                        last_lsn,
                        bytes: self.written,
                        walk: self.walker.finish(last_lsn)?,
                    });
                }
                Pass::Copied(0) => std::thread::sleep(IDLE_PAUSE),
                Pass::Copied(_) => publish_walk(&self.shared, &self.walker),
            }
            if self.written - self.synced_at.1 >= SYNC_EVERY_BYTES
                || self.synced_at.0.elapsed() >= SYNC_EVERY
            {
                self.sync()?;
            }
        }
    }

    /// Reads blocks from `next_lsn` on and appends the valid full ones.
    fn pass(
        &mut self,
        buffer: &mut [u8],
        torn_since: &mut Option<Instant>,
    ) -> Result<Pass, RedoCopyError> {
        let stop_at = self.shared.stop_at.load(Ordering::SeqCst);
        // Full blocks copied before the stop point was known may already
        // reach past it; apply-log cuts the log at exactly last_lsn.
        if stop_at != 0 && self.next_lsn > stop_at {
            return Ok(Pass::Finished);
        }
        let Some((file, blocks)) = self.read_at_next(buffer)? else {
            return Ok(Pass::Copied(0));
        };
        let mut copied = 0;
        for index in 0..blocks {
            let lsn = self.next_lsn;
            let block: &[u8; BLOCK_SIZE] = buffer[index * BLOCK_SIZE..(index + 1) * BLOCK_SIZE]
                .try_into()
                .expect("exact block slice");
            let state = redo::classify_block(block, lsn);
            let reaches_stop =
                |header: &BlockHeader| stop_at != 0 && lsn + u64::from(header.data_len) >= stop_at;
            match state {
                BlockState::Valid { header, full } if full || reaches_stop(&header) => {
                    *torn_since = None;
                    self.append(block)?;
                    copied += 1;
                    if stop_at != 0 && self.next_lsn > stop_at {
                        return Ok(Pass::Finished);
                    }
                }
                // A partial last block, or the log has not got here yet.
                BlockState::Valid { .. } | BlockState::Stale { .. } | BlockState::Empty => {
                    *torn_since = None;
                    if matches!(state, BlockState::Valid { .. })
                        && self.shared.walk_partial.load(Ordering::SeqCst)
                    {
                        // Walked by a clone: this block is copied only once
                        // it is full (or holds the stop point).
                        let mut ahead = self.walker.clone();
                        if ahead.push_block(lsn, block).is_ok() {
                            publish_walk(&self.shared, &ahead);
                        }
                    }
                    if stop_at != 0 && self.ends_exactly_at_block_start(stop_at) {
                        // The consistent point is the first byte of this
                        // block's payload: nothing of this block is needed,
                        // but apply-log's cut wants a header-only block here.
                        self.append(&header_only_block(lsn))?;
                        return Ok(Pass::Finished);
                    }
                    return Ok(Pass::Copied(copied));
                }
                BlockState::Torn | BlockState::Malformed { .. } => {
                    let since = *torn_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > TORN_PATIENCE {
                        return Err(RedoCopyError::Damaged {
                            lsn,
                            file: file.clone(),
                            state: format!("{state:?}"),
                        });
                    }
                    return Ok(Pass::Copied(copied));
                }
                BlockState::Ahead { .. } => return Err(self.overwritten(lsn)),
            }
        }
        Ok(Pass::Copied(copied))
    }

    fn ends_exactly_at_block_start(&self, stop_at: Lsn) -> bool {
        stop_at == self.next_lsn + redo::BLOCK_HDR_SIZE as Lsn
    }

    /// Reads as many blocks from `next_lsn` as one file holds, up to the
    /// buffer's size. `None` when no file holds `next_lsn` yet.
    fn read_at_next(
        &mut self,
        buffer: &mut [u8],
    ) -> Result<Option<(PathBuf, usize)>, RedoCopyError> {
        for attempt in 0..2 {
            if let Some(file) = self.dir.file_for_lsn(self.next_lsn) {
                let file: RedoFile = file.clone();
                let offset = file
                    .offset_of(self.next_lsn)
                    .expect("file_for_lsn returned a file holding the LSN");
                let available = ((file.end_lsn() - self.next_lsn) as usize).min(buffer.len());
                let blocks = available / BLOCK_SIZE;
                match File::open(&file.path).and_then(|f| {
                    f.read_exact_at(&mut buffer[..blocks * BLOCK_SIZE], offset)
                        .map(|_| f)
                }) {
                    Ok(_) if self.still_same_file(&file) => {
                        return Ok(Some((file.path.clone(), blocks)));
                    }
                    // Renamed or recycled underneath us: look again.
                    Ok(_) | Err(_) => {}
                }
            }
            if attempt == 0 {
                self.dir = scan(&self.redo_dir)?;
            }
        }
        let oldest = self.dir.files.first().map(|f| f.header.start_lsn);
        match oldest {
            Some(oldest) if self.next_lsn < oldest => Err(self.overwritten(self.next_lsn)),
            _ => Ok(None),
        }
    }

    /// After a read, the file at that path must still be the one we mapped:
    /// the server renames consumed files to `_tmp` and reuses them.
    fn still_same_file(&self, file: &RedoFile) -> bool {
        let mut header = [0u8; BLOCK_SIZE];
        File::open(&file.path)
            .and_then(|f| f.read_exact_at(&mut header, 0))
            .ok()
            .and_then(|_| FileHeader::parse(&header).ok())
            .is_some_and(|h| h.start_lsn == file.header.start_lsn)
    }

    fn overwritten(&self, lsn: Lsn) -> RedoCopyError {
        RedoCopyError::Overwritten {
            lsn,
            oldest: self
                .dir
                .files
                .first()
                .map(|f| f.header.start_lsn)
                .unwrap_or(0),
            capacity_hint: self.capacity_hint.clone(),
        }
    }

    fn append(&mut self, block: &[u8; BLOCK_SIZE]) -> Result<(), RedoCopyError> {
        self.out
            .write_all(block)
            .map_err(|source| RedoCopyError::Write {
                path: self.out_path.clone(),
                source,
            })?;
        self.walker.push_block(self.next_lsn, block)?;
        self.next_lsn += BLOCK_SIZE as Lsn;
        self.written += BLOCK_SIZE as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), RedoCopyError> {
        self.out
            .sync_data()
            .map_err(|source| RedoCopyError::Write {
                path: self.out_path.clone(),
                source,
            })?;
        self.synced_at = (Instant::now(), self.written);
        self.progress
            .redo_copied_lsn
            .store(self.next_lsn, Ordering::Relaxed);
        self.durable_tx.send_replace(self.next_lsn);
        Ok(())
    }
}

/// Makes the walk's progress and findings visible to the backup.
fn publish_walk(shared: &Shared, walker: &RedoWalker) {
    let found = walker.events();
    let mut events = shared.events.lock().unwrap_or_else(|p| p.into_inner());
    let known = events.len();
    if known < found.len() {
        events.extend_from_slice(&found[known..]);
    }
    drop(events);
    if let Some(lsn) = walker.walked_lsn() {
        shared.walked_lsn.fetch_max(lsn, Ordering::SeqCst);
    }
}

/// A block with a header and no payload, as a log that ends exactly at a
/// block boundary has next.
fn header_only_block(lsn: Lsn) -> [u8; BLOCK_SIZE] {
    let mut block = [0u8; BLOCK_SIZE];
    let len = redo::BLOCK_HDR_SIZE as u16;
    // write_to also seals the block with its CRC-32C.
    BlockHeader::for_lsn(lsn, len, len).write_to(&mut block);
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::innodb::redo::{FLAG_CRASH_UNSAFE, FLAG_NO_LOGGING};

    /// A redo directory with one file whose header carries `flags`.
    fn redo_dir_with_flags(flags: u32) -> (tempfile::TempDir, RedoDir) {
        let dir = tempfile::tempdir().unwrap();
        let start = 1_000 * BLOCK_SIZE as Lsn;
        let mut bytes = synth::logfile_header(None, start, start + 12, "MySQL 9.7.4")
            .unwrap()
            .to_vec();
        let mut header = FileHeader::parse(&bytes[..BLOCK_SIZE]).unwrap();
        header.flags = flags;
        bytes[..BLOCK_SIZE].copy_from_slice(&header.encode());
        bytes.resize(64 * 1024, 0);
        std::fs::write(dir.path().join("#ib_redo3"), bytes).unwrap();
        let scanned = RedoDir::scan(dir.path()).unwrap();
        (dir, scanned)
    }

    #[test]
    fn a_redo_log_flagged_unlogged_is_refused_by_name() {
        let (_keep, clean) = redo_dir_with_flags(0);
        refuse_unlogged(&clean).unwrap();
        let (_keep, disabled) = redo_dir_with_flags(FLAG_NO_LOGGING | FLAG_CRASH_UNSAFE);
        let err = refuse_unlogged(&disabled).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no-logging and crash-unsafe"), "{text}");
        assert!(text.contains("#ib_redo3"), "{text}");
        assert!(text.contains("ENABLE INNODB REDO_LOG"), "{text}");
    }
}
