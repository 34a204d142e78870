//! The gRPC service: requests checked and handed to the operations
//! registry, records turned into API messages, errors into status codes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::Stream;
use innoxide_proto::agent::v1 as pb;
use innoxide_proto::prost_types::Timestamp;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::Config;
use super::archive::Archives;
use super::jobs;
use super::operations::{NewOperation, Operations, StartError, Started};
use super::record::{ChainLink, Kind, Outcome, Phase, ProgressRecord, Record, State, check_name};
use crate::meta::ChangedPages;
use crate::{mysql, swap};

/// What the agent can do, as ServerInfo reports it.
const CAPABILITIES: &[&str] = &[
    "backup.full",
    "backup.incremental",
    "backup.throttle",
    "repository.file",
    "restore.stage",
    "restore.chain",
    "restore.swap",
    "restore.init",
    "restore.discard",
    "operations.watch",
    "binlog.archive",
];
/// How often a watch looks at live progress between changes of state.
const WATCH_POLL: Duration = Duration::from_millis(250);

pub struct AgentService {
    ops: Arc<Operations>,
    archives: Arc<Archives>,
    config: Arc<Config>,
}

impl AgentService {
    pub fn new(ops: Arc<Operations>, archives: Arc<Archives>, config: Arc<Config>) -> Self {
        AgentService {
            ops,
            archives,
            config,
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Operation, Status>> + Send>>;

#[tonic::async_trait]
impl pb::agent_server::Agent for AgentService {
    #[tracing::instrument(name = "rpc", skip_all, fields(method = "ServerInfo"))]
    async fn server_info(
        &self,
        request: Request<pb::ServerInfoRequest>,
    ) -> Result<Response<pb::ServerInfoResponse>, Status> {
        let req = request.into_inner();
        let connect = jobs::connect_options(req.mysql.as_ref(), &self.config.connect)?;
        let facts = async {
            let mut conn = mysql::connect(&connect).await?;
            let facts = mysql::facts::read(&mut conn).await;
            let gtid_executed = mysql::gtid_executed(&mut conn).await;
            let _ = conn.disconnect().await;
            Ok::<_, mysql::Error>((facts?, gtid_executed?))
        }
        .await
        .map_err(|e| mysql_status(&e))?;
        let (facts, gtid_executed) = facts;
        Ok(Response::new(pb::ServerInfoResponse {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            mysql_version: facts.version_string,
            datadir: facts.datadir.display().to_string(),
            page_size: facts.page_size,
            server_uuid: facts.server_uuid,
            server_id: facts.server_id,
            redo: Some(pb::RedoSettings {
                dir: facts.redo_dir.display().to_string(),
                capacity_bytes: facts.redo_capacity,
                encrypted: facts.redo_log_encrypt,
            }),
            log_bin: facts.log_bin,
            gtid_mode: facts.gtid_mode,
            checksum_algorithm: facts.checksum_algorithm,
            capabilities: CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
            running_backup_id: self.ops.running(Kind::Backup).unwrap_or_default(),
            gtid_executed,
            swap: Some(self.swap_state()?),
        }))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "StartBackup", operation_id = %request.get_ref().operation_id))]
    async fn start_backup(
        &self,
        request: Request<pb::StartBackupRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let req = request.into_inner();
        check_name("operation_id", &req.operation_id).map_err(Status::invalid_argument)?;
        // A known id answers with its operation even if the request would
        // not pass today (say, a credential file that has rotated away).
        if let Some(existing) = self
            .ops
            .existing(&req.operation_id, Kind::Backup)
            .map_err(start_status)?
        {
            return Ok(Response::new(operation(existing)));
        }
        let plan = jobs::backup_plan(&req, &self.config)?;
        let new = NewOperation {
            id: req.operation_id.clone(),
            kind: Kind::Backup,
            repository_url: plan.repository_url.clone(),
            backup_name: plan.backup_name.clone(),
            destination: plan.dir.clone(),
        };
        started(self.ops.start(new, move |job| jobs::run_backup(plan, job)))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "StageRestore", operation_id = %request.get_ref().operation_id))]
    async fn stage_restore(
        &self,
        request: Request<pb::StageRestoreRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let req = request.into_inner();
        check_name("operation_id", &req.operation_id).map_err(Status::invalid_argument)?;
        if let Some(existing) = self
            .ops
            .existing(&req.operation_id, Kind::StageRestore)
            .map_err(start_status)?
        {
            return Ok(Response::new(operation(existing)));
        }
        let plan = jobs::stage_plan(&req, &self.config)?;
        let new = NewOperation {
            id: req.operation_id.clone(),
            kind: Kind::StageRestore,
            repository_url: plan.repository_url.clone(),
            backup_name: plan.backup_name.clone(),
            destination: Some(plan.staging.clone()),
        };
        started(
            self.ops
                .start(new, move |job| jobs::run_stage_restore(plan, job)),
        )
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "ArmSwap", operation_id = %request.get_ref().operation_id))]
    async fn arm_swap(
        &self,
        request: Request<pb::ArmSwapRequest>,
    ) -> Result<Response<pb::SwapState>, Status> {
        let id = request.into_inner().operation_id;
        check_name("operation_id", &id).map_err(Status::invalid_argument)?;
        let record = self.ops.get(&id).ok_or_else(|| not_found(&id))?;
        let staged = match (&record.kind, &record.state, &record.result) {
            (Kind::StageRestore, State::Succeeded, Some(Outcome::StageRestore(staged))) => staged,
            (Kind::StageRestore, state, _) => {
                return Err(Status::failed_precondition(format!(
                    "StageRestore {id} is {}: only a succeeded one can be swapped in; wait for it \
                     to succeed, or stage again",
                    state_name(*state)
                )));
            }
            (kind, _, _) => {
                return Err(Status::failed_precondition(format!(
                    "operation {id} is a {}, not a StageRestore: only a staged restore can be \
                     swapped in",
                    kind.as_str()
                )));
            }
        };
        if !staged.prepared_dir.is_dir() {
            return Err(Status::failed_precondition(format!(
                "the prepared datadir of {id} ({}) is gone: stage the restore again",
                staged.prepared_dir.display()
            )));
        }
        let armed = swap::Armed {
            operation_id: id,
            prepared_dir: staged.prepared_dir.clone(),
            gtid_executed: staged.gtid_executed.clone(),
            armed_at: SystemTime::now(),
        };
        let state_dir = self.config.state_dir.clone();
        let state = tokio::task::spawn_blocking(move || swap::arm(&state_dir, armed))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| swap_status(&e))?;
        Ok(Response::new(swap_state(state)))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "DisarmSwap", operation_id = %request.get_ref().operation_id))]
    async fn disarm_swap(
        &self,
        request: Request<pb::DisarmSwapRequest>,
    ) -> Result<Response<pb::SwapState>, Status> {
        let id = request.into_inner().operation_id;
        check_name("operation_id", &id).map_err(Status::invalid_argument)?;
        let state_dir = self.config.state_dir.clone();
        let state = tokio::task::spawn_blocking(move || swap::disarm(&state_dir, &id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| swap_status(&e))?;
        Ok(Response::new(swap_state(state)))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "DiscardRestore", operation_id = %request.get_ref().operation_id))]
    async fn discard_restore(
        &self,
        request: Request<pb::DiscardRestoreRequest>,
    ) -> Result<Response<pb::DiscardRestoreResponse>, Status> {
        let req = request.into_inner();
        let id = req.operation_id;
        check_name("operation_id", &id).map_err(Status::invalid_argument)?;
        if let Some(record) = self.ops.get(&id)
            && record.state == State::Running
        {
            return Err(Status::failed_precondition(format!(
                "{} {id} is running: cancel it (CancelOperation) and wait for it to end, then \
                 discard",
                record.kind.as_str()
            )));
        }
        let (state_dir, staging_dir) = (
            self.config.state_dir.clone(),
            self.config.staging_dir.clone(),
        );
        let keep_previous = req.keep_previous_datadir;
        let discarded = tokio::task::spawn_blocking(move || {
            swap::discard(&state_dir, &staging_dir, &id, keep_previous)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| swap_status(&e))?;
        Ok(Response::new(pb::DiscardRestoreResponse {
            removed: discarded
                .removed
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            freed_bytes: discarded.freed_bytes,
        }))
    }

    async fn get_operation(
        &self,
        request: Request<pb::GetOperationRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let id = request.into_inner().operation_id;
        let record = self.ops.get(&id).ok_or_else(|| not_found(&id))?;
        Ok(Response::new(operation(record)))
    }

    async fn list_operations(
        &self,
        _request: Request<pb::ListOperationsRequest>,
    ) -> Result<Response<pb::ListOperationsResponse>, Status> {
        Ok(Response::new(pb::ListOperationsResponse {
            operations: self.ops.list().into_iter().map(operation).collect(),
        }))
    }

    type WatchOperationStream = WatchStream;

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "WatchOperation", operation_id = %request.get_ref().operation_id))]
    async fn watch_operation(
        &self,
        request: Request<pb::WatchOperationRequest>,
    ) -> Result<Response<Self::WatchOperationStream>, Status> {
        let id = request.into_inner().operation_id;
        let mut watch = self.ops.watch(&id).ok_or_else(|| not_found(&id))?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut last: Option<pb::Operation> = None;
            let mut poll = tokio::time::interval(WATCH_POLL);
            loop {
                let record = watch.current();
                let terminal = record.state.is_terminal();
                let now = operation(record);
                if last.as_ref() != Some(&now) {
                    // A client that went away ends the watch, not the operation.
                    if tx.send(Ok(now.clone())).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                if terminal {
                    return;
                }
                let shutting_down = watch.shutting_down.clone();
                tokio::select! {
                    _ = watch.changed() => {}
                    _ = poll.tick() => {}
                    _ = tx.closed() => return,
                    _ = shutting_down.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("the agent is shutting down; watch again after it restarts"))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "StartBinlogArchive", archive_id = %request.get_ref().archive_id))]
    async fn start_binlog_archive(
        &self,
        request: Request<pb::StartBinlogArchiveRequest>,
    ) -> Result<Response<pb::BinlogArchiveStatus>, Status> {
        self.archives
            .start(request.into_inner())
            .await
            .map(Response::new)
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "StopBinlogArchive", archive_id = %request.get_ref().archive_id))]
    async fn stop_binlog_archive(
        &self,
        request: Request<pb::StopBinlogArchiveRequest>,
    ) -> Result<Response<pb::BinlogArchiveStatus>, Status> {
        let id = request.into_inner().archive_id;
        self.archives.stop(&id).await.map(Response::new)
    }

    async fn get_binlog_archive(
        &self,
        request: Request<pb::GetBinlogArchiveRequest>,
    ) -> Result<Response<pb::BinlogArchiveStatus>, Status> {
        let id = request.into_inner().archive_id;
        self.archives.get(&id).await.map(Response::new)
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "PruneBinlogArchive"))]
    async fn prune_binlog_archive(
        &self,
        request: Request<pb::PruneBinlogArchiveRequest>,
    ) -> Result<Response<pb::PruneBinlogArchiveResponse>, Status> {
        self.archives
            .prune(request.into_inner())
            .await
            .map(Response::new)
    }

    #[tracing::instrument(name = "rpc", skip_all, fields(method = "CancelOperation", operation_id = %request.get_ref().operation_id))]
    async fn cancel_operation(
        &self,
        request: Request<pb::CancelOperationRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        let id = request.into_inner().operation_id;
        let record = self.ops.cancel(&id).ok_or_else(|| not_found(&id))?;
        Ok(Response::new(operation(record)))
    }
}

