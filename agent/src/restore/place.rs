//! Puts the files of a restore [`Plan`] in place, several at once, and all
//! or nothing.
//!
//! 1. Each file is created (`O_EXCL`: nothing is ever overwritten) and
//!    reflinked where the file system can, or renamed for move-back.
//! 2. What could not be reflinked is copied by the kernel
//!    (`copy_file_range`) in ranges of [`RANGE`]: the ranges of every file
//!    share the threads, so one large tablespace does not leave the others
//!    idle at the end.
//! 3. Every new file is synced (the caller syncs the folders).
//!
//! A failure at any step undoes the restore: the files it created are
//! removed, the renamed ones go back to the prepared folder, and the
//! folders it created are removed again. Files that were there before are
//! never touched, so the next run starts from where this one did.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use crate::fileops::{self, FileError, Transfer};

use super::Plan;

/// Files larger than this are copied in ranges of this size, on as many
/// threads as there are ranges.
pub const RANGE: u64 = 64 << 20;

/// How many files went in each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placed {
    pub reflinked: usize,
    pub copied: usize,
    pub renamed: usize,
}

/// Why placing failed, and whether what was placed could be taken back.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error(
        "{source}; copy-back took back the {undone} file(s) it had placed, so it can run again"
    )]
    Undone { source: FileError, undone: usize },
    #[error(
        "{source}; copy-back could not take back what it had placed ({left}): remove those files \
         before running it again"
    )]
    Left { source: FileError, left: String },
}

/// A file this run put at `to`: how, and where it came from.
#[derive(Debug, Clone)]
struct Done {
    from: PathBuf,
    to: PathBuf,
    how: Transfer,
}

/// Places every file of `plan` (sources relative to `prepared`) on up to
/// `threads` threads; `move_files` renames instead of copying (a copy
/// across file systems leaves its source for the caller, which removes
/// the whole prepared folder once the restore is complete).
pub fn place_all(
    plan: &Plan,
    prepared: &Path,
    move_files: bool,
    threads: usize,
) -> Result<Placed, PlaceError> {
    place_in_ranges(plan, prepared, move_files, threads, RANGE)
}

fn place_in_ranges(
    plan: &Plan,
    prepared: &Path,
    move_files: bool,
    threads: usize,
    range: u64,
) -> Result<Placed, PlaceError> {
    let new_dirs = missing_folders(plan);
    let done = Mutex::new(Vec::new());
    match place(plan, prepared, move_files, threads, range, &done) {
        Ok(placed) => Ok(placed),
        Err(source) => {
            let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
            tracing::warn!(error = %source, placed = done.len(), "copy-back failed: taking back what it placed");
            let left = undo(&done, &new_dirs);
            if left.is_empty() {
                Err(PlaceError::Undone {
                    source,
                    undone: done.len(),
                })
            } else {
                Err(PlaceError::Left {
                    source,
                    left: left.join(", "),
                })
            }
        }
    }
}

fn place(
    plan: &Plan,
    prepared: &Path,
    move_files: bool,
    threads: usize,
    range: u64,
    done: &Mutex<Vec<Done>>,
) -> Result<Placed, FileError> {
    let stop = AtomicBool::new(false);
    let record = |from: &Path, to: &Path, how: Transfer| {
        done.lock().unwrap_or_else(|e| e.into_inner()).push(Done {
            from: from.to_owned(),
            to: to.to_owned(),
            how,
        });
    };
    // 1. Create (or rename) every target; what is left to copy is a length.
    let started = fileops::map_parallel(&plan.placements, threads, &stop, |p| {
        start(&prepared.join(&p.from), &p.to, move_files, &record)
    })?;
    let mut placed = Placed::default();
    let mut ranges = Vec::new();
    let mut created = Vec::new();
    for (p, how) in plan.placements.iter().zip(&started) {
        let from = prepared.join(&p.from);
        match how {
            Started::Renamed => placed.renamed += 1,
            Started::Reflinked => placed.reflinked += 1,
            Started::ToCopy(size) => {
                placed.copied += 1;
                for (at, len) in split(*size, range) {
                    ranges.push((from.clone(), p.to.clone(), at, len));
                }
            }
        }
        if !matches!(how, Started::Renamed) {
            created.push((from, p.to.clone()));
        }
    }
    // 2. The copies, range by range.
    fileops::map_parallel(&ranges, threads, &stop, |(from, to, at, len)| {
        copy_range(from, to, *at, *len)
    })?;
    // 3. The source's mode (only now: a read-only one would have kept the
    //    ranges out), and every new file durable before the folders are synced.
    fileops::map_parallel(&created, threads, &stop, |(from, to)| finish(from, to))?;
    Ok(placed)
}

