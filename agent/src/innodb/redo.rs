//! Redo log format 6 (MySQL 8.0.30 and later, still current in 9.7): file
//! header, checkpoint headers, data blocks and LSN arithmetic. Pure: no I/O.
//!
//! A redo file is a 2048-byte header (four 512-byte blocks: file header @0,
//! checkpoint 1 @512, encryption info @1024, checkpoint 2 @1536) followed by
//! 512-byte data blocks; the block at file offset `2048 + (lsn - start_lsn)`
//! holds the LSNs `[lsn, lsn + 512)`. LSNs count the 12-byte block header
//! and 4-byte trailer too; SNs count payload bytes only.
//!
//! Sources: `include/log0constants.h`, `include/log0files_io.h`,
//! `log/log0files_io.cc`, `log/log0handler.cc` (9.x recovery scan).

use thiserror::Error;

/// A log sequence number: a byte position in the (endless) redo stream,
/// headers and trailers of blocks included.
pub type Lsn = u64;

/// Size of a redo block, and the alignment of every redo read and write.
pub const BLOCK_SIZE: usize = 512;
/// Header of a data block: hdr_no, data_len, first_rec_group, epoch_no.
pub const BLOCK_HDR_SIZE: usize = 12;
/// Trailer of a data block: the CRC-32C of the bytes before it.
pub const BLOCK_TRL_SIZE: usize = 4;
/// Payload bytes in a block.
pub const BLOCK_DATA_SIZE: usize = BLOCK_SIZE - BLOCK_HDR_SIZE - BLOCK_TRL_SIZE;
/// Size of the header at the start of every redo file.
pub const FILE_HDR_SIZE: usize = 4 * BLOCK_SIZE;
/// The first LSN of a freshly initialized server; no valid LSN is lower.
pub const LOG_START_LSN: Lsn = 16 * BLOCK_SIZE as Lsn;
/// The redo format of 8.0.30 and later (`Log_format::CURRENT`).
pub const FORMAT_CURRENT: u32 = 6;

/// Offset of checkpoint header 1 in a redo file.
pub const CHECKPOINT_1_OFFSET: usize = BLOCK_SIZE;
/// Offset of the encryption-info block in a redo file (all zeros unless
/// `innodb_redo_log_encrypt` is on).
pub const ENCRYPTION_OFFSET: usize = 2 * BLOCK_SIZE;
/// Offset of checkpoint header 2 in a redo file.
pub const CHECKPOINT_2_OFFSET: usize = 3 * BLOCK_SIZE;

/// Longest creator string the header holds (a NUL always follows it).
pub const CREATOR_MAX_LEN: usize = 31;

/// File header flag: redo logging was disabled (`ALTER INSTANCE DISABLE
/// INNODB REDO_LOG`). The server stores flag *bit numbers* 1..4 in its
/// sources and writes `1 << (bit - 1)`; these are the resulting masks.
pub const FLAG_NO_LOGGING: u32 = 0x1;
/// File header flag: the data directory is not crash safe; mysqld refuses to
/// start from such redo.
pub const FLAG_CRASH_UNSAFE: u32 = 0x2;
/// File header flag: initialization never finished; mysqld recreates the
/// redo and silently skips recovery.
pub const FLAG_NOT_INITIALIZED: u32 = 0x4;
/// File header flag: the file is full and closed; a newer file must exist.
pub const FLAG_FILE_FULL: u32 = 0x8;

/// Block numbers (hdr_no) wrap after this many blocks; one such cycle is an
/// "epoch".
pub const BLOCK_MAX_NO: u32 = 0x4000_0000;
/// Trailer written instead of a CRC when `innodb_log_checksums=OFF`. We do
/// not accept it: see [`classify_block`].
pub const NO_CHECKSUM_MAGIC: u32 = 0xDEAD_BEEF;

/// Bit 31 of hdr_no was a "first block of a write" flag in old versions; it
/// is masked off on read.
const HDR_NO_FLUSH_BIT: u32 = 0x8000_0000;
/// Bit 15 of data_len marks an encrypted block.
const DATA_LEN_ENCRYPT_BIT: u16 = 0x8000;

const HEADER_FORMAT: usize = 0;
const HEADER_LOG_UUID: usize = 4;
const HEADER_START_LSN: usize = 8;
const HEADER_CREATOR: usize = 16;
const HEADER_FLAGS: usize = HEADER_CREATOR + CREATOR_MAX_LEN + 1;
const CHECKPOINT_LSN: usize = 8;
const CHECKSUM_AT: usize = BLOCK_SIZE - BLOCK_TRL_SIZE;

/// Errors decoding or encoding redo structures.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RedoError {
    #[error("{what}: need {need} bytes, got {got}")]
    TooShort {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error("{what}: CRC-32C mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadChecksum {
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error(
        "redo file header: format {0} is not supported (only format 6, MySQL 8.0.30 and later)"
    )]
    UnsupportedFormat(u32),
    #[error("redo file header: start_lsn {0} must be a multiple of 512 and at least 8192")]
    BadStartLsn(Lsn),
    #[error("block data length {0} is invalid: it must be 12..=507 (partial) or 512 (full)")]
    BadDataLen(usize),
}

