//! Where each file of a prepared datadir goes on restore. Pure: the caller
//! lists the prepared folder and does the copying.
//!
//! - System data files go to the target's `innodb_data_home_dir` and undo
//!   tablespaces to its `innodb_undo_directory`, when the target's options
//!   say ([`TargetLayout`]); that is where its mysqld looks for them.
//! - Other files that lived outside the source's datadir (tables created
//!   with DATA DIRECTORY, and system or undo files when the target's
//!   options are not given) go back to their original absolute path, as
//!   the manifest recorded it; a subfolder of the source's datadir becomes
//!   the same subfolder of the target's.
//! - Everything else keeps its place relative to the datadir.
//! - Left out: apply-log's own files, the redo files of the mini instance
//!   (the prepared datadir was shut down slowly and cleanly, so the
//!   restored server needs no redo and creates fresh files at its first
//!   start, sized by its own innodb_redo_log_capacity), the temporary
//!   tablespaces, and `auto.cnf` for a clone (a new server UUID).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::meta::{FileKind, Manifest};
use crate::prepare::OWN_FILES;

/// The redo folder: restored empty.
pub const REDO_DIR: &str = "#innodb_redo";
const TEMP_DIR: &str = "#innodb_temp";
const TEMP_TABLESPACE: &str = "ibtmp1";
pub const AUTO_CNF: &str = "auto.cnf";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Relative to the prepared folder.
    pub from: PathBuf,
    /// Absolute.
    pub to: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub placements: Vec<Placement>,
    /// Files of the prepared folder that are not restored.
    pub left_out: Vec<PathBuf>,
}

impl Plan {
    /// Placements outside the datadir: they land in folders that may hold
    /// other files, so each target is checked on its own.
    pub fn outside<'a>(&'a self, datadir: &'a Path) -> impl Iterator<Item = &'a Placement> + 'a {
        self.placements
            .iter()
            .filter(move |p| !p.to.starts_with(datadir))
    }
}

/// Where the target server keeps the InnoDB files that need not be in its
/// datadir, from its options; `None` where they are not known. Relative
/// folders are under the datadir, as mysqld reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetLayout {
    pub data_home_dir: Option<PathBuf>,
    pub undo_directory: Option<PathBuf>,
}

/// Where each file that does not simply keep its place under the datadir
/// goes, by its `/`-separated path in the backup.
pub fn targets(
    manifest: &Manifest,
    datadir: &Path,
    layout: &TargetLayout,
) -> BTreeMap<String, PathBuf> {
    let under_datadir = |dir: &PathBuf| datadir.join(dir);
    let home = |kind: FileKind| match kind {
        FileKind::SystemTablespace => layout.data_home_dir.as_ref().map(under_datadir),
        FileKind::UndoTablespace => layout.undo_directory.as_ref().map(under_datadir),
        _ => None,
    };
    manifest
        .files
        .iter()
        .filter_map(|f| {
            let to = match (home(f.kind), &f.original_path) {
                (Some(dir), _) => dir.join(f.path.rsplit('/').next().unwrap_or(&f.path)),
                (None, Some(original)) => match original.strip_prefix(&manifest.source_datadir) {
                    Ok(inside) => datadir.join(inside),
                    Err(_) => original.clone(),
                },
                (None, None) => return None,
            };
            Some((f.path.clone(), to))
        })
        .collect()
}

/// Where files outside the source's datadir lived, by their `/`-separated
/// path in the backup.
pub fn original_paths(manifest: &Manifest) -> BTreeMap<String, PathBuf> {
    manifest
        .files
        .iter()
        .filter_map(|f| Some((f.path.clone(), f.original_path.clone()?)))
        .collect()
}

/// Plans the restore of `files` (relative paths in the prepared folder)
/// into `datadir`; `originals` from [`targets`].
pub fn plan(
    files: &[PathBuf],
    originals: &BTreeMap<String, PathBuf>,
    datadir: &Path,
    new_server_uuid: bool,
) -> Plan {
    let mut out = Plan::default();
    for file in files {
        if is_left_out(file, new_server_uuid) {
            out.left_out.push(file.clone());
            continue;
        }
        let slash_path = file
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let to = originals
            .get(&slash_path)
            .cloned()
            .unwrap_or_else(|| datadir.join(file));
        out.placements.push(Placement {
            from: file.clone(),
            to,
        });
    }
    out
}

