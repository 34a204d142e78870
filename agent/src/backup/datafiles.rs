//! Which files a backup copies, and where each goes inside the backup.
//!
//! The server's own list (`information_schema.FILES`) is the authority for
//! InnoDB tablespaces: it names general tablespaces and tables created with
//! DATA DIRECTORY outside the datadir, which a directory walk would miss.
//! Under the backup lock no DDL runs, so the list stays true while we copy.

use std::path::{Path, PathBuf};

use crate::innodb::page;
use crate::meta::FileKind;
use crate::mysql::facts::SystemDataFile;
use crate::mysql::{InnodbFile, ServerFacts};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub source: PathBuf,
    /// Path inside the backup, `/`-separated.
    pub dest: String,
    pub kind: FileKind,
    /// Set for files that live outside the datadir on the source.
    pub original_path: Option<PathBuf>,
    /// Tablespace id and FSP flags from the server's dictionary, for
    /// InnoDB files (page 0 of a new tablespace may not be on disk yet).
    pub space: Option<(u32, u32)>,
    /// The page number of the file's first page: 0 but for the second and
    /// later files of a system tablespace made of several.
    pub first_page: u64,
    /// Tablespace id from the server's dictionary, also when it gives no
    /// flags (the system and undo tablespaces): what an incremental
    /// backup matches tablespaces by.
    pub space_id: Option<u32>,
}

/// Extensions of non-InnoDB table files (MyISAM, CSV, ARCHIVE, MERGE) and of
/// serialized dictionary info for them.
const NON_INNODB_EXTENSIONS: &[&str] = &["MYD", "MYI", "sdi", "CSV", "CSM", "MRG", "ARZ", "ARM"];

/// Folder inside the backup for tablespaces that lived outside the datadir;
/// below it the original absolute path is kept.
pub const EXTERNAL_DIR: &str = "external";

/// Plans the InnoDB files from the server's list.
pub fn plan_innodb(facts: &ServerFacts, rows: &[InnodbFile]) -> Vec<DataFile> {
    let system_files = crate::mysql::facts::system_data_files(&facts.data_file_path);
    let mut files: Vec<DataFile> = rows
        .iter()
        .filter(|row| row.file_type != "TEMPORARY")
        .map(|row| {
            let system = row.space_id == Some(0);
            // The server names these relative to the folder they live in,
            // not the datadir: `./ibdata1` is in innodb_data_home_dir,
            // `./u3.ibu` (CREATE UNDO TABLESPACE) in innodb_undo_directory.
            let (kind, home) = if row.file_type == "UNDO LOG" {
                (FileKind::UndoTablespace, &facts.undo_directory)
            } else if system {
                (FileKind::SystemTablespace, &facts.data_home_dir)
            } else {
                (FileKind::Tablespace, &facts.datadir)
            };
            let source = absolute(home, &row.name);
            let mut file = place(facts, source, kind);
            file.space = row.space_id.zip(row.flags);
            if system {
                // No dictionary flags for space 0; the files after the
                // first continue its page numbers.
                file.space = Some((0, page::flags_for_page_size(facts.page_size)));
                file.first_page = first_page(&system_files, &file.source, facts);
            }
            file.space_id = row.space_id;
            file
        })
        .collect();
    files.sort_by(|a, b| a.dest.cmp(&b.dest));
    files.dedup_by(|a, b| a.dest == b.dest);
    files
}

/// The page number the first page of system data file `source` has: the
/// pages of the files before it in innodb_data_file_path (which cannot
/// grow: only the last file autoextends).
fn first_page(system_files: &[SystemDataFile], source: &Path, facts: &ServerFacts) -> u64 {
    let mut pages = 0;
    for file in system_files {
        if absolute(&facts.data_home_dir, &file.path) == source {
            return pages;
        }
        pages += file.bytes / u64::from(facts.page_size.max(1));
    }
    0
}

