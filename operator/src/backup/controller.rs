//! The MySQLBackup reconcile, as a pipeline:
//!
//! 1. dereference (I/O): the MySQL's pods, the Secrets the spec names;
//! 2. an Incremental's base chosen once and written to its status before
//!    anything starts (pure: [`super::base`]); select the pod (the base's,
//!    for an Incremental) and build the agent request (pure:
//!    [`crate::target`], [`super::request`]);
//! 3. apply: start the operation with the resource's UID (the agent
//!    returns the existing one on a repeat), or poll it once started;
//! 4. status (pure: [`super::status`]) written by server-side apply, an
//!    Event for every phase change.
//!
//! Deletion goes through the finalizer: cancel what may run, then with
//! `deletionPolicy: Delete` delete the data with the repository code
//! ([`super::cleanup`]).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use tracing::instrument;

use super::base;
use super::cleanup::{self, AgentAnswer, Step};
use super::request::{self, Credentials};
use super::status::{Observed, next_status, past_deadline, until_start_deadline};
use crate::agent::{AgentApi, AgentError};
use crate::api::{BACKUP_FINALIZER, BackupPhase, MySQLBackup, MysqlRef};
use crate::conditions;
use crate::context::{Context, Error, Result, apply_status};
use crate::target::{self, AgentTarget, Rule, SelectError};

pub const CONTROLLER: &str = "mysqlbackup";
/// How often a running backup is polled.
const POLL: Duration = Duration::from_secs(5);
/// How soon a backup that waits (for a pod, a Secret, another backup) is
/// looked at again.
const WAIT: Duration = Duration::from_secs(15);

/// The reconcile entry point, over a guard so one malformed object cannot
/// stall the controller.
#[instrument(skip_all, fields(namespace = %guard.namespace().unwrap_or_default(), name = %guard.name_any(), uid))]
pub async fn reconcile<A: AgentApi>(
    guard: Arc<DeserializeGuard<MySQLBackup>>,
    ctx: Arc<Context<A>>,
) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let backup = match &guard.0 {
        Ok(backup) => backup.clone(),
        Err(invalid) => {
            tracing::warn!(error = %invalid.error, "MySQLBackup cannot be read; waiting for a change");
            return Ok(Action::await_change());
        }
    };
    tracing::Span::current().record("uid", backup.uid().unwrap_or_default());
    let ns = backup.namespace().unwrap_or_default();
    let api: Api<MySQLBackup> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, BACKUP_FINALIZER, Arc::new(backup), |event| async {
        match event {
            Finalizer::Apply(backup) => apply(&backup, &ctx).await,
            Finalizer::Cleanup(backup) => cleanup(&backup, &ctx).await,
        }
    })
    .await
    .map_err(Error::from)
}

