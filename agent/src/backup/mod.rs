//! A hot full backup of a running server, the innobackupex flow done for
//! MySQL 8.0.30+:
//!
//! 1. connect, read the server's facts, refuse what we cannot back up;
//! 2. `LOCK INSTANCE FOR BACKUP` (DML goes on, DDL waits) for the whole copy,
//!    waited for no longer than `--backup-lock-timeout`;
//! 3. register the redo log consumer and start the redo copier at the
//!    newest checkpoint, advancing the consumer as blocks are synced; the
//!    captured redo is walked record by record as it is copied;
//! 4. copy every tablespace in parallel, page-validated;
//! 5. consistent point: non-InnoDB files (under `LOCK TABLES … READ` of
//!    just those tables, never FTWRL: see [`table_lock`]), one read of
//!    `log_status`, the binlog up to its position, the redo up to its LSN;
//! 6. refuse the backup if the redo shows an index built or a file changed
//!    without redo during the copy ([`redo_check`]); unlock, unregister,
//!    write the seed's metadata files, and the manifest last.
//!
//! Every exit path (error, cancel, server gone) closes the sessions, which
//! releases the lock and the consumer on the server, and removes the
//! partial directory: a failed backup leaves nothing that looks like one.

mod binlog;
pub mod consumer;
pub mod datafiles;
mod delta_copy;
pub mod incremental;
pub mod pacing;
mod page_copy;
pub mod page_track;
pub mod progress;
pub mod redo_check;
pub mod redo_copier;
pub(crate) mod replica;
mod spool;
pub mod table_lock;
mod throttle;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::Conn;
use tokio_util::sync::CancellationToken;

use crate::innodb::redo::Lsn;
use crate::innodb::redo_walk::{SpaceEvent, SpaceEventKind};
use crate::meta::{
    self, BackupType, BinlogInfo, ChangedPages, Checkpoints, FileEntry, FileKind, Manifest,
    RedoRange, Tablespace,
};
use crate::mysql::{self, ConnectOptions, LogStatus, ServerFacts};
use crate::repo::{self, RepoOptions, Store, Transform};
pub use datafiles::DataFile;
pub use incremental::IncrementalOptions;
pub use page_copy::CopyError;
pub use progress::{Phase, Progress};
use redo_copier::{Captured, RedoCopier, RedoCopyError};
use spool::Spool;
pub use table_lock::LockOptions;
use throttle::Throttle;

