//! `apply-log --backup-repository R --backup-dir WORK --stop-…`: the base
//! backup chosen from a repository of several ([`super::base`]'s rule),
//! checked against the binlog archive's index (the newest backup the
//! archive can reach the target from), then fetched into WORK as plain
//! files, verified on the way, where apply-log prepares it to the point.
//! The repository is only read.

use std::path::Path;

use super::base::{self, BaseCandidate, TargetContext};
use super::target::StopTarget;
use super::{ArchiveSource, BinlogSource, PitrError};
use crate::binlog::{ArchiveIndex, CommitTime, GtidSet, plan_replay};
use crate::meta::Manifest;
use crate::repo::lifecycle::{self, Listed};
use crate::repo::{Key, RepoOptions, Store};

/// The backup chosen, and why.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// Its folder in the repository.
    pub name: String,
    pub location: String,
    pub store: Store,
    pub manifest: Manifest,
    /// Why this one: for the user's terminal and the log.
    pub why: String,
}

/// Chooses the base backup for `target` among the full backups of the
/// repository at `location`: the newest whose consistent point is at or
/// before the target and, with an archive, from which the archive reaches
/// the target. Refuses, naming the oldest backup's point, when none does.
pub async fn choose(
    location: &str,
    options: &RepoOptions,
    binlogs: &BinlogSource,
    target: &StopTarget,
) -> Result<Chosen, PitrError> {
    let repo_err = |e: &dyn std::fmt::Display| PitrError::Repository(format!("{location}: {e}"));
    let store = crate::repo::open(location, options).map_err(|e| repo_err(&e))?;
    let listed = lifecycle::list(&store).await.map_err(|e| repo_err(&e))?;
    let index = match binlogs {
        BinlogSource::Archive(archive) => Some(load_index(archive).await?),
        BinlogSource::Dir(_) => None,
    };
    let chosen = choose_among(&listed, index.as_ref(), target)
        .map_err(|message| PitrError::NoBase(format!("{location}: {message}")))?;
    let (name, why) = chosen;
    let found = listed
        .iter()
        .find(|b| b.name == name)
        .expect("the chosen backup is listed");
    let store = store.child(&name);
    Ok(Chosen {
        location: store.describe(),
        store,
        manifest: found.manifest.clone(),
        name,
        why,
    })
}

async fn load_index(archive: &ArchiveSource) -> Result<ArchiveIndex, PitrError> {
    let store = crate::repo::open(&archive.location, &archive.repo)
        .map_err(|e| PitrError::Archive(e.to_string()))?;
    ArchiveIndex::load(&store)
        .await
        .map_err(|e| PitrError::Archive(e.to_string()))?
        .ok_or_else(|| {
            PitrError::Archive(format!(
                "there is no binlog archive at {} (no binlog-index.json)",
                store.describe()
            ))
        })
}

/// Pure: the chosen backup's name and why, or why none qualifies.
pub fn choose_among(
    listed: &[Listed],
    index: Option<&ArchiveIndex>,
    target: &StopTarget,
) -> Result<(String, String), String> {
    if listed.is_empty() {
        return Err("the repository holds no complete backup".into());
    }
    let full: Vec<&Listed> = listed
        .iter()
        .filter(|b| b.manifest.incremental.is_none())
        .collect();
    let incrementals = listed.len() - full.len();
    let context = TargetContext {
        // A position names a file of the archive: of its newest server
        // with a file of that name.
        position_server_uuid: match (target, index) {
            (StopTarget::Position { file, .. }, Some(index)) => index
                .files
                .iter()
                .rev()
                .find(|f| &f.name == file)
                .map(|f| f.server_uuid.clone()),
            _ => None,
        },
    };
    let qualifying = base::bases_before(target, &context, full.iter().map(|b| candidate(b)));
    if qualifying.is_empty() {
        let oldest = full.first().map_or_else(
            || "none: it holds incremental backups only".to_owned(),
            |b| point_of(b),
        );
        return Err(format!(
            "no full backup is at or before {target}; a point-in-time restore starts from a \
             backup taken before the point. The oldest full backup: {oldest}{}",
            skipped_incrementals(incrementals)
        ));
    }
    let mut unreachable = Vec::new();
    for base in &qualifying {
        let backup = base.item;
        let Some(index) = index else {
            return Ok((
                backup.name.clone(),
                why(backup, target, &qualifying, incrementals, &[]),
            ));
        };
        let from = base.gtid_executed.clone().unwrap_or_default();
        match plan_replay(index, &from, &super::replay_target(target)) {
            Ok(_) => {
                return Ok((
                    backup.name.clone(),
                    why(backup, target, &qualifying, incrementals, &unreachable),
                ));
            }
            Err(reason) => unreachable.push(format!("{}: {reason}", backup.name)),
        }
    }
    Err(format!(
        "the binlog archive cannot reach {target} from any backup before it:\n  {}",
        unreachable.join("\n  ")
    ))
}

