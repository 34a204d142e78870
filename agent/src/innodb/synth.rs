//! Writing redo of our own: the header of `xtrabackup_logfile` (backup
//! time) and of the single `#innodb_redo/#ib_redo0` a mini instance
//! recovers from (apply-log time), and the cut that makes recovery stop at
//! exactly `last_lsn`. Pure: the caller writes the bytes.
//!
//! A synthesized file is `logfile_header()` + the copied blocks from
//! `align_down(checkpoint_lsn, 512)` on, passed through [`cut_tail`], padded
//! with zeros to [`padded_len`]. mysqld then (INNODB.md §5, log0handler.cc)
//! finds the checkpoint in the only file, scans from its block, and stops at
//! the first block whose hdr_no, epoch or CRC is off, or whose data_len is
//! below 512. Checked by hand against mysqld 9.7.4 (see the fixtures'
//! README): a datadir whose redo was replaced by such a file, cut at a
//! `log_status` LSN, recovered to exactly that LSN and held exactly the rows
//! committed before it.

use thiserror::Error;

use super::redo::{
    BLOCK_HDR_SIZE, BLOCK_SIZE, BLOCK_TRL_SIZE, BlockHeader, BlockState, CHECKPOINT_1_OFFSET,
    CHECKPOINT_2_OFFSET, CREATOR_MAX_LEN, CheckpointHeader, FILE_HDR_SIZE, FORMAT_CURRENT,
    FileHeader, LOG_START_LSN, Lsn, RedoError, align_down, align_up, classify_block,
};

/// log_uuid written when no template header is given. mysqld only demands
/// that it be non-zero and the same in every file of the set, and we write
/// one file. (ASCII "INOX".)
pub const DEFAULT_LOG_UUID: u32 = 0x494E_4F58;
/// Smallest redo file mysqld accepts (`LOG_FILE_MIN_SIZE`).
pub const MIN_FILE_SIZE: u64 = 64 * 1024;
/// Largest redo file mysqld accepts (`LOG_FILE_MAX_SIZE`: 512 GiB / 32).
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024 * 1024;

/// Errors building a synthesized redo file. All of them mean the inputs
/// cannot describe a log mysqld would recover correctly; none is transient.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SynthError {
    #[error("start_lsn {start_lsn} must be a multiple of 512 and at least 8192")]
    BadStartLsn { start_lsn: Lsn },
    #[error(
        "checkpoint_lsn {checkpoint_lsn} must point into the first block's payload \
         [{start_lsn}+12, {start_lsn}+508)"
    )]
    CheckpointOutsideFirstBlock { start_lsn: Lsn, checkpoint_lsn: Lsn },
    #[error("creator {creator:?} must be 1..=31 bytes of ASCII")]
    BadCreator { creator: String },
    #[error(
        "{what} of {len} bytes at lsn {start_lsn} is not a whole number of 512-byte blocks \
         starting on a block boundary"
    )]
    Misaligned {
        what: &'static str,
        start_lsn: Lsn,
        len: usize,
    },
    #[error(
        "last_lsn {last_lsn} is not a mini-transaction boundary: its offset in the block \
         must be 12..=507"
    )]
    NotDataLsn { last_lsn: Lsn },
    #[error("last_lsn {last_lsn} is outside the blocks given [{start_lsn}, {end_lsn})")]
    OutOfRange {
        last_lsn: Lsn,
        start_lsn: Lsn,
        end_lsn: Lsn,
    },
    #[error("block at lsn {block_lsn} cannot be cut: it is {state}")]
    BlockNotValid { block_lsn: Lsn, state: String },
    #[error(
        "block at lsn {block_lsn} holds only {data_len} bytes; last_lsn needs {needed}: \
         the copy ends before last_lsn"
    )]
    NotWrittenYet {
        block_lsn: Lsn,
        data_len: u16,
        needed: u16,
    },
    #[error(
        "last_lsn {last_lsn} is not a mini-transaction boundary: its block's first \
         group starts at offset {first_rec_group}"
    )]
    NotMtrBoundary { last_lsn: Lsn, first_rec_group: u16 },
    #[error("block at lsn {block_lsn} is encrypted; cutting encrypted redo is not supported")]
    Encrypted { block_lsn: Lsn },
    #[error("page size {0} must be a power of two from 4 KiB to 64 KiB")]
    BadPageSize(u64),
    #[error("a redo file of {0} bytes exceeds mysqld's 16 GiB limit per file")]
    TooLarge(u64),
    #[error(transparent)]
    Redo(#[from] RedoError),
}

