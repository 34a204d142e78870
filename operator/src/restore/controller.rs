//! The MySQLRestore reconcile: observe (I/O) → step (pure,
//! [`super::step`]) → write the status (server-side apply) and tell the
//! transition as an Event → run the step's one action → observe again,
//! until the step has nothing more to do now.
//!
//! The status is written before the action runs, so what an action
//! depends on (the recorded pod deletion above all) is durable first.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use tracing::instrument;

use super::cleanup;
use super::point_in_time;
use super::record;
use super::request::{restore_spec, spec_secret};
use super::source::{self, Source, Unresolved};
use super::step::{Act, Answer, PodView, StatefulSetView, World, step};
use crate::agent::{AgentApi, AgentError};
use crate::api::{
    BackupSource, MySQLBackup, MySQLBackupSchedule, MySQLRestore, RESTORE_FINALIZER,
    RESTORE_FROM_ANNOTATION, RestoreMode, RestorePhase, restore_spec_secret_name,
};
use crate::backup::controller::stateful_set_pods;
use crate::context::{Context, Error, FIELD_MANAGER, Result, apply_status};
use crate::target::{self, AgentTarget, Rule, SelectError};
use crate::wiring::INIT_CONTAINER;

pub const CONTROLLER: &str = "mysqlrestore";
/// How many step → action rounds one reconcile runs at most.
const ROUNDS: usize = 6;

/// The reconcile entry point, over a guard so one malformed object cannot
/// stall the controller.
#[instrument(skip_all, fields(namespace = %guard.namespace().unwrap_or_default(), name = %guard.name_any(), uid))]
pub async fn reconcile<A: AgentApi>(
    guard: Arc<DeserializeGuard<MySQLRestore>>,
    ctx: Arc<Context<A>>,
) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let restore = match &guard.0 {
        Ok(restore) => restore.clone(),
        Err(invalid) => {
            tracing::warn!(error = %invalid.error, "MySQLRestore cannot be read; waiting for a change");
            return Ok(Action::await_change());
        }
    };
    tracing::Span::current().record("uid", restore.uid().unwrap_or_default());
    let api: Api<MySQLRestore> =
        Api::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
    finalizer(&api, RESTORE_FINALIZER, Arc::new(restore), |event| async {
        match event {
            Finalizer::Apply(restore) => apply((*restore).clone(), &ctx).await,
            Finalizer::Cleanup(restore) => cleanup(&restore, &ctx).await,
        }
    })
    .await
    .map_err(Error::from)
}

/// Runs the restore on: step → status → action, until nothing is left
/// to do now.
async fn apply<A: AgentApi>(mut restore: MySQLRestore, ctx: &Arc<Context<A>>) -> Result<Action> {
    let status = restore.status.clone().unwrap_or_default();
    if restore.phase().is_terminal() && status.observed_generation == restore.metadata.generation {
        return Ok(Action::await_change());
    }
    let api: Api<MySQLRestore> =
        Api::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
    let mut outcome = Outcome::default();
    for _ in 0..ROUNDS {
        let mut world = observe(&restore, ctx.as_ref()).await?;
        outcome.fold_into(&mut world);
        let decision = step(&restore, &world, ctx.clock.now());
        let phase_before = restore.phase();
        if decision.status.phase == Some(RestorePhase::Completed)
            && phase_before != RestorePhase::Completed
        {
            // Recorded before the status says Completed: a restore created
            // again later is recognised even if this reconcile stops here.
            record_completed(&restore, &world, ctx.as_ref()).await?;
        }
        if restore.status.as_ref() != Some(&decision.status) {
            apply_status(&api, &restore, &decision.status).await?;
            restore.status = Some(decision.status.clone());
        }
        if let Some(t) = &decision.transition {
            tracing::info!(from = ?t.from, to = ?t.to, "{}", t.message);
            ctx.metrics
                .restore_transitions
                .get_or_create(&crate::metrics::PhaseLabels {
                    phase: t.to.as_str(),
                })
                .inc();
            ctx.event(&restore, t.warning, t.reason, "Restore", t.message.clone())
                .await;
        }
        match decision.action {
            Some(action) => outcome = execute(&restore, &world, action, ctx.as_ref()).await?,
            None if restore.phase() != phase_before => outcome = Outcome::default(),
            None => break,
        }
    }
    Ok(match restore.phase() {
        RestorePhase::Completed | RestorePhase::Failed => Action::await_change(),
        RestorePhase::Switching | RestorePhase::Restarting => {
            Action::requeue(Duration::from_secs(2))
        }
        RestorePhase::Pending => Action::requeue(Duration::from_secs(10)),
        _ => Action::requeue(Duration::from_secs(5)),
    })
}

