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
//! under the copy. After the copy the backup re-copies the tablespaces whose
//! indexes were built (see `recopy_index_builds` in the backup), and refuses
//! a file operation, naming the tablespaces; so is anything found later,
//! up to the consistent point. With `--lock-ddl=reduced` the same applies
//! from the start of the copy, the lock being taken only after it.
//! Records older than the lock belong to statements that had finished
//! before the copy began: their pages were flushed and their files were in
//! place when they were copied, and recovery replays them as it would after
//! a crash.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::innodb::redo::Lsn;
use crate::innodb::redo_record::FileOp;
use crate::innodb::redo_walk::{SpaceEvent, SpaceEventKind, WalkSummary};

/// The records of `walk` a copy made after `lock_lsn` cannot be repaired from.
pub fn unrepairable(walk: &WalkSummary, lock_lsn: Lsn) -> Vec<&SpaceEvent> {
    walk.events.iter().filter(|e| e.lsn >= lock_lsn).collect()
}

/// Whether a file operation logged before the files were listed (at
/// `listed_lsn`) is over in that listing: a created file was listed, a
/// deleted one was not, a renamed one was listed under its new name
/// (`files`: space id to the listed file's name in the backup).
pub fn listed_as_done(event: &SpaceEvent, listed_lsn: Lsn, files: &HashMap<u32, String>) -> bool {
    if event.lsn >= listed_lsn {
        return false;
    }
    let listed = files.get(&event.space_id);
    // Redo names files relative to the datadir ("./db/t.ibd").
    let same = |path: &str, listed: &str| path.trim_start_matches("./") == listed;
    match &event.kind {
        SpaceEventKind::IndexLoad => false,
        SpaceEventKind::File(FileOp::Create { path, .. }) => listed.is_some_and(|l| same(path, l)),
        SpaceEventKind::File(FileOp::Rename { to, .. }) => listed.is_some_and(|l| same(to, l)),
        SpaceEventKind::File(FileOp::Delete { .. }) => listed.is_none(),
    }
}

/// Why the backup is refused, for the user: every affected tablespace by
/// id and file (from `files`, space id to the file's name in the backup).
/// `reduced`: the copy ran without the backup lock (`--lock-ddl=reduced`).
pub fn refusal(events: &[&SpaceEvent], files: &HashMap<u32, String>, reduced: bool) -> String {
    let mut text = String::from(if reduced {
        "the redo written during the copy, which ran without the backup lock \
         (--lock-ddl=reduced), shows tablespace files created, renamed or deleted, which a hot \
         copy cannot be repaired from:"
    } else {
        "the redo written during the copy shows changes a hot copy cannot be repaired from, \
         made by an operation the backup lock does not block:"
    });
    for event in events {
        let _ = write!(text, " {event}");
        if let (SpaceEventKind::IndexLoad, Some(file)) = (&event.kind, files.get(&event.space_id)) {
            let _ = write!(text, " [{file}]");
        }
        text.push(';');
    }
    text.push_str(if reduced {
        " no backup was written. Take it again with --lock-ddl=on (DDL then waits for the copy)"
    } else {
        " no backup was written. Take it again once that operation is over (an ALTER TABLE that \
         rebuilds or indexes a table, or a file created, renamed or dropped outside DDL)"
    });
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::innodb::redo_record::RecordType;

    #[test]
    fn file_operations_over_before_the_listing_are_done() {
        let files = HashMap::from([(7, "shop/orders.ibd".to_owned())]);
        let event = |lsn, space_id, op| SpaceEvent {
            lsn,
            space_id,
            kind: SpaceEventKind::File(op),
        };
        let create = |path: &str| FileOp::Create {
            path: path.into(),
            flags: 33,
        };
        assert!(listed_as_done(
            &event(10, 7, create("./shop/orders.ibd")),
            100,
            &files
        ));
        // After the listing, or not in it: not done.
        assert!(!listed_as_done(
            &event(100, 7, create("./shop/orders.ibd")),
            100,
            &files
        ));
        assert!(!listed_as_done(
            &event(10, 8, create("./shop/new.ibd")),
            100,
            &files
        ));
        let delete = FileOp::Delete {
            path: "./shop/old.ibd".into(),
        };
        assert!(listed_as_done(&event(10, 8, delete.clone()), 100, &files));
        assert!(!listed_as_done(&event(10, 7, delete), 100, &files));
        let rename = |to: &str| FileOp::Rename {
            from: "./shop/x.ibd".into(),
            to: to.into(),
        };
        assert!(listed_as_done(
            &event(10, 7, rename("./shop/orders.ibd")),
            100,
            &files
        ));
        assert!(!listed_as_done(
            &event(10, 7, rename("./shop/y.ibd")),
            100,
            &files
        ));
    }

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
        let text = refusal(&found, &files, false);
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