/// Reads a big-endian u16 at `at`; callers have checked the length.
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

fn be64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Returns the first 512 bytes of `buf`, or an error naming `what`.
fn first_block<'a>(buf: &'a [u8], what: &'static str) -> Result<&'a [u8; BLOCK_SIZE], RedoError> {
    buf.first_chunk::<BLOCK_SIZE>().ok_or(RedoError::TooShort {
        what,
        need: BLOCK_SIZE,
        got: buf.len(),
    })
}

/// CRC-32C over bytes 0..508 of a block or header block: what the server
/// stores in the last 4 bytes of every redo block and header block.
pub fn checksum(block: &[u8; BLOCK_SIZE]) -> u32 {
    crc32c::crc32c(&block[..CHECKSUM_AT])
}

fn stored_checksum(block: &[u8; BLOCK_SIZE]) -> u32 {
    be32(block, CHECKSUM_AT)
}

fn seal(block: &mut [u8; BLOCK_SIZE]) {
    let crc = checksum(block);
    block[CHECKSUM_AT..].copy_from_slice(&crc.to_be_bytes());
}

fn verify_checksum(block: &[u8; BLOCK_SIZE], what: &'static str) -> Result<(), RedoError> {
    let stored = stored_checksum(block);
    let computed = checksum(block);
    if stored == computed {
        Ok(())
    } else {
        Err(RedoError::BadChecksum {
            what,
            stored,
            computed,
        })
    }
}

/// The file header, the first block of every redo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// Always [`FORMAT_CURRENT`] for files we parse.
    pub format: u32,
    /// Random non-zero id shared by all files of one redo log; mysqld
    /// refuses a set whose files disagree.
    pub log_uuid: u32,
    /// LSN of the first data block, a multiple of 512.
    pub start_lsn: Lsn,
    /// "MySQL 9.7.4", "MEB ...", "MySQL Clone", ...: at most 31 bytes.
    pub creator: String,
    /// `FLAG_*` masks.
    pub flags: u32,
}

impl FileHeader {
    /// Decodes the file header from the first 512 bytes of `buf`, checking
    /// its CRC-32C, its format and its start LSN.
    pub fn parse(buf: &[u8]) -> Result<Self, RedoError> {
        let block = first_block(buf, "redo file header")?;
        // The server (log_file_header_deserialize) skips the CRC only for
        // format 0, which is not a format we read anyway.
        verify_checksum(block, "redo file header")?;
        let format = be32(block, HEADER_FORMAT);
        if format != FORMAT_CURRENT {
            return Err(RedoError::UnsupportedFormat(format));
        }
        let start_lsn = be64(block, HEADER_START_LSN);
        if start_lsn < LOG_START_LSN || !start_lsn.is_multiple_of(BLOCK_SIZE as Lsn) {
            return Err(RedoError::BadStartLsn(start_lsn));
        }
        // Like the server: the creator is whatever precedes the first NUL in
        // its 31 bytes (there may be no NUL inside them).
        let raw = &block[HEADER_CREATOR..HEADER_CREATOR + CREATOR_MAX_LEN];
        let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Ok(Self {
            format,
            log_uuid: be32(block, HEADER_LOG_UUID),
            start_lsn,
            creator: String::from_utf8_lossy(&raw[..len]).into_owned(),
            flags: be32(block, HEADER_FLAGS),
        })
    }

    /// Encodes the header into a block with a fresh CRC. A creator longer
    /// than 31 bytes is cut at the last character boundary that fits, as the
    /// server's `strncpy` would (minus splitting a character).
    pub fn encode(&self) -> [u8; BLOCK_SIZE] {
        let mut block = [0u8; BLOCK_SIZE];
        block[HEADER_FORMAT..HEADER_FORMAT + 4].copy_from_slice(&self.format.to_be_bytes());
        block[HEADER_LOG_UUID..HEADER_LOG_UUID + 4].copy_from_slice(&self.log_uuid.to_be_bytes());
        block[HEADER_START_LSN..HEADER_START_LSN + 8]
            .copy_from_slice(&self.start_lsn.to_be_bytes());
        let creator = truncate_at_char_boundary(&self.creator, CREATOR_MAX_LEN);
        block[HEADER_CREATOR..HEADER_CREATOR + creator.len()].copy_from_slice(creator.as_bytes());
        block[HEADER_FLAGS..HEADER_FLAGS + 4].copy_from_slice(&self.flags.to_be_bytes());
        seal(&mut block);
        block
    }

    /// The LSN one past the last data byte of a file of `file_size` bytes
    /// with this header.
    pub fn end_lsn(&self, file_size: u64) -> Lsn {
        self.start_lsn + file_size.saturating_sub(FILE_HDR_SIZE as u64)
    }
}

fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A checkpoint header (@512 or @1536 of a redo file). The server writes
/// the two alternately into whichever file holds the checkpoint LSN; a
/// header of a file created later reads as LSN 0 with a valid CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointHeader {
    /// Recovery starts scanning at `align_down(checkpoint_lsn, 512)`.
    pub checkpoint_lsn: Lsn,
}

