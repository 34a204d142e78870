//! What deleting a MySQLRestore must do before its finalizer goes, so a
//! deleted restore never acts later: stop a staging that may run (its
//! partial copy is removed by the agent), and withdraw a swap that is armed
//! but not begun (else the pod's next restart, maybe weeks later, would
//! swap the datadir). A swap whose pod was already deleted is under way and
//! always finishes: nothing is undone then.
//!
//! Then what the restore left on the pod's volume goes (DiscardRestore): a
//! staged datadir never swapped in, and, once the restore is Completed, the
//! datadir its swap replaced (`previous/<uid>`, as large as the database).
//! A failed restore keeps that one: it may be the way back (the failure
//! message says how to revert). Pure decisions here; the controller does
//! the I/O.

use std::time::Duration;

use crate::api::{MySQLRestore, RestoreMode, RestorePhase};
use crate::backup::cleanup::GIVE_UP_ON_AGENT_AFTER;

/// What the agent must be asked before the finalizer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Nothing: the restore never reached the agent, ended, or its swap is
    /// under way.
    Nothing,
    /// CancelOperation of the staging.
    Cancel,
    /// DisarmSwap (a no-op on the agent when nothing is armed).
    Disarm,
}

/// What the agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Done, or nothing to do (no such operation, pod gone: nothing can
    /// run or swap there).
    Done,
    /// The staging is still stopping.
    Stopping,
    /// The pod is there but its agent does not answer.
    Unreachable(String),
    /// The agent said no for good (an agent too old for the call, say).
    Refused(String),
}

/// What to remove from the pod's volume once nothing runs or is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discard {
    /// Keep `previous/<uid>`: the restore did not complete, so the datadir
    /// it replaced may be the way back.
    pub keep_previous: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Wait(String),
    Release { warning: Option<String> },
}

pub fn ask(restore: &MySQLRestore) -> Ask {
    if restore.spec.target.mode == RestoreMode::NewStatefulSet {
        // The init containers act on the spec Secret, which goes with the
        // restore (owner reference).
        return Ask::Nothing;
    }
    let switched = restore.status.as_ref().is_some_and(|s| s.switch.is_some());
    match restore.phase() {
        RestorePhase::Fetching | RestorePhase::Preparing => Ask::Cancel,
        RestorePhase::Ready | RestorePhase::Switching if !switched => Ask::Disarm,
        _ => Ask::Nothing,
    }
}

/// After [`ask`]: what the restore left on the pod's volume to remove.
pub fn discard(restore: &MySQLRestore) -> Option<Discard> {
    if restore.spec.target.mode == RestoreMode::NewStatefulSet {
        // Staged and swapped by the new pods' init containers, which keep
        // nothing (an empty volume has no previous datadir).
        return None;
    }
    let switched = restore.status.as_ref().is_some_and(|s| s.switch.is_some());
    match restore.phase() {
        RestorePhase::Completed => Some(Discard {
            keep_previous: false,
        }),
        RestorePhase::Fetching | RestorePhase::Preparing | RestorePhase::Ready => Some(Discard {
            keep_previous: true,
        }),
        RestorePhase::Switching if !switched => Some(Discard {
            keep_previous: true,
        }),
        // A swap under way finishes and is judged first; a failed one
        // keeps its previous datadir (and a revert's leftovers are small
        // next to the cost of guessing wrong).
        _ => None,
    }
}

/// What to do with the agent's answer to DiscardRestore.
pub fn discard_step(restore: &MySQLRestore, answer: &Answer, deleting_for: Duration) -> Step {
    settle(
        answer,
        deleting_for,
        "remove what the restore left on the volume",
        |why| {
            format!(
                "could not remove what the restore left on pod {}'s volume ({why}); it stays under the \
                 agent's state dir (staging/, previous/ and reverted/ named by this restore's uid): \
                 remove it by hand",
                pod_of(restore)
            )
        },
    )
}

/// What to do with the agent's answer to [`ask`].
pub fn next_step(restore: &MySQLRestore, answer: &Answer, deleting_for: Duration) -> Step {
    let what = match ask(restore) {
        Ask::Nothing => return Step::Release { warning: None },
        Ask::Cancel => "stop the staging",
        Ask::Disarm => "withdraw the armed swap",
    };
    settle(answer, deleting_for, what, |why| {
        format!(
            "could not {what} ({why}); deleting anyway. If a swap was armed, run `innoxide-agent init` only after checking {}",
            pod_of(restore)
        )
    })
}

