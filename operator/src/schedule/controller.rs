//! The MySQLBackupSchedule reconcile: check the spec (pure), list the
//! backups the schedule owns, plan (pure: [`super::plan`]), run the binlog
//! archive's part ([`crate::archive::controller`]), then apply the plan:
//! delete what `Replace` replaces, create the due backup, delete what
//! retention prunes, write the status, tell the Events.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::instrument;

use super::plan::{self, NewBackup};
use crate::agent::AgentApi;
use crate::api::{
    BackupType, BackupsOnDelete, IncrementalMethod, MySQLBackup, MySQLBackupSchedule,
    SCHEDULE_LABEL, SCHEDULED_AT_ANNOTATION,
};
use crate::conditions;
use crate::context::{Context, Result, apply_status};

pub const CONTROLLER: &str = "mysqlbackupschedule";

#[instrument(skip_all, fields(namespace = %guard.namespace().unwrap_or_default(), name = %guard.name_any()))]
pub async fn reconcile<A: AgentApi>(
    guard: Arc<DeserializeGuard<MySQLBackupSchedule>>,
    ctx: Arc<Context<A>>,
) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let schedule = match &guard.0 {
        Ok(schedule) => schedule,
        Err(invalid) => {
            tracing::warn!(error = %invalid.error, "MySQLBackupSchedule cannot be read; waiting for a change");
            return Ok(Action::await_change());
        }
    };
    let ns = schedule.namespace().unwrap_or_default();
    let schedules: Api<MySQLBackupSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    let backups: Api<MySQLBackup> = Api::namespaced(ctx.client.clone(), &ns);
    let now = ctx.clock.now();

    let checked = match plan::check(schedule, now) {
        Ok(checked) => checked,
        Err(message) => {
            // Invalid until the spec changes: say so once, then wait.
            let status = plan::invalid_status(schedule, &message, now);
            let was = schedule
                .status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, "Ready"))
                .map(|c| c.message.clone());
            if schedule.status.as_ref() != Some(&status) {
                apply_status(&schedules, schedule, &status).await?;
            }
            if was.as_deref() != Some(message.as_str()) {
                ctx.event(schedule, true, "InvalidSpec", "Schedule", message)
                    .await;
            }
            return Ok(Action::await_change());
        }
    };

    // The schedule's backups are those labelled with its name: a schedule
    // deleted and created again (a GitOps re-sync) takes its history back.
    let owned: Vec<MySQLBackup> = backups
        .list(&ListParams::default().labels(&format!("{SCHEDULE_LABEL}={}", schedule.name_any())))
        .await?
        .items;
    for backup in &owned {
        if let Some(references) = owner_references_to_set(schedule, backup) {
            set_owner_references(&backups, backup, references).await?;
        }
    }

    let mut plan = plan::plan(schedule, &checked, &owned, now);
    // The binlog archive: its archiver follows the primary, and retention
    // prunes what the oldest backup it keeps no longer needs.
    let kept: Vec<&MySQLBackup> = owned
        .iter()
        .filter(|b| !plan.prune.contains(&b.name_any()))
        .collect();
    let archived = crate::archive::controller::reconcile(schedule, &kept, &ctx).await?;
    plan.status.binlog_archive = archived.status;
    plan.notes.extend(archived.notes);
    if let Some(recheck) = archived.requeue_after {
        plan.requeue_after = plan.requeue_after.min(recheck);
    }
    for name in &plan.replace {
        delete_backup(&backups, name).await?;
    }
    if let Some(new) = &plan.create {
        let backup = new_backup(schedule, new);
        match backups.create(&PostParams::default(), &backup).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for name in &plan.prune {
        delete_backup(&backups, name).await?;
    }
    if schedule.status.as_ref() != Some(&plan.status) {
        apply_status(&schedules, schedule, &plan.status).await?;
    }
    for note in &plan.notes {
        ctx.event(
            schedule,
            note.warning,
            note.reason,
            "Schedule",
            note.message.clone(),
        )
        .await;
    }
    Ok(Action::requeue(plan.requeue_after))
}

/// Writes a backup's ownerReferences, only if it did not change since read.
async fn set_owner_references(
    api: &Api<MySQLBackup>,
    backup: &MySQLBackup,
    references: Vec<OwnerReference>,
) -> Result<()> {
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": backup.resource_version(),
        "ownerReferences": references,
    }});
    match api
        .patch(
            &backup.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        // Changed or gone meanwhile: the next reconcile looks again.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
        Ok(_) => Ok(()),
    }
}

/// The ownerReferences a backup of this schedule must have, when they
/// differ from what it has: with `backupsOnDelete: Keep` none to the
/// schedule (so deleting the schedule never cascades into its backups and
/// their data; backups made by an older operator lose theirs), with
/// `Delete` the schedule's controller reference.
pub fn owner_references_to_set(
    schedule: &MySQLBackupSchedule,
    backup: &MySQLBackup,
) -> Option<Vec<OwnerReference>> {
    let have = backup.owner_references();
    let is_schedule =
        |o: &OwnerReference| o.kind == "MySQLBackupSchedule" && o.name == schedule.name_any();
    let mut want: Vec<OwnerReference> = have.iter().filter(|o| !is_schedule(o)).cloned().collect();
    if schedule.spec.backups_on_delete == BackupsOnDelete::Delete {
        want.extend(schedule.controller_owner_ref(&()));
    }
    (want.as_slice() != have).then_some(want)
}