impl AgentService {
    fn swap_state(&self) -> Result<pb::SwapState, Status> {
        swap::state(&self.config.state_dir)
            .map(swap_state)
            .map_err(|e| swap_status(&e))
    }
}

fn swap_state(state: swap::SwapState) -> pb::SwapState {
    pb::SwapState {
        armed_operation_id: state.armed_operation_id.unwrap_or_default(),
        last_swap: state.last.map(|done| pb::SwapRecord {
            operation_id: done.operation_id,
            completed_at: Some(timestamp(done.completed_at)),
            previous_datadir: done
                .previous_datadir
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            gtid_executed: done.gtid_executed,
            kind: done.kind.as_str().to_owned(),
        }),
    }
}

fn swap_status(e: &swap::Error) -> Status {
    match e {
        swap::Error::File(_) => {
            tracing::error!(error = %e, "cannot read or write the swap state");
            Status::internal(format!("{e}; check the agent's volume"))
        }
        _ => Status::failed_precondition(e.to_string()),
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Running => "running",
        State::Succeeded => "succeeded",
        State::Failed => "failed",
        State::Cancelled => "cancelled",
    }
}

fn started(result: Result<Started, StartError>) -> Result<Response<pb::Operation>, Status> {
    match result {
        Ok(Started::New(record)) => {
            tracing::info!(kind = record.kind.as_str(), repository = %record.repository_url, backup_name = %record.backup_name, "operation started");
            Ok(Response::new(operation(record)))
        }
        Ok(Started::Existing(record)) => Ok(Response::new(operation(record))),
        Err(e) => Err(start_status(e)),
    }
}

