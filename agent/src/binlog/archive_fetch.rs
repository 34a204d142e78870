//! Getting binlogs back out of an archive for replay: which files hold the
//! transactions after a backup up to a target, whether the archive can
//! reach that target at all (a gap, or a target past its end, is refused by
//! name), and the files themselves as plain local binlogs, every segment
//! checked against the index on the way.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::archive_index::{ArchiveIndex, ArchivedFile, CommitTime, IndexError};
use super::gtid_set::GtidSet;
use crate::repo::reader::{ReadError, read_verified};
use crate::repo::{Key, Store};

/// How far replay goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayTarget {
    /// Up to these transactions (the restored `gtid_executed`).
    Gtids(GtidSet),
    /// Every transaction committed at or before this time.
    Time(CommitTime),
    /// Up to a byte position in a file of the archive (its newest file of
    /// that name).
    Position { file: String, position: u64 },
    /// Everything archived.
    Everything,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("there is no binlog archive at {0} (no binlog-index.json)")]
    NoArchive(String),
    #[error("{0}")]
    Key(String),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the binlog archive at {location} cannot reach the target: {reason}")]
    Unreachable { location: String, reason: String },
}

/// The archive's files to replay, in order: from the first holding a
/// transaction not in `from` to the one that holds the target's end.
/// Pure: refuses, naming what is missing, a target the archive cannot reach
/// from `from`.
pub fn plan_replay<'a>(
    index: &'a ArchiveIndex,
    from: &GtidSet,
    target: &ReplayTarget,
) -> Result<Vec<&'a ArchivedFile>, String> {
    let files = &index.files;
    let latest = index.recoverable_window().latest;
    let last = match target {
        ReplayTarget::Gtids(wanted) => {
            let need = wanted.subtract(from);
            if need.is_empty() {
                return Ok(Vec::new());
            }
            let archived = index.archived();
            let missing = need.subtract(&archived);
            if !missing.is_empty() {
                return Err(format!(
                    "it does not hold {missing}{}",
                    gaps_holding(index, &missing)
                ));
            }
            files.iter().rposition(|f| f.gtids.intersects(&need))
        }
        ReplayTarget::Time(at) => {
            match latest {
                Some(latest) if latest >= *at => {}
                _ => {
                    return Err(format!(
                        "{at} is past its end (it holds commits up to {})",
                        latest.map_or("nothing".to_owned(), |l| l.to_string())
                    ));
                }
            }
            Some(
                files
                    .iter()
                    .position(|f| f.last_event_time.is_some_and(|t| t > *at))
                    .unwrap_or(files.len().saturating_sub(1)),
            )
        }
        ReplayTarget::Position { file, position } => {
            let Some(at) = files.iter().rposition(|f| &f.name == file) else {
                return Err(format!("it has no binlog file named {file}"));
            };
            if files[at].size < *position {
                return Err(format!(
                    "{file} is archived up to byte {} only, before {position}",
                    files[at].size
                ));
            }
            Some(at)
        }
        ReplayTarget::Everything => files.len().checked_sub(1),
    };
    let Some(first) = files.iter().position(|f| !f.gtids.is_subset(from)) else {
        return Ok(Vec::new());
    };
    let Some(last) = last.filter(|l| *l >= first) else {
        return Ok(Vec::new());
    };
    // A diverged gap lies between two histories: the files after it do
    // not continue the ones before it, even where their Previous_gtids
    // would allow it (the new primary's file may begin before the
    // transactions it lacks).
    if let Some(gap) = index.gaps.iter().find(|g| {
        g.kind == super::archive_index::GapKind::Diverged
            && first < g.position
            && g.position <= last
    }) {
        return Err(format!(
            "the replay would cross a failover to a server of another history: {gap}; restore to \
             a point before it, or from a backup taken after it"
        ));
    }
    // Every file's predecessors must be in the backup or in a file replayed
    // before it: anything else was lost (a gap) or predates the archive.
    let mut have = from.clone();
    for file in &files[first..=last] {
        let missing = file.previous_gtids.subtract(&have);
        if !missing.is_empty() {
            return Err(format!(
                "{} of server {} follows transactions neither the backup nor the archive holds: \
                 {missing}{}",
                file.name,
                file.server_uuid,
                gaps_holding(index, &missing)
            ));
        }
        have.union_with(&file.gtids);
    }
    Ok(files[first..=last].iter().collect())
}