impl CheckpointHeader {
    /// Decodes a checkpoint header from the first 512 bytes of `buf`. A bad
    /// CRC is an error: recovery ignores such a header, and so should the
    /// caller (a torn checkpoint write leaves the other header intact).
    pub fn parse(buf: &[u8]) -> Result<Self, RedoError> {
        let block = first_block(buf, "redo checkpoint header")?;
        verify_checksum(block, "redo checkpoint header")?;
        Ok(Self {
            checkpoint_lsn: be64(block, CHECKPOINT_LSN),
        })
    }

    /// Encodes the header into a block with a fresh CRC.
    pub fn encode(&self) -> [u8; BLOCK_SIZE] {
        let mut block = [0u8; BLOCK_SIZE];
        block[CHECKPOINT_LSN..CHECKPOINT_LSN + 8]
            .copy_from_slice(&self.checkpoint_lsn.to_be_bytes());
        seal(&mut block);
        block
    }
}

/// The 12-byte header of a data block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// `1 + (lsn / 512) % 2^30` of the block's first LSN, bit 31 masked off.
    pub hdr_no: u32,
    /// Bytes used, header included: 512 means full; less means this is the
    /// last block written. The encryption bit is masked off.
    pub data_len: u16,
    /// Offset of the first mini-transaction that starts in this block, 0 if
    /// none does. Equal to `data_len` when the next one will start there.
    pub first_rec_group: u16,
    /// `1 + lsn / 512 / 2^30`: which wrap-around of hdr_no this block is in.
    pub epoch_no: u32,
    /// Bit 15 of data_len: the payload is encrypted (`innodb_redo_log_encrypt`).
    pub encrypted: bool,
}

impl BlockHeader {
    /// Decodes the header fields of a block; it does not check the CRC.
    pub fn parse(block: &[u8; BLOCK_SIZE]) -> Self {
        let raw_len = be16(block, 4);
        Self {
            hdr_no: be32(block, 0) & !HDR_NO_FLUSH_BIT,
            data_len: raw_len & !DATA_LEN_ENCRYPT_BIT,
            first_rec_group: be16(block, 6),
            epoch_no: be32(block, 8),
            encrypted: raw_len & DATA_LEN_ENCRYPT_BIT != 0,
        }
    }

    /// The header the server writes for the block starting at `block_lsn`.
    pub fn for_lsn(block_lsn: Lsn, data_len: u16, first_rec_group: u16) -> Self {
        Self {
            hdr_no: block_hdr_no_for_lsn(block_lsn),
            data_len,
            first_rec_group,
            epoch_no: epoch_for_lsn(block_lsn),
            encrypted: false,
        }
    }

    /// Writes the header fields into `block` and recomputes its CRC.
    pub fn write_to(&self, block: &mut [u8; BLOCK_SIZE]) {
        let raw_len = if self.encrypted {
            self.data_len | DATA_LEN_ENCRYPT_BIT
        } else {
            self.data_len
        };
        block[0..4].copy_from_slice(&self.hdr_no.to_be_bytes());
        block[4..6].copy_from_slice(&raw_len.to_be_bytes());
        block[6..8].copy_from_slice(&self.first_rec_group.to_be_bytes());
        block[8..12].copy_from_slice(&self.epoch_no.to_be_bytes());
        seal(block);
    }

    /// The absolute block number this header claims, `lsn / 512` of the
    /// block it was written for; `None` for numbers no 8.0.30+ server writes
    /// (hdr_no or epoch 0, hdr_no past 2^30).
    fn absolute_no(&self) -> Option<u64> {
        if self.hdr_no == 0 || self.hdr_no > BLOCK_MAX_NO || self.epoch_no == 0 {
            return None;
        }
        Some(u64::from(self.epoch_no - 1) * u64::from(BLOCK_MAX_NO) + u64::from(self.hdr_no - 1))
    }
}

/// hdr_no of the block holding `lsn` (`log_block_convert_lsn_to_hdr_no`).
pub fn block_hdr_no_for_lsn(lsn: Lsn) -> u32 {
    // The modulo keeps the value below 2^30, so the cast is lossless.
    1 + (lsn / BLOCK_SIZE as Lsn % u64::from(BLOCK_MAX_NO)) as u32
}

/// epoch_no of the block holding `lsn` (`log_block_convert_lsn_to_epoch_no`).
pub fn epoch_for_lsn(lsn: Lsn) -> u32 {
    // lsn < 2^64 gives lsn / 2^39 < 2^25: lossless.
    1 + (lsn / BLOCK_SIZE as Lsn / u64::from(BLOCK_MAX_NO)) as u32
}

