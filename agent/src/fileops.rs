//! Moving whole datadirs around on local disk: the copies apply-log makes of
//! a backup and the files copy-back puts into a datadir.
//!
//! A copy is a reflink where the filesystem has them (btrfs, XFS: instant,
//! no extra space, and copy-on-write keeps the source untouched) and a plain
//! copy elsewhere. Never a hard link: the copy is written to (mysqld
//! recovers into it) and the source must stay byte-identical.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// How a file got to its new place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Reflinked,
    Copied,
    Renamed,
}

/// An I/O error with the operation and paths it happened to.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} {from}{arrow}{to}: {source}", arrow = if .to.as_os_str().is_empty() { "" } else { " → " })]
pub struct FileError {
    pub what: &'static str,
    pub from: PathBuf,
    pub to: PathBuf,
    pub source: io::Error,
}

impl FileError {
    pub fn new(what: &'static str, from: &Path, to: &Path, source: io::Error) -> Self {
        Self {
            what,
            from: from.to_owned(),
            to: to.to_owned(),
            source,
        }
    }

    pub fn at(what: &'static str, path: &Path, source: io::Error) -> Self {
        Self::new(what, path, Path::new(""), source)
    }
}

/// Copies `from` to `to` (which must not exist), creating `to`'s parent
/// folders, and syncs the new file.
pub fn copy_file(from: &Path, to: &Path) -> Result<Transfer, FileError> {
    let how = copy_file_unsynced(from, to)?;
    sync_file(to)?;
    Ok(how)
}

/// [`copy_file`] without the sync: for a caller that syncs later, while it
/// does other work.
pub fn copy_file_unsynced(from: &Path, to: &Path) -> Result<Transfer, FileError> {
    create_parent(to)?;
    match reflink_copy::reflink_or_copy(from, to) {
        Ok(None) => Ok(Transfer::Reflinked),
        Ok(Some(_)) => Ok(Transfer::Copied),
        Err(e) => Err(FileError::new("copy", from, to, e)),
    }
}

/// Renames `from` to `to`; across filesystems (EXDEV) copies, syncs and
/// then removes `from`.
pub fn move_file(from: &Path, to: &Path) -> Result<Transfer, FileError> {
    create_parent(to)?;
    if to.symlink_metadata().is_ok() {
        return Err(FileError::new(
            "move",
            from,
            to,
            io::Error::new(io::ErrorKind::AlreadyExists, "the target exists"),
        ));
    }
    match std::fs::rename(from, to) {
        Ok(()) => Ok(Transfer::Renamed),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let how = copy_file(from, to)?;
            std::fs::remove_file(from).map_err(|e| FileError::at("remove", from, e))?;
            Ok(how)
        }
        Err(e) => Err(FileError::new("move", from, to, e)),
    }
}

fn create_parent(to: &Path) -> Result<(), FileError> {
    match to.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .map_err(|e| FileError::at("create the folder", parent, e)),
        _ => Ok(()),
    }
}

pub fn sync_file(path: &Path) -> Result<(), FileError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| FileError::at("sync", path, e))
}

/// Makes the entries of `dir` (new files, renames) durable.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| FileError::at("sync the folder", dir, e))
}

/// The size and SHA-256 (lowercase hex) of a file's bytes, read once.
pub fn sha256_file(path: &Path) -> Result<(u64, String), FileError> {
    use sha2::Digest;
    use std::io::Read;
    let read_err = |e| FileError::at("read", path, e);
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// The SHA-256 of each of `files` (relative to `dir`), in their order,
/// hashed on up to [`hash_threads`] threads at once: each file is one
/// sequential hash, but a datadir has many.
pub fn sha256_files(dir: &Path, files: &[PathBuf]) -> Result<Vec<String>, FileError> {
    let stop = AtomicBool::new(false);
    map_parallel(files, hash_threads(), &stop, |file| {
        sha256_file(&dir.join(file)).map(|(_, sum)| sum)
    })
}

/// `work` applied to every item on up to `threads` threads, the results in
/// the items' order. The first error stops the others (they finish the
/// item in hand) and is returned; so does setting `stop`, which `work`
/// should check itself for long items.
pub fn map_parallel<T, R, E>(
    items: &[T],
    threads: usize,
    stop: &AtomicBool,
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let next = AtomicUsize::new(0);
    let threads = threads.min(items.len()).max(1);
    let per_thread = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<(usize, R)>, E> {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= items.len() || stop.load(Ordering::Relaxed) {
                            return Ok(mine);
                        }
                        match work(&items[index]) {
                            Ok(done) => mine.push((index, done)),
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker thread does not panic"))
            .collect::<Vec<_>>()
    });
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for done in per_thread {
        for (index, result) in done? {
            results[index] = Some(result);
        }
    }
    Ok(results.into_iter().flatten().collect())
}

/// Threads for work that is CPU-bound per file (hashing, checking): one per
/// core, at most four.
pub fn hash_threads() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(4)
}

/// Whether `dir` is absent or an empty folder. A file at that path is an
/// error: it is neither.
pub fn is_absent_or_empty(dir: &Path) -> Result<bool, FileError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(FileError::at("list", dir, e)),
    }
}

/// Every regular file below `root`, as paths relative to it, sorted.
/// Symlinks are reported as errors: a datadir we build or restore has none,
/// and following one could read or write outside the tree.
pub fn list_files(root: &Path) -> Result<Vec<PathBuf>, FileError> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        let entries = std::fs::read_dir(&dir).map_err(|e| FileError::at("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| FileError::at("list", &dir, e))?;
            let kind = entry
                .file_type()
                .map_err(|e| FileError::at("inspect", &entry.path(), e))?;
            let path = relative.join(entry.file_name());
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                out.push(path);
            } else {
                return Err(FileError::at(
                    "handle",
                    &entry.path(),
                    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file or folder"),
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_independent_of_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        std::fs::write(&from, b"original").unwrap();
        let to = dir.path().join("sub/dir/b");
        copy_file(&from, &to).unwrap();
        std::fs::write(&to, b"changed").unwrap();
        assert_eq!(std::fs::read(&from).unwrap(), b"original");
        // The target must not exist.
        assert!(copy_file(&from, &to).is_err());
    }

    #[test]
    fn move_renames_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("x/b"));
        std::fs::write(&a, b"1").unwrap();
        assert_eq!(move_file(&a, &b).unwrap(), Transfer::Renamed);
        assert!(!a.exists());
        std::fs::write(&a, b"2").unwrap();
        assert!(move_file(&a, &b).is_err());
        assert_eq!(std::fs::read(&b).unwrap(), b"1");
    }

    #[test]
    fn lists_files_recursively_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("s/t")).unwrap();
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        for f in ["z", "s/t/x.ibd", "a"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let files = list_files(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a", "s/t/x.ibd", "z"]);
        assert!(is_absent_or_empty(&dir.path().join("empty")).unwrap());
        assert!(is_absent_or_empty(&dir.path().join("missing")).unwrap());
        assert!(!is_absent_or_empty(dir.path()).unwrap());
    }
}