/// How an agent's answer to one deletion step settles: done; wait (for a
/// staging that is stopping, or an agent out of reach) until the agent had
/// [`GIVE_UP_ON_AGENT_AFTER`]; or go on with the warning `give_up` makes of
/// why (a refusal, or no answer in time).
fn settle(
    answer: &Answer,
    deleting_for: Duration,
    what: &str,
    give_up: impl FnOnce(&str) -> String,
) -> Step {
    let patient = deleting_for < GIVE_UP_ON_AGENT_AFTER;
    let why = match answer {
        Answer::Done => return Step::Release { warning: None },
        Answer::Stopping if patient => {
            return Step::Wait("the staging is stopping in its agent".into());
        }
        Answer::Unreachable(message) if patient => {
            return Step::Wait(format!("cannot reach the agent to {what}: {message}"));
        }
        Answer::Refused(message) => message.clone(),
        Answer::Stopping | Answer::Unreachable(_) => format!(
            "no answer within {}",
            humantime::format_duration(GIVE_UP_ON_AGENT_AFTER)
        ),
    };
    Step::Release {
        warning: Some(give_up(&why)),
    }
}

fn pod_of(restore: &MySQLRestore) -> String {
    restore
        .status
        .as_ref()
        .and_then(|s| s.pod.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SwitchRecord;
    use crate::fixtures::RestoreBuilder;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn in_phase(phase: RestorePhase) -> MySQLRestore {
        RestoreBuilder::from_backup("r", "nightly")
            .in_place("db")
            .phase(phase)
            .build()
    }

    #[test]
    fn a_staging_is_stopped_and_an_armed_swap_withdrawn() {
        assert_eq!(ask(&in_phase(RestorePhase::Fetching)), Ask::Cancel);
        assert_eq!(ask(&in_phase(RestorePhase::Preparing)), Ask::Cancel);
        assert_eq!(ask(&in_phase(RestorePhase::Ready)), Ask::Disarm);
        assert_eq!(ask(&in_phase(RestorePhase::Switching)), Ask::Disarm);
        for phase in [
            RestorePhase::Pending,
            RestorePhase::Restarting,
            RestorePhase::Completed,
            RestorePhase::Failed,
        ] {
            assert_eq!(ask(&in_phase(phase)), Ask::Nothing, "{phase:?}");
        }
    }

    #[test]
    fn a_completed_restore_gives_back_the_replaced_datadir_and_a_failed_one_keeps_it() {
        let keep = |keep_previous| Some(Discard { keep_previous });
        assert_eq!(discard(&in_phase(RestorePhase::Completed)), keep(false));
        for phase in [
            RestorePhase::Fetching,
            RestorePhase::Preparing,
            RestorePhase::Ready,
            RestorePhase::Switching,
        ] {
            assert_eq!(discard(&in_phase(phase)), keep(true), "{phase:?}");
        }
        for phase in [
            RestorePhase::Pending,
            RestorePhase::Restarting,
            RestorePhase::Failed,
        ] {
            assert_eq!(discard(&in_phase(phase)), None, "{phase:?}");
        }
        let new_sts = RestoreBuilder::from_backup("r", "nightly")
            .new_stateful_set("db2")
            .phase(RestorePhase::Completed)
            .build();
        assert_eq!(discard(&new_sts), None);
    }

    #[test]
    fn leftovers_that_cannot_be_removed_are_named_not_waited_on_forever() {
        let r = in_phase(RestorePhase::Completed);
        let gone = Answer::Unreachable("connection refused".into());
        assert!(matches!(
            discard_step(&r, &gone, Duration::from_secs(5)),
            Step::Wait(m) if m.contains("connection refused")
        ));
        for (answer, after) in [
            (gone, GIVE_UP_ON_AGENT_AFTER),
            (Answer::Refused("unimplemented".into()), Duration::ZERO),
        ] {
            let Step::Release { warning: Some(w) } = discard_step(&r, &answer, after) else {
                panic!("{answer:?}: not released with a warning")
            };
            assert!(w.contains("remove it by hand"), "{w}");
        }
        assert_eq!(
            discard_step(&r, &Answer::Done, Duration::ZERO),
            Step::Release { warning: None }
        );
    }

    #[test]
    fn a_swap_under_way_is_never_undone() {
        let mut r = in_phase(RestorePhase::Switching);
        r.status.as_mut().unwrap().switch = Some(SwitchRecord {
            pod_uid: "pod-a".into(),
            deleted_at: Time("2026-11-21T10:00:00Z".parse().unwrap()),
        });
        assert_eq!(ask(&r), Ask::Nothing);
        assert_eq!(
            next_step(&r, &Answer::Unreachable("x".into()), Duration::ZERO),
            Step::Release { warning: None }
        );
    }

    #[test]
    fn an_unreachable_agent_is_waited_for_then_given_up_on_with_a_warning() {
        let r = in_phase(RestorePhase::Switching);
        let answer = Answer::Unreachable("connection refused".into());
        assert!(matches!(
            next_step(&r, &answer, Duration::from_secs(30)),
            Step::Wait(m) if m.contains("withdraw the armed swap")
        ));
        assert!(matches!(
            next_step(&r, &answer, GIVE_UP_ON_AGENT_AFTER),
            Step::Release { warning: Some(_) }
        ));
        assert_eq!(
            next_step(&r, &Answer::Done, Duration::ZERO),
            Step::Release { warning: None }
        );
    }
}
