//! Copies one InnoDB data file page by page while the server writes to it.
//!
//! Every page is validated as the server would read it (LSN trailer and
//! checksum) and checked to be the page we asked for; a page that fails is
//! re-read, because a concurrent write can tear a read, and the copy fails
//! only when retries cannot produce a valid page. Pages the server writes
//! after the copy passes them are covered by the redo log.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::progress::Progress;
use super::throttle::Throttle;
use crate::innodb::page::{self, PageCheck, PageSize};
use crate::repo::store::StoreError;
use crate::repo::writer::{StoredFile, StoredWriter};
use crate::repo::{Store, Transform};

/// How often a page that fails validation is read again before we give up,
/// and how long we wait between reads (a page write finishes in far less).
const REREAD_ATTEMPTS: u32 = 10;
const REREAD_PAUSE: Duration = Duration::from_millis(100);
/// Bytes read per I/O: large enough for sequential throughput, small enough
/// that cancellation and the throttle react quickly.
pub(super) const CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: not an InnoDB tablespace: {reason}")]
    NotTablespace { path: PathBuf, reason: String },
    #[error(
        "{path}: page {page_no} is still invalid after {REREAD_ATTEMPTS} reads ({reason}); \
         the file is damaged on the source — run CHECK TABLE there"
    )]
    CorruptPage {
        path: PathBuf,
        page_no: u64,
        reason: String,
    },
    #[error("cancelled")]
    Cancelled,
}

pub struct CopyContext<'a> {
    pub store: &'a Store,
    pub transform: &'a Transform,
    pub progress: &'a Progress,
    pub throttle: Option<&'a Throttle>,
    pub cancelled: &'a AtomicBool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub stored: StoredFile,
    pub pages_reread: u64,
}

/// Copies an InnoDB tablespace file to `dest`, validating every page.
/// `expected` is the tablespace id and FSP flags the server's dictionary
/// gives; it is needed when page 0 has not been flushed yet, and for a
/// later file of a system tablespace made of several, whose first page is
/// page `first_page` of the tablespace (0 for every other file).
pub fn copy_tablespace(
    source: &Path,
    dest: &str,
    expected: Option<(u32, u32)>,
    first_page: u64,
    ctx: &CopyContext,
) -> Result<Copied, CopyError> {
    let (input, length) = open_source(source)?;
    let mut output = Output::create(ctx, dest, length)?;
    if length == 0 {
        return output.finish(0);
    }
    let file = TablespaceFile::identify(source, input, length, expected, first_page)?;
    // Pages the validation skips are copied as they are.
    let (whole_pages, pages_reread) = file.read_validated(ctx, |chunk, _| output.write(chunk))?;
    let mut copied = output.finish(whole_pages)?;
    copied.pages_reread = pages_reread;
    Ok(copied)
}

/// A tablespace file opened for a validated read, with what identifies it.
pub(super) struct TablespaceFile<'p> {
    source: &'p Path,
    input: File,
    /// Its length when opened: pages appended later are created by redo we
    /// also capture.
    pub length: u64,
    pub space_id: u32,
    pub page_size: PageSize,
    /// The tablespace page number of the file's first page (not 0 only for
    /// the later files of a system tablespace made of several).
    pub first_page: u64,
}

impl<'p> TablespaceFile<'p> {
    /// Identifies the file opened by [`open_source`] (see [`identify`]).
    pub(super) fn identify(
        source: &'p Path,
        input: File,
        length: u64,
        expected: Option<(u32, u32)>,
        first_page: u64,
    ) -> Result<Self, CopyError> {
        let mut head = vec![0u8; length.min(16384) as usize];
        input
            .read_exact_at(&mut head, 0)
            .map_err(|e| read_error(source, e))?;
        // Only the first file of a system tablespace has its header.
        let head = if first_page == 0 { &head[..] } else { &[] };
        let (space_id, page_size) = identify(source, head, expected)?;
        Ok(Self {
            source,
            input,
            length,
            space_id,
            page_size,
            first_page,
        })
    }

    /// The tablespace page numbers the validation does not check.
    pub(super) fn unvalidated(&self) -> std::ops::Range<u64> {
        unvalidated_pages(self.space_id, self.page_size)
    }

    /// Pages of the file as opened (a partial last page is not one).
    pub(super) fn whole_pages(&self) -> u64 {
        self.length / self.page_size.physical as u64
    }

