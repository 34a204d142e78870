//! The binlog archiver: copies a server's binary logs into a repository as
//! they grow (`archive-binlogs`), as segments of whole transactions, and
//! keeps the archive's index (docs/binlog-archive.md).
//!
//! Every pass: list the server's files, decide where to go on from the
//! index ([`archive_plan::resume`]; gaps are recorded there), read each
//! file's new bytes from the server's binlog folder up to what the server
//! has durably written, store them up to the last whole transaction, and
//! rewrite the index after each segment. The index is written only after
//! the segment it names is stored, so a crash at any point loses nothing
//! and doubles nothing: the next run continues from the index.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::Conn;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::archive_index::{ArchiveIndex, ArchivedFile, CommitTime, Gap, IndexError, Segment};
use super::archive_plan::{self, ServerFile};
use super::archive_prune::{self, PruneReport};
use super::events::{self, EventError, FileHeader};
use super::gtid_set::{GtidError, GtidSet};
use crate::mysql::{self, ConnectOptions, LogStatus};
use crate::repo::writer::StoredWriter;
use crate::repo::{RepoError, RepoOptions, Store, StoreError, Transform};

/// The most bytes read and stored as one segment (a bigger transaction is
/// read whole all the same).
const MAX_SEGMENT: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    pub connect: ConnectOptions,
    /// The archive: a folder or a repository URL.
    pub location: String,
    pub repo: RepoOptions,
    pub transform: Transform,
    /// The longest time between two looks at the server.
    pub upload_interval: Duration,
    /// Where this process sees the server's binlog files; default: the
    /// folder of `@@log_bin_basename` (the agent runs beside mysqld).
    pub binlog_dir: Option<PathBuf>,
    pub status: Arc<ArchiveStatus>,
}

/// When to stop.
#[derive(Debug, Clone)]
pub enum Stop {
    /// Archive up to the server's position at the call, then return.
    UntilCurrent,
    /// Keep following the server until the token is cancelled.
    Cancelled(CancellationToken),
}

/// What one run stored.
#[derive(Debug, Clone, Default)]
pub struct ArchiveReport {
    pub segments: usize,
    pub bytes: u64,
    pub transactions: u64,
    /// The archive's history (first file's predecessors and every archived
    /// transaction) at the end.
    pub history: GtidSet,
    /// Gaps found by this run.
    pub new_gaps: Vec<Gap>,
    /// With [`Stop::UntilCurrent`]: the server's `gtid_executed` at the
    /// position archived up to (one read of `performance_schema.log_status`).
    pub target_gtid_executed: Option<GtidSet>,
}

/// The archiver's state for metrics and the operator's status; updated
/// after every pass.
#[derive(Debug, Default)]
pub struct ArchiveStatus {
    inner: Mutex<StatusSnapshot>,
    /// Retention asked of the running archiver (the index has one writer).
    prunes: Mutex<Vec<PruneRequest>>,
    wake: tokio::sync::Notify,
}

type PruneRequest = (
    GtidSet,
    tokio::sync::oneshot::Sender<Result<PruneReport, String>>,
);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusSnapshot {
    /// Seconds between now and the newest archived commit, when the server
    /// has written more than the archive holds; 0 when caught up.
    pub lag_seconds: f64,
    /// Bytes of binlog the server has durably written and the archive
    /// does not hold yet.
    pub bytes_behind: u64,
    pub last_archived: Option<CommitTime>,
    pub last_error: Option<String>,
    /// Every gap in the archive, described.
    pub gaps: Vec<String>,
    pub passes: u64,
    /// When the last pass ended (failed or not).
    pub updated_at: Option<CommitTime>,
}

impl ArchiveStatus {
    pub fn snapshot(&self) -> StatusSnapshot {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Has the running archiver drop the leading files whose transactions
    /// are all in `covered_by` (see [`archive_prune`](super::archive_prune)),
    /// at once rather than at its next pass.
    pub async fn prune(&self, covered_by: GtidSet) -> Result<PruneReport, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if let Ok(mut prunes) = self.prunes.lock() {
            prunes.push((covered_by, reply));
        }
        self.wake.notify_one();
        answer
            .await
            .map_err(|_| "the binlog archiver stopped before it pruned".to_owned())?
    }

    /// Records an error that stopped a pass (or a run) until the next one.
    pub fn failed_pass(&self, error: String) {
        self.update(|s| {
            s.last_error = Some(error);
            s.updated_at = Some(CommitTime::now());
        });
    }