async fn apply<A: AgentApi>(backup: &MySQLBackup, ctx: &Context<A>) -> Result<Action> {
    let status = backup.status.clone().unwrap_or_default();
    if backup.phase().is_terminal() && status.observed_generation == backup.metadata.generation {
        return Ok(Action::await_change());
    }
    let backup_name = status.backup_name.clone().unwrap_or_else(|| {
        request::backup_name_for(
            &backup.name_any(),
            backup.uid().as_deref().unwrap_or_default(),
        )
    });
    let location = backup.spec.storage.location_of(&backup_name);
    let now = ctx.clock.now();
    let observed = match choose_base(backup, ctx).await? {
        Some(Ok(chosen)) => {
            // Written before the start: the agent's operation, keyed by
            // the UID, must never be asked for with another base.
            let message = format!(
                "an incremental continuing MySQLBackup {} ({})",
                chosen.incremental.base_name, chosen.incremental.base_backup_name
            );
            let mut new_status = status.clone();
            new_status.phase = Some(BackupPhase::Pending);
            new_status.backup_name = Some(backup_name.clone());
            new_status.location = Some(location.clone());
            new_status.pod = new_status.pod.or(chosen.pod);
            new_status.incremental = Some(chosen.incremental);
            new_status.message = Some(message.clone());
            let api: Api<MySQLBackup> =
                Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
            apply_status(&api, backup, &new_status).await?;
            ctx.event(backup, false, "BaseChosen", "Backup", message)
                .await;
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
        Some(Err(observed)) => observed,
        None => observe(backup, &backup_name, ctx).await?,
    };
    let observed = past_deadline(backup, observed, now, ctx.settings.agent_lost_timeout);
    let (new_status, transition) = next_status(backup, &observed, &backup_name, &location, now);
    if backup.status.as_ref() != Some(&new_status) {
        let api: Api<MySQLBackup> =
            Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
        apply_status(&api, backup, &new_status).await?;
    }
    if let Some(t) = transition {
        tracing::info!(from = ?t.from, to = ?t.to, "{}", t.message);
        ctx.metrics
            .backup_transitions
            .get_or_create(&crate::metrics::PhaseLabels {
                phase: t.to.as_str(),
            })
            .inc();
        ctx.event(backup, t.warning, t.reason, "Backup", t.message)
            .await;
    }
    Ok(match new_status.phase.unwrap_or_default() {
        BackupPhase::Completed | BackupPhase::Failed => Action::await_change(),
        BackupPhase::Running => Action::requeue(POLL),
        // Looked at again by the start deadline at the latest.
        BackupPhase::Pending => Action::requeue(
            WAIT.min(until_start_deadline(backup, now) + Duration::from_millis(500)),
        ),
    })
}

/// An Incremental's base, when it is still to be chosen: the choice, or
/// why there is none (yet).
async fn choose_base<A: AgentApi>(
    backup: &MySQLBackup,
    ctx: &Context<A>,
) -> Result<Option<std::result::Result<base::Chosen, Observed>>> {
    if !base::needs_choice(backup) {
        return Ok(None);
    }
    let api: Api<MySQLBackup> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    let others = api.list(&ListParams::default()).await?.items;
    Ok(Some(base::choose(backup, &others)))
}

/// Dereference and talk to the agent: everything the status is made from.
async fn observe<A: AgentApi>(
    backup: &MySQLBackup,
    backup_name: &str,
    ctx: &Context<A>,
) -> Result<Observed> {
    let target = match find_target(backup, ctx).await? {
        Ok(target) => target,
        Err(e) => {
            return Ok(Observed::Waiting {
                reason: if e.is_transient() {
                    "PodNotReady"
                } else {
                    "NoPod"
                },
                message: e.to_string(),
            });
        }
    };
    let id = backup.uid().unwrap_or_default();
    let waiting = |reason, e: AgentError| Observed::Waiting {
        reason,
        message: e.to_string(),
    };
    let operation = |operation| Observed::Operation {
        pod: target.pod.clone(),
        operation: Box::new(operation),
    };
    if backup.phase() == BackupPhase::Running {
        return Ok(match ctx.agent.get_operation(&target, &id).await {
            Ok(op) => operation(op),
            Err(AgentError::NotFound { pod, .. }) => Observed::Failed {
                reason: "OperationLost",
                message: format!(
                    "the agent in pod {pod} has no record of this backup (was its data volume replaced?); create a new MySQLBackup"
                ),
            },
            Err(e) => waiting("AgentUnreachable", e),
        });
    }
    let credentials = match read_credentials(backup, ctx).await? {
        Ok(c) => c,
        Err(message) => {
            return Ok(Observed::Waiting {
                reason: "SecretMissing",
                message,
            });
        }
    };
    let base_backup_name = backup
        .status
        .as_ref()
        .and_then(|s| s.incremental.as_ref())
        .map(|i| i.base_backup_name.as_str());
    let request = match request::start_backup_request(
        &backup.spec,
        &id,
        backup_name,
        base_backup_name,
        &credentials,
    ) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Observed::Failed {
                reason: "InvalidSpec",
                message: e.0,
            });
        }
    };
    Ok(match ctx.agent.start_backup(&target, request).await {
        Ok(op) => operation(op),
        Err(e @ AgentError::Busy { .. }) => waiting("WaitingForOtherBackup", e),
        Err(e @ AgentError::Refused { .. }) => Observed::Failed {
            reason: "AgentRefused",
            message: e.to_string(),
        },
        Err(e) => waiting("AgentUnreachable", e),
    })
}