fn candidate(backup: &Listed) -> BaseCandidate<&Listed> {
    let m = &backup.manifest;
    BaseCandidate {
        item: backup,
        gtid_executed: m.gtid_executed.trim().parse::<GtidSet>().ok(),
        binlog: (!m.binlog_file.is_empty()).then(|| (m.binlog_file.clone(), m.binlog_position)),
        server_uuid: (!m.server_uuid.is_empty()).then(|| m.server_uuid.clone()),
        finished_at: time::OffsetDateTime::parse(
            &m.finished_at,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
        .map(CommitTime::from_datetime),
        tie_break: backup.name.clone(),
    }
}

/// A backup's consistent point, for a person.
fn point_of(backup: &Listed) -> String {
    let m = &backup.manifest;
    format!(
        "{} (finished {}, gtid_executed {}, binlog {}:{})",
        backup.name,
        m.finished_at,
        if m.gtid_executed.trim().is_empty() {
            "none"
        } else {
            m.gtid_executed.trim()
        },
        m.binlog_file,
        m.binlog_position
    )
}

fn why(
    chosen: &Listed,
    target: &StopTarget,
    qualifying: &[BaseCandidate<&Listed>],
    incrementals: usize,
    unreachable: &[String],
) -> String {
    let rule = match target {
        StopTarget::Gtid(_) => "its gtid_executed is within the target set",
        StopTarget::Time(_) => "it finished at or before the target time",
        StopTarget::Position { .. } => "its binlog position is at or before the target's",
    };
    let mut text = format!(
        "base backup {}: the newest of {} full backup(s) before {target} ({rule})",
        point_of(chosen),
        qualifying.len()
    );
    if !unreachable.is_empty() {
        text.push_str(&format!(
            " that the binlog archive reaches the target from; passed over: {}",
            unreachable.join("; ")
        ));
    }
    text.push_str(&skipped_incrementals(incrementals));
    text
}

fn skipped_incrementals(count: usize) -> String {
    if count == 0 {
        String::new()
    } else {
        format!(
            " ({count} incremental backup(s) not considered: a point-in-time restore from an \
             incremental chain is not built yet)"
        )
    }
}

/// Fetches the chosen backup into `dir` as plain files, verifying each;
/// a `dir` holding that backup already (an earlier run) is used as it is.
/// Refuses a `dir` holding anything else: it is never overwritten.
pub async fn fetch(chosen: &Chosen, key: Option<&Key>, dir: &Path) -> Result<bool, PitrError> {
    let refuse =
        |why: String| PitrError::Repository(format!("--backup-dir {}: {why}", dir.display()));
    if dir.join(crate::meta::MANIFEST).exists() {
        let held = crate::verify::read_manifest(dir).map_err(|e| refuse(e.to_string()))?;
        if held.backup_id() == chosen.manifest.backup_id() {
            return Ok(false);
        }
        return Err(refuse(format!(
            "it holds another backup (finished {}, gtid_executed {}), not {}; give an empty or new folder",
            held.finished_at, held.gtid_executed, chosen.name
        )));
    }
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(refuse(e.to_string())),
    };
    if !empty {
        return Err(refuse(
            "it is not empty and holds no backup (a fetch cut short?); remove it or give an empty folder"
                .into(),
        ));
    }
    lifecycle::check_key(&chosen.manifest, key).map_err(|e| refuse(e.to_string()))?;
    let (store, manifest, key, dest) = (
        chosen.store.clone(),
        chosen.manifest.clone(),
        key.cloned(),
        dir.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dest).map_err(|e| e.to_string())?;
        let fetched = lifecycle::fetch(&store, &manifest, key.as_ref(), &dest, &mut |_| {});
        if fetched.is_err() {
            // The folder was empty: what is in it now is this fetch's,
            // incomplete (no manifest); a next run starts clean.
            let _ = std::fs::remove_dir_all(&dest);
        }
        fetched.map_err(|e| e.to_string())
    })
    .await
    .expect("the fetch task does not panic")
    .map_err(|e| PitrError::Repository(format!("fetching {}: {e}", chosen.location)))?;
    Ok(true)
}