    /// Reads every whole page in chunks, with the cancel flag, the throttle
    /// and the progress counters honoured, re-reads each page that fails
    /// validation until it is valid, and hands each validated chunk to
    /// `take` with the file-relative number of its first page. Returns the
    /// bytes of whole pages and how many pages were re-read. A file whose
    /// size is not a whole number of pages is being extended right now; the
    /// partial page is recreated from redo, so it is not read.
    pub(super) fn read_validated(
        &self,
        ctx: &CopyContext,
        take: impl FnMut(&[u8], u64) -> Result<(), CopyError>,
    ) -> Result<(u64, u64), CopyError> {
        let pages = self.whole_pages();
        let pages_reread = self.read_validated_runs(ctx, std::iter::once(0..pages), take)?;
        let physical = self.page_size.physical as u64;
        ctx.progress
            .bytes_done
            .fetch_add(self.length - pages * physical, Ordering::Relaxed);
        Ok((pages * physical, pages_reread))
    }

    /// [`Self::read_validated`] for some pages only: `runs` are ranges of
    /// file-relative page numbers, in order, within the whole pages.
    /// Returns how many pages were re-read.
    pub(super) fn read_validated_runs(
        &self,
        ctx: &CopyContext,
        runs: impl IntoIterator<Item = std::ops::Range<u64>>,
        mut take: impl FnMut(&[u8], u64) -> Result<(), CopyError>,
    ) -> Result<u64, CopyError> {
        let physical = self.page_size.physical as u64;
        let skip = self.unvalidated();
        let pages_per_chunk = (CHUNK_BYTES as u64 / physical).max(1);
        let mut buffer = vec![0u8; (pages_per_chunk * physical) as usize];
        let mut pages_reread = 0;
        for run in runs {
            let mut page_no = run.start;
            while page_no < run.end {
                if ctx.cancelled.load(Ordering::Relaxed) {
                    return Err(CopyError::Cancelled);
                }
                let count = pages_per_chunk.min(run.end - page_no);
                let chunk = &mut buffer[..(count * physical) as usize];
                if let Some(throttle) = ctx.throttle {
                    throttle.take(chunk.len() as u64);
                }
                self.input
                    .read_exact_at(chunk, page_no * physical)
                    .map_err(|e| read_error(self.source, e))?;
                for (index, page_bytes) in chunk.chunks_exact_mut(physical as usize).enumerate() {
                    let in_file = page_no + index as u64;
                    let this_page = self.first_page + in_file;
                    if skip.contains(&this_page) {
                        continue;
                    }
                    if let Err(reason) = check(page_bytes, self.page_size, self.space_id, this_page)
                    {
                        pages_reread += 1;
                        let at = PageAt {
                            in_file,
                            page_no: this_page,
                        };
                        reread_until_valid(
                            &self.input,
                            self.source,
                            page_bytes,
                            self.page_size,
                            self.space_id,
                            at,
                            reason,
                        )?;
                    }
                }
                take(chunk, page_no)?;
                ctx.progress
                    .bytes_done
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                page_no += count;
            }
        }
        ctx.progress
            .pages_reread
            .fetch_add(pages_reread, Ordering::Relaxed);
        Ok(pages_reread)
    }
}

/// Opens a data file and takes its length: pages appended after this point
/// are created by redo we also capture.
pub(super) fn open_source(source: &Path) -> Result<(File, u64), CopyError> {
    let input = File::open(source).map_err(|e| read_error(source, e))?;
    let length = input.metadata().map_err(|e| read_error(source, e))?.len();
    Ok((input, length))
}

fn read_error(path: &Path, source: std::io::Error) -> CopyError {
    CopyError::Read {
        path: path.to_owned(),
        source,
    }
}

/// The tablespace id and page size: from page 0 when it is a complete
/// tablespace header (and then it must agree with the dictionary), from the
/// dictionary otherwise. A tablespace created after the last flush has only
/// a minimal page 0 on disk (type 0, just the space id and flags) or none;
/// redo rebuilds it. Page 0 is still validated with the other pages.
pub(super) fn identify(
    source: &Path,
    head: &[u8],
    expected: Option<(u32, u32)>,
) -> Result<(u32, PageSize), CopyError> {
    let not_tablespace = |reason: String| CopyError::NotTablespace {
        path: source.to_owned(),
        reason,
    };
    match (page::tablespace_info(head), expected) {
        (Ok(info), Some((space_id, _))) if space_id != info.space_id => {
            Err(not_tablespace(format!(
                "page 0 says space {}, the server's dictionary says {space_id}",
                info.space_id
            )))
        }
        (Ok(info), _) => Ok((info.space_id, info.page_size)),
        (Err(_), Some((space_id, flags))) => {
            let page_size =
                page::page_size_from_flags(flags).map_err(|e| not_tablespace(e.to_string()))?;
            Ok((space_id, page_size))
        }
        (Err(e), None) => Err(not_tablespace(e.to_string())),
    }
}

