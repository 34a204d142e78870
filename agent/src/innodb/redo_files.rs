//! The redo files of a live server (`<datadir>/#innodb_redo/#ib_redoN`):
//! listing them, finding the latest checkpoint, and reading blocks by LSN.
//! The only module of `innodb` that does I/O.
//!
//! The server renames files under us: a consumed file becomes
//! `#ib_redoN_tmp`, is later renamed to a new id and rewritten with a new
//! header. So a scan is a snapshot, every read may find its file gone or
//! reused, and such errors say [`RedoFilesError::needs_rescan`]. Content is
//! never trusted from the file name: blocks are validated by the caller
//! ([`classify_block`](super::redo::classify_block)), and each read checks
//! that the file still has the header it had when scanned.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::redo::{
    BLOCK_SIZE, CHECKPOINT_1_OFFSET, CHECKPOINT_2_OFFSET, CheckpointHeader, FILE_HDR_SIZE,
    FileHeader, Lsn, RedoError,
};

/// File name prefix of redo files in the current format.
pub const FILE_PREFIX: &str = "#ib_redo";
/// Directory holding them, under the datadir or innodb_log_group_home_dir.
pub const DIR_NAME: &str = "#innodb_redo";

/// Errors listing or reading redo files.
#[derive(Debug, Error)]
pub enum RedoFilesError {
    #[error("listing redo directory {path}: {source}")]
    ListDir { path: PathBuf, source: io::Error },
    #[error("redo file {path} disappeared (the server recycled it); rescan the redo directory")]
    Vanished { path: PathBuf },
    #[error("reading redo file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("redo file {path} is {size} bytes, shorter than its 2048-byte header")]
    TooSmall { path: PathBuf, size: u64 },
    #[error(
        "redo file {path} has an invalid header ({source}); if it persists over rescans the \
         redo log is damaged"
    )]
    BadHeader { path: PathBuf, source: RedoError },
    #[error("redo file {path} was reused by the server for other LSNs while we read it; rescan")]
    Recycled { path: PathBuf },
    #[error(
        "lsn {lsn} is older than the oldest redo file (which starts at {oldest}): the server \
         has already recycled it. Copy redo faster, register a redo consumer, or raise \
         innodb_redo_log_capacity"
    )]
    LsnRecycled { lsn: Lsn, oldest: Lsn },
    #[error("lsn {lsn} is past the end of the redo files seen ({end}); rescan")]
    BeyondEnd { lsn: Lsn, end: Lsn },
    #[error("lsn {lsn} falls between redo files (a gap in the file chain)")]
    Gap { lsn: Lsn },
    #[error("read of {len} bytes at lsn {lsn} is not a whole number of 512-byte blocks")]
    Misaligned { lsn: Lsn, len: usize },
    #[error(
        "redo files {prev} and {next} do not chain: {why}; the redo directory mixes files \
         of different logs"
    )]
    Chain { prev: u64, next: u64, why: String },
}

impl RedoFilesError {
    /// True when the directory changed under us and a fresh
    /// [`RedoDir::scan`] may well succeed. Callers should still cap retries:
    /// a header that stays invalid is damage, not a race.
    pub fn needs_rescan(&self) -> bool {
        matches!(
            self,
            Self::Vanished { .. }
                | Self::Recycled { .. }
                | Self::BeyondEnd { .. }
                | Self::BadHeader { .. }
                | Self::TooSmall { .. }
        )
    }
}

/// One `#ib_redoN` file as seen by the last scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedoFile {
    /// N of `#ib_redoN`: only ever increases.
    pub id: u64,
    pub path: PathBuf,
    pub header: FileHeader,
    /// Size in bytes when scanned.
    pub size: u64,
    /// Both checkpoint headers; `None` when the CRC is bad (ignored, as
    /// recovery does). A header never written reads as `Some(0)`.
    pub checkpoints: [Option<Lsn>; 2],
}

impl RedoFile {
    /// First LSN of this file's data.
    pub fn start_lsn(&self) -> Lsn {
        self.header.start_lsn
    }

