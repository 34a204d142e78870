//! Tablespace pages: header fields, page size from the FSP flags of page 0,
//! and validation of a page read from a live data file, accepting exactly
//! what the server's own reader accepts (`BlockReporter::is_corrupted`).
//! Pure: no I/O.
//!
//! Every page starts with a 38-byte FIL header and, unless it belongs to a
//! ROW_FORMAT=COMPRESSED tablespace, ends with an 8-byte trailer. Which
//! checksum a page carries depends on `innodb_checksum_algorithm` when it
//! was last written (crc32 is the default since 5.7.7), and the server
//! accepts any of them whatever the current setting is, so we do too.
//!
//! Sources: `include/fil0types.h`, `include/fsp0types.h`, `buf/checksum.cc`,
//! `include/page0size.h`.

use thiserror::Error;

/// Checksum (or, before 4.0.14, space id) of the page.
pub const FIL_PAGE_SPACE_OR_CHKSUM: usize = 0;
/// Page number within the tablespace.
pub const FIL_PAGE_OFFSET: usize = 4;
/// Previous page at the same B-tree level, or FIL_NULL.
pub const FIL_PAGE_PREV: usize = 8;
/// Next page at the same B-tree level, or FIL_NULL.
pub const FIL_PAGE_NEXT: usize = 12;
/// LSN (8 bytes) of the newest change to the page.
pub const FIL_PAGE_LSN: usize = 16;
/// Page type (2 bytes).
pub const FIL_PAGE_TYPE: usize = 24;
/// Page 0 of the system tablespace: LSN up to which the file was flushed at
/// shutdown. Not covered by any checksum.
pub const FIL_PAGE_FILE_FLUSH_LSN: usize = 26;
/// Space id of the page (4 bytes). Not covered by any checksum.
pub const FIL_PAGE_SPACE_ID: usize = 34;
/// Start of the page body; the FSP header of page 0 begins here.
pub const FIL_PAGE_DATA: usize = 38;
/// Size of the trailer: old-style checksum (4) + low 32 bits of the LSN (4).
pub const FIL_PAGE_END_LSN_OLD_CHKSUM: usize = 8;

/// Offset of the FSP header in page 0.
pub const FSP_HEADER_OFFSET: usize = FIL_PAGE_DATA;
/// Space id in the FSP header (must equal [`FIL_PAGE_SPACE_ID`]).
pub const FSP_SPACE_ID: usize = FSP_HEADER_OFFSET;
/// Current size of the tablespace in pages.
pub const FSP_SIZE: usize = FSP_HEADER_OFFSET + 8;
/// Pages below this have been initialized.
pub const FSP_FREE_LIMIT: usize = FSP_HEADER_OFFSET + 12;
/// FSP flags: page sizes, row format, encryption, ...
pub const FSP_SPACE_FLAGS: usize = FSP_HEADER_OFFSET + 16;

/// Page types we look at.
pub const FIL_PAGE_TYPE_FSP_HDR: u16 = 8;
pub const FIL_PAGE_INDEX: u16 = 17855;
pub const FIL_PAGE_SDI: u16 = 17853;
/// Transparent page compression (`COMPRESSION='zlib'`): the body on disk is
/// compressed and checksummed only after the I/O layer inflates it.
pub const FIL_PAGE_COMPRESSED: u16 = 14;
/// Page encryption: likewise decoded by the I/O layer before any checksum.
pub const FIL_PAGE_ENCRYPTED: u16 = 15;
pub const FIL_PAGE_COMPRESSED_AND_ENCRYPTED: u16 = 16;
pub const FIL_PAGE_ENCRYPTED_RTREE: u16 = 17;

/// Stored in both checksum fields by `innodb_checksum_algorithm=none`.
pub const BUF_NO_CHECKSUM_MAGIC: u32 = 0xDEAD_BEEF;