/// Writes the completed restore into its StatefulSet's record
/// ([`record`]), with a field manager of its own. A conflict (someone else
/// owns the annotation) is told, not fatal: the restore is done either way.
async fn record_completed<A: AgentApi>(
    restore: &MySQLRestore,
    world: &World,
    ctx: &Context<A>,
) -> Result<()> {
    let Some(sts) = &world.stateful_set else {
        return Ok(());
    };
    if record::done_before(restore, &sts.restored).is_some() {
        return Ok(());
    }
    let name = &restore.spec.target.stateful_set_name;
    let value = record::with_completed(&sts.restored, restore, ctx.clock.now());
    let api: Api<StatefulSet> =
        Api::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
    match api
        .patch(
            name,
            &PatchParams::apply(record::RECORD_FIELD_MANAGER),
            &Patch::Apply(record::apply_body(name, &value)),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
            ctx.event(
                restore,
                true,
                "NotRecorded",
                "Restore",
                format!(
                    "could not record the restore on StatefulSet {name} ({}): if this MySQLRestore is created again it restores again",
                    e.message
                ),
            )
            .await;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Before the finalizer goes: stop a staging, withdraw an armed swap, then
/// remove what the restore left on the pod's volume.
async fn cleanup<A: AgentApi>(restore: &MySQLRestore, ctx: &Context<A>) -> Result<Action> {
    let deleting_for = restore
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| ctx.clock.now().duration_since(t.0).unsigned_abs())
        .unwrap_or_default();
    let id = restore.uid().unwrap_or_default();
    let ask = cleanup::ask(restore);
    let discard = cleanup::discard(restore);
    // Observed once: the pod (and its agent) the restore is on.
    let target = if ask == cleanup::Ask::Nothing && discard.is_none() {
        None
    } else {
        let world = observe(restore, ctx).await?;
        Some(agent_target(&world).ok_or_else(|| {
            // No agent to ask: an armed swap would still run when the pod
            // starts again, so wait for it (and give up after a while).
            world
                .no_pod
                .clone()
                .unwrap_or_else(|| "the pod is not ready".into())
        }))
    };
    let unreachable = |why: &String| cleanup::Answer::Unreachable(why.clone());

    let answer = match (&ask, &target) {
        (cleanup::Ask::Nothing, _) | (_, None) => cleanup::Answer::Done,
        (_, Some(Err(why))) => unreachable(why),
        (ask, Some(Ok(target))) => {
            let result = if *ask == cleanup::Ask::Cancel {
                ctx.agent
                    .cancel(target, &id)
                    .await
                    .map(|op| op.state == innoxide_proto::agent::v1::OperationState::Running as i32)
            } else {
                ctx.agent.disarm_swap(target, &id).await.map(|_| false)
            };
            match result {
                Ok(true) => cleanup::Answer::Stopping,
                Ok(false) | Err(AgentError::NotFound { .. }) => cleanup::Answer::Done,
                Err(e) => cleanup::Answer::Unreachable(e.to_string()),
            }
        }
    };
    match cleanup::next_step(restore, &answer, deleting_for) {
        cleanup::Step::Wait(message) => return Err(Error::Waiting(message)),
        cleanup::Step::Release {
            warning: Some(message),
        } => {
            // Could not stop or withdraw: leave the volume as it is.
            ctx.event(restore, true, "AgentUnresponsive", "Delete", message)
                .await;
            return Ok(Action::await_change());
        }
        cleanup::Step::Release { warning: None } if ask != cleanup::Ask::Nothing => {
            ctx.event(
                restore,
                false,
                "Withdrawn",
                "Delete",
                match ask {
                    cleanup::Ask::Cancel => "the staging was stopped".to_owned(),
                    _ => "the armed swap was withdrawn; the pod keeps its data".to_owned(),
                },
            )
            .await;
        }
        cleanup::Step::Release { warning: None } => {}
    }

    let (Some(discard), Some(target)) = (discard, &target) else {
        return Ok(Action::await_change());
    };
    let answer = match target {
        Err(why) => unreachable(why),
        Ok(target) => match ctx
            .agent
            .discard_restore(target, &id, discard.keep_previous)
            .await
        {
            Ok(done) => {
                if !done.removed.is_empty() {
                    ctx.event(
                        restore,
                        false,
                        "Discarded",
                        "Delete",
                        format!(
                            "removed {} from pod {}'s volume ({} freed)",
                            done.removed.join(", "),
                            target.pod,
                            crate::units::format_bytes(done.freed_bytes)
                        ),
                    )
                    .await;
                }
                cleanup::Answer::Done
            }
            Err(e @ AgentError::Refused { .. }) => cleanup::Answer::Refused(e.to_string()),
            // A staging of this id still stopping after its cancel.
            Err(AgentError::Busy { .. }) => cleanup::Answer::Stopping,
            Err(e) => cleanup::Answer::Unreachable(e.to_string()),
        },
    };
    match cleanup::discard_step(restore, &answer, deleting_for) {
        cleanup::Step::Wait(message) => Err(Error::Waiting(message)),
        cleanup::Step::Release { warning } => {
            if let Some(message) = warning {
                ctx.event(restore, true, "LeftoversKept", "Delete", message)
                    .await;
            }
            Ok(Action::await_change())
        }
    }
}

/// What an action answered, for the next round's step (the agent's answer
/// to a call cannot be observed again by a read).
#[derive(Debug, Default)]
struct Outcome {
    operation: Option<Answer<innoxide_proto::agent::v1::Operation>>,
    swap: Option<innoxide_proto::agent::v1::SwapState>,
    arm_refused: Option<String>,
    source: Option<Unresolved>,
}

impl Outcome {
    fn fold_into(&self, world: &mut World) {
        if let Some(op) = &self.operation
            && !matches!(world.operation, Answer::Found(_))
        {
            world.operation = op.clone();
        }
        if let (Some(swap), Answer::Found(info)) = (&self.swap, &mut world.server) {
            info.swap = Some(swap.clone());
        }
        if self.arm_refused.is_some() {
            world.arm_refused = self.arm_refused.clone();
        }
        if let Some(problem) = &self.source {
            world.source = Some(Err(problem.clone()));
        }
    }
}

/// Everything the step decides from.
async fn observe<A: AgentApi>(restore: &MySQLRestore, ctx: &Context<A>) -> Result<World> {
    let ns = restore.namespace().unwrap_or_default();
    let phase = restore.phase();
    let mode = restore.spec.target.mode;
    let sts_name = &restore.spec.target.stateful_set_name;
    let mut world = World::default();
    if phase == RestorePhase::Pending {
        let restores: Api<MySQLRestore> = Api::namespaced(ctx.client.clone(), &ns);
        let others = restores.list(&ListParams::default()).await?.items;
        world.blocked_by = source::blocked_by(restore, &others);
        world.source = Some(resolve_source(restore, ctx).await?);
        if mode == RestoreMode::NewStatefulSet {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
            world.spec_secret = secrets
                .get_opt(&restore_spec_secret_name(&restore.name_any()))
                .await?
                .is_some();
        }
    }
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(sts) = statefulsets.get_opt(sts_name).await? else {
        world.no_pod = Some(format!("StatefulSet {sts_name} does not exist"));
        return Ok(world);
    };
    let owned = stateful_set_pods(&ctx.client, &ns, &sts).await?;
    let pods: Vec<&Pod> = owned.iter().collect();
    world.stateful_set = Some(StatefulSetView {
        restore_from: sts
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RESTORE_FROM_ANNOTATION))
            .cloned(),
        has_init: sts
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.name == INIT_CONTAINER)),
        gated: crate::wiring::gate::template_is_gated(&sts),
        pods: {
            let mut names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
            names.sort();
            names
        },
        restored: record::parse(
            sts.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(record::RESTORED_ANNOTATION))
                .map(String::as_str),
        ),
    });
    let what = format!("StatefulSet {sts_name}");
    let name = match mode {
        RestoreMode::NewStatefulSet => {
            let created = restore.metadata.creation_timestamp.as_ref().map(|t| t.0);
            if phase == RestorePhase::Pending {
                world.older_pods = pods
                    .iter()
                    .filter(|p| {
                        matches!((p.metadata.creation_timestamp.as_ref(), created), (Some(p), Some(r)) if p.0 < r)
                    })
                    .map(|p| p.name_any())
                    .collect();
            }
            Some(format!("{sts_name}-0"))
        }
        RestoreMode::InPlace => match choose_pod(restore, &pods, &what) {
            Ok(name) => Some(name),
            Err(message) => {
                world.no_pod = Some(message);
                None
            }
        },
    };
    let Some(pod) = name.and_then(|n| pods.iter().find(|p| p.name_any() == n).copied()) else {
        return Ok(world);
    };
    let agent = target::select(&Rule::Pinned(&pod.name_any()), &[pod], &what);
    if let Err(e) = &agent {
        world.no_pod = Some(e.to_string());
    }
    world.pod = Some(PodView {
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        ready: agent.is_ok(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        init_problem: init_problem(pod),
    });
    let Ok(agent) = agent else {
        return Ok(world);
    };
    world.agent = Some(agent.clone());
    let id = restore.uid().unwrap_or_default();
    let staging = matches!(
        phase,
        RestorePhase::Pending | RestorePhase::Fetching | RestorePhase::Preparing
    );
    if mode == RestoreMode::InPlace && staging {
        world.operation = answer(ctx.agent.get_operation(&agent, &id).await);
    }
    if mode == RestoreMode::NewStatefulSet || !staging {
        world.server = answer(ctx.agent.server_info(&agent).await);
    }
    Ok(world)
}

