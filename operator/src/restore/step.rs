//! What a MySQLRestore does next: pure, from the resource (spec and the
//! status so far) and what a reconcile observed, to the status to write and
//! at most one action. The controller runs the action, observes again and
//! steps again, so every decision is here and tested without I/O.
//!
//! InPlace: Pending → StageRestore → Fetching → Preparing → Ready →
//! Switching (ArmSwap; once acknowledged, record then delete the pod) →
//! Restarting (the pod comes back; its agent reports the swap done and the
//! restored GTID set) → Completed. Safety rules:
//! - the pod is deleted only after the agent acknowledged the armed swap;
//! - a failed stage never touches the live datadir (the pod is not deleted);
//! - the deletion is recorded in the status before it is done, so a
//!   restarted operator never deletes the replacement pod.
//!
//! NewStatefulSet: Pending (write the restore-spec Secret, wait for the
//! StatefulSet that names this restore; its pod template must carry the
//! operator's scheduling gate, so no pod runs before the wiring) →
//! Fetching (the pod's init container restores) → Completed once the
//! server's GTID set is the backup's.

use innoxide_proto::agent::v1 as pb;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::source::{Source, Unresolved};
use crate::api::{
    MySQLRestore, MySQLRestoreStatus, RESTORE_FROM_ANNOTATION, RestoreMode, RestorePhase,
    RestoredBackup, SwitchRecord,
};
use crate::backup::status::progress_of;
use crate::conditions::{self, Wanted};

/// What the agent answered to one call, or that it was not asked.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Answer<T> {
    #[default]
    NotAsked,
    Found(T),
    /// The agent has no operation with this id.
    NotFound,
    /// Cannot reach the agent (or its MySQL): try again.
    Unreachable(String),
    /// Refused for good.
    Refused(String),
}

/// The pod restored into, as the reconcile saw it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodView {
    pub name: String,
    pub uid: String,
    /// Running, Ready, with an IP and the agent: its agent can be called.
    pub ready: bool,
    pub deleting: bool,
    pub created: Option<Timestamp>,
    /// Why an init container keeps failing, if one does (NewStatefulSet).
    pub init_problem: Option<String>,
}

/// The target StatefulSet, as the reconcile saw it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatefulSetView {
    /// Its `innoxide.dev/restore-from` annotation.
    pub restore_from: Option<String>,
    /// Its pod template has the `innoxide-agent-init` container.
    pub has_init: bool,
    /// Its pod template carries the operator's scheduling gate
    /// ([`crate::wiring::gate`]): no pod runs before it is wired.
    pub gated: bool,
    /// The names of its pods, sorted.
    pub pods: Vec<String>,
    /// The restores it has had ([`super::record`]).
    pub restored: super::record::Records,
}

/// Everything a step decides from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct World {
    /// The backup; only looked up while the restore has not started.
    pub source: Option<Result<Source, Unresolved>>,
    /// Another restore of the same StatefulSet goes first (its message).
    pub blocked_by: Option<String>,
    /// None: the StatefulSet does not exist.
    pub stateful_set: Option<StatefulSetView>,
    /// The pod restored into (InPlace: the chosen one; NewStatefulSet:
    /// ordinal 0), or None with `no_pod` saying why.
    pub pod: Option<PodView>,
    pub no_pod: Option<String>,
    /// How to call the pod's agent (set when the pod is ready).
    pub agent: Option<crate::target::AgentTarget>,
    /// NewStatefulSet: pods of the StatefulSet created before this restore.
    pub older_pods: Vec<String>,
    /// NewStatefulSet: the restore-spec Secret exists.
    pub spec_secret: bool,
    /// GetOperation / StageRestore with the resource's UID.
    pub operation: Answer<pb::Operation>,
    /// ServerInfo (with the swap state), or ArmSwap's answer folded in.
    pub server: Answer<pb::ServerInfoResponse>,
    /// ArmSwap was refused: why.
    pub arm_refused: Option<String>,
}