/// FSP flag bits (`fsp0types.h`): 0 post-Antelope, 1..=4 zip_ssize,
/// 5 atomic blobs, 6..=9 page_ssize, 10 data dir, 11 shared, 12 temporary,
/// 13 encryption, 14 SDI.
pub const FSP_FLAGS_POS_ZIP_SSIZE: u32 = 1;
pub const FSP_FLAGS_POS_PAGE_SSIZE: u32 = 6;
pub const FSP_FLAGS_MASK_ENCRYPTION: u32 = 1 << 13;
const SSIZE_MASK: u32 = 0xF;
/// page_ssize 0 means the original 16 KiB page (`UNIV_PAGE_SSIZE_ORIG`).
const PAGE_SSIZE_ORIG: u32 = 5;
/// "ssize" is log2(size) - 9: size = 512 << ssize.
const SSIZE_UNIT: u32 = 512;

/// Errors reading page headers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PageError {
    #[error("page 0: need at least {need} bytes, got {got}")]
    TooShort { need: usize, got: usize },
    #[error("FSP flags {flags:#x}: {why}")]
    BadFlags { flags: u32, why: &'static str },
    #[error("page 0 is not a tablespace header page: {why}")]
    NotPage0 { why: String },
    #[error("page 0 of space {space_id} is corrupt: {reason}")]
    Page0Corrupt { space_id: u32, reason: Corruption },
}

/// Logical (in memory) and physical (on disk) page size of a tablespace.
/// They differ only for ROW_FORMAT=COMPRESSED tablespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize {
    pub logical: u32,
    pub physical: u32,
}

impl PageSize {
    /// The server's default: 16 KiB, uncompressed.
    pub const DEFAULT: Self = Self {
        logical: 16384,
        physical: 16384,
    };

    /// A ROW_FORMAT=COMPRESSED tablespace: pages on disk are smaller, carry
    /// no LSN trailer, and use the zip checksum.
    pub fn is_compressed(&self) -> bool {
        self.physical < self.logical
    }
}

/// Page sizes encoded in FSP flags (`page_size_t(fsp_flags)`).
pub fn page_size_from_flags(fsp_flags: u32) -> Result<PageSize, PageError> {
    let bad = |why| PageError::BadFlags {
        flags: fsp_flags,
        why,
    };
    let page_ssize = match (fsp_flags >> FSP_FLAGS_POS_PAGE_SSIZE) & SSIZE_MASK {
        0 => PAGE_SSIZE_ORIG,
        s @ 3..=7 => s,
        _ => return Err(bad("page_ssize must be 0 or 3..=7 (4 KiB..64 KiB)")),
    };
    let logical = SSIZE_UNIT << page_ssize;
    let physical = match (fsp_flags >> FSP_FLAGS_POS_ZIP_SSIZE) & SSIZE_MASK {
        0 => logical,
        s @ 1..=5 => SSIZE_UNIT << s,
        _ => return Err(bad("zip_ssize must be 0..=5 (1 KiB..16 KiB)")),
    };
    if physical > logical {
        return Err(bad("compressed page size exceeds the page size"));
    }
    Ok(PageSize { logical, physical })
}

/// FSP flags that say just "uncompressed pages of `logical` bytes": what
/// the system tablespace has (the dictionary lists no flags for it), for
/// its files after the first, whose first page is no tablespace header.
pub fn flags_for_page_size(logical: u32) -> u32 {
    let ssize = (logical / SSIZE_UNIT).max(1).trailing_zeros();
    ssize << FSP_FLAGS_POS_PAGE_SSIZE
}

/// What page 0 says about its tablespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TablespaceInfo {
    pub space_id: u32,
    /// Raw FSP flags.
    pub flags: u32,
    pub page_size: PageSize,
    /// FSP_SIZE: pages in the tablespace when page 0 was last written.
    pub size_in_pages: u32,
    /// Whether page 0 itself was checked (LSN trailer and checksum): only
    /// when the given bytes covered its whole physical size.
    pub page0_verified: bool,
}

