//! Walks every record of a stretch of redo, block by block, and reports the
//! records a hot copy cannot be repaired from: `MLOG_INDEX_LOAD` (an index
//! built without redo) and the tablespace file operations (create, rename,
//! delete). Pure: blocks in, findings out.
//!
//! Records are grouped in mini-transactions: a record with the
//! single-record flag is one by itself, otherwise records run up to
//! `MLOG_MULTI_REC_END`. The walk checks itself against the log: every
//! block header says where the first mini-transaction starting in it begins
//! (`first_rec_group`, 0 for none), and a correct walk lands exactly there,
//! on every block. A mismatch is a misread or damage, and is reported as
//! such, never guessed around.
//!
//! The walk starts where the first block fed to it says a mini-transaction
//! starts (recovery does the same from the checkpoint's block), and can be
//! fed blocks as they are copied: a record cut by a block boundary waits for
//! the next block.

use std::collections::VecDeque;
use std::fmt;

use thiserror::Error;

use super::redo::{self, BLOCK_HDR_SIZE, BLOCK_SIZE, BLOCK_TRL_SIZE, BlockHeader, Lsn};
use super::redo_record::{self, FileOp, Record, RecordType, Stop};

/// Bytes of payload in a full block end here.
const PAYLOAD_END: usize = BLOCK_SIZE - BLOCK_TRL_SIZE;
/// Group boundaries kept to answer "was the end a boundary" after the walk
/// has gone past it (the copier may have copied blocks beyond the end
/// before it knew the end).
const RECENT_BOUNDARIES: usize = 1 << 16;
/// Consumed bytes are dropped from the buffer once this many pile up.
const COMPACT_AFTER: usize = 1 << 16;

/// A record that changes what a tablespace file holds behind redo's back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceEvent {
    /// LSN of the record's first byte.
    pub lsn: Lsn,
    pub space_id: u32,
    pub kind: SpaceEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpaceEventKind {
    /// `MLOG_INDEX_LOAD`: an index of this space was built by writing its
    /// pages directly (sorted index build) and flushing them, without redo.
    IndexLoad,
    /// `MLOG_FILE_CREATE` / `RENAME` / `DELETE`.
    File(FileOp),
}

impl fmt::Display for SpaceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (space, lsn) = (self.space_id, self.lsn);
        match &self.kind {
            SpaceEventKind::IndexLoad => write!(
                f,
                "an index of tablespace {space} was built without redo (MLOG_INDEX_LOAD at LSN {lsn})"
            ),
            SpaceEventKind::File(FileOp::Create { path, .. }) => {
                write!(f, "tablespace {space} ({path}) was created at LSN {lsn}")
            }
            SpaceEventKind::File(FileOp::Rename { from, to }) => write!(
                f,
                "tablespace {space} was renamed from {from} to {to} at LSN {lsn}"
            ),
            SpaceEventKind::File(FileOp::Delete { path }) => {
                write!(f, "tablespace {space} ({path}) was deleted at LSN {lsn}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WalkError {
    #[error("redo block at LSN {got} was given where the block at LSN {expected} belongs")]
    NotContiguous { expected: Lsn, got: Lsn },
    #[error("redo block at LSN {lsn} follows a partial block, which must be the last")]
    AfterPartial { lsn: Lsn },
    #[error(
        "redo block at LSN {lsn} has data_len {data_len} and first_rec_group {first_rec_group}, \
         which no server writes"
    )]
    BadBlock {
        lsn: Lsn,
        data_len: u16,
        first_rec_group: u16,
    },
    #[error(
        "redo record at LSN {lsn} (in the mini-transaction starting at LSN {group_lsn}) cannot be \
         read: {why}. Its bytes: {bytes}. The redo is damaged, or the server wrote a record this \
         reader does not know"
    )]
    Record {
        lsn: Lsn,
        group_lsn: Lsn,
        why: String,
        bytes: String,
    },
    #[error(
        "redo block at LSN {block_lsn} says the first mini-transaction in it starts at offset \
         {stored}, but the walk over the records {walked}. The records were misread, or the \
         redo is damaged"
    )]
    FirstRecGroup {
        block_lsn: Lsn,
        stored: u16,
        walked: String,
    },
    #[error(
        "no mini-transaction starts in the redo given (every block's first_rec_group is 0), so \
         its records cannot be walked"
    )]
    NoStart,
    #[error(
        "the redo walk cannot end at LSN {end}: {why}. The end is not between two \
         mini-transactions, or blocks are missing"
    )]
    End { end: Lsn, why: String },
}