fn gaps_holding(index: &ArchiveIndex, missing: &GtidSet) -> String {
    let named: Vec<String> = index
        .gaps
        .iter()
        .filter(|g| g.missing.intersects(missing))
        .map(|g| g.to_string())
        .collect();
    if named.is_empty() {
        String::new()
    } else {
        format!(" ({})", named.join("; "))
    }
}

/// Downloads, decrypts, decompresses and checks, in order, the binlog files
/// that hold the transactions after `from` up to `target`, each as one
/// plain binlog file in `dest_dir` named as on the server (prefixed with
/// the server UUID's first 8 digits when two servers' files share a name).
pub async fn fetch_for_replay(
    store: &Store,
    key: Option<&Key>,
    from: &GtidSet,
    target: &ReplayTarget,
    dest_dir: &Path,
) -> Result<Vec<PathBuf>, FetchError> {
    let index = ArchiveIndex::load(store)
        .await?
        .ok_or_else(|| FetchError::NoArchive(store.describe()))?;
    match (&index.key_id, key) {
        (Some(theirs), None) => {
            return Err(FetchError::Key(format!(
                "the binlog archive at {} is encrypted (key {theirs}); give its key with --encrypt-key-file",
                store.describe()
            )));
        }
        (Some(theirs), Some(key)) if theirs != key.id() => {
            return Err(FetchError::Key(format!(
                "the binlog archive at {} is encrypted with key {theirs}, not with the given key ({})",
                store.describe(),
                key.id()
            )));
        }
        _ => {}
    }
    let files = plan_replay(&index, from, target).map_err(|reason| FetchError::Unreachable {
        location: store.describe(),
        reason,
    })?;
    let mut written = Vec::with_capacity(files.len());
    for file in files {
        let mut dest = dest_dir.join(&file.name);
        if written.contains(&dest) {
            let short = file.server_uuid.get(..8).unwrap_or(&file.server_uuid);
            dest = dest_dir.join(format!("{short}-{}", file.name));
        }
        let store = store.clone();
        let key = key.cloned();
        let file = file.clone();
        let path = dest.clone();
        tokio::task::spawn_blocking(move || download(&store, key.as_ref(), &file, &path))
            .await
            .map_err(|e| FetchError::Write {
                path: dest.clone(),
                source: std::io::Error::other(e.to_string()),
            })??;
        written.push(dest);
    }
    Ok(written)
}