/// Refuses encrypted tablespaces up front, naming them. Their pages are
/// only readable with the source's keyring (keyring_file or
/// component_keyring_file), which a backup does not carry, so apply-log
/// could never recover them: better said before the copy than found hours
/// into it as pages that never validate.
pub fn refuse_encrypted(rows: &[InnodbFile]) -> Result<(), String> {
    let encrypted: Vec<&str> = rows
        .iter()
        .filter(|row| {
            row.flags
                .is_some_and(|f| f & crate::innodb::page::FSP_FLAGS_MASK_ENCRYPTION != 0)
        })
        .map(|row| row.name.as_str())
        .collect();
    if encrypted.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = encrypted.iter().take(5).copied().collect();
    Err(format!(
        "{} encrypted tablespace(s) ({}{}): backing up encrypted tablespaces needs the \
         server's keyring, which Innoxide does not support yet; decrypt them \
         (ALTER TABLE … ENCRYPTION='N') or back them up another way",
        encrypted.len(),
        shown.join(", "),
        if encrypted.len() > shown.len() {
            ", …"
        } else {
            ""
        }
    ))
}

/// Where a file goes: the datadir's layout is kept; system and undo
/// tablespaces go to the root wherever they lived (backup-my.cnf points the
/// mini instance there), with their original path remembered when it was
/// not the datadir itself; anything else outside the datadir goes below
/// `external/` with its original path remembered for copy-back.
fn place(facts: &ServerFacts, source: PathBuf, kind: FileKind) -> DataFile {
    let at_root = matches!(kind, FileKind::SystemTablespace | FileKind::UndoTablespace);
    if let Ok(relative) = source.strip_prefix(&facts.datadir)
        && (!at_root || relative.components().count() == 1)
    {
        return DataFile {
            dest: slash_path(relative),
            source,
            kind,
            original_path: None,
            space: None,
            first_page: 0,
            space_id: None,
        };
    }
    let file_name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dest = if at_root {
        file_name
    } else {
        format!(
            "{EXTERNAL_DIR}/{}",
            slash_path(source.strip_prefix("/").unwrap_or(&source))
        )
    };
    DataFile {
        original_path: Some(source.clone()),
        source,
        dest,
        kind,
        space: None,
        first_page: 0,
        space_id: None,
    }
}

/// Non-InnoDB table files in the datadir's schema folders.
pub fn plan_non_innodb(facts: &ServerFacts) -> std::io::Result<Vec<DataFile>> {
    let mut files = Vec::new();
    for schema in std::fs::read_dir(&facts.datadir)? {
        let schema = schema?;
        if !schema.file_type()?.is_dir() {
            continue;
        }
        let name = schema.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('#') || name == "performance_schema" {
            continue;
        }
        for entry in std::fs::read_dir(schema.path())? {
            let entry = entry?;
            let path = entry.path();
            let wanted = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| NON_INNODB_EXTENSIONS.contains(&e));
            if wanted && entry.file_type()?.is_file() {
                files.push(place(facts, path, FileKind::NonInnodb));
            }
        }
    }
    files.sort_by(|a, b| a.dest.cmp(&b.dest));
    Ok(files)
}