/// What a finished walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkSummary {
    /// LSN where the walk started (the first mini-transaction boundary).
    pub start_lsn: Lsn,
    /// The end the walk was finished at.
    pub end_lsn: Lsn,
    /// Whether `end_lsn` was checked to be a mini-transaction boundary (it
    /// cannot be when the walk went far past it before the end was known).
    pub end_checked: bool,
    /// The records of interest between `start_lsn` and `end_lsn`.
    pub events: Vec<SpaceEvent>,
    /// Mini-transactions and records walked, and payload bytes consumed
    /// (these count everything walked, also past `end_lsn`).
    pub groups: u64,
    pub records: u64,
    pub bytes: u64,
    /// Blocks whose first_rec_group the walk confirmed.
    pub blocks_checked: u64,
    /// Records walked, by type code.
    pub counts: Vec<(RecordType, u64)>,
}

/// A block whose first_rec_group is still to be confirmed.
#[derive(Debug, Clone, Copy)]
struct PendingBlock {
    lsn: Lsn,
    first_rec_group: u16,
}

/// The walk over a stretch of redo, fed one block at a time. A clone can
/// walk ahead into a block that is still being written, leaving the
/// original where it was.
#[derive(Clone)]
pub struct RedoWalker {
    page_size: usize,
    /// Payload bytes from `buf_sn` on; `[..group_start]` is consumed.
    buf: Vec<u8>,
    buf_sn: u64,
    /// Start of the mini-transaction being read, and of its next record.
    group_start: usize,
    cursor: usize,
    /// Records of interest in the mini-transaction being read; they count
    /// only once it is complete (as in recovery).
    group_events: Vec<SpaceEvent>,
    /// LSN of the next block expected.
    next_block: Option<Lsn>,
    partial_seen: bool,
    start_lsn: Option<Lsn>,
    /// Blocks fed but not yet confirmed, in order.
    pending: VecDeque<PendingBlock>,
    /// The block of the latest boundary: boundaries later in the same
    /// block say nothing about first_rec_group.
    last_boundary_block: u64,
    recent: VecDeque<Lsn>,
    events: Vec<SpaceEvent>,
    counts: Box<[u64; 128]>,
    groups: u64,
    records: u64,
    blocks_checked: u64,
}

impl RedoWalker {
    /// A walk over redo of a server with pages of `page_size` bytes.
    pub fn new(page_size: usize) -> RedoWalker {
        RedoWalker {
            page_size,
            buf: Vec::with_capacity(4 * COMPACT_AFTER),
            buf_sn: 0,
            group_start: 0,
            cursor: 0,
            group_events: Vec::new(),
            next_block: None,
            partial_seen: false,
            start_lsn: None,
            pending: VecDeque::new(),
            last_boundary_block: 0,
            recent: VecDeque::with_capacity(RECENT_BOUNDARIES),
            events: Vec::new(),
            counts: Box::new([0; 128]),
            groups: 0,
            records: 0,
            blocks_checked: 0,
        }
    }

    /// LSN up to which mini-transactions were walked (the start of the
    /// first one not yet complete); `None` before the walk found its start.
    pub fn walked_lsn(&self) -> Option<Lsn> {
        self.start_lsn.map(|_| self.lsn_at(self.group_start))
    }

    /// Records of interest of complete mini-transactions so far.
    pub fn events(&self) -> &[SpaceEvent] {
        &self.events
    }