/// Copies a file as bytes (non-InnoDB tables, binlogs): no page structure.
/// `limit` copies only a prefix (the binlog up to the consistent position).
pub fn copy_plain(
    source: &Path,
    dest: &str,
    limit: Option<u64>,
    spool: Option<&super::spool::SpoolCipher>,
    ctx: &CopyContext,
) -> Result<Copied, CopyError> {
    let read_err = |e| CopyError::Read {
        path: source.to_owned(),
        source: e,
    };
    let input = File::open(source).map_err(read_err)?;
    let length = input.metadata().map_err(read_err)?.len();
    let length = limit.map_or(length, |l| l.min(length));
    if let Some(wanted) = limit
        && wanted > length
    {
        return Err(CopyError::Read {
            path: source.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("file is {length} bytes, {wanted} needed"),
            ),
        });
    }
    let mut output = Output::create(ctx, dest, length)?;
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut offset = 0;
    while offset < length {
        if ctx.cancelled.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        let n = (length - offset).min(CHUNK_BYTES as u64) as usize;
        if let Some(throttle) = ctx.throttle {
            throttle.take(n as u64);
        }
        input
            .read_exact_at(&mut buffer[..n], offset)
            .map_err(read_err)?;
        if let Some(cipher) = spool {
            cipher.apply(offset, &mut buffer[..n]);
        }
        output.write(&buffer[..n])?;
        ctx.progress
            .bytes_done
            .fetch_add(n as u64, Ordering::Relaxed);
        offset += n as u64;
    }
    output.finish(length)
}

/// Pages of the system tablespace that held the pre-8.0.20 doublewrite
/// buffer (extents 1 and 2): their content is not maintained any more and
/// is never read by the server, so it is copied as is.
pub(super) fn unvalidated_pages(space_id: u32, page_size: PageSize) -> std::ops::Range<u64> {
    if space_id != 0 {
        return 0..0;
    }
    let extent_pages = match page_size.logical {
        4096 => 256,
        8192 => 128,
        _ => (1u64 << 20) / page_size.logical as u64,
    };
    extent_pages..3 * extent_pages
}