/// The pods of the MySQL, and the one to use (the pinned one once the
/// backup started). The outer error is the API's; the inner one says why
/// no pod can be used now.
async fn find_target<A: AgentApi>(
    backup: &MySQLBackup,
    ctx: &Context<A>,
) -> Result<Result<AgentTarget, SelectError>> {
    let ns = backup.namespace().unwrap_or_default();
    let (pods, what) = list_pods(&ctx.client, &ns, &backup.spec.mysql).await?;
    let refs: Vec<&Pod> = pods.iter().collect();
    let pinned = backup.status.as_ref().and_then(|s| s.pod.clone());
    let rule = match &pinned {
        Some(pod) => Rule::Pinned(pod),
        None => Rule::Source {
            source: backup.spec.source,
            pod: backup.spec.source_pod.as_deref(),
            role_label: &backup.spec.mysql.role_label,
        },
    };
    Ok(target::select(&rule, &refs, &what))
}

/// The pods a MySQL reference names, and how to name the MySQL in messages.
async fn list_pods(
    client: &kube::Client,
    ns: &str,
    mysql: &MysqlRef,
) -> Result<(Vec<Pod>, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    if let Some(name) = &mysql.stateful_set_name {
        let what = format!("StatefulSet {name}");
        let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
        let Some(sts) = sts.get_opt(name).await? else {
            return Ok((Vec::new(), format!("{what} (not found)")));
        };
        return Ok((stateful_set_pods(client, ns, &sts).await?, what));
    }
    let selector = mysql
        .pod_selector
        .as_ref()
        .map(selector_string)
        .unwrap_or_default();
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    Ok((listed, format!("pod selector {selector:?}")))
}

/// The pods a StatefulSet controls: listed by its selector, then only the
/// ones it owns (another workload may share the labels).
pub async fn stateful_set_pods(
    client: &kube::Client,
    ns: &str,
    sts: &StatefulSet,
) -> Result<Vec<Pod>> {
    let selector = sts
        .spec
        .as_ref()
        .map(|s| selector_string(&s.selector))
        .unwrap_or_default();
    let listed = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    Ok(target::owned_by(sts, &listed)
        .into_iter()
        .cloned()
        .collect())
}

/// A label selector as the API's query string.
pub fn selector_string(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({values})", e.key),
        });
    }
    parts.join(",")
}

/// The Secret values the spec names. The inner error is a message for a
/// Secret or key that is missing (the backup waits for it).
async fn read_credentials<A: AgentApi>(
    backup: &MySQLBackup,
    ctx: &Context<A>,
) -> Result<std::result::Result<Credentials, String>> {
    let spec = &backup.spec;
    crate::secrets::read_credentials(
        &ctx.client,
        &backup.namespace().unwrap_or_default(),
        &spec.storage,
        spec.encryption_key_secret_ref.as_ref(),
        spec.mysql_credentials.as_ref(),
    )
    .await
}