/// What step 1 did to one file.
enum Started {
    Renamed,
    Reflinked,
    /// Created empty at its final length: the bytes follow.
    ToCopy(u64),
}

fn start(
    from: &Path,
    to: &Path,
    move_files: bool,
    record: &impl Fn(&Path, &Path, Transfer),
) -> Result<Started, FileError> {
    create_parent(to)?;
    if move_files {
        if to.symlink_metadata().is_ok() {
            return Err(exists(from, to));
        }
        match std::fs::rename(from, to) {
            Ok(()) => {
                record(from, to, Transfer::Renamed);
                return Ok(Started::Renamed);
            }
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
            Err(e) => return Err(FileError::new("move", from, to, e)),
        }
    }
    let source = File::open(from).map_err(|e| FileError::at("read", from, e))?;
    let meta = source
        .metadata()
        .map_err(|e| FileError::at("inspect", from, e))?;
    let target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => exists(from, to),
            _ => FileError::new("create", from, to, e),
        })?;
    record(from, to, Transfer::Copied);
    if reflink_copy::reflink_file(&source, &target).is_ok() {
        return Ok(Started::Reflinked);
    }
    target
        .set_len(meta.len())
        .map_err(|e| FileError::new("size", from, to, e))?;
    Ok(Started::ToCopy(meta.len()))
}

/// `(offset, length)` of each range of a file of `size` bytes.
fn split(size: u64, range: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..size.div_ceil(range)).map(move |i| (i * range, range.min(size - i * range)))
}

/// Gives a new file its source's mode and syncs it.
fn finish(from: &Path, to: &Path) -> Result<(), FileError> {
    let mode = std::fs::metadata(from)
        .map_err(|e| FileError::at("inspect", from, e))?
        .permissions();
    std::fs::set_permissions(to, mode)
        .map_err(|e| FileError::new("set the mode of", from, to, e))?;
    fileops::sync_file(to)
}

/// Copies `len` bytes at `at` of `from` to the same place in `to`. std's
/// `io::copy` between two files is `copy_file_range` (a plain read/write
/// loop where the kernel cannot), from each file's own position: each
/// range opens the files itself.
fn copy_range(from: &Path, to: &Path, at: u64, len: u64) -> Result<(), FileError> {
    let fail = |e| FileError::new("copy", from, to, e);
    let mut source = File::open(from).map_err(fail)?;
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .open(to)
        .map_err(fail)?;
    source.seek(SeekFrom::Start(at)).map_err(fail)?;
    target.seek(SeekFrom::Start(at)).map_err(fail)?;
    let copied = io::copy(&mut source.take(len), &mut target).map_err(fail)?;
    if copied != len {
        return Err(fail(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the file ended {} bytes early (did it shrink?)",
                len - copied
            ),
        )));
    }
    Ok(())
}

fn exists(from: &Path, to: &Path) -> FileError {
    FileError::new(
        "place",
        from,
        to,
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the target exists (copy-back never overwrites a file)",
        ),
    )
}

