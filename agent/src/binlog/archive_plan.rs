//! Where archiving continues, and what was lost: the pure decision the
//! archiver makes at the start of every pass from the index and the
//! server's files (docs/binlog-archive.md, "Resuming and gaps").

use super::archive_index::{ArchiveIndex, GapKind};
use super::gtid_set::GtidSet;

/// One of the server's binlog files, with its Previous_gtids event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFile {
    pub name: String,
    pub previous_gtids: GtidSet,
}

/// Where to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Index in the server's file list of the first file to read.
    pub file: usize,
    /// The index's last file is that file: continue it at its `size`.
    /// Otherwise a new file entry starts at byte 0.
    pub continue_tip: bool,
    /// Gaps found (not yet recorded).
    pub gaps: Vec<FoundGap>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundGap {
    pub kind: GapKind,
    pub missing: GtidSet,
    /// The server file archived right after it.
    pub before: String,
    pub message: String,
}

/// Decides where this server's archiving goes on. `files` are the server's
/// binlog files, oldest first (not empty); `gtid_executed` the server's.
pub fn resume(
    index: &ArchiveIndex,
    server_uuid: &str,
    files: &[ServerFile],
    gtid_executed: &GtidSet,
) -> Resume {
    // After an agent or server restart: the same server still has the file
    // the archive stopped in (checked by its Previous_gtids, so a file of
    // the same name from another history is not taken for it).
    if let Some(tip) = index.tip().filter(|t| t.server_uuid == server_uuid)
        && let Some(at) = files
            .iter()
            .position(|f| f.name == tip.name && f.previous_gtids == tip.previous_gtids)
    {
        return if tip.complete {
            Resume {
                file: at + 1,
                continue_tip: false,
                gaps: Vec::new(),
            }
        } else {
            Resume {
                file: at,
                continue_tip: true,
                gaps: Vec::new(),
            }
        };
    }
    if index.files.is_empty() {
        // A new archive starts with the oldest file the server has; what
        // came before is the base backups' business.
        return Resume {
            file: 0,
            continue_tip: false,
            gaps: Vec::new(),
        };
    }
    let history = index.history();
    let mut gaps = Vec::new();
    let tip = index.tip().map(|t| (t.server_uuid.clone(), t.name.clone()));
    let (tip_uuid, tip_name) = tip.unwrap_or_default();
    if tip_uuid != server_uuid {
        let lost = history.subtract(gtid_executed);
        if !lost.is_empty() {
            gaps.push(FoundGap {
                kind: GapKind::Diverged,
                missing: lost.clone(),
                before: files[0].name.clone(),
                message: format!(
                    "the server {server_uuid} (archived after {tip_uuid}'s {tip_name}) lacks \
                     transactions the archive holds: its history does not continue the archive's"
                ),
            });
        }
    }
    // The newest file whose predecessors are all archived: everything in
    // the files before it is in its Previous_gtids, so in the archive.
    let newest_covered = files
        .iter()
        .rposition(|f| f.previous_gtids.is_subset(&history));
    let file = match newest_covered {
        Some(at) => at,
        None => {
            let missing = files[0].previous_gtids.subtract(&history);
            gaps.push(FoundGap {
                kind: GapKind::Purged,
                missing: missing.clone(),
                before: files[0].name.clone(),
                message: format!(
                    "binlogs of {server_uuid} were purged before they were archived: its oldest \
                     file, {}, follows transactions the archive never got (the archive stopped in \
                     {tip_uuid}'s {tip_name})",
                    files[0].name
                ),
            });
            0
        }
    };
    Resume {
        file,
        continue_tip: false,
        gaps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::archive_index::{ArchivedFile, CommitTime};

    const U: &str = "6f1c1a2e-0000-11ef-9d2f-0242ac120002";
    const V: &str = "aaaaaaaa-0000-11ef-9d2f-0242ac120002";

    fn set(text: &str) -> GtidSet {
        text.replace('U', U).replace('V', V).parse().unwrap()
    }

    fn archived(
        uuid: &str,
        name: &str,
        previous: &str,
        gtids: &str,
        complete: bool,
    ) -> ArchivedFile {
        ArchivedFile {
            server_uuid: uuid.into(),
            name: name.into(),
            previous_gtids: set(previous),
            gtids: set(gtids),
            first_event_time: Some(CommitTime(1)),
            last_event_time: Some(CommitTime(2)),
            size: 100,
            complete,
            segments: Vec::new(),
        }
    }

    fn on_server(name: &str, previous: &str) -> ServerFile {
        ServerFile {
            name: name.into(),
            previous_gtids: set(previous),
        }
    }

    fn index(files: Vec<ArchivedFile>) -> ArchiveIndex {
        let mut index = ArchiveIndex::new(None, None);
        index.files = files;
        index
    }

    #[test]
    fn an_empty_archive_starts_at_the_oldest_file() {
        let files = [
            on_server("b.000004", "U:1-10"),
            on_server("b.000005", "U:1-20"),
        ];
        let r = resume(&index(vec![]), U, &files, &set("U:1-25"));
        assert_eq!((r.file, r.continue_tip, r.gaps.len()), (0, false, 0));
    }

    #[test]
    fn after_an_agent_restart_the_open_file_goes_on_and_after_a_server_restart_the_next() {
        let files = [on_server("b.000001", ""), on_server("b.000002", "U:1-10")];
        let open = index(vec![archived(U, "b.000001", "", "U:1-5", false)]);
        assert_eq!(resume(&open, U, &files, &set("U:1-12")).file, 0);
        assert!(resume(&open, U, &files, &set("U:1-12")).continue_tip);
        let done = index(vec![archived(U, "b.000001", "", "U:1-10", true)]);
        let r = resume(&done, U, &files, &set("U:1-12"));
        assert_eq!((r.file, r.continue_tip, r.gaps.len()), (1, false, 0));
    }

    #[test]
    fn a_file_purged_before_it_was_archived_is_a_gap_named_by_its_transactions() {
        let archive = index(vec![archived(U, "b.000001", "", "U:1-5", false)]);
        // b.000001's rest (6-10) and b.000002 (11-20) were purged.
        let files = [
            on_server("b.000003", "U:1-20"),
            on_server("b.000004", "U:1-30"),
        ];
        let r = resume(&archive, U, &files, &set("U:1-35"));
        assert_eq!(r.file, 0);
        assert_eq!(r.gaps.len(), 1);
        assert_eq!(r.gaps[0].kind, GapKind::Purged);
        assert_eq!(r.gaps[0].missing, set("U:6-20"));
        assert_eq!(r.gaps[0].before, "b.000003");
    }

    #[test]
    fn a_failover_to_a_server_that_continues_the_history_is_no_gap() {
        let archive = index(vec![archived(U, "b.000002", "U:1-10", "U:11-20", false)]);
        // The new primary V replicated U:1-20, then wrote its own.
        let files = [
            on_server("b.000001", ""),
            on_server("b.000002", "U:1-15"),
            on_server("b.000003", "U:1-20,V:1-3"),
        ];
        let r = resume(&archive, V, &files, &set("U:1-20,V:1-9"));
        // b.000002 holds V:1-3 (b.000003 follows them), and U:11-15 again:
        // replay skips what it has executed.
        assert_eq!((r.file, r.continue_tip, r.gaps.len()), (1, false, 0));
    }

    #[test]
    fn a_failover_to_a_server_that_lacks_archived_transactions_is_a_diverged_gap() {
        let archive = index(vec![archived(U, "b.000002", "U:1-10", "U:11-20", false)]);
        let files = [
            on_server("b.000001", "U:1-10"),
            on_server("b.000002", "U:1-18,V:1-2"),
        ];
        let r = resume(&archive, V, &files, &set("U:1-18,V:1-5"));
        assert_eq!(r.file, 0);
        assert_eq!(r.gaps.len(), 1);
        assert_eq!(r.gaps[0].kind, GapKind::Diverged);
        assert_eq!(r.gaps[0].missing, set("U:19-20"));
    }
}
