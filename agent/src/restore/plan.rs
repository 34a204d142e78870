//! Where each file of a prepared datadir goes on restore. Pure: the caller
//! lists the prepared folder and does the copying.
//!
//! - Files that lived outside the source's datadir (undo tablespaces in
//!   their own directory, tables created with DATA DIRECTORY) go back to
//!   their original absolute path, as the manifest recorded it; that is
//!   where the restored server's data dictionary looks for them.
//! - Everything else keeps its place relative to the datadir.
//! - Left out: apply-log's own files, the redo files of the mini instance
//!   (the prepared datadir was shut down slowly and cleanly, so the
//!   restored server needs no redo and creates fresh files at its first
//!   start, sized by its own innodb_redo_log_capacity), the temporary
//!   tablespaces, and `auto.cnf` for a clone (a new server UUID).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::meta::Manifest;
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
/// into `datadir`; `originals` from [`original_paths`].
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
