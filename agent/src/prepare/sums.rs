//! The checksums of a prepared datadir: apply-log seals what its mini
//! instance produced in `innoxide_prepared.sha256` (the format of
//! `sha256sum`, so `sha256sum -c` checks it by hand too), and copy-back
//! checks every file against it before it puts anything in a datadir.
//!
//! The raw backup's manifest cannot do this job: recovery rewrites pages,
//! so the prepared files are new bytes that only apply-log can vouch for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::fileops::{self, FileError};
use crate::restore;

/// The seal, at the top of the prepared datadir.
pub const SUMS_FILE: &str = "innoxide_prepared.sha256";

#[derive(Debug, thiserror::Error)]
pub enum SumsError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Meta(#[from] crate::meta::Error),
    #[error(
        "{dir} has no {SUMS_FILE}: it was prepared by an older version or not by apply-log, so its \
         files cannot be checked; remove {dir} and run apply-log again"
    )]
    Missing { dir: PathBuf },
    #[error("{path}: line {line} of {SUMS_FILE} is not `<sha256>  <path>`")]
    Malformed { path: PathBuf, line: usize },
    #[error(
        "{path} of the prepared datadir is damaged: its SHA-256 is {found}, apply-log sealed \
         {expected}; nothing was restored (remove the prepared folder and run apply-log again)"
    )]
    Mismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "{path} is listed in {SUMS_FILE} but missing from the prepared datadir; nothing was restored"
    )]
    Absent { path: PathBuf },
    #[error(
        "{path} is in the prepared datadir but apply-log did not seal it; nothing was restored"
    )]
    Unsealed { path: PathBuf },
}

/// Hashes every file below `dir` that a restore puts into a datadir, and
/// writes the seal (synced) into it. The mini instance's redo and
/// temporary files and apply-log's own files are never restored
/// ([`restore::plan::is_left_out`]), so they are not sealed: at the
/// source's redo capacity they would be gigabytes hashed for nothing.
/// Files are hashed on several threads.
pub fn seal(dir: &Path) -> Result<(), SumsError> {
    let files: Vec<PathBuf> = fileops::list_files(dir)?
        .into_iter()
        .filter(|relative| is_sealed(relative))
        .collect();
    let sums = fileops::sha256_files(dir, &files)?;
    let mut text = String::new();
    for (relative, sha256) in files.iter().zip(sums) {
        text.push_str(&format!("{sha256}  {}\n", relative.display()));
    }
    crate::meta::write_atomically(dir, SUMS_FILE, text.as_bytes())?;
    Ok(())
}

/// Whether a file of a prepared datadir is covered by the seal: those a
/// restore uses (with the source's server UUID, so `auto.cnf` is).
fn is_sealed(relative: &Path) -> bool {
    relative != Path::new(SUMS_FILE) && !restore::plan::is_left_out(relative, false)
}

/// Checks that `files` (relative to `dir`) are exactly what apply-log
/// sealed, byte for byte. Reads every file once; changes nothing. Files a
/// restore leaves out are not checked (an older apply-log sealed them too;
/// then they must still be there).
pub fn check(dir: &Path, files: &[PathBuf]) -> Result<(), SumsError> {
    let sealed = read(dir)?;
    let checked: Vec<PathBuf> = files
        .iter()
        .filter(|relative| is_sealed(relative))
        .cloned()
        .collect();
    if let Some(unsealed) = checked.iter().find(|r| !sealed.contains_key(*r)) {
        return Err(SumsError::Unsealed {
            path: dir.join(unsealed),
        });
    }
    let found = fileops::sha256_files(dir, &checked)?;
    for (relative, found) in checked.iter().zip(found) {
        let expected = &sealed[relative];
        if &found != expected {
            return Err(SumsError::Mismatch {
                path: dir.join(relative),
                found,
                expected: expected.clone(),
            });
        }
    }
    if let Some(absent) = sealed.keys().find(|p| !files.contains(p)) {
        return Err(SumsError::Absent {
            path: dir.join(absent),
        });
    }
    Ok(())
}

fn read(dir: &Path) -> Result<BTreeMap<PathBuf, String>, SumsError> {
    let path = dir.join(SUMS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SumsError::Missing {
                dir: dir.to_owned(),
            });
        }
        Err(e) => return Err(FileError::at("read", &path, e).into()),
    };
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let (sha256, file) = line
                .split_once("  ")
                .filter(|(sha, file)| {
                    sha.len() == 64
                        && sha.bytes().all(|b| b.is_ascii_hexdigit())
                        && !file.is_empty()
                })
                .ok_or_else(|| SumsError::Malformed {
                    path: path.clone(),
                    line: n + 1,
                })?;
            Ok((PathBuf::from(file), sha256.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datadir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("ibdata1"), vec![7u8; 100_000]).unwrap();
        std::fs::write(dir.path().join("db/t.ibd"), vec![1u8; 65_536]).unwrap();
        dir
    }

    #[test]
    fn a_sealed_datadir_checks_and_any_flipped_bit_is_named() {
        let dir = datadir();
        seal(dir.path()).unwrap();
        let files = fileops::list_files(dir.path()).unwrap();
        check(dir.path(), &files).unwrap();
        for (file, at) in [("ibdata1", 99_999u64), ("db/t.ibd", 0)] {
            let path = dir.path().join(file);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[at as usize] ^= 0x01;
            std::fs::write(&path, &bytes).unwrap();
            let err = check(dir.path(), &files).unwrap_err();
            assert!(matches!(err, SumsError::Mismatch { .. }), "{err}");
            assert!(err.to_string().contains(file), "{err}");
            bytes[at as usize] ^= 0x01;
            std::fs::write(&path, &bytes).unwrap();
        }
        check(dir.path(), &files).unwrap();
    }

    #[test]
    fn files_a_restore_leaves_out_are_not_sealed_or_checked() {
        let dir = datadir();
        std::fs::create_dir_all(dir.path().join("#innodb_redo")).unwrap();
        std::fs::write(dir.path().join("#innodb_redo/#ib_redo9"), vec![3u8; 4096]).unwrap();
        std::fs::write(dir.path().join("mysql-stderr"), "log").unwrap();
        seal(dir.path()).unwrap();
        let sealed = read(dir.path()).unwrap();
        assert_eq!(
            sealed.keys().cloned().collect::<Vec<_>>(),
            vec![PathBuf::from("db/t.ibd"), PathBuf::from("ibdata1")]
        );
        std::fs::write(dir.path().join("#innodb_redo/#ib_redo9"), vec![4u8; 4096]).unwrap();
        let files = fileops::list_files(dir.path()).unwrap();
        check(dir.path(), &files).unwrap();
    }

    #[test]
    fn extra_missing_or_unsealed_files_are_refused() {
        let dir = datadir();
        let err = check(dir.path(), &[]).unwrap_err();
        assert!(matches!(err, SumsError::Missing { .. }), "{err}");
        seal(dir.path()).unwrap();
        let mut files = fileops::list_files(dir.path()).unwrap();
        files.push(PathBuf::from("db/new.ibd"));
        let err = check(dir.path(), &files).unwrap_err();
        assert!(matches!(err, SumsError::Unsealed { .. }), "{err}");
        files.retain(|f| f != Path::new("db/new.ibd") && f != Path::new("ibdata1"));
        let err = check(dir.path(), &files).unwrap_err();
        assert!(err.to_string().contains("ibdata1"), "{err}");
    }
}
