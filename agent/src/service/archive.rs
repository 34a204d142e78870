//! The agent's binlog archiver: the one archive task of this agent behind
//! StartBinlogArchive / StopBinlogArchive / GetBinlogArchive /
//! PruneBinlogArchive. The task runs [`archive_binlogs`] (the same code as
//! `innoxide-agent archive-binlogs`) until it is stopped or the agent shuts
//! down; both cancel it between passes, so the archive's index is always
//! the one a whole pass wrote.
//!
//! Why one task per agent: an archive has one writer, and an agent archives
//! its own server; the operator runs it on the primary only. The task keeps
//! going across MySQL restarts and store outages (each failed pass, or a
//! failed start of a run, is reported in the status and retried after the
//! upload interval; every run resumes from the index). Only errors no retry
//! can mend end it (FAILED): another archiver writing the archive, a wrong
//! key, an index this agent cannot read.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use innoxide_proto::agent::v1 as pb;
use innoxide_proto::prost_types::Timestamp;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use super::Config;
use super::api::timestamp;
use super::jobs;
use super::record::{Failure, check_name};
use crate::binlog::archive::{ArchiveError, ArchiveOptions, ArchiveStatus, Stop, archive_binlogs};
use crate::binlog::archive_index::{ArchiveIndex, CommitTime, GapKind, IndexError};
use crate::binlog::archive_prune::{PruneError, PruneReport, prune_archive};
use crate::binlog::gtid_set::GtidSet;
use crate::mysql;
use crate::repo::{Store, Transform};

/// The upload interval when the request leaves it open (the proto's 0).
const DEFAULT_UPLOAD_INTERVAL: Duration = Duration::from_secs(60);
/// How long a Stop waits for the pass in flight to finish storing.
const STOP_WAIT: Duration = Duration::from_secs(120);
/// How long a Prune waits for the running archiver to take it.
const PRUNE_WAIT: Duration = Duration::from_secs(120);

/// The archive task's state.
#[derive(Debug, Clone, PartialEq)]
enum TaskState {
    Running,
    Stopped,
    Failed(Failure),
}

/// The archive this agent runs or last ran.
struct Archive {
    id: String,
    /// The request it was started with, to tell a repeated Start from one
    /// with other settings. Holds credentials: never logged or shown.
    request: pb::StartBinlogArchiveRequest,
    /// The resolved location (as `repo::open` takes it).
    location: String,
    store: Store,
    server_uuid: String,
    status: Arc<ArchiveStatus>,
    cancel: CancellationToken,
    state: watch::Receiver<TaskState>,
    started_at: SystemTime,
}

impl Archive {
    fn running(&self) -> bool {
        *self.state.borrow() == TaskState::Running
    }

    /// Cancels the task and waits (up to `within`) for its pass to end.
    async fn stop(&mut self, within: Duration) {
        self.cancel.cancel();
        let ended = tokio::time::timeout(within, ended(self.state.clone())).await;
        if ended.is_err() {
            tracing::warn!(archive_id = %self.id, "the binlog archiver did not stop within {within:?}");
        }
    }
}

/// The agent's archive registry: one archive at a time.
pub struct Archives {
    current: Mutex<Option<Archive>>,
    shutting_down: CancellationToken,
    config: Arc<Config>,
}

impl Archives {
    pub fn new(config: Arc<Config>) -> Arc<Archives> {
        Arc::new(Archives {
            current: Mutex::new(None),
            shutting_down: CancellationToken::new(),
            config,
        })
    }

    /// Starts the archive, or answers with it when it runs with these
    /// settings already. Other settings under the same id restart it with
    /// those; another id is refused while one runs.
    pub async fn start(
        &self,
        req: pb::StartBinlogArchiveRequest,
    ) -> Result<pb::BinlogArchiveStatus, Status> {
        check_name("archive_id", &req.archive_id).map_err(Status::invalid_argument)?;
        if self.shutting_down.is_cancelled() {
            return Err(Status::unavailable(
                "the agent is shutting down; start the archive again after it restarts",
            ));
        }
        let mut current = self.current.lock().await;
        if let Some(running) = current.as_mut().filter(|a| a.running()) {
            if running.id != req.archive_id {
                return Err(Status::failed_precondition(format!(
                    "binlog archive {:?} runs on this agent (into {}); an agent runs one archive: \
                     stop it (StopBinlogArchive) first",
                    running.id,
                    running.request_url()
                )));
            }
            if running.request == req {
                return Ok(describe(running).await);
            }
            tracing::info!(archive_id = %running.id, "binlog archive settings changed; restarting it");
            running.stop(STOP_WAIT).await;
        }
        let archive = self.launch(req).await?;
        let answer = describe(&archive).await;
        *current = Some(archive);
        Ok(answer)
    }