fn answer<T>(result: std::result::Result<T, AgentError>) -> Answer<T> {
    match result {
        Ok(value) => Answer::Found(value),
        Err(AgentError::NotFound { .. }) => Answer::NotFound,
        Err(e @ AgentError::Refused { .. }) => Answer::Refused(e.to_string()),
        Err(e) => Answer::Unreachable(e.to_string()),
    }
}

/// The pod an InPlace restore replaces: pinned once chosen, else the one
/// the spec names, else the primary, else ordinal 0.
fn choose_pod(
    restore: &MySQLRestore,
    pods: &[&Pod],
    what: &str,
) -> std::result::Result<String, String> {
    let target = &restore.spec.target;
    if let Some(pod) = restore.status.as_ref().and_then(|s| s.pod.clone()) {
        return Ok(pod);
    }
    if let Some(pod) = &target.pod {
        return Ok(pod.clone());
    }
    let rule = Rule::Source {
        source: BackupSource::Primary,
        pod: None,
        role_label: &target.role_label,
    };
    match target::select(&rule, pods, what) {
        Ok(t) => Ok(t.pod),
        Err(SelectError::NotReady { pod, .. } | SelectError::NoAgent { pod }) => Ok(pod),
        Err(SelectError::AmbiguousPrimary { .. }) => Ok(format!("{}-0", target.stateful_set_name)),
        Err(e) => Err(e.to_string()),
    }
}