/// The 2048-byte header of a synthesized redo file:
/// - file header: format 6, log_uuid of `template` (or
///   [`DEFAULT_LOG_UUID`]), `start_lsn`, `creator`, flags 0 (any flag would
///   make mysqld skip recovery, refuse to start, or look for a newer file);
/// - both checkpoint headers = `checkpoint_lsn` with fresh CRCs, so whichever
///   mysqld prefers it starts there;
/// - the encryption block zero (unencrypted redo only).
///
/// `start_lsn` must be `align_down(checkpoint_lsn, 512)`: the synthesized
/// file holds blocks from the checkpoint's block on, and mysqld requires the
/// checkpoint to lie inside the file.
pub fn logfile_header(
    template: Option<&FileHeader>,
    start_lsn: Lsn,
    checkpoint_lsn: Lsn,
    creator: &str,
) -> Result<[u8; FILE_HDR_SIZE], SynthError> {
    if start_lsn < LOG_START_LSN || !start_lsn.is_multiple_of(BLOCK_SIZE as Lsn) {
        return Err(SynthError::BadStartLsn { start_lsn });
    }
    let payload =
        start_lsn + BLOCK_HDR_SIZE as Lsn..start_lsn + (BLOCK_SIZE - BLOCK_TRL_SIZE) as Lsn;
    if !payload.contains(&checkpoint_lsn) {
        return Err(SynthError::CheckpointOutsideFirstBlock {
            start_lsn,
            checkpoint_lsn,
        });
    }
    if creator.is_empty() || creator.len() > CREATOR_MAX_LEN || !creator.is_ascii() {
        return Err(SynthError::BadCreator {
            creator: creator.into(),
        });
    }
    let log_uuid = template
        .map(|t| t.log_uuid)
        .filter(|&uuid| uuid != 0)
        .unwrap_or(DEFAULT_LOG_UUID);
    let file = FileHeader {
        format: FORMAT_CURRENT,
        log_uuid,
        start_lsn,
        creator: creator.into(),
        flags: 0,
    };
    let checkpoint = CheckpointHeader { checkpoint_lsn }.encode();
    let mut out = [0u8; FILE_HDR_SIZE];
    out[..BLOCK_SIZE].copy_from_slice(&file.encode());
    out[CHECKPOINT_1_OFFSET..CHECKPOINT_1_OFFSET + BLOCK_SIZE].copy_from_slice(&checkpoint);
    out[CHECKPOINT_2_OFFSET..CHECKPOINT_2_OFFSET + BLOCK_SIZE].copy_from_slice(&checkpoint);
    Ok(out)
}

/// The LSN just past the block holding `last_lsn`: the copied blocks a
/// synthesized file needs end here.
pub fn blocks_end(last_lsn: Lsn) -> Lsn {
    align_down(last_lsn, BLOCK_SIZE as Lsn) + BLOCK_SIZE as Lsn
}

