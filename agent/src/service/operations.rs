//! The agent's operations: a registry keyed by the caller's id, one record
//! per operation on the volume (`<state-dir>/operations/<id>.json`), and at
//! most one running operation of each kind (so one backup per server).
//!
//! A record is written before the operation starts and again at every
//! change of state (and every few seconds of progress), so a restart never
//! forgets one: a record still `running` when the agent starts belonged to
//! an agent that died, and is closed as failed (`AGENT_RESTARTED`) with its
//! partial output removed. Operations run in their own tasks: a client that
//! goes away stops nothing; only [`Operations::cancel`] and
//! [`Operations::shutdown`] do.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tracing::Instrument;

use super::metrics::Metrics;
use super::record::{
    BackupOutcome, Failure, Kind, Outcome, Phase, ProgressRecord, RECORD_FORMAT, Record, State,
};
use crate::{backup, meta};

/// Finished records kept; older ones are deleted. An id whose record is
/// gone could be started again, so keep many more than an operator has in
/// flight.
const KEEP_FINISHED: usize = 500;
/// How often a running operation's progress is written to its record (when
/// it moved), so a restart can say how far a dead agent got.
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// What a caller asks to start.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub id: String,
    pub kind: Kind,
    pub repository_url: String,
    pub backup_name: String,
    pub destination: Option<PathBuf>,
}

#[derive(Debug)]
pub enum Started {
    /// A new operation runs now.
    New(Record),
    /// The id was known: its operation as it is (running or finished).
    Existing(Record),
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("operation {id} exists and is a {existing} operation; give the {requested} a new id")]
    WrongKind {
        id: String,
        existing: &'static str,
        requested: &'static str,
    },
    #[error(
        "another {kind} ({running}) is running on this server and only one runs at a time: wait until it \
         ends (watch or poll it) or cancel it, then ask again"
    )]
    Busy { kind: &'static str, running: String },
    #[error("the agent is shutting down; ask the restarted agent again")]
    ShuttingDown,
    #[error("cannot record the operation in the state dir: {0}; check the agent's volume")]
    State(#[from] meta::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use the state dir {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another agent uses the state dir {dir} (it holds {lock}); run one agent per server, or give \
         this one its own --state-dir"
    )]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error(transparent)]
    Write(#[from] meta::Error),
}

/// The live progress of a running operation: the engine's counters, plus
/// the phase for steps the engine does not report (a restore's).
#[derive(Debug, Default)]
pub struct Live {
    pub engine: Arc<backup::Progress>,
    phase: Mutex<Option<Phase>>,
}

impl Live {
    pub fn set_phase(&self, phase: Phase) {
        *lock(&self.phase) = Some(phase);
        tracing::info!(?phase, "phase");
    }

    pub fn snapshot(&self) -> ProgressRecord {
        let s = self.engine.snapshot();
        ProgressRecord {
            phase: (*lock(&self.phase)).or(s.phase.map(Phase::from)),
            bytes_done: s.bytes_done,
            bytes_total: s.bytes_total,
            files_done: s.files_done,
            files_total: s.files_total,
            redo_start_lsn: s.redo_start_lsn,
            redo_copied_lsn: s.redo_copied_lsn,
            pages_reread: s.pages_reread,
        }
    }
}

struct Entry {
    record: Mutex<Record>,
    live: Arc<Live>,
    cancel: CancellationToken,
    /// Why the operation is being cancelled, once it is.
    cancel_cause: Mutex<Option<Failure>>,
    /// Bumped at every change of the record, for watchers.
    changed: watch::Sender<u64>,
}

impl Entry {
    fn new(record: Record) -> Arc<Entry> {
        Arc::new(Entry {
            record: Mutex::new(record),
            live: Arc::new(Live::default()),
            cancel: CancellationToken::new(),
            cancel_cause: Mutex::new(None),
            changed: watch::channel(0).0,
        })
    }