fn start_status(e: StartError) -> Status {
    let message = e.to_string();
    match e {
        StartError::WrongKind { .. } => Status::already_exists(message),
        StartError::Busy { running, .. } => {
            let mut status = Status::failed_precondition(message);
            if let Ok(value) = MetadataValue::try_from(running.as_str()) {
                status
                    .metadata_mut()
                    .insert(pb::RUNNING_OPERATION_TRAILER, value);
            }
            status
        }
        StartError::ShuttingDown => Status::unavailable(message),
        StartError::State(_) => {
            tracing::error!(error = %message, "cannot start an operation");
            Status::internal(message)
        }
    }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!(
        "no operation has id {id:?} on this agent; start it first"
    ))
}

fn mysql_status(e: &mysql::Error) -> Status {
    let (code, _) = jobs::mysql_code(e);
    let advice = match code {
        tonic::Code::Unavailable => "; check that mysqld runs and accepts the agent's credentials",
        _ => "",
    };
    Status::new(code, format!("{e}{advice}"))
}

fn backup_type(incremental: bool) -> pb::BackupType {
    if incremental {
        pb::BackupType::Incremental
    } else {
        pb::BackupType::Full
    }
}

fn chain(links: Vec<ChainLink>) -> Vec<pb::ChainLink> {
    links
        .into_iter()
        .map(|l| pb::ChainLink {
            backup_name: l.backup_name,
            backup_type: backup_type(l.incremental) as i32,
            from_lsn: l.from_lsn,
            to_lsn: l.to_lsn,
            last_lsn: l.last_lsn,
            gtid_executed: l.gtid_executed,
        })
        .collect()
}