fn absolute(datadir: &Path, name: &str) -> PathBuf {
    let path = Path::new(name);
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        datadir.join(path)
    };
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ServerFacts {
        let vars = [
            ("version", "9.7.4"),
            ("server_uuid", "u"),
            ("server_id", "1"),
            ("datadir", "/data/"),
            ("innodb_page_size", "16384"),
            ("innodb_data_file_path", "ibdata1:12M:autoextend"),
            ("innodb_undo_directory", "/undo"),
        ];
        crate::mysql::facts_from_pairs(&vars).unwrap()
    }

    #[test]
    fn encrypted_tablespaces_are_refused_by_name() {
        let mut plain = row("./shop/a.ibd", "TABLESPACE");
        plain.flags = Some(0x4021);
        let mut secret = row("./shop/b.ibd", "TABLESPACE");
        secret.flags = Some(0x4021 | crate::innodb::page::FSP_FLAGS_MASK_ENCRYPTION);
        refuse_encrypted(&[plain.clone()]).unwrap();
        let err = refuse_encrypted(&[plain, secret]).unwrap_err();
        assert!(
            err.contains("1 encrypted tablespace(s) (./shop/b.ibd)"),
            "{err}"
        );
        assert!(err.contains("keyring"), "{err}");
    }

    fn row(name: &str, t: &str) -> InnodbFile {
        InnodbFile {
            name: name.into(),
            file_type: t.into(),
            space_id: Some(7),
            flags: Some(0x4021),
        }
    }

    #[test]
    fn keeps_the_datadir_layout_and_skips_temporary_tablespaces() {
        let mut system = row("./ibdata1", "TABLESPACE");
        (system.space_id, system.flags) = (Some(0), None);
        let plan = plan_innodb(
            &facts(),
            &[
                system,
                row("./mysql.ibd", "TABLESPACE"),
                row("./sbtest/sbtest1.ibd", "TABLESPACE"),
                row("./ibtmp1", "TEMPORARY"),
                row("./#innodb_temp/temp_1.ibt", "TEMPORARY"),
                row("/undo/undo_001", "UNDO LOG"),
                row("/mnt/fast/t1.ibd", "TABLESPACE"),
            ],
        );
        let dests: Vec<_> = plan.iter().map(|f| (f.dest.as_str(), f.kind)).collect();
        assert_eq!(
            dests,
            vec![
                ("external/mnt/fast/t1.ibd", FileKind::Tablespace),
                ("ibdata1", FileKind::SystemTablespace),
                ("mysql.ibd", FileKind::Tablespace),
                ("sbtest/sbtest1.ibd", FileKind::Tablespace),
                ("undo_001", FileKind::UndoTablespace),
            ]
        );
        let external = &plan[0];
        assert_eq!(
            external.original_path.as_deref(),
            Some(Path::new("/mnt/fast/t1.ibd"))
        );
        assert_eq!(
            plan[4].original_path.as_deref(),
            Some(Path::new("/undo/undo_001"))
        );
    }

    #[test]
    fn system_and_undo_files_are_found_in_their_own_folders() {
        let vars = [
            ("version", "9.7.4"),
            ("server_uuid", "u"),
            ("server_id", "1"),
            ("datadir", "/data/"),
            ("innodb_page_size", "16384"),
            ("innodb_data_home_dir", "/sys"),
            (
                "innodb_data_file_path",
                "ibdata_a:3M;ibdata_b:12M:autoextend",
            ),
            ("innodb_undo_directory", "/data/undo"),
        ];
        let facts = crate::mysql::facts_from_pairs(&vars).unwrap();
        let mut system_a = row("./ibdata_a", "TABLESPACE");
        let mut system_b = row("./ibdata_b", "TABLESPACE");
        for r in [&mut system_a, &mut system_b] {
            (r.space_id, r.flags) = (Some(0), None);
        }
        let plan = plan_innodb(
            &facts,
            &[
                system_a,
                system_b,
                row("/data/undo/undo_001", "UNDO LOG"),
                row("./u3.ibu", "UNDO LOG"),
            ],
        );
        let seen: Vec<_> = plan
            .iter()
            .map(|f| {
                (
                    f.dest.as_str(),
                    f.source.to_str().unwrap(),
                    f.first_page,
                    f.original_path.is_some(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("ibdata_a", "/sys/ibdata_a", 0, true),
                ("ibdata_b", "/sys/ibdata_b", 192, true),
                ("u3.ibu", "/data/undo/u3.ibu", 0, true),
                ("undo_001", "/data/undo/undo_001", 0, true),
            ]
        );
        assert_eq!(plan[1].space, Some((0, page::flags_for_page_size(16384))));
    }
}
