//! The operator's side of the agent's gRPC API, behind a small trait so
//! reconcile logic runs against [`fake::FakeAgent`] in tests and against
//! [`TonicAgent`] (gRPC + mTLS) in a cluster.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use innoxide_proto::agent::v1 as pb;
use innoxide_proto::agent::v1::agent_client::AgentClient;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use jiff::Timestamp;

use crate::target::AgentTarget;
use crate::wiring::pki::{Ca, PkiError, RENEW_BEFORE};

/// What can go wrong talking to an agent, sorted by what the caller does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// Cannot reach the agent, or it is busy restarting: try again.
    #[error("cannot reach the agent in pod {pod}: {message}")]
    Unreachable { pod: String, message: String },
    /// Another backup runs on this server: wait for it.
    #[error("another backup ({running}) is running on pod {pod}; this one starts after it")]
    Busy { pod: String, running: String },
    /// The agent has no operation with this id.
    #[error("the agent in pod {pod} has no record of operation {id}")]
    NotFound { pod: String, id: String },
    /// The agent refused the request for good: retrying will not help.
    #[error("the agent in pod {pod} refused the request ({code}): {message}")]
    Refused {
        pod: String,
        code: String,
        message: String,
    },
}

impl AgentError {
    pub fn from_status(pod: &str, status: &tonic::Status, id: &str) -> AgentError {
        let pod = pod.to_owned();
        let message = status.message().to_owned();
        match status.code() {
            Code::NotFound => AgentError::NotFound { pod, id: id.into() },
            Code::FailedPrecondition => {
                match status
                    .metadata()
                    .get(pb::RUNNING_OPERATION_TRAILER)
                    .and_then(|v| v.to_str().ok())
                {
                    Some(running) => AgentError::Busy {
                        pod,
                        running: running.into(),
                    },
                    None => AgentError::Refused {
                        pod,
                        code: "FailedPrecondition".into(),
                        message,
                    },
                }
            }
            code @ (Code::InvalidArgument
            | Code::PermissionDenied
            | Code::AlreadyExists
            | Code::Unimplemented
            | Code::Unauthenticated) => AgentError::Refused {
                pod,
                code: format!("{code:?}"),
                message,
            },
            _ => AgentError::Unreachable { pod, message },
        }
    }

    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            AgentError::Unreachable { .. } => "unreachable",
            AgentError::Busy { .. } => "busy",
            AgentError::NotFound { .. } => "not_found",
            AgentError::Refused { .. } => "refused",
        }
    }
}