/// Makes the log in `blocks` (whole blocks, the first at `blocks_start_lsn`)
/// end at exactly `last_lsn`, so that recovery applies every
/// mini-transaction that ends at or before it and nothing after. Returns the
/// number of bytes of `blocks` that now hold log; everything after them is
/// zeroed.
///
/// `last_lsn` must be a mini-transaction boundary (what `log_status`
/// reports). Its offset in its block is then always 12..=507, never 0 or
/// 508..=511, because LSNs only ever point at payload bytes.
///
/// - Offset 13..=507: the block holding `last_lsn` must be valid and
///   written at least that far; it gets data_len = offset, its payload after
///   the offset is zeroed, and its CRC is renewed. Its first_rec_group must
///   be non-zero and at most the offset, otherwise `last_lsn` is provably
///   not a boundary and we refuse.
/// - Offset 12 (the last mini-transaction filled its block exactly): the
///   cut keeps a header-only block (data_len 12, first_rec_group 12) at
///   `align_down(last_lsn)`. It is rebuilt from the LSN alone, since every
///   field is determined, so it need not have been copied yet. It must be
///   there: 9.x recovery (`ib::redo::Handler::read`) treats a log that ends
///   on a full block with no valid next header as torn and drops the last
///   parsed byte, so the last mini-transaction is incomplete. Seen on
///   9.7.4: with the header-only block recovery reports "scanned up to"
///   exactly `last_lsn`; without it, `last_lsn - 12`. If a valid copy of
///   that block is given, its first_rec_group must be 12 (a group starts
///   right there).
///
/// In both cases the block before the cut block, when given, must be full
/// and valid; earlier blocks are the copier's to have validated.
///
/// Encrypted blocks are refused: the payload cannot be cut without keys.
pub fn cut_tail(
    blocks: &mut [u8],
    blocks_start_lsn: Lsn,
    last_lsn: Lsn,
) -> Result<usize, SynthError> {
    if !blocks_start_lsn.is_multiple_of(BLOCK_SIZE as Lsn)
        || !blocks.len().is_multiple_of(BLOCK_SIZE)
    {
        return Err(SynthError::Misaligned {
            what: "redo blocks",
            start_lsn: blocks_start_lsn,
            len: blocks.len(),
        });
    }
    let offset = (last_lsn % BLOCK_SIZE as Lsn) as usize;
    if !(BLOCK_HDR_SIZE..BLOCK_SIZE - BLOCK_TRL_SIZE).contains(&offset) {
        return Err(SynthError::NotDataLsn { last_lsn });
    }
    let end_lsn = blocks_start_lsn + blocks.len() as Lsn;
    let block_lsn = align_down(last_lsn, BLOCK_SIZE as Lsn);
    if block_lsn < blocks_start_lsn || block_lsn >= end_lsn {
        return Err(SynthError::OutOfRange {
            last_lsn,
            start_lsn: blocks_start_lsn,
            end_lsn,
        });
    }
    let index = ((block_lsn - blocks_start_lsn) / BLOCK_SIZE as Lsn) as usize;
    let (chunks, _) = blocks.as_chunks_mut::<BLOCK_SIZE>();
    if index > 0 {
        check_full(&chunks[index - 1], block_lsn - BLOCK_SIZE as Lsn)?;
    }
    let block = &mut chunks[index];
    // Lossless: offset < 508.
    let needed = offset as u16;
    if offset == BLOCK_HDR_SIZE {
        // If the server's own block is there, it must agree that a group
        // starts right after its header.
        if let BlockState::Valid { header, .. } = classify_block(block, block_lsn) {
            if header.encrypted {
                return Err(SynthError::Encrypted { block_lsn });
            }
            if header.first_rec_group != needed {
                return Err(SynthError::NotMtrBoundary {
                    last_lsn,
                    first_rec_group: header.first_rec_group,
                });
            }
        }
        *block = [0u8; BLOCK_SIZE];
        BlockHeader::for_lsn(block_lsn, needed, needed).write_to(block);
    } else {
        let header = match classify_block(block, block_lsn) {
            BlockState::Valid { header, .. } => header,
            other => {
                return Err(SynthError::BlockNotValid {
                    block_lsn,
                    state: format!("{other:?}"),
                });
            }
        };
        if header.encrypted {
            return Err(SynthError::Encrypted { block_lsn });
        }
        if header.data_len < needed {
            return Err(SynthError::NotWrittenYet {
                block_lsn,
                data_len: header.data_len,
                needed,
            });
        }
        if header.first_rec_group == 0 || header.first_rec_group > needed {
            return Err(SynthError::NotMtrBoundary {
                last_lsn,
                first_rec_group: header.first_rec_group,
            });
        }
        super::redo::truncate_block_at(block, offset)?;
    }
    for later in &mut chunks[index + 1..] {
        later.fill(0);
    }
    Ok((index + 1) * BLOCK_SIZE)
}