    /// Checks what a run needs (the repository, the key, a server with
    /// binary logging and GTIDs) so that a request that cannot work is
    /// refused here, then starts the task.
    async fn launch(&self, req: pb::StartBinlogArchiveRequest) -> Result<Archive, Status> {
        let repository = req
            .repository
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("repository is required"))?;
        let (location, repo) = jobs::repository(repository)?;
        let key = jobs::encryption_key(req.encryption_key.as_ref(), "encryption_key")?;
        let zstd_level = match pb::Compression::try_from(req.compression) {
            Ok(pb::Compression::None) => None,
            Ok(pb::Compression::Zstd) => Some(crate::repo::chunk::DEFAULT_ZSTD_LEVEL),
            Err(_) => return Err(Status::invalid_argument("compression is not a known value")),
        };
        let connect = jobs::connect_options(req.mysql.as_ref(), &self.config.connect)?;
        let store = crate::repo::open(&location, &repo)
            .map_err(|e| Status::invalid_argument(format!("repository: {e}")))?;
        let setup = async {
            let mut conn = mysql::connect(&connect).await?;
            let setup = mysql::binlogs::setup(&mut conn).await;
            let _ = conn.disconnect().await;
            setup
        }
        .await
        .map_err(|e| preflight_status(&e))?;
        ArchiveIndex::load(&store)
            .await
            .map_err(|e| index_status(&e))?;

        let status = Arc::new(ArchiveStatus::default());
        let options = ArchiveOptions {
            connect,
            location: location.clone(),
            repo,
            transform: Transform { zstd_level, key },
            upload_interval: match req.upload_interval_seconds {
                0 => DEFAULT_UPLOAD_INTERVAL,
                n => Duration::from_secs(n.into()),
            },
            binlog_dir: None,
            status: status.clone(),
        };
        let cancel = self.shutting_down.child_token();
        let (state_tx, state) = watch::channel(TaskState::Running);
        tokio::spawn(run(
            req.archive_id.clone(),
            options,
            cancel.clone(),
            state_tx,
        ));
        tracing::info!(archive_id = %req.archive_id, repository = %repository.url, server_uuid = %setup.server_uuid, "binlog archiver started");
        Ok(Archive {
            id: req.archive_id.clone(),
            location,
            store,
            server_uuid: setup.server_uuid,
            status,
            cancel,
            state,
            started_at: SystemTime::now(),
            request: req,
        })
    }

    /// Stops the archive after its pass in flight; stopping one that does
    /// not run answers with its status.
    pub async fn stop(&self, id: &str) -> Result<pb::BinlogArchiveStatus, Status> {
        let mut current = self.current.lock().await;
        let archive = current
            .as_mut()
            .filter(|a| a.id == id)
            .ok_or_else(|| not_found(id))?;
        if archive.running() {
            archive.stop(STOP_WAIT).await;
            tracing::info!(archive_id = %id, "binlog archiver stopped");
        }
        Ok(describe(archive).await)
    }

    pub async fn get(&self, id: &str) -> Result<pb::BinlogArchiveStatus, Status> {
        let current = self.current.lock().await;
        let archive = current
            .as_ref()
            .filter(|a| a.id == id)
            .ok_or_else(|| not_found(id))?;
        Ok(describe(archive).await)
    }

    /// Prunes through the running archiver when it writes this archive
    /// (the index has one writer), else directly.
    pub async fn prune(
        &self,
        req: pb::PruneBinlogArchiveRequest,
    ) -> Result<pb::PruneBinlogArchiveResponse, Status> {
        let covered_by: GtidSet = req
            .covered_by
            .parse()
            .map_err(|e| Status::invalid_argument(format!("covered_by: {e}")))?;
        let repository = req
            .repository
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("repository is required"))?;
        let (location, repo) = jobs::repository(repository)?;
        let through = {
            let current = self.current.lock().await;
            current
                .as_ref()
                .filter(|a| a.running() && a.location == location)
                .map(|a| (a.status.clone(), a.state.clone()))
        };
        let report = match through {
            Some((status, state)) => {
                tokio::select! {
                    pruned = tokio::time::timeout(PRUNE_WAIT, status.prune(covered_by.clone())) => match pruned {
                        Ok(result) => result.map_err(|e| Status::unavailable(format!("cannot prune the binlog archive: {e}")))?,
                        Err(_) => return Err(Status::unavailable(format!(
                            "the binlog archiver did not prune within {PRUNE_WAIT:?}; try again"
                        ))),
                    },
                    // Stopped meanwhile: nobody writes the index now.
                    () = ended(state) => prune_directly(&location, &repo, &covered_by).await?,
                }
            }
            None => prune_directly(&location, &repo, &covered_by).await?,
        };
        if !report.removed.is_empty() {
            tracing::info!(removed = ?report.removed, freed_bytes = report.freed_bytes, "binlog archive pruned");
        }
        Ok(pb::PruneBinlogArchiveResponse {
            removed: report.removed,
            freed_bytes: report.freed_bytes,
        })
    }

    /// Stops the archive task (after its pass in flight), within `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutting_down.cancel();
        if let Some(archive) = self.current.lock().await.as_mut()
            && archive.running()
        {
            archive.stop(grace).await;
        }
    }
}

