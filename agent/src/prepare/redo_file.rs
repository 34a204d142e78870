//! The redo files the mini instance recovers from: `#innodb_redo/#ib_redo0`
//! (and `#ib_redo1`, … when the log is larger than mysqld's 16 GiB limit
//! per file), built from the backup's `xtrabackup_logfile` (INNODB.md §5
//! recipe). The captured log may run past `last_lsn`: it is cut there, so
//! recovery stops at exactly the consistent point.
//!
//! Several files are laid out as a server lays out its own: consecutive ids,
//! each file starting at the LSN where the one before ends, every file but
//! the last flagged full (so mysqld goes on to the next), the checkpoint in
//! the first file only.
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

/// Name of the first synthesized file inside `#innodb_redo/` (mysqld only
/// needs ids to be consecutive).
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
    /// Size of all files together, padding included.
    pub file_size: u64,
    /// How many files the log was written into.
    pub files: u64,
}

/// Writes the redo files into `redo_dir` (which must hold none) from
/// `logfile`: a fresh header with `creator` and both checkpoints at
/// `checkpoint_lsn`, the captured blocks from the checkpoint's block up to
/// the one holding `last_lsn`, that block cut at `last_lsn`, zeros up to a
/// size mysqld accepts; in files of at most `max_file_size` bytes
/// ([`synth::MAX_FILE_SIZE`] for mysqld; smaller in tests). `stop` is
/// checked between chunks.
#[allow(clippy::too_many_arguments)]
pub fn write(
    logfile: &Path,
    redo_dir: &Path,
    checkpoint_lsn: Lsn,
    last_lsn: Lsn,
    page_size: u64,
    creator: &str,
    max_file_size: u64,
    stop: &AtomicBool,
) -> Result<SynthesizedRedo, RedoFileError> {
    let out = &redo_dir.join(REDO_FILE);
    let read_err = |source| RedoFileError::Read {
        path: logfile.to_owned(),
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

    let layout = Layout::new(end_lsn - start_lsn, page_size, max_file_size).map_err(synth_err)?;
    let first_header = synth::logfile_header(Some(&template), start_lsn, checkpoint_lsn, creator)
        .map_err(synth_err)?;
    let mut writer = SplitWriter {
        dir: redo_dir,
        first_header,
        layout,
        next_id: 0,
        next_start: start_lsn,
        room: 0,
        current: None,
    };

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
        writer.write(chunk)?;
        body_blocks -= n;
    }
    let mut tail = vec![0u8; tail_blocks * BLOCK_SIZE];
    input.read_exact(&mut tail).map_err(read_err)?;
    let used = synth::cut_tail(&mut tail, lsn, last_lsn).map_err(synth_err)?;
    debug_assert_eq!(lsn + used as Lsn, end_lsn);
    writer.write(&tail[..used])?;
    let file_size = writer.finish(page_size)?;
    Ok(SynthesizedRedo {
        start_lsn,
        checkpoint_lsn,
        last_lsn,
        file_size,
        files: layout.files,
    })
}

/// How the log's data is cut into files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Data bytes in each full file (its size less the header): a whole
    /// number of blocks, and header plus data a whole number of pages.
    data_per_file: u64,
    files: u64,
}

impl Layout {
    fn new(data: u64, page_size: u64, max_file_size: u64) -> Result<Layout, SynthError> {
        // Checks the page size; the smallest file mysqld takes is the floor.
        let smallest = synth::padded_len(0, page_size)?;
        let file_size =
            redo::align_down(max_file_size.min(synth::MAX_FILE_SIZE), page_size).max(smallest);
        let data_per_file = file_size - FILE_HDR_SIZE as u64;
        Ok(Layout {
            data_per_file,
            files: data.div_ceil(data_per_file).max(1),
        })
    }
}