/// The one thing to do after writing the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// StageRestore on the pod, keyed by the UID (the agent returns the
    /// existing operation on a repeat).
    StageRestore,
    ArmSwap,
    /// Withdraw an armed swap that will not be done.
    DisarmSwap,
    /// Delete the pod with this UID (a precondition: never its successor).
    DeletePod {
        name: String,
        uid: String,
    },
    /// Write the `<name>-restore-spec` Secret.
    WriteSpecSecret,
}

/// A phase change, told as an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: Option<RestorePhase>,
    pub to: RestorePhase,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: MySQLRestoreStatus,
    pub action: Option<Act>,
    pub transition: Option<Transition>,
}

/// One step.
pub fn step(restore: &MySQLRestore, world: &World, now: Timestamp) -> Decision {
    let old = restore.status.clone().unwrap_or_default();
    let mut draft = Draft {
        restore,
        status: MySQLRestoreStatus {
            observed_generation: restore.metadata.generation,
            target: Some(target_text(restore, world)),
            ..old.clone()
        },
        now,
        reason: "Pending",
        message: String::new(),
        phase: old.phase.unwrap_or_default(),
        action: None,
    };
    let done_before = world
        .stateful_set
        .as_ref()
        .and_then(|sts| super::record::done_before(restore, &sts.restored))
        .filter(|_| draft.phase == RestorePhase::Pending);
    if let Some(done) = done_before {
        // The same restore, created again (a GitOps re-sync gives it a new
        // UID): done already; restoring again would lose what was written
        // since.
        draft.set(
            RestorePhase::Completed,
            "AlreadyRestored",
            format!(
                "StatefulSet {} was restored by a MySQLRestore of this name, source and target (uid {}) at {}; not restored again. To restore it again, create a MySQLRestore with another name",
                restore.spec.target.stateful_set_name, done.uid, done.at
            ),
        );
        draft.status.completion_time = Some(Time(now));
    } else if !draft.phase.is_terminal() {
        match restore.spec.target.mode {
            RestoreMode::InPlace => {
                in_place(&mut draft, world);
                fail_past_start_deadline(&mut draft);
            }
            RestoreMode::NewStatefulSet => new_stateful_set(&mut draft, world),
        }
    } else {
        draft.message = old.message.clone().unwrap_or_default();
        let was_done_before = conditions::find(&old.conditions, "Ready")
            .is_some_and(|c| c.reason == "AlreadyRestored");
        draft.reason = match draft.phase {
            RestorePhase::Completed if was_done_before => "AlreadyRestored",
            RestorePhase::Completed => "Completed",
            _ => "Failed",
        };
    }
    draft.finish(old.phase)
}

struct Draft<'a> {
    restore: &'a MySQLRestore,
    status: MySQLRestoreStatus,
    now: Timestamp,
    phase: RestorePhase,
    reason: &'static str,
    message: String,
    action: Option<Act>,
}