    /// One past the last LSN this file can hold: `start_lsn + size - 2048`.
    pub fn end_lsn(&self) -> Lsn {
        self.header.end_lsn(self.size)
    }

    pub fn contains(&self, lsn: Lsn) -> bool {
        self.start_lsn() <= lsn && lsn < self.end_lsn()
    }

    /// File offset of `lsn`: `2048 + (lsn - start_lsn)`.
    pub fn offset_of(&self, lsn: Lsn) -> Option<u64> {
        self.contains(lsn)
            .then(|| FILE_HDR_SIZE as u64 + (lsn - self.start_lsn()))
    }

    /// The larger usable checkpoint of this file (`recv_find_max_checkpoint`
    /// for one file): headers with a bad CRC or LSN 0 are skipped.
    pub fn max_checkpoint(&self) -> Option<Lsn> {
        self.checkpoints
            .iter()
            .flatten()
            .copied()
            .filter(|&lsn| lsn != 0)
            .max()
    }
}

/// A snapshot of the redo directory: the `#ib_redoN` files, sorted by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedoDir {
    pub path: PathBuf,
    pub files: Vec<RedoFile>,
}

/// The id of a current-format redo file name, `None` for anything else
/// (spares `#ib_redoN_tmp`, other files).
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(FILE_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl RedoDir {
    /// Lists `#ib_redoN` files in `path` (the `#innodb_redo` directory
    /// itself) and reads each one's header and checkpoints. Spare files
    /// (`_tmp`) are not part of the log and are skipped.
    pub fn scan(path: &Path) -> Result<Self, RedoFilesError> {
        let list_err = |source| RedoFilesError::ListDir {
            path: path.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let Some(id) = entry.file_name().to_str().and_then(parse_file_name) else {
                continue;
            };
            files.push(read_file(id, entry.path())?);
        }
        files.sort_by_key(|f| f.id);
        Ok(Self {
            path: path.to_owned(),
            files,
        })
    }

    /// The checkpoint recovery would start from, as `(file id, lsn)`:
    /// `recv_find_max_checkpoint`. Per file, the larger checkpoint with a
    /// good CRC and a non-zero LSN; a file whose checkpoint lies outside its
    /// own LSN range is skipped whole (the server does the same); then the
    /// largest over all files.
    pub fn find_max_checkpoint(&self) -> Option<(u64, Lsn)> {
        self.files
            .iter()
            .filter_map(|f| f.max_checkpoint().map(|lsn| (f, lsn)))
            .filter(|(f, lsn)| f.contains(*lsn))
            .map(|(f, lsn)| (f.id, lsn))
            .max_by_key(|&(_, lsn)| lsn)
    }

    /// The file holding `lsn`, if any.
    pub fn file_for_lsn(&self, lsn: Lsn) -> Option<&RedoFile> {
        self.files.iter().find(|f| f.contains(lsn))
    }

    /// First LSN held by any file.
    pub fn start_lsn(&self) -> Option<Lsn> {
        self.files.iter().map(RedoFile::start_lsn).min()
    }

    /// One past the last LSN any file can hold.
    pub fn end_lsn(&self) -> Option<Lsn> {
        self.files.iter().map(RedoFile::end_lsn).max()
    }

    /// Checks what mysqld checks of a file set: consecutive ids, one
    /// log_uuid, each file starting where the previous one ends.
    pub fn check_chain(&self) -> Result<(), RedoFilesError> {
        for pair in self.files.windows(2) {
            let [prev, next] = pair else { continue };
            let why = if next.id != prev.id + 1 {
                Some("ids are not consecutive".to_owned())
            } else if next.header.log_uuid != prev.header.log_uuid {
                Some(format!(
                    "log_uuid {:#x} != {:#x}",
                    prev.header.log_uuid, next.header.log_uuid
                ))
            } else if next.start_lsn() != prev.end_lsn() {
                Some(format!(
                    "start_lsn {} != previous end_lsn {}",
                    next.start_lsn(),
                    prev.end_lsn()
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(RedoFilesError::Chain {
                    prev: prev.id,
                    next: next.id,
                    why,
                });
            }
        }
        Ok(())
    }

    /// Fills `buf` with the blocks from `start_lsn` on, from whichever files
    /// hold them (a range may cross from one file into the next). Bytes are
    /// returned as on disk: the caller validates each block for its LSN.
    ///
    /// After each file's read, its header is read again through the same
    /// handle: if the server reused the file meanwhile, its start LSN has
    /// changed and the read reports [`RedoFilesError::Recycled`].
    pub fn read_blocks(&self, start_lsn: Lsn, buf: &mut [u8]) -> Result<(), RedoFilesError> {
        if !start_lsn.is_multiple_of(BLOCK_SIZE as Lsn) || !buf.len().is_multiple_of(BLOCK_SIZE) {
            return Err(RedoFilesError::Misaligned {
                lsn: start_lsn,
                len: buf.len(),
            });
        }
        let mut done = 0usize;
        while done < buf.len() {
            let lsn = start_lsn + done as Lsn;
            let file = self.file_for_lsn(lsn).ok_or_else(|| self.missing(lsn))?;
            let in_file = usize::try_from(file.end_lsn() - lsn).unwrap_or(usize::MAX);
            let len = in_file.min(buf.len() - done);
            let offset = FILE_HDR_SIZE as u64 + (lsn - file.start_lsn());
            read_checked(file, offset, &mut buf[done..done + len])?;
            done += len;
        }
        Ok(())
    }

    fn missing(&self, lsn: Lsn) -> RedoFilesError {
        match (self.start_lsn(), self.end_lsn()) {
            (Some(oldest), _) if lsn < oldest => RedoFilesError::LsnRecycled { lsn, oldest },
            (_, Some(end)) if lsn < end => RedoFilesError::Gap { lsn },
            (_, end) => RedoFilesError::BeyondEnd {
                lsn,
                end: end.unwrap_or(0),
            },
        }
    }
}

fn open(path: &Path) -> Result<File, RedoFilesError> {
    File::open(path).map_err(|source| io_error(path, source))
}

/// A missing file is the server's recycling, not an I/O failure.
fn io_error(path: &Path, source: io::Error) -> RedoFilesError {
    if source.kind() == io::ErrorKind::NotFound {
        RedoFilesError::Vanished {
            path: path.to_owned(),
        }
    } else {
        RedoFilesError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

fn read_file(id: u64, path: PathBuf) -> Result<RedoFile, RedoFilesError> {
    let file = open(&path)?;
    let size = file
        .metadata()
        .map_err(|source| io_error(&path, source))?
        .len();
    if size < FILE_HDR_SIZE as u64 {
        return Err(RedoFilesError::TooSmall { path, size });
    }
    let mut hdr = [0u8; FILE_HDR_SIZE];
    file.read_exact_at(&mut hdr, 0)
        .map_err(|source| short_read(&path, source))?;
    let header = match FileHeader::parse(&hdr) {
        Ok(header) => header,
        Err(source) => return Err(RedoFilesError::BadHeader { path, source }),
    };
    let checkpoint = |at: usize| {
        CheckpointHeader::parse(&hdr[at..])
            .ok()
            .map(|c| c.checkpoint_lsn)
    };
    Ok(RedoFile {
        id,
        path,
        header,
        size,
        checkpoints: [
            checkpoint(CHECKPOINT_1_OFFSET),
            checkpoint(CHECKPOINT_2_OFFSET),
        ],
    })
}

/// A file shorter than expected was truncated or resized by the server.
fn short_read(path: &Path, source: io::Error) -> RedoFilesError {
    if source.kind() == io::ErrorKind::UnexpectedEof {
        RedoFilesError::Recycled {
            path: path.to_owned(),
        }
    } else {
        io_error(path, source)
    }
}

fn read_checked(file: &RedoFile, offset: u64, buf: &mut [u8]) -> Result<(), RedoFilesError> {
    let handle = open(&file.path)?;
    handle
        .read_exact_at(buf, offset)
        .map_err(|source| short_read(&file.path, source))?;
    let mut hdr = [0u8; BLOCK_SIZE];
    handle
        .read_exact_at(&mut hdr, 0)
        .map_err(|source| short_read(&file.path, source))?;
    match FileHeader::parse(&hdr) {
        Ok(now)
            if now.start_lsn == file.header.start_lsn && now.log_uuid == file.header.log_uuid =>
        {
            Ok(())
        }
        // Rewritten for another LSN range, or caught mid-rewrite.
        _ => Err(RedoFilesError::Recycled {
            path: file.path.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::innodb::redo::{BlockHeader, BlockState, classify_block};
    use crate::innodb::synth::logfile_header;

    const FILE_SIZE: u64 = 64 * 1024;
    const DATA: u64 = FILE_SIZE - FILE_HDR_SIZE as u64;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/innodb/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    /// Writes `#ib_redo<id>` starting at `start` with full valid blocks and
    /// the given checkpoint in header 1 (header 2 zero, as the server leaves
    /// it until the second checkpoint in that file).
    fn write_redo(dir: &Path, id: u64, start: Lsn, checkpoint: Option<Lsn>) -> PathBuf {
        let ckpt = checkpoint.unwrap_or(start + 12);
        let mut bytes = logfile_header(None, start, start + 12, "MySQL 9.7.4")
            .expect("header")
            .to_vec();
        bytes[CHECKPOINT_1_OFFSET..CHECKPOINT_1_OFFSET + 512].copy_from_slice(
            &CheckpointHeader {
                checkpoint_lsn: ckpt,
            }
            .encode(),
        );
        bytes[CHECKPOINT_2_OFFSET..CHECKPOINT_2_OFFSET + 512]
            .copy_from_slice(&CheckpointHeader { checkpoint_lsn: 0 }.encode());
        for i in 0..DATA / 512 {
            let mut block = [0u8; 512];
            block[12..508].fill((id % 250) as u8 + 1);
            BlockHeader::for_lsn(start + i * 512, 512, 12).write_to(&mut block);
            bytes.extend_from_slice(&block);
        }
        let path = dir.join(format!("#ib_redo{id}"));
        std::fs::write(&path, &bytes).expect("write redo file");
        path
    }

    fn three_files(dir: &Path) -> Lsn {
        let start = 1_000 * 512;
        write_redo(dir, 7, start, Some(start + 300));
        write_redo(dir, 8, start + DATA, Some(start + DATA + 5000));
        write_redo(dir, 9, start + 2 * DATA, Some(0));
        // Not part of the log.
        std::fs::write(dir.join("#ib_redo10_tmp"), [0u8; 4096]).expect("spare");
        std::fs::write(dir.join("ib_logfile0"), [0u8; 10]).expect("other");
        start
    }

    #[test]
    fn file_names() {
        assert_eq!(parse_file_name("#ib_redo0"), Some(0));
        assert_eq!(parse_file_name("#ib_redo123"), Some(123));
        assert_eq!(parse_file_name("#ib_redo12_tmp"), None);
        assert_eq!(parse_file_name("#ib_redo"), None);
        assert_eq!(parse_file_name("#ib_redo+1"), None);
        assert_eq!(parse_file_name("#ib_redo99999999999999999999999"), None);
        assert_eq!(parse_file_name("ib_logfile0"), None);
    }

    #[test]
    fn scan_lists_sorted_files_and_skips_spares() {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = three_files(dir.path());
        let redo = RedoDir::scan(dir.path()).expect("scan");
        let ids: Vec<u64> = redo.files.iter().map(|f| f.id).collect();
        assert_eq!(ids, [7, 8, 9]);
        redo.check_chain().expect("chained");
        assert_eq!(redo.start_lsn(), Some(start));
        assert_eq!(redo.end_lsn(), Some(start + 3 * DATA));
        let f = &redo.files[0];
        assert_eq!(f.size, FILE_SIZE);
        assert_eq!(f.end_lsn(), start + DATA);
        assert_eq!(f.offset_of(start), Some(2048));
        assert_eq!(f.offset_of(start + 1000), Some(3048));
        assert_eq!(f.offset_of(start + DATA), None);
        assert!(f.contains(start + DATA - 1) && !f.contains(start - 1));
        assert_eq!(redo.file_for_lsn(start + DATA).map(|f| f.id), Some(8));
    }

    #[test]
    fn max_checkpoint_follows_recovery_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = three_files(dir.path());
        let redo = RedoDir::scan(dir.path()).expect("scan");
        assert_eq!(redo.find_max_checkpoint(), Some((8, start + DATA + 5000)));

        // A checkpoint outside its own file disqualifies that file.
        write_redo(dir.path(), 8, start + DATA, Some(start + 3 * DATA + 10));
        let redo = RedoDir::scan(dir.path()).expect("scan");
        assert_eq!(redo.find_max_checkpoint(), Some((7, start + 300)));

        // A bad CRC is skipped; the other header of the file still counts.
        let path = dir.path().join("#ib_redo8");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[CHECKPOINT_1_OFFSET + 9] ^= 1;
        bytes[CHECKPOINT_2_OFFSET..CHECKPOINT_2_OFFSET + 512].copy_from_slice(
            &CheckpointHeader {
                checkpoint_lsn: start + DATA + 700,
            }
            .encode(),
        );
        std::fs::write(&path, &bytes).expect("write");
        let redo = RedoDir::scan(dir.path()).expect("scan");
        assert_eq!(redo.files[1].checkpoints, [None, Some(start + DATA + 700)]);
        assert_eq!(redo.find_max_checkpoint(), Some((8, start + DATA + 700)));
    }

    #[test]
    fn real_checkpoint_file_header_is_found() {
        // The real header of the checkpoint file, with its size from the
        // server's directory listing, and zero blocks.
        let facts: serde_json::Value = serde_json::from_slice(&fixture("redo.json")).expect("json");
        let id = facts["ckpt_file_id"].as_u64().expect("id");
        let info = facts["redo_files"]
            .as_array()
            .expect("files")
            .iter()
            .find(|f| f["id"].as_u64() == Some(id))
            .expect("file")
            .clone();
        let size = info["size"].as_u64().expect("size");
        let mut bytes = fixture("redo-header-ckpt.bin");
        bytes.resize(usize::try_from(size).expect("fits"), 0);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(format!("#ib_redo{id}")), &bytes).expect("write");
        let redo = RedoDir::scan(dir.path()).expect("scan");
        assert_eq!(
            redo.files[0].end_lsn(),
            info["end_lsn"].as_u64().expect("end")
        );
        assert_eq!(
            redo.find_max_checkpoint(),
            Some((
                id,
                facts["log_status"]["LSN_checkpoint"]
                    .as_u64()
                    .expect("ckpt")
            ))
        );
    }

    #[test]
    fn read_blocks_crosses_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = three_files(dir.path());
        let redo = RedoDir::scan(dir.path()).expect("scan");
        let from = start + DATA - 1024;
        let mut buf = vec![0u8; 4 * 512];
        redo.read_blocks(from, &mut buf).expect("read");
        for (i, block) in buf.as_chunks::<512>().0.iter().enumerate() {
            let lsn = from + i as u64 * 512;
            assert!(
                matches!(
                    classify_block(block, lsn),
                    BlockState::Valid { full: true, .. }
                ),
                "block {i} at {lsn}"
            );
            // Blocks 0, 1 come from file 7, blocks 2, 3 from file 8.
            assert_eq!(block[100], if i < 2 { 8 } else { 9 });
        }
    }

    #[test]
    fn read_blocks_reports_what_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = three_files(dir.path());
        let redo = RedoDir::scan(dir.path()).expect("scan");
        let mut buf = vec![0u8; 512];
        let err = redo
            .read_blocks(start - 512, &mut buf)
            .expect_err("too old");
        assert!(matches!(err, RedoFilesError::LsnRecycled { .. }));
        assert!(!err.needs_rescan());
        let err = redo
            .read_blocks(start + 3 * DATA, &mut buf)
            .expect_err("too new");
        assert!(matches!(err, RedoFilesError::BeyondEnd { .. }));
        assert!(err.needs_rescan());
        let err = redo
            .read_blocks(start + 5, &mut buf)
            .expect_err("misaligned");
        assert!(matches!(err, RedoFilesError::Misaligned { .. }));
        // A read running past the newest file's end.
        let mut two = vec![0u8; 1024];
        let err = redo
            .read_blocks(start + 3 * DATA - 512, &mut two)
            .expect_err("runs off the end");
        assert!(matches!(err, RedoFilesError::BeyondEnd { .. }));
    }

    #[test]
    fn recycled_files_ask_for_a_rescan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = three_files(dir.path());
        let redo = RedoDir::scan(dir.path()).expect("scan");
        let mut buf = vec![0u8; 512];

        // The server renames a consumed file to a spare...
        std::fs::rename(
            dir.path().join("#ib_redo7"),
            dir.path().join("#ib_redo7_tmp"),
        )
        .expect("rename");
        let err = redo.read_blocks(start, &mut buf).expect_err("gone");
        assert!(matches!(err, RedoFilesError::Vanished { .. }), "{err}");
        assert!(err.needs_rescan());

        // ...and later reuses it under a new id with a new header. A stale
        // snapshot that still names it by its old path must not read it.
        std::fs::rename(
            dir.path().join("#ib_redo7_tmp"),
            dir.path().join("#ib_redo7"),
        )
        .expect("rename back");
        write_redo(dir.path(), 7, start + 3 * DATA, None);
        let err = redo.read_blocks(start, &mut buf).expect_err("reused");
        assert!(matches!(err, RedoFilesError::Recycled { .. }), "{err}");
        assert!(err.needs_rescan());

        let rescanned = RedoDir::scan(dir.path()).expect("scan");
        assert!(rescanned.check_chain().is_err());
        let err = rescanned
            .read_blocks(start, &mut buf)
            .expect_err("recycled");
        assert!(matches!(err, RedoFilesError::LsnRecycled { .. }), "{err}");
    }

    #[test]
    fn truncated_and_damaged_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let start = three_files(dir.path());
        let redo = RedoDir::scan(dir.path()).expect("scan");
        let path = dir.path().join("#ib_redo8");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        file.set_len(4096).expect("truncate");
        let mut buf = vec![0u8; 512];
        let err = redo
            .read_blocks(start + DATA + 8192, &mut buf)
            .expect_err("truncated");
        assert!(err.needs_rescan(), "{err}");

        file.set_len(100).expect("truncate");
        let err = RedoDir::scan(dir.path()).expect_err("too small");
        assert!(matches!(err, RedoFilesError::TooSmall { size: 100, .. }));

        file.set_len(FILE_SIZE).expect("extend");
        let err = RedoDir::scan(dir.path()).expect_err("header zeroed");
        assert!(matches!(err, RedoFilesError::BadHeader { .. }), "{err}");

        let missing = RedoDir::scan(&dir.path().join("nope")).expect_err("no dir");
        assert!(matches!(missing, RedoFilesError::ListDir { .. }));
        assert!(!missing.needs_rescan());
    }

    #[test]
    fn empty_directory_has_no_checkpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let redo = RedoDir::scan(dir.path()).expect("scan");
        assert!(redo.files.is_empty());
        assert_eq!(redo.find_max_checkpoint(), None);
        let err = redo
            .read_blocks(8192, &mut [0u8; 512])
            .expect_err("nothing");
        assert!(matches!(err, RedoFilesError::BeyondEnd { .. }));
    }
}