fn create_parent(to: &Path) -> Result<(), FileError> {
    match to.parent() {
        Some(parent) => std::fs::create_dir_all(parent)
            .map_err(|e| FileError::at("create the folder", parent, e)),
        None => Ok(()),
    }
}

/// Takes back a restore that [`place_all`] finished but that must not
/// stand (a file turned out damaged): removes every file of the plan (each
/// was created by this run: targets are created `O_EXCL`), then the
/// folders of `new_dirs` that are empty again. Returns what it could not
/// remove.
pub(crate) fn take_back(plan: &Plan, new_dirs: &[PathBuf]) -> Vec<String> {
    let mut left = Vec::new();
    for p in &plan.placements {
        match std::fs::remove_file(&p.to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(file = %p.to.display(), error = %e, "cannot take back a placed file");
                left.push(p.to.display().to_string());
            }
        }
    }
    for dir in new_dirs {
        // Not empty means someone else put something there: it stays.
        let _ = std::fs::remove_dir(dir);
    }
    left
}

/// The folders the plan needs that do not exist yet, and those of `also`
/// that do not, deepest first: the ones an undo removes again.
pub(crate) fn missing_folders_with(plan: &Plan, also: &[&Path]) -> Vec<PathBuf> {
    let mut missing: BTreeSet<PathBuf> = missing_folders(plan).into_iter().collect();
    for dir in also {
        for dir in dir.ancestors() {
            if dir.as_os_str().is_empty() || dir.symlink_metadata().is_ok() {
                break;
            }
            missing.insert(dir.to_owned());
        }
    }
    missing.into_iter().rev().collect()
}

/// The folders the plan needs that do not exist yet, deepest first: the
/// ones an undo removes again.
fn missing_folders(plan: &Plan) -> Vec<PathBuf> {
    let mut missing = BTreeSet::new();
    for p in &plan.placements {
        for dir in p.to.ancestors().skip(1) {
            if dir.as_os_str().is_empty() || dir.symlink_metadata().is_ok() {
                break;
            }
            missing.insert(dir.to_owned());
        }
    }
    // Reverse order puts every folder after the folders below it.
    missing.into_iter().rev().collect()
}