/// Reads the tablespace identity and page size from the start of a data
/// file.
///
/// The caller does not know the page size before reading, so `page0` may be
/// any prefix of the file of at least 58 bytes: the flags sit at the same
/// offset whatever the page size. The usual read is the first 16 KiB: that
/// covers page 0 of compressed tablespaces (1..16 KiB physical) and of
/// 4..16 KiB page sizes, and then page 0 is verified here too; for 32/64 KiB
/// pages `page0_verified` is false and the caller should verify page 0
/// (`&file[..page_size.physical]`) with [`verify_page`] before trusting it.
pub fn tablespace_info(page0: &[u8]) -> Result<TablespaceInfo, PageError> {
    let need = FSP_SPACE_FLAGS + 4;
    if page0.len() < need {
        return Err(PageError::TooShort {
            need,
            got: page0.len(),
        });
    }
    if page_no(page0) != Some(0) {
        return Err(PageError::NotPage0 {
            why: format!("its page number is {}", be32(page0, FIL_PAGE_OFFSET)),
        });
    }
    let page_type = be16(page0, FIL_PAGE_TYPE);
    if page_type != FIL_PAGE_TYPE_FSP_HDR {
        return Err(PageError::NotPage0 {
            why: format!("page type is {page_type}, expected {FIL_PAGE_TYPE_FSP_HDR} (FSP_HDR)"),
        });
    }
    let space_id = be32(page0, FIL_PAGE_SPACE_ID);
    let fsp_space_id = be32(page0, FSP_SPACE_ID);
    if space_id != fsp_space_id {
        return Err(PageError::NotPage0 {
            why: format!("FIL header says space {space_id}, FSP header says {fsp_space_id}"),
        });
    }
    let flags = be32(page0, FSP_SPACE_FLAGS);
    let page_size = page_size_from_flags(flags)?;
    let physical = page_size.physical as usize;
    let page0_verified = match page0.get(..physical) {
        None => false,
        Some(page) => match verify_page(page, page_size) {
            PageCheck::Valid(_) => true,
            PageCheck::AllZero => {
                return Err(PageError::NotPage0 {
                    why: "it is all zeros".into(),
                });
            }
            PageCheck::Corrupt(reason) => {
                return Err(PageError::Page0Corrupt { space_id, reason });
            }
        },
    };
    Ok(TablespaceInfo {
        space_id,
        flags,
        page_size,
        size_in_pages: be32(page0, FSP_SIZE),
        page0_verified,
    })
}

fn be16(buf: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&buf[at..at + 2]);
    u16::from_be_bytes(b)
}

fn be32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_be_bytes(b)
}

fn read_be32(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4).map(|_| be32(buf, at))
}

/// Page number (FIL_PAGE_OFFSET), `None` for a slice too short to hold it.
pub fn page_no(page: &[u8]) -> Option<u32> {
    read_be32(page, FIL_PAGE_OFFSET)
}

/// Space id (FIL_PAGE_SPACE_ID). Not covered by the checksum: compare it
/// with the tablespace's id to catch misdirected writes.
pub fn space_id(page: &[u8]) -> Option<u32> {
    read_be32(page, FIL_PAGE_SPACE_ID)
}

/// FIL_PAGE_LSN: the LSN of the newest change written to the page.
pub fn page_lsn(page: &[u8]) -> Option<u64> {
    let bytes = page.get(FIL_PAGE_LSN..FIL_PAGE_LSN + 8)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    Some(u64::from_be_bytes(b))
}

/// Page type (FIL_PAGE_TYPE).
pub fn page_type(page: &[u8]) -> Option<u16> {
    page.get(FIL_PAGE_TYPE..FIL_PAGE_TYPE + 2)
        .map(|_| be16(page, FIL_PAGE_TYPE))
}

/// `page[range]`, or nothing if the page is too short for it: the checksum
/// functions must not panic on short input, and [`verify_page`] rejects
/// short pages before their result matters.
fn part(page: &[u8], from: usize, to: usize) -> &[u8] {
    page.get(from..to).unwrap_or(&[])
}

/// The crc32 page checksum (`buf_calc_page_crc32`) of an uncompressed page:
/// CRC-32C of bytes 4..26 XOR CRC-32C of bytes 38..size-8. The checksum
/// field itself, FIL_PAGE_FILE_FLUSH_LSN and the space id (26..38, written
/// outside the buffer pool) and the trailer are excluded.
pub fn crc32_checksum(page: &[u8]) -> u32 {
    let end = page.len().saturating_sub(FIL_PAGE_END_LSN_OLD_CHKSUM);
    crc32c::crc32c(part(page, FIL_PAGE_OFFSET, FIL_PAGE_FILE_FLUSH_LSN))
        ^ crc32c::crc32c(part(page, FIL_PAGE_DATA, end))
}