/// A record as the API shows it.
pub fn operation(record: Record) -> pb::Operation {
    let result = record.result.map(|outcome| match outcome {
        Outcome::Backup(b) => pb::operation::Result::Backup(pb::BackupResult {
            location: b.location,
            backup_name: b.backup_name,
            server_version: b.server_version,
            server_uuid: b.server_uuid,
            page_size: b.page_size,
            start_checkpoint_lsn: b.start_checkpoint_lsn,
            to_lsn: b.to_lsn,
            last_lsn: b.last_lsn,
            binlog_file: b.binlog_file,
            binlog_position: b.binlog_position,
            gtid_executed: b.gtid_executed,
            bytes: b.bytes,
            files: b.files,
            lock_seconds: b.lock_seconds,
            backup_type: backup_type(b.incremental) as i32,
            from_lsn: b.from_lsn,
            chain: chain(b.chain),
            changed_pages: match b.changed_pages {
                None => pb::ChangedPages::Unspecified,
                Some(ChangedPages::PageTracking) => pb::ChangedPages::PageTracking,
                Some(ChangedPages::FullScan) => pb::ChangedPages::FullScan,
            } as i32,
            page_tracking_lsn: b.page_tracking_lsn.unwrap_or(0),
        }),
        Outcome::StageRestore(s) => pb::operation::Result::StageRestore(pb::StageRestoreResult {
            prepared_dir: s.prepared_dir.display().to_string(),
            backup_location: s.backup_location,
            server_version: s.server_version,
            last_lsn: s.last_lsn,
            binlog_file: s.binlog_file,
            binlog_position: s.binlog_position,
            backup_gtid_executed: s.replayed.as_ref().map_or_else(
                || s.gtid_executed.clone(),
                |r| r.backup_gtid_executed.clone(),
            ),
            transactions_replayed: s.replayed.as_ref().map_or(0, |r| r.transactions),
            gtid_executed: s.gtid_executed,
            backup_type: backup_type(s.chain.len() > 1) as i32,
            chain: chain(s.chain),
        }),
    });
    pb::Operation {
        operation_id: record.id,
        kind: match record.kind {
            Kind::Backup => pb::OperationKind::Backup,
            Kind::StageRestore => pb::OperationKind::StageRestore,
        } as i32,
        state: match record.state {
            State::Running => pb::OperationState::Running,
            State::Succeeded => pb::OperationState::Succeeded,
            State::Failed => pb::OperationState::Failed,
            State::Cancelled => pb::OperationState::Cancelled,
        } as i32,
        progress: Some(progress(&record.progress)),
        cancel_requested: record.cancel_requested,
        created_at: Some(timestamp(record.created_at)),
        finished_at: record.finished_at.map(timestamp),
        error: record.error.map(|f| pb::OperationError {
            code: f.code,
            reason: f.reason,
            message: f.message,
        }),
        repository_url: record.repository_url,
        backup_name: record.backup_name,
        result,
    }
}

fn progress(p: &ProgressRecord) -> pb::Progress {
    let phase = match p.phase {
        None => pb::Phase::Unspecified,
        Some(Phase::Connecting) => pb::Phase::Connecting,
        Some(Phase::CopyingTablespaces) => pb::Phase::CopyingTablespaces,
        Some(Phase::ConsistentPoint) => pb::Phase::ConsistentPoint,
        Some(Phase::FinishingRedo) => pb::Phase::FinishingRedo,
        Some(Phase::WritingMetadata) => pb::Phase::WritingMetadata,
        Some(Phase::Fetching) => pb::Phase::Fetching,
        Some(Phase::Verifying) => pb::Phase::Verifying,
        Some(Phase::ApplyingLog) => pb::Phase::ApplyingLog,
        Some(Phase::Done) => pb::Phase::Done,
    };
    pb::Progress {
        phase: phase as i32,
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        files_done: p.files_done,
        files_total: p.files_total,
        redo_start_lsn: p.redo_start_lsn,
        redo_copied_lsn: p.redo_copied_lsn,
        pages_reread: p.pages_reread,
    }
}

pub(super) fn timestamp(at: SystemTime) -> Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}