    /// The record, with live progress while the operation runs.
    fn view(&self) -> Record {
        let mut record = lock(&self.record).clone();
        if record.state == State::Running {
            record.progress = self.live.snapshot();
        }
        record
    }
}

struct Inner {
    entries: HashMap<String, Arc<Entry>>,
    running: HashMap<Kind, String>,
}

pub struct Operations {
    dir: PathBuf,
    inner: Mutex<Inner>,
    metrics: Arc<Metrics>,
    accepting: AtomicBool,
    /// Cancelled when the agent shuts down: ends watch streams.
    shutting_down: CancellationToken,
    _lock: Flock<File>,
}

/// What a running operation gets to work with.
pub struct Job {
    pub live: Arc<Live>,
    pub cancel: CancellationToken,
    entry: Arc<Entry>,
    ops: Arc<Operations>,
}

impl Job {
    /// Changes the operation's record and writes it down at once.
    pub fn update(&self, change: impl FnOnce(&mut Record)) {
        self.ops.update(&self.entry, change);
    }
}

/// A watcher's handle on one operation.
pub struct Watch {
    entry: Arc<Entry>,
    changes: watch::Receiver<u64>,
    pub shutting_down: CancellationToken,
}

impl Watch {
    pub fn current(&self) -> Record {
        self.entry.view()
    }