/// `ut_fold_binary`: the hash behind the pre-5.7 "innodb" checksum. The
/// server computes it in 64-bit words and keeps the low 32 bits; shifts
/// left, adds and XORs never carry information downwards, so wrapping
/// 32-bit arithmetic gives the same low bits.
fn fold_binary(bytes: &[u8]) -> u32 {
    const MASK: u32 = 1_463_735_687;
    const MASK2: u32 = 1_653_893_711;
    bytes.iter().fold(0u32, |fold, &b| {
        let b = u32::from(b);
        ((((fold ^ b ^ MASK2) << 8).wrapping_add(fold)) ^ MASK).wrapping_add(b)
    })
}

/// The legacy "innodb" checksums of an uncompressed page: the new formula
/// stored @0 (`buf_calc_page_new_checksum`) and the old one stored
/// @size-8 (`buf_calc_page_old_checksum`).
pub fn innodb_checksums(page: &[u8]) -> (u32, u32) {
    let end = page.len().saturating_sub(FIL_PAGE_END_LSN_OLD_CHKSUM);
    let new = fold_binary(part(page, FIL_PAGE_OFFSET, FIL_PAGE_FILE_FLUSH_LSN))
        .wrapping_add(fold_binary(part(page, FIL_PAGE_DATA, end)));
    let old = fold_binary(part(page, 0, FIL_PAGE_FILE_FLUSH_LSN));
    (new, old)
}

/// The three ranges a compressed page's checksum covers: bytes 4..16
/// (page number, prev, next), 24..26 (type) and 34..size (space id and
/// everything after). Checksum, LSN and flush LSN are excluded.
fn zip_ranges(page: &[u8]) -> [&[u8]; 3] {
    [
        part(page, FIL_PAGE_OFFSET, FIL_PAGE_LSN),
        part(page, FIL_PAGE_TYPE, FIL_PAGE_TYPE + 2),
        part(page, FIL_PAGE_SPACE_ID, page.len()),
    ]
}

/// The crc32 checksum of a ROW_FORMAT=COMPRESSED page
/// (`page_zip_calc_checksum` with crc32): the XOR of CRC-32C of each range.
pub fn zip_crc32_checksum(page: &[u8]) -> u32 {
    zip_ranges(page)
        .iter()
        .fold(0, |acc, r| acc ^ crc32c::crc32c(r))
}

/// The "innodb" checksum of a compressed page: zlib's Adler-32 over the same
/// ranges, seeded with 0 as the server does (`adler32(0L, ...)`), not 1.
pub fn zip_adler32_checksum(page: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (0u32, 0u32);
    for range in zip_ranges(page) {
        // Reduce every 5552 bytes, zlib's bound before u32 overflow.
        for chunk in range.chunks(5552) {
            for &byte in chunk {
                a += u32::from(byte);
                b += a;
            }
            a %= MOD;
            b %= MOD;
        }
    }
    (b << 16) | a
}

/// Which algorithm a valid page's checksum was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// `innodb_checksum_algorithm=crc32` (the default).
    Crc32,
    /// The legacy "innodb" algorithm (fold hash, or Adler-32 when zipped).
    Innodb,
    /// `innodb_checksum_algorithm=none`: 0xDEADBEEF, nothing checked but the
    /// LSN trailer. The server accepts it, so we must.
    None,
}

/// Why a page is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Corruption {
    #[error("page is {len} bytes, expected {expected}")]
    WrongLength { len: usize, expected: usize },
    #[error("LSN low 32 bits {head:#010x} differ from the trailer copy {trailer:#010x}")]
    LsnMismatch { head: u32, trailer: u32 },
    #[error(
        "checksum fields {stored:#010x}/{trailer:#010x} match neither crc32 {crc32:#010x}, \
         innodb, nor none"
    )]
    ChecksumMismatch {
        stored: u32,
        trailer: u32,
        crc32: u32,
    },
    #[error(
        "compressed page checksum {stored:#010x} matches neither crc32 {crc32:#010x}, \
         adler32, nor none"
    )]
    ZipChecksumMismatch { stored: u32, crc32: u32 },
    #[error("checksum fields and LSN are zero but the page is not empty")]
    NotEmpty,
    #[error(
        "page type {page_type} is transparently compressed or encrypted: decode it before checking"
    )]
    Transformed { page_type: u16 },
}