/// Writes one archived file's segments, in order, to `dest`.
fn download(
    store: &Store,
    key: Option<&Key>,
    file: &ArchivedFile,
    dest: &Path,
) -> Result<(), FetchError> {
    let write_err = |source| FetchError::Write {
        path: dest.to_owned(),
        source,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(dest).map_err(write_err)?);
    let mut expected_start = 0;
    for segment in &file.segments {
        if segment.start != expected_start {
            return Err(FetchError::Unreachable {
                location: store.describe(),
                reason: format!(
                    "{}'s segments do not follow each other (byte {} expected, {} found)",
                    file.name, expected_start, segment.start
                ),
            });
        }
        read_verified(store, &segment.file_entry(), key, &mut |bytes| {
            out.write_all(bytes)
        })?;
        expected_start = segment.end;
    }
    out.flush().map_err(write_err)?;
    out.get_ref().sync_all().map_err(write_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::archive_index::{Gap, GapKind};

    const U: &str = "6f1c1a2e-0000-11ef-9d2f-0242ac120002";

    fn set(text: &str) -> GtidSet {
        text.replace('U', U).parse().unwrap()
    }

    fn file(name: &str, previous: &str, gtids: &str, times: (u64, u64)) -> ArchivedFile {
        ArchivedFile {
            server_uuid: U.into(),
            name: name.into(),
            previous_gtids: set(previous),
            gtids: set(gtids),
            first_event_time: Some(CommitTime(times.0)),
            last_event_time: Some(CommitTime(times.1)),
            size: 500,
            complete: true,
            segments: Vec::new(),
        }
    }

    fn archive() -> ArchiveIndex {
        let mut index = ArchiveIndex::new(None, None);
        index.files = vec![
            file("b.1", "", "U:1-10", (100, 200)),
            file("b.2", "U:1-10", "U:11-20", (300, 400)),
            file("b.3", "U:1-20", "U:21-30", (500, 600)),
        ];
        index
    }

    fn names(files: Vec<&ArchivedFile>) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn picks_the_files_after_the_backup_up_to_the_target() {
        let index = archive();
        let from = set("U:1-12");
        let gtid = ReplayTarget::Gtids(set("U:1-25"));
        assert_eq!(
            names(plan_replay(&index, &from, &gtid).unwrap()),
            ["b.2", "b.3"]
        );
        let time = ReplayTarget::Time(CommitTime(350));
        assert_eq!(names(plan_replay(&index, &from, &time).unwrap()), ["b.2"]);
        let time = ReplayTarget::Time(CommitTime(450));
        assert_eq!(
            names(plan_replay(&index, &from, &time).unwrap()),
            ["b.2", "b.3"]
        );
        let everything = ReplayTarget::Everything;
        assert_eq!(
            names(plan_replay(&index, &from, &everything).unwrap()).len(),
            2
        );
        let position = ReplayTarget::Position {
            file: "b.2".into(),
            position: 400,
        };
        assert_eq!(
            names(plan_replay(&index, &from, &position).unwrap()),
            ["b.2"]
        );
        assert!(
            plan_replay(&index, &set("U:1-30"), &everything)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_target_past_the_end_or_across_a_gap_is_refused_by_name() {
        let mut index = archive();
        let from = set("U:1-5");
        let err = plan_replay(&index, &from, &ReplayTarget::Gtids(set("U:1-40"))).unwrap_err();
        assert!(err.contains(&format!("does not hold {U}:31-40")), "{err}");
        let err = plan_replay(&index, &from, &ReplayTarget::Time(CommitTime(700))).unwrap_err();
        assert!(err.contains("past its end"), "{err}");
        // b.2 was purged before it was archived.
        index.files.remove(1);
        index.gaps.push(Gap {
            detected_at: CommitTime(1),
            kind: GapKind::Purged,
            missing: set("U:11-20"),
            position: 1,
            before: "b.3".into(),
            server_uuid: U.into(),
            message: "purged before archived".into(),
        });
        let err = plan_replay(&index, &from, &ReplayTarget::Gtids(set("U:1-25"))).unwrap_err();
        assert!(err.contains(&format!("does not hold {U}:11-20")), "{err}");
        assert!(err.contains("purged before archived"), "{err}");
        let err = plan_replay(&index, &from, &ReplayTarget::Time(CommitTime(550))).unwrap_err();
        assert!(
            err.contains("b.3") && err.contains(&format!("{U}:11-20")),
            "{err}"
        );
        // A backup taken after the gap reaches the target.
        let after = set("U:1-20");
        let ok = plan_replay(&index, &after, &ReplayTarget::Gtids(set("U:1-25"))).unwrap();
        assert_eq!(names(ok), ["b.3"]);
    }

    #[test]
    fn a_replay_across_a_diverged_failover_is_refused() {
        let mut index = archive();
        // b.3 is the new primary's: it lacks U:18-20 of b.2.
        index.files[2].previous_gtids = set("U:1-17");
        index.gaps.push(Gap {
            detected_at: CommitTime(1),
            kind: GapKind::Diverged,
            missing: set("U:18-20"),
            position: 2,
            before: "b.3".into(),
            server_uuid: U.into(),
            message: "lacks transactions the archive holds".into(),
        });
        let across = ReplayTarget::Gtids(set("U:1-30"));
        let err = plan_replay(&index, &set("U:1-5"), &across).unwrap_err();
        assert!(
            err.contains("another history") && err.contains("U:18-20".replace('U', U).as_str()),
            "{err}"
        );
        // Before the failover it is reachable.
        let before = ReplayTarget::Gtids(set("U:1-20"));
        assert_eq!(
            names(plan_replay(&index, &set("U:1-5"), &before).unwrap()),
            ["b.1", "b.2"]
        );
    }

    #[test]
    fn a_backup_older_than_the_archive_is_refused() {
        let mut index = archive();
        index.files.remove(0);
        let err = plan_replay(&index, &set("U:1-5"), &ReplayTarget::Everything).unwrap_err();
        assert!(err.contains(&format!("{U}:6-10")), "{err}");
    }
}