#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub connect: ConnectOptions,
    /// The repository: a folder, `file://`, `s3://`, `gs://` or `az://`.
    /// With `timestamped`, the backup goes into a new `<UTC time>` folder in
    /// it; otherwise into the location itself, which must be empty.
    pub repository: String,
    pub repo: RepoOptions,
    /// Compression and encryption of stored files.
    pub transform: Transform,
    /// Where captured redo is spooled when the backup is not a plain local
    /// folder (default: the system's temporary folder).
    pub spool_dir: Option<PathBuf>,
    pub timestamped: bool,
    pub parallel: usize,
    /// Read rate limit for data files, bytes per second.
    pub throttle: Option<u64>,
    /// Slow the copy down while the server's writing statements get slower
    /// than before it started (within `throttle`); see [`pacing`].
    pub adaptive_pacing: bool,
    pub slave_info: bool,
    /// Register the server's redo log consumer so it keeps the log we have
    /// not copied (default). Without it we only tail the files, and a busy
    /// server can recycle log before we read it.
    pub redo_consumer: bool,
    /// How long the backup may wait for its locks.
    pub locks: LockOptions,
    /// Take an incremental backup of the changes since this base.
    pub incremental: Option<IncrementalOptions>,
    /// `--page-tracking`: start the server's page tracking (installing
    /// `component_mysqlbackup` if needed) before the copy, so the
    /// incrementals after this backup read only the pages it lists.
    pub page_tracking: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Mysql(#[from] mysql::Error),
    #[error("backup target {path}: {reason}")]
    Target { path: PathBuf, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
    #[error(transparent)]
    Store(#[from] crate::repo::StoreError),
    #[error(transparent)]
    Redo(#[from] RedoCopyError),
    #[error(transparent)]
    Meta(#[from] meta::Error),
    #[error("cannot list non-InnoDB files in the datadir: {0}")]
    ListFiles(std::io::Error),
    #[error("the backup was cancelled")]
    Cancelled,
    /// The server was too busy to lock without stalling it; nothing held.
    #[error("{0}")]
    Busy(String),
}

impl Error {
    fn from_copy(e: CopyError) -> Error {
        match e {
            CopyError::Cancelled => Error::Cancelled,
            other => Error::Copy(other),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BackupReport {
    /// Where the backup is: a folder or an object store URL.
    pub location: String,
    /// The backup's name in its repository (the timestamp), empty when it
    /// was written into the location itself.
    pub name: String,
    pub manifest: Manifest,
}

/// Takes one backup. `cancel` stops it at the next safe point and cleans up.
#[tracing::instrument(name = "backup", skip_all, fields(repository = %options.repository))]
pub async fn run(
    options: &BackupOptions,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> Result<BackupReport, Error> {
    progress.set_phase(Phase::Connecting);
    let mut control = mysql::connect(&options.connect).await?;
    let facts = mysql::facts::read(&mut control).await?;
    refuse_unsupported(&facts)?;
    preflight(&mut control, options, &facts).await?;
    let base = match &options.incremental {
        Some(incremental) => {
            Some(incremental::open_base(incremental, &options.repo, &facts).await?)
        }
        None => None,
    };
    let (store, name) = prepare_target(options).await?;
    let location = store.describe();
    tracing::info!(%location, server = %facts.version_string, "backing up");
    let spool = Spool::new(&store, &options.transform, options.spool_dir.as_deref())?;

    let mut sessions = Sessions {
        control: Some(control),
        consumer: None,
    };
    let result = Backup {
        options,
        base: base.as_ref(),
        facts: &facts,
        store: &store,
        spool: &spool,
        progress: progress.clone(),
        cancel: cancel.clone(),
    }
    .take(&mut sessions)
    .await;
    sessions.close().await;
    spool.remove();
    match result {
        Ok(manifest) => {
            progress.set_phase(Phase::Done);
            Ok(BackupReport {
                location,
                name,
                manifest,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, %location, "backup failed; removing the partial backup");
            if let Err(rm) = store.delete_prefix("").await {
                tracing::warn!(error = %rm, "could not remove the partial backup");
            }
            Err(e)
        }
    }
}

/// The server sessions a backup holds. Closing them releases the backup
/// lock and the redo consumer, whatever state the backup is in.
struct Sessions {
    control: Option<Conn>,
    consumer: Option<Arc<tokio::sync::Mutex<Conn>>>,
}

impl Sessions {
    fn control(&mut self) -> &mut Conn {
        self.control
            .as_mut()
            .expect("control session is open until close()")
    }

    async fn close(&mut self) {
        // Bounded: a server that is gone (or a cut network) must not hold
        // the exit up; the server drops the session's state on its own.
        const PATIENCE: Duration = Duration::from_secs(5);
        if let Some(conn) = self.consumer.take() {
            let _ = tokio::time::timeout(PATIENCE, async {
                let mut conn = conn.lock().await;
                let _ = mysql::unregister_redo_consumer(&mut conn).await;
            })
            .await;
        }
        if let Some(mut conn) = self.control.take() {
            // Released by statement first: a disconnect only asks the server
            // to end the session, and it drops the session's locks a moment
            // later, so a caller told "refused" could still see our lock.
            // Both statements are no-ops when nothing is held.
            let _ = tokio::time::timeout(PATIENCE, async {
                let _ = mysql::unlock_tables(&mut conn).await;
                let _ = mysql::unlock_instance(&mut conn).await;
            })
            .await;
            // A server that is gone cannot hold our lock any more.
            let _ = tokio::time::timeout(PATIENCE, conn.disconnect()).await;
        }
    }
}

fn refuse_unsupported(facts: &ServerFacts) -> Result<(), Error> {
    if !facts.log_checksums {
        return Err(Error::Unsupported(
            "innodb_log_checksums is OFF: redo blocks carry no checksum, so a torn or recycled \
             block could not be told from a good one; SET GLOBAL innodb_log_checksums=ON first"
                .into(),
        ));
    }
    if facts.redo_log_encrypt {
        return Err(Error::Unsupported(
            "innodb_redo_log_encrypt is ON: encrypted redo is not supported yet".into(),
        ));
    }
    if facts.checksum_algorithm.starts_with("strict_") && facts.checksum_algorithm != "strict_crc32"
    {
        return Err(Error::Unsupported(format!(
            "innodb_checksum_algorithm={} is not supported; crc32 (the default) is",
            facts.checksum_algorithm
        )));
    }
    Ok(())
}

/// Asks, before anything is held or copied, for each statement the backup
/// will need later with a harmless one that needs the same privilege, so a
/// missing grant is refused at once with the server's own words instead of
/// after hours of copying.
async fn preflight(
    control: &mut Conn,
    options: &BackupOptions,
    facts: &ServerFacts,
) -> Result<(), Error> {
    // RELOAD: FLUSH BINARY LOGS and FLUSH ENGINE LOGS at the point.
    mysql::flush_engine_logs(control).await?;
    // BACKUP_ADMIN: the backup lock, the redo consumer and log_status.
    mysql::log_status::read(control).await?;
    if mysql::redo_log_archiving_active(control).await? {
        return Err(Error::Busy(
            "redo log archiving is running on the server (innodb_redo_log_archive_start(), as \
             MySQL Enterprise Backup uses it): another backup is being taken. Retry when it has \
             finished; nothing was held or copied"
                .into(),
        ));
    }
    // The read lock on non-InnoDB tables waits for writers it finds here.
    let non_innodb = mysql::non_innodb_user_tables(control).await?;
    if !non_innodb.is_empty() {
        mysql::table_writers(control, &non_innodb).await?;
    }
    // REPLICATION CLIENT: the channels for --slave-info.
    if options.slave_info {
        let channels = mysql::replica_channels(control).await?;
        let positional = channels
            .iter()
            .any(|c| replica::is_positional(c, &facts.gtid_mode));
        if positional && mysql::applies_out_of_order(control).await? {
            return Err(Error::Unsupported(
                "--slave-info: a channel replicates by file and position, and its applier commits \
                 in parallel out of order (replica_parallel_workers > 1 with \
                 replica_preserve_commit_order=OFF), so no single file and position describes \
                 the backed-up data. Set replica_preserve_commit_order=ON (STOP REPLICA \
                 SQL_THREAD first), or replicate with GTIDs (SOURCE_AUTO_POSITION=1)"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Opens the backup's place in the repository; refuses one that already
/// holds files.
async fn prepare_target(options: &BackupOptions) -> Result<(Store, String), Error> {
    let repository = repo::open(&options.repository, &options.repo)?;
    let (store, name) = if options.timestamped {
        let now = time::OffsetDateTime::now_utc();
        let name = now
            .format(time::macros::format_description!(
                "[year]-[month]-[day]_[hour]-[minute]-[second]"
            ))
            .expect("static format");
        (repository.child(&name), name)
    } else {
        (repository, String::new())
    };
    if !store.list("").await?.is_empty() {
        return Err(Error::Target {
            path: PathBuf::from(store.describe()),
            reason: "exists and is not empty; choose an empty or new location".into(),
        });
    }
    if let Some(root) = store.local_root() {
        std::fs::create_dir_all(root).map_err(|e| Error::Target {
            path: root.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok((store, name))
}

/// What the consistent point yields.
struct Point {
    files: Vec<FileEntry>,
    /// The InnoDB tablespaces copied (an incremental's manifest lists them).
    tablespaces: Vec<Tablespace>,
    status: LogStatus,
    /// `xtrabackup_slave_info`, with `--slave-info`.
    slave_info: Option<String>,
    /// The backup's file of each tablespace copied, by space id.
    space_files: HashMap<u32, String>,
    /// With `--lock-ddl=reduced`: when the backup lock was taken.
    late_lock_at: Option<Instant>,
    /// The redo up to this LSN was judged after the copy (index builds
    /// re-copied, file operations refused); later records are judged at the
    /// end.
    judged_lsn: Lsn,
    /// How an incremental found its changed pages.
    changed_pages: ChangedPages,
}

struct Backup<'a> {
    options: &'a BackupOptions,
    base: Option<&'a incremental::Base>,
    facts: &'a ServerFacts,
    store: &'a Store,
    spool: &'a Spool,
    progress: Arc<Progress>,
    cancel: CancellationToken,
}

impl Backup<'_> {
    async fn take(&self, sessions: &mut Sessions) -> Result<Manifest, Error> {
        let started_at = now_rfc3339();
        // Before any page is read: see `page_track` for why that matters.
        let page_tracking_lsn =
            page_track::mark(sessions.control(), self.options.page_tracking).await?;
        let reduced = self.options.locks.reduced_ddl_lock;
        let (mut locked_at, mut lock_lsn) = (Instant::now(), 0);
        if !reduced {
            mysql::lock_instance_for_backup(
                sessions.control(),
                self.options.locks.backup_lock_timeout,
            )
            .await?;
            locked_at = Instant::now();
            // DDL the lock blocks is over: what the redo holds after this
            // LSN came from operations it does not block.
            lock_lsn = mysql::log_status::read(sessions.control()).await?.lsn;
        }
        if !mysql::redo_log_enabled(sessions.control()).await? {
            return Err(Error::Unsupported(
                "redo logging is disabled on the server (ALTER INSTANCE DISABLE INNODB REDO_LOG): \
                 changes made during a hot copy would be lost, so no backup was taken. Run \
                 ALTER INSTANCE ENABLE INNODB REDO_LOG first"
                    .into(),
            ));
        }

        if self.options.redo_consumer {
            let mut conn = mysql::connect(&self.options.connect).await?;
            // Refused, not worked around: another consumer (another backup,
            // MEB or XtraBackup) means two tools copy at once, and tailing
            // without one may lose log on a busy server. `--no-redo-consumer`
            // is the explicit choice to tail.
            mysql::register_redo_consumer(&mut conn).await?;
            sessions.consumer = Some(Arc::new(tokio::sync::Mutex::new(conn)));
        }
        let copier = RedoCopier::start(
            &self.facts.redo_dir,
            &self.spool.path,
            self.spool.cipher.clone(),
            self.progress.clone(),
            format!("{} bytes", self.facts.redo_capacity),
            self.facts.page_size as usize,
        )?;
        let advancer = sessions
            .consumer
            .clone()
            .map(|conn| tokio::spawn(consumer::advance_while_durable(conn, copier.durable_lsn())));

        let outcome = self.copy_and_stop(sessions, copier, lock_lsn).await;
        if let Some(task) = advancer {
            task.abort();
        }
        let (
            Point {
                mut files,
                tablespaces,
                status,
                slave_info,
                space_files,
                late_lock_at,
                judged_lsn,
                changed_pages,
            },
            captured,
        ) = outcome?;
        if let Some(at) = late_lock_at {
            locked_at = at;
        }
        let unrepairable = redo_check::unrepairable(&captured.walk, judged_lsn);
        if !unrepairable.is_empty() {
            return Err(Error::Unsupported(redo_check::refusal(
                &unrepairable,
                &space_files,
                false,
            )));
        }
        if let Some(base) = self.base {
            incremental::check_continues(base, captured.start_checkpoint_lsn, status.lsn)?;
        }
        let backup_type = if self.base.is_some() {
            BackupType::Incremental
        } else {
            BackupType::FullBackuped
        };
        let from_lsn = self.base.map_or(0, |b| b.reference.to_lsn);
        mysql::unlock_instance(sessions.control()).await?;
        let lock_seconds = locked_at.elapsed().as_secs_f64();
        if let Some(conn) = sessions.consumer.take() {
            mysql::unregister_redo_consumer(&mut *conn.lock().await).await?;
        }

        self.progress.set_phase(Phase::WritingMetadata);
        files.push(self.store_redo().await?);
        let checkpoints = Checkpoints {
            backup_type,
            from_lsn,
            to_lsn: status.lsn_checkpoint,
            last_lsn: status.lsn,
            flushed_lsn: status.lsn,
        };
        let mut checkpoints_text = checkpoints.render();
        if self.base.is_some() {
            checkpoints_text.push_str(&format!(
                "incremental_method = {}\n",
                changed_pages.as_str()
            ));
        }
        let mut texts = vec![
            (meta::CHECKPOINTS, checkpoints_text),
            (meta::BINARY, "innoxide-agent\n".to_owned()),
            (meta::BACKUP_CNF, meta::render_backup_cnf(self.facts)),
            (
                meta::INFO,
                self.info_text(&status, &started_at, lock_seconds, changed_pages),
            ),
        ];
        if !status.binlog_file.is_empty() {
            let info = BinlogInfo {
                file: status.binlog_file.clone(),
                position: status.binlog_position,
                gtid_executed: status.gtid_executed.clone(),
            }
            .render();
            texts.push((meta::BINLOG_INFO, info.clone()));
            texts.push((meta::BINLOG_POS_INNODB, info));
        }
        if let Some(text) = slave_info {
            texts.push((meta::SLAVE_INFO, text));
        }
        for (name, text) in &texts {
            files.push(
                self.put_whole(name, FileKind::Metadata, text.as_bytes())
                    .await?,
            );
        }
        let manifest = Manifest {
            format_version: meta::manifest::FORMAT_VERSION,
            tool: "innoxide-agent".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            backup_type: backup_type.as_str().into(),
            server_version: self.facts.version_string.clone(),
            server_uuid: self.facts.server_uuid.clone(),
            server_id: self.facts.server_id,
            page_size: self.facts.page_size,
            redo: RedoRange {
                start_checkpoint_lsn: captured.start_checkpoint_lsn,
                from_lsn,
                to_lsn: status.lsn_checkpoint,
                last_lsn: status.lsn,
                captured_bytes: captured.bytes,
            },
            binlog_file: status.binlog_file.clone(),
            binlog_position: status.binlog_position,
            gtid_executed: status.gtid_executed.clone(),
            source_datadir: self.facts.datadir.clone(),
            source_undo_directory: self.facts.undo_directory.clone(),
            compression: self
                .options
                .transform
                .zstd_level
                .map(|l| format!("zstd:{l}")),
            encryption: self
                .options
                .transform
                .key
                .as_ref()
                .map(|_| "aes-256-gcm".to_owned()),
            encryption_key_id: self
                .options
                .transform
                .key
                .as_ref()
                .map(|k| k.id().to_owned()),
            started_at,
            finished_at: now_rfc3339(),
            lock_seconds,
            files,
            page_tracking_lsn,
            incremental: self.base.map(|base| meta::Incremental {
                method: changed_pages,
                since_lsn: base.since_lsn(),
                base: base.reference.clone(),
                tablespaces,
            }),
        };
        // Last: from here on the backup exists.
        self.store
            .put(meta::MANIFEST, manifest.render().as_bytes())
            .await?;
        Ok(manifest)
    }

    /// Stores a small file whole and untransformed (metadata stays readable
    /// text) and returns its manifest entry.
    async fn put_whole(
        &self,
        name: &str,
        kind: FileKind,
        bytes: &[u8],
    ) -> Result<FileEntry, Error> {
        self.store.put(name, bytes).await?;
        Ok(FileEntry {
            path: name.into(),
            kind,
            original_path: None,
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
            stored_size: None,
            stored_sha256: None,
            space_id: None,
        })
    }

    /// The captured redo, from the spool into the backup.
    async fn store_redo(&self) -> Result<FileEntry, Error> {
        let redo = DataFile {
            source: self.spool.path.clone(),
            dest: meta::LOGFILE.into(),
            kind: FileKind::Redo,
            original_path: None,
            space: None,
            first_page: 0,
            space_id: None,
        };
        if self.spool.in_place() {
            // Written in place: only its checksum is missing.
            let (size, sha256) = hash_file(&self.spool.path)?;
            return Ok(FileEntry {
                path: redo.dest,
                kind: redo.kind,
                original_path: None,
                size,
                sha256,
                stored_size: None,
                stored_sha256: None,
                space_id: None,
            });
        }
        let files = self
            .copy_plain_files(vec![redo], None, self.spool.cipher.clone())
            .await?;
        Ok(files
            .into_iter()
            .next()
            .expect("one file in, one entry out"))
    }

    /// Copies files as bytes on a blocking thread (the store's writers block).
    /// `spool` decrypts files read from an encrypted spool.
    async fn copy_plain_files(
        &self,
        files: Vec<DataFile>,
        limit: Option<u64>,
        spool: Option<spool::SpoolCipher>,
    ) -> Result<Vec<FileEntry>, Error> {
        let (store, transform, progress) = (
            self.store.clone(),
            self.options.transform.clone(),
            self.progress.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let stop = AtomicBool::new(false);
            let ctx = page_copy::CopyContext {
                store: &store,
                transform: &transform,
                progress: &progress,
                throttle: None,
                cancelled: &stop,
            };
            files
                .iter()
                .map(|file| {
                    page_copy::copy_plain(&file.source, &file.dest, limit, spool.as_ref(), &ctx)
                        .map(|copied| entry(file, &copied))
                        .map_err(Error::from_copy)
                })
                .collect()
        })
        .await
        .expect("copy thread panicked")
    }

    /// Copies the data while the redo copier runs, then takes the
    /// consistent point and lets the copier finish exactly there.
    async fn copy_and_stop(
        &self,
        sessions: &mut Sessions,
        copier: RedoCopier,
        lock_lsn: Lsn,
    ) -> Result<(Point, Captured), Error> {
        // File operations logged before this LSN are over when the files
        // are listed (with --lock-ddl=reduced, DDL runs during the copy).
        let listed_lsn = if self.options.locks.reduced_ddl_lock {
            mysql::log_status::read(sessions.control()).await?.lsn
        } else {
            0
        };
        let rows = mysql::innodb_data_files(sessions.control()).await?;
        datafiles::refuse_encrypted(&rows).map_err(Error::Unsupported)?;
        let plan = datafiles::plan_innodb(self.facts, &rows);
        self.refuse_too_little_space(&plan)?;
        let space_files: HashMap<u32, String> = plan
            .iter()
            .filter_map(|f| Some((f.space?.0, f.dest.clone())))
            .collect();
        // The redo copy has started: its start checkpoint is written, so
        // the server has recorded every page the incremental needs.
        let method = match self.base {
            Some(base) => {
                let requested = self.options.incremental.as_ref().and_then(|i| i.method);
                let chosen =
                    page_track::choose(sessions.control(), &self.facts.datadir, base, requested)
                        .await;
                match chosen {
                    Ok(method) => method,
                    Err(e) => {
                        let _ = copier.cancel().await;
                        return Err(e);
                    }
                }
            }
            None => page_track::Method::FullScan,
        };
        let changed_pages = method.recorded();
        let listed = match method {
            page_track::Method::PageTracking(list) => Some(Arc::new(list)),
            page_track::Method::FullScan => None,
        };
        let copied = match self.copy_files(plan.clone(), &copier, listed).await {
            Ok(files) => files,
            Err(e) => {
                // The copier's own error explains a copy stopped on its behalf.
                let redo = copier.cancel().await;
                return Err(match (e, redo) {
                    (Error::Cancelled, Err(redo @ RedoCopyError::Overwritten { .. }))
                    | (Error::Cancelled, Err(redo @ RedoCopyError::Damaged { .. }))
                    | (Error::Cancelled, Err(redo @ RedoCopyError::Scan { .. })) => redo.into(),
                    (e, _) => e,
                });
            }
        };
        // Pages a sorted index build wrote before the list was asked for
        // are listed; to depend on that no more than the scan does, every
        // index built since the incremental's start checkpoint is scanned
        // again.
        let index_builds_since = if changed_pages == ChangedPages::PageTracking {
            0
        } else {
            lock_lsn
        };
        let (copied, late_lock_at, judged_lsn) = match self
            .recopy_index_builds(
                sessions,
                &copier,
                copied,
                &plan,
                listed_lsn,
                (lock_lsn, index_builds_since),
            )
            .await
        {
            Ok(done) => done,
            Err(e) => {
                let _ = copier.cancel().await;
                return Err(e);
            }
        };
        let point = self.consistent_point(sessions, &copier).await;
        let mut point = match point {
            Ok(v) => v,
            Err(e) => {
                let _ = copier.cancel().await;
                return Err(e);
            }
        };
        let (entries, tablespaces): (Vec<_>, Vec<_>) = copied.into_iter().unzip();
        point.files.splice(0..0, entries);
        point.tablespaces = tablespaces;
        point.space_files = space_files;
        point.late_lock_at = late_lock_at;
        point.judged_lsn = judged_lsn;
        point.changed_pages = changed_pages;
        self.progress.set_phase(Phase::FinishingRedo);
        let captured = tokio::select! {
            result = copier.finish_at(point.status.lsn) => result?,
            _ = self.cancel.cancelled() => return Err(Error::Cancelled),
        };
        tracing::info!(
            start_checkpoint = captured.start_checkpoint_lsn,
            last_lsn = captured.last_lsn,
            bytes = captured.bytes,
            records = captured.walk.records,
            mini_transactions = captured.walk.groups,
            blocks_checked = captured.walk.blocks_checked,
            "redo captured and walked"
        );
        Ok((point, captured))
    }

    /// After the copy, with the backup lock held (with `--lock-ddl=reduced`
    /// it is taken now, DDL in flight finishing first): waits until the
    /// captured redo is walked up to now, and re-copies each tablespace
    /// whose index was built without redo since `since` (its pages were
    /// flushed before the record was written, so the new copy holds them,
    /// and the redo captured from the start repairs it like any other
    /// copy). A file created, renamed or deleted since refuses the backup.
    /// Returns the files, when the lock was taken here, and the LSN judged
    /// up to.
    async fn recopy_index_builds(
        &self,
        sessions: &mut Sessions,
        copier: &RedoCopier,
        mut copied: Vec<(FileEntry, Tablespace)>,
        plan: &[DataFile],
        listed_lsn: Lsn,
        (since, index_builds_since): (Lsn, Lsn),
    ) -> Result<(Vec<(FileEntry, Tablespace)>, Option<Instant>, Lsn), Error> {
        let reduced = self.options.locks.reduced_ddl_lock;
        let space_files: HashMap<u32, String> = plan
            .iter()
            .filter_map(|f| Some((f.space?.0, f.dest.clone())))
            .collect();
        let mut locked_at = None;
        if reduced {
            mysql::lock_instance_for_backup(
                sessions.control(),
                self.options.locks.backup_lock_timeout,
            )
            .await?;
            locked_at = Some(Instant::now());
        }
        let now_lsn = mysql::log_status::read(sessions.control()).await?.lsn;
        let mut events = copier.walked_to(now_lsn).await.ok_or(Error::Cancelled)?;
        // Index builds before `since` on tablespaces still there (a file
        // gone since is not in the backup).
        let earlier_builds: Vec<u32> = events
            .iter()
            .filter(|e| e.kind == SpaceEventKind::IndexLoad)
            .filter(|e| e.lsn >= index_builds_since && e.lsn < since)
            .map(|e| e.space_id)
            .filter(|space| plan.iter().any(|f| f.space.map(|s| s.0) == Some(*space)))
            .collect();
        events.retain(|e| e.lsn >= since && e.lsn < now_lsn);
        let file_ops: Vec<&SpaceEvent> = events
            .iter()
            .filter(|e| {
                e.kind != SpaceEventKind::IndexLoad
                    && !redo_check::listed_as_done(e, listed_lsn, &space_files)
            })
            .collect();
        if !file_ops.is_empty() {
            return Err(Error::Unsupported(redo_check::refusal(
                &file_ops,
                &space_files,
                reduced,
            )));
        }
        let loaded: std::collections::BTreeSet<u32> = events
            .iter()
            .filter(|e| e.kind == SpaceEventKind::IndexLoad)
            .map(|e| e.space_id)
            .chain(earlier_builds)
            .collect();
        for space in loaded {
            let Some(file) = plan.iter().find(|f| f.space.map(|s| s.0) == Some(space)) else {
                let event = events.iter().find(|e| e.space_id == space);
                return Err(Error::Unsupported(redo_check::refusal(
                    &event.into_iter().collect::<Vec<_>>(),
                    &space_files,
                    false,
                )));
            };
            // Stored whole or, in an incremental, as a delta.
            if let Some((entry, _)) = copied.iter().find(|(_, t)| t.path == file.dest) {
                self.store.delete(&entry.path).await?;
            }
            copied.retain(|(_, tablespace)| tablespace.path != file.dest);
            // By a full scan: what the build wrote after the page list
            // was asked for is not in it.
            copied.extend(self.copy_files(vec![file.clone()], copier, None).await?);
            tracing::info!(
                space,
                file = %file.dest,
                "re-copied under the backup lock: an index of it was built without redo during the copy"
            );
        }
        copied.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        Ok((copied, locked_at, now_lsn))
    }

    /// A plain local backup needs at least the data files' size free on
    /// its filesystem: refused before the copy rather than failed at the
    /// end of it. (Compressed or remote backups cannot be sized up front.)
    fn refuse_too_little_space(&self, plan: &[DataFile]) -> Result<(), Error> {
        let Some(root) = self.store.local_root() else {
            return Ok(());
        };
        // An incremental stores a small part of the data files; how small
        // is known only after the scan.
        if !self.options.transform.is_plain() || self.base.is_some() {
            return Ok(());
        }
        let needed: u64 = plan
            .iter()
            .map(|f| std::fs::metadata(&f.source).map(|m| m.len()).unwrap_or(0))
            .sum();
        let stat = nix::sys::statvfs::statvfs(root).map_err(|e| Error::Target {
            path: root.to_owned(),
            reason: format!("cannot read its free space: {e}"),
        })?;
        let free = (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
        if free < needed {
            return Err(Error::Target {
                path: root.to_owned(),
                reason: format!(
                    "has {free} bytes free, and the InnoDB data files alone are {needed} bytes \
                     (plus the redo written during the backup); free space or choose another \
                     location"
                ),
            });
        }
        Ok(())
    }

    /// Copies files on `parallel` threads, largest first. Stops early when
    /// cancelled or when the redo copier fails (its error is the story).
    /// `listed`: an incremental's deltas read only these pages.
    async fn copy_files(
        &self,
        plan: Vec<DataFile>,
        copier: &RedoCopier,
        listed: Option<Arc<page_track::ChangedPageList>>,
    ) -> Result<Vec<(FileEntry, Tablespace)>, Error> {
        self.progress.set_phase(Phase::CopyingTablespaces);
        let page_size = u64::from(self.facts.page_size);
        let mut jobs: Vec<(u64, CopyJob)> = plan
            .into_iter()
            .map(|file| {
                let delta_since = self.base.and_then(|b| incremental::delta_since(b, &file));
                let listed = listed.clone().filter(|_| delta_since.is_some());
                let bytes = match (&listed, file.space_id) {
                    (Some(list), Some(space)) => list.pages(space).len() as u64 * page_size,
                    _ => std::fs::metadata(&file.source)
                        .map(|m| m.len())
                        .unwrap_or(0),
                };
                (
                    bytes,
                    CopyJob {
                        delta_since,
                        listed,
                        incremental: self.base.is_some(),
                        file,
                    },
                )
            })
            .collect();
        jobs.sort_by_key(|job| std::cmp::Reverse(job.0));
        let bytes_to_read: u64 = jobs.iter().map(|j| j.0).sum();
        self.progress
            .bytes_total
            .fetch_add(bytes_to_read, Ordering::Relaxed);
        self.progress
            .files_total
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        let queue = Arc::new(Mutex::new(
            jobs.into_iter().map(|j| j.1).collect::<VecDeque<_>>(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let throttle = Arc::new(Throttle::adjustable(self.options.throttle));
        let _pacing = if self.options.adaptive_pacing && pacing::worth_pacing(bytes_to_read) {
            pacing::Pacing::start(
                &self.options.connect,
                throttle.clone(),
                self.progress.clone(),
                self.options.throttle,
            )
            .await
        } else {
            None
        };
        let threads = self.options.parallel.max(1);
        let mut workers = Vec::new();
        for _ in 0..threads {
            let (queue, stop, throttle) = (queue.clone(), stop.clone(), throttle.clone());
            let (progress, store, transform) = (
                self.progress.clone(),
                self.store.clone(),
                self.options.transform.clone(),
            );
            workers.push(tokio::task::spawn_blocking(move || {
                let ctx = page_copy::CopyContext {
                    store: &store,
                    transform: &transform,
                    progress: &progress,
                    throttle: Some(&throttle),
                    cancelled: &stop,
                };
                copy_worker(&queue, &ctx)
            }));
        }
        let mut all = futures::future::join_all(workers);
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        let results = loop {
            tokio::select! {
                results = &mut all => break results,
                _ = self.cancel.cancelled() => stop.store(true, Ordering::Relaxed),
                _ = ticker.tick() => if copier.has_stopped() { stop.store(true, Ordering::Relaxed) },
            }
        };
        let mut entries = Vec::new();
        let mut first_error = None;
        for result in results {
            match result.expect("copy worker panicked") {
                Ok(mut done) => entries.append(&mut done),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    if first_error.is_none() || matches!(first_error, Some(CopyError::Cancelled)) {
                        first_error = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(Error::from_copy(e));
        }
        if self.cancel.is_cancelled() || copier.has_stopped() {
            return Err(Error::Cancelled);
        }
        entries.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        Ok(entries)
    }

    /// Non-InnoDB files, `log_status`, the binlog and the replication
    /// coordinates: everything that must be taken at the one consistent point.
    async fn consistent_point(
        &self,
        sessions: &mut Sessions,
        copier: &RedoCopier,
    ) -> Result<Point, Error> {
        self.progress.set_phase(Phase::ConsistentPoint);
        let (mut files, status, slave_info) = self.at_the_point(sessions.control()).await?;
        tracing::info!(
            lsn = status.lsn,
            checkpoint = status.lsn_checkpoint,
            binlog = %status.binlog_file,
            position = status.binlog_position,
            gtid = %status.gtid_executed,
            "consistent point"
        );
        if copier.has_stopped() {
            return Err(Error::Cancelled);
        }
        if let Some(basename) = &self.facts.log_bin_basename
            && !status.binlog_file.is_empty()
        {
            let source = basename.with_file_name(&status.binlog_file);
            let binlog = DataFile {
                source,
                dest: status.binlog_file.clone(),
                kind: FileKind::Binlog,
                original_path: None,
                space: None,
                first_page: 0,
                space_id: None,
            };
            files.extend(
                self.copy_plain_files(vec![binlog], Some(status.binlog_position), None)
                    .await?,
            );
            let (index_name, index) = binlog::index_for(&status.binlog_file);
            files.push(
                self.put_whole(&index_name, FileKind::Binlog, index.as_bytes())
                    .await?,
            );
        }
        Ok(Point {
            files,
            tablespaces: Vec::new(),
            status,
            slave_info,
            space_files: HashMap::new(),
            late_lock_at: None,
            judged_lsn: 0,
            changed_pages: ChangedPages::FullScan,
        })
    }

    /// The point itself: the non-InnoDB tables read-locked and copied, the
    /// binlog rotated, `log_status` read, and, with `--slave-info`, the
    /// replica's channels read right after it.
    async fn at_the_point(
        &self,
        control: &mut Conn,
    ) -> Result<(Vec<FileEntry>, LogStatus, Option<String>), Error> {
        let non_innodb_tables = mysql::non_innodb_user_tables(control).await?;
        let table_locked = !non_innodb_tables.is_empty();
        if table_locked {
            tracing::info!(
                tables = non_innodb_tables.len(),
                "non-InnoDB user tables exist: read-locking just those while they are copied"
            );
            table_lock::lock_for_read(control, &non_innodb_tables, &self.options.locks).await?;
        }
        let non_innodb = datafiles::plan_non_innodb(self.facts).map_err(Error::ListFiles)?;
        let files = self.copy_plain_files(non_innodb, None, None).await?;
        if self.facts.log_bin {
            mysql::flush_binary_logs(control).await?;
        }
        let status = mysql::log_status::read(control).await?;
        let slave_info = if self.options.slave_info {
            let channels = mysql::replica_channels(control).await?;
            let text = replica::slave_info(&channels, &self.facts.gtid_mode, &status.gtid_executed);
            let positional = channels
                .iter()
                .any(|c| replica::is_positional(c, &self.facts.gtid_mode));
            Some(if positional {
                format!("{}{text}", replica::APPROXIMATE_NOTE)
            } else {
                text
            })
        } else {
            None
        };
        mysql::flush_engine_logs(control).await?;
        if table_locked {
            mysql::unlock_tables(control).await?;
        }
        Ok((files, status, slave_info))
    }

    fn info_text(
        &self,
        status: &LogStatus,
        started_at: &str,
        lock_seconds: f64,
        changed_pages: ChangedPages,
    ) -> String {
        let mut text = format!(
            "tool_name = innoxide-agent\ntool_version = {}\nserver_version = {}\nstart_time = {}\n\
             end_time = {}\nlock_time = {:.3}\nbinlog_pos = filename '{}', position '{}', GTID of the last change '{}'\n\
             innodb_from_lsn = {}\ninnodb_to_lsn = {}\npartial = N\nincremental = {}\nformat = file\ncompressed = N\nencrypted = N\n",
            env!("CARGO_PKG_VERSION"),
            self.facts.version_string,
            started_at,
            now_rfc3339(),
            lock_seconds,
            status.binlog_file,
            status.binlog_position,
            status.gtid_executed,
            self.base.map_or(0, |b| b.reference.to_lsn),
            status.lsn_checkpoint,
            if self.base.is_some() { "Y" } else { "N" },
        );
        if self.base.is_some() {
            text.push_str(&format!(
                "incremental_method = {}\n",
                changed_pages.as_str()
            ));
        }
        text
    }
}

/// One InnoDB file to copy: whole, or (incremental) its pages at or above
/// `delta_since` as `<dest>.delta`.
struct CopyJob {
    file: DataFile,
    delta_since: Option<u64>,
    /// The pages page tracking listed (a delta reads only these), or `None`
    /// to read every page.
    listed: Option<Arc<page_track::ChangedPageList>>,
    /// An incremental lists every tablespace by id: it needs the id.
    incremental: bool,
}

fn copy_worker(
    queue: &Mutex<VecDeque<CopyJob>>,
    ctx: &page_copy::CopyContext,
) -> Result<Vec<(FileEntry, Tablespace)>, CopyError> {
    let mut done = Vec::new();
    loop {
        if ctx.cancelled.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        let Some(CopyJob {
            file,
            delta_since,
            listed,
            incremental,
        }) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
        else {
            return Ok(done);
        };
        if incremental && file.space_id.is_none() {
            return Err(CopyError::NotTablespace {
                path: file.source.clone(),
                reason: "the server's dictionary gives it no tablespace id, which an \
                         incremental backup records"
                    .into(),
            });
        }
        let tablespace = |space_id, size, delta| Tablespace {
            path: file.dest.clone(),
            kind: file.kind,
            space_id,
            size,
            original_path: file.original_path.clone(),
            delta,
        };
        match delta_since {
            None => {
                let copied = page_copy::copy_tablespace(
                    &file.source,
                    &file.dest,
                    file.space,
                    file.first_page,
                    ctx,
                )?;
                let entry = entry(&file, &copied);
                let space_id = entry.space_id.unwrap_or_default();
                done.push((entry, tablespace(space_id, copied.stored.size, false)));
            }
            Some(since) => {
                let dest = format!("{}{}", file.dest, meta::DELTA_SUFFIX);
                let pages = match (&listed, file.space_id) {
                    (Some(list), Some(space)) => delta_copy::PagesToRead::Listed(list.pages(space)),
                    _ => delta_copy::PagesToRead::All,
                };
                let (copied, delta) = delta_copy::copy_changed_pages(
                    &file.source,
                    &dest,
                    file.space,
                    file.first_page,
                    since,
                    pages,
                    ctx,
                )?;
                let stored = &copied.stored;
                let entry = FileEntry {
                    path: dest,
                    kind: FileKind::Delta,
                    original_path: None,
                    size: stored.size,
                    sha256: stored.sha256.clone(),
                    stored_size: stored.stored.as_ref().map(|s| s.0),
                    stored_sha256: stored.stored.as_ref().map(|s| s.1.clone()),
                    space_id: Some(delta.space_id),
                };
                done.push((entry, tablespace(delta.space_id, delta.file_size, true)));
            }
        }
        ctx.progress.files_done.fetch_add(1, Ordering::Relaxed);
    }
}

fn entry(file: &DataFile, copied: &page_copy::Copied) -> FileEntry {
    let stored = &copied.stored;
    FileEntry {
        path: file.dest.clone(),
        kind: file.kind,
        original_path: file.original_path.clone(),
        size: stored.size,
        sha256: stored.sha256.clone(),
        stored_size: stored.stored.as_ref().map(|s| s.0),
        stored_sha256: stored.stored.as_ref().map(|s| s.1.clone()),
        space_id: file.space_id,
    }
}

pub(crate) fn hash_file(path: &Path) -> Result<(u64, String), Error> {
    crate::fileops::sha256_file(path).map_err(|e| {
        Error::Copy(CopyError::Read {
            path: path.to_owned(),
            source: e.source,
        })
    })
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