/// Result of [`verify_page`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCheck {
    /// LSN trailer (uncompressed pages) and checksum agree.
    Valid(Checksum),
    /// Never written: allocated but all zeros (the server accepts it).
    AllZero,
    /// Re-read it: a torn read of a page being written looks like this. If
    /// it persists, the file is damaged.
    Corrupt(Corruption),
}

impl PageCheck {
    /// Valid or all zeros: safe to copy.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Self::Corrupt(_))
    }
}

/// Validates one page as the server's reader does (`is_corrupted`):
///
/// - uncompressed pages: the low 32 bits of FIL_PAGE_LSN must equal the last
///   4 bytes, then the checksum fields (@0 and @size-8) must be crc32 (both
///   fields equal the CRC), none (both 0xDEADBEEF) or innodb (@size-8 the old
///   formula or, from very old versions, the LSN's high word; @0 the new
///   formula or 0);
/// - compressed pages: no trailer; the checksum @0 must be the zip crc32,
///   Adler-32 or 0xDEADBEEF;
/// - pages whose checksum fields and LSN are zero are valid only if the rest
///   is zero too (bytes 26..34 excepted for uncompressed pages, as the
///   server does).
///
/// Not accepted: the "legacy big-endian crc32" that a 5.6 bug produced on
/// big-endian machines, and transparently compressed or encrypted pages
/// (types 14..=17), which must be decoded first. Bytes 26..38 of an
/// uncompressed page (flush LSN, space id) and 16..34 of a compressed one
/// are outside every checksum by design: compare [`space_id`] and
/// [`page_no`] with what you expect to catch misplaced pages.
pub fn verify_page(page: &[u8], page_size: PageSize) -> PageCheck {
    let expected = page_size.physical as usize;
    if page.len() != expected || expected < FIL_PAGE_DATA + FIL_PAGE_END_LSN_OLD_CHKSUM {
        return PageCheck::Corrupt(Corruption::WrongLength {
            len: page.len(),
            expected,
        });
    }
    let page_type = be16(page, FIL_PAGE_TYPE);
    if (FIL_PAGE_COMPRESSED..=FIL_PAGE_ENCRYPTED_RTREE).contains(&page_type) {
        return PageCheck::Corrupt(Corruption::Transformed { page_type });
    }
    if page_size.is_compressed() {
        verify_zip_page(page)
    } else {
        verify_plain_page(page)
    }
}

fn verify_plain_page(page: &[u8]) -> PageCheck {
    let len = page.len();
    let head = be32(page, FIL_PAGE_LSN + 4);
    let trailer = be32(page, len - 4);
    if head != trailer {
        return PageCheck::Corrupt(Corruption::LsnMismatch { head, trailer });
    }
    let stored = be32(page, FIL_PAGE_SPACE_OR_CHKSUM);
    let stored_trailer = be32(page, len - FIL_PAGE_END_LSN_OLD_CHKSUM);
    if stored == 0 && stored_trailer == 0 && page_lsn(page) == Some(0) {
        // The server lets FIL_PAGE_FILE_FLUSH_LSN (26..34) be set on an
        // otherwise empty page; so do we.
        let empty = page[..FIL_PAGE_FILE_FLUSH_LSN]
            .iter()
            .chain(&page[FIL_PAGE_SPACE_ID..])
            .all(|&b| b == 0);
        return if empty {
            PageCheck::AllZero
        } else {
            PageCheck::Corrupt(Corruption::NotEmpty)
        };
    }
    let crc32 = crc32_checksum(page);
    if stored == stored_trailer && stored == crc32 {
        return PageCheck::Valid(Checksum::Crc32);
    }
    if stored == BUF_NO_CHECKSUM_MAGIC && stored_trailer == BUF_NO_CHECKSUM_MAGIC {
        return PageCheck::Valid(Checksum::None);
    }
    let (new, old) = innodb_checksums(page);
    let lsn_high = be32(page, FIL_PAGE_LSN);
    if (stored_trailer == old || stored_trailer == lsn_high) && (stored == 0 || stored == new) {
        return PageCheck::Valid(Checksum::Innodb);
    }
    PageCheck::Corrupt(Corruption::ChecksumMismatch {
        stored,
        trailer: stored_trailer,
        crc32,
    })
}