impl Archive {
    fn request_url(&self) -> &str {
        self.request
            .repository
            .as_ref()
            .map_or("", |r| r.url.as_str())
    }
}

/// Resolves once the task has ended.
async fn ended(mut state: watch::Receiver<TaskState>) {
    // The guard wait_for returns must not live across an await (not Send).
    let _ = state.wait_for(|s| *s != TaskState::Running).await.is_ok();
}

async fn prune_directly(
    location: &str,
    repo: &crate::repo::RepoOptions,
    covered_by: &GtidSet,
) -> Result<PruneReport, Status> {
    let store = crate::repo::open(location, repo)
        .map_err(|e| Status::invalid_argument(format!("repository: {e}")))?;
    prune_archive(&store, covered_by)
        .await
        .map_err(|e| match e {
            PruneError::NoArchive(_) => Status::not_found(e.to_string()),
            PruneError::Index(e) => index_status(&e),
            PruneError::Store(e) => Status::unavailable(format!("{e}; check the repository")),
        })
}

/// The task: runs of the archiver until cancelled, a retryable failure
/// reported and retried after the upload interval.
async fn run(
    id: String,
    options: ArchiveOptions,
    cancel: CancellationToken,
    state: watch::Sender<TaskState>,
) {
    let end = loop {
        match archive_binlogs(&options, Stop::Cancelled(cancel.clone())).await {
            Ok(_) => break TaskState::Stopped,
            Err(e) => {
                if let Some(failure) = lasting(&e) {
                    tracing::error!(archive_id = %id, error = %e, "binlog archiving stopped");
                    break TaskState::Failed(failure);
                }
                tracing::warn!(archive_id = %id, error = %e, "binlog archiving failed; retrying");
                options.status.failed_pass(e.to_string());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(options.upload_interval) => {}
            _ = cancel.cancelled() => break TaskState::Stopped,
        }
    };
    let _ = state.send(end);
}

/// The failure of an error no retry mends; None for the others.
fn lasting(e: &ArchiveError) -> Option<Failure> {
    let (code, reason) = match e {
        ArchiveError::ConcurrentWriter { .. } => (Code::FailedPrecondition, "CONCURRENT_WRITER"),
        ArchiveError::Key(_) => (Code::FailedPrecondition, "KEY"),
        ArchiveError::Index(IndexError::TooNew { .. } | IndexError::Invalid { .. }) => {
            (Code::FailedPrecondition, "INDEX")
        }
        ArchiveError::Repo(_) => (Code::InvalidArgument, "TARGET"),
        ArchiveError::Mysql(
            m @ (mysql::Error::MissingPrivilege { .. } | mysql::Error::UnsupportedVersion { .. }),
        ) => jobs::mysql_code(m),
        _ => return None,
    };
    Some(Failure::new(code, reason, e.to_string()))
}

fn preflight_status(e: &mysql::Error) -> Status {
    match e {
        // Binary logging or GTIDs off: setup says which and what to set.
        mysql::Error::Unexpected { what, .. } if what.contains("binary logging") => {
            Status::failed_precondition(format!("this server cannot be archived: {e}"))
        }
        _ => {
            let (code, _) = jobs::mysql_code(e);
            Status::new(code, e.to_string())
        }
    }
}

fn index_status(e: &IndexError) -> Status {
    match e {
        IndexError::Store(_) => Status::unavailable(format!(
            "cannot read the binlog archive's index: {e}; check the repository"
        )),
        _ => Status::failed_precondition(e.to_string()),
    }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!(
        "no binlog archive has id {id:?} on this agent; start it (StartBinlogArchive)"
    ))
}