/// The block before the cut must be a full, valid block: otherwise the log
/// ends before it and the cut would hide the gap.
fn check_full(block: &[u8; BLOCK_SIZE], block_lsn: Lsn) -> Result<(), SynthError> {
    match classify_block(block, block_lsn) {
        BlockState::Valid { full: true, .. } => Ok(()),
        other => Err(SynthError::BlockNotValid {
            block_lsn,
            state: format!("{other:?} (a full block is needed before the cut)"),
        }),
    }
}

/// Size of the synthesized redo file holding `total` bytes (header
/// included): what mysqld accepts (`log_check_file`) is a multiple of its
/// page size (`innodb_page_size`, 16 KiB by default), at least 64 KiB and at
/// most 16 GiB. The padding is zeros, which recovery reads as end of log.
pub fn padded_len(total: u64, page_size: u64) -> Result<u64, SynthError> {
    if !page_size.is_power_of_two() || !(4096..=65536).contains(&page_size) {
        return Err(SynthError::BadPageSize(page_size));
    }
    let len = align_up(total.max(MIN_FILE_SIZE), page_size);
    if len > MAX_FILE_SIZE {
        return Err(SynthError::TooLarge(len));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::innodb::redo::{
        ENCRYPTION_OFFSET, block_hdr_no_for_lsn, checksum, epoch_for_lsn, is_data_lsn,
    };

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

    fn block(bytes: &[u8], i: usize) -> &[u8; BLOCK_SIZE] {
        bytes[i * BLOCK_SIZE..]
            .first_chunk::<BLOCK_SIZE>()
            .expect("block in range")
    }

    /// A run of full valid blocks from `start`, payload patterned, each with
    /// first_rec_group `frg`.
    fn full_blocks(start: Lsn, n: usize, frg: u16) -> Vec<u8> {
        let mut out = vec![0u8; n * BLOCK_SIZE];
        for (i, b) in out.as_chunks_mut::<BLOCK_SIZE>().0.iter_mut().enumerate() {
            for (j, byte) in b[12..508].iter_mut().enumerate() {
                *byte = ((i + j) % 200) as u8 + 1;
            }
            BlockHeader::for_lsn(start + (i * BLOCK_SIZE) as Lsn, 512, frg).write_to(b);
        }
        out
    }

    #[test]
    fn header_from_the_real_checkpoint_file() {
        let facts = facts();
        let template = FileHeader::parse(&fixture("redo-header-ckpt.bin")).expect("valid");
        let ckpt = u(&facts["log_status"]["LSN_checkpoint"]);
        let start = align_down(ckpt, 512);
        let bytes = logfile_header(Some(&template), start, ckpt, "xtrabkup 2026-11-21 20:44:27")
            .expect("valid inputs");
        let file = FileHeader::parse(&bytes).expect("parses");
        assert_eq!(file.log_uuid, template.log_uuid);
        assert_eq!(file.start_lsn, start);
        assert_eq!(file.flags, 0);
        assert_eq!(file.format, FORMAT_CURRENT);
        assert_eq!(file.creator, "xtrabkup 2026-11-21 20:44:27");
        for at in [CHECKPOINT_1_OFFSET, CHECKPOINT_2_OFFSET] {
            assert_eq!(
                CheckpointHeader::parse(&bytes[at..])
                    .expect("valid")
                    .checkpoint_lsn,
                ckpt
            );
        }
        assert!(
            bytes[ENCRYPTION_OFFSET..ENCRYPTION_OFFSET + 512]
                .iter()
                .all(|&b| b == 0)
        );
    }

    #[test]
    fn header_without_template_uses_the_default_uuid() {
        let bytes = logfile_header(None, 8192 * 4, 8192 * 4 + 100, "innoxide").expect("valid");
        assert_eq!(
            FileHeader::parse(&bytes).expect("parses").log_uuid,
            DEFAULT_LOG_UUID
        );
        let zero_uuid = FileHeader {
            format: FORMAT_CURRENT,
            log_uuid: 0,
            start_lsn: 8192,
            creator: "x".into(),
            flags: 0,
        };
        let bytes = logfile_header(Some(&zero_uuid), 8192, 8300, "innoxide").expect("valid");
        assert_eq!(
            FileHeader::parse(&bytes).expect("parses").log_uuid,
            DEFAULT_LOG_UUID
        );
    }

    #[test]
    fn header_rejects_inconsistent_inputs() {
        assert!(matches!(
            logfile_header(None, 8200, 8300, "x"),
            Err(SynthError::BadStartLsn { .. })
        ));
        assert!(matches!(
            logfile_header(None, 4096, 4100, "x"),
            Err(SynthError::BadStartLsn { .. })
        ));
        for ckpt in [8192, 8192 + 11, 8192 + 508, 8192 + 600, 8000] {
            assert!(
                matches!(
                    logfile_header(None, 8192, ckpt, "x"),
                    Err(SynthError::CheckpointOutsideFirstBlock { .. })
                ),
                "{ckpt}"
            );
        }
        for creator in ["", "this creator string is far too long", "é"] {
            assert!(matches!(
                logfile_header(None, 8192, 8300, creator),
                Err(SynthError::BadCreator { .. })
            ));
        }
    }

    #[test]
    fn cut_real_tail_at_the_log_status_lsn() {
        let facts = facts();
        let start = u(&facts["tail_blocks_start_lsn"]);
        let last = u(&facts["log_status"]["LSN"]);
        let original = fixture("redo-tail-blocks.bin");
        let mut bytes = original.clone();
        let used = cut_tail(&mut bytes, start, last).expect("cut");
        assert_eq!(start + used as Lsn, blocks_end(last));
        let i = used / BLOCK_SIZE - 1;
        let BlockState::Valid { header, full } =
            classify_block(block(&bytes, i), align_down(last, 512))
        else {
            panic!("the cut block is valid");
        };
        assert!(!full);
        assert_eq!(u64::from(header.data_len), last % 512);
        // The server's own last block already ended there: nothing changed.
        assert_eq!(bytes[..used], original[..used]);
        assert!(bytes[used..].iter().all(|&b| b == 0));
    }

    #[test]
    fn cut_real_blocks_at_an_earlier_boundary() {
        let facts = facts();
        let start = u(&facts["ckpt_blocks_start_lsn"]);
        let mut bytes = fixture("redo-ckpt-blocks.bin");
        // The first group starting in block 1 is a mini-transaction boundary.
        let frg = BlockHeader::parse(block(&bytes, 1)).first_rec_group;
        assert!(frg > 12);
        let last = start + 512 + Lsn::from(frg);
        let used = cut_tail(&mut bytes, start, last).expect("cut");
        assert_eq!(used, 2 * 512);
        let BlockState::Valid { header, full } = classify_block(block(&bytes, 1), start + 512)
        else {
            panic!("valid");
        };
        assert!(!full);
        assert_eq!(header.data_len, frg);
        assert_eq!(header.first_rec_group, frg);
        // After the cut point only block 1's trailer (its new CRC) is left.
        assert!(bytes[512 + usize::from(frg)..1020].iter().all(|&b| b == 0));
        assert!(bytes[1024..].iter().all(|&b| b == 0));
        assert_eq!(
            u32::from_be_bytes(bytes[1020..1024].try_into().expect("4 bytes")),
            checksum(block(&bytes, 1))
        );
        // Block 0 is untouched.
        assert_eq!(bytes[..512], fixture("redo-ckpt-blocks.bin")[..512]);
    }

    #[test]
    fn cut_inside_a_group_is_refused() {
        let facts = facts();
        let start = u(&facts["ckpt_blocks_start_lsn"]);
        let mut bytes = fixture("redo-ckpt-blocks.bin");
        // Block 2 has no group start at all (first_rec_group 0 in the real
        // data); any LSN in it lies inside a mini-transaction.
        let frg2 = BlockHeader::parse(block(&bytes, 2)).first_rec_group;
        if frg2 == 0 {
            assert!(matches!(
                cut_tail(&mut bytes, start, start + 1024 + 100),
                Err(SynthError::NotMtrBoundary { .. })
            ));
        }
        // Before the first group of block 1 is inside the previous one.
        let frg1 = BlockHeader::parse(block(&bytes, 1)).first_rec_group;
        assert!(matches!(
            cut_tail(&mut bytes, start, start + 512 + Lsn::from(frg1) - 1),
            Err(SynthError::NotMtrBoundary { .. })
        ));
    }

    #[test]
    fn cut_at_offset_12_keeps_a_header_only_block() {
        let start = 40_000 * 512;
        let mut bytes = full_blocks(start, 4, 30);
        // Block 2 was never copied (zeros): it is rebuilt from the LSN.
        bytes[1024..1536].fill(0);
        let last = start + 1024 + 12;
        let used = cut_tail(&mut bytes, start, last).expect("cut");
        assert_eq!(used, 3 * 512);
        let BlockState::Valid { header, full } = classify_block(block(&bytes, 2), start + 1024)
        else {
            panic!("valid");
        };
        assert!(!full);
        assert_eq!(header.data_len, 12);
        assert_eq!(header.first_rec_group, 12);
        assert_eq!(header.hdr_no, block_hdr_no_for_lsn(start + 1024));
        assert_eq!(header.epoch_no, epoch_for_lsn(start + 1024));
        assert!(bytes[1024 + 12..1024 + 508].iter().all(|&b| b == 0));
        assert!(bytes[1536..].iter().all(|&b| b == 0));
        // The full block before it is kept as is.
        assert!(matches!(
            classify_block(block(&bytes, 1), start + 512),
            BlockState::Valid { full: true, .. }
        ));
    }

    #[test]
    fn cut_at_offset_12_checks_a_copied_block_agrees() {
        let start = 40_000 * 512;
        let last = start + 1024 + 12;
        // The copied block says the first group starts at 30: LSN +12 is
        // inside the mini-transaction that spills over from block 1.
        let mut inside = full_blocks(start, 3, 30);
        assert_eq!(
            cut_tail(&mut inside, start, last),
            Err(SynthError::NotMtrBoundary {
                last_lsn: last,
                first_rec_group: 30
            })
        );
        // A copy that agrees is rewritten as the header-only block.
        let mut agrees = full_blocks(start, 3, 12);
        assert_eq!(cut_tail(&mut agrees, start, last), Ok(3 * 512));
        assert_eq!(BlockHeader::parse(block(&agrees, 2)).data_len, 12);
    }

    #[test]
    fn cut_needs_the_block_before_to_be_full() {
        let start = 40_000 * 512;
        let mut bytes = full_blocks(start, 3, 30);
        crate::innodb::redo::truncate_block_at(
            (&mut bytes[512..1024]).try_into().expect("block"),
            300,
        )
        .expect("truncate");
        assert!(matches!(
            cut_tail(&mut bytes, start, start + 1024 + 12),
            Err(SynthError::BlockNotValid { .. })
        ));
    }

    #[test]
    fn cut_refuses_torn_short_and_out_of_range_blocks() {
        let start = 40_000 * 512;
        let mut bytes = full_blocks(start, 3, 30);
        bytes[1100] ^= 1;
        assert!(matches!(
            cut_tail(&mut bytes, start, start + 1024 + 40),
            Err(SynthError::BlockNotValid { .. })
        ));

        let mut short = full_blocks(start, 3, 30);
        crate::innodb::redo::truncate_block_at(
            (&mut short[1024..1536]).try_into().expect("block"),
            35,
        )
        .expect("truncate");
        assert_eq!(
            cut_tail(&mut short, start, start + 1024 + 40),
            Err(SynthError::NotWrittenYet {
                block_lsn: start + 1024,
                data_len: 35,
                needed: 40
            })
        );

        let mut bytes = full_blocks(start, 3, 30);
        for last in [start - 100, start + 3 * 512 + 40] {
            assert!(matches!(
                cut_tail(&mut bytes, start, last),
                Err(SynthError::OutOfRange { .. })
            ));
        }
        for last in [start + 512, start + 512 + 11, start + 512 + 508] {
            assert!(!is_data_lsn(last));
            assert_eq!(
                cut_tail(&mut bytes, start, last),
                Err(SynthError::NotDataLsn { last_lsn: last })
            );
        }
        assert!(matches!(
            cut_tail(&mut bytes[..1000], start, start + 40),
            Err(SynthError::Misaligned { .. })
        ));
        assert!(matches!(
            cut_tail(&mut bytes, start + 1, start + 40),
            Err(SynthError::Misaligned { .. })
        ));
    }

    #[test]
    fn cut_refuses_encrypted_blocks() {
        let start = 40_000 * 512;
        let mut bytes = full_blocks(start, 2, 30);
        let b: &mut [u8; 512] = (&mut bytes[512..1024]).try_into().expect("block");
        let mut header = BlockHeader::parse(b);
        header.encrypted = true;
        header.write_to(b);
        assert_eq!(
            cut_tail(&mut bytes, start, start + 512 + 40),
            Err(SynthError::Encrypted {
                block_lsn: start + 512
            })
        );
    }

    #[test]
    fn a_whole_synthesized_file_reads_back_to_last_lsn() {
        let facts = facts();
        let start = u(&facts["tail_blocks_start_lsn"]);
        let last = u(&facts["log_status"]["LSN"]);
        let mut blocks = fixture("redo-tail-blocks.bin");
        // Pretend the checkpoint is in the first copied block.
        let first_frg = BlockHeader::parse(block(&blocks, 0)).first_rec_group;
        let ckpt = start + Lsn::from(first_frg);
        let used = cut_tail(&mut blocks, start, last).expect("cut");
        let mut file = logfile_header(None, start, ckpt, "innoxide test")
            .expect("header")
            .to_vec();
        file.extend_from_slice(&blocks[..used]);
        let len = padded_len(file.len() as u64, 16384).expect("size");
        file.resize(usize::try_from(len).expect("fits"), 0);
        assert_eq!(len, MIN_FILE_SIZE);

        // Scan like recovery: from the start block until a block ends early
        // or is not the expected one.
        let header = FileHeader::parse(&file).expect("header");
        let mut lsn = header.start_lsn;
        let end = loop {
            let at = FILE_HDR_SIZE + usize::try_from(lsn - header.start_lsn).expect("fits");
            let b = file[at..].first_chunk::<BLOCK_SIZE>().expect("in file");
            match classify_block(b, lsn) {
                BlockState::Valid { header, full: true } => {
                    assert_eq!(header.data_len, 512);
                    lsn += 512;
                }
                BlockState::Valid {
                    header,
                    full: false,
                } => {
                    break lsn + Lsn::from(header.data_len);
                }
                other => panic!("scan stopped on {other:?} at {lsn}"),
            }
        };
        assert_eq!(end, last);
    }

    #[test]
    fn padded_len_rules() {
        assert_eq!(padded_len(2048, 16384), Ok(65536));
        assert_eq!(padded_len(65536, 16384), Ok(65536));
        assert_eq!(padded_len(65537, 16384), Ok(81920));
        assert_eq!(padded_len(100_000, 65536), Ok(131_072));
        assert_eq!(padded_len(70_000, 4096), Ok(73_728));
        assert_eq!(padded_len(1, 1000), Err(SynthError::BadPageSize(1000)));
        assert_eq!(padded_len(1, 1024), Err(SynthError::BadPageSize(1024)));
        assert_eq!(
            padded_len(MAX_FILE_SIZE + 1, 16384),
            Err(SynthError::TooLarge(MAX_FILE_SIZE + 16384))
        );
        assert_eq!(padded_len(MAX_FILE_SIZE, 16384), Ok(MAX_FILE_SIZE));
    }

    #[test]
    fn blocks_end_is_the_next_block_boundary() {
        assert_eq!(blocks_end(8192 + 12), 8192 + 512);
        assert_eq!(blocks_end(8192 + 507), 8192 + 512);
    }
}