async fn delete_backup(api: &Api<MySQLBackup>, name: &str) -> Result<()> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The MySQLBackup of one run: the template, named after the run's time,
/// labelled with the schedule's name, and owned by the schedule only with
/// `backupsOnDelete: Delete`.
pub fn new_backup(schedule: &MySQLBackupSchedule, new: &NewBackup) -> MySQLBackup {
    let template = &schedule.spec.backup_template;
    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(SCHEDULE_LABEL.into(), schedule.name_any());
    let mut annotations: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .map(|m| m.annotations.clone())
        .unwrap_or_default();
    annotations.insert(SCHEDULED_AT_ANNOTATION.into(), new.scheduled_at.to_string());
    let mut spec = template.spec.clone();
    spec.backup_type = new.backup_type;
    spec.incremental_base = new.base.clone();
    if let Some(incremental) = &schedule.spec.incremental {
        match new.backup_type {
            // The incrementals after a full read the pages tracking lists
            // from the point the full marked in it.
            BackupType::Full => {
                spec.page_tracking |= incremental.method != Some(IncrementalMethod::FullScan);
            }
            BackupType::Incremental => spec.incremental_method = incremental.method,
        }
    }
    let mut backup = MySQLBackup::new(&new.name, spec);
    backup.metadata.namespace = schedule.namespace();
    backup.metadata.labels = Some(labels);
    backup.metadata.annotations = Some(annotations);
    backup.metadata.owner_references = owner_references_to_set(schedule, &backup);
    backup
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ScheduleBuilder, ts};

    #[test]
    fn a_run_s_backup_is_the_template_labelled_with_the_schedule() {
        let schedule = ScheduleBuilder::cron("0 3 * * *").build();
        let backup = new_backup(&schedule, &run());
        assert_eq!(backup.spec, schedule.spec.backup_template.spec);
        assert_eq!(backup.labels()[SCHEDULE_LABEL], "nightly");
        assert_eq!(
            backup.annotations()[SCHEDULED_AT_ANNOTATION],
            "2026-11-21T03:00:00Z"
        );
        assert!(
            backup.owner_references().is_empty(),
            "deleting the schedule must not cascade into its backups"
        );
        assert_eq!(backup.namespace().as_deref(), Some("prod"));
    }

    fn run() -> NewBackup {
        NewBackup {
            name: "nightly-202611210300".into(),
            scheduled_at: ts("2026-11-21T03:00:00Z"),
            backup_type: crate::api::BackupType::Full,
            base: None,
        }
    }

    #[test]
    fn an_incremental_run_names_the_backup_it_continues() {
        let schedule = ScheduleBuilder::cron("@weekly")
            .incrementals("@hourly")
            .build();
        let backup = new_backup(
            &schedule,
            &NewBackup {
                backup_type: crate::api::BackupType::Incremental,
                base: Some("nightly-202611210200".into()),
                ..run()
            },
        );
        assert_eq!(backup.spec.backup_type, crate::api::BackupType::Incremental);
        assert_eq!(
            backup.spec.incremental_base.as_deref(),
            Some("nightly-202611210200")
        );
        assert_eq!(backup.spec.incremental_method, None);
        assert!(!backup.spec.page_tracking);
        assert_eq!(
            backup.spec.storage,
            schedule.spec.backup_template.spec.storage
        );
    }

    #[test]
    fn the_fulls_of_a_schedule_with_incrementals_start_page_tracking_unless_they_scan() {
        let weekly = |method: Option<IncrementalMethod>| {
            let mut schedule = ScheduleBuilder::cron("@weekly")
                .incrementals("@hourly")
                .build();
            schedule.spec.incremental.as_mut().unwrap().method = method;
            schedule
        };
        let incremental = NewBackup {
            backup_type: BackupType::Incremental,
            base: Some("nightly-202611210200".into()),
            ..run()
        };
        let full = new_backup(&weekly(None), &run());
        assert!(full.spec.page_tracking, "{:?}", full.spec);
        let page_track = weekly(Some(IncrementalMethod::PageTrack));
        assert!(new_backup(&page_track, &run()).spec.page_tracking);
        assert_eq!(
            new_backup(&page_track, &incremental)
                .spec
                .incremental_method,
            Some(IncrementalMethod::PageTrack)
        );
        let scan = weekly(Some(IncrementalMethod::FullScan));
        assert!(!new_backup(&scan, &run()).spec.page_tracking);
        assert_eq!(
            new_backup(&scan, &incremental).spec.incremental_method,
            Some(IncrementalMethod::FullScan)
        );
        let without = new_backup(&ScheduleBuilder::cron("@weekly").build(), &run());
        assert!(
            !without.spec.page_tracking,
            "only a schedule with incrementals asks"
        );
    }

    #[test]
    fn only_a_schedule_that_asks_owns_its_backups() {
        let schedule = ScheduleBuilder::cron("0 3 * * *")
            .deleting_backups_with_it()
            .build();
        let backup = new_backup(&schedule, &run());
        let owner = &backup.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("MySQLBackupSchedule", "uid-schedule", Some(true))
        );
        assert_eq!(owner_references_to_set(&schedule, &backup), None);
    }

    #[test]
    fn backups_an_older_operator_made_owned_are_let_go() {
        let deleting = ScheduleBuilder::cron("0 3 * * *")
            .deleting_backups_with_it()
            .build();
        let mut owned = new_backup(&deleting, &run());
        let other = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "keep-me".into(),
            uid: "uid-cm".into(),
            ..OwnerReference::default()
        };
        owned
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(other.clone());
        let keeping = ScheduleBuilder::cron("0 3 * * *").build();
        assert_eq!(
            owner_references_to_set(&keeping, &owned),
            Some(vec![other]),
            "the schedule's reference goes, others stay"
        );
        let kept = new_backup(&keeping, &run());
        assert_eq!(owner_references_to_set(&keeping, &kept), None);
        assert!(owner_references_to_set(&deleting, &kept).is_some());
    }
}