    /// Feeds the next block, a valid one (see
    /// [`classify_block`](redo::classify_block)) starting at `block_lsn`, and
    /// walks every mini-transaction it completes.
    pub fn push_block(
        &mut self,
        block_lsn: Lsn,
        block: &[u8; BLOCK_SIZE],
    ) -> Result<(), WalkError> {
        if let Some(expected) = self.next_block
            && expected != block_lsn
        {
            return Err(WalkError::NotContiguous {
                expected,
                got: block_lsn,
            });
        }
        if self.partial_seen {
            return Err(WalkError::AfterPartial { lsn: block_lsn });
        }
        let header = BlockHeader::parse(block);
        let (data_len, first) = (header.data_len, header.first_rec_group);
        let end = if usize::from(data_len) == BLOCK_SIZE {
            PAYLOAD_END
        } else {
            usize::from(data_len)
        };
        let bad_first = first != 0 && !(BLOCK_HDR_SIZE..=end).contains(&usize::from(first));
        let bad_len = !(BLOCK_HDR_SIZE..=PAYLOAD_END).contains(&end)
            || (end == PAYLOAD_END && usize::from(data_len) != BLOCK_SIZE);
        if bad_len || bad_first {
            return Err(WalkError::BadBlock {
                lsn: block_lsn,
                data_len,
                first_rec_group: first,
            });
        }
        self.next_block = Some(block_lsn + BLOCK_SIZE as Lsn);
        self.partial_seen = usize::from(data_len) != BLOCK_SIZE;

        if self.start_lsn.is_none() {
            if first == 0 {
                return Ok(());
            }
            // Trusted, as recovery trusts it: nothing before it to check by.
            let start = block_lsn + Lsn::from(first);
            self.start_lsn = Some(start);
            self.buf_sn = redo::lsn_to_sn(start);
            self.buf.extend_from_slice(&block[usize::from(first)..end]);
            self.last_boundary_block = block_lsn / BLOCK_SIZE as Lsn;
            self.remember_boundary(start);
        } else {
            self.pending.push_back(PendingBlock {
                lsn: block_lsn,
                first_rec_group: first,
            });
            // A mini-transaction that ended with the previous block's
            // payload starts right after this block's header.
            self.confirm_blocks(self.lsn_at(self.group_start))?;
            self.buf.extend_from_slice(&block[BLOCK_HDR_SIZE..end]);
        }
        self.walk()?;
        if self.group_start >= COMPACT_AFTER {
            self.buf.drain(..self.group_start);
            self.buf_sn += self.group_start as u64;
            self.cursor -= self.group_start;
            self.group_start = 0;
        }
        Ok(())
    }

