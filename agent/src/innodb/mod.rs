//! InnoDB on-disk formats, byte-exact, for MySQL 8.0.30+ (tested on 9.7).
//!
//! This module owns everything the backup engine needs to know about InnoDB
//! bytes, and nothing about servers or storage:
//!
//! - [`redo`]: the redo log file header, checkpoint headers and 512-byte
//!   blocks (format 6, `#innodb_redo/#ib_redoN`), LSN arithmetic, and the
//!   classification of a block read from a live server (valid, torn, stale,
//!   overwritten).
//! - [`page`]: tablespace page headers, page size from FSP flags, and page
//!   validation (LSN trailer + checksum) as the server itself does it.
//! - [`redo_record`] and [`redo_walk`]: the records in the redo, walked
//!   mini-transaction by mini-transaction and checked against the block
//!   headers, to find index builds without redo and file operations.
//! - [`redo_files`]: the one I/O layer: listing and reading the redo files of
//!   a live server, which renames and reuses them underneath us.
//! - [`synth`]: writing a redo file of our own (`xtrabackup_logfile`, or the
//!   `#ib_redo0` a mini instance recovers from), cut at an exact LSN.
//!
//! Everything but `redo_files` is pure: bytes in, values out. All integers
//! on disk are big-endian. The facts are from the MySQL sources (cited per
//! item) and were checked against files a real 9.7.4 server wrote; see
//! `agent/tests/fixtures/innodb/README.md`.

pub mod page;
pub mod redo;
pub mod redo_files;
pub mod redo_record;
pub mod redo_walk;
pub mod synth;
