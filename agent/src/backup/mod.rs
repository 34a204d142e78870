//! A hot full backup of a running server, the innobackupex flow done for
//! MySQL 8.0.30+:
//!
//! 1. connect, read the server's facts, refuse what we cannot back up;
//! 2. `LOCK INSTANCE FOR BACKUP` (DML goes on, DDL waits) for the whole copy;
//! 3. register the redo log consumer and start the redo copier at the
//!    newest checkpoint, advancing the consumer as blocks are synced;
//! 4. copy every tablespace in parallel, page-validated;
//! 5. consistent point: non-InnoDB files (under FTWRL only if user tables
//!    need it), one read of `log_status`, the binlog up to its position, the
//!    redo up to its LSN;
//! 6. unlock, unregister, write the seed's metadata files, and the manifest
//!    last.
//!
//! Every exit path (error, cancel, server gone) closes the sessions, which
//! releases the lock and the consumer on the server, and removes the
//! partial directory: a failed backup leaves nothing that looks like one.

mod binlog;
pub mod datafiles;
mod page_copy;
pub mod progress;
pub mod redo_copier;
mod throttle;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::Conn;
use tokio_util::sync::CancellationToken;

use crate::meta::{
    self, BackupType, BinlogInfo, Checkpoints, FileEntry, FileKind, Manifest, RedoRange,
};
use crate::mysql::{self, ConnectOptions, LogStatus, ServerFacts};
use crate::repo::{self, RepoOptions, Store, Transform};
pub use datafiles::DataFile;
pub use page_copy::CopyError;
pub use progress::{Phase, Progress};
use redo_copier::{Captured, RedoCopier, RedoCopyError};
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
    pub slave_info: bool,
    /// Register the server's redo log consumer so it keeps the log we have
    /// not copied (default). Without it we only tail the files, and a busy
    /// server can recycle log before we read it.
    pub redo_consumer: bool,
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

/// Where the redo copier writes: straight into a plain local backup, or a
/// local spool that is stored (compressed, encrypted, uploaded) at the end,
/// so the copier is never slowed by the repository.
struct Spool {
    path: PathBuf,
    /// Set when the spool must be stored after capture and then removed.
    temporary: Option<tempfile::TempDir>,
}

impl Spool {
    fn new(store: &Store, transform: &Transform, spool_dir: Option<&Path>) -> Result<Spool, Error> {
        if let (Some(root), true) = (store.local_root(), transform.is_plain()) {
            return Ok(Spool {
                path: root.join(meta::LOGFILE),
                temporary: None,
            });
        }
        let base = spool_dir
            .map(Path::to_owned)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("innoxide-redo-")
            .tempdir_in(&base)
            .map_err(|e| Error::Target {
                path: base.clone(),
                reason: format!("cannot create the redo spool: {e}"),
            })?;
        Ok(Spool {
            path: dir.path().join(meta::LOGFILE),
            temporary: Some(dir),
        })
    }