impl Draft<'_> {
    fn uid(&self) -> &str {
        self.restore.metadata.uid.as_deref().unwrap_or_default()
    }

    fn set(&mut self, phase: RestorePhase, reason: &'static str, message: impl Into<String>) {
        self.phase = phase;
        self.reason = reason;
        self.message = message.into();
    }

    /// Stays in the phase it is in, saying why.
    fn wait(&mut self, reason: &'static str, message: impl Into<String>) {
        self.reason = reason;
        self.message = message.into();
    }

    fn fail(&mut self, reason: &'static str, message: impl Into<String>) {
        self.set(RestorePhase::Failed, reason, message);
        self.action = None;
        self.status.completion_time = Some(Time(self.now));
    }

    fn act(&mut self, action: Act) {
        self.action = Some(action);
    }

    /// The set the restored server must have executed: the target's of a
    /// point-in-time restore (known once staged), else the backup's.
    fn expected_gtid(&self) -> String {
        if let Some(point) = &self.status.point_in_time {
            return point.gtid_executed.clone().unwrap_or_default();
        }
        self.status
            .backup
            .as_ref()
            .and_then(|b| b.gtid_executed.clone())
            .unwrap_or_default()
    }

    /// What the expected set is, for messages.
    fn expected_what(&self) -> &'static str {
        if self.status.point_in_time.is_some() {
            "the point in time's"
        } else {
            "the backup's"
        }
    }

    fn finish(mut self, from: Option<RestorePhase>) -> Decision {
        let phase = self.phase;
        self.status.phase = Some(phase);
        self.status.message = Some(self.message.clone());
        if phase != RestorePhase::Pending && self.status.start_time.is_none() {
            self.status.start_time = Some(Time(self.now));
        }
        let progressing = !matches!(
            phase,
            RestorePhase::Pending | RestorePhase::Completed | RestorePhase::Failed
        );
        let old = self.restore.status.clone().unwrap_or_default();
        self.status.conditions = conditions::merge(
            &old.conditions,
            &[
                Wanted::new(
                    "Ready",
                    phase == RestorePhase::Completed,
                    self.reason,
                    self.message.clone(),
                ),
                Wanted::new(
                    "Progressing",
                    progressing,
                    self.reason,
                    self.message.clone(),
                ),
            ],
            self.restore.metadata.generation,
            self.now,
        );
        let transition = (from != Some(phase)).then(|| Transition {
            from,
            to: phase,
            warning: phase == RestorePhase::Failed,
            reason: match phase {
                RestorePhase::Pending => "Pending",
                RestorePhase::Fetching => "Staging",
                RestorePhase::Preparing => "Preparing",
                RestorePhase::Ready => "Staged",
                RestorePhase::Switching => "Switching",
                RestorePhase::Restarting => "Restarting",
                RestorePhase::Completed => "Completed",
                RestorePhase::Failed => "Failed",
            },
            message: self.message.clone(),
        });
        Decision {
            status: self.status,
            action: self.action,
            transition,
        }
    }
}

fn target_text(restore: &MySQLRestore, world: &World) -> String {
    let target = &restore.spec.target;
    let pod = restore
        .status
        .as_ref()
        .and_then(|s| s.pod.clone())
        .or_else(|| world.pod.as_ref().map(|p| p.name.clone()));
    match (target.mode, pod) {
        (RestoreMode::InPlace, Some(pod)) => format!("{}/{pod}", target.stateful_set_name),
        (RestoreMode::InPlace, None) => target.stateful_set_name.clone(),
        (RestoreMode::NewStatefulSet, _) => format!("{} (new)", target.stateful_set_name),
    }
}

/// The checks every restore passes before it starts: nothing else restores
/// the StatefulSet (an InPlace one queues behind it), and the backup is
/// there. Returns the source, or None
/// when the draft already says why not.
fn admit(d: &mut Draft<'_>, world: &World) -> Option<Source> {
    if let Some(message) = &world.blocked_by {
        if d.restore.spec.target.mode == RestoreMode::InPlace {
            // Queued, as a GitOps user expects of two applied restores: the
            // later one runs after the earlier one ends, within its start
            // deadline.
            d.wait(
                "Queued",
                format!("{message}; this one starts after it ends"),
            );
        } else {
            // A new StatefulSet is seeded once: the second could only fail
            // on the first one's pods.
            d.fail(
                "AnotherRestoreRunning",
                format!("{message}; create this restore again once that one has ended"),
            );
        }
        return None;
    }
    match world.source.clone() {
        None => {
            d.wait("Resolving", "looking up the backup");
            None
        }
        Some(Err(Unresolved::Wait { reason, message })) => {
            d.wait(reason, message);
            None
        }
        Some(Err(Unresolved::Fail { reason, message })) => {
            d.fail(reason, message);
            None
        }
        Some(Ok(source)) => {
            let known = d.status.backup.clone().unwrap_or_default();
            d.status.backup = Some(RestoredBackup {
                location: source.location.clone(),
                last_lsn: known.last_lsn.or(source.last_lsn),
                gtid_executed: known.gtid_executed.or(source.gtid_executed.clone()),
                chain: if known.chain.is_empty() {
                    source.chain.clone()
                } else {
                    known.chain
                },
            });
            if let Some(point) = &source.point_in_time
                && d.status.point_in_time.is_none()
            {
                d.status.point_in_time = Some(point.status());
            }
            Some(source)
        }
    }
}