fn verify_zip_page(page: &[u8]) -> PageCheck {
    let stored = be32(page, FIL_PAGE_SPACE_OR_CHKSUM);
    if stored == 0 && page_lsn(page) == Some(0) {
        return if page.iter().all(|&b| b == 0) {
            PageCheck::AllZero
        } else {
            PageCheck::Corrupt(Corruption::NotEmpty)
        };
    }
    let crc32 = zip_crc32_checksum(page);
    if stored == crc32 {
        PageCheck::Valid(Checksum::Crc32)
    } else if stored == BUF_NO_CHECKSUM_MAGIC {
        PageCheck::Valid(Checksum::None)
    } else if stored == zip_adler32_checksum(page) {
        PageCheck::Valid(Checksum::Innodb)
    } else {
        PageCheck::Corrupt(Corruption::ZipChecksumMismatch { stored, crc32 })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn flags_for_a_page_size_give_that_page_size_back() {
        for logical in [4096, 8192, 16384, 32768, 65536] {
            let size = page_size_from_flags(flags_for_page_size(logical)).unwrap();
            assert_eq!((size.logical, size.physical), (logical, logical));
        }
    }
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/innodb/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    const ZIP8K: PageSize = PageSize {
        logical: 16384,
        physical: 8192,
    };
    const ZIP4K: PageSize = PageSize {
        logical: 16384,
        physical: 4096,
    };

    /// Every real page, with the page size it is read with and the checksum
    /// algorithm the server wrote it with.
    fn real_pages() -> Vec<(&'static str, Vec<u8>, PageSize, Checksum)> {
        vec![
            (
                "plain-page0.bin",
                fixture("plain-page0.bin"),
                PageSize::DEFAULT,
                Checksum::Crc32,
            ),
            (
                "plain-page4.bin",
                fixture("plain-page4.bin"),
                PageSize::DEFAULT,
                Checksum::Crc32,
            ),
            (
                "ibdata1-page0.bin",
                fixture("ibdata1-page0.bin"),
                PageSize::DEFAULT,
                Checksum::Crc32,
            ),
            (
                "zipped-page0.bin",
                fixture("zipped-page0.bin"),
                ZIP8K,
                Checksum::Crc32,
            ),
            (
                "zipped-page4.bin",
                fixture("zipped-page4.bin"),
                ZIP8K,
                Checksum::Crc32,
            ),
            (
                "page-innodb-algo.bin",
                fixture("page-innodb-algo.bin"),
                PageSize::DEFAULT,
                Checksum::Innodb,
            ),
            (
                "page-none-algo.bin",
                fixture("page-none-algo.bin"),
                PageSize::DEFAULT,
                Checksum::None,
            ),
            (
                "zip4k-innodb-algo-page4.bin",
                fixture("zip4k-innodb-algo-page4.bin"),
                ZIP4K,
                Checksum::Innodb,
            ),
        ]
    }

    #[test]
    fn every_real_page_verifies_with_its_algorithm() {
        for (name, page, size, algo) in real_pages() {
            assert_eq!(verify_page(&page, size), PageCheck::Valid(algo), "{name}");
        }
    }

    #[test]
    fn real_page0_of_a_plain_table() {
        let page = fixture("plain-page0.bin");
        let info = tablespace_info(&page).expect("page 0");
        assert_eq!(info.page_size, PageSize::DEFAULT);
        assert!(info.page0_verified);
        assert!(info.space_id > 0);
        assert!(info.size_in_pages >= 5);
        assert_eq!(info.flags & FSP_FLAGS_MASK_ENCRYPTION, 0);
        // Data pages of the same file agree on the space id.
        let data = fixture("plain-page4.bin");
        assert_eq!(space_id(&data), Some(info.space_id));
        assert_eq!(page_no(&data), Some(4));
        assert_eq!(page_type(&data), Some(FIL_PAGE_INDEX));
        assert!(page_lsn(&data).is_some_and(|lsn| lsn > 8192));
    }

    #[test]
    fn real_page0_of_a_compressed_table_reports_8k_physical() {
        let page = fixture("zipped-page0.bin");
        let info = tablespace_info(&page).expect("page 0");
        assert_eq!(info.page_size, ZIP8K);
        assert!(info.page_size.is_compressed());
        assert!(info.page0_verified);
        assert_eq!(space_id(&fixture("zipped-page4.bin")), Some(info.space_id));
        // Compressed pages have no LSN trailer.
        assert_eq!(page[page.len() - 4..], [0, 0, 0, 0]);
    }

    #[test]
    fn real_ibdata1_page0_is_space_0_with_a_flushed_lsn() {
        let page = fixture("ibdata1-page0.bin");
        let info = tablespace_info(&page).expect("page 0");
        assert_eq!(info.space_id, 0);
        assert_eq!(info.page_size, PageSize::DEFAULT);
        let mut flushed = [0u8; 8];
        flushed.copy_from_slice(&page[FIL_PAGE_FILE_FLUSH_LSN..FIL_PAGE_FILE_FLUSH_LSN + 8]);
        // mysqld requires this to be at least LOG_START_LSN.
        assert!(u64::from_be_bytes(flushed) >= 8192);
    }

    #[test]
    fn tablespace_info_from_a_short_prefix_is_unverified() {
        let page = fixture("plain-page0.bin");
        let info = tablespace_info(&page[..512]).expect("flags readable");
        assert_eq!(info.page_size, PageSize::DEFAULT);
        assert!(!info.page0_verified);
        assert!(matches!(
            tablespace_info(&page[..57]),
            Err(PageError::TooShort { need: 58, got: 57 })
        ));
    }

    #[test]
    fn tablespace_info_rejects_other_pages_and_corruption() {
        assert!(matches!(
            tablespace_info(&fixture("plain-page4.bin")),
            Err(PageError::NotPage0 { .. })
        ));
        assert!(matches!(
            tablespace_info(&[0u8; 16384]),
            Err(PageError::NotPage0 { .. })
        ));
        let mut torn = fixture("plain-page0.bin");
        torn[9000] ^= 0x40;
        assert!(matches!(
            tablespace_info(&torn),
            Err(PageError::Page0Corrupt { .. })
        ));
    }

    #[test]
    fn page_sizes_from_flags() {
        assert_eq!(page_size_from_flags(0), Ok(PageSize::DEFAULT));
        assert_eq!(page_size_from_flags(0x4021), Ok(PageSize::DEFAULT));
        // zip_ssize 4 = 8 KiB, page_ssize 0 = 16 KiB.
        assert_eq!(page_size_from_flags(0x4029), Ok(ZIP8K));
        for (ssize, size) in [
            (3u32, 4096u32),
            (4, 8192),
            (5, 16384),
            (6, 32768),
            (7, 65536),
        ] {
            let ps = page_size_from_flags(ssize << 6).expect("valid");
            assert_eq!((ps.logical, ps.physical), (size, size));
        }
        assert_eq!(
            page_size_from_flags((3 << 6) | (4 << 1)),
            Err(PageError::BadFlags {
                flags: (3 << 6) | (4 << 1),
                why: "compressed page size exceeds the page size"
            })
        );
        assert!(page_size_from_flags(1 << 6).is_err());
        assert!(page_size_from_flags(8 << 6).is_err());
        assert!(page_size_from_flags(6 << 1).is_err());
    }

    #[test]
    fn all_zero_pages_are_valid_empties() {
        assert_eq!(
            verify_page(&[0u8; 16384], PageSize::DEFAULT),
            PageCheck::AllZero
        );
        assert_eq!(verify_page(&[0u8; 8192], ZIP8K), PageCheck::AllZero);
        let mut flush_lsn_only = [0u8; 16384];
        flush_lsn_only[FIL_PAGE_FILE_FLUSH_LSN + 7] = 9;
        assert_eq!(
            verify_page(&flush_lsn_only, PageSize::DEFAULT),
            PageCheck::AllZero
        );
        let mut data = [0u8; 16384];
        data[100] = 1;
        assert_eq!(
            verify_page(&data, PageSize::DEFAULT),
            PageCheck::Corrupt(Corruption::NotEmpty)
        );
    }

    #[test]
    fn flipped_lsn_trailer_is_an_lsn_mismatch() {
        let mut page = fixture("plain-page4.bin");
        let last = page.len() - 1;
        page[last] ^= 1;
        assert!(matches!(
            verify_page(&page, PageSize::DEFAULT),
            PageCheck::Corrupt(Corruption::LsnMismatch { .. })
        ));
    }

    #[test]
    fn wrong_length_and_transformed_pages_are_rejected() {
        let page = fixture("plain-page4.bin");
        assert_eq!(
            verify_page(&page[..8192], PageSize::DEFAULT),
            PageCheck::Corrupt(Corruption::WrongLength {
                len: 8192,
                expected: 16384
            })
        );
        assert!(!verify_page(&[], PageSize::DEFAULT).is_ok());
        let mut encrypted = page.clone();
        encrypted[FIL_PAGE_TYPE..FIL_PAGE_TYPE + 2]
            .copy_from_slice(&FIL_PAGE_ENCRYPTED.to_be_bytes());
        assert_eq!(
            verify_page(&encrypted, PageSize::DEFAULT),
            PageCheck::Corrupt(Corruption::Transformed { page_type: 15 })
        );
    }

    #[test]
    fn checksum_helpers_do_not_panic_on_short_input() {
        for len in [0, 1, 10, 30, 40, 45] {
            let page = vec![7u8; len];
            let _ = crc32_checksum(&page);
            let _ = innodb_checksums(&page);
            let _ = zip_crc32_checksum(&page);
            let _ = zip_adler32_checksum(&page);
            assert!(!verify_page(&page, PageSize::DEFAULT).is_ok());
            assert_eq!(page_lsn(&page).is_some(), len >= 24);
        }
    }

    #[test]
    fn adler32_matches_zlib_seeded_with_zero() {
        // Python: a = zlib.adler32(p[4:16], 0); a = zlib.adler32(p[24:26], a);
        // a = zlib.adler32(p[34:], a) with p[i] = (7i + 3) % 256.
        let page: Vec<u8> = (0..4096u32).map(|i| ((i * 7 + 3) % 256) as u8).collect();
        assert_eq!(zip_adler32_checksum(&page), 0x7992_ed4b);
    }

    proptest! {
        #[test]
        fn checksummed_bit_flips_in_plain_pages_are_detected(index in 0usize..16384, bit in 0u8..8) {
            // 26..38 (flush LSN, space id) are outside every checksum.
            prop_assume!(!(FIL_PAGE_FILE_FLUSH_LSN..FIL_PAGE_DATA).contains(&index));
            for name in ["plain-page0.bin", "plain-page4.bin", "ibdata1-page0.bin", "page-innodb-algo.bin"] {
                let mut page = fixture(name);
                page[index] ^= 1 << bit;
                let check = verify_page(&page, PageSize::DEFAULT);
                prop_assert!(matches!(check, PageCheck::Corrupt(_)), "{} byte {} bit {}: {:?}", name, index, bit, check);
            }
        }

        #[test]
        fn checksummed_bit_flips_in_zip_pages_are_detected(index in 0usize..8192, bit in 0u8..8) {
            // 16..24 (LSN) and 26..34 (flush LSN) are outside the zip checksum.
            prop_assume!(!(FIL_PAGE_LSN..FIL_PAGE_TYPE).contains(&index));
            prop_assume!(!(FIL_PAGE_FILE_FLUSH_LSN..FIL_PAGE_SPACE_ID).contains(&index));
            for name in ["zipped-page0.bin", "zipped-page4.bin"] {
                let mut page = fixture(name);
                page[index] ^= 1 << bit;
                let check = verify_page(&page, ZIP8K);
                prop_assert!(matches!(check, PageCheck::Corrupt(_)), "{} byte {} bit {}: {:?}", name, index, bit, check);
            }
            if index < 4096 {
                let mut page = fixture("zip4k-innodb-algo-page4.bin");
                page[index] ^= 1 << bit;
                prop_assert!(!verify_page(&page, ZIP4K).is_ok());
            }
        }
    }
}
