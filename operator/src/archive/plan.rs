//! What a schedule's binlog archiving needs now: pure, from the schedule,
//! what its StatefulSet's agents say about the archive, the kept backups
//! and the time. The archiver runs on the primary's agent only: after a
//! failover the old primary's is stopped first, then the new primary's is
//! started (the archive continues across the server UUID change), so two
//! archivers never write one archive. Retention asks for archived binlogs
//! to be pruned up to the oldest kept backup's GTID set.

use std::time::Duration;

use innoxide_proto::agent::v1 as pb;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{BinlogArchiveStatus, BinlogGapStatus, MySQLBackupSchedule};
use crate::restore::point_in_time::describe_gap;
use crate::restore::step::Answer;
use crate::schedule::plan::Note;

/// How often an archiving schedule looks at its archiver (its lag, a
/// failover) between backups.
pub const ARCHIVE_RECHECK: Duration = Duration::from_secs(30);

/// One pod's agent, asked about the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct PodArchive {
    pub pod: String,
    pub answer: Answer<pb::BinlogArchiveStatus>,
}

/// What the reconcile observed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// The primary (its pod name), or why there is none to archive on.
    pub primary: Option<Result<String, String>>,
    /// Every pod whose agent could be asked, with its answer.
    pub pods: Vec<PodArchive>,
    /// The oldest kept Completed backup of the schedule: its name and
    /// GTID set (binlogs it holds all of are no longer needed).
    pub oldest_kept: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveAct {
    /// StartBinlogArchive on this pod.
    Start { pod: String },
    /// StopBinlogArchive on this pod.
    Stop { pod: String },
    /// PruneBinlogArchive through this pod's agent, up to the backup's set.
    Prune {
        pod: String,
        backup: String,
        covered_by: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArchivePlan {
    /// None: the schedule does not archive (the status field goes).
    pub status: Option<BinlogArchiveStatus>,
    pub acts: Vec<ArchiveAct>,
    pub notes: Vec<Note>,
    /// Look again within this long.
    pub requeue_after: Option<Duration>,
}

fn running(answer: &Answer<pb::BinlogArchiveStatus>) -> Option<&pb::BinlogArchiveStatus> {
    match answer {
        Answer::Found(s) if s.state == pb::ArchiveState::Running as i32 => Some(s),
        _ => None,
    }
}

pub fn plan(schedule: &MySQLBackupSchedule, observed: &Observed, now: Timestamp) -> ArchivePlan {
    let old = schedule
        .status
        .as_ref()
        .and_then(|s| s.binlog_archive.clone());
    let spec = schedule.spec.binlog_archive.as_ref();
    let enabled = spec.is_some_and(|s| s.enabled);
    let primary = match &observed.primary {
        Some(Ok(pod)) if enabled => Some(pod.as_str()),
        _ => None,
    };
    // Archivers that must stop: all when archiving is off, else every one
    // not on the primary (a failover moved the primary away from it).
    let strays: Vec<&PodArchive> = observed
        .pods
        .iter()
        .filter(|p| running(&p.answer).is_some() && Some(p.pod.as_str()) != primary)
        .collect();
    let mut acts: Vec<ArchiveAct> = strays
        .iter()
        .map(|p| ArchiveAct::Stop { pod: p.pod.clone() })
        .collect();
    let mut notes = Vec::new();
    let Some(_) = spec else {
        return ArchivePlan {
            status: None,
            requeue_after: (!acts.is_empty()).then_some(ARCHIVE_RECHECK),
            acts,
            notes,
        };
    };
    let location = schedule
        .spec
        .backup_template
        .spec
        .storage
        .child(crate::api::BINLOG_ARCHIVE_FOLDER)
        .repository_url();
    let mut status = BinlogArchiveStatus {
        location: Some(location),
        updated_at: Some(Time(now)),
        ..old.clone().unwrap_or_default()
    };
    if !enabled {
        status.state = Some("Stopped".into());
        status.message =
            Some("spec.binlogArchive.enabled is false: not archiving; the archive stays".into());
        status.lag_seconds = None;
        return ArchivePlan {
            status: Some(status),
            requeue_after: (!acts.is_empty()).then_some(ARCHIVE_RECHECK),
            acts,
            notes,
        };
    }
    let primary = match &observed.primary {
        Some(Ok(pod)) => pod.clone(),
        Some(Err(why)) => {
            status.state = Some("Waiting".into());
            status.message = Some(format!("no primary to archive on: {why}"));
            return ArchivePlan {
                status: Some(status),
                acts,
                notes,
                requeue_after: Some(ARCHIVE_RECHECK),
            };
        }
        None => {
            status.state = Some("Waiting".into());
            status.message = Some("looking for the primary".into());
            return ArchivePlan {
                status: Some(status),
                acts,
                notes,
                requeue_after: Some(ARCHIVE_RECHECK),
            };
        }
    };
    status.pod = Some(primary.clone());
    let answer = observed
        .pods
        .iter()
        .find(|p| p.pod == primary)
        .map(|p| p.answer.clone())
        .unwrap_or_default();
    match &answer {
        Answer::Found(found) if found.state == pb::ArchiveState::Running as i32 => {
            fill(&mut status, found);
            status.state = Some("Archiving".into());
            status.message = Some(format!(
                "pod {primary} archives the binlogs of server {}",
                found.server_uuid
            ));
        }
        Answer::Found(_) | Answer::NotFound | Answer::NotAsked => {
            if let Answer::Found(found) = &answer {
                fill(&mut status, found);
            }
            if strays.is_empty() {
                acts.push(ArchiveAct::Start {
                    pod: primary.clone(),
                });
                let failed = match &answer {
                    Answer::Found(found) if found.state == pb::ArchiveState::Failed as i32 => {
                        found.error.as_ref().map(|e| e.message.clone())
                    }
                    _ => None,
                };
                status.state = Some("Starting".into());
                status.message = Some(match failed {
                    Some(why) => {
                        format!("the archiver on pod {primary} failed ({why}); starting it again")
                    }
                    None => format!("starting the archiver on pod {primary}"),
                });
            } else {
                let from: Vec<&str> = strays.iter().map(|p| p.pod.as_str()).collect();
                status.state = Some("Moving".into());
                status.message = Some(format!(
                    "the primary is now {primary}: stopping the archiver on {} first",
                    from.join(", ")
                ));
                notes.push(Note {
                    warning: false,
                    reason: "ArchiveMoving",
                    message: format!(
                        "binlog archiving moves from {} to the new primary {primary}",
                        from.join(", ")
                    ),
                });
            }
        }
        Answer::Unreachable(why) => {
            status.state = Some("Waiting".into());
            status.message = Some(why.clone());
        }
        Answer::Refused(why) => {
            status.state = Some("Failed".into());
            status.message = Some(why.clone());
        }
    }
    // A gap the status did not show before: tell it once.
    let known: Vec<&BinlogGapStatus> = old.iter().flat_map(|o| &o.gaps).collect();
    for gap in &status.gaps {
        if !known.contains(&gap) {
            notes.push(Note {
                warning: true,
                reason: "BinlogGap",
                message: format!(
                    "the binlog archive at {} has a {}: no point-in-time restore can cross it; take a new backup to restore past it",
                    status.location.clone().unwrap_or_default(),
                    describe_gap(gap)
                ),
            });
        }
    }
    if let Some((backup, gtid)) = &observed.oldest_kept
        && status.state.as_deref() == Some("Archiving")
        && status.retained_from.as_deref() != Some(backup.as_str())
    {
        acts.push(ArchiveAct::Prune {
            pod: primary,
            backup: backup.clone(),
            covered_by: gtid.clone(),
        });
    }
    ArchivePlan {
        status: Some(status),
        acts,
        notes,
        requeue_after: Some(ARCHIVE_RECHECK),
    }
}

/// The agent's view of the archive, in the resource's words.
fn fill(status: &mut BinlogArchiveStatus, found: &pb::BinlogArchiveStatus) {
    let time = |t: &Option<innoxide_proto::prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
            .map(Time)
    };
    status.server_uuid = Some(found.server_uuid.clone()).filter(|u| !u.is_empty());
    status.earliest = time(&found.earliest);
    status.latest = time(&found.latest);
    status.lag_seconds = (found.state == pb::ArchiveState::Running as i32)
        .then_some((found.lag_seconds * 10.0).round() / 10.0);
    status.gaps = found
        .gaps
        .iter()
        .map(|g| BinlogGapStatus {
            reason: g.reason.clone(),
            after_file: g.after_file.clone(),
            before_file: g.before_file.clone(),
            missing: g.missing.clone(),
            from_time: time(&g.from_time),
            to_time: time(&g.to_time),
        })
        .collect();
}

/// The oldest Completed backup retention keeps: binlogs whose transactions
/// it holds all of serve no restore any more. `kept` are the schedule's
/// backups minus those retention deletes now.
pub fn oldest_kept(kept: &[&crate::api::MySQLBackup]) -> Option<(String, String)> {
    kept.iter()
        .filter(|b| {
            b.phase() == crate::api::BackupPhase::Completed
                && b.metadata.deletion_timestamp.is_none()
        })
        .filter_map(|b| {
            let status = b.status.as_ref()?;
            Some((
                status.completion_time.as_ref()?.0,
                b.metadata.name.clone()?,
                status.gtid_executed.clone()?,
            ))
        })
        .min()
        .map(|(_, name, gtid)| (name, gtid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BinlogArchiveSpec;
    use crate::fixtures::{BackupBuilder, ScheduleBuilder, ts};

    const NOW: &str = "2026-11-21T12:00:00Z";

    fn archiving() -> MySQLBackupSchedule {
        let mut schedule = ScheduleBuilder::cron("0 3 * * *").build();
        schedule.spec.binlog_archive = Some(BinlogArchiveSpec {
            enabled: true,
            upload_interval_seconds: Some(10),
        });
        schedule
    }

    fn agent(state: pb::ArchiveState, uuid: &str) -> Answer<pb::BinlogArchiveStatus> {
        Answer::Found(pb::BinlogArchiveStatus {
            state: state as i32,
            server_uuid: uuid.into(),
            lag_seconds: 2.04,
            earliest: Some(innoxide_proto::prost_types::Timestamp {
                seconds: ts("2026-11-19T03:00:00Z").as_second(),
                nanos: 0,
            }),
            latest: Some(innoxide_proto::prost_types::Timestamp {
                seconds: ts("2026-11-21T11:59:58Z").as_second(),
                nanos: 0,
            }),
            ..pb::BinlogArchiveStatus::default()
        })
    }

    fn pod(name: &str, answer: Answer<pb::BinlogArchiveStatus>) -> PodArchive {
        PodArchive {
            pod: name.into(),
            answer,
        }
    }

    fn observed(primary: &str, pods: Vec<PodArchive>) -> Observed {
        Observed {
            primary: Some(Ok(primary.into())),
            pods,
            oldest_kept: None,
        }
    }

    #[test]
    fn the_primary_s_agent_is_asked_to_archive_into_the_storage_s_binlogs_folder() {
        let p = plan(
            &archiving(),
            &observed(
                "db-0",
                vec![pod("db-0", Answer::NotFound), pod("db-1", Answer::NotFound)],
            ),
            ts(NOW),
        );
        assert_eq!(p.acts, [ArchiveAct::Start { pod: "db-0".into() }]);
        let status = p.status.unwrap();
        assert_eq!(status.location.as_deref(), Some("s3://bk/binlogs"));
        assert_eq!(status.state.as_deref(), Some("Starting"));
        assert_eq!(p.requeue_after, Some(ARCHIVE_RECHECK));
    }

    #[test]
    fn a_running_archiver_shows_its_window_and_lag() {
        let p = plan(
            &archiving(),
            &observed(
                "db-0",
                vec![pod("db-0", agent(pb::ArchiveState::Running, "u0"))],
            ),
            ts(NOW),
        );
        assert!(p.acts.is_empty(), "{:?}", p.acts);
        let status = p.status.unwrap();
        assert_eq!(status.state.as_deref(), Some("Archiving"));
        assert_eq!(status.lag_seconds, Some(2.0));
        assert_eq!(status.earliest, Some(Time(ts("2026-11-19T03:00:00Z"))));
        assert_eq!(status.latest, Some(Time(ts("2026-11-21T11:59:58Z"))));
        assert_eq!(status.server_uuid.as_deref(), Some("u0"));
    }

    #[test]
    fn after_a_failover_the_old_primary_stops_before_the_new_one_starts() {
        let schedule = archiving();
        let moved = observed(
            "db-1",
            vec![
                pod("db-0", agent(pb::ArchiveState::Running, "u0")),
                pod("db-1", Answer::NotFound),
            ],
        );
        let p = plan(&schedule, &moved, ts(NOW));
        assert_eq!(p.acts, [ArchiveAct::Stop { pod: "db-0".into() }]);
        assert_eq!(p.status.as_ref().unwrap().state.as_deref(), Some("Moving"));
        assert!(p.notes.iter().any(|n| n.reason == "ArchiveMoving"));
        // Stopped: now the new primary starts, continuing the archive.
        let stopped = observed(
            "db-1",
            vec![
                pod("db-0", agent(pb::ArchiveState::Stopped, "u0")),
                pod("db-1", Answer::NotFound),
            ],
        );
        assert_eq!(
            plan(&schedule, &stopped, ts(NOW)).acts,
            [ArchiveAct::Start { pod: "db-1".into() }]
        );
    }

    #[test]
    fn disabling_or_removing_archiving_stops_every_archiver() {
        let mut schedule = archiving();
        schedule.spec.binlog_archive.as_mut().unwrap().enabled = false;
        let running = observed(
            "db-0",
            vec![pod("db-0", agent(pb::ArchiveState::Running, "u0"))],
        );
        let p = plan(&schedule, &running, ts(NOW));
        assert_eq!(p.acts, [ArchiveAct::Stop { pod: "db-0".into() }]);
        assert_eq!(p.status.unwrap().state.as_deref(), Some("Stopped"));
        schedule.spec.binlog_archive = None;
        let p = plan(&schedule, &running, ts(NOW));
        assert_eq!(p.acts, [ArchiveAct::Stop { pod: "db-0".into() }]);
        assert_eq!(p.status, None);
    }

    #[test]
    fn a_new_gap_is_told_once_as_a_warning() {
        let mut schedule = archiving();
        let mut with_gap = agent(pb::ArchiveState::Running, "u0");
        if let Answer::Found(s) = &mut with_gap {
            s.gaps.push(pb::BinlogGap {
                after_file: "binlog.000007".into(),
                before_file: "binlog.000009".into(),
                reason: "PURGED_BEFORE_ARCHIVED".into(),
                missing: "binlog.000008".into(),
                ..pb::BinlogGap::default()
            });
        }
        let seen = observed("db-0", vec![pod("db-0", with_gap)]);
        let p = plan(&schedule, &seen, ts(NOW));
        let gap: Vec<&Note> = p.notes.iter().filter(|n| n.reason == "BinlogGap").collect();
        assert_eq!(gap.len(), 1);
        assert!(gap[0].warning);
        assert!(
            gap[0].message.contains("binlog.000007 and binlog.000009"),
            "{}",
            gap[0].message
        );
        schedule
            .status
            .get_or_insert_with(Default::default)
            .binlog_archive = p.status;
        let again = plan(&schedule, &seen, ts(NOW));
        assert!(again.notes.iter().all(|n| n.reason != "BinlogGap"));
    }

    #[test]
    fn retention_prunes_the_archive_up_to_the_oldest_kept_backup_once() {
        let kept = [
            BackupBuilder::named("d21")
                .completed_at("2026-11-21T03:10:00Z")
                .with_gtid("u:1-300")
                .build(),
            BackupBuilder::named("d20")
                .completed_at("2026-11-20T03:10:00Z")
                .with_gtid("u:1-200")
                .build(),
            BackupBuilder::named("r").running_on("db-0").build(),
        ];
        let refs: Vec<&crate::api::MySQLBackup> = kept.iter().collect();
        let oldest = oldest_kept(&refs);
        assert_eq!(oldest, Some(("d20".into(), "u:1-200".into())));
        let mut schedule = archiving();
        let mut seen = observed(
            "db-0",
            vec![pod("db-0", agent(pb::ArchiveState::Running, "u0"))],
        );
        seen.oldest_kept = oldest;
        let p = plan(&schedule, &seen, ts(NOW));
        assert_eq!(
            p.acts,
            [ArchiveAct::Prune {
                pod: "db-0".into(),
                backup: "d20".into(),
                covered_by: "u:1-200".into()
            }]
        );
        // Done once (the controller records retainedFrom after it).
        let mut status = p.status.unwrap();
        status.retained_from = Some("d20".into());
        schedule
            .status
            .get_or_insert_with(Default::default)
            .binlog_archive = Some(status);
        assert!(plan(&schedule, &seen, ts(NOW)).acts.is_empty());
    }

    #[test]
    fn no_primary_waits_and_says_why() {
        let seen = Observed {
            primary: Some(Err(
                "pod db-0 is not ready (not Ready); waiting for it".into()
            )),
            ..Observed::default()
        };
        let p = plan(&archiving(), &seen, ts(NOW));
        assert!(p.acts.is_empty());
        let status = p.status.unwrap();
        assert_eq!(status.state.as_deref(), Some("Waiting"));
        assert!(status.message.unwrap().contains("db-0 is not ready"));
    }
}