    /// Resolves at the next change of the record (not of live progress).
    pub async fn changed(&mut self) {
        if self.changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Operations {
    /// Opens (or creates) the state dir, takes its lock, loads every record
    /// and closes the ones a dead agent left running.
    pub fn open(state_dir: &Path, metrics: Arc<Metrics>) -> Result<Arc<Operations>, OpenError> {
        let dir = state_dir.join("operations");
        let dir_err = |source| OpenError::Dir {
            dir: state_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(dir_err)?;
        let lock_path = state_dir.join("agent.lock");
        let lock_file = File::create(&lock_path).map_err(dir_err)?;
        let held = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            OpenError::Locked {
                dir: state_dir.to_owned(),
                lock: lock_path.clone(),
            }
        })?;

        let mut entries = HashMap::new();
        for item in std::fs::read_dir(&dir).map_err(dir_err)? {
            let path = item.map_err(dir_err)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match read_record(&path) {
                Ok(record) => {
                    entries.insert(record.id.clone(), record);
                }
                // A damaged record must not keep the agent from serving.
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping an unreadable operation record")
                }
            }
        }
        let ops = Arc::new(Operations {
            dir,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                running: HashMap::new(),
            }),
            metrics,
            accepting: AtomicBool::new(true),
            shutting_down: CancellationToken::new(),
            _lock: held,
        });
        for (id, mut record) in entries {
            if record.state == State::Running {
                let span = tracing::info_span!("operation", operation_id = %id, kind = record.kind.as_str());
                let _enter = span.enter();
                close_interrupted(&mut record);
                ops.write(&record)?;
                ops.metrics.interrupted(record.kind);
            }
            lock(&ops.inner).entries.insert(id, Entry::new(record));
        }
        ops.prune();
        Ok(ops)
    }

    /// The operation with this id, if it is of `kind`.
    pub fn existing(&self, id: &str, kind: Kind) -> Result<Option<Record>, StartError> {
        let inner = lock(&self.inner);
        match inner.entries.get(id) {
            Some(entry) => {
                let record = entry.view();
                check_kind(&record, kind)?;
                Ok(Some(record))
            }
            None => Ok(None),
        }
    }

    pub fn get(&self, id: &str) -> Option<Record> {
        lock(&self.inner).entries.get(id).map(|e| e.view())
    }

    /// Every operation, newest first.
    pub fn list(&self) -> Vec<Record> {
        let mut all: Vec<Record> = lock(&self.inner)
            .entries
            .values()
            .map(|e| e.view())
            .collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        all
    }

    /// The running operation of this kind, if any.
    pub fn running(&self, kind: Kind) -> Option<String> {
        lock(&self.inner).running.get(&kind).cloned()
    }

    pub fn watch(&self, id: &str) -> Option<Watch> {
        let entry = lock(&self.inner).entries.get(id)?.clone();
        let changes = entry.changed.subscribe();
        Some(Watch {
            entry,
            changes,
            shutting_down: self.shutting_down.clone(),
        })
    }

    /// Starts `job` as operation `new.id`, or returns the operation that
    /// has this id already.
    pub fn start<F, Fut>(self: &Arc<Self>, new: NewOperation, job: F) -> Result<Started, StartError>
    where
        F: FnOnce(Job) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Outcome, Failure>> + Send + 'static,
    {
        let mut inner = lock(&self.inner);
        if let Some(entry) = inner.entries.get(&new.id) {
            let record = entry.view();
            check_kind(&record, new.kind)?;
            return Ok(Started::Existing(record));
        }
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(StartError::ShuttingDown);
        }
        if let Some(running) = inner.running.get(&new.kind) {
            return Err(StartError::Busy {
                kind: new.kind.as_str(),
                running: running.clone(),
            });
        }
        let record = Record {
            format: RECORD_FORMAT,
            id: new.id.clone(),
            kind: new.kind,
            state: State::Running,
            repository_url: new.repository_url,
            backup_name: new.backup_name,
            destination: new.destination,
            owns_destination: false,
            progress: ProgressRecord::default(),
            cancel_requested: false,
            error: None,
            result: None,
            created_at: SystemTime::now(),
            finished_at: None,
            agent_pid: std::process::id(),
        };
        self.write(&record)?;
        let entry = Entry::new(record.clone());
        inner.entries.insert(new.id.clone(), entry.clone());
        inner.running.insert(new.kind, new.id.clone());
        drop(inner);
        self.metrics.started(new.kind);

        let span =
            tracing::info_span!("operation", operation_id = %new.id, kind = new.kind.as_str());
        let handle = Job {
            live: entry.live.clone(),
            cancel: entry.cancel.clone(),
            entry: entry.clone(),
            ops: self.clone(),
        };
        let work = tokio::spawn(job(handle).instrument(span.clone()));
        tokio::spawn(self.clone().supervise(entry, work).instrument(span));
        Ok(Started::New(record))
    }

    /// Asks the operation to stop; it ends as cancelled once the engine has
    /// released what it holds. `None` for an unknown id.
    pub fn cancel(&self, id: &str) -> Option<Record> {
        let entry = lock(&self.inner).entries.get(id)?.clone();
        self.request_cancel(
            &entry,
            Failure::new(
                Code::Cancelled,
                "CANCELLED",
                "cancelled on request; the server's backup lock and redo log consumer were released and the \
                 partial output removed",
            ),
        );
        Some(entry.view())
    }

    /// Stops taking operations, cancels the running ones and waits (up to
    /// `grace`) until they have released the server.
    pub async fn shutdown(&self, grace: Duration) {
        self.accepting.store(false, Ordering::SeqCst);
        let running: Vec<Arc<Entry>> = lock(&self.inner)
            .entries
            .values()
            .filter(|e| lock(&e.record).state == State::Running)
            .cloned()
            .collect();
        for entry in &running {
            self.request_cancel(
                entry,
                Failure::new(
                    Code::Cancelled,
                    "AGENT_SHUTDOWN",
                    "the agent was asked to stop (SIGTERM) and cancelled this operation; the server's backup \
                     lock and redo log consumer were released and the partial output removed. Start a new \
                     operation with a new id",
                ),
            );
        }
        let all_done = async {
            for entry in &running {
                let mut changes = entry.changed.subscribe();
                while lock(&entry.record).state == State::Running {
                    if changes.changed().await.is_err() {
                        break;
                    }
                }
            }
        };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::error!(
                ?grace,
                "operations still running at the end of the shutdown grace period; the next agent will \
                 report them as failed"
            );
        }
        self.shutting_down.cancel();
    }

    fn request_cancel(&self, entry: &Entry, cause: Failure) {
        if lock(&entry.record).state != State::Running || entry.cancel.is_cancelled() {
            return;
        }
        tracing::info!(operation_id = %lock(&entry.record).id, reason = %cause.reason, "cancelling");
        *lock(&entry.cancel_cause) = Some(cause);
        self.update(entry, |r| r.cancel_requested = true);
        entry.cancel.cancel();
    }

    /// Waits for the job, keeps metrics and the record's progress current
    /// meanwhile, then records how it ended.
    async fn supervise(
        self: Arc<Self>,
        entry: Arc<Entry>,
        mut work: tokio::task::JoinHandle<Result<Outcome, Failure>>,
    ) {
        let started = Instant::now();
        let kind = lock(&entry.record).kind;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        let mut counted = 0;
        let mut persisted = Instant::now();
        let joined = loop {
            tokio::select! {
                joined = &mut work => break joined,
                _ = ticker.tick() => {
                    let progress = entry.live.snapshot();
                    self.metrics.copied(kind, progress.bytes_done.saturating_sub(counted));
                    counted = counted.max(progress.bytes_done);
                    if persisted.elapsed() >= PERSIST_EVERY && lock(&entry.record).progress != progress {
                        self.update(&entry, |r| r.progress = progress);
                        persisted = Instant::now();
                    }
                }
            }
        };
        let outcome = joined.unwrap_or_else(|e| {
            Err(Failure::new(
                Code::Internal,
                "INTERNAL",
                format!(
                    "the operation stopped unexpectedly ({e}); this is a bug: please report it"
                ),
            ))
        });
        let progress = entry.live.snapshot();
        self.metrics
            .copied(kind, progress.bytes_done.saturating_sub(counted));
        let cause = lock(&entry.cancel_cause).clone();
        let (state, result, error) = match outcome {
            Ok(result) => (State::Succeeded, Some(result), None),
            Err(failure) if failure.is_cancelled() => {
                (State::Cancelled, None, Some(cause.unwrap_or(failure)))
            }
            Err(failure) => (State::Failed, None, Some(failure)),
        };
        match &error {
            None => tracing::info!(took = ?started.elapsed(), "operation succeeded"),
            Some(f) => {
                tracing::warn!(?state, reason = %f.reason, error = %f.message, "operation ended")
            }
        }
        {
            // The slot is freed under the same lock as the final record is
            // published: a watcher that sees the end and at once starts the
            // next operation must find the server free.
            let mut inner = lock(&self.inner);
            let id = self.update(&entry, |r| {
                r.state = state;
                r.progress = progress;
                r.result = result;
                r.error = error;
                r.finished_at = Some(SystemTime::now());
                r.id.clone()
            });
            if inner.running.get(&kind) == Some(&id) {
                inner.running.remove(&kind);
            }
        }
        self.metrics.finished(kind, state, started.elapsed());
        self.prune();
    }

    /// Changes a record, writes it and tells the watchers.
    fn update<T>(&self, entry: &Entry, change: impl FnOnce(&mut Record) -> T) -> T {
        let mut record = lock(&entry.record);
        let out = change(&mut record);
        if let Err(e) = self.write(&record) {
            // The operation itself goes on; its record on disk is stale
            // until the next write succeeds.
            tracing::error!(error = %e, "cannot write the operation record");
        }
        drop(record);
        entry.changed.send_modify(|v| *v += 1);
        out
    }

    fn write(&self, record: &Record) -> Result<(), meta::Error> {
        let text = serde_json::to_vec_pretty(record).expect("a record serializes");
        meta::write_atomically(&self.dir, &record_file(&record.id), &text)
    }

    /// Deletes the oldest finished records beyond [`KEEP_FINISHED`].
    fn prune(&self) {
        let mut inner = lock(&self.inner);
        let mut finished: Vec<(SystemTime, String)> = inner
            .entries
            .values()
            .filter_map(|e| {
                let r = lock(&e.record);
                r.state
                    .is_terminal()
                    .then(|| (r.finished_at.unwrap_or(r.created_at), r.id.clone()))
            })
            .collect();
        if finished.len() <= KEEP_FINISHED {
            return;
        }
        finished.sort();
        let excess = finished.len() - KEEP_FINISHED;
        for (_, id) in finished.into_iter().take(excess) {
            inner.entries.remove(&id);
            let path = self.dir.join(record_file(&id));
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove an old operation record");
            }
        }
    }
}