/// Writes a stream of blocks into consecutive redo files, opening the next
/// one when a file is full.
struct SplitWriter<'a> {
    dir: &'a Path,
    first_header: [u8; FILE_HDR_SIZE],
    layout: Layout,
    next_id: u64,
    next_start: Lsn,
    /// Data bytes the current file still takes.
    room: u64,
    current: Option<(PathBuf, BufWriter<File>)>,
}

impl SplitWriter<'_> {
    fn write(&mut self, mut bytes: &[u8]) -> Result<(), RedoFileError> {
        while !bytes.is_empty() {
            if self.room == 0 {
                self.open_next()?;
            }
            let n = (self.room.min(bytes.len() as u64)) as usize;
            let (path, file) = self.current.as_mut().expect("a file is open");
            file.write_all(&bytes[..n])
                .map_err(|source| RedoFileError::Write {
                    path: path.clone(),
                    source,
                })?;
            self.room -= n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Closes the file being written and opens the next, with the header
    /// for where it starts.
    fn open_next(&mut self) -> Result<(), RedoFileError> {
        self.close(None)?;
        let id = self.next_id;
        let path = self
            .dir
            .join(format!("{}{id}", crate::innodb::redo_files::FILE_PREFIX));
        let write_err = |source| RedoFileError::Write {
            path: path.clone(),
            source,
        };
        let mut header = self.first_header;
        if id > 0 {
            // The checkpoint lives in the first file; later files carry
            // none, as a server's files where no checkpoint was written.
            header[BLOCK_SIZE..].fill(0);
        }
        let mut file_header =
            FileHeader::parse(&header[..BLOCK_SIZE]).expect("synthesized headers parse");
        file_header.start_lsn = self.next_start;
        if id + 1 < self.layout.files {
            file_header.flags |= redo::FLAG_FILE_FULL;
        }
        header[..BLOCK_SIZE].copy_from_slice(&file_header.encode());
        let file = File::create_new(&path).map_err(write_err)?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        writer.write_all(&header).map_err(write_err)?;
        self.current = Some((path, writer));
        self.next_id += 1;
        self.next_start += self.layout.data_per_file;
        self.room = self.layout.data_per_file;
        Ok(())
    }

    /// Flushes the open file, first growing it to `len` when given. Not
    /// synced: mysqld reads it at once (from the page cache), a restore
    /// never uses it, and a crash before apply-log ends leaves a working
    /// copy that is rebuilt, never used.
    fn close(&mut self, len: Option<u64>) -> Result<u64, RedoFileError> {
        let Some((path, writer)) = self.current.take() else {
            return Ok(0);
        };
        let write_err = |source| RedoFileError::Write {
            path: path.clone(),
            source,
        };
        let file = writer.into_inner().map_err(|e| write_err(e.into_error()))?;
        if let Some(len) = len {
            file.set_len(len).map_err(write_err)?;
        }
        Ok(file.metadata().map_err(write_err)?.len())
    }

    /// Pads the last file with zeros up to a size mysqld accepts (recovery
    /// reads them as the end of the log) and returns the size of all files.
    fn finish(mut self, page_size: u64) -> Result<u64, RedoFileError> {
        let full_files = self.next_id.saturating_sub(1);
        let last_data = self.layout.data_per_file - self.room;
        let padded =
            synth::padded_len(FILE_HDR_SIZE as u64 + last_data, page_size).map_err(|source| {
                RedoFileError::Synth {
                    path: self.dir.to_owned(),
                    source,
                }
            })?;
        let last = self.close(Some(padded))?;
        Ok(full_files * (self.layout.data_per_file + FILE_HDR_SIZE as u64) + last)
    }
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

    fn redo_dir(dir: &Path) -> PathBuf {
        let redo = dir.join("redo");
        std::fs::create_dir_all(&redo).unwrap();
        redo
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
        let made = write(
            &logfile,
            &redo_dir(dir.path()),
            checkpoint,
            last,
            16384,
            "MEB innoxide",
            synth::MAX_FILE_SIZE,
            &AtomicBool::new(false),
        )
        .unwrap();
        let out = dir.path().join("redo").join(REDO_FILE);
        assert_eq!(made.files, 1);
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
        write(
            &logfile,
            &redo_dir(dir.path()),
            START + 30,
            START + 30,
            16384,
            "x",
            synth::MAX_FILE_SIZE,
            &AtomicBool::new(false),
        )
        .unwrap();
        let out = dir.path().join("redo").join(REDO_FILE);
        assert_eq!(scan_end(&std::fs::read(&out).unwrap()), START + 30);
    }

    #[test]
    fn a_capture_that_ends_early_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let logfile = captured(dir.path(), START + 30, 3);
        let err = write(
            &logfile,
            &redo_dir(dir.path()),
            START + 30,
            START + 5 * 512 + 30,
            16384,
            "x",
            synth::MAX_FILE_SIZE,
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
            &redo_dir(dir.path()),
            START + 30,
            START + 8 * 512 + 30,
            16384,
            "x",
            synth::MAX_FILE_SIZE,
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
            &redo_dir(dir.path()),
            START + 40,
            START + 600,
            16384,
            "x",
            synth::MAX_FILE_SIZE,
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(err.to_string().contains("checkpoint header"), "{err}");
    }

    #[test]
    fn a_log_larger_than_one_file_is_split_as_a_server_would() {
        // 64 KiB files stand in for 16 GiB ones: the same code cuts both.
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = START + 100;
        let blocks = CHUNK_BLOCKS + 300; // ≈ 1.2 MiB of log: 20 files
        let logfile = captured(dir.path(), checkpoint, blocks);
        let last = START + (CHUNK_BLOCKS as Lsn + 100) * 512 + 30;
        let redo = redo_dir(dir.path());
        let made = write(
            &logfile,
            &redo,
            checkpoint,
            last,
            16384,
            "MEB innoxide",
            64 * 1024,
            &AtomicBool::new(false),
        )
        .unwrap();
        let data_per_file = 64 * 1024 - FILE_HDR_SIZE as Lsn;
        let expected_files = (synth::blocks_end(last) - START).div_ceil(data_per_file);
        assert_eq!(made.files, expected_files);
        assert!(made.files > 2);

        let mut joined = Vec::new();
        let mut total = 0;
        for id in 0..made.files {
            let bytes = std::fs::read(redo.join(format!("#ib_redo{id}"))).unwrap();
            total += bytes.len() as u64;
            assert_eq!(bytes.len() % 16384, 0, "file {id} is not whole pages");
            let header = FileHeader::parse(&bytes).unwrap();
            assert_eq!(header.start_lsn, START + id * data_per_file, "file {id}");
            assert_eq!(header.creator, "MEB innoxide");
            let last_file = id + 1 == made.files;
            assert_eq!(
                header.flags,
                if last_file { 0 } else { redo::FLAG_FILE_FULL },
                "file {id}: every file but the newest is flagged full"
            );
            let checkpoint_in_file = CheckpointHeader::parse(&bytes[CHECKPOINT_1_OFFSET..]).ok();
            if id == 0 {
                assert_eq!(checkpoint_in_file.unwrap().checkpoint_lsn, checkpoint);
            } else {
                assert!(
                    checkpoint_in_file.is_none(),
                    "file {id} carries a checkpoint"
                );
                assert_eq!(
                    bytes.len() as u64,
                    if last_file {
                        bytes.len() as u64
                    } else {
                        64 * 1024
                    }
                );
            }
            if id == 0 {
                joined.extend_from_slice(&bytes);
            } else {
                joined.extend_from_slice(&bytes[FILE_HDR_SIZE..]);
            }
        }
        assert_eq!(made.file_size, total);
        // Read as one log, the files end exactly at last_lsn.
        assert_eq!(scan_end(&joined), last);
    }
}
