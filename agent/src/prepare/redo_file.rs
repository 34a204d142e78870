//! The one redo file the mini instance recovers from:
//! `#innodb_redo/#ib_redo0`, built from the backup's `xtrabackup_logfile`
//! (INNODB.md §5 recipe). The captured log may run past `last_lsn`: the file
//! is cut there, so recovery stops at exactly the consistent point.
//!
//! Streamed: redo can be gigabytes, and only the block holding `last_lsn`
//! (with the one before it, which the cut checks) is ever held whole. Every
//! block on the way is checked (number, epoch, CRC-32C), so a damaged backup
//! is reported here, naming the LSN, instead of as a recovery that silently
//! stopped early.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::innodb::redo::{
    self, BLOCK_SIZE, BlockState, CHECKPOINT_1_OFFSET, CHECKPOINT_2_OFFSET, CheckpointHeader,
    FILE_HDR_SIZE, FileHeader, Lsn,
};
use crate::innodb::synth::{self, SynthError};

/// Name of the synthesized file inside `#innodb_redo/` (id 0: mysqld only
/// needs ids to be consecutive, and there is one file).
pub const REDO_FILE: &str = "#ib_redo0";

/// Blocks read and written per step.
const CHUNK_BLOCKS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum RedoFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error(
        "{path} ends at LSN {captured_end} but the backup's last_lsn is {last_lsn}: the captured redo is incomplete"
    )]
    TooShort {
        path: PathBuf,
        captured_end: Lsn,
        last_lsn: Lsn,
    },
    #[error("{path}: redo block at LSN {lsn} is damaged ({state}); the backup cannot be prepared")]
    Damaged {
        path: PathBuf,
        lsn: Lsn,
        state: String,
    },
    #[error("cancelled while writing {0}")]
    Cancelled(PathBuf),
    #[error("building the redo file from {path}: {source}")]
    Synth { path: PathBuf, source: SynthError },
}

/// What went into the synthesized file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthesizedRedo {
    pub start_lsn: Lsn,
    pub checkpoint_lsn: Lsn,
    pub last_lsn: Lsn,
    /// Size of the file, padding included.
    pub file_size: u64,
}