/// Takes back `done` and removes `new_dirs` if they are empty again;
/// returns what it could not take back.
fn undo(done: &[Done], new_dirs: &[PathBuf]) -> Vec<String> {
    let mut left = Vec::new();
    for d in done {
        let result = match d.how {
            Transfer::Renamed => std::fs::rename(&d.to, &d.from),
            _ => std::fs::remove_file(&d.to),
        };
        if let Err(e) = result {
            tracing::error!(file = %d.to.display(), error = %e, "cannot take back a placed file");
            left.push(d.to.display().to_string());
        }
    }
    for dir in new_dirs {
        // Not empty means someone else put something there: it stays.
        let _ = std::fs::remove_dir(dir);
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::Placement;

    /// Small ranges, so a small file has several.
    const TEST_RANGE: u64 = 4096;

    fn place_small(plan: &Plan, prepared: &Path, move_files: bool) -> Result<Placed, PlaceError> {
        place_in_ranges(plan, prepared, move_files, 4, TEST_RANGE)
    }

    /// A prepared folder with `n` small files in five folders and one of
    /// several ranges, and the plan that puts them under `restored/`.
    fn setup(n: usize) -> (tempfile::TempDir, PathBuf, PathBuf, Plan) {
        let dir = tempfile::tempdir().unwrap();
        let prepared = dir.path().join("prepared");
        let target = dir.path().join("restored");
        let mut plan = Plan::default();
        for i in 0..n {
            let relative = PathBuf::from(format!("db{}/t{i}.ibd", i % 5));
            std::fs::create_dir_all(prepared.join(&relative).parent().unwrap()).unwrap();
            std::fs::write(prepared.join(&relative), format!("file {i}").repeat(i + 1)).unwrap();
            plan.placements.push(Placement {
                to: target.join(&relative),
                from: relative,
            });
        }
        let big: Vec<u8> = (0..5 * TEST_RANGE + 123).map(|i| (i % 251) as u8).collect();
        std::fs::write(prepared.join("ibdata1"), &big).unwrap();
        plan.placements.push(Placement {
            from: "ibdata1".into(),
            to: target.join("ibdata1"),
        });
        (dir, prepared, target, plan)
    }

    fn assert_same(prepared: &Path, plan: &Plan) {
        for p in &plan.placements {
            assert_eq!(
                std::fs::read(prepared.join(&p.from)).unwrap(),
                std::fs::read(&p.to).unwrap(),
                "{}",
                p.to.display()
            );
        }
    }

    #[test]
    fn many_files_and_the_ranges_of_a_large_one_arrive_whole() {
        let (_dir, prepared, _target, plan) = setup(40);
        let placed = place_small(&plan, &prepared, false).unwrap();
        assert_eq!(placed.copied + placed.reflinked, 41);
        assert_same(&prepared, &plan);
    }

    #[test]
    fn one_taken_target_fails_the_copy_and_nothing_placed_is_left() {
        let (_dir, prepared, target, plan) = setup(40);
        let taken = plan.placements[17].to.clone();
        std::fs::create_dir_all(taken.parent().unwrap()).unwrap();
        std::fs::write(&taken, b"someone else's").unwrap();
        let err = place_small(&plan, &prepared, false).unwrap_err();
        assert!(matches!(err, PlaceError::Undone { .. }), "{err}");
        assert!(err.to_string().contains("t17.ibd"), "{err}");
        assert!(err.to_string().contains("never overwrites"), "{err}");
        // Only the file that was there before is left, untouched, and the
        // folders the run created are gone.
        let left = fileops::list_files(&target).unwrap();
        assert_eq!(left, [taken.strip_prefix(&target).unwrap()]);
        assert_eq!(std::fs::read(&taken).unwrap(), b"someone else's");
        assert!(!target.join("db0").exists());
        // With it gone, the same plan places everything.
        std::fs::remove_file(&taken).unwrap();
        place_small(&plan, &prepared, false).unwrap();
        assert_same(&prepared, &plan);
    }

    #[test]
    fn a_failed_move_puts_every_file_back() {
        let (_dir, prepared, target, plan) = setup(40);
        let before = fileops::list_files(&prepared).unwrap();
        let taken = plan.placements[3].to.clone();
        std::fs::create_dir_all(taken.parent().unwrap()).unwrap();
        std::fs::write(&taken, b"x").unwrap();
        let err = place_small(&plan, &prepared, true).unwrap_err();
        assert!(matches!(err, PlaceError::Undone { .. }), "{err}");
        assert_eq!(fileops::list_files(&prepared).unwrap(), before);
        assert_eq!(fileops::list_files(&target).unwrap().len(), 1);
        std::fs::remove_file(&taken).unwrap();
        let placed = place_small(&plan, &prepared, true).unwrap();
        assert_eq!(placed.renamed, 41);
        assert!(fileops::list_files(&prepared).unwrap().is_empty());
    }

    #[test]
    fn a_copy_keeps_the_source_mode() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, prepared, _target, plan) = setup(3);
        let first = prepared.join(&plan.placements[0].from);
        std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o440)).unwrap();
        let big = prepared.join("ibdata1");
        std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
        place_small(&plan, &prepared, false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&plan.placements[0].to), 0o440);
        assert_eq!(mode(&plan.placements[3].to), 0o600);
        assert_same(&prepared, &plan);
    }

    #[test]
    fn ranges_cover_a_file_exactly() {
        assert_eq!(split(0, 10).count(), 0);
        assert_eq!(split(5, 10).collect::<Vec<_>>(), [(0, 5)]);
        assert_eq!(
            split(21, 10).collect::<Vec<_>>(),
            [(0, 10), (10, 10), (20, 1)]
        );
    }
}