/// The calls a MySQLBackup and a MySQLRestore need.
pub trait AgentApi: Send + Sync + 'static {
    /// Starts the backup, or returns the operation that has this id.
    fn start_backup(
        &self,
        target: &AgentTarget,
        request: pb::StartBackupRequest,
    ) -> impl Future<Output = Result<pb::Operation, AgentError>> + Send;

    fn get_operation(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::Operation, AgentError>> + Send;

    fn cancel(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::Operation, AgentError>> + Send;

    /// Stages a restore beside the live server, or returns the operation
    /// that has this id.
    fn stage_restore(
        &self,
        target: &AgentTarget,
        request: pb::StageRestoreRequest,
    ) -> impl Future<Output = Result<pb::Operation, AgentError>> + Send;

    /// Arms the datadir swap of a succeeded staged restore (a no-op when
    /// it is armed already).
    fn arm_swap(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::SwapState, AgentError>> + Send;

    /// Withdraws an armed swap that has not begun.
    fn disarm_swap(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::SwapState, AgentError>> + Send;

    /// Removes what a restore left on the pod's volume (its staging folder,
    /// `reverted/<id>`, and `previous/<id>` unless `keep_previous`).
    fn discard_restore(
        &self,
        target: &AgentTarget,
        id: &str,
        keep_previous: bool,
    ) -> impl Future<Output = Result<pb::DiscardRestoreResponse, AgentError>> + Send;

    /// What the agent knows about its server, with the agent's own MySQL
    /// credentials.
    fn server_info(
        &self,
        target: &AgentTarget,
    ) -> impl Future<Output = Result<pb::ServerInfoResponse, AgentError>> + Send;

    /// Starts archiving the server's binlogs (or returns the running
    /// archive with these settings).
    fn start_binlog_archive(
        &self,
        target: &AgentTarget,
        request: pb::StartBinlogArchiveRequest,
    ) -> impl Future<Output = Result<pb::BinlogArchiveStatus, AgentError>> + Send;

    fn stop_binlog_archive(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::BinlogArchiveStatus, AgentError>> + Send;

    /// The archiver's state on this agent; NotFound if it never ran here.
    fn get_binlog_archive(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::BinlogArchiveStatus, AgentError>> + Send;

    /// Deletes the archived binlogs the oldest kept backup covers.
    fn prune_binlog_archive(
        &self,
        target: &AgentTarget,
        request: pb::PruneBinlogArchiveRequest,
    ) -> impl Future<Output = Result<pb::PruneBinlogArchiveResponse, AgentError>> + Send;
}

/// The real agent, over gRPC with mTLS: the operator presents its client
/// certificate and accepts only an agent certificate from its own CA that
/// names the pod's StatefulSet.
pub struct TonicAgent {
    ca: Ca,
    ca_certificate: Certificate,
    /// The operator's client certificate, re-issued before it expires.
    identity: Mutex<(Identity, Timestamp)>,
    channels: Mutex<HashMap<(String, u16, String), Channel>>,
}

/// How long one call may take; a start returns at once (the backup runs on
/// in the agent), so this is generous.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl TonicAgent {
    /// An agent client with a client certificate from the operator's CA.
    pub fn new(ca: Ca) -> Result<TonicAgent, PkiError> {
        let issued = ca.issue_client(Timestamp::now())?;
        Ok(TonicAgent {
            ca_certificate: Certificate::from_pem(&ca.cert_pem),
            identity: Mutex::new((
                Identity::from_pem(&issued.cert_pem, &issued.key_pem),
                issued.not_after,
            )),
            ca,
            channels: Mutex::new(HashMap::new()),
        })
    }

    /// The client identity, re-issued when it nears its end (connections
    /// made with the old one are dropped then).
    fn identity(&self) -> Identity {
        let mut identity = self.identity.lock().unwrap_or_else(|p| p.into_inner());
        let renew_at = identity
            .1
            .checked_sub(jiff::SignedDuration::try_from(RENEW_BEFORE).unwrap_or_default())
            .unwrap_or(identity.1);
        if Timestamp::now() >= renew_at {
            match self.ca.issue_client(Timestamp::now()) {
                Ok(issued) => {
                    *identity = (
                        Identity::from_pem(&issued.cert_pem, &issued.key_pem),
                        issued.not_after,
                    );
                    self.channels
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clear();
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot renew the operator's client certificate")
                }
            }
        }
        identity.0.clone()
    }

    fn client(&self, target: &AgentTarget) -> Result<AgentClient<Channel>, AgentError> {
        let unreachable = |message: String| AgentError::Unreachable {
            pod: target.pod.clone(),
            message,
        };
        let sts = target.stateful_set.as_deref().ok_or_else(|| AgentError::Refused {
            pod: target.pod.clone(),
            code: "NoStatefulSet".into(),
            message: "the pod belongs to no StatefulSet: the operator adds agents to StatefulSets only".into(),
        })?;
        let server_name = crate::wiring::agent_server_name(sts, &target.namespace);
        let key = (target.ip.clone(), target.port, server_name.clone());
        let identity = self.identity();
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(&key) {
            return Ok(AgentClient::new(channel.clone()));
        }
        let host = if target.ip.contains(':') {
            format!("[{}]", target.ip)
        } else {
            target.ip.clone()
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(self.ca_certificate.clone())
            .identity(identity)
            .domain_name(server_name);
        let channel = Endpoint::from_shared(format!("https://{host}:{}", target.port))
            .map_err(|e| unreachable(e.to_string()))?
            .tls_config(tls)
            .map_err(|e| unreachable(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect_lazy();
        // Pod IPs are reused by other pods: keep the cache small.
        if channels.len() > 256 {
            channels.clear();
        }
        channels.insert(key, channel.clone());
        Ok(AgentClient::new(channel))
    }

    fn forget(&self, target: &AgentTarget) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.retain(|(ip, port, _), _| !(ip == &target.ip && *port == target.port));
    }

    fn fail(&self, target: &AgentTarget, status: &tonic::Status, id: &str) -> AgentError {
        let error = AgentError::from_status(&target.pod, status, id);
        if matches!(error, AgentError::Unreachable { .. }) {
            self.forget(target);
        }
        error
    }
}

impl AgentApi for TonicAgent {
    async fn start_backup(
        &self,
        target: &AgentTarget,
        request: pb::StartBackupRequest,
    ) -> Result<pb::Operation, AgentError> {
        let id = request.operation_id.clone();
        let mut client = self.client(target)?;
        client
            .start_backup(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, &id))
    }

    async fn get_operation(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> Result<pb::Operation, AgentError> {
        let mut client = self.client(target)?;
        client
            .get_operation(pb::GetOperationRequest {
                operation_id: id.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, id))
    }

    async fn cancel(&self, target: &AgentTarget, id: &str) -> Result<pb::Operation, AgentError> {
        let mut client = self.client(target)?;
        client
            .cancel_operation(pb::CancelOperationRequest {
                operation_id: id.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, id))
    }

    async fn stage_restore(
        &self,
        target: &AgentTarget,
        request: pb::StageRestoreRequest,
    ) -> Result<pb::Operation, AgentError> {
        let id = request.operation_id.clone();
        let mut client = self.client(target)?;
        client
            .stage_restore(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, &id))
    }

    async fn arm_swap(&self, target: &AgentTarget, id: &str) -> Result<pb::SwapState, AgentError> {
        let mut client = self.client(target)?;
        client
            .arm_swap(pb::ArmSwapRequest {
                operation_id: id.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, id))
    }

    async fn disarm_swap(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> Result<pb::SwapState, AgentError> {
        let mut client = self.client(target)?;
        client
            .disarm_swap(pb::DisarmSwapRequest {
                operation_id: id.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, id))
    }

    async fn discard_restore(
        &self,
        target: &AgentTarget,
        id: &str,
        keep_previous: bool,
    ) -> Result<pb::DiscardRestoreResponse, AgentError> {
        let mut client = self.client(target)?;
        client
            .discard_restore(pb::DiscardRestoreRequest {
                operation_id: id.to_owned(),
                keep_previous_datadir: keep_previous,
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, id))
    }

    async fn server_info(
        &self,
        target: &AgentTarget,
    ) -> Result<pb::ServerInfoResponse, AgentError> {
        let mut client = self.client(target)?;
        client
            .server_info(pb::ServerInfoRequest { mysql: None })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, ""))
    }

    async fn start_binlog_archive(
        &self,
        target: &AgentTarget,
        request: pb::StartBinlogArchiveRequest,
    ) -> Result<pb::BinlogArchiveStatus, AgentError> {
        let id = request.archive_id.clone();
        let mut client = self.client(target)?;
        client
            .start_binlog_archive(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, &id))
    }

    async fn stop_binlog_archive(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> Result<pb::BinlogArchiveStatus, AgentError> {
        let mut client = self.client(target)?;
        client
            .stop_binlog_archive(pb::StopBinlogArchiveRequest {
                archive_id: id.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, id))
    }

    async fn get_binlog_archive(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> Result<pb::BinlogArchiveStatus, AgentError> {
        let mut client = self.client(target)?;
        client
            .get_binlog_archive(pb::GetBinlogArchiveRequest {
                archive_id: id.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, id))
    }

    async fn prune_binlog_archive(
        &self,
        target: &AgentTarget,
        request: pb::PruneBinlogArchiveRequest,
    ) -> Result<pb::PruneBinlogArchiveResponse, AgentError> {
        let mut client = self.client(target)?;
        client
            .prune_binlog_archive(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(target, &s, ""))
    }
}

impl<A: AgentApi> AgentApi for Arc<A> {
    fn start_backup(
        &self,
        target: &AgentTarget,
        request: pb::StartBackupRequest,
    ) -> impl Future<Output = Result<pb::Operation, AgentError>> + Send {
        (**self).start_backup(target, request)
    }

    fn get_operation(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::Operation, AgentError>> + Send {
        (**self).get_operation(target, id)
    }

    fn cancel(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::Operation, AgentError>> + Send {
        (**self).cancel(target, id)
    }

    fn stage_restore(
        &self,
        target: &AgentTarget,
        request: pb::StageRestoreRequest,
    ) -> impl Future<Output = Result<pb::Operation, AgentError>> + Send {
        (**self).stage_restore(target, request)
    }

    fn arm_swap(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::SwapState, AgentError>> + Send {
        (**self).arm_swap(target, id)
    }

    fn disarm_swap(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::SwapState, AgentError>> + Send {
        (**self).disarm_swap(target, id)
    }

    fn discard_restore(
        &self,
        target: &AgentTarget,
        id: &str,
        keep_previous: bool,
    ) -> impl Future<Output = Result<pb::DiscardRestoreResponse, AgentError>> + Send {
        (**self).discard_restore(target, id, keep_previous)
    }

    fn server_info(
        &self,
        target: &AgentTarget,
    ) -> impl Future<Output = Result<pb::ServerInfoResponse, AgentError>> + Send {
        (**self).server_info(target)
    }

    fn start_binlog_archive(
        &self,
        target: &AgentTarget,
        request: pb::StartBinlogArchiveRequest,
    ) -> impl Future<Output = Result<pb::BinlogArchiveStatus, AgentError>> + Send {
        (**self).start_binlog_archive(target, request)
    }

    fn stop_binlog_archive(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::BinlogArchiveStatus, AgentError>> + Send {
        (**self).stop_binlog_archive(target, id)
    }

    fn get_binlog_archive(
        &self,
        target: &AgentTarget,
        id: &str,
    ) -> impl Future<Output = Result<pb::BinlogArchiveStatus, AgentError>> + Send {
        (**self).get_binlog_archive(target, id)
    }

    fn prune_binlog_archive(
        &self,
        target: &AgentTarget,
        request: pb::PruneBinlogArchiveRequest,
    ) -> impl Future<Output = Result<pb::PruneBinlogArchiveResponse, AgentError>> + Send {
        (**self).prune_binlog_archive(target, request)
    }
}

pub mod fake {
    //! An in-memory agent with the real one's id rules: a start with a known
    //! id returns that operation, one backup at a time per pod, and tests
    //! move operations along by hand.

    use super::*;

    #[derive(Debug, Default)]
    struct State {
        operations: HashMap<String, (String, pb::Operation)>,
        requests: Vec<pb::StartBackupRequest>,
        stage_requests: Vec<pb::StageRestoreRequest>,
        cancelled: Vec<String>,
        /// What ServerInfo answers, per pod.
        servers: HashMap<String, pb::ServerInfoResponse>,
        /// Every ArmSwap/DisarmSwap/DiscardRestore call, as `arm <id>` /
        /// `disarm <id>` / `discard <id>[ keeping previous]`.
        swap_calls: Vec<String>,
        /// Binlog archives per pod, by archive id.
        archives: HashMap<(String, String), pb::BinlogArchiveStatus>,
        /// Every archive call, as `start <pod>`, `stop <pod>`,
        /// `prune <pod> <covered_by>`.
        archive_calls: Vec<String>,
        archive_requests: Vec<pb::StartBinlogArchiveRequest>,
        fail_next: Option<AgentError>,
    }

    impl State {
        /// Records a new operation on `target`'s pod and returns it.
        fn start(&mut self, target: &AgentTarget, op: pb::Operation) -> pb::Operation {
            self.operations
                .insert(op.operation_id.clone(), (target.pod.clone(), op.clone()));
            op
        }
    }

    /// An operation as the agent answers right after starting it.
    fn started(
        id: &str,
        kind: pb::OperationKind,
        phase: pb::Phase,
        repository: Option<&pb::Repository>,
        backup_name: &str,
    ) -> pb::Operation {
        pb::Operation {
            operation_id: id.to_owned(),
            kind: kind as i32,
            state: pb::OperationState::Running as i32,
            progress: Some(pb::Progress {
                phase: phase as i32,
                ..pb::Progress::default()
            }),
            repository_url: repository.map(|r| r.url.clone()).unwrap_or_default(),
            backup_name: backup_name.to_owned(),
            ..pb::Operation::default()
        }
    }

    #[derive(Debug, Default, Clone)]
    pub struct FakeAgent(Arc<Mutex<State>>);

    impl FakeAgent {
        pub fn new() -> FakeAgent {
            FakeAgent::default()
        }

        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Changes an operation (progress, a result, a failure).
        pub fn update(&self, id: &str, change: impl FnOnce(&mut pb::Operation)) {
            if let Some((_, op)) = self.state().operations.get_mut(id) {
                change(op);
            }
        }

        pub fn operation(&self, id: &str) -> Option<pb::Operation> {
            self.state().operations.get(id).map(|(_, op)| op.clone())
        }

        /// Every StartBackup request seen, in order.
        pub fn requests(&self) -> Vec<pb::StartBackupRequest> {
            self.state().requests.clone()
        }

        pub fn cancelled(&self) -> Vec<String> {
            self.state().cancelled.clone()
        }

        /// The next call fails with this error.
        pub fn fail_next(&self, error: AgentError) {
            self.state().fail_next = Some(error);
        }

        /// Every StageRestore request seen, in order.
        pub fn stage_requests(&self) -> Vec<pb::StageRestoreRequest> {
            self.state().stage_requests.clone()
        }

        /// Every ArmSwap/DisarmSwap/DiscardRestore call, as `arm <id>` /
        /// `disarm <id>` / `discard <id>[ keeping previous]`.
        pub fn swap_calls(&self) -> Vec<String> {
            self.state().swap_calls.clone()
        }

        /// Changes what ServerInfo answers for this pod.
        pub fn server(&self, pod: &str, change: impl FnOnce(&mut pb::ServerInfoResponse)) {
            change(self.state().servers.entry(pod.to_owned()).or_default());
        }

        pub fn server_state(&self, pod: &str) -> pb::ServerInfoResponse {
            self.state().servers.get(pod).cloned().unwrap_or_default()
        }

        /// Every archive call, as `start <pod>`, `stop <pod>`,
        /// `prune <pod> <covered_by>`.
        pub fn archive_calls(&self) -> Vec<String> {
            self.state().archive_calls.clone()
        }

        pub fn archive_requests(&self) -> Vec<pb::StartBinlogArchiveRequest> {
            self.state().archive_requests.clone()
        }

        /// Changes what the archiver on this pod reports.
        pub fn archive(
            &self,
            pod: &str,
            id: &str,
            change: impl FnOnce(&mut pb::BinlogArchiveStatus),
        ) {
            let mut state = self.state();
            let status = state
                .archives
                .entry((pod.to_owned(), id.to_owned()))
                .or_insert_with(|| pb::BinlogArchiveStatus {
                    archive_id: id.to_owned(),
                    ..pb::BinlogArchiveStatus::default()
                });
            change(status);
        }

        /// What the init container does at the pod's next start: the armed
        /// swap is done, and the server runs on the restored data.
        pub fn perform_swap(&self, pod: &str) {
            let mut state = self.state();
            let staged: HashMap<String, String> = state
                .operations
                .iter()
                .filter_map(|(id, (_, op))| match &op.result {
                    Some(pb::operation::Result::StageRestore(r)) => {
                        Some((id.clone(), r.gtid_executed.clone()))
                    }
                    _ => None,
                })
                .collect();
            let server = state.servers.entry(pod.to_owned()).or_default();
            let swap = server.swap.get_or_insert_with(pb::SwapState::default);
            let id = std::mem::take(&mut swap.armed_operation_id);
            if id.is_empty() {
                return;
            }
            let gtid = staged.get(&id).cloned().unwrap_or_default();
            swap.last_swap = Some(pb::SwapRecord {
                operation_id: id.clone(),
                completed_at: None,
                previous_datadir: format!("/var/lib/mysql/.innoxide-agent/previous/{id}"),
                gtid_executed: gtid.clone(),
                kind: "swap".into(),
            });
            server.gtid_executed = gtid;
        }
    }

    impl AgentApi for FakeAgent {
        async fn start_backup(
            &self,
            target: &AgentTarget,
            request: pb::StartBackupRequest,
        ) -> Result<pb::Operation, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            state.requests.push(request.clone());
            if let Some((_, op)) = state.operations.get(&request.operation_id) {
                return Ok(op.clone());
            }
            if let Some((id, _)) = state.operations.iter().find(|(_, (pod, op))| {
                pod == &target.pod && op.state == pb::OperationState::Running as i32
            }) {
                return Err(AgentError::Busy {
                    pod: target.pod.clone(),
                    running: id.clone(),
                });
            }
            Ok(state.start(
                target,
                started(
                    &request.operation_id,
                    pb::OperationKind::Backup,
                    pb::Phase::Connecting,
                    request.repository.as_ref(),
                    &request.backup_name,
                ),
            ))
        }

        async fn get_operation(
            &self,
            target: &AgentTarget,
            id: &str,
        ) -> Result<pb::Operation, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            state
                .operations
                .get(id)
                .map(|(_, op)| op.clone())
                .ok_or_else(|| AgentError::NotFound {
                    pod: target.pod.clone(),
                    id: id.into(),
                })
        }

        async fn cancel(
            &self,
            target: &AgentTarget,
            id: &str,
        ) -> Result<pb::Operation, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            state.cancelled.push(id.to_owned());
            let Some((_, op)) = state.operations.get_mut(id) else {
                return Err(AgentError::NotFound {
                    pod: target.pod.clone(),
                    id: id.into(),
                });
            };
            if op.state == pb::OperationState::Running as i32 {
                op.cancel_requested = true;
                op.state = pb::OperationState::Cancelled as i32;
            }
            Ok(op.clone())
        }

        async fn stage_restore(
            &self,
            target: &AgentTarget,
            request: pb::StageRestoreRequest,
        ) -> Result<pb::Operation, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            state.stage_requests.push(request.clone());
            if let Some((_, op)) = state.operations.get(&request.operation_id) {
                return Ok(op.clone());
            }
            Ok(state.start(
                target,
                started(
                    &request.operation_id,
                    pb::OperationKind::StageRestore,
                    pb::Phase::Fetching,
                    request.repository.as_ref(),
                    &request.backup_name,
                ),
            ))
        }

        async fn arm_swap(
            &self,
            target: &AgentTarget,
            id: &str,
        ) -> Result<pb::SwapState, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            state.swap_calls.push(format!("arm {id}"));
            let refused = |message: &str| AgentError::Refused {
                pod: target.pod.clone(),
                code: "FailedPrecondition".into(),
                message: message.into(),
            };
            let staged = state.operations.get(id).is_some_and(|(_, op)| {
                op.kind == pb::OperationKind::StageRestore as i32
                    && op.state == pb::OperationState::Succeeded as i32
            });
            if !staged {
                return Err(refused("not a succeeded StageRestore"));
            }
            let server = state.servers.entry(target.pod.clone()).or_default();
            let swap = server.swap.get_or_insert_with(pb::SwapState::default);
            if !swap.armed_operation_id.is_empty() && swap.armed_operation_id != id {
                return Err(refused("another swap is armed"));
            }
            swap.armed_operation_id = id.to_owned();
            Ok(swap.clone())
        }

        async fn disarm_swap(
            &self,
            target: &AgentTarget,
            id: &str,
        ) -> Result<pb::SwapState, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            state.swap_calls.push(format!("disarm {id}"));
            let server = state.servers.entry(target.pod.clone()).or_default();
            let swap = server.swap.get_or_insert_with(pb::SwapState::default);
            if swap.armed_operation_id == id {
                swap.armed_operation_id.clear();
            }
            Ok(swap.clone())
        }

        async fn discard_restore(
            &self,
            _target: &AgentTarget,
            id: &str,
            keep_previous: bool,
        ) -> Result<pb::DiscardRestoreResponse, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            state.swap_calls.push(if keep_previous {
                format!("discard {id} keeping previous")
            } else {
                format!("discard {id}")
            });
            Ok(pb::DiscardRestoreResponse::default())
        }

        async fn server_info(
            &self,
            target: &AgentTarget,
        ) -> Result<pb::ServerInfoResponse, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            Ok(state.servers.get(&target.pod).cloned().unwrap_or_default())
        }

        async fn start_binlog_archive(
            &self,
            target: &AgentTarget,
            request: pb::StartBinlogArchiveRequest,
        ) -> Result<pb::BinlogArchiveStatus, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            state.archive_calls.push(format!("start {}", target.pod));
            state.archive_requests.push(request.clone());
            let status = state
                .archives
                .entry((target.pod.clone(), request.archive_id.clone()))
                .or_default();
            status.archive_id = request.archive_id.clone();
            status.state = pb::ArchiveState::Running as i32;
            status.repository_url = request
                .repository
                .as_ref()
                .map(|r| r.url.clone())
                .unwrap_or_default();
            Ok(status.clone())
        }

        async fn stop_binlog_archive(
            &self,
            target: &AgentTarget,
            id: &str,
        ) -> Result<pb::BinlogArchiveStatus, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            state.archive_calls.push(format!("stop {}", target.pod));
            match state.archives.get_mut(&(target.pod.clone(), id.to_owned())) {
                Some(status) => {
                    status.state = pb::ArchiveState::Stopped as i32;
                    Ok(status.clone())
                }
                None => Err(AgentError::NotFound {
                    pod: target.pod.clone(),
                    id: id.into(),
                }),
            }
        }

        async fn get_binlog_archive(
            &self,
            target: &AgentTarget,
            id: &str,
        ) -> Result<pb::BinlogArchiveStatus, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            state
                .archives
                .get(&(target.pod.clone(), id.to_owned()))
                .cloned()
                .ok_or_else(|| AgentError::NotFound {
                    pod: target.pod.clone(),
                    id: id.into(),
                })
        }

        async fn prune_binlog_archive(
            &self,
            target: &AgentTarget,
            request: pb::PruneBinlogArchiveRequest,
        ) -> Result<pb::PruneBinlogArchiveResponse, AgentError> {
            let mut state = self.state();
            if let Some(e) = state.fail_next.take() {
                return Err(e);
            }
            state
                .archive_calls
                .push(format!("prune {} {}", target.pod, request.covered_by));
            Ok(pb::PruneBinlogArchiveResponse::default())
        }
    }
}
