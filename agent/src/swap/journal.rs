//! The swap's own files under `<state-dir>/swap/`, each written whole and
//! durably (temporary file, fsync, rename, fsync of the folder), so a crash
//! leaves the old version or the new one, never a torn file:
//!
//! - `armed.json` ([`Armed`]): a staged restore waits to be swapped in by
//!   the next `init`;
//! - `journal.json` ([`Journal`]): an exchange of datadirs has begun, and
//!   how far it got. While it exists, `init` finishes it before anything
//!   else, and disarming is refused;
//! - `last.json` and `done/<operation id>.json` ([`Done`]): the last
//!   exchange completed on this volume, and every one by id (a pod restart
//!   must see that its restore is done even after later swaps).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::fileops::{self, FileError};

pub const ARMED: &str = "armed.json";
pub const JOURNAL: &str = "journal.json";
pub const LAST: &str = "last.json";
pub const DONE_DIR: &str = "done";

/// A staged restore armed for the next `init`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Armed {
    pub operation_id: String,
    /// A prepared datadir (apply-log's `prepared/`) on the data volume.
    pub prepared_dir: PathBuf,
    pub gtid_executed: String,
    pub armed_at: SystemTime,
}

/// Which exchange a journal drives.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A staged restore replaces the datadir (kept in `previous/<id>`).
    Swap,
    /// `previous/<id>` goes back (the swapped-in datadir to `reverted/<id>`).
    Revert,
    /// A restore into a new, empty volume.
    Restore,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Swap => "swap",
            Kind::Revert => "revert",
            Kind::Restore => "restore",
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The datadir's entries go to `aside`. The datadir holds nothing of
    /// `incoming` yet, so whatever is left in it is still to move.
    MovingOut,
    /// `aside` holds the whole old datadir (durably); `incoming`'s entries
    /// go into the datadir. Whatever is left in `incoming` (but its own
    /// files) is still to move.
    MovingIn,
}

/// A begun exchange: everything a restarted `init` needs to finish it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub kind: Kind,
    pub operation_id: String,
    pub datadir: PathBuf,
    /// What comes in: its entries are moved into the datadir.
    pub incoming: PathBuf,
    /// Whether `incoming` is a prepared backup, whose apply-log files,
    /// redo, temporary tablespaces and `auto.cnf` stay behind.
    pub incoming_is_prepared: bool,
    /// Where the datadir's entries go.
    pub aside: PathBuf,
    /// Copy the replaced server's identity (`auto.cnf`, `mysqld-auto.cnf`,
    /// its generated keys) into the new datadir: an in-place restore keeps
    /// the server's UUID, persisted settings and certificates.
    pub keep_auto_cnf: bool,
    /// Removed once the exchange is done (the operation's staging folder,
    /// with the raw backup fetched into it).
    pub remove_after: Option<PathBuf>,
    pub gtid_executed: String,
    pub begun_at: SystemTime,
    pub phase: Phase,
}

/// A completed exchange.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub kind: Kind,
    pub operation_id: String,
    /// The journal's: tells this exchange's record from an older one's.
    pub begun_at: SystemTime,
    pub completed_at: SystemTime,
    /// Where the replaced datadir is kept; `None` when there was none.
    pub previous_datadir: Option<PathBuf>,
    /// The GTID set the swapped-in datadir holds.
    pub gtid_executed: String,
    pub moved_out: usize,
    pub moved_in: usize,
}

/// Writes `value` as `dir/name`, durably; creates `dir`.
pub fn write<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), FileError> {
    super::exchange::create_private_dir(dir)?;
    let mut text = serde_json::to_vec_pretty(value).expect("swap files serialise");
    text.push(b'\n');
    crate::meta::write_atomically(dir, name, &text).map_err(|e| match e {
        crate::meta::Error::Write { path, source } => FileError::at("write", &path, source),
        other => FileError::at(
            "write",
            &dir.join(name),
            std::io::Error::other(other.to_string()),
        ),
    })
}

/// Reads `path`; `None` when it does not exist.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, FileError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::at("read", path, e)),
    };
    serde_json::from_slice(&text).map(Some).map_err(|e| {
        FileError::at(
            "parse",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

/// Removes `dir/name` durably; absent is fine.
pub fn remove(dir: &Path, name: &str) -> Result<(), FileError> {
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => fileops::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::at("remove", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_absent_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let swap = dir.path().join("swap");
        let armed = Armed {
            operation_id: "r1".into(),
            prepared_dir: "/data/.innoxide-agent/staging/r1/backup/prepared".into(),
            gtid_executed: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".into(),
            armed_at: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(read::<Armed>(&swap.join(ARMED)).unwrap(), None);
        write(&swap, ARMED, &armed).unwrap();
        assert_eq!(read::<Armed>(&swap.join(ARMED)).unwrap(), Some(armed));
        remove(&swap, ARMED).unwrap();
        remove(&swap, ARMED).unwrap();
        assert!(!swap.join(ARMED).exists());
        std::fs::write(swap.join(JOURNAL), b"{").unwrap();
        let err = read::<Journal>(&swap.join(JOURNAL)).unwrap_err();
        assert!(err.to_string().contains("journal.json"), "{err}");
    }
}