/// Why an init container keeps failing, as kubelet reports it.
fn init_problem(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.init_container_statuses.as_ref()?;
    statuses.iter().find_map(|s| {
        let waiting = s.state.as_ref().and_then(|st| st.waiting.as_ref());
        let last = s.last_state.as_ref().and_then(|st| st.terminated.as_ref());
        match (waiting, last) {
            (Some(w), Some(t)) if t.exit_code != 0 => Some(format!(
                "init container {} failed (exit {}, {}): {}; see its log",
                s.name,
                t.exit_code,
                w.reason.clone().unwrap_or_default(),
                t.message.clone().unwrap_or_default()
            )),
            _ => None,
        }
    })
}

/// The source of a restore that has not started: the MySQLBackup it names
/// or the location; for a new StatefulSet also the GTID set the operator
/// must check the result against, read from the backup's manifest.
async fn resolve_source<A: AgentApi>(
    restore: &MySQLRestore,
    ctx: &Context<A>,
) -> Result<std::result::Result<Source, Unresolved>> {
    let ns = restore.namespace().unwrap_or_default();
    if let Some(point) = &restore.spec.source.point_in_time {
        // The schedule's archive and its backups (labelled with its name).
        let schedules: Api<MySQLBackupSchedule> = Api::namespaced(ctx.client.clone(), &ns);
        let schedule = schedules.get_opt(&point.schedule_name).await?;
        let backups: Api<MySQLBackup> = Api::namespaced(ctx.client.clone(), &ns);
        let owned = backups
            .list(&ListParams::default().labels(&format!(
                "{}={}",
                crate::api::SCHEDULE_LABEL,
                point.schedule_name
            )))
            .await?
            .items;
        return Ok(point_in_time::resolve(restore, schedule.as_ref(), &owned));
    }
    let backup = match &restore.spec.source.backup_name {
        Some(name) => {
            let api: Api<MySQLBackup> = Api::namespaced(ctx.client.clone(), &ns);
            api.get_opt(name).await?
        }
        None => None,
    };
    let mut source = match source::resolve(restore, backup.as_ref()) {
        Ok(source) => source,
        Err(e) => return Ok(Err(e)),
    };
    if restore.spec.target.mode == RestoreMode::NewStatefulSet && source.gtid_executed.is_none() {
        match manifest_gtid(restore, &source, ctx).await? {
            Ok(gtid) => source.gtid_executed = Some(gtid),
            Err(problem) => return Ok(Err(problem)),
        }
    }
    Ok(Ok(source))
}

