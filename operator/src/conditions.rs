//! Status conditions: what a reconcile wants them to say, merged with what
//! they said, so `lastTransitionTime` moves only when a status changes.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// One condition as a reconcile computes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub type_: &'static str,
    pub status: bool,
    /// CamelCase, machine-readable.
    pub reason: &'static str,
    pub message: String,
}

impl Wanted {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Wanted {
        Wanted {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// The conditions to write: each wanted one, stamped with `generation`, its
/// transition time kept when its status did not change. Conditions of other
/// types are kept as they were.
pub fn merge(
    existing: &[Condition],
    wanted: &[Wanted],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !wanted.iter().any(|w| w.type_ == c.type_))
        .cloned()
        .collect();
    for w in wanted {
        let status = if w.status { "True" } else { "False" };
        let transition = existing
            .iter()
            .find(|c| c.type_ == w.type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        out.push(Condition {
            type_: w.type_.to_owned(),
            status: status.to_owned(),
            reason: w.reason.to_owned(),
            message: w.message.clone(),
            observed_generation: generation,
            last_transition_time: transition,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// The condition of this type, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let first = merge(
            &[],
            &[Wanted::new("Ready", false, "Running", "copying")],
            Some(1),
            at(100),
        );
        assert_eq!(first[0].last_transition_time, Time(at(100)));

        let same = merge(
            &first,
            &[Wanted::new("Ready", false, "Running", "still copying")],
            Some(1),
            at(200),
        );
        assert_eq!(
            same[0].last_transition_time,
            Time(at(100)),
            "same status keeps its time"
        );
        assert_eq!(same[0].message, "still copying");

        let flipped = merge(
            &same,
            &[Wanted::new("Ready", true, "Completed", "done")],
            Some(2),
            at(300),
        );
        assert_eq!(flipped[0].last_transition_time, Time(at(300)));
        assert_eq!(flipped[0].observed_generation, Some(2));
    }

    #[test]
    fn conditions_of_other_types_are_kept() {
        let first = merge(&[], &[Wanted::new("Other", true, "X", "")], None, at(1));
        let both = merge(&first, &[Wanted::new("Ready", true, "Y", "")], None, at(2));
        let types: Vec<_> = both.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Other", "Ready"]);
    }
}