/// Writes `out` (which must not exist) from `logfile`: a fresh header with
/// `creator` and both checkpoints at `checkpoint_lsn`, the captured blocks
/// from the checkpoint's block up to the one holding `last_lsn`, that block
/// cut at `last_lsn`, zeros up to a size mysqld accepts. `stop` is checked
/// between chunks.
pub fn write(
    logfile: &Path,
    out: &Path,
    checkpoint_lsn: Lsn,
    last_lsn: Lsn,
    page_size: u64,
    creator: &str,
    stop: &AtomicBool,
) -> Result<SynthesizedRedo, RedoFileError> {
    let read_err = |source| RedoFileError::Read {
        path: logfile.to_owned(),
        source,
    };
    let write_err = |source| RedoFileError::Write {
        path: out.to_owned(),
        source,
    };
    let synth_err = |source| RedoFileError::Synth {
        path: logfile.to_owned(),
        source,
    };
    let invalid = |problem: String| RedoFileError::Invalid {
        path: logfile.to_owned(),
        problem,
    };

    let mut input = File::open(logfile).map_err(read_err)?;
    let input_len = input.metadata().map_err(read_err)?.len();
    let mut header = [0u8; FILE_HDR_SIZE];
    input.read_exact(&mut header).map_err(read_err)?;
    let template = FileHeader::parse(&header).map_err(|e| invalid(e.to_string()))?;
    check_captured_header(&template, &header, checkpoint_lsn).map_err(invalid)?;
    let start_lsn = template.start_lsn;
    if last_lsn < checkpoint_lsn {
        return Err(invalid(format!(
            "last_lsn {last_lsn} lies before the start checkpoint {checkpoint_lsn}"
        )));
    }

    // Blocks [start_lsn, end_lsn) are needed; the last one gets cut.
    let end_lsn = synth::blocks_end(last_lsn);
    let needed_blocks = usize::try_from((end_lsn - start_lsn) / BLOCK_SIZE as Lsn)
        .map_err(|_| invalid("the redo range is too large".into()))?;
    let captured_end = start_lsn
        + (input_len.saturating_sub(FILE_HDR_SIZE as u64) / BLOCK_SIZE as u64) * BLOCK_SIZE as u64;
    // The copier writes the block holding last_lsn in every case (a
    // header-only block when last_lsn is a block's first payload byte).
    if captured_end < end_lsn {
        return Err(RedoFileError::TooShort {
            path: logfile.to_owned(),
            captured_end,
            last_lsn,
        });
    }

    let total = FILE_HDR_SIZE as u64 + (end_lsn - start_lsn);
    let file_size = synth::padded_len(total, page_size).map_err(synth_err)?;
    let file = File::create_new(out).map_err(write_err)?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let new_header = synth::logfile_header(Some(&template), start_lsn, checkpoint_lsn, creator)
        .map_err(synth_err)?;
    writer.write_all(&new_header).map_err(write_err)?;

    // All blocks but the last two stream through unchanged (checked); the
    // last two are cut together, since the cut checks the one before.
    let tail_blocks = needed_blocks.min(2);
    let mut body_blocks = needed_blocks - tail_blocks;
    let mut lsn = start_lsn;
    let mut buffer = vec![0u8; CHUNK_BLOCKS * BLOCK_SIZE];
    while body_blocks > 0 {
        if stop.load(Ordering::Relaxed) {
            return Err(RedoFileError::Cancelled(out.to_owned()));
        }
        let n = body_blocks.min(CHUNK_BLOCKS);
        let chunk = &mut buffer[..n * BLOCK_SIZE];
        input.read_exact(chunk).map_err(read_err)?;
        for block in chunk.as_chunks::<BLOCK_SIZE>().0 {
            match redo::classify_block(block, lsn) {
                BlockState::Valid { full: true, .. } => {}
                other => {
                    return Err(RedoFileError::Damaged {
                        path: logfile.to_owned(),
                        lsn,
                        state: format!("{other:?}"),
                    });
                }
            }
            lsn += BLOCK_SIZE as Lsn;
        }
        writer.write_all(chunk).map_err(write_err)?;
        body_blocks -= n;
    }
    let mut tail = vec![0u8; tail_blocks * BLOCK_SIZE];
    input.read_exact(&mut tail).map_err(read_err)?;
    let used = synth::cut_tail(&mut tail, lsn, last_lsn).map_err(synth_err)?;
    debug_assert_eq!(lsn + used as Lsn, end_lsn);
    writer.write_all(&tail[..used]).map_err(write_err)?;
    let file = writer.into_inner().map_err(|e| write_err(e.into_error()))?;
    // Zero padding up to the size mysqld accepts: recovery reads it as the
    // end of the log.
    file.set_len(file_size).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    Ok(SynthesizedRedo {
        start_lsn,
        checkpoint_lsn,
        last_lsn,
        file_size,
    })
}

