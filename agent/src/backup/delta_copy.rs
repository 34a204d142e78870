//! Copies the changed pages of one tablespace into a `.delta` file
//! ([`crate::meta::delta`]): every page is read and validated exactly as a
//! full copy does (LSN trailer, checksum, the page it claims to be,
//! re-reads of torn pages), and the pages whose LSN is at or above the
//! given LSN are kept. The pages read are all of them (a full scan) or
//! those the server's page tracking listed.

use std::path::Path;

use super::page_copy::{Copied, CopyContext, CopyError, Output, TablespaceFile, open_source};
use super::page_track::runs_in_file;
use crate::innodb::page;
use crate::meta::delta::{DeltaHeader, DeltaTrailer, page_record};

/// What a delta holds besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaCopied {
    pub space_id: u32,
    /// The tablespace's size when it was read, whole pages.
    pub file_size: u64,
    pub pages: u64,
}

/// Which pages of a tablespace a delta reads.
#[derive(Debug, Clone, Copy)]
pub enum PagesToRead<'a> {
    All,
    /// These tablespace page numbers (sorted, each once), as listed by the
    /// server's page tracking.
    Listed(&'a [u32]),
}

/// Reads `source` (all pages or the listed ones) and writes those with an
/// LSN at or above `since_lsn` to `dest` in the delta format. `first_page`
/// is the tablespace page number of the file's first page (not 0 only for
/// the later files of a system tablespace made of several); the delta
/// numbers pages within the file.
pub fn copy_changed_pages(
    source: &Path,
    dest: &str,
    expected: Option<(u32, u32)>,
    first_page: u64,
    since_lsn: u64,
    pages: PagesToRead,
    ctx: &CopyContext,
) -> Result<(Copied, DeltaCopied), CopyError> {
    let (input, length) = open_source(source)?;
    let file = TablespaceFile::identify(source, input, length, expected, first_page)?;
    let space_id = file.space_id;
    // The size is only a hint for the store's part size: a delta is
    // usually a small part of its tablespace.
    let mut output = Output::create(ctx, dest, length / 8)?;
    output.write(
        &DeltaHeader {
            space_id,
            page_size: file.page_size.physical,
            since_lsn,
        }
        .encode(),
    )?;

    // The old doublewrite area of the system tablespace is never read by
    // the server: what the full backup holds is as good.
    let skip = file.unvalidated();
    let physical = file.page_size.physical as usize;
    let mut kept = 0u64;
    let keep_changed = |chunk: &[u8], first_in_file: u64| -> Result<(), CopyError> {
        for (index, page_bytes) in chunk.chunks_exact(physical).enumerate() {
            let in_file = first_in_file + index as u64;
            if skip.contains(&(first_page + in_file)) {
                continue;
            }
            if page::page_lsn(page_bytes).unwrap_or(0) >= since_lsn {
                output.write(&page_record(in_file as u32))?;
                output.write(page_bytes)?;
                kept += 1;
            }
        }
        Ok(())
    };
    let (file_size, pages_reread) = match pages {
        PagesToRead::All => file.read_validated(ctx, keep_changed)?,
        PagesToRead::Listed(listed) => {
            let runs = runs_in_file(listed, first_page, file.whole_pages(), &skip);
            let reread = file.read_validated_runs(ctx, runs, keep_changed)?;
            (file.whole_pages() * physical as u64, reread)
        }
    };
    output.write(
        &DeltaTrailer {
            file_size,
            pages: kept,
        }
        .encode(),
    )?;
    let mut copied = output.finish(0)?;
    copied.pages_reread = pages_reread;
    Ok((
        copied,
        DeltaCopied {
            space_id,
            file_size,
            pages: kept,
        },
    ))
}