/// Closes the record of an operation that was running when its agent died,
/// and removes what it left half-written. A backup whose manifest was
/// written had finished: it is recorded as the success it is.
fn close_interrupted(record: &mut Record) {
    record.finished_at = Some(SystemTime::now());
    record.cancel_requested = false;
    let destination = record
        .destination
        .clone()
        .filter(|_| record.owns_destination);
    if record.kind == Kind::Backup
        && let Some(dir) = &destination
        && let Ok(manifest) = crate::verify::read_manifest(dir)
    {
        tracing::info!(dir = %dir.display(), "the agent stopped after the backup's manifest was written: it is complete");
        record.state = State::Succeeded;
        record.progress.phase = Some(Phase::Done);
        record.result = Some(Outcome::Backup(BackupOutcome::from_manifest(
            super::jobs::location_of(dir),
            record.backup_name.clone(),
            &manifest,
        )));
        return;
    }
    let mut cleanup = String::new();
    if let Some(dir) = &destination
        && dir.exists()
    {
        cleanup = match std::fs::remove_dir_all(dir) {
            Ok(()) => format!(" Its partial output {} was removed.", dir.display()),
            Err(e) => format!(
                " Its partial output {} could not be removed ({e}): remove it by hand.",
                dir.display()
            ),
        };
    }
    let message = format!(
        "the agent stopped while this operation was running (it was killed or crashed) and has restarted. \
         Its MySQL sessions ended with it, which released the server's backup lock and redo log consumer.{cleanup} \
         Start a new operation with a new id to try again"
    );
    tracing::warn!(%message, "closing an operation interrupted by an agent restart");
    record.state = State::Failed;
    record.error = Some(Failure::new(Code::Aborted, "AGENT_RESTARTED", message));
}