/// The captured file must be what the backup says: starting at the
/// checkpoint's block, with the checkpoint in its headers.
fn check_captured_header(
    header: &FileHeader,
    bytes: &[u8; FILE_HDR_SIZE],
    checkpoint_lsn: Lsn,
) -> Result<(), String> {
    let expected_start = redo::align_down(checkpoint_lsn, BLOCK_SIZE as Lsn);
    if header.start_lsn != expected_start {
        return Err(format!(
            "starts at LSN {} but the backup's start checkpoint {checkpoint_lsn} needs {expected_start}",
            header.start_lsn
        ));
    }
    for at in [CHECKPOINT_1_OFFSET, CHECKPOINT_2_OFFSET] {
        let found = CheckpointHeader::parse(&bytes[at..])
            .map_err(|e| e.to_string())?
            .checkpoint_lsn;
        if found != checkpoint_lsn {
            return Err(format!(
                "checkpoint header at offset {at} says {found}, the manifest says {checkpoint_lsn}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::innodb::redo::BlockHeader;

    const START: Lsn = 40_000 * 512;

    /// A captured log as the copier writes it: header at the checkpoint,
    /// `n` full blocks, each with a group starting at offset 30.
    fn captured(dir: &Path, checkpoint: Lsn, n: usize) -> PathBuf {
        let start = redo::align_down(checkpoint, 512);
        let mut bytes = synth::logfile_header(None, start, checkpoint, "innoxide")
            .unwrap()
            .to_vec();
        for i in 0..n {
            let mut block = [0u8; BLOCK_SIZE];
            for (j, b) in block[12..508].iter_mut().enumerate() {
                *b = ((i + j) % 250) as u8 + 1;
            }
            BlockHeader::for_lsn(start + (i * BLOCK_SIZE) as Lsn, 512, 30).write_to(&mut block);
            bytes.extend_from_slice(&block);
        }
        let path = dir.join("xtrabackup_logfile");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Reads the synthesized file like recovery scans it: from the first
    /// block until one ends early; returns where the log ends.
    fn scan_end(bytes: &[u8]) -> Lsn {
        let header = FileHeader::parse(bytes).unwrap();
        let mut lsn = header.start_lsn;
        loop {
            let at = FILE_HDR_SIZE + (lsn - header.start_lsn) as usize;
            let block = bytes[at..].first_chunk::<BLOCK_SIZE>().unwrap();
            match redo::classify_block(block, lsn) {
                BlockState::Valid { full: true, .. } => lsn += 512,
                BlockState::Valid { header, .. } => return lsn + Lsn::from(header.data_len),
                other => panic!("scan stopped on {other:?} at {lsn}"),
            }
        }
    }

    #[test]
    fn cuts_a_long_capture_at_last_lsn_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = START + 100;
        let blocks = CHUNK_BLOCKS + 300;
        let logfile = captured(dir.path(), checkpoint, blocks);
        let original = std::fs::read(&logfile).unwrap();
        let last = START + (CHUNK_BLOCKS as Lsn + 100) * 512 + 30;
        let out = dir.path().join("ib_redo0");
        let made = write(
            &logfile,
            &out,
            checkpoint,
            last,
            16384,
            "MEB innoxide",
            &AtomicBool::new(false),
        )
        .unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes.len() as u64, made.file_size);
        assert_eq!(made.file_size % 16384, 0);
        let header = FileHeader::parse(&bytes).unwrap();
        assert_eq!(header.creator, "MEB innoxide");
        assert_eq!(header.flags, 0);
        assert_eq!(header.start_lsn, START);
        assert_eq!(
            CheckpointHeader::parse(&bytes[512..])
                .unwrap()
                .checkpoint_lsn,
            checkpoint
        );
        assert_eq!(scan_end(&bytes), last);
        // Everything after the cut block is zeros.
        let cut_end = FILE_HDR_SIZE + (synth::blocks_end(last) - START) as usize;
        assert!(bytes[cut_end..].iter().all(|&b| b == 0));
        assert_eq!(
            std::fs::read(&logfile).unwrap(),
            original,
            "the input is untouched"
        );
    }

    #[test]
    fn last_lsn_in_the_checkpoint_block() {
        let dir = tempfile::tempdir().unwrap();
        let logfile = captured(dir.path(), START + 30, 3);
        let out = dir.path().join("ib_redo0");
        write(
            &logfile,
            &out,
            START + 30,
            START + 30,
            16384,
            "x",
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(scan_end(&std::fs::read(&out).unwrap()), START + 30);
    }

    #[test]
    fn a_capture_that_ends_early_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let logfile = captured(dir.path(), START + 30, 3);
        let err = write(
            &logfile,
            &dir.path().join("o"),
            START + 30,
            START + 5 * 512 + 30,
            16384,
            "x",
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(matches!(err, RedoFileError::TooShort { .. }), "{err}");
    }

    #[test]
    fn a_damaged_block_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let logfile = captured(dir.path(), START + 30, 10);
        let mut bytes = std::fs::read(&logfile).unwrap();
        bytes[FILE_HDR_SIZE + 3 * 512 + 100] ^= 0xff;
        std::fs::write(&logfile, bytes).unwrap();
        let err = write(
            &logfile,
            &dir.path().join("o"),
            START + 30,
            START + 8 * 512 + 30,
            16384,
            "x",
            &AtomicBool::new(false),
        )
        .unwrap_err();
        match err {
            RedoFileError::Damaged { lsn, .. } => assert_eq!(lsn, START + 3 * 512),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_capture_for_another_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let logfile = captured(dir.path(), START + 30, 3);
        let err = write(
            &logfile,
            &dir.path().join("o"),
            START + 40,
            START + 600,
            16384,
            "x",
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(err.to_string().contains("checkpoint header"), "{err}");
    }
}