/// An in-place restore still Pending, with nothing to do but wait, past its
/// start deadline: it fails, saying what it waited for. The server was not
/// touched, so giving up loses nothing.
fn fail_past_start_deadline(d: &mut Draft<'_>) {
    if d.phase != RestorePhase::Pending || d.action.is_some() {
        return;
    }
    let deadline = std::time::Duration::from_secs(u64::from(
        d.restore
            .spec
            .start_deadline_seconds
            .unwrap_or(crate::api::DEFAULT_START_DEADLINE_SECONDS),
    ));
    let Some(created) = d.restore.metadata.creation_timestamp.as_ref() else {
        return;
    };
    let waited = std::time::Duration::try_from(d.now.duration_since(created.0)).unwrap_or_default();
    if waited > deadline {
        let why = d.message.clone();
        d.fail(
            "StartDeadlineExceeded",
            format!(
                "the restore could not start within startDeadlineSeconds ({}s): {why}; the server was not touched. Fix that and create a new MySQLRestore",
                deadline.as_secs()
            ),
        );
    }
}

fn in_place(d: &mut Draft<'_>, world: &World) {
    match d.phase {
        RestorePhase::Pending => {
            if admit(d, world).is_none() {
                return;
            }
            if world.stateful_set.is_none() {
                d.wait(
                    "StatefulSetNotFound",
                    format!(
                        "StatefulSet {} does not exist in this namespace",
                        d.restore.spec.target.stateful_set_name
                    ),
                );
                return;
            }
            let Some(pod) = world.pod.as_ref().filter(|p| p.ready) else {
                let why = world
                    .no_pod
                    .clone()
                    .or_else(|| world.pod.as_ref().map(|p| format!("pod {} is not ready; waiting for it", p.name)))
                    .unwrap_or_else(|| "no pod to restore into yet".into());
                d.wait("PodNotReady", why);
                return;
            };
            d.status.pod = Some(pod.name.clone());
            match &world.operation {
                Answer::Found(op) => follow_stage(d, op),
                Answer::NotAsked | Answer::NotFound => {
                    d.wait(
                        "Starting",
                        format!("asking the agent on pod {} to stage the restore", pod.name),
                    );
                    d.act(Act::StageRestore);
                }
                Answer::Refused(message) => d.fail(
                    "AgentRefused",
                    format!("{message}. Nothing was changed on the server; fix the cause and create a new MySQLRestore"),
                ),
                Answer::Unreachable(message) => d.wait("AgentUnreachable", message.clone()),
            }
        }
        RestorePhase::Fetching | RestorePhase::Preparing => match &world.operation {
            Answer::Found(op) => follow_stage(d, op),
            Answer::NotFound => d.fail(
                "OperationLost",
                format!(
                    "the agent in pod {} has no record of the staged restore (was its data volume replaced?); the server still runs on its own data. Create a new MySQLRestore",
                    d.status.pod.clone().unwrap_or_default()
                ),
            ),
            Answer::Refused(message) => d.fail("AgentRefused", message.clone()),
            Answer::Unreachable(message) => d.wait("AgentUnreachable", message.clone()),
            Answer::NotAsked => d.wait("PodNotReady", world.no_pod.clone().unwrap_or_default()),
        },
        RestorePhase::Ready => {
            d.set(
                RestorePhase::Switching,
                "Switching",
                format!(
                    "arming the datadir swap on pod {}",
                    d.status.pod.clone().unwrap_or_default()
                ),
            );
            d.act(Act::ArmSwap);
        }
        RestorePhase::Switching => switching(d, world),
        RestorePhase::Restarting => restarting(d, world),
        RestorePhase::Completed | RestorePhase::Failed => {}
    }
}

