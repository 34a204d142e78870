//! Is a mysqld running on this datadir? The swap must never move files
//! under a live server.
//!
//! The reliable sign is InnoDB's own: a running mysqld holds a POSIX write
//! lock on `ibdata1` (and on every tablespace it opened; seen with F_GETLK
//! against a 9.7 server), and the kernel reports it to any process, in any
//! PID namespace, on the same node. A pid file at the top of the datadir
//! naming a live process whose command line says mysqld is the second
//! sign, for servers that do not lock (read-only instances). A stale pid
//! file is no sign: the pid may belong to anything now (in a fresh pod it
//! can be this very process).

use std::os::fd::AsFd;
use std::path::Path;

use nix::fcntl::{FcntlArg, fcntl};

use crate::fileops::FileError;

/// Why we think a mysqld runs on `dir`, or `None`.
pub fn mysqld_evidence(dir: &Path) -> Result<Option<String>, FileError> {
    if let Some(pid) = locker_of(&dir.join("ibdata1"))? {
        return Ok(Some(format!(
            "{} is locked by process {pid} (a running mysqld holds that lock)",
            dir.join("ibdata1").display()
        )));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::at("list", dir, e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pid") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && is_mysqld(pid) {
            return Ok(Some(format!(
                "{} names process {pid}, a running mysqld",
                path.display()
            )));
        }
    }
    Ok(None)
}

/// The process holding a lock that conflicts with a write lock on `file`.
fn locker_of(file: &Path) -> Result<Option<i32>, FileError> {
    let handle = match std::fs::File::open(file) {
        Ok(handle) => handle,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::at("open", file, e)),
    };
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(handle.as_fd(), FcntlArg::F_GETLK(&mut probe))
        .map_err(|e| FileError::at("probe the lock of", file, e.into()))?;
    Ok((probe.l_type != libc::F_UNLCK as libc::c_short).then_some(probe.l_pid))
}

fn is_mysqld(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("mysqld"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlocked_datadir_with_a_stale_pid_file_is_not_live() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ibdata1"), b"x").unwrap();
        // Our own pid: a fresh pod's init can be pid 1 and a stale file say 1.
        let own = format!("{}\n", std::process::id());
        std::fs::write(dir.path().join("host.pid"), own).unwrap();
        std::fs::write(dir.path().join("other.pid"), "not a pid").unwrap();
        assert_eq!(mysqld_evidence(dir.path()).unwrap(), None);
        assert_eq!(mysqld_evidence(&dir.path().join("missing")).unwrap(), None);
        // The positive case needs a real server: agent/tests/swap.rs.
    }
}
