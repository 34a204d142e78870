//! One exchange of datadirs, driven by its journal and resumable at every
//! point: move the datadir's entries aside, then the incoming entries in,
//! then the small fixups, then the record; every step is a rename or a
//! write that, repeated after a crash, finds its work done or finishes it.
//!
//! Why it always rolls forward: the incoming datadir was complete and
//! verified before the journal was written, and entries only ever move by
//! rename on one filesystem, so each is in exactly one place. Going back
//! would need the same moves in reverse; going forward needs the rest.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::journal::{self, Done, Journal, Phase};
use super::{Error, Layout};
use crate::fileops::{self, FileError};
use crate::restore::plan;

/// Test hook, never set in production: `INNOXIDE_SWAP_ABORT_AT=<point>`
/// kills this process with SIGKILL (as an OOM kill or a node failure would)
/// when the exchange reaches that point, so tests can restart `init` from
/// there. Points: `before-journal`, `after-journal`, `move-out-<n>` (after
/// the n-th entry moved aside), `between-phases`, `move-in-<n>`,
/// `before-record`, `before-cleanup`.
pub const ABORT_AT_ENV: &str = "INNOXIDE_SWAP_ABORT_AT";

pub fn failpoint(point: &str) {
    if std::env::var(ABORT_AT_ENV).is_ok_and(|p| p == point) {
        eprintln!("{ABORT_AT_ENV}={point}: killing this process (test hook)");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Runs (or finishes) the exchange `journal` describes; the journal is on
/// disk already. Removes the journal when done.
pub fn run(layout: &Layout, mut journal: Journal) -> Result<Done, Error> {
    let swap_dir = layout.swap_dir();
    let already = journal::read::<Done>(&layout.done_path(&journal.operation_id))?
        .filter(|d| d.kind == journal.kind && d.begun_at == journal.begun_at);
    let done = match already {
        // Recorded before a crash: only the cleanup is left.
        Some(done) => done,
        None => {
            if journal.phase == Phase::MovingOut {
                let kept = |name: &OsString| layout.keeps(&journal.datadir.join(name));
                move_entries(&journal.datadir, &journal.aside, |n| !kept(n), "move-out")?;
                sync_if_there(&journal.aside)?;
                fileops::sync_dir(&journal.datadir)?;
                failpoint("between-phases");
                journal.phase = Phase::MovingIn;
                journal::write(&swap_dir, journal::JOURNAL, &journal)?;
            }
            let prepared = journal.incoming_is_prepared;
            move_entries(
                &journal.incoming,
                &journal.datadir,
                |name| !(prepared && plan::is_left_out(Path::new(name), true)),
                "move-in",
            )?;
            fix_up(layout, &journal)?;
            sync_if_there(&journal.incoming)?;
            if !prepared {
                // All of it moved: the empty folder goes too (rmdir refuses
                // if anything is left), so "previous/<id> exists" keeps
                // meaning "there is a datadir to go back to".
                remove_empty_dir(&journal.incoming)?;
            }
            fileops::sync_dir(&journal.datadir)?;
            failpoint("before-record");
            let done = Done {
                kind: journal.kind,
                operation_id: journal.operation_id.clone(),
                begun_at: journal.begun_at,
                completed_at: SystemTime::now(),
                previous_datadir: journal.aside.exists().then(|| journal.aside.clone()),
                gtid_executed: journal.gtid_executed.clone(),
                moved_out: count_entries(&journal.aside)?,
                moved_in: count_entries(&journal.datadir)? - kept_count(layout, &journal.datadir)?,
            };
            journal::write(&layout.done_dir(), &done_name(&done.operation_id), &done)?;
            journal::write(&swap_dir, journal::LAST, &done)?;
            done
        }
    };
    failpoint("before-cleanup");
    if let Some(dir) = &journal.remove_after
        && let Err(e) = remove_dir_if_there(dir)
    {
        // The swap is done; only space is lost. Say so and go on.
        tracing::warn!(error = %e, "cannot remove the staging folder; remove it by hand");
    }
    let armed = journal::read::<journal::Armed>(&swap_dir.join(journal::ARMED))?;
    if armed.is_some_and(|a| a.operation_id == journal.operation_id) {
        journal::remove(&swap_dir, journal::ARMED)?;
    }
    journal::remove(&swap_dir, journal::JOURNAL)?;
    Ok(done)
}

pub fn done_name(operation_id: &str) -> String {
    format!("{operation_id}.json")
}

/// Renames every entry of `from` that `take` accepts into `to` (created
/// when there is one to move). Missing `from` has nothing left to move.
fn move_entries(
    from: &Path,
    to: &Path,
    take: impl Fn(&OsString) -> bool,
    point: &str,
) -> Result<usize, Error> {
    let names: Vec<OsString> = entry_names(from)?.into_iter().filter(|n| take(n)).collect();
    if names.is_empty() {
        return Ok(0);
    }
    create_private_dir(to)?;
    for (i, name) in names.iter().enumerate() {
        let (source, target) = (from.join(name), to.join(name));
        if target.symlink_metadata().is_ok() {
            return Err(Error::Exists {
                path: target,
                advice: format!(
                    "it is in the way of {} and nothing is ever overwritten; move one of them \
                     away by hand (the journal in the state dir says what the swap does), then \
                     run init again",
                    source.display()
                ),
            });
        }
        std::fs::rename(&source, &target)
            .map_err(|e| FileError::new("move", &source, &target, e))?;
        tracing::debug!(from = %source.display(), to = %target.display(), "moved");
        failpoint(&format!("{point}-{}", i + 1));
    }
    // What moved, for the pod's log; a datadir has one entry per schema,
    // so a long list is cut.
    const SHOWN: usize = 40;
    let shown: Vec<_> = names
        .iter()
        .take(SHOWN)
        .map(|n| n.to_string_lossy())
        .collect();
    tracing::info!(
        from = %from.display(),
        to = %to.display(),
        count = names.len(),
        entries = %shown.join(" "),
        more = names.len().saturating_sub(SHOWN),
        "moved"
    );
    Ok(names.len())
}

/// What an in-place restore keeps of the server it replaces: not data but
/// who the server is — its UUID (`auto.cnf`), its `SET PERSIST` settings
/// (`mysqld-auto.cnf`) and the TLS and RSA keys mysqld generated for itself,
/// which clients may have pinned.
const SERVER_IDENTITY: [&str; 10] = [
    plan::AUTO_CNF,
    "mysqld-auto.cnf",
    "ca.pem",
    "ca-key.pem",
    "server-cert.pem",
    "server-key.pem",
    "client-cert.pem",
    "client-key.pem",
    "private_key.pem",
    "public_key.pem",
];

/// What a prepared datadir lacks and the server needs, and what the
/// datadir keeps of the server it replaces.
fn fix_up(layout: &Layout, journal: &Journal) -> Result<(), Error> {
    if journal.incoming_is_prepared {
        // Left out with the mini instance's redo: mysqld creates fresh redo
        // files at its first start, in a folder that must exist.
        create_private_dir(&journal.datadir.join(plan::REDO_DIR))?;
    }
    if journal.keep_auto_cnf {
        for name in SERVER_IDENTITY {
            let kept = journal.aside.join(name);
            if !kept.is_file() {
                continue;
            }
            // A copy, not a move: previous/ stays a whole datadir to revert to.
            let temporary = journal.datadir.join(format!(".{name}.innoxide"));
            let _ = std::fs::remove_file(&temporary);
            fileops::copy_file(&kept, &temporary)?;
            let target = journal.datadir.join(name);
            std::fs::rename(&temporary, &target)
                .map_err(|e| FileError::new("move", &temporary, &target, e))?;
        }
    }
    // Renames keep owners: files staged by the agent become mysqld's.
    if let Some((uid, gid)) = crate::restore::target_owner(&journal.datadir)? {
        for name in entry_names(&journal.datadir)? {
            let path = journal.datadir.join(&name);
            if !layout.keeps(&path) {
                crate::restore::chown_tree(&path, uid, gid)?;
            }
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents (0750, as mysqld makes its
/// datadir) and makes each new entry durable in its parent: a rename into
/// a folder that a crash forgets is a rename lost.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::DirBuilderExt;
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| FileError::at("create", dir, e))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            fileops::sync_dir(parent)?;
        }
    }
    Ok(())
}

/// The names in `dir`, sorted; none when it does not exist.
pub fn entry_names(dir: &Path) -> Result<Vec<OsString>, FileError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FileError::at("list", dir, e)),
    };
    let mut names = entries
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FileError::at("list", dir, e))?;
    names.sort();
    Ok(names)
}

fn count_entries(dir: &Path) -> Result<usize, FileError> {
    Ok(entry_names(dir)?.len())
}

fn kept_count(layout: &Layout, dir: &Path) -> Result<usize, FileError> {
    Ok(entry_names(dir)?
        .iter()
        .filter(|n| layout.keeps(&dir.join(n)))
        .count())
}

fn sync_if_there(dir: &Path) -> Result<(), FileError> {
    if dir.exists() {
        fileops::sync_dir(dir)?;
        if let Some(parent) = dir.parent() {
            fileops::sync_dir(parent)?;
        }
    }
    Ok(())
}

fn remove_empty_dir(dir: &Path) -> Result<(), FileError> {
    match std::fs::remove_dir(dir) {
        Ok(()) => dir.parent().map_or(Ok(()), fileops::sync_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::at("remove", dir, e)),
    }
}

fn remove_dir_if_there(dir: &PathBuf) -> Result<(), FileError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::at("remove", dir, e)),
    }
}
