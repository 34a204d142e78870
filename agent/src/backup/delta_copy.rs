//! Copies the changed pages of one tablespace into a `.delta` file
//! ([`crate::meta::delta`]): every page is read and validated exactly as a
//! full copy does (LSN trailer, checksum, the page it claims to be,
//! re-reads of torn pages), and the pages whose LSN is at or above the
//! given LSN are kept.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::page_copy::{
    CHUNK_BYTES, Copied, CopyContext, CopyError, Output, PageAt, check, identify,
    reread_until_valid, unvalidated_pages,
};
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

/// Scans `source` and writes the pages with an LSN at or above `since_lsn`
/// to `dest` in the delta format. `first_page` is the tablespace page
/// number of the file's first page (not 0 only for the later files of a
/// system tablespace made of several); the delta numbers pages within the
/// file.
pub fn copy_changed_pages(
    source: &Path,
    dest: &str,
    expected: Option<(u32, u32)>,
    first_page: u64,
    since_lsn: u64,
    ctx: &CopyContext,
) -> Result<(Copied, DeltaCopied), CopyError> {
    let read_err = |source_err| CopyError::Read {
        path: source.to_owned(),
        source: source_err,
    };
    let input = File::open(source).map_err(read_err)?;
    // Pages appended after this point are created by redo we also capture.
    let length = input.metadata().map_err(read_err)?.len();
    let mut head = vec![0u8; length.min(16384) as usize];
    input.read_exact_at(&mut head, 0).map_err(read_err)?;
    let (space_id, page_size) = if first_page == 0 {
        identify(source, &head, expected)?
    } else {
        // Only the first file of a system tablespace has its header.
        identify(source, &[], expected)?
    };
    let physical = page_size.physical as u64;
    let pages = length / physical;
    let skip = unvalidated_pages(space_id, page_size);
    // The size is only a hint for the store's part size: a delta is
    // usually a small part of its tablespace.
    let mut output = Output::create(ctx, dest, length / 8)?;
    output.write(
        &DeltaHeader {
            space_id,
            page_size: page_size.physical,
            since_lsn,
        }
        .encode(),
    )?;

    let pages_per_chunk = (CHUNK_BYTES as u64 / physical).max(1);
    let mut buffer = vec![0u8; (pages_per_chunk * physical) as usize];
    let (mut kept, mut pages_reread) = (0u64, 0u64);
    let mut page_no = 0u64;
    while page_no < pages {
        if ctx.cancelled.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        let count = pages_per_chunk.min(pages - page_no);
        let chunk = &mut buffer[..(count * physical) as usize];
        if let Some(throttle) = ctx.throttle {
            throttle.take(chunk.len() as u64);
        }
        input
            .read_exact_at(chunk, page_no * physical)
            .map_err(read_err)?;
        for (index, page_bytes) in chunk.chunks_exact_mut(physical as usize).enumerate() {
            let in_file = page_no + index as u64;
            let this_page = first_page + in_file;
            // The old doublewrite area of the system tablespace is never
            // read by the server: what the full backup holds is as good.
            if skip.contains(&this_page) {
                continue;
            }
            if let Err(reason) = check(page_bytes, page_size, space_id, this_page) {
                pages_reread += 1;
                let at = PageAt {
                    in_file,
                    page_no: this_page,
                };
                reread_until_valid(&input, source, page_bytes, page_size, space_id, at, reason)?;
            }
            if page::page_lsn(page_bytes).unwrap_or(0) >= since_lsn {
                output.write(&page_record(in_file as u32))?;
                output.write(page_bytes)?;
                kept += 1;
            }
        }
        ctx.progress
            .bytes_done
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        page_no += count;
    }
    ctx.progress
        .bytes_done
        .fetch_add(length - pages * physical, Ordering::Relaxed);
    ctx.progress
        .pages_reread
        .fetch_add(pages_reread, Ordering::Relaxed);
    let file_size = pages * physical;
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