/// The backup's GTID set from its manifest, read with the repository code
/// (the new StatefulSet has no agent yet to ask).
async fn manifest_gtid<A: AgentApi>(
    restore: &MySQLRestore,
    source: &Source,
    ctx: &Context<A>,
) -> Result<std::result::Result<String, Unresolved>> {
    let credentials = match source_credentials(restore, source, None, ctx).await? {
        Ok(c) => c,
        Err(wait) => return Ok(Err(wait)),
    };
    let options = crate::backup::request::repo_options(&source.storage, credentials);
    let unreadable = |message: String| Unresolved::Wait {
        reason: "BackupUnreadable",
        message: format!(
            "cannot read the backup's manifest at {}: {message}",
            source.location
        ),
    };
    let store = match innoxide_agent::repo::open(&source.storage.repository_url(), &options) {
        Ok(store) => store,
        Err(e) => {
            return Ok(Err(Unresolved::Fail {
                reason: "InvalidLocation",
                message: e.to_string(),
            }));
        }
    };
    Ok(
        match innoxide_agent::repo::lifecycle::read_manifest(&store.child(&source.backup_name))
            .await
        {
            Ok(manifest) => Ok(manifest.gtid_executed),
            Err(e @ innoxide_agent::repo::lifecycle::Error::NoManifest { .. }) => {
                Err(Unresolved::Fail {
                    reason: "BackupNotFound",
                    message: format!("{e}: there is no complete backup at {}", source.location),
                })
            }
            Err(e) => Err(unreadable(e.to_string())),
        },
    )
}

