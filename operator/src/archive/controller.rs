//! The binlog archive's part of the schedule reconcile: observe (ask every
//! ready pod's agent about the archive, find the primary) → plan (pure,
//! [`super::plan`]) → act (stop strays, start on the primary, prune) → the
//! status to write, the Events to tell and the lag metric.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};

use super::plan::{self, ArchiveAct, ArchivePlan, Observed, PodArchive};
use super::request::{archive_id, prune_request, start_request};
use crate::agent::{AgentApi, AgentError};
use crate::api::{BackupSource, BinlogArchiveStatus, MySQLBackup, MySQLBackupSchedule};
use crate::backup::controller::stateful_set_pods;
use crate::context::{Context, Result};
use crate::restore::step::Answer;
use crate::schedule::plan::Note;
use crate::target::{self, AgentTarget, Rule};

/// What the archive part decided, for the schedule's status and Events.
pub struct Archived {
    pub status: Option<BinlogArchiveStatus>,
    pub notes: Vec<Note>,
    pub requeue_after: Option<std::time::Duration>,
}

/// Runs the archive's part of a reconcile. `kept` are the schedule's
/// backups that retention keeps.
pub async fn reconcile<A: AgentApi>(
    schedule: &MySQLBackupSchedule,
    kept: &[&MySQLBackup],
    ctx: &Context<A>,
) -> Result<Archived> {
    let had_status = schedule
        .status
        .as_ref()
        .is_some_and(|s| s.binlog_archive.is_some());
    if schedule.spec.binlog_archive.is_none() && !had_status {
        return Ok(Archived {
            status: None,
            notes: Vec::new(),
            requeue_after: None,
        });
    }
    let (observed, targets) = observe(schedule, kept, ctx).await?;
    let planned = plan::plan(schedule, &observed, ctx.clock.now());
    let mut status = planned.status.clone();
    let mut notes = planned.notes.clone();
    act(schedule, &planned, &targets, &mut status, &mut notes, ctx).await?;
    let labels = crate::metrics::ArchiveLabels {
        namespace: schedule.namespace().unwrap_or_default(),
        schedule: schedule.name_any(),
    };
    match status.as_ref().and_then(|s| s.lag_seconds) {
        Some(lag) => {
            ctx.metrics
                .binlog_archive_lag
                .get_or_create(&labels)
                .set(lag);
        }
        None => {
            ctx.metrics.binlog_archive_lag.remove(&labels);
        }
    }
    ctx.metrics
        .binlog_archive_gaps
        .get_or_create(&labels)
        .set(status.as_ref().map_or(0, |s| s.gaps.len() as i64));
    Ok(Archived {
        status,
        notes,
        requeue_after: planned.requeue_after,
    })
}

async fn observe<A: AgentApi>(
    schedule: &MySQLBackupSchedule,
    kept: &[&MySQLBackup],
    ctx: &Context<A>,
) -> Result<(Observed, Vec<AgentTarget>)> {
    let mut observed = Observed {
        oldest_kept: plan::oldest_kept(kept),
        ..Observed::default()
    };
    let template = &schedule.spec.backup_template.spec;
    let Some(sts_name) = template.mysql.stateful_set_name.clone() else {
        observed.primary = Some(Err(
            "binlog archiving follows a StatefulSet: set backupTemplate.spec.mysql.statefulSetName"
                .into(),
        ));
        return Ok((observed, Vec::new()));
    };
    let ns = schedule.namespace().unwrap_or_default();
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(sts) = statefulsets.get_opt(&sts_name).await? else {
        observed.primary = Some(Err(format!("StatefulSet {sts_name} does not exist")));
        return Ok((observed, Vec::new()));
    };
    let owned = stateful_set_pods(&ctx.client, &ns, &sts).await?;
    let pods: Vec<&Pod> = owned.iter().collect();
    let what = format!("StatefulSet {sts_name}");
    let rule = Rule::Source {
        source: BackupSource::Primary,
        pod: None,
        role_label: &template.mysql.role_label,
    };
    observed.primary = Some(
        target::select(&rule, &pods, &what)
            .map(|t| t.pod)
            .map_err(|e| e.to_string()),
    );
    let id = archive_id(schedule);
    let mut targets = Vec::new();
    for pod in &pods {
        let Ok(agent) = target::select(&Rule::Pinned(&pod.name_any()), &[pod], &what) else {
            continue;
        };
        let answer = match ctx.agent.get_binlog_archive(&agent, &id).await {
            Ok(status) => Answer::Found(status),
            Err(AgentError::NotFound { .. }) => Answer::NotFound,
            Err(e @ AgentError::Refused { .. }) => Answer::Refused(e.to_string()),
            Err(e) => Answer::Unreachable(e.to_string()),
        };
        observed.pods.push(PodArchive {
            pod: agent.pod.clone(),
            answer,
        });
        targets.push(agent);
    }
    Ok((observed, targets))
}