    fn update(&self, change: impl FnOnce(&mut StatusSnapshot)) {
        if let Ok(mut s) = self.inner.lock() {
            change(&mut s);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Mysql(#[from] mysql::Error),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the server's GTID set does not parse: {0}")]
    Gtid(#[from] GtidError),
    #[error("cannot read the binlog file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot store {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("binlog file {path}: {source}")]
    Events { path: PathBuf, source: EventError },
    #[error("{0}")]
    Key(String),
    #[error(
        "another archiver writes to {location} (its index is at generation {found}, this one wrote {expected}); \
         run one archiver per archive"
    )]
    ConcurrentWriter {
        location: String,
        found: u64,
        expected: u64,
    },
    #[error("the archive has gaps (transactions it can never hold): {0}")]
    Gaps(String),
    #[error("the server's position at the call ({file}:{position}) was not reached: {why}")]
    Unreached {
        file: String,
        position: u64,
        why: String,
    },
}

/// Archives the server's binlogs into `options.location` until `stop`.
/// With [`Stop::UntilCurrent`], gaps found make it fail (after archiving
/// what it can), naming them; continuous archiving logs them, keeps them
/// in the status and goes on.
pub async fn archive_binlogs(
    options: &ArchiveOptions,
    stop: Stop,
) -> Result<ArchiveReport, ArchiveError> {
    let store = crate::repo::open(&options.location, &options.repo)?;
    let mut conn = mysql::connect(&options.connect).await?;
    let setup = mysql::binlogs::setup(&mut conn).await?;
    let index = open_index(&store, &options.transform).await?;
    let mut archiver = Archiver {
        options,
        store,
        dir: options.binlog_dir.clone().unwrap_or(setup.dir),
        server_uuid: setup.server_uuid,
        index,
        headers: HashMap::new(),
        report: ArchiveReport::default(),
    };
    match stop {
        Stop::UntilCurrent => {
            let target = mysql::log_status::read(&mut conn).await?;
            archiver.report.target_gtid_executed = Some(target.gtid_executed.parse()?);
            archiver.until(&mut conn, &target).await?;
            archiver.report.history = archiver.index.history();
            if !archiver.report.new_gaps.is_empty() {
                let named: Vec<String> = archiver
                    .report
                    .new_gaps
                    .iter()
                    .map(|g| g.to_string())
                    .collect();
                return Err(ArchiveError::Gaps(named.join("; ")));
            }
        }
        Stop::Cancelled(cancel) => {
            let mut conn = Some(conn);
            loop {
                archiver.serve_prunes().await;
                let result = match conn.as_mut() {
                    Some(c) => archiver.pass(c, None).await.map(|_| ()),
                    None => match mysql::connect(&options.connect).await {
                        Ok(c) => archiver.pass(conn.insert(c), None).await.map(|_| ()),
                        Err(e) => Err(e.into()),
                    },
                };
                if let Err(e) = result {
                    if matches!(e, ArchiveError::ConcurrentWriter { .. }) {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "binlog archiving pass failed; retrying");
                    options.status.failed_pass(e.to_string());
                    conn = None;
                }
                tokio::select! {
                    _ = tokio::time::sleep(options.upload_interval) => {}
                    _ = options.status.wake.notified() => {}
                    _ = cancel.cancelled() => break,
                }
            }
            archiver.report.history = archiver.index.history();
        }
    }
    Ok(archiver.report)
}

/// Loads the archive's index, or starts one, and checks that this run
/// stores segments the way the archive's readers expect.
async fn open_index(store: &Store, transform: &Transform) -> Result<ArchiveIndex, ArchiveError> {
    let key_id = transform.key.as_ref().map(|k| k.id().to_owned());
    let Some(index) = ArchiveIndex::load(store).await? else {
        return Ok(ArchiveIndex::new(
            transform.zstd_level.map(|_| "zstd".to_owned()),
            key_id,
        ));
    };
    match (&index.key_id, &key_id) {
        (Some(theirs), Some(ours)) if theirs != ours => Err(ArchiveError::Key(format!(
            "{} is encrypted with key {theirs}, not with the given key ({ours}); give the archive's key",
            store.describe()
        ))),
        (Some(theirs), None) => Err(ArchiveError::Key(format!(
            "{} is encrypted (key {theirs}); give its key with --encrypt-key-file",
            store.describe()
        ))),
        (None, Some(_)) if !index.files.is_empty() => Err(ArchiveError::Key(format!(
            "{} is not encrypted; archive into it without --encrypt-key-file, or start a new archive",
            store.describe()
        ))),
        _ => Ok(index),
    }
}

struct Archiver<'a> {
    options: &'a ArchiveOptions,
    store: Store,
    dir: PathBuf,
    server_uuid: String,
    index: ArchiveIndex,
    /// The header events of the server's files, read once each.
    headers: HashMap<String, FileHeader>,
    report: ArchiveReport,
}

/// What one pass saw.
struct Pass {
    listing: mysql::binlogs::BinlogFiles,
}

impl Archiver<'_> {
    /// Runs the prunes asked through the status, between passes.
    async fn serve_prunes(&mut self) {
        let requests = match self.options.status.prunes.lock() {
            Ok(mut prunes) => std::mem::take(&mut *prunes),
            Err(_) => return,
        };
        for (covered_by, reply) in requests {
            let removed = archive_prune::prune_index(&mut self.index, &covered_by);
            let result = if removed.is_empty() {
                Ok(PruneReport::default())
            } else {
                match self.save_index().await {
                    Ok(()) => archive_prune::delete_segments(&self.store, &removed)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            };
            let _ = reply.send(result);
        }
    }

    /// Passes until the server's position at the call is archived.
    async fn until(&mut self, conn: &mut Conn, target: &LogStatus) -> Result<(), ArchiveError> {
        let unreached = |why: String| ArchiveError::Unreached {
            file: target.binlog_file.clone(),
            position: target.binlog_position,
            why,
        };
        for attempt in 0..20 {
            let pass = self.pass(conn, Some(target)).await?;
            let files = &pass.listing.files;
            let Some(target_at) = files.iter().position(|f| f.name == target.binlog_file) else {
                return Err(unreached("the server no longer has that file".into()));
            };
            let tip = self
                .index
                .tip()
                .filter(|t| t.server_uuid == self.server_uuid);
            let reached =
                tip.is_some_and(|tip| match files.iter().position(|f| f.name == tip.name) {
                    Some(at) if at == target_at => tip.size >= target.binlog_position,
                    Some(at) => at > target_at,
                    None => false,
                });
            if reached {
                return Ok(());
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Err(unreached(
            "the server did not make that position durable within 20 passes".into(),
        ))
    }

    /// One look at the server: archive everything new (up to `target`).
    async fn pass(
        &mut self,
        conn: &mut Conn,
        target: Option<&LogStatus>,
    ) -> Result<Pass, ArchiveError> {
        let listed_at = CommitTime::now();
        let listing = mysql::binlogs::files(conn).await?;
        if listing.files.is_empty() {
            return Err(ArchiveError::Mysql(mysql::Error::Unexpected {
                what: "SHOW BINARY LOGS",
                detail: "no binlog files".into(),
            }));
        }
        let gtid_executed: GtidSet = mysql::gtid_executed(conn).await?.parse()?;
        // A name no longer listed may come back with other contents
        // (RESET BINARY LOGS AND GTIDS): forget its header.
        self.headers
            .retain(|name, _| listing.files.iter().any(|f| &f.name == name));
        let mut server_files = Vec::with_capacity(listing.files.len());
        for file in &listing.files {
            server_files.push(ServerFile {
                name: file.name.clone(),
                previous_gtids: self.header(&file.name)?.previous_gtids.clone(),
            });
        }
        let resume = archive_plan::resume(
            &self.index,
            &self.server_uuid,
            &server_files,
            &gtid_executed,
        );
        if !resume.gaps.is_empty() {
            for found in resume.gaps.iter().cloned() {
                let gap = Gap {
                    detected_at: CommitTime::now(),
                    kind: found.kind,
                    missing: found.missing,
                    position: self.index.files.len(),
                    before: found.before,
                    server_uuid: self.server_uuid.clone(),
                    message: found.message,
                };
                if self.index.add_gap(gap.clone()) {
                    tracing::error!(%gap, "binlog archive gap");
                    self.report.new_gaps.push(gap);
                }
            }
            self.save_index().await?;
        }
        let target_at =
            target.and_then(|t| listing.files.iter().position(|f| f.name == t.binlog_file));
        let last = listing.files.len() - 1;
        for (at, (file, on_server)) in listing
            .files
            .iter()
            .zip(&server_files)
            .enumerate()
            .skip(resume.file)
        {
            if target_at.is_some_and(|t| at > t) {
                break;
            }
            let mut limit = if at == last && file.name == listing.active {
                listing.active_position
            } else {
                file.size
            };
            // A file with a later one listed after it is closed: its size is final.
            let mut may_complete = at < last;
            if let (Some(t), Some(target)) = (target_at, target)
                && at == t
            {
                may_complete &= target.binlog_position >= limit;
                limit = limit.min(target.binlog_position);
            }
            let entry = if at == resume.file && resume.continue_tip {
                self.index.files.last().cloned()
            } else {
                None
            };
            let in_index = entry.is_some();
            let entry = entry.unwrap_or_else(|| ArchivedFile {
                server_uuid: self.server_uuid.clone(),
                name: file.name.clone(),
                previous_gtids: on_server.previous_gtids.clone(),
                gtids: GtidSet::new(),
                first_event_time: None,
                last_event_time: None,
                size: 0,
                complete: false,
                segments: Vec::new(),
            });
            self.archive_file(entry, in_index, limit, may_complete)
                .await?;
        }
        let caught_up = self.update_status(&listing);
        if caught_up && target.is_none() {
            self.index.caught_up_at = Some(listed_at);
            self.save_index().await?;
        }
        Ok(Pass { listing })
    }

    /// The header events of one of the server's files (read once).
    fn header(&mut self, name: &str) -> Result<&FileHeader, ArchiveError> {
        if !self.headers.contains_key(name) {
            let path = self.dir.join(name);
            let header = read_header(&path)?;
            self.headers.insert(name.to_owned(), header);
        }
        Ok(&self.headers[name])
    }

    /// Stores the bytes of one file from `entry.size` up to `limit`, as
    /// segments of whole transactions, and marks it complete when it may be
    /// and all of it is stored.
    async fn archive_file(
        &mut self,
        mut entry: ArchivedFile,
        mut in_index: bool,
        limit: u64,
        may_complete: bool,
    ) -> Result<(), ArchiveError> {
        let path = self.dir.join(&entry.name);
        let fde = self.header(&entry.name)?.fde.clone();
        // What the archive holds before this file. After a failover the new
        // primary's file logs again, replicated, transactions the old
        // primary's files hold: they stay in the bytes (the file is stored
        // as the server wrote it; replay's GTID auto-skip passes them) but
        // the index names each transaction once, in the file that first
        // archived it.
        let mut before = self.index.history();
        if in_index {
            before = before.subtract(&entry.gtids);
        }
        let mut read_cap = MAX_SEGMENT;
        while entry.size < limit {
            let start = entry.size;
            let read_to = limit.min(start.saturating_add(read_cap));
            let bytes = read_range(&path, start, read_to).await?;
            // The magic bytes are not an event; segment 0 carries them.
            let skip = if start == 0 {
                events::MAGIC.len() as u64
            } else {
                0
            };
            let scan =
                events::scan(&fde, &bytes[skip as usize..], start + skip).map_err(|source| {
                    ArchiveError::Events {
                        path: path.clone(),
                        source,
                    }
                })?;
            if scan.end <= start + skip {
                if read_to < limit {
                    // One transaction bigger than a segment: read it whole.
                    read_cap = read_cap.saturating_mul(2);
                    continue;
                }
                break;
            }
            let data = &bytes[..(scan.end - start) as usize];
            let segment = self
                .store_segment(&entry.server_uuid, &entry.name, start, data)
                .await?;
            entry.segments.push(segment);
            entry.size = scan.end;
            let mut new = 0;
            for t in &scan.transactions {
                if t.gtid.as_ref().is_some_and(|g| before.contains(g)) {
                    continue;
                }
                if let Some(gtid) = &t.gtid {
                    entry.gtids.insert(gtid);
                }
                new += 1;
                let at = CommitTime(t.commit_micros);
                entry.first_event_time = Some(entry.first_event_time.map_or(at, |f| f.min(at)));
                entry.last_event_time = Some(entry.last_event_time.map_or(at, |l| l.max(at)));
            }
            entry.complete = may_complete && entry.size >= limit;
            self.report.segments += 1;
            self.report.bytes += data.len() as u64;
            self.report.transactions += new;
            self.commit(&entry, &mut in_index).await?;
            read_cap = MAX_SEGMENT;
        }
        if in_index && may_complete && entry.size >= limit && !entry.complete {
            entry.complete = true;
            self.commit(&entry, &mut in_index).await?;
        }
        Ok(())
    }

    /// Puts the file's entry into the index (as its last file) and saves it.
    async fn commit(
        &mut self,
        entry: &ArchivedFile,
        in_index: &mut bool,
    ) -> Result<(), ArchiveError> {
        match self.index.files.last_mut() {
            Some(last) if *in_index => *last = entry.clone(),
            _ => self.index.files.push(entry.clone()),
        }
        *in_index = true;
        self.save_index().await
    }

    async fn store_segment(
        &self,
        server_uuid: &str,
        name: &str,
        start: u64,
        data: &[u8],
    ) -> Result<Segment, ArchiveError> {
        let end = start + data.len() as u64;
        let sha256 = hex::encode(Sha256::digest(data));
        let path = Segment::path_for(server_uuid, name, start, end, &sha256);
        // Left by a run that stopped before its index named it: the same
        // bytes (the name holds their hash), so it is simply written again.
        self.store.delete(&path).await?;
        let store = self.store.clone();
        let transform = self.options.transform.clone();
        let owned = data.to_vec();
        let object = path.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let mut writer = StoredWriter::create(&store, &object, owned.len() as u64, &transform)
                .map_err(std::io::Error::other)?;
            if let Err(e) = writer.write(&owned) {
                writer.abort();
                return Err(e);
            }
            writer.finish()
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| ArchiveError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(Segment {
            path,
            start,
            end,
            sha256: stored.sha256,
            stored_size: stored.stored.as_ref().map(|s| s.0),
            stored_sha256: stored.stored.map(|s| s.1),
        })
    }

    /// Writes the index, after checking that nobody else wrote it since.
    async fn save_index(&mut self) -> Result<(), ArchiveError> {
        if let Some(current) = ArchiveIndex::load(&self.store).await?
            && current.generation != self.index.generation
        {
            return Err(ArchiveError::ConcurrentWriter {
                location: self.store.describe(),
                found: current.generation,
                expected: self.index.generation,
            });
        }
        self.index.save(&self.store).await?;
        Ok(())
    }

    /// Updates the status; true when the archive holds all the server has
    /// durably written.
    fn update_status(&self, listing: &mysql::binlogs::BinlogFiles) -> bool {
        let tip = self
            .index
            .tip()
            .filter(|t| t.server_uuid == self.server_uuid);
        let last = listing.files.len() - 1;
        let written = |at: usize| {
            let f = &listing.files[at];
            if at == last && f.name == listing.active {
                listing.active_position
            } else {
                f.size
            }
        };
        let tip_at = tip.and_then(|t| listing.files.iter().position(|f| f.name == t.name));
        let behind: u64 = match (tip, tip_at) {
            (Some(tip), Some(at)) => {
                written(at).saturating_sub(tip.size) + (at + 1..=last).map(written).sum::<u64>()
            }
            _ => (0..=last).map(written).sum(),
        };
        let newest = self.index.last_event_time();
        let lag = match newest {
            Some(newest) if behind > 0 => CommitTime::now().0.saturating_sub(newest.0) as f64 / 1e6,
            _ => 0.0,
        };
        let gaps = self.index.gaps.iter().map(|g| g.to_string()).collect();
        self.options.status.update(|s| {
            s.lag_seconds = lag;
            s.bytes_behind = behind;
            s.last_archived = newest;
            s.last_error = None;
            s.gaps = gaps;
            s.passes += 1;
            s.updated_at = Some(CommitTime::now());
        });
        behind == 0
    }
}

/// Reads a file's header events from its first bytes.
fn read_header(path: &Path) -> Result<FileHeader, ArchiveError> {
    let read_err = |source| ArchiveError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    let mut want = 64 << 10;
    loop {
        bytes.clear();
        file.seek(SeekFrom::Start(0)).map_err(read_err)?;
        (&mut file)
            .take(want)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        match events::read_file_header(&bytes) {
            Ok(Some(header)) => return Ok(header),
            Ok(None) if (bytes.len() as u64) == want => want *= 4,
            Ok(None) => {
                return Err(ArchiveError::Events {
                    path: path.to_owned(),
                    source: EventError::Bad {
                        offset: bytes.len() as u64,
                        problem: "the file ends before its Previous_gtids event".into(),
                    },
                });
            }
            Err(source) => {
                return Err(ArchiveError::Events {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Bytes `[start, end)` of a local file.
async fn read_range(path: &Path, start: u64, end: u64) -> Result<Vec<u8>, ArchiveError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&owned)?;
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::with_capacity((end - start) as usize);
        file.take(end - start).read_to_end(&mut bytes)?;
        if (bytes.len() as u64) < end - start {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ends at byte {} though the server reported {end}",
                    start + bytes.len() as u64
                ),
            ));
        }
        Ok(bytes)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(|source| ArchiveError::Read {
        path: path.to_owned(),
        source,
    })
}