/// Follows the StageRestore operation through its phases.
fn follow_stage(d: &mut Draft<'_>, op: &pb::Operation) {
    let pod = d.status.pod.clone().unwrap_or_default();
    let state = pb::OperationState::try_from(op.state).unwrap_or(pb::OperationState::Unspecified);
    let done = state == pb::OperationState::Succeeded;
    if let Some(p) = &op.progress {
        d.status.progress = Some(progress_of(p, done));
    }
    match state {
        pb::OperationState::Running | pb::OperationState::Unspecified => {
            let progress = d.status.progress.clone().unwrap_or_default();
            let step = progress.step.unwrap_or_else(|| "Starting".into());
            let percent = progress.percent.unwrap_or_default();
            let phase = match pb::Phase::try_from(op.progress.as_ref().map_or(0, |p| p.phase)) {
                Ok(pb::Phase::ApplyingLog | pb::Phase::Done) => RestorePhase::Preparing,
                _ => RestorePhase::Fetching,
            };
            d.set(
                phase,
                "Staging",
                format!("{step} on pod {pod}: {percent}; the server keeps serving its own data"),
            );
        }
        pb::OperationState::Succeeded => {
            if let Some(pb::operation::Result::StageRestore(result)) = &op.result {
                let backup = d.status.backup.get_or_insert_with(RestoredBackup::default);
                if !result.backup_location.is_empty() {
                    backup.location = result.backup_location.clone();
                }
                backup.last_lsn = Some(result.last_lsn);
                match d.status.point_in_time.as_mut() {
                    Some(point) => {
                        if !result.backup_gtid_executed.is_empty() {
                            backup.gtid_executed = Some(result.backup_gtid_executed.clone());
                        }
                        point.gtid_executed = Some(result.gtid_executed.clone());
                        point.transactions_replayed = Some(result.transactions_replayed);
                    }
                    None => backup.gtid_executed = Some(result.gtid_executed.clone()),
                }
                if !result.chain.is_empty() {
                    backup.chain = result.chain.iter().map(|l| l.backup_name.clone()).collect();
                }
            }
            d.status.staging_seconds =
                seconds_between(op.created_at.as_ref(), op.finished_at.as_ref());
            d.set(
                RestorePhase::Ready,
                "Staged",
                format!("the backup is staged and prepared on pod {pod}; the server still runs on its own data"),
            );
        }
        pb::OperationState::Failed | pb::OperationState::Cancelled => {
            let (reason, text) = match &op.error {
                Some(e) => (e.reason.clone(), e.message.clone()),
                None => ("CANCELLED".into(), "the staging was cancelled".into()),
            };
            d.fail(
                "StagingFailed",
                format!(
                    "staging on pod {pod} failed ({reason}): {text}. The server still runs on its own data, untouched; fix the cause and create a new MySQLRestore"
                ),
            );
        }
    }
}

fn switching(d: &mut Draft<'_>, world: &World) {
    let uid = d.uid().to_owned();
    let pod_name = d.status.pod.clone().unwrap_or_default();
    let swap = match &world.server {
        Answer::Found(info) => info.swap.clone().unwrap_or_default(),
        _ => pb::SwapState::default(),
    };
    if swap.last_swap.as_ref().is_some_and(|s| swapped_in(s, &uid)) {
        // The pod restarted (by us or by itself) and the swap is done.
        d.set(
            RestorePhase::Restarting,
            "Restarting",
            format!("pod {pod_name} restarted on the restored data"),
        );
        return restarting(d, world);
    }
    match d.status.switch.clone() {
        None => {
            if let Some(message) = &world.arm_refused {
                return d.fail(
                    "ArmRefused",
                    format!(
                        "the agent on pod {pod_name} refused to arm the swap: {message}. The pod was not restarted and runs on its own data; create a new MySQLRestore once the cause is fixed"
                    ),
                );
            }
            let Some(pod) = world.pod.as_ref().filter(|p| p.ready && p.name == pod_name) else {
                return d.wait(
                    "PodNotReady",
                    format!("pod {pod_name} is not ready; the swap is armed once it is"),
                );
            };
            match &world.server {
                Answer::Found(_) if swap.armed_operation_id == uid => {
                    // Acknowledged: record the deletion first, then delete.
                    d.status.switch = Some(SwitchRecord {
                        pod_uid: pod.uid.clone(),
                        deleted_at: Time(d.now),
                    });
                    d.wait(
                        "Switching",
                        format!("the swap is armed; deleting pod {pod_name} so it restarts on the restored data"),
                    );
                    d.act(Act::DeletePod {
                        name: pod.name.clone(),
                        uid: pod.uid.clone(),
                    });
                }
                Answer::Unreachable(message) => d.wait("AgentUnreachable", message.clone()),
                _ => {
                    d.wait(
                        "Switching",
                        format!("arming the datadir swap on pod {pod_name}"),
                    );
                    d.act(Act::ArmSwap);
                }
            }
        }
        Some(record) => match world.pod.as_ref() {
            Some(pod) if pod.uid == record.pod_uid && !pod.deleting => {
                d.wait("Switching", format!("deleting pod {pod_name}"));
                d.act(Act::DeletePod {
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                });
            }
            _ => {
                d.set(
                    RestorePhase::Restarting,
                    "Restarting",
                    format!("pod {pod_name} is restarting; its init container swaps the datadir"),
                );
                restarting(d, world);
            }
        },
    }
}