async fn act<A: AgentApi>(
    schedule: &MySQLBackupSchedule,
    planned: &ArchivePlan,
    targets: &[AgentTarget],
    status: &mut Option<BinlogArchiveStatus>,
    notes: &mut Vec<Note>,
    ctx: &Context<A>,
) -> Result<()> {
    if planned.acts.is_empty() {
        return Ok(());
    }
    let target_of = |pod: &str| targets.iter().find(|t| t.pod == pod);
    let template = &schedule.spec.backup_template.spec;
    let needs_secrets = planned
        .acts
        .iter()
        .any(|a| !matches!(a, ArchiveAct::Stop { .. }));
    let credentials = if needs_secrets {
        match crate::secrets::read_credentials(
            &ctx.client,
            &schedule.namespace().unwrap_or_default(),
            &template.storage,
            template.encryption_key_secret_ref.as_ref(),
            template.mysql_credentials.as_ref(),
        )
        .await?
        {
            Ok(c) => Some(c),
            Err(missing) => {
                if let Some(s) = status.as_mut() {
                    s.state = Some("Waiting".into());
                    s.message = Some(missing);
                }
                None
            }
        }
    } else {
        None
    };
    let id = archive_id(schedule);
    for action in &planned.acts {
        match action {
            ArchiveAct::Stop { pod } => {
                let Some(target) = target_of(pod) else {
                    continue;
                };
                match ctx.agent.stop_binlog_archive(target, &id).await {
                    Ok(_) | Err(AgentError::NotFound { .. }) => {
                        tracing::info!(pod = %pod, "binlog archiver stopped");
                    }
                    Err(e) => {
                        tracing::warn!(pod = %pod, error = %e, "cannot stop the binlog archiver")
                    }
                }
            }
            ArchiveAct::Start { pod } => {
                let (Some(target), Some(credentials)) = (target_of(pod), credentials.as_ref())
                else {
                    continue;
                };
                let request = match start_request(schedule, credentials) {
                    Ok(r) => r,
                    Err(e) => {
                        set_failed(status, e.0);
                        continue;
                    }
                };
                match ctx.agent.start_binlog_archive(target, request).await {
                    Ok(started) => {
                        if let Some(s) = status.as_mut() {
                            s.state = Some("Archiving".into());
                            s.message = Some(format!(
                                "pod {pod} archives the binlogs of server {}",
                                started.server_uuid
                            ));
                        }
                        notes.push(Note {
                            warning: false,
                            reason: "ArchiveStarted",
                            message: format!(
                                "binlog archiving started on pod {pod} into {}",
                                started.repository_url
                            ),
                        });
                    }
                    Err(e @ AgentError::Refused { .. }) => {
                        let message = e.to_string();
                        if status.as_ref().and_then(|s| s.message.as_deref())
                            != Some(message.as_str())
                        {
                            notes.push(Note {
                                warning: true,
                                reason: "ArchiveFailed",
                                message: message.clone(),
                            });
                        }
                        set_failed(status, message);
                    }
                    Err(e) => {
                        if let Some(s) = status.as_mut() {
                            s.state = Some("Waiting".into());
                            s.message = Some(e.to_string());
                        }
                    }
                }
            }
            ArchiveAct::Prune {
                pod,
                backup,
                covered_by,
            } => {
                let (Some(target), Some(credentials)) = (target_of(pod), credentials.as_ref())
                else {
                    continue;
                };
                let Ok(request) = prune_request(schedule, credentials, covered_by) else {
                    continue;
                };
                match ctx.agent.prune_binlog_archive(target, request).await {
                    Ok(pruned) => {
                        if let Some(s) = status.as_mut() {
                            s.retained_from = Some(backup.clone());
                        }
                        if !pruned.removed.is_empty() {
                            notes.push(Note {
                                warning: false,
                                reason: "BinlogsPruned",
                                message: format!(
                                    "deleted {} archived binlog file(s) ({}, {}) that MySQLBackup {backup}, the oldest kept, already holds",
                                    pruned.removed.len(),
                                    pruned.removed.join(", "),
                                    crate::units::format_bytes(pruned.freed_bytes)
                                ),
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot prune the binlog archive; trying again later")
                    }
                }
            }
        }
    }
    Ok(())
}

fn set_failed(status: &mut Option<BinlogArchiveStatus>, message: String) {
    if let Some(s) = status.as_mut() {
        s.state = Some("Failed".into());
        s.message = Some(message);
    }
}