    fn remove(&self) {
        if let Some(dir) = &self.temporary {
            let _ = std::fs::remove_dir_all(dir.path());
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
        if let Some(conn) = self.control.take() {
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

struct Backup<'a> {
    options: &'a BackupOptions,
    facts: &'a ServerFacts,
    store: &'a Store,
    spool: &'a Spool,
    progress: Arc<Progress>,
    cancel: CancellationToken,
}

impl Backup<'_> {
    async fn take(&self, sessions: &mut Sessions) -> Result<Manifest, Error> {
        let started_at = now_rfc3339();
        mysql::lock_instance_for_backup(sessions.control()).await?;
        let locked_at = Instant::now();

        if self.options.redo_consumer {
            let mut conn = mysql::connect(&self.options.connect).await?;
            match mysql::register_redo_consumer(&mut conn).await {
                Ok(()) => sessions.consumer = Some(Arc::new(tokio::sync::Mutex::new(conn))),
                Err(e) => tracing::warn!(
                    error = %e,
                    "could not register the redo log consumer; tailing the redo files instead \
                     (a busy server may recycle log before it is copied)"
                ),
            }
        }
        let copier = RedoCopier::start(
            &self.facts.redo_dir,
            &self.spool.path,
            self.progress.clone(),
            format!("{} bytes", self.facts.redo_capacity),
        )?;
        let advancer = sessions
            .consumer
            .clone()
            .map(|conn| tokio::spawn(advance_consumer(conn, copier.durable_lsn())));

        let outcome = self.copy_and_stop(sessions, copier).await;
        if let Some(task) = advancer {
            task.abort();
        }
        let (mut files, status, captured) = outcome?;
        mysql::unlock_instance(sessions.control()).await?;
        let lock_seconds = locked_at.elapsed().as_secs_f64();
        if let Some(conn) = sessions.consumer.take() {
            mysql::unregister_redo_consumer(&mut *conn.lock().await).await?;
        }

        self.progress.set_phase(Phase::WritingMetadata);
        files.push(self.store_redo().await?);
        let checkpoints = Checkpoints {
            backup_type: BackupType::FullBackuped,
            from_lsn: 0,
            to_lsn: status.lsn_checkpoint,
            last_lsn: status.lsn,
            flushed_lsn: status.lsn,
        };
        let mut texts = vec![
            (meta::CHECKPOINTS, checkpoints.render()),
            (meta::BINARY, "innoxide-agent\n".to_owned()),
            (meta::BACKUP_CNF, meta::render_backup_cnf(self.facts)),
            (
                meta::INFO,
                self.info_text(&status, &started_at, lock_seconds),
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
        if self.options.slave_info {
            texts.push((meta::SLAVE_INFO, self.slave_info(sessions, &status).await?));
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
            backup_type: BackupType::FullBackuped.as_str().into(),
            server_version: self.facts.version_string.clone(),
            server_uuid: self.facts.server_uuid.clone(),
            server_id: self.facts.server_id,
            page_size: self.facts.page_size,
            redo: RedoRange {
                start_checkpoint_lsn: captured.start_checkpoint_lsn,
                from_lsn: 0,
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
        };
        if self.spool.temporary.is_none() {
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
            });
        }
        let files = self.copy_plain_files(vec![redo], None).await?;
        Ok(files
            .into_iter()
            .next()
            .expect("one file in, one entry out"))
    }

    /// Copies files as bytes on a blocking thread (the store's writers block).
    async fn copy_plain_files(
        &self,
        files: Vec<DataFile>,
        limit: Option<u64>,
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
                    page_copy::copy_plain(&file.source, &file.dest, limit, &ctx)
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
    ) -> Result<(Vec<FileEntry>, LogStatus, Captured), Error> {
        let rows = mysql::innodb_data_files(sessions.control()).await?;
        let plan = datafiles::plan_innodb(self.facts, &rows);
        let copied = match self.copy_files(plan, &copier).await {
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
        let point = self.consistent_point(sessions, &copier).await;
        let (mut files, status) = match point {
            Ok(v) => v,
            Err(e) => {
                let _ = copier.cancel().await;
                return Err(e);
            }
        };
        files.splice(0..0, copied);
        self.progress.set_phase(Phase::FinishingRedo);
        let captured = tokio::select! {
            result = copier.finish_at(status.lsn) => result?,
            _ = self.cancel.cancelled() => return Err(Error::Cancelled),
        };
        tracing::info!(
            start_checkpoint = captured.start_checkpoint_lsn,
            last_lsn = captured.last_lsn,
            bytes = captured.bytes,
            "redo captured"
        );
        Ok((files, status, captured))
    }

    /// Copies files on `parallel` threads, largest first. Stops early when
    /// cancelled or when the redo copier fails (its error is the story).
    async fn copy_files(
        &self,
        plan: Vec<DataFile>,
        copier: &RedoCopier,
    ) -> Result<Vec<FileEntry>, Error> {
        self.progress.set_phase(Phase::CopyingTablespaces);
        let mut jobs: Vec<(u64, DataFile)> = plan
            .into_iter()
            .map(|f| {
                (
                    std::fs::metadata(&f.source).map(|m| m.len()).unwrap_or(0),
                    f,
                )
            })
            .collect();
        jobs.sort_by_key(|job| std::cmp::Reverse(job.0));
        self.progress
            .bytes_total
            .fetch_add(jobs.iter().map(|j| j.0).sum(), Ordering::Relaxed);
        self.progress
            .files_total
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        let queue = Arc::new(Mutex::new(
            jobs.into_iter().map(|j| j.1).collect::<VecDeque<_>>(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let throttle = Arc::new(Throttle::new(self.options.throttle));
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
                    throttle: throttle.as_ref().as_ref(),
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
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// Non-InnoDB files, `log_status`, the binlog: everything that must be
    /// taken at the one consistent point.
    async fn consistent_point(
        &self,
        sessions: &mut Sessions,
        copier: &RedoCopier,
    ) -> Result<(Vec<FileEntry>, LogStatus), Error> {
        self.progress.set_phase(Phase::ConsistentPoint);
        let control = sessions.control();
        let needs_ftwrl = !mysql::non_innodb_user_tables(control).await?.is_empty();
        if needs_ftwrl {
            tracing::info!(
                "non-InnoDB user tables exist: FLUSH TABLES WITH READ LOCK while they are copied"
            );
            mysql::flush_tables_with_read_lock(control).await?;
        }
        let non_innodb = datafiles::plan_non_innodb(self.facts).map_err(Error::ListFiles)?;
        let mut files = self.copy_plain_files(non_innodb, None).await?;
        if self.facts.log_bin {
            mysql::flush_binary_logs(control).await?;
        }
        let status = mysql::log_status::read(control).await?;
        mysql::flush_engine_logs(control).await?;
        if needs_ftwrl {
            mysql::unlock_tables(control).await?;
        }
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
            };
            files.extend(
                self.copy_plain_files(vec![binlog], Some(status.binlog_position))
                    .await?,
            );
            let (index_name, index) = binlog::index_for(&status.binlog_file);
            files.push(
                self.put_whole(&index_name, FileKind::Binlog, index.as_bytes())
                    .await?,
            );
        }
        Ok((files, status))
    }

    fn info_text(&self, status: &LogStatus, started_at: &str, lock_seconds: f64) -> String {
        format!(
            "tool_name = innoxide-agent\ntool_version = {}\nserver_version = {}\nstart_time = {}\n\
             end_time = {}\nlock_time = {:.3}\nbinlog_pos = filename '{}', position '{}', GTID of the last change '{}'\n\
             innodb_from_lsn = 0\ninnodb_to_lsn = {}\npartial = N\nincremental = N\nformat = file\ncompressed = N\nencrypted = N\n",
            env!("CARGO_PKG_VERSION"),
            self.facts.version_string,
            started_at,
            now_rfc3339(),
            lock_seconds,
            status.binlog_file,
            status.binlog_position,
            status.gtid_executed,
            status.lsn_checkpoint,
        )
    }

    /// `xtrabackup_slave_info`: how to make a restored server a replica of
    /// this one's source.
    async fn slave_info(
        &self,
        sessions: &mut Sessions,
        status: &LogStatus,
    ) -> Result<String, Error> {
        if self.facts.gtid_mode == "ON" {
            return Ok(format!(
                "SET GLOBAL gtid_purged='{}';\nCHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=1;\n",
                status.gtid_executed
            ));
        }
        match mysql::replica_source_position(sessions.control()).await? {
            Some((file, position)) => Ok(format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='{file}', SOURCE_LOG_POS={position};\n"
            )),
            None => Ok("-- this server was not a replica when the backup was taken\n".into()),
        }
    }
}

fn copy_worker(
    queue: &Mutex<VecDeque<DataFile>>,
    ctx: &page_copy::CopyContext,
) -> Result<Vec<FileEntry>, CopyError> {
    let mut done = Vec::new();
    loop {
        if ctx.cancelled.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        let Some(file) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else {
            return Ok(done);
        };
        let copied = page_copy::copy_tablespace(&file.source, &file.dest, file.space, ctx)?;
        ctx.progress.files_done.fetch_add(1, Ordering::Relaxed);
        done.push(entry(&file, &copied));
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
    }
}

/// Advances the server's redo consumer as captured log becomes durable, so
/// the server can recycle it and never stalls on us.
async fn advance_consumer(
    conn: Arc<tokio::sync::Mutex<Conn>>,
    mut durable: tokio::sync::watch::Receiver<u64>,
) {
    let mut advanced = 0;
    while durable.changed().await.is_ok() {
        let lsn = *durable.borrow_and_update();
        if lsn <= advanced {
            continue;
        }
        let mut conn = conn.lock().await;
        if let Err(e) = mysql::advance_redo_consumer(&mut conn, lsn).await {
            tracing::warn!(error = %e, lsn, "could not advance the redo log consumer");
            return;
        }
        advanced = lsn;
    }
}

pub(crate) fn hash_file(path: &Path) -> Result<(u64, String), Error> {
    use sha2::Digest;
    use std::io::Read;
    let read_err = |e: std::io::Error| {
        Error::Copy(CopyError::Read {
            path: path.to_owned(),
            source: e,
        })
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
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
