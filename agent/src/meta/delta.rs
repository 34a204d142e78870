//! `<tablespace>.delta`: the pages of one tablespace that an incremental
//! backup copied, written as the scan finds them (so it streams to any
//! repository, compressed and encrypted like any other file).
//!
//! Layout, integers big-endian:
//!
//! ```text
//! header   "IXDELTA1" | u32 space_id | u32 page size (physical bytes) | u64 since_lsn
//! records  u32 page_no | page image (page size bytes), page numbers ascending
//! trailer  u32 0xFFFFFFFF | u64 file size (bytes, whole pages) | u64 page count
//! ```
//!
//! `since_lsn`: every page whose LSN is at or above it was copied. The file
//! size is the tablespace's size when the scan read it: apply extends or
//! cuts the rebuilt file to it. The trailer makes a cut-short file an
//! error instead of a smaller delta.

use std::io::{Read, Write};

pub const MAGIC: &[u8; 8] = b"IXDELTA1";
const END: u32 = u32::MAX;
pub const HEADER_BYTES: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaHeader {
    pub space_id: u32,
    pub page_size: u32,
    pub since_lsn: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaTrailer {
    pub file_size: u64,
    pub pages: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("not a delta file (no IXDELTA1 magic)")]
    Magic,
    #[error("page size {0} is not one InnoDB uses")]
    PageSize(u32),
    #[error("page {page_no} follows page {previous}: page numbers must ascend")]
    Order { page_no: u32, previous: u32 },
    #[error("the trailer counts {counted} pages, the file holds {found}")]
    Count { counted: u64, found: u64 },
    #[error("page {page_no} lies beyond the file size {file_size}")]
    Beyond { page_no: u32, file_size: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl DeltaHeader {
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&self.space_id.to_be_bytes());
        out[12..16].copy_from_slice(&self.page_size.to_be_bytes());
        out[16..24].copy_from_slice(&self.since_lsn.to_be_bytes());
        out
    }
}

/// The record that introduces a page.
pub fn page_record(page_no: u32) -> [u8; 4] {
    page_no.to_be_bytes()
}

impl DeltaTrailer {
    pub fn encode(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..4].copy_from_slice(&END.to_be_bytes());
        out[4..12].copy_from_slice(&self.file_size.to_be_bytes());
        out[12..20].copy_from_slice(&self.pages.to_be_bytes());
        out
    }
}

/// Reads a delta from `input`, handing each page to `page` in order, and
/// returns its header and trailer once the whole file checked out.
pub fn read(
    mut input: impl Read,
    mut page: impl FnMut(u32, &[u8]) -> std::io::Result<()>,
) -> Result<(DeltaHeader, DeltaTrailer), DeltaError> {
    let mut head = [0u8; HEADER_BYTES];
    input.read_exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(DeltaError::Magic);
    }
    let header = DeltaHeader {
        space_id: u32::from_be_bytes(head[8..12].try_into().expect("4 bytes")),
        page_size: u32::from_be_bytes(head[12..16].try_into().expect("4 bytes")),
        since_lsn: u64::from_be_bytes(head[16..24].try_into().expect("8 bytes")),
    };
    if !header.page_size.is_power_of_two() || !(1024..=65536).contains(&header.page_size) {
        return Err(DeltaError::PageSize(header.page_size));
    }
    let mut image = vec![0u8; header.page_size as usize];
    let mut previous: Option<u32> = None;
    let mut found = 0u64;
    loop {
        let mut record = [0u8; 4];
        input.read_exact(&mut record)?;
        let page_no = u32::from_be_bytes(record);
        if page_no == END {
            break;
        }
        if let Some(previous) = previous
            && page_no <= previous
        {
            return Err(DeltaError::Order { page_no, previous });
        }
        input.read_exact(&mut image)?;
        page(page_no, &image)?;
        previous = Some(page_no);
        found += 1;
    }
    let mut tail = [0u8; 16];
    input.read_exact(&mut tail)?;
    let trailer = DeltaTrailer {
        file_size: u64::from_be_bytes(tail[..8].try_into().expect("8 bytes")),
        pages: u64::from_be_bytes(tail[8..].try_into().expect("8 bytes")),
    };
    if trailer.pages != found {
        return Err(DeltaError::Count {
            counted: trailer.pages,
            found,
        });
    }
    if let Some(last) = previous
        && (u64::from(last) + 1) * u64::from(header.page_size) > trailer.file_size
    {
        return Err(DeltaError::Beyond {
            page_no: last,
            file_size: trailer.file_size,
        });
    }
    Ok((header, trailer))
}

/// Writes a whole delta (tests and small files; the backup streams its own).
pub fn write(
    mut out: impl Write,
    header: DeltaHeader,
    pages: &[(u32, Vec<u8>)],
    file_size: u64,
) -> std::io::Result<()> {
    out.write_all(&header.encode())?;
    for (page_no, image) in pages {
        out.write_all(&page_record(*page_no))?;
        out.write_all(image)?;
    }
    out.write_all(
        &DeltaTrailer {
            file_size,
            pages: pages.len() as u64,
        }
        .encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> DeltaHeader {
        DeltaHeader {
            space_id: 7,
            page_size: 1024,
            since_lsn: 123_456,
        }
    }

    #[test]
    fn round_trips_pages_in_order() {
        let pages = vec![(0u32, vec![1u8; 1024]), (5, vec![2u8; 1024])];
        let mut bytes = Vec::new();
        write(&mut bytes, header(), &pages, 8 * 1024).unwrap();
        let mut seen = Vec::new();
        let (h, t) = read(&bytes[..], |no, image| {
            seen.push((no, image.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(h, header());
        assert_eq!(
            t,
            DeltaTrailer {
                file_size: 8192,
                pages: 2
            }
        );
        assert_eq!(seen, pages);
    }

    #[test]
    fn a_cut_short_delta_is_an_error() {
        let mut bytes = Vec::new();
        write(&mut bytes, header(), &[(3, vec![0u8; 1024])], 4096).unwrap();
        bytes.truncate(bytes.len() - 10);
        assert!(read(&bytes[..], |_, _| Ok(())).is_err());
    }

    #[test]
    fn a_page_beyond_the_file_size_is_refused() {
        let mut bytes = Vec::new();
        write(&mut bytes, header(), &[(9, vec![0u8; 1024])], 4096).unwrap();
        let err = read(&bytes[..], |_, _| Ok(())).unwrap_err();
        assert!(
            matches!(err, DeltaError::Beyond { page_no: 9, .. }),
            "{err}"
        );
    }
}