async fn cleanup<A: AgentApi>(backup: &MySQLBackup, ctx: &Context<A>) -> Result<Action> {
    let now = ctx.clock.now();
    let deleting_for = backup
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| now.duration_since(t.0).unsigned_abs())
        .unwrap_or_default();
    let id = backup.uid().unwrap_or_default();
    let answer = if cleanup::should_cancel(backup) {
        match find_target(backup, ctx).await? {
            Err(_) => AgentAnswer::PodGone,
            Ok(target) => match ctx.agent.cancel(&target, &id).await {
                Ok(op) if op.state == innoxide_proto::agent::v1::OperationState::Running as i32 => {
                    AgentAnswer::Running
                }
                Ok(_) => AgentAnswer::Ended,
                Err(AgentError::NotFound { .. }) => AgentAnswer::Nothing,
                Err(e) => AgentAnswer::Unreachable(e.to_string()),
            },
        }
    } else {
        AgentAnswer::Nothing
    };
    let mut data_deleted = false;
    loop {
        match cleanup::next_step(backup, &answer, deleting_for, data_deleted) {
            Step::WaitForStop(message) => return Err(Error::Waiting(message)),
            Step::DeleteData {
                repository,
                backup_name,
            } => match delete_data(backup, &repository, &backup_name, ctx).await {
                Ok(files) => {
                    data_deleted = true;
                    ctx.event(
                        backup,
                        false,
                        "DataDeleted",
                        "Delete",
                        format!("deleted backup {backup_name} from {repository} ({files} objects)"),
                    )
                    .await;
                }
                Err(Error::Storage { message, .. }) => {
                    match cleanup::after_failed_data_deletion(
                        &repository,
                        &backup_name,
                        &message,
                        deleting_for,
                    ) {
                        Step::Release {
                            warning: Some(warning),
                        } => {
                            ctx.event(backup, true, "DataLeftBehind", "Delete", warning)
                                .await;
                            return Ok(Action::await_change());
                        }
                        step => {
                            let why = match step {
                                Step::RetryDataDeletion(why) => why,
                                other => format!("{other:?}"),
                            };
                            report_data_not_deleted(backup, &why, ctx).await?;
                            // An error, not Ok: Ok would remove the finalizer.
                            return Err(Error::Waiting(why));
                        }
                    }
                }
                Err(e) => return Err(e),
            },
            Step::RetryDataDeletion(why) => {
                report_data_not_deleted(backup, &why, ctx).await?;
                return Err(Error::Waiting(why));
            }
            Step::Release { warning } => {
                if let Some(message) = warning {
                    ctx.event(backup, true, "AgentUnresponsive", "Delete", message)
                        .await;
                }
                if let Some(note) = cleanup::retained_note(backup) {
                    ctx.event(backup, false, "DataRetained", "Delete", note)
                        .await;
                }
                return Ok(Action::await_change());
            }
        }
    }
}

/// A data deletion that failed, made visible: a Warning Event and the
/// `DataDeleted` condition (False, with why) on the terminating backup.
async fn report_data_not_deleted<A: AgentApi>(
    backup: &MySQLBackup,
    why: &str,
    ctx: &Context<A>,
) -> Result<()> {
    ctx.event(backup, true, "DataNotDeleted", "Delete", why.to_owned())
        .await;
    let mut status = backup.status.clone().unwrap_or_default();
    status.conditions = conditions::merge(
        &status.conditions,
        &[conditions::Wanted::new(
            "DataDeleted",
            false,
            "DeletionFailed",
            why,
        )],
        backup.metadata.generation,
        ctx.clock.now(),
    );
    status.message = Some(why.to_owned());
    if backup.status.as_ref() != Some(&status) {
        let api: Api<MySQLBackup> =
            Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
        apply_status(&api, backup, &status).await?;
    }
    Ok(())
}

/// Deletes the backup from its object store with the repository code: no
/// agent, no pod needed.
async fn delete_data<A: AgentApi>(
    backup: &MySQLBackup,
    repository: &str,
    backup_name: &str,
    ctx: &Context<A>,
) -> Result<usize> {
    let storage_error = |message: String| Error::Storage {
        repository: repository.to_owned(),
        backup: backup_name.to_owned(),
        message,
    };
    let credentials = read_credentials(backup, ctx).await?.map_err(|m| {
        storage_error(format!(
            "{m}; restore the Secret to delete the data (removing the finalizer {BACKUP_FINALIZER} keeps it)"
        ))
    })?;
    let options = request::repo_options(&backup.spec.storage, credentials);
    let store = innoxide_agent::repo::open(repository, &options)
        .map_err(|e| storage_error(e.to_string()))?;
    innoxide_agent::repo::lifecycle::delete(&store, backup_name)
        .await
        .map_err(|e| storage_error(e.to_string()))
}