/// The archive's status: the task's state and the archiver's numbers, the
/// recoverable window and gaps from the index (read again: the archiver
/// rewrites it after every segment).
async fn describe(archive: &Archive) -> pb::BinlogArchiveStatus {
    let task = archive.state.borrow().clone();
    let snapshot = archive.status.snapshot();
    let index = ArchiveIndex::load(&archive.store).await;
    let (state, error) = match task {
        TaskState::Running => (
            pb::ArchiveState::Running,
            snapshot
                .last_error
                .clone()
                .map(|message| pb::OperationError {
                    code: Code::Unavailable as i32,
                    reason: "RETRYING".into(),
                    message,
                }),
        ),
        TaskState::Stopped => (pb::ArchiveState::Stopped, None),
        TaskState::Failed(f) => (
            pb::ArchiveState::Failed,
            Some(pb::OperationError {
                code: f.code,
                reason: f.reason,
                message: f.message,
            }),
        ),
    };
    let mut answer = pb::BinlogArchiveStatus {
        archive_id: archive.id.clone(),
        state: state as i32,
        repository_url: archive.request_url().to_owned(),
        server_uuid: archive.server_uuid.clone(),
        lag_seconds: snapshot.lag_seconds,
        bytes_behind: snapshot.bytes_behind,
        error,
        started_at: Some(timestamp(archive.started_at)),
        updated_at: snapshot.updated_at.map(commit_timestamp),
        ..Default::default()
    };
    match index {
        Ok(Some(index)) => fill_from_index(&mut answer, &index),
        Ok(None) => {}
        Err(e) => {
            // The numbers above still hold; say why the window is missing.
            answer.error.get_or_insert(pb::OperationError {
                code: Code::Unavailable as i32,
                reason: "INDEX".into(),
                message: format!("cannot read the binlog archive's index: {e}"),
            });
        }
    }
    answer
}

/// The recoverable window, gaps and sizes of an index.
fn fill_from_index(answer: &mut pb::BinlogArchiveStatus, index: &ArchiveIndex) {
    let window = index.recoverable_window();
    answer.earliest = window.earliest.map(commit_timestamp);
    answer.latest = window.latest.map(commit_timestamp);
    answer.gtid_set = window.gtids.to_string();
    answer.files = index.files.len() as u64;
    answer.bytes = index
        .files
        .iter()
        .flat_map(|f| &f.segments)
        .map(|s| s.stored_size.unwrap_or(s.end - s.start))
        .sum();
    answer.gaps = index
        .gaps
        .iter()
        .map(|gap| {
            let after = gap
                .position
                .checked_sub(1)
                .and_then(|at| index.files.get(at));
            let before = index.files.get(gap.position);
            pb::BinlogGap {
                after_file: after.map(|f| f.name.clone()).unwrap_or_default(),
                before_file: gap.before.clone(),
                reason: match gap.kind {
                    GapKind::Purged => "PURGED_BEFORE_ARCHIVED",
                    GapKind::Diverged => "SERVER_CHANGED",
                }
                .into(),
                missing: gap.missing.to_string(),
                from_time: after.and_then(|f| f.last_event_time).map(commit_timestamp),
                to_time: before
                    .and_then(|f| f.first_event_time)
                    .map(commit_timestamp),
            }
        })
        .collect();
}

fn commit_timestamp(at: CommitTime) -> Timestamp {
    Timestamp {
        seconds: (at.0 / 1_000_000) as i64,
        nanos: ((at.0 % 1_000_000) * 1000) as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times_keep_their_microseconds() {
        let t = commit_timestamp(CommitTime(1_765_000_000_123_456));
        assert_eq!((t.seconds, t.nanos), (1_765_000_000, 123_456_000));
    }

    #[test]
    fn only_errors_no_retry_mends_end_the_archiver() {
        let writer = ArchiveError::ConcurrentWriter {
            location: "s3://b/binlogs".into(),
            found: 7,
            expected: 5,
        };
        assert_eq!(lasting(&writer).unwrap().reason, "CONCURRENT_WRITER");
        let key = ArchiveError::Key("wrong key".into());
        assert_eq!(lasting(&key).unwrap().reason, "KEY");
        let down = ArchiveError::Mysql(mysql::Error::Unexpected {
            what: "SHOW BINARY LOGS",
            detail: "no binlog files".into(),
        });
        assert!(lasting(&down).is_none());
    }
}
