//! What a backup does with the records of the captured redo that a copy
//! cannot be repaired from: an index built without redo
//! (`MLOG_INDEX_LOAD`) and tablespace file operations (found by
//! [`crate::innodb::redo_walk`]).
//!
//! The backup lock is held during the whole copy, so the DDL statements it
//! blocks wait, and none of their index builds or file operations can land
//! in the captured redo after the lock was granted. Anything found there
//! came from an operation the lock does not block (or a server variant that
//! lets DDL through): the copy of that tablespace may lack pages written
//! without redo, or the file may have been created, renamed or deleted
//! under the copy. Such a backup is refused, naming the tablespaces.
//! Records older than the lock belong to statements that had finished
//! before the copy began: their pages were flushed and their files were in
//! place when they were copied, and recovery replays them as it would after
//! a crash.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::innodb::redo::Lsn;
use crate::innodb::redo_walk::{SpaceEvent, SpaceEventKind, WalkSummary};

/// The records of `walk` a copy made after `lock_lsn` cannot be repaired from.
pub fn unrepairable(walk: &WalkSummary, lock_lsn: Lsn) -> Vec<&SpaceEvent> {
    walk.events.iter().filter(|e| e.lsn >= lock_lsn).collect()
}

/// Why the backup is refused, for the user: every affected tablespace by
/// id and file (from `files`, space id to the file's name in the backup).
pub fn refusal(events: &[&SpaceEvent], files: &HashMap<u32, String>) -> String {
    let mut text = String::from(
        "the redo written during the copy shows changes a hot copy cannot be repaired from, \
         made by an operation the backup lock does not block:",
    );
    for event in events {
        let _ = write!(text, " {event}");
        if let (SpaceEventKind::IndexLoad, Some(file)) = (&event.kind, files.get(&event.space_id)) {
            let _ = write!(text, " [{file}]");
        }
        text.push(';');
    }
    text.push_str(
        " no backup was written. Take it again once that operation is over (an ALTER TABLE that \
         rebuilds or indexes a table, or a file created, renamed or dropped outside DDL)",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::innodb::redo_record::{FileOp, RecordType};

    fn walk(events: Vec<SpaceEvent>) -> WalkSummary {
        WalkSummary {
            start_lsn: 1000,
            end_lsn: 9000,
            end_checked: true,
            events,
            groups: 10,
            records: 20,
            bytes: 8000,
            blocks_checked: 16,
            counts: vec![(RecordType::INDEX_LOAD, 1)],
        }
    }

    #[test]
    fn only_records_after_the_lock_count_and_the_refusal_names_them() {
        let before = SpaceEvent {
            lsn: 1500,
            space_id: 3,
            kind: SpaceEventKind::IndexLoad,
        };
        let load = SpaceEvent {
            lsn: 5000,
            space_id: 7,
            kind: SpaceEventKind::IndexLoad,
        };
        let drop = SpaceEvent {
            lsn: 6000,
            space_id: 8,
            kind: SpaceEventKind::File(FileOp::Delete {
                path: "./shop/old.ibd".into(),
            }),
        };
        let summary = walk(vec![before, load.clone(), drop.clone()]);
        assert!(unrepairable(&summary, 9000).is_empty());
        let found = unrepairable(&summary, 2000);
        assert_eq!(found, vec![&load, &drop]);
        let files = HashMap::from([(7, "shop/orders.ibd".to_owned())]);
        let text = refusal(&found, &files);
        assert!(
            text.contains("an index of tablespace 7 was built without redo (MLOG_INDEX_LOAD at LSN 5000) [shop/orders.ibd]"),
            "{text}"
        );
        assert!(
            text.contains("tablespace 8 (./shop/old.ibd) was deleted at LSN 6000"),
            "{text}"
        );
        assert!(text.contains("no backup was written"), "{text}");
    }
}
