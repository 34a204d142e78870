//! The restores a StatefulSet has had, recorded on it (annotation
//! `innoxide.dev/restored`): a MySQLRestore kept in Git and created again
//! (a re-sync, a rebuilt cluster state) gets a new UID, and without a record
//! it would restore again over data written since. A restore of the same
//! name and the same source and target as a recorded one is done already.
//!
//! The record lives with the StatefulSet, not the restore: a StatefulSet
//! created anew (a new cluster, new volumes) has none, and a restore into it
//! runs. Pure here; the controller applies the annotation with its own field
//! manager ([`RECORD_FIELD_MANAGER`]), so the wiring's apply never removes it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::api::MySQLRestore;

/// The annotation on the StatefulSet: JSON, restore name → [`Done`].
pub const RESTORED_ANNOTATION: &str = "innoxide.dev/restored";
/// The field manager the record is applied with.
pub const RECORD_FIELD_MANAGER: &str = "innoxide-operator-restores";
/// The newest records kept (annotations are small).
const KEPT: usize = 20;

/// One completed restore.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Done {
    /// [`fingerprint`] of its spec.
    pub spec: String,
    pub uid: String,
    /// When it completed (RFC 3339).
    pub at: String,
}

pub type Records = BTreeMap<String, Done>;

/// The records in the annotation's value; nothing for a value that is not
/// ours (a record that cannot be read never stops a restore).
pub fn parse(annotation: Option<&str>) -> Records {
    annotation
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// What makes two restores the same restore: their source and target.
pub fn fingerprint(restore: &MySQLRestore) -> String {
    let what = serde_json::json!([restore.spec.source, restore.spec.target]).to_string();
    format!("{:016x}", crate::hash::fnv1a_64(what.as_bytes()))
}

/// The record of an earlier restore with this one's name, source and
/// target, if the StatefulSet has one.
pub fn done_before<'a>(restore: &MySQLRestore, records: &'a Records) -> Option<&'a Done> {
    let name = restore.metadata.name.as_deref()?;
    records
        .get(name)
        .filter(|done| done.spec == fingerprint(restore))
}

/// The annotation's value with this restore recorded as completed `at`,
/// keeping the newest [`KEPT`].
pub fn with_completed(records: &Records, restore: &MySQLRestore, at: Timestamp) -> String {
    let mut records = records.clone();
    records.insert(
        restore.metadata.name.clone().unwrap_or_default(),
        Done {
            spec: fingerprint(restore),
            uid: restore.metadata.uid.clone().unwrap_or_default(),
            at: at.to_string(),
        },
    );
    while records.len() > KEPT {
        let oldest = records
            .iter()
            .min_by(|a, b| a.1.at.cmp(&b.1.at))
            .map(|(name, _)| name.clone());
        match oldest {
            Some(name) => records.remove(&name),
            None => break,
        };
    }
    serde_json::to_string(&records).unwrap_or_default()
}

/// The server-side apply body that writes the record on the StatefulSet.
pub fn apply_body(stateful_set: &str, value: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": stateful_set, "annotations": {RESTORED_ANNOTATION: value}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{RestoreBuilder, ts};

    #[test]
    fn the_same_restore_created_again_is_recognised() {
        let first = RestoreBuilder::from_backup("back", "nightly")
            .in_place("db")
            .build();
        let value = with_completed(&Records::new(), &first, ts("2026-11-21T10:00:00Z"));
        let records = parse(Some(&value));
        let mut again = first.clone();
        again.metadata.uid = Some("uid-new".into());
        let done = done_before(&again, &records).expect("recorded");
        assert_eq!(done.uid, first.metadata.uid.clone().unwrap());
        assert_eq!(done.at, "2026-11-21T10:00:00Z");
    }

    #[test]
    fn another_backup_or_another_name_is_another_restore() {
        let first = RestoreBuilder::from_backup("back", "nightly")
            .in_place("db")
            .build();
        let records = parse(Some(&with_completed(
            &Records::new(),
            &first,
            ts("2026-11-21T10:00:00Z"),
        )));
        let other_backup = RestoreBuilder::from_backup("back", "weekly")
            .in_place("db")
            .build();
        assert_eq!(done_before(&other_backup, &records), None);
        let other_name = RestoreBuilder::from_backup("back-2", "nightly")
            .in_place("db")
            .build();
        assert_eq!(done_before(&other_name, &records), None);
    }

    #[test]
    fn the_record_keeps_the_newest_and_survives_bad_values() {
        assert!(parse(Some("not json")).is_empty());
        assert!(parse(None).is_empty());
        let mut records = Records::new();
        for day in 1..=25 {
            let restore = RestoreBuilder::from_backup(&format!("r{day:02}"), "nightly")
                .in_place("db")
                .build();
            let value = with_completed(
                &records,
                &restore,
                ts(&format!("2026-11-{day:02}T10:00:00Z")),
            );
            records = parse(Some(&value));
        }
        assert_eq!(records.len(), KEPT);
        assert!(!records.contains_key("r05") && records.contains_key("r06"));
    }
}