    /// Ends the walk at `end_lsn` (the consistent point): it must be a
    /// mini-transaction boundary the walk reached. Returns what was found
    /// before it.
    pub fn finish(&self, end_lsn: Lsn) -> Result<WalkSummary, WalkError> {
        let start_lsn = self.start_lsn.ok_or(WalkError::NoStart)?;
        let walked = self.lsn_at(self.group_start);
        let end_err = |why: String| WalkError::End { end: end_lsn, why };
        if end_lsn < start_lsn {
            return Err(end_err(format!(
                "the walk starts later, at LSN {start_lsn}"
            )));
        }
        if end_lsn > walked {
            return Err(end_err(format!(
                "the last complete mini-transaction ends at LSN {walked}, and the next one \
                 (from there) is cut or missing"
            )));
        }
        let oldest_known = self.recent.front().copied().unwrap_or(walked);
        let end_checked = end_lsn >= oldest_known;
        if end_checked && self.recent.binary_search(&end_lsn).is_err() {
            let before = self.recent.iter().rev().find(|&&b| b < end_lsn);
            let after = self.recent.iter().find(|&&b| b > end_lsn);
            return Err(end_err(format!(
                "it falls inside the mini-transaction from LSN {} to {}",
                before.map_or("?".into(), |b| b.to_string()),
                after.map_or("?".into(), |b| b.to_string()),
            )));
        }
        let counts = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (RecordType(code as u8), *n))
            .collect();
        Ok(WalkSummary {
            start_lsn,
            end_lsn,
            end_checked,
            events: self
                .events
                .iter()
                .filter(|e| e.lsn < end_lsn)
                .cloned()
                .collect(),
            groups: self.groups,
            records: self.records,
            bytes: self.buf_sn + self.group_start as u64 - redo::lsn_to_sn(start_lsn),
            blocks_checked: self.blocks_checked,
            counts,
        })
    }

    fn lsn_at(&self, index: usize) -> Lsn {
        redo::sn_to_lsn(self.buf_sn + index as u64)
    }

    /// Reads records until the bytes run out.
    fn walk(&mut self) -> Result<(), WalkError> {
        while self.cursor < self.buf.len() {
            let rest = &self.buf[self.cursor..];
            let record = match redo_record::parse(rest, self.page_size) {
                Ok(record) => record,
                Err(Stop::Incomplete) => return Ok(()),
                Err(Stop::Corrupt(why)) => return Err(self.record_error(why)),
            };
            let first_of_group = self.cursor == self.group_start;
            if record.single && !first_of_group {
                return Err(self.record_error(format!(
                    "{} has the single-record flag but is not the first record of its \
                     mini-transaction",
                    record.kind
                )));
            }
            self.records += 1;
            self.counts[usize::from(record.kind.0)] += 1;
            self.note_event(&record);
            self.cursor += record.len;
            // A dummy record alone is a one-byte mini-transaction of
            // padding (it never carries the flag).
            let ends_group = record.single
                || record.kind == RecordType::MULTI_REC_END
                || (first_of_group && record.kind == RecordType::DUMMY_RECORD);
            if ends_group {
                self.end_group()?;
            }
        }
        Ok(())
    }

    fn note_event(&mut self, record: &Record) {
        let redo_record::Target::Page { space_id, .. } = record.target else {
            return;
        };
        let kind = match record.kind {
            RecordType::INDEX_LOAD => SpaceEventKind::IndexLoad,
            RecordType::FILE_CREATE | RecordType::FILE_RENAME | RecordType::FILE_DELETE => {
                match redo_record::file_op(record, &self.buf[self.cursor..]) {
                    Some(op) => SpaceEventKind::File(op),
                    None => return,
                }
            }
            _ => return,
        };
        self.group_events.push(SpaceEvent {
            lsn: self.lsn_at(self.cursor),
            space_id,
            kind,
        });
    }

    fn end_group(&mut self) -> Result<(), WalkError> {
        self.groups += 1;
        self.group_start = self.cursor;
        self.events.append(&mut self.group_events);
        let boundary = self.lsn_at(self.group_start);
        self.remember_boundary(boundary);
        self.confirm_blocks(boundary)
    }

    fn remember_boundary(&mut self, lsn: Lsn) {
        if self.recent.len() == RECENT_BOUNDARIES {
            self.recent.pop_front();
        }
        self.recent.push_back(lsn);
    }

    /// With `boundary` the latest mini-transaction start, checks every
    /// pending block up to its block: none before it has one starting in
    /// it, and its own first one starts exactly there.
    fn confirm_blocks(&mut self, boundary: Lsn) -> Result<(), WalkError> {
        let block_no = boundary / BLOCK_SIZE as Lsn;
        if block_no == self.last_boundary_block {
            return Ok(());
        }
        while let Some(block) = self.pending.front().copied() {
            let this_no = block.lsn / BLOCK_SIZE as Lsn;
            if this_no > block_no {
                break;
            }
            let stored = block.first_rec_group;
            if this_no < block_no && stored != 0 {
                return Err(WalkError::FirstRecGroup {
                    block_lsn: block.lsn,
                    stored,
                    walked: format!(
                        "found no mini-transaction starting in it (one runs from LSN {} to {})",
                        self.recent
                            .iter()
                            .rev()
                            .nth(1)
                            .map_or("?".into(), |b| b.to_string()),
                        boundary
                    ),
                });
            }
            if this_no == block_no {
                let walked = (boundary % BLOCK_SIZE as Lsn) as u16;
                if stored != walked {
                    return Err(WalkError::FirstRecGroup {
                        block_lsn: block.lsn,
                        stored,
                        walked: format!("put the first one at offset {walked}"),
                    });
                }
                self.last_boundary_block = block_no;
            }
            self.blocks_checked += 1;
            self.pending.pop_front();
        }
        Ok(())
    }

    fn record_error(&self, why: String) -> WalkError {
        let rest = &self.buf[self.cursor..];
        WalkError::Record {
            lsn: self.lsn_at(self.cursor),
            group_lsn: self.lsn_at(self.group_start),
            why,
            bytes: hex::encode(&rest[..rest.len().min(48)]),
        }
    }
}