fn restarting(d: &mut Draft<'_>, world: &World) {
    let uid = d.uid().to_owned();
    let pod_name = d.status.pod.clone().unwrap_or_default();
    let deleted_at = d.status.switch.as_ref().map(|s| s.deleted_at.0);
    let away = deleted_at
        .map(|t| {
            format!(
                " (unavailable for {})",
                whole_seconds(d.now.duration_since(t).as_secs_f64())
            )
        })
        .unwrap_or_default();
    let record = d.status.switch.clone();
    let Some(pod) = world.pod.as_ref().filter(|p| p.ready) else {
        return d.wait(
            "PodRestarting",
            format!("waiting for pod {pod_name} to be ready{away}"),
        );
    };
    if record.as_ref().is_some_and(|r| r.pod_uid == pod.uid) {
        return d.wait(
            "PodRestarting",
            format!("waiting for pod {pod_name} to be replaced{away}"),
        );
    }
    let info = match &world.server {
        Answer::Found(info) => info,
        Answer::Unreachable(message) | Answer::Refused(message) => {
            return d.wait("AgentUnreachable", format!("{message}{away}"));
        }
        Answer::NotAsked | Answer::NotFound => {
            return d.wait(
                "PodRestarting",
                format!("waiting for the agent on pod {pod_name}{away}"),
            );
        }
    };
    let swap = info.swap.clone().unwrap_or_default();
    if swap
        .last_swap
        .as_ref()
        .is_some_and(|s| s.operation_id == uid && s.kind == REVERTED)
    {
        return d.fail(
            "Reverted",
            format!("the swap on pod {pod_name} was reverted (innoxide-agent init --revert {uid}): the server runs on its previous data; create a new MySQLRestore to restore again"),
        );
    }
    let Some(last) = swap.last_swap.filter(|s| swapped_in(s, &uid)) else {
        let armed = swap.armed_operation_id == uid;
        d.fail(
            "SwapNotDone",
            format!(
                "pod {pod_name} restarted but its init container did not swap the datadir in (is the innoxide-agent-init init container in the pod? the operator adds it to StatefulSets labelled innoxide.dev/agent=enabled). The server runs on its old data; {} create a new MySQLRestore",
                if armed { "the swap was disarmed;" } else { "" }
            ),
        );
        if armed {
            // A swap left armed would happen at some later restart.
            d.act(Act::DisarmSwap);
        }
        return;
    };
    if let Some(at) = deleted_at {
        let seconds = d.now.duration_since(at).as_secs_f64().max(0.0);
        d.status.unavailability_seconds = Some(round_ms(seconds));
        d.status.unavailability = Some(whole_seconds(seconds));
    }
    if !last.previous_datadir.is_empty() {
        d.status.previous_datadir = Some(last.previous_datadir.clone());
    }
    d.status.gtid_executed = Some(info.gtid_executed.clone());
    let expected = d.expected_gtid();
    if gtid_sets_equal(&info.gtid_executed, &expected) {
        d.status.completion_time = Some(Time(d.now));
        let mut message = format!(
            "pod {pod_name} runs on the restored data: gtid_executed is {} {}",
            d.expected_what(),
            shown(&expected)
        );
        let others: Vec<&str> = world
            .stateful_set
            .iter()
            .flat_map(|s| &s.pods)
            .map(String::as_str)
            .filter(|p| *p != pod_name)
            .collect();
        if !others.is_empty() {
            // One pod is restored; its peers still hold what came after the
            // backup, and replicating from the restored pod would mix the two.
            message.push_str(&format!(
                ". Not restored: {} (the StatefulSet's other pods still hold the transactions after the backup); reseed them from {pod_name} (CLONE INSTANCE, or a NewStatefulSet restore) before they replicate from it",
                others.join(", ")
            ));
        }
        d.set(RestorePhase::Completed, "Completed", message);
    } else {
        d.fail(
            "GtidMismatch",
            format!(
                "pod {pod_name} runs on the swapped datadir but its gtid_executed {} is not {} {}. The previous datadir is kept at {}: to return to it, stop mysqld and run `innoxide-agent init --datadir {} --state-dir {} --revert {uid}` in the pod",
                shown(&info.gtid_executed),
                d.expected_what(),
                shown(&expected),
                shown(&last.previous_datadir),
                datadir_of(info),
                crate::wiring::agent_state_dir(&datadir_of(info)),
            ),
        );
    }
}

