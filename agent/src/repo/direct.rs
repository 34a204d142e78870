//! Writes a new local file with direct I/O (`O_DIRECT`): the bytes go from
//! our buffer to the disk, not through the page cache.
//!
//! A backup writes gigabytes it will not read again soon. Through the page
//! cache each byte is copied once more (user buffer → page cache, the
//! largest CPU cost of a local backup in our profile), and the dirty pages
//! pile up until writeback floods the disk, which is when the server's
//! commits, each waiting for an fsync on the same disk, stall. Direct writes
//! cost neither: the kernel hands our buffer to the device and the write
//! returns when it is there.
//!
//! Direct I/O wants the buffer, the file offset and the length aligned to
//! the device's logical block; [`ALIGN`] (4 KiB) suits every block size in
//! use. Whole aligned blocks go direct; the file's unaligned tail is written
//! through the page cache after `O_DIRECT` is turned off. A filesystem
//! without direct I/O (tmpfs, some FUSE and network ones) refuses the flag
//! with EINVAL at open or at the first write: the file is then written
//! through the page cache as before.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Alignment of the buffer, of each write's offset and of its length.
pub const ALIGN: usize = 4096;
/// Bytes gathered before one write: a large, sequential I/O.
const BUFFER_BYTES: usize = 1 << 20;

pub struct DirectWriter {
    file: File,
    /// Holds the aligned buffer at `start..start + BUFFER_BYTES`; never
    /// resized, so the alignment stays.
    storage: Vec<u8>,
    start: usize,
    filled: usize,
    /// Bytes already in the file.
    written: u64,
    direct: bool,
}

impl DirectWriter {
    /// Creates `path`, which must not exist (as `File::create_new`).
    pub fn create_new(path: &Path) -> io::Result<DirectWriter> {
        let open = |direct: bool| {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            if direct {
                options.custom_flags(libc::O_DIRECT);
            }
            options.open(path)
        };
        let (file, direct) = match open(true) {
            Ok(file) => (file, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(false)?, false),
            Err(e) => return Err(e),
        };
        let storage = vec![0u8; BUFFER_BYTES + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        Ok(DirectWriter {
            file,
            storage,
            start,
            filled: 0,
            written: 0,
            direct,
        })
    }

    /// Whether writes still bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    pub fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let room = BUFFER_BYTES - self.filled;
            let n = room.min(bytes.len());
            let at = self.start + self.filled;
            self.storage[at..at + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == BUFFER_BYTES {
                self.flush_aligned()?;
            }
        }
        Ok(())
    }

    /// Writes what is buffered, syncs the file and returns it.
    pub fn finish(mut self) -> io::Result<File> {
        self.flush_aligned()?;
        if self.filled > 0 {
            // The unaligned tail, through the page cache.
            self.set_direct(false)?;
            let tail = &self.storage[self.start..self.start + self.filled];
            self.file.write_all_at(tail, self.written)?;
            self.written += self.filled as u64;
            self.filled = 0;
        }
        self.file.sync_all()?;
        Ok(self.file)
    }

    /// Writes the whole aligned blocks of the buffer and keeps the rest at
    /// its start.
    fn flush_aligned(&mut self) -> io::Result<()> {
        let aligned = self.filled / ALIGN * ALIGN;
        if aligned == 0 {
            return Ok(());
        }
        let block = self.start..self.start + aligned;
        match self
            .file
            .write_all_at(&self.storage[block.clone()], self.written)
        {
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                // Direct I/O refused after all: the page cache then.
                tracing::debug!(error = %e, "direct write refused; writing through the page cache");
                self.set_direct(false)?;
                self.file.write_all_at(&self.storage[block], self.written)?;
            }
            other => other?,
        }
        self.written += aligned as u64;
        self.storage
            .copy_within(self.start + aligned..self.start + self.filled, self.start);
        self.filled -= aligned;
        Ok(())
    }

    fn set_direct(&mut self, on: bool) -> io::Result<()> {
        if self.direct == on {
            return Ok(());
        }
        let flags = fcntl(&self.file, FcntlArg::F_GETFL).map_err(io::Error::from)?;
        let mut flags = OFlag::from_bits_truncate(flags);
        flags.set(OFlag::O_DIRECT, on);
        fcntl(&self.file, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
        self.direct = on;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn any_length_in_any_pieces_lands_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for (n, len) in [
            0usize,
            1,
            4095,
            4096,
            4097,
            BUFFER_BYTES,
            3 * BUFFER_BYTES + 12_345,
        ]
        .into_iter()
        .enumerate()
        {
            let data = pattern(len);
            let path = dir.path().join(format!("f{n}"));
            let mut w = DirectWriter::create_new(&path).unwrap();
            for piece in data.chunks(100_003) {
                w.write_all(piece).unwrap();
            }
            w.finish().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "length {len}");
        }
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "keep").unwrap();
        let err = DirectWriter::create_new(&path).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
    }

    #[test]
    fn a_filesystem_without_direct_io_is_written_through_the_page_cache() {
        // /dev/shm is tmpfs, which refuses O_DIRECT on most kernels.
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        let data = pattern(2 * BUFFER_BYTES + 5);
        let path = dir.path().join("f");
        let mut w = DirectWriter::create_new(&path).unwrap();
        w.write_all(&data).unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }
}
