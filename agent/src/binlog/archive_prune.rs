//! Retention for the binlog archive: the oldest files go once every
//! transaction in them is in a backup that is kept (`covered_by`, that
//! backup's `gtid_executed`), since no restore replays them any more.
//!
//! Only a run of files from the start goes, never the last one (archiving
//! continues in it), so the index stays one unbroken history whose first
//! file's Previous_gtids is the new base. The index is written first and the
//! segments deleted after: a crash in between leaves unnamed objects, never
//! an index naming missing ones. With an archiver running, prune through
//! it ([`ArchiveStatus::prune`](super::archive::ArchiveStatus::prune)): the
//! index has one writer.

use super::archive_index::{ArchiveIndex, ArchivedFile, IndexError};
use super::gtid_set::GtidSet;
use crate::repo::{Store, StoreError};

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// The archived files removed, oldest first.
    pub removed: Vec<String>,
    /// Stored bytes freed.
    pub freed_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("there is no binlog archive at {0} (no binlog-index.json)")]
    NoArchive(String),
}

/// Takes from the index the leading files whose transactions are all in
/// `covered_by` (never the last file) and the gaps before them. Pure.
pub fn prune_index(index: &mut ArchiveIndex, covered_by: &GtidSet) -> Vec<ArchivedFile> {
    let keep_last = index.files.len().saturating_sub(1);
    let count = index.files[..keep_last]
        .iter()
        .take_while(|f| f.gtids.is_subset(covered_by))
        .count();
    let removed: Vec<ArchivedFile> = index.files.drain(..count).collect();
    // A gap at position p lies before files[p]: one at or before the new
    // start is before the archive now (the kept backups hold past it).
    index.gaps.retain(|g| g.position > count);
    for gap in &mut index.gaps {
        gap.position -= count;
    }
    removed
}

/// Deletes the stored segments of files taken out of the index.
pub async fn delete_segments(
    store: &Store,
    removed: &[ArchivedFile],
) -> Result<PruneReport, StoreError> {
    let mut report = PruneReport::default();
    for file in removed {
        for segment in &file.segments {
            store.delete(&segment.path).await?;
            report.freed_bytes += segment.stored_size.unwrap_or(segment.end - segment.start);
        }
        report.removed.push(file.name.clone());
    }
    Ok(report)
}

/// Prunes an archive no archiver is writing to.
pub async fn prune_archive(store: &Store, covered_by: &GtidSet) -> Result<PruneReport, PruneError> {
    let mut index = ArchiveIndex::load(store)
        .await?
        .ok_or_else(|| PruneError::NoArchive(store.describe()))?;
    let removed = prune_index(&mut index, covered_by);
    if removed.is_empty() {
        return Ok(PruneReport::default());
    }
    index.save(store).await?;
    Ok(delete_segments(store, &removed).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::archive_index::{CommitTime, Gap, GapKind};

    const U: &str = "6f1c1a2e-0000-11ef-9d2f-0242ac120002";

    fn set(text: &str) -> GtidSet {
        text.replace('U', U).parse().unwrap()
    }

    fn file(name: &str, previous: &str, gtids: &str) -> ArchivedFile {
        ArchivedFile {
            server_uuid: U.into(),
            name: name.into(),
            previous_gtids: set(previous),
            gtids: set(gtids),
            first_event_time: Some(CommitTime(1)),
            last_event_time: Some(CommitTime(2)),
            size: 10,
            complete: true,
            segments: Vec::new(),
        }
    }

    #[test]
    fn only_leading_covered_files_go_never_the_last_and_gaps_follow() {
        let mut index = ArchiveIndex::new(None, None);
        index.files = vec![
            file("b.1", "", "U:1-10"),
            file("b.2", "U:1-10", "U:11-20"),
            file("b.4", "U:1-30", "U:31-40"),
        ];
        let gap = |position| Gap {
            detected_at: CommitTime(1),
            kind: GapKind::Purged,
            missing: set("U:21-30"),
            position,
            before: "b.4".into(),
            server_uuid: U.into(),
            message: "purged".into(),
        };
        index.gaps = vec![gap(2)];
        let history = index.history();
        let removed = prune_index(&mut index, &set("U:1-15"));
        assert_eq!(removed.len(), 1);
        assert_eq!(index.files[0].name, "b.2");
        assert_eq!(index.gaps, vec![gap(1)]);
        assert!(index.history().is_subset(&history));
        // Covered up to the gap: the gap goes with the files before it.
        let removed = prune_index(&mut index, &set("U:1-100"));
        assert_eq!(removed.len(), 1);
        assert_eq!(index.files.len(), 1, "the last file stays");
        assert!(index.gaps.is_empty());
        assert_eq!(index.history(), set("U:1-40"));
    }
}