/// The Secret values the source's storage (and, when given, its key)
/// needs; a missing Secret makes the restore wait, saying which.
async fn source_credentials<A: AgentApi>(
    restore: &MySQLRestore,
    source: &Source,
    encryption_key: Option<&crate::api::SecretKeyRef>,
    ctx: &Context<A>,
) -> Result<std::result::Result<crate::backup::request::Credentials, Unresolved>> {
    let namespace = restore.namespace().unwrap_or_default();
    let read = crate::secrets::read_credentials(
        &ctx.client,
        &namespace,
        &source.storage,
        encryption_key,
        None,
    )
    .await?;
    Ok(read.map_err(|message| Unresolved::Wait {
        reason: "SecretMissing",
        message,
    }))
}

/// The restore spec with its Secret values, or why it cannot be made now.
async fn build_spec<A: AgentApi>(
    restore: &MySQLRestore,
    source: &Source,
    ctx: &Context<A>,
) -> Result<std::result::Result<innoxide_proto::restore_spec::RestoreSpec, Unresolved>> {
    let credentials =
        match source_credentials(restore, source, source.encryption_key.as_ref(), ctx).await? {
            Ok(c) => c,
            Err(wait) => return Ok(Err(wait)),
        };
    Ok(
        restore_spec(restore, source, &credentials).map_err(|e| Unresolved::Fail {
            reason: "InvalidSpec",
            message: e.0,
        }),
    )
}

async fn execute<A: AgentApi>(
    restore: &MySQLRestore,
    world: &World,
    action: Act,
    ctx: &Context<A>,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let agent = || agent_target(world);
    match action {
        Act::StageRestore | Act::WriteSpecSecret => {
            let Some(Ok(source)) = &world.source else {
                return Ok(outcome);
            };
            let spec = match build_spec(restore, source, ctx).await? {
                Ok(spec) => spec,
                Err(problem) => {
                    outcome.source = Some(problem);
                    return Ok(outcome);
                }
            };
            if action == Act::WriteSpecSecret {
                let secret = spec_secret(restore, &spec);
                let api: Api<Secret> =
                    Api::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
                api.patch(
                    &restore_spec_secret_name(&restore.name_any()),
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await?;
            } else if let Some(target) = agent() {
                outcome.operation = Some(answer(
                    ctx.agent.stage_restore(&target, spec.stage_request()).await,
                ));
            }
        }
        Act::ArmSwap => {
            if let Some(target) = agent() {
                match ctx
                    .agent
                    .arm_swap(&target, &restore.uid().unwrap_or_default())
                    .await
                {
                    Ok(swap) => outcome.swap = Some(swap),
                    Err(e @ AgentError::Refused { .. }) => {
                        outcome.arm_refused = Some(e.to_string())
                    }
                    Err(e) => tracing::info!(error = %e, "cannot arm the swap yet"),
                }
            }
        }
        Act::DisarmSwap => {
            if let Some(target) = agent()
                && let Err(e) = ctx
                    .agent
                    .disarm_swap(&target, &restore.uid().unwrap_or_default())
                    .await
            {
                tracing::warn!(error = %e, "cannot disarm the swap");
            }
        }
        Act::DeletePod { name, uid } => {
            let api: Api<Pod> =
                Api::namespaced(ctx.client.clone(), &restore.namespace().unwrap_or_default());
            // The UID precondition: never the pod that replaced it.
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(outcome)
}

/// The agent of the observed pod, when it can be called.
fn agent_target(world: &World) -> Option<AgentTarget> {
    world.pod.as_ref().filter(|p| p.ready)?;
    world.agent.clone()
}