/// What a 512-byte block read at a given LSN turned out to be.
///
/// The rule: a block with a good CRC names its own position as the pair
/// (epoch_no, hdr_no), i.e. the absolute block number
/// `(epoch_no - 1) * 2^30 + (hdr_no - 1)`, which is `lsn / 512` of the LSN it
/// was written for. hdr_no alone wraps every 2^30 blocks (512 GiB of redo)
/// and cannot tell "older" from "newer" across a wrap; the pair can. Compared
/// with the block number expected at the read position:
/// - equal: the block we want ([`Valid`](Self::Valid)); recovery (9.x
///   `log_block_is_valid`) demands exactly this hdr_no and epoch;
/// - lower: content from an earlier pass over this file
///   ([`Stale`](Self::Stale)): the log has not reached here yet;
/// - higher: the server has already reused this file for later LSNs
///   ([`Ahead`](Self::Ahead)): what we wanted is gone.
///
/// Numbers no 8.0.30+ server writes (hdr_no 0, epoch 0, hdr_no > 2^30) count
/// as stale: they say nothing about the log having moved past us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// The block for this LSN; `full` when `data_len == 512`, otherwise it is
    /// the last block written so far and may still grow.
    Valid { header: BlockHeader, full: bool },
    /// Good CRC, but written for an earlier LSN: end of the log for now.
    Stale { header: BlockHeader },
    /// Good CRC, but written for a later LSN: the log wrapped over the
    /// position we wanted. Fatal for a copier.
    Ahead { header: BlockHeader },
    /// Bad CRC: a write in progress (or real damage). Read it again later.
    Torn,
    /// All zeros: never written.
    Empty,
    /// Good CRC and the expected number, but a data_len no server writes
    /// (not 12..=507 or 512). Rereading will not help.
    Malformed {
        header: BlockHeader,
        reason: &'static str,
    },
}

/// Classifies a block read at `expected_start_lsn` (aligned down to 512 if
/// it is not). See [`BlockState`] for the rule.
///
/// Only CRC-32C trailers are accepted. With `innodb_log_checksums=OFF` the
/// server writes 0xDEADBEEF instead, which makes every block look torn; a
/// backup must refuse to run in that mode (recovery with checksums on would
/// stop at such blocks anyway).
pub fn classify_block(block: &[u8; BLOCK_SIZE], expected_start_lsn: Lsn) -> BlockState {
    if block.iter().all(|&b| b == 0) {
        return BlockState::Empty;
    }
    if stored_checksum(block) != checksum(block) {
        return BlockState::Torn;
    }
    let header = BlockHeader::parse(block);
    let expected = expected_start_lsn / BLOCK_SIZE as Lsn;
    match header.absolute_no() {
        None => BlockState::Stale { header },
        Some(no) if no < expected => BlockState::Stale { header },
        Some(no) if no > expected => BlockState::Ahead { header },
        Some(_) => {
            let len = usize::from(header.data_len);
            // A partial block ends at a data LSN (offset 12..=507); anything
            // else was not written by a server. first_rec_group is not
            // judged here: recovery never does, and cut_tail checks it where
            // it matters.
            if !is_data_lsn(len as Lsn) && len != BLOCK_SIZE {
                BlockState::Malformed {
                    header,
                    reason: "data_len is neither 12..=507 nor 512",
                }
            } else {
                BlockState::Valid {
                    header,
                    full: len == BLOCK_SIZE,
                }
            }
        }
    }
}

/// LSN of the SN-th payload byte (`log_translate_sn_to_lsn`). Defined for
/// `sn < 2^63` (the server's limit).
pub fn sn_to_lsn(sn: u64) -> Lsn {
    let data = BLOCK_DATA_SIZE as u64;
    sn / data * BLOCK_SIZE as u64 + sn % data + BLOCK_HDR_SIZE as u64
}

/// SN of an LSN (`log_translate_lsn_to_sn`). An LSN inside a block header
/// maps to the block's first payload byte, one inside a trailer to the next
/// block's, so `sn_to_lsn(lsn_to_sn(l)) == l` exactly for
/// [`is_data_lsn`] LSNs.
pub fn lsn_to_sn(lsn: Lsn) -> u64 {
    let base = lsn / BLOCK_SIZE as u64 * BLOCK_DATA_SIZE as u64;
    let offset = (lsn % BLOCK_SIZE as u64) as usize;
    if offset < BLOCK_HDR_SIZE {
        base
    } else if offset >= BLOCK_SIZE - BLOCK_TRL_SIZE {
        base + BLOCK_DATA_SIZE as u64
    } else {
        base + (offset - BLOCK_HDR_SIZE) as u64
    }
}

/// Whether `lsn` points at a payload byte, as every mini-transaction
/// boundary, checkpoint LSN and `log_status` LSN does: its offset in the
/// block is in 12..=507.
pub fn is_data_lsn(lsn: Lsn) -> bool {
    let offset = (lsn % BLOCK_SIZE as u64) as usize;
    (BLOCK_HDR_SIZE..BLOCK_SIZE - BLOCK_TRL_SIZE).contains(&offset)
}

/// Rounds `value` down to a multiple of `align` (returned unchanged if
/// `align` is 0).
pub fn align_down(value: u64, align: u64) -> u64 {
    match value.checked_rem(align) {
        Some(rem) => value - rem,
        None => value,
    }
}

