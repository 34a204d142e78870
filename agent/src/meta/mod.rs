//! The files of a backup directory besides the data itself: the seed's text
//! files (same names, same formats, so existing scripts keep working) and our
//! `innoxide.json` manifest, which is written last and is the only proof that
//! a backup exists.

mod backup_cnf;
mod binlog_info;
mod checkpoints;
pub mod delta;
pub mod manifest;

pub use backup_cnf::render_backup_cnf;
pub use binlog_info::BinlogInfo;
pub use checkpoints::{BackupType, Checkpoints};
pub use manifest::{
    BaseRef, ChangedPages, FileEntry, FileKind, Incremental, Manifest, RedoRange, Tablespace,
    tablespace_key, write_atomically,
};

pub const CHECKPOINTS: &str = "xtrabackup_checkpoints";
pub const BINLOG_INFO: &str = "xtrabackup_binlog_info";
pub const BINLOG_POS_INNODB: &str = "xtrabackup_binlog_pos_innodb";
pub const BINARY: &str = "xtrabackup_binary";
pub const BACKUP_CNF: &str = "backup-my.cnf";
pub const LOGFILE: &str = "xtrabackup_logfile";
pub const SLAVE_INFO: &str = "xtrabackup_slave_info";
pub const INFO: &str = "xtrabackup_info";
pub const MANIFEST: &str = "innoxide.json";
/// Extension of a tablespace's changed pages in an incremental backup.
pub const DELTA_SUFFIX: &str = ".delta";
pub const MINI_STDOUT: &str = "mysql-stdout";
pub const MINI_STDERR: &str = "mysql-stderr";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: line {line}: {problem}")]
    Parse {
        file: &'static str,
        line: usize,
        problem: String,
    },
    #[error("{file}: {problem}")]
    Invalid { file: &'static str, problem: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