pub(super) fn check(
    page_bytes: &[u8],
    page_size: PageSize,
    space_id: u32,
    page_no: u64,
) -> Result<(), String> {
    match page::verify_page(page_bytes, page_size) {
        PageCheck::AllZero => Ok(()),
        PageCheck::Corrupt(reason) => Err(reason.to_string()),
        PageCheck::Valid(_) => {
            let found_page = page::page_no(page_bytes).map(u64::from);
            let found_space = page::space_id(page_bytes);
            if found_page != Some(page_no) {
                Err(format!("holds page {found_page:?}, expected {page_no}"))
            } else if found_space != Some(space_id) {
                Err(format!(
                    "belongs to space {found_space:?}, expected {space_id}"
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// A page's place in its file, and its number in its tablespace (they
/// differ in the later files of a system tablespace made of several).
#[derive(Debug, Clone, Copy)]
pub(super) struct PageAt {
    pub(super) in_file: u64,
    pub(super) page_no: u64,
}

pub(super) fn reread_until_valid(
    input: &File,
    path: &Path,
    page_bytes: &mut [u8],
    page_size: PageSize,
    space_id: u32,
    at: PageAt,
    first_reason: String,
) -> Result<(), CopyError> {
    let PageAt { in_file, page_no } = at;
    let mut reason = first_reason;
    for _ in 0..REREAD_ATTEMPTS {
        std::thread::sleep(REREAD_PAUSE);
        input
            .read_exact_at(page_bytes, in_file * page_size.physical as u64)
            .map_err(|e| CopyError::Read {
                path: path.to_owned(),
                source: e,
            })?;
        match check(page_bytes, page_size, space_id, page_no) {
            Ok(()) => {
                tracing::debug!(file = %path.display(), page_no, "torn page fixed by re-reading");
                return Ok(());
            }
            Err(again) => reason = again,
        }
    }
    Err(CopyError::CorruptPage {
        path: path.to_owned(),
        page_no,
        reason,
    })
}

/// The destination object. Dropped without `finish` (an error or a
/// cancel), it aborts: a partial file is removed, a multipart upload aborted.
pub(super) struct Output {
    writer: Option<StoredWriter>,
}

impl Output {
    pub(super) fn create(
        ctx: &CopyContext,
        dest: &str,
        size_hint: u64,
    ) -> Result<Output, CopyError> {
        Ok(Output {
            writer: Some(StoredWriter::create(
                ctx.store,
                dest,
                size_hint,
                ctx.transform,
            )?),
        })
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<(), CopyError> {
        let writer = self.writer.as_mut().expect("written before finish");
        writer.write(bytes).map_err(|e| CopyError::Write {
            path: writer.describe(),
            source: e,
        })
    }

    pub(super) fn finish(mut self, _size: u64) -> Result<Copied, CopyError> {
        let writer = self.writer.take().expect("finished once");
        let path = writer.describe();
        let stored = writer
            .finish()
            .map_err(|e| CopyError::Write { path, source: e })?;
        Ok(Copied {
            stored,
            pages_reread: 0,
        })
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 16384;

    fn page0() -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/innodb/plain-page0.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(path).unwrap()
    }

    /// A page torn by a concurrent write is read again until the write has
    /// finished, and the copy holds the finished page, not the torn one.
    #[test]
    fn a_torn_page_is_read_again_and_the_copy_holds_the_whole_page() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("t.ibd");
        // Page 0, then 70 empty pages (more than one read chunk), one of
        // which is half written: garbage in its first half.
        let mut bytes = page0();
        assert_eq!(bytes.len(), PAGE);
        bytes.resize(71 * PAGE, 0);
        let torn = 67;
        for (i, b) in bytes[torn * PAGE..torn * PAGE + PAGE / 2]
            .iter_mut()
            .enumerate()
        {
            *b = (i % 251) as u8 + 1;
        }
        std::fs::write(&source, &bytes).unwrap();
        // The write finishes a little later.
        let finisher = {
            let source = source.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&source)
                    .unwrap();
                file.write_all_at(&[0u8; PAGE], (torn * PAGE) as u64)
                    .unwrap();
            })
        };
        let copier = LocalCopier::new(&dir.path().join("backup"));
        let ctx = copier.context();
        let copied = copy_tablespace(&source, "db/t.ibd", None, 0, &ctx).unwrap();
        finisher.join().unwrap();
        assert_eq!(copied.pages_reread, 1);
        let landed = std::fs::read(dir.path().join("backup/db/t.ibd")).unwrap();
        let mut expected = page0();
        expected.resize(71 * PAGE, 0);
        assert!(landed == expected, "the copy is not the finished file");
        assert_eq!(copied.stored.size, expected.len() as u64);
    }

    /// What a copy into a local folder borrows, unthrottled and not cancelled.
    struct LocalCopier {
        store: Store,
        transform: Transform,
        progress: Progress,
        cancelled: AtomicBool,
    }

    impl LocalCopier {
        fn new(root: &Path) -> Self {
            Self {
                store: Store::Local {
                    root: root.to_owned(),
                },
                transform: Transform::default(),
                progress: Progress::default(),
                cancelled: AtomicBool::new(false),
            }
        }

        fn context(&self) -> CopyContext<'_> {
            CopyContext {
                store: &self.store,
                transform: &self.transform,
                progress: &self.progress,
                throttle: None,
                cancelled: &self.cancelled,
            }
        }
    }

    #[test]
    fn a_page_that_stays_torn_fails_the_copy_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("t.ibd");
        let mut bytes = page0();
        bytes.resize(3 * PAGE, 0);
        bytes[2 * PAGE + 100] = 7;
        std::fs::write(&source, &bytes).unwrap();
        let copier = LocalCopier::new(&dir.path().join("backup"));
        let ctx = copier.context();
        let err = copy_tablespace(&source, "t.ibd", None, 0, &ctx).unwrap_err();
        assert!(
            matches!(err, CopyError::CorruptPage { page_no: 2, .. }),
            "{err}"
        );
        assert!(!dir.path().join("backup/t.ibd").exists());
    }
}