/// Whether `file` (relative to a prepared datadir) stays out of a restore;
/// `new_server_uuid` leaves `auto.cnf` out too.
pub fn is_left_out(file: &Path, new_server_uuid: bool) -> bool {
    let first = file
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy())
        .unwrap_or_default();
    if first == REDO_DIR || first == TEMP_DIR {
        return true;
    }
    let top_level = file.components().count() == 1;
    top_level
        && (OWN_FILES.contains(&first.as_ref())
            || first == TEMP_TABLESPACE
            || (new_server_uuid && first == AUTO_CNF))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn originals() -> BTreeMap<String, PathBuf> {
        [
            ("undo_001", "/undo/undo_001"),
            ("external/mnt/fast/t1.ibd", "/mnt/fast/t1.ibd"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), PathBuf::from(v)))
        .collect()
    }

    fn files(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn files_go_to_the_datadir_or_back_where_they_lived() {
        let names = files(&[
            "ibdata1",
            "undo_001",
            "external/mnt/fast/t1.ibd",
            "sbtest/sbtest1.ibd",
            "binlog.000002",
            "binlog.000003",
            "binlog.index",
            "auto.cnf",
            "#ib_16384_0.dblwr",
            "mysql.ibd",
        ]);
        let datadir = Path::new("/restore/data");
        let plan = plan(&names, &originals(), datadir, false);
        let to: Vec<_> = plan
            .placements
            .iter()
            .map(|p| p.to.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            to,
            [
                "/restore/data/ibdata1",
                "/undo/undo_001",
                "/mnt/fast/t1.ibd",
                "/restore/data/sbtest/sbtest1.ibd",
                "/restore/data/binlog.000002",
                "/restore/data/binlog.000003",
                "/restore/data/binlog.index",
                "/restore/data/auto.cnf",
                "/restore/data/#ib_16384_0.dblwr",
                "/restore/data/mysql.ibd",
            ]
        );
        let outside: Vec<_> = plan.outside(datadir).map(|p| p.to.clone()).collect();
        assert_eq!(
            outside,
            [PathBuf::from("/undo/undo_001"), "/mnt/fast/t1.ibd".into()]
        );
        assert!(plan.left_out.is_empty());
    }

    #[test]
    fn system_and_undo_files_go_where_the_target_keeps_them() {
        let entry = |path: &str, kind: FileKind, original: Option<&str>| crate::meta::FileEntry {
            path: path.into(),
            kind,
            original_path: original.map(PathBuf::from),
            size: 0,
            sha256: String::new(),
            stored_size: None,
            stored_sha256: None,
            space_id: None,
        };
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "tool": "t", "tool_version": "1", "backup_type": "full-backuped",
            "server_version": "9.7.4", "server_uuid": "u", "server_id": 1, "page_size": 16384,
            "redo": {"start_checkpoint_lsn": 0, "from_lsn": 0, "to_lsn": 0, "last_lsn": 0, "captured_bytes": 0},
            "binlog_file": "", "binlog_position": 0, "gtid_executed": "",
            "source_datadir": "/src/data", "source_undo_directory": "/src/undo",
            "compression": null, "encryption": null, "started_at": "", "finished_at": "",
            "lock_seconds": 0.0, "files": []
        }))
        .unwrap();
        let manifest = Manifest {
            files: vec![
                entry(
                    "ibdata_a",
                    FileKind::SystemTablespace,
                    Some("/src/sys/ibdata_a"),
                ),
                entry(
                    "undo_001",
                    FileKind::UndoTablespace,
                    Some("/src/undo/undo_001"),
                ),
                entry(
                    "u3.ibu",
                    FileKind::UndoTablespace,
                    Some("/src/data/undo/u3.ibu"),
                ),
                entry(
                    "external/mnt/t.ibd",
                    FileKind::Tablespace,
                    Some("/mnt/t.ibd"),
                ),
                entry("db/t.ibd", FileKind::Tablespace, None),
            ],
            ..manifest
        };
        let datadir = Path::new("/new/data");
        let as_left = targets(&manifest, datadir, &TargetLayout::default());
        let to = |m: &BTreeMap<String, PathBuf>, k: &str| m.get(k).cloned();
        assert_eq!(to(&as_left, "ibdata_a"), Some("/src/sys/ibdata_a".into()));
        assert_eq!(to(&as_left, "u3.ibu"), Some("/new/data/undo/u3.ibu".into()));
        assert_eq!(
            to(&as_left, "external/mnt/t.ibd"),
            Some("/mnt/t.ibd".into())
        );
        assert_eq!(to(&as_left, "db/t.ibd"), None);
        let layout = TargetLayout {
            data_home_dir: Some("/new/sys".into()),
            undo_directory: Some("undo".into()),
        };
        let by_options = targets(&manifest, datadir, &layout);
        assert_eq!(
            to(&by_options, "ibdata_a"),
            Some("/new/sys/ibdata_a".into())
        );
        assert_eq!(
            to(&by_options, "undo_001"),
            Some("/new/data/undo/undo_001".into())
        );
        assert_eq!(
            to(&by_options, "u3.ibu"),
            Some("/new/data/undo/u3.ibu".into())
        );
        assert_eq!(
            to(&by_options, "external/mnt/t.ibd"),
            Some("/mnt/t.ibd".into())
        );
    }

    #[test]
    fn apply_logs_own_files_redo_and_temp_are_left_out() {
        let names = files(&[
            "xtrabackup_checkpoints",
            "mysql-stderr",
            "mysql-stdout",
            "#innodb_redo/#ib_redo1",
            "#innodb_redo/#ib_redo2_tmp",
            "#innodb_temp/temp_1.ibt",
            "ibtmp1",
            "sbtest/xtrabackup_checkpoints",
            "auto.cnf",
        ]);
        let p = plan(&names, &originals(), Path::new("/d"), false);
        assert_eq!(
            p.placements,
            vec![
                Placement {
                    from: "sbtest/xtrabackup_checkpoints".into(),
                    to: "/d/sbtest/xtrabackup_checkpoints".into()
                },
                Placement {
                    from: "auto.cnf".into(),
                    to: "/d/auto.cnf".into()
                }
            ]
        );
        let clone = plan(&names, &originals(), Path::new("/d"), true);
        assert!(clone.left_out.contains(&PathBuf::from("auto.cnf")));
    }
}