/// Walks redo held in memory as whole blocks from `first_block_lsn` up to
/// `end_lsn` (a block holding `end_lsn` may be partial).
pub fn walk_blocks(
    blocks: &[u8],
    first_block_lsn: Lsn,
    end_lsn: Lsn,
    page_size: usize,
) -> Result<WalkSummary, WalkError> {
    let mut walker = RedoWalker::new(page_size);
    let (chunks, _) = blocks.as_chunks::<BLOCK_SIZE>();
    for (i, block) in chunks.iter().enumerate() {
        let lsn = first_block_lsn + (i * BLOCK_SIZE) as Lsn;
        if lsn > end_lsn {
            break;
        }
        walker.push_block(lsn, block)?;
    }
    walker.finish(end_lsn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::innodb::redo_record::SINGLE_REC_FLAG;

    const PAGE: usize = 16384;

    /// Lays `groups` (each a list of records) out in blocks from `lsn` on,
    /// with first_rec_group set as the server sets it, the last block
    /// partial. Returns the blocks and the boundaries.
    fn lay_out(start_lsn: Lsn, groups: &[Vec<Vec<u8>>]) -> (Vec<u8>, Vec<Lsn>) {
        let mut payload = Vec::new();
        let mut starts = Vec::new();
        for group in groups {
            starts.push(payload.len());
            for record in group {
                payload.extend_from_slice(record);
            }
        }
        let start_sn = redo::lsn_to_sn(start_lsn);
        let boundaries: Vec<Lsn> = starts
            .iter()
            .chain(std::iter::once(&payload.len()))
            .map(|&i| redo::sn_to_lsn(start_sn + i as u64))
            .collect();
        let first_block = start_lsn / 512 * 512;
        let end = *boundaries.last().unwrap();
        let mut blocks = Vec::new();
        let mut block_lsn = first_block;
        while block_lsn <= end {
            let mut block = [0u8; BLOCK_SIZE];
            let first = boundaries
                .iter()
                .find(|&&b| b / 512 == block_lsn / 512)
                .map_or(0, |b| (b % 512) as u16);
            let data_len = if end >= block_lsn + PAYLOAD_END as Lsn {
                BLOCK_SIZE as u16
            } else {
                (end - block_lsn) as u16
            };
            for (offset, byte) in block
                .iter_mut()
                .enumerate()
                .take(PAYLOAD_END)
                .skip(BLOCK_HDR_SIZE)
            {
                let sn = redo::lsn_to_sn(block_lsn + offset as Lsn);
                if let Some(&b) = sn
                    .checked_sub(start_sn)
                    .and_then(|i| payload.get(i as usize))
                {
                    *byte = b;
                }
            }
            BlockHeader::for_lsn(block_lsn, data_len, first).write_to(&mut block);
            blocks.extend_from_slice(&block);
            block_lsn += 512;
        }
        (blocks, boundaries)
    }

    fn insert_record(space: u8, len: usize) -> Vec<u8> {
        let mut r = vec![RecordType::WRITE_STRING.0, space, 3];
        r.extend(40u16.to_be_bytes());
        r.extend((len as u16).to_be_bytes());
        r.extend(std::iter::repeat_n(0xAA, len));
        r
    }

    fn single(mut record: Vec<u8>) -> Vec<Vec<u8>> {
        record[0] |= SINGLE_REC_FLAG;
        vec![record]
    }

    fn index_load(space: u8) -> Vec<u8> {
        let mut r = vec![RecordType::INDEX_LOAD.0, space, 0];
        r.extend(99u64.to_be_bytes());
        r
    }

    fn sample_groups() -> Vec<Vec<Vec<u8>>> {
        let mut groups = Vec::new();
        for i in 0..40 {
            groups.push(single(insert_record(5, 7 + i * 13 % 300)));
            groups.push(vec![
                insert_record(6, 100),
                insert_record(6, 600), // spans blocks
                vec![RecordType::MULTI_REC_END.0],
            ]);
        }
        groups.insert(30, single(index_load(9)));
        let mut create = vec![RecordType::FILE_CREATE.0, 10, 0];
        create.extend(0x21u32.to_be_bytes());
        create.extend(9u16.to_be_bytes());
        create.extend(b"./d/t.ibd");
        groups.insert(50, vec![create, vec![RecordType::MULTI_REC_END.0]]);
        groups
    }

    #[test]
    fn walks_to_the_end_and_finds_index_load_and_file_ops() {
        let start = 100 * 512 + 300;
        let (blocks, boundaries) = lay_out(start, &sample_groups());
        let end = *boundaries.last().unwrap();
        let summary = walk_blocks(&blocks, start / 512 * 512, end, PAGE).expect("walks");
        assert_eq!(summary.start_lsn, start);
        assert!(summary.end_checked);
        assert_eq!(summary.groups, boundaries.len() as u64 - 1);
        assert!(summary.blocks_checked as usize >= blocks.len() / 512 - 1);
        assert_eq!(summary.events.len(), 2, "{:?}", summary.events);
        assert_eq!(summary.events[0].kind, SpaceEventKind::IndexLoad);
        assert_eq!(summary.events[0].space_id, 9);
        assert_eq!(summary.events[0].lsn, boundaries[30]);
        assert_eq!(
            summary.events[1].kind,
            SpaceEventKind::File(FileOp::Create {
                path: "./d/t.ibd".into(),
                flags: 0x21
            })
        );
        // Ending at an earlier boundary keeps only what came before it.
        let summary = walk_blocks(&blocks, start / 512 * 512, boundaries[40], PAGE).unwrap();
        assert_eq!(summary.events.len(), 1);
    }

    #[test]
    fn a_length_misread_is_caught_by_first_rec_group() {
        let start = 100 * 512 + 300;
        let (mut blocks, boundaries) = lay_out(start, &sample_groups());
        // Make one record one byte longer than it is: every later record
        // is read off by one, and some block header says so.
        let first_block = start / 512 * 512;
        // The low byte of the string's length: type, space, page, offset.
        let at = redo::sn_to_lsn(redo::lsn_to_sn(boundaries[20]) + 6);
        let index = (at - first_block) as usize;
        let block_start = index / 512 * 512;
        blocks[index] += 1;
        let mut block: [u8; 512] = blocks[block_start..block_start + 512].try_into().unwrap();
        let header = BlockHeader::parse(&block);
        header.write_to(&mut block);
        blocks[block_start..block_start + 512].copy_from_slice(&block);
        let err = walk_blocks(&blocks, first_block, *boundaries.last().unwrap(), PAGE)
            .expect_err("misread");
        assert!(
            matches!(
                err,
                WalkError::FirstRecGroup { .. } | WalkError::Record { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_end_inside_a_mini_transaction_is_refused() {
        let start = 100 * 512 + 300;
        let (blocks, boundaries) = lay_out(start, &sample_groups());
        let first_block = start / 512 * 512;
        let err = walk_blocks(&blocks, first_block, boundaries[10] + 3, PAGE).unwrap_err();
        assert!(matches!(err, WalkError::End { .. }), "{err}");
        let beyond = *boundaries.last().unwrap() + 1;
        let err = walk_blocks(&blocks, first_block, beyond, PAGE).unwrap_err();
        assert!(matches!(err, WalkError::End { .. }), "{err}");
    }

    #[test]
    fn blocks_must_follow_each_other() {
        let start = 100 * 512 + 300;
        let (blocks, _) = lay_out(start, &sample_groups());
        let first_block = start / 512 * 512;
        let mut walker = RedoWalker::new(PAGE);
        walker
            .push_block(first_block, blocks[..512].try_into().unwrap())
            .unwrap();
        let err = walker
            .push_block(first_block + 1024, blocks[1024..1536].try_into().unwrap())
            .unwrap_err();
        assert!(matches!(err, WalkError::NotContiguous { .. }));
    }

    #[test]
    fn a_flag_inside_a_group_and_unknown_types_are_errors() {
        let start = 100 * 512 + 300;
        let groups = vec![vec![
            insert_record(5, 10),
            single(insert_record(5, 10)).remove(0),
            vec![RecordType::MULTI_REC_END.0],
        ]];
        let (blocks, boundaries) = lay_out(start, &groups);
        let err = walk_blocks(&blocks, start / 512 * 512, boundaries[1], PAGE).unwrap_err();
        assert!(matches!(err, WalkError::Record { .. }), "{err}");

        let groups = vec![single(vec![77, 1, 1, 0, 0])];
        let (blocks, boundaries) = lay_out(start, &groups);
        let err = walk_blocks(&blocks, start / 512 * 512, boundaries[1], PAGE).unwrap_err();
        assert!(err.to_string().contains("unknown record type 77"), "{err}");
    }

    #[test]
    fn the_walk_starts_at_the_first_block_with_a_group() {
        // A mini-transaction covering a whole block: first_rec_group 0.
        let start = 100 * 512 + 300;
        let groups = vec![single(insert_record(5, 900)), single(insert_record(5, 20))];
        let (blocks, boundaries) = lay_out(start - 512, &groups);
        // Drop the first block: the second has first_rec_group 0.
        let first_block = (start - 512) / 512 * 512 + 512;
        assert_eq!(
            BlockHeader::parse(blocks[512..1024].try_into().unwrap()).first_rec_group,
            0
        );
        let summary = walk_blocks(
            &blocks[512..],
            first_block,
            *boundaries.last().unwrap(),
            PAGE,
        )
        .unwrap();
        assert_eq!(summary.start_lsn, boundaries[1]);
        assert_eq!(summary.groups, 1);
    }

    #[test]
    fn dummy_records_pad_alone() {
        let start = 100 * 512 + 300;
        let groups = vec![
            single(insert_record(5, 10)),
            vec![vec![RecordType::DUMMY_RECORD.0]],
            vec![vec![RecordType::DUMMY_RECORD.0]],
            single(insert_record(5, 10)),
        ];
        let (blocks, boundaries) = lay_out(start, &groups);
        let summary = walk_blocks(
            &blocks,
            start / 512 * 512,
            *boundaries.last().unwrap(),
            PAGE,
        )
        .unwrap();
        assert_eq!(summary.groups, 4);
    }

    #[test]
    fn a_group_ending_at_a_block_end_is_checked_in_the_next_block() {
        // Choose a first group that ends exactly at the end of the payload.
        let start = 100 * 512 + 12;
        let fill = PAYLOAD_END - BLOCK_HDR_SIZE - 7;
        let groups = vec![single(insert_record(5, fill)), single(insert_record(5, 3))];
        let (blocks, boundaries) = lay_out(start, &groups);
        assert_eq!(boundaries[1], start + 512);
        let summary = walk_blocks(
            &blocks,
            start / 512 * 512,
            *boundaries.last().unwrap(),
            PAGE,
        )
        .unwrap();
        assert_eq!(summary.groups, 2);
        assert_eq!(summary.blocks_checked, 1);
    }

    /// The redo a real 9.7.4 server wrote for the workload of
    /// `tests/fixtures/innodb/make-redo-records.sh`.
    fn real_redo() -> (Vec<u8>, serde_json::Value) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/innodb");
        let packed = std::fs::read(format!("{dir}/redo-records.bin.zst")).expect("fixture");
        let blocks = zstd::decode_all(&packed[..]).expect("zstd");
        let facts = std::fs::read(format!("{dir}/redo-records.json")).expect("facts");
        (blocks, serde_json::from_slice(&facts).expect("json"))
    }

    fn u(v: &serde_json::Value) -> u64 {
        v.as_u64().expect("a number")
    }

    #[test]
    fn real_redo_of_ddl_and_dml_walks_to_its_end() {
        let (blocks, facts) = real_redo();
        let first_block = u(&facts["first_block_lsn"]);
        let end = u(&facts["end_lsn"]);
        let summary = walk_blocks(&blocks, first_block, end, u(&facts["page_size"]) as usize)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(summary.start_lsn <= u(&facts["start_lsn"]));
        assert!(
            summary.end_checked,
            "the end is a mini-transaction boundary"
        );
        // Every block after the first confirmed the walk.
        assert_eq!(summary.blocks_checked as usize, blocks.len() / 512 - 1);
        assert!(summary.groups > 10_000, "{}", summary.groups);
        let count = |kind: RecordType| {
            summary
                .counts
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(0, |(_, n)| *n)
        };
        // The workload's variety, as the server logged it.
        for kind in [
            RecordType::REC_INSERT,
            RecordType::REC_UPDATE_IN_PLACE,
            RecordType::REC_DELETE,
            RecordType::REC_CLUST_DELETE_MARK,
            RecordType::LIST_END_COPY_CREATED,
            RecordType::ZIP_PAGE_COMPRESS,
            RecordType::ZIP_WRITE_HEADER,
            RecordType::COMP_PAGE_CREATE_RTREE,
            RecordType::UNDO_INSERT,
            RecordType::TABLE_DYNAMIC_META,
            RecordType::FILE_EXTEND,
            RecordType::INDEX_LOAD,
        ] {
            assert!(count(kind) > 0, "no {kind} in {:?}", summary.counts);
        }

        let space = |name: &str| u(&facts["spaces"][name]) as u32;
        let (t1, rebuilt) = (
            space("rx/t1 before the rebuild"),
            space("rx/t1 after the rebuild"),
        );
        let loads: Vec<u32> = summary
            .events
            .iter()
            .filter(|e| e.kind == SpaceEventKind::IndexLoad)
            .map(|e| e.space_id)
            .collect();
        // ADD INDEX on t1, then both indexes of the rebuilt t1.
        assert_eq!(loads, [t1, rebuilt, rebuilt]);
        let ops: Vec<String> = summary
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                SpaceEventKind::File(op) => Some(match op {
                    FileOp::Create { path, .. } => format!("create {path}"),
                    FileOp::Rename { from, to } => format!("rename {from} {to}"),
                    FileOp::Delete { path } => format!("delete {path}"),
                }),
                SpaceEventKind::IndexLoad => None,
            })
            .map(|op| {
                // Temporary names of DDL (#sql-ib…) differ on every run.
                op.split(' ')
                    .map(|w| if w.contains("#sql") { "#sql" } else { w })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            ops,
            [
                "create ./rx/t1.ibd",
                "create ./rx/t2.ibd",
                "rename ./rx/t2.ibd ./rx/t3.ibd",
                // TRUNCATE: set the old file aside, create a new one, drop
                // the old.
                "rename ./rx/t3.ibd #sql",
                "create ./rx/t3.ibd",
                "delete #sql",
                "delete ./rx/t3.ibd",
                "create ./ts1.ibd",
                "delete ./ts1.ibd",
                "create ./rx/z.ibd",
                "create ./rx/j.ibd",
                "create ./rx/r.ibd",
                "create ./rx/s.ibd",
                // ALTER TABLE t1 ENGINE=InnoDB: build a copy, swap, drop.
                "create #sql",
                "rename ./rx/t1.ibd #sql",
                "rename #sql ./rx/t1.ibd",
                "delete #sql",
            ]
        );
        let z = space("rx/z");
        assert!(summary.events.iter().any(|e| e.space_id == z));
    }

    #[test]
    fn real_redo_cut_anywhere_resumes_where_it_left_off() {
        // Blocks fed one at a time, and the walk ended at a boundary in the
        // middle: what was walked up to there is exactly what a walk to
        // there finds.
        let (blocks, facts) = real_redo();
        let first_block = u(&facts["first_block_lsn"]);
        let full = walk_blocks(&blocks, first_block, u(&facts["end_lsn"]), PAGE).unwrap();
        let middle = full.events[full.events.len() / 2].lsn;
        let mut walker = RedoWalker::new(PAGE);
        let (chunks, _) = blocks.as_chunks::<BLOCK_SIZE>();
        let mut boundary = None;
        for (i, block) in chunks.iter().enumerate() {
            walker
                .push_block(first_block + (i * BLOCK_SIZE) as Lsn, block)
                .unwrap();
            if walker.walked_lsn().is_some_and(|w| w > middle) {
                boundary = walker.walked_lsn();
                break;
            }
        }
        let boundary = boundary.expect("walked past the middle");
        let partial = walker.finish(boundary).unwrap();
        let expected: Vec<_> = full
            .events
            .iter()
            .filter(|e| e.lsn < boundary)
            .cloned()
            .collect();
        assert_eq!(partial.events, expected);
        // A damaged byte in a block the walk depends on is caught.
        let mut damaged = blocks.clone();
        let at = (middle - first_block) as usize;
        damaged[at] ^= 0x40;
        assert!(walk_blocks(&damaged, first_block, u(&facts["end_lsn"]), PAGE).is_err());
    }
}