fn new_stateful_set(d: &mut Draft<'_>, world: &World) {
    let sts = d.restore.spec.target.stateful_set_name.clone();
    let name = d.restore.metadata.name.clone().unwrap_or_default();
    match d.phase {
        RestorePhase::Pending => {
            if admit(d, world).is_none() {
                return;
            }
            if !world.older_pods.is_empty() {
                return d.fail(
                    "TargetNotNew",
                    format!(
                        "StatefulSet {sts} already runs pods ({}) that started before this restore: mode NewStatefulSet restores only into a StatefulSet whose volumes are empty. Use mode InPlace to restore a running StatefulSet",
                        world.older_pods.join(", ")
                    ),
                );
            }
            if !world.spec_secret {
                d.wait(
                    "WritingSpec",
                    format!(
                        "writing Secret {}",
                        crate::api::restore_spec_secret_name(&name)
                    ),
                );
                return d.act(Act::WriteSpecSecret);
            }
            let Some(view) = &world.stateful_set else {
                return d.wait(
                    "StatefulSetNotFound",
                    format!("waiting for StatefulSet {sts}: create it with the annotation {RESTORE_FROM_ANNOTATION}: {name} and the label innoxide.dev/agent=enabled"),
                );
            };
            if view.restore_from.as_deref() != Some(name.as_str()) {
                return d.wait(
                    "NotAnnotated",
                    format!("StatefulSet {sts} does not name this restore: add the annotation {RESTORE_FROM_ANNOTATION}: {name}"),
                );
            }
            if !view.gated {
                let gate = crate::wiring::AGENT_GATE;
                return d.fail(
                    "NotGated",
                    format!(
                        "StatefulSet {sts}'s pod template has no scheduling gate {gate}: its first pod could start mysqld on the empty volume before the operator adds the init container that restores into it. Delete StatefulSet {sts} and its claims, add `schedulingGates: [{{name: {gate}}}]` to its pod template, and create it and a new MySQLRestore again"
                    ),
                );
            }
            if !view.has_init {
                return d.wait(
                    "NotWired",
                    format!("StatefulSet {sts} has no innoxide-agent-init init container yet: label it innoxide.dev/agent=enabled"),
                );
            }
            match &world.pod {
                None => d.wait(
                    "PodNotCreated",
                    format!("waiting for the first pod of StatefulSet {sts}"),
                ),
                Some(pod) => {
                    d.status.pod = Some(pod.name.clone());
                    d.set(
                        RestorePhase::Fetching,
                        "Restoring",
                        format!("pod {} restores the backup in its init container", pod.name),
                    );
                    new_pod_progress(d, world);
                }
            }
        }
        RestorePhase::Fetching | RestorePhase::Preparing | RestorePhase::Restarting => {
            new_pod_progress(d, world)
        }
        _ => {}
    }
}