/// Rounds `value` up to a multiple of `align`, saturating at the largest
/// multiple (returned unchanged if `align` is 0).
pub fn align_up(value: u64, align: u64) -> u64 {
    match value.checked_rem(align) {
        Some(0) | None => value,
        Some(rem) => value
            .checked_add(align - rem)
            .unwrap_or_else(|| align_down(u64::MAX, align)),
    }
}

/// Makes `block` end at byte `end` of the block: data_len = `end`, payload
/// after it zeroed (up to the trailer), first_rec_group cleared if it
/// pointed past the new end, and a fresh CRC. `end` must be 12..=507, or
/// 512 to leave a full block as it is (CRC still refreshed).
pub fn truncate_block_at(block: &mut [u8; BLOCK_SIZE], end: usize) -> Result<(), RedoError> {
    let valid_end =
        (BLOCK_HDR_SIZE..BLOCK_SIZE - BLOCK_TRL_SIZE).contains(&end) || end == BLOCK_SIZE;
    if !valid_end {
        return Err(RedoError::BadDataLen(end));
    }
    let mut header = BlockHeader::parse(block);
    // Lossless: end <= 512.
    header.data_len = end as u16;
    if header.first_rec_group > header.data_len {
        // The group it pointed at starts after the cut: none starts here now.
        header.first_rec_group = 0;
    }
    if end < BLOCK_SIZE {
        block[end..CHECKSUM_AT].fill(0);
    }
    header.write_to(block);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/innodb/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    fn facts() -> serde_json::Value {
        serde_json::from_slice(&fixture("redo.json")).expect("redo.json parses")
    }

    fn u(v: &serde_json::Value) -> u64 {
        v.as_u64().expect("an unsigned number")
    }

    fn file_facts(id: u64) -> serde_json::Value {
        let facts = facts();
        facts["redo_files"]
            .as_array()
            .expect("redo_files")
            .iter()
            .find(|f| u(&f["id"]) == id)
            .cloned()
            .expect("file in redo.json")
    }

    fn blocks(bytes: &[u8]) -> Vec<[u8; BLOCK_SIZE]> {
        let (chunks, rest) = bytes.as_chunks::<BLOCK_SIZE>();
        assert!(rest.is_empty());
        chunks.to_vec()
    }

    /// A block as the server would write it for `lsn`, with some payload.
    fn block_for(lsn: Lsn, data_len: u16, first_rec_group: u16) -> [u8; BLOCK_SIZE] {
        let mut block = [0u8; BLOCK_SIZE];
        let end = usize::from(data_len).clamp(BLOCK_HDR_SIZE, CHECKSUM_AT);
        for (i, b) in block[BLOCK_HDR_SIZE..end].iter_mut().enumerate() {
            *b = (i % 251) as u8 + 1;
        }
        BlockHeader::for_lsn(align_down(lsn, 512), data_len, first_rec_group).write_to(&mut block);
        block
    }

    #[test]
    fn constants_match_the_server() {
        assert_eq!(BLOCK_DATA_SIZE, 496);
        assert_eq!(FILE_HDR_SIZE, 2048);
        assert_eq!(LOG_START_LSN, 8192);
        assert_eq!(HEADER_FLAGS, 48);
    }

    #[test]
    fn real_header_of_the_checkpoint_file_parses() {
        let facts = facts();
        let id = u(&facts["ckpt_file_id"]);
        let file = file_facts(id);
        let bytes = fixture("redo-header-ckpt.bin");
        let header = FileHeader::parse(&bytes).expect("valid header");
        assert_eq!(header.format, FORMAT_CURRENT);
        assert_eq!(header.start_lsn, u(&file["start_lsn"]));
        assert_eq!(u64::from(header.flags), u(&file["flags"]));
        assert_eq!(header.creator, "MySQL 9.7.4");
        assert_ne!(header.log_uuid, 0);
        assert_eq!(header.encode(), bytes[..BLOCK_SIZE]);
    }

    #[test]
    fn real_full_file_is_flagged_full_and_newest_is_not() {
        let facts = facts();
        let ckpt = FileHeader::parse(&fixture("redo-header-ckpt.bin")).expect("valid");
        let newest = FileHeader::parse(&fixture("redo-header-newest.bin")).expect("valid");
        assert_eq!(ckpt.log_uuid, newest.log_uuid);
        assert_eq!(newest.flags & FLAG_FILE_FULL, 0);
        if facts["ckpt_file_id"] != facts["newest_file_id"] {
            // An older file is closed: the server moved on to a newer one.
            assert!(newest.start_lsn > ckpt.start_lsn);
            assert_eq!(ckpt.flags & FLAG_FILE_FULL, FLAG_FILE_FULL);
        }
    }

    #[test]
    fn real_checkpoint_headers_parse_and_round_trip() {
        let facts = facts();
        let file = file_facts(u(&facts["ckpt_file_id"]));
        let bytes = fixture("redo-header-ckpt.bin");
        for (i, at) in [CHECKPOINT_1_OFFSET, CHECKPOINT_2_OFFSET]
            .into_iter()
            .enumerate()
        {
            let header = CheckpointHeader::parse(&bytes[at..]).expect("valid checkpoint");
            assert_eq!(header.checkpoint_lsn, u(&file["checkpoints"][i]));
            assert_eq!(header.encode(), bytes[at..at + BLOCK_SIZE]);
        }
        let cps = [u(&file["checkpoints"][0]), u(&file["checkpoints"][1])];
        assert_eq!(
            cps.into_iter().max(),
            Some(u(&facts["log_status"]["LSN_checkpoint"]))
        );
        // The encryption block is all zeros without innodb_redo_log_encrypt.
        assert!(
            bytes[ENCRYPTION_OFFSET..ENCRYPTION_OFFSET + BLOCK_SIZE]
                .iter()
                .all(|&b| b == 0)
        );
    }

    #[test]
    fn real_blocks_around_the_checkpoint_are_valid_and_full() {
        let facts = facts();
        let start = u(&facts["ckpt_blocks_start_lsn"]);
        let ckpt = u(&facts["log_status"]["LSN_checkpoint"]);
        for (i, block) in blocks(&fixture("redo-ckpt-blocks.bin")).iter().enumerate() {
            let lsn = start + (i * BLOCK_SIZE) as u64;
            match classify_block(block, lsn) {
                BlockState::Valid { header, full } => {
                    assert!(full, "block at {lsn} is full: the log went on");
                    assert_eq!(header.hdr_no, block_hdr_no_for_lsn(lsn));
                    assert_eq!(header.epoch_no, epoch_for_lsn(lsn));
                    assert!(!header.encrypted);
                }
                other => panic!("block at {lsn}: {other:?}"),
            }
        }
        assert!(start <= ckpt && ckpt < start + 4 * 512);
        assert!(is_data_lsn(ckpt));
    }

    #[test]
    fn real_tail_block_ends_at_the_log_status_lsn() {
        let facts = facts();
        let start = u(&facts["tail_blocks_start_lsn"]);
        let lsn = u(&facts["log_status"]["LSN"]);
        assert!(is_data_lsn(lsn));
        let tail = blocks(&fixture("redo-tail-blocks.bin"));
        for (i, block) in tail.iter().enumerate() {
            let block_lsn = start + (i * BLOCK_SIZE) as u64;
            let state = classify_block(block, block_lsn);
            if block_lsn + 512 <= align_down(lsn, 512) {
                assert!(
                    matches!(state, BlockState::Valid { full: true, .. }),
                    "{block_lsn}: {state:?}"
                );
            } else if block_lsn == align_down(lsn, 512) {
                let BlockState::Valid { header, full } = state else {
                    panic!("{block_lsn}: {state:?}");
                };
                assert!(!full);
                assert_eq!(u64::from(header.data_len), lsn % 512);
                assert!(header.first_rec_group > 0 && header.first_rec_group <= header.data_len);
            } else {
                // Never written yet: zeros of a new file, or an older pass.
                assert!(
                    matches!(state, BlockState::Empty | BlockState::Stale { .. }),
                    "{block_lsn}: {state:?}"
                );
            }
        }
    }

    #[test]
    fn real_block_read_at_the_wrong_lsn_is_stale_or_ahead() {
        let facts = facts();
        let start = u(&facts["ckpt_blocks_start_lsn"]);
        let block = blocks(&fixture("redo-ckpt-blocks.bin"))[1];
        let at = start + 512;
        assert!(matches!(
            classify_block(&block, at + 512),
            BlockState::Stale { .. }
        ));
        assert!(matches!(
            classify_block(&block, at - 512),
            BlockState::Ahead { .. }
        ));
        // One full epoch later the hdr_no is the same, but epoch_no is not.
        let next_epoch = at + u64::from(BLOCK_MAX_NO) * 512;
        assert_eq!(block_hdr_no_for_lsn(next_epoch), block_hdr_no_for_lsn(at));
        assert!(matches!(
            classify_block(&block, next_epoch),
            BlockState::Stale { .. }
        ));
    }

    #[test]
    fn bad_crc_is_torn_and_zeros_are_empty() {
        let facts = facts();
        let start = u(&facts["ckpt_blocks_start_lsn"]);
        let mut block = blocks(&fixture("redo-ckpt-blocks.bin"))[0];
        block[300] ^= 0x10;
        assert_eq!(classify_block(&block, start), BlockState::Torn);
        assert_eq!(classify_block(&[0u8; 512], start), BlockState::Empty);
        // innodb_log_checksums=OFF trailers are not accepted.
        let mut unchecked = block_for(start, 512, 0);
        unchecked[CHECKSUM_AT..].copy_from_slice(&NO_CHECKSUM_MAGIC.to_be_bytes());
        assert_eq!(classify_block(&unchecked, start), BlockState::Torn);
    }

    #[test]
    fn wrap_of_hdr_no_is_ordered_by_epoch() {
        // The last block of epoch 1 and the first of epoch 2.
        let last = (u64::from(BLOCK_MAX_NO) - 1) * 512;
        let first = last + 512;
        assert_eq!(block_hdr_no_for_lsn(last), BLOCK_MAX_NO);
        assert_eq!(block_hdr_no_for_lsn(first), 1);
        assert_eq!(epoch_for_lsn(last), 1);
        assert_eq!(epoch_for_lsn(first), 2);
        let old = block_for(last, 512, 12);
        let new = block_for(first, 512, 12);
        // hdr_no 2^30 read where 1 is expected: older, not newer.
        assert!(matches!(
            classify_block(&old, first),
            BlockState::Stale { .. }
        ));
        assert!(matches!(
            classify_block(&new, last),
            BlockState::Ahead { .. }
        ));
        assert!(matches!(
            classify_block(&new, first),
            BlockState::Valid { .. }
        ));
    }

    #[test]
    fn legacy_flush_bit_is_ignored() {
        let lsn = 1_000_448;
        let mut block = block_for(lsn, 512, 40);
        block[0] |= 0x80;
        seal(&mut block);
        assert!(matches!(
            classify_block(&block, lsn),
            BlockState::Valid { full: true, .. }
        ));
    }

    #[test]
    fn nonsense_fields_with_a_good_crc_are_malformed() {
        let lsn = 1_000_448;
        assert!(matches!(
            classify_block(&block_for(lsn, 5, 0), lsn),
            BlockState::Malformed { .. }
        ));
        for len in [0, 11, 508, 511, 513, 0x7fff] {
            assert!(
                matches!(
                    classify_block(&block_for(lsn, len, 0), lsn),
                    BlockState::Malformed { .. }
                ),
                "{len}"
            );
        }
        let zero_hdr = {
            let mut b = [1u8; BLOCK_SIZE];
            b[..12].fill(0);
            seal(&mut b);
            b
        };
        assert!(matches!(
            classify_block(&zero_hdr, lsn),
            BlockState::Stale { .. }
        ));
    }

    #[test]
    fn encrypted_bit_is_reported_and_masked() {
        let lsn = 77 * 512;
        let mut header = BlockHeader::for_lsn(lsn, 300, 20);
        header.encrypted = true;
        let mut block = [0u8; BLOCK_SIZE];
        header.write_to(&mut block);
        assert_eq!(be16(&block, 4), 300 | 0x8000);
        let BlockState::Valid { header: read, full } = classify_block(&block, lsn) else {
            panic!("valid");
        };
        assert_eq!(read, header);
        assert!(!full);
    }

    #[test]
    fn headers_reject_bad_input() {
        assert!(matches!(
            FileHeader::parse(&[0u8; 100]),
            Err(RedoError::TooShort { got: 100, .. })
        ));
        let good = FileHeader {
            format: FORMAT_CURRENT,
            log_uuid: 7,
            start_lsn: 8192,
            creator: "x".into(),
            flags: 0,
        };
        let mut bytes = good.encode();
        bytes[20] ^= 1;
        assert!(matches!(
            FileHeader::parse(&bytes),
            Err(RedoError::BadChecksum { .. })
        ));
        let format5 = FileHeader {
            format: 5,
            ..good.clone()
        }
        .encode();
        assert_eq!(
            FileHeader::parse(&format5),
            Err(RedoError::UnsupportedFormat(5))
        );
        let misaligned = FileHeader {
            start_lsn: 8200,
            ..good.clone()
        }
        .encode();
        assert_eq!(
            FileHeader::parse(&misaligned),
            Err(RedoError::BadStartLsn(8200))
        );
        let mut cp = CheckpointHeader {
            checkpoint_lsn: 9000,
        }
        .encode();
        cp[9] ^= 4;
        assert!(CheckpointHeader::parse(&cp).is_err());
        assert!(CheckpointHeader::parse(&cp[..511]).is_err());
    }

    #[test]
    fn long_creator_is_cut_to_31_bytes() {
        let header = FileHeader {
            format: FORMAT_CURRENT,
            log_uuid: 1,
            start_lsn: 8192,
            creator: "innoxide 0.1.0 2026-11-21T20:44:27Z xyz".into(),
            flags: 0,
        };
        let parsed = FileHeader::parse(&header.encode()).expect("valid");
        assert_eq!(parsed.creator, header.creator[..31]);
        let wide = FileHeader {
            creator: "é".repeat(20),
            ..header
        };
        assert_eq!(
            FileHeader::parse(&wide.encode()).expect("valid").creator,
            "é".repeat(15)
        );
    }

    #[test]
    fn truncate_block_at_sets_len_zeroes_tail_and_reseals() {
        let lsn = 5000 * 512;
        let mut block = block_for(lsn, 512, 200);
        truncate_block_at(&mut block, 150).expect("valid end");
        let BlockState::Valid { header, full } = classify_block(&block, lsn) else {
            panic!("valid after truncation");
        };
        assert!(!full);
        assert_eq!(header.data_len, 150);
        assert_eq!(header.first_rec_group, 0, "group at 200 is cut away");
        assert!(block[150..CHECKSUM_AT].iter().all(|&b| b == 0));
        assert_ne!(block[149], 0);

        let mut kept = block_for(lsn, 512, 100);
        truncate_block_at(&mut kept, 100).expect("valid end");
        assert_eq!(BlockHeader::parse(&kept).first_rec_group, 100);

        for bad in [0, 11, 508, 511, 513] {
            assert_eq!(
                truncate_block_at(&mut kept, bad),
                Err(RedoError::BadDataLen(bad))
            );
        }
    }

    #[test]
    fn sn_lsn_known_points() {
        assert_eq!(lsn_to_sn(LOG_START_LSN), 16 * 496);
        assert_eq!(sn_to_lsn(16 * 496), LOG_START_LSN + 12);
        assert_eq!(sn_to_lsn(495), 507);
        assert_eq!(sn_to_lsn(496), 524);
        assert_eq!(lsn_to_sn(508), 496);
        assert_eq!(lsn_to_sn(511), 496);
        assert_eq!(lsn_to_sn(512), 496);
        assert_eq!(lsn_to_sn(515), 496);
        assert!(!is_data_lsn(512) && !is_data_lsn(523) && is_data_lsn(524));
        assert!(is_data_lsn(1019) && !is_data_lsn(1020));
    }

    #[test]
    fn align_helpers() {
        assert_eq!(align_down(1023, 512), 512);
        assert_eq!(align_down(1024, 512), 1024);
        assert_eq!(align_up(1025, 512), 1536);
        assert_eq!(align_up(1024, 512), 1024);
        assert_eq!(align_down(7, 0), 7);
        assert_eq!(align_up(u64::MAX, 512), u64::MAX - 511);
    }

    proptest! {
        #[test]
        fn sn_round_trips(sn in 0u64..(1 << 62)) {
            let lsn = sn_to_lsn(sn);
            prop_assert!(is_data_lsn(lsn));
            prop_assert_eq!(lsn_to_sn(lsn), sn);
            // Consecutive SNs map to increasing LSNs, skipping only headers
            // and trailers.
            let next = sn_to_lsn(sn + 1);
            prop_assert!(next == lsn + 1 || (lsn % 512 == 507 && next == lsn + 17));
        }

        #[test]
        fn data_lsn_round_trips(lsn in 0u64..(1 << 62)) {
            let sn = lsn_to_sn(lsn);
            if is_data_lsn(lsn) {
                prop_assert_eq!(sn_to_lsn(sn), lsn);
            } else {
                prop_assert_eq!(sn_to_lsn(sn) % 512, 12);
                prop_assert!(sn_to_lsn(sn) > lsn);
            }
        }

        #[test]
        fn hdr_no_and_epoch_name_the_block(lsn in 0u64..(1 << 62)) {
            let hdr_no = block_hdr_no_for_lsn(lsn);
            let epoch = epoch_for_lsn(lsn);
            prop_assert!((1..=BLOCK_MAX_NO).contains(&hdr_no));
            prop_assert!(epoch >= 1);
            let abs = u64::from(epoch - 1) * u64::from(BLOCK_MAX_NO) + u64::from(hdr_no - 1);
            prop_assert_eq!(abs, lsn / 512);
            // Same block, same numbers.
            prop_assert_eq!(block_hdr_no_for_lsn(align_down(lsn, 512) + 511), hdr_no);
        }

        #[test]
        fn block_position_is_classified_by_distance(
            block_no in 16u64..(1 << 40),
            delta in -5i64..=5,
        ) {
            let lsn = block_no * 512;
            let block = block_for(lsn, 512, 12);
            let read_at = lsn.checked_add_signed(delta * 512).expect("in range");
            let state = classify_block(&block, read_at);
            match delta.cmp(&0) {
                std::cmp::Ordering::Equal => {
                    prop_assert!(matches!(state, BlockState::Valid { full: true, .. }), "{:?}", state)
                }
                std::cmp::Ordering::Greater => {
                    prop_assert!(matches!(state, BlockState::Stale { .. }), "{:?}", state)
                }
                std::cmp::Ordering::Less => {
                    prop_assert!(matches!(state, BlockState::Ahead { .. }), "{:?}", state)
                }
            }
        }

        #[test]
        fn any_bit_flip_in_a_real_block_is_torn(index in 0usize..4 * 512, bit in 0u8..8) {
            let bytes = fixture("redo-ckpt-blocks.bin");
            let facts = facts();
            let start = u(&facts["ckpt_blocks_start_lsn"]);
            let mut all = blocks(&bytes);
            let block = &mut all[index / 512];
            block[index % 512] ^= 1 << bit;
            let lsn = start + (index / 512 * 512) as u64;
            prop_assert_eq!(classify_block(block, lsn), BlockState::Torn);
        }

        #[test]
        fn file_header_round_trips(
            log_uuid in 1u32..,
            start_block in 16u64..(1 << 50),
            creator in "[ -~]{1,31}",
            flags in 0u32..16,
        ) {
            let header = FileHeader {
                format: FORMAT_CURRENT,
                log_uuid,
                start_lsn: start_block * 512,
                creator,
                flags,
            };
            prop_assert_eq!(FileHeader::parse(&header.encode()), Ok(header));
        }

        #[test]
        fn checkpoint_header_round_trips(lsn in any::<u64>()) {
            let header = CheckpointHeader { checkpoint_lsn: lsn };
            prop_assert_eq!(CheckpointHeader::parse(&header.encode()), Ok(header));
        }
    }
}