fn check_kind(record: &Record, kind: Kind) -> Result<(), StartError> {
    if record.kind == kind {
        Ok(())
    } else {
        Err(StartError::WrongKind {
            id: record.id.clone(),
            existing: record.kind.as_str(),
            requested: kind.as_str(),
        })
    }
}

fn read_record(path: &Path) -> Result<Record, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let record: Record = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if record.format != RECORD_FORMAT {
        return Err(format!(
            "record format {} (this agent reads {RECORD_FORMAT})",
            record.format
        ));
    }
    if path.file_name().and_then(|n| n.to_str()) != Some(record_file(&record.id).as_str()) {
        return Err(format!(
            "the file does not match the record's id {:?}",
            record.id
        ));
    }
    Ok(record)
}

fn record_file(id: &str) -> String {
    format!("{id}.json")
}

/// Poisoning only means another thread panicked while holding the lock;
/// the data is still the best we have.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::record::StageOutcome;

    fn new_backup(id: &str, destination: Option<PathBuf>) -> NewOperation {
        NewOperation {
            id: id.into(),
            kind: Kind::Backup,
            repository_url: "file:///backups".into(),
            backup_name: id.into(),
            destination,
        }
    }

    async fn wait_terminal(ops: &Operations, id: &str) -> Record {
        let mut watch = ops.watch(id).unwrap();
        loop {
            let record = watch.current();
            if record.state.is_terminal() {
                return record;
            }
            watch.changed().await;
        }
    }

    #[tokio::test]
    async fn the_same_id_returns_the_same_operation_and_a_second_one_waits_its_turn() {
        let state = tempfile::tempdir().unwrap();
        let ops = Operations::open(state.path(), Arc::new(Metrics::new())).unwrap();
        let release = CancellationToken::new();
        let job = |release: CancellationToken| {
            move |job: Job| async move {
                tokio::select! {
                    _ = release.cancelled() => Ok(Outcome::StageRestore(StageOutcome {
                        prepared_dir: "/p".into(), backup_location: String::new(), server_version: String::new(),
                        last_lsn: 0, binlog_file: String::new(), binlog_position: 0, gtid_executed: String::new(), replayed: None,
                        chain: Vec::new(),
                    })),
                    _ = job.cancel.cancelled() => Err(Failure::new(Code::Cancelled, "CANCELLED", "stopped")),
                }
            }
        };
        let first = ops
            .start(new_backup("a", None), job(release.clone()))
            .unwrap();
        assert!(matches!(first, Started::New(_)));
        let again = ops
            .start(new_backup("a", None), job(release.clone()))
            .unwrap();
        assert!(matches!(again, Started::Existing(r) if r.state == State::Running));
        let busy = ops
            .start(new_backup("b", None), job(release.clone()))
            .unwrap_err();
        assert!(
            matches!(&busy, StartError::Busy { running, .. } if running == "a"),
            "{busy}"
        );
        let mut restore = new_backup("a", None);
        restore.kind = Kind::StageRestore;
        assert!(matches!(
            ops.start(restore, job(release.clone())),
            Err(StartError::WrongKind { .. })
        ));

        release.cancel();
        assert_eq!(wait_terminal(&ops, "a").await.state, State::Succeeded);
        let b = ops
            .start(new_backup("b", None), job(CancellationToken::new()))
            .unwrap();
        assert!(matches!(b, Started::New(_)));
        ops.cancel("b").unwrap();
        let b = wait_terminal(&ops, "b").await;
        assert_eq!(b.state, State::Cancelled);
        assert_eq!(b.error.unwrap().reason, "CANCELLED");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operation_seen_ended_has_freed_the_server_for_the_next() {
        let state = tempfile::tempdir().unwrap();
        let ops = Operations::open(state.path(), Arc::new(Metrics::new())).unwrap();
        for i in 0..300 {
            let id = format!("op{i}");
            let fails_at_once = |_: Job| async {
                Err::<Outcome, _>(Failure::new(
                    Code::NotFound,
                    "BACKUP_INVALID",
                    "no such backup",
                ))
            };
            ops.start(new_backup(&id, None), fails_at_once)
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(wait_terminal(&ops, &id).await.state, State::Failed);
        }
    }

    #[test]
    fn a_restart_closes_what_a_dead_agent_left_running_and_removes_its_partial_output() {
        let state = tempfile::tempdir().unwrap();
        let partial = state.path().join("backups/x");
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join("ibdata1"), b"half").unwrap();
        let first_agent = tokio::runtime::Runtime::new().unwrap();
        first_agent.block_on(async {
            let ops = Operations::open(state.path(), Arc::new(Metrics::new())).unwrap();
            // Another agent on the same state dir is refused while this one runs.
            let second = Operations::open(state.path(), Arc::new(Metrics::new()));
            assert!(matches!(second, Err(OpenError::Locked { .. })));
            let never = |job: Job| async move {
                job.update(|r| r.owns_destination = true);
                std::future::pending::<Result<Outcome, Failure>>().await
            };
            ops.start(new_backup("x", Some(partial.clone())), never)
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        // The agent dies: its tasks go with it, the record stays `running`.
        drop(first_agent);

        let ops = Operations::open(state.path(), Arc::new(Metrics::new())).unwrap();
        let record = ops.get("x").unwrap();
        assert_eq!(record.state, State::Failed);
        let error = record.error.unwrap();
        assert_eq!(
            (error.code, error.reason.as_str()),
            (Code::Aborted as i32, "AGENT_RESTARTED")
        );
        assert!(error.message.contains("was removed"), "{}", error.message);
        assert!(!partial.exists());
        // Its id still answers with that record, not a new operation.
        assert!(matches!(ops.existing("x", Kind::Backup), Ok(Some(r)) if r.state == State::Failed));
    }
}