fn new_pod_progress(d: &mut Draft<'_>, world: &World) {
    let pod_name = d.status.pod.clone().unwrap_or_default();
    let Some(pod) = world.pod.as_ref() else {
        return d.wait("PodNotCreated", format!("waiting for pod {pod_name}"));
    };
    if !pod.ready {
        return match &pod.init_problem {
            Some(problem) => d.wait("InitFailing", format!("pod {pod_name}: {problem}")),
            None => d.wait(
                "Restoring",
                format!("pod {pod_name} restores the backup in its init container"),
            ),
        };
    }
    let info = match &world.server {
        Answer::Found(info) => info,
        Answer::Unreachable(message) | Answer::Refused(message) => {
            return d.wait("AgentUnreachable", message.clone());
        }
        _ => {
            return d.wait(
                "Restoring",
                format!("waiting for the agent on pod {pod_name}"),
            );
        }
    };
    d.status.gtid_executed = Some(info.gtid_executed.clone());
    let expected = d.expected_gtid();
    if let Some(created) = pod.created {
        d.status.staging_seconds = Some(round_ms(
            d.now.duration_since(created).as_secs_f64().max(0.0),
        ));
    }
    if gtid_sets_equal(&info.gtid_executed, &expected) {
        d.status.completion_time = Some(Time(d.now));
        d.set(
            RestorePhase::Completed,
            "Completed",
            format!(
                "pod {pod_name} started on the restored data: gtid_executed is the backup's {}. This MySQLRestore may be deleted: its pods keep starting on the restored volumes (the {RESTORE_FROM_ANNOTATION} annotation can stay or go)",
                shown(&expected)
            ),
        );
    } else {
        d.fail(
            "GtidMismatch",
            format!(
                "pod {pod_name} started but its gtid_executed {} is not the backup's {}: its volume was not empty, or the restore did not run. Delete the StatefulSet and its PersistentVolumeClaims, and create them again",
                shown(&info.gtid_executed),
                shown(&expected)
            ),
        );
    }
}

/// What a swap record says of an exchange that put the previous datadir back.
const REVERTED: &str = "revert";

/// This restore's staged datadir went in (and was not reverted since).
fn swapped_in(record: &pb::SwapRecord, uid: &str) -> bool {
    record.operation_id == uid && record.kind != REVERTED
}

/// Two GTID sets as MySQL prints them are the same set: whitespace and
/// the order of the UUID parts do not matter, letter case of UUIDs neither.
pub fn gtid_sets_equal(a: &str, b: &str) -> bool {
    fn parts(s: &str) -> Vec<String> {
        let mut v: Vec<String> = s
            .split(',')
            .map(|p| {
                p.chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
                    .to_ascii_lowercase()
            })
            .filter(|p| !p.is_empty())
            .collect();
        v.sort();
        v
    }
    parts(a) == parts(b)
}

fn shown(text: &str) -> String {
    if text.is_empty() {
        "(empty)".into()
    } else {
        format!("{text:?}")
    }
}

fn datadir_of(info: &pb::ServerInfoResponse) -> String {
    if info.datadir.is_empty() {
        crate::wiring::DEFAULT_DATADIR.to_owned()
    } else {
        info.datadir.trim_end_matches('/').to_owned()
    }
}

fn seconds_between(
    from: Option<&innoxide_proto::prost_types::Timestamp>,
    to: Option<&innoxide_proto::prost_types::Timestamp>,
) -> Option<f64> {
    let (from, to) = (from?, to?);
    let secs = (to.seconds - from.seconds) as f64 + f64::from(to.nanos - from.nanos) / 1e9;
    Some(round_ms(secs.max(0.0)))
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn whole_seconds(seconds: f64) -> String {
    format!("{}s", seconds.max(0.0).round() as u64)
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;
