//! The crash-safe datadir swap: how a staged restore (or a restore into a
//! new volume) becomes the server's datadir while mysqld is down, and how
//! the replaced datadir comes back on request.
//!
//! - The agent service arms a swap ([`arm`]: `swap/armed.json`); the pod
//!   restarts; `innoxide-agent init` (the pod's init container, before
//!   mysqld) runs it ([`run_armed`]).
//! - A run writes its journal first; from then on it only rolls forward:
//!   the datadir's entries move (by rename, one per entry) to
//!   `previous/<id>`, the prepared datadir's entries into the datadir, then
//!   the record `swap/last.json`. A run killed at any point finishes when
//!   init runs again ([`exchange`]). mysqld starts only after init exits 0,
//!   so it never sees a half datadir.
//! - [`revert`] puts `previous/<id>` back the same way.
//!
//! Everything stays under the state dir, which lives *inside* the datadir
//! as `.innoxide-agent` (one volume in a StatefulSet). That is safe only
//! because it is a dot-directory: mysqld's startup tablespace scan walks the
//! datadir recursively and aborts on two files with the same tablespace id,
//! but skips hidden folders (measured on 9.7: copies of the .ibd files under
//! `<datadir>/.innoxide-agent/` are ignored, the same under
//! `<datadir>/innoxide-agent/` abort startup). agent/tests/swap.rs starts a
//! server with `previous/` in place.

mod discard;
pub mod exchange;
pub mod init;
pub mod journal;
mod live;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};

use crate::fileops::FileError;
use crate::prepare;
pub use discard::{Discarded, discard};
pub use journal::{Armed, Done, Journal, Kind};

/// The state dir's name inside the datadir; see the module doc for why it
/// must start with a dot.
pub const STATE_DIR_NAME: &str = ".innoxide-agent";
const LOST_FOUND: &str = "lost+found";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "a mysqld is running on {datadir}: {evidence}. The swap runs while mysqld is down \
         (the pod's init container); stop the server and run init again"
    )]
    ServerRunning { datadir: PathBuf, evidence: String },
    #[error(
        "{dir} is not a prepared datadir (apply-log did not finish there): stage the restore \
         again, then arm it"
    )]
    NotPrepared { dir: PathBuf },
    #[error(transparent)]
    Prepare(Box<prepare::Error>),
    #[error(transparent)]
    Restore(Box<crate::restore::Error>),
    #[error(transparent)]
    Backup(Box<crate::verify::Error>),
    #[error(
        "{a} and {b} are on different filesystems: the swap only renames, so the staged \
         datadir must be on the data volume (under the state dir)"
    )]
    CrossDevice { a: PathBuf, b: PathBuf },
    #[error("{path} exists: {advice}")]
    Exists { path: PathBuf, advice: String },
    #[error(
        "the swap of {armed} is armed; disarm it (DisarmSwap) before arming {requested}, or \
         restart the pod to run it"
    )]
    OtherArmed { armed: String, requested: String },
    #[error(
        "the swap of {0} has begun: a begun swap always finishes (run innoxide-agent init) and \
         cannot be disarmed or replaced"
    )]
    Begun(String),
    #[error(
        "the swap of {0} is armed: withdraw it (DisarmSwap) before discarding the datadir it \
         would swap in"
    )]
    StillArmed(String),
    #[error(
        "the backup in {dir} has files that lived outside the source's datadir ({example}): the \
         swap places one volume; restore it with copy-back"
    )]
    OutsideDatadir { dir: PathBuf, example: PathBuf },
    #[error(
        "nothing to revert to: {0} does not exist (no swap of this operation kept the old \
         datadir on this volume)"
    )]
    NoPrevious(PathBuf),
    #[error(
        "the datadir {0} is not empty and no restore with this operation_id was done on it: \
         refusing to restore over a datadir (nothing was touched). Restore into a new, empty \
         volume, or use a staged restore to replace a live one"
    )]
    NotEmpty(PathBuf),
}

impl From<prepare::Error> for Error {
    fn from(e: prepare::Error) -> Self {
        Error::Prepare(Box::new(e))
    }
}

impl From<crate::restore::Error> for Error {
    fn from(e: crate::restore::Error) -> Self {
        Error::Restore(Box::new(e))
    }
}

impl From<crate::verify::Error> for Error {
    fn from(e: crate::verify::Error) -> Self {
        Error::Backup(Box::new(e))
    }
}

/// Where a swap works: the datadir and the agent's state dir on the same
/// volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub datadir: PathBuf,
    pub state_dir: PathBuf,
}

impl Layout {
    /// `state_dir` defaults to `<datadir>/.innoxide-agent`.
    pub fn new(datadir: &Path, state_dir: Option<&Path>) -> Result<Layout, Error> {
        let absolute =
            |p: &Path| std::path::absolute(p).map_err(|e| FileError::at("resolve", p, e));
        let datadir = absolute(datadir)?;
        let state_dir = match state_dir {
            Some(dir) => absolute(dir)?,
            None => datadir.join(STATE_DIR_NAME),
        };
        Ok(Layout { datadir, state_dir })
    }

    /// For what touches only the state dir (arming, disarming, discarding):
    /// the service knows no datadir path of its own.
    fn state_only(state_dir: &Path) -> Layout {
        Layout {
            datadir: PathBuf::new(),
            state_dir: state_dir.to_owned(),
        }
    }

    pub fn swap_dir(&self) -> PathBuf {
        self.state_dir.join("swap")
    }

    pub fn done_dir(&self) -> PathBuf {
        self.swap_dir().join(journal::DONE_DIR)
    }

    pub fn done_path(&self, operation_id: &str) -> PathBuf {
        self.done_dir().join(exchange::done_name(operation_id))
    }

    /// Where a swap keeps the datadir it replaced.
    pub fn previous(&self, operation_id: &str) -> PathBuf {
        self.state_dir.join("previous").join(operation_id)
    }

    /// Where a revert puts the datadir it takes out.
    pub fn reverted(&self, operation_id: &str) -> PathBuf {
        self.state_dir.join("reverted").join(operation_id)
    }

    pub fn staging(&self, operation_id: &str) -> PathBuf {
        self.state_dir.join("staging").join(operation_id)
    }

    /// Entries of the datadir that are the volume's, not the server's:
    /// they stay where they are.
    pub fn keeps(&self, entry: &Path) -> bool {
        entry == self.state_dir || entry.file_name().is_some_and(|n| n == LOST_FOUND)
    }

    /// Whether the datadir holds nothing but what the volume keeps.
    pub fn datadir_is_empty(&self) -> Result<bool, Error> {
        Ok(exchange::entry_names(&self.datadir)?
            .iter()
            .all(|n| self.keeps(&self.datadir.join(n))))
    }

    fn lock(&self) -> Result<Flock<std::fs::File>, Error> {
        let dir = self.swap_dir();
        std::fs::create_dir_all(&dir).map_err(|e| FileError::at("create", &dir, e))?;
        let path = dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| FileError::at("open", &path, e))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::File(FileError::at("lock", &path, e.into())))
    }
}

/// The swap on this volume as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwapState {
    /// Armed or begun, not done.
    pub armed_operation_id: Option<String>,
    pub begun: bool,
    pub last: Option<Done>,
}

/// Reads the swap's state (no lock: each file is replaced whole).
pub fn state(state_dir: &Path) -> Result<SwapState, Error> {
    let swap = state_dir.join("swap");
    let journal = journal::read::<Journal>(&swap.join(journal::JOURNAL))?;
    let armed = journal::read::<Armed>(&swap.join(journal::ARMED))?;
    Ok(SwapState {
        begun: journal.is_some(),
        armed_operation_id: journal
            .map(|j| j.operation_id)
            .or(armed.map(|a| a.operation_id)),
        last: journal::read::<Done>(&swap.join(journal::LAST))?,
    })
}

/// Arms the swap of a prepared datadir for the next init. Arming the same
/// operation again is a no-op; another armed or begun one is refused.
pub fn arm(state_dir: &Path, armed: Armed) -> Result<SwapState, Error> {
    let layout = Layout::state_only(state_dir);
    let _lock = layout.lock()?;
    let now = state(state_dir)?;
    match &now.armed_operation_id {
        Some(id) if *id == armed.operation_id => return Ok(now),
        Some(id) if now.begun => return Err(Error::Begun(id.clone())),
        Some(id) => {
            return Err(Error::OtherArmed {
                armed: id.clone(),
                requested: armed.operation_id,
            });
        }
        None => {}
    }
    if !prepare::is_prepared(&armed.prepared_dir)? {
        return Err(Error::NotPrepared {
            dir: armed.prepared_dir,
        });
    }
    journal::write(&layout.swap_dir(), journal::ARMED, &armed)?;
    tracing::info!(operation_id = %armed.operation_id, prepared_dir = %armed.prepared_dir.display(), "swap armed");
    state(state_dir)
}

/// Withdraws an armed swap that has not begun; a no-op when nothing (or
/// another operation) is armed.
pub fn disarm(state_dir: &Path, operation_id: &str) -> Result<SwapState, Error> {
    let layout = Layout::state_only(state_dir);
    let _lock = layout.lock()?;
    let now = state(state_dir)?;
    if now.armed_operation_id.as_deref() != Some(operation_id) {
        return Ok(now);
    }
    if now.begun {
        return Err(Error::Begun(operation_id.to_owned()));
    }
    journal::remove(&layout.swap_dir(), journal::ARMED)?;
    tracing::info!(operation_id, "swap disarmed");
    state(state_dir)
}

/// What an init run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub done: Done,
    /// It finished an exchange a killed run had begun.
    pub resumed: bool,
}

/// Finishes a begun exchange, else runs the armed swap; `None` when there
/// is neither.
pub fn run_armed(layout: &Layout) -> Result<Option<Report>, Error> {
    let _lock = layout.lock()?;
    if let Some(report) = resume(layout)? {
        return Ok(Some(report));
    }
    let swap = layout.swap_dir();
    let Some(armed) = journal::read::<Armed>(&swap.join(journal::ARMED))? else {
        return Ok(None);
    };
    let id = &armed.operation_id;
    check_incoming(&armed.prepared_dir, layout)?;
    let journal = Journal {
        kind: Kind::Swap,
        operation_id: id.clone(),
        datadir: layout.datadir.clone(),
        incoming: armed.prepared_dir.clone(),
        incoming_is_prepared: true,
        aside: layout.previous(id),
        keep_auto_cnf: true,
        remove_after: staging_of(&armed.prepared_dir, id),
        gtid_executed: armed.gtid_executed.clone(),
        begun_at: SystemTime::now(),
        phase: journal::Phase::MovingOut,
    };
    begin(layout, journal).map(Some)
}

/// Puts `previous/<id>` back as the datadir; the datadir it replaces goes
/// to `reverted/<id>`. Done already (the last exchange was this revert) is
/// a no-op.
pub fn revert(layout: &Layout, operation_id: &str) -> Result<Report, Error> {
    let _lock = layout.lock()?;
    if let Some(report) = resume(layout)? {
        if report.done.operation_id == operation_id && report.done.kind == Kind::Revert {
            return Ok(report);
        }
        tracing::info!(operation_id = %report.done.operation_id, "finished the begun exchange first");
    }
    let previous = layout.previous(operation_id);
    if !previous.exists() {
        let last = journal::read::<Done>(&layout.swap_dir().join(journal::LAST))?;
        if let Some(done) =
            last.filter(|d| d.kind == Kind::Revert && d.operation_id == operation_id)
        {
            return Ok(Report {
                done,
                resumed: false,
            });
        }
        return Err(Error::NoPrevious(previous));
    }
    if let Some(armed) = journal::read::<Armed>(&layout.swap_dir().join(journal::ARMED))? {
        return Err(Error::OtherArmed {
            armed: armed.operation_id,
            requested: format!("the revert of {operation_id}"),
        });
    }
    refuse_live(layout, &[])?;
    same_filesystem(&layout.datadir, &previous)?;
    let journal = Journal {
        kind: Kind::Revert,
        operation_id: operation_id.to_owned(),
        datadir: layout.datadir.clone(),
        incoming: previous,
        incoming_is_prepared: false,
        aside: layout.reverted(operation_id),
        keep_auto_cnf: false,
        remove_after: None,
        gtid_executed: String::new(),
        begun_at: SystemTime::now(),
        phase: journal::Phase::MovingOut,
    };
    begin(layout, journal)
}

/// Places a prepared datadir into the empty datadir of a new volume,
/// without `auto.cnf` (a new server gets its own UUID).
pub fn place_restore(
    layout: &Layout,
    operation_id: &str,
    prepared_dir: &Path,
    gtid_executed: &str,
) -> Result<Report, Error> {
    let _lock = layout.lock()?;
    if let Some(report) = resume(layout)? {
        return Ok(report);
    }
    if !layout.datadir_is_empty()? {
        return Err(Error::NotEmpty(layout.datadir.clone()));
    }
    check_incoming(prepared_dir, layout)?;
    let journal = Journal {
        kind: Kind::Restore,
        operation_id: operation_id.to_owned(),
        datadir: layout.datadir.clone(),
        incoming: prepared_dir.to_owned(),
        incoming_is_prepared: true,
        aside: layout.previous(operation_id),
        keep_auto_cnf: false,
        remove_after: staging_of(prepared_dir, operation_id),
        gtid_executed: gtid_executed.to_owned(),
        begun_at: SystemTime::now(),
        phase: journal::Phase::MovingOut,
    };
    begin(layout, journal)
}

/// Whether an exchange has begun and not finished (read only: a refusal
/// must not even create the state dir).
pub fn has_begun(layout: &Layout) -> Result<bool, Error> {
    Ok(journal::read::<Journal>(&layout.swap_dir().join(journal::JOURNAL))?.is_some())
}

/// Whether a restore with this id was completed on this volume.
pub fn restore_done(layout: &Layout, operation_id: &str) -> Result<Option<Done>, Error> {
    Ok(journal::read::<Done>(&layout.done_path(operation_id))?.filter(|d| d.kind == Kind::Restore))
}

/// Finishes the exchange a killed run began, if there is one.
fn resume(layout: &Layout) -> Result<Option<Report>, Error> {
    let Some(journal) = journal::read::<Journal>(&layout.swap_dir().join(journal::JOURNAL))? else {
        return Ok(None);
    };
    tracing::warn!(operation_id = %journal.operation_id, kind = journal.kind.as_str(), phase = ?journal.phase, "an earlier run was interrupted: finishing it");
    refuse_live(layout, &[&journal.aside])?;
    let done = exchange::run(layout, journal)?;
    Ok(Some(Report {
        done,
        resumed: true,
    }))
}

fn begin(layout: &Layout, journal: Journal) -> Result<Report, Error> {
    refuse_existing(&journal.aside)?;
    exchange::failpoint("before-journal");
    journal::write(&layout.swap_dir(), journal::JOURNAL, &journal)?;
    exchange::failpoint("after-journal");
    tracing::info!(operation_id = %journal.operation_id, kind = journal.kind.as_str(), incoming = %journal.incoming.display(), aside = %journal.aside.display(), "exchange begun");
    let done = exchange::run(layout, journal)?;
    Ok(Report {
        done,
        resumed: false,
    })
}

/// A prepared datadir that can be renamed into this datadir.
fn check_incoming(prepared_dir: &Path, layout: &Layout) -> Result<(), Error> {
    if !prepare::is_prepared(prepared_dir)? {
        return Err(Error::NotPrepared {
            dir: prepared_dir.to_owned(),
        });
    }
    if let Some(backup_dir) = prepared_dir.parent() {
        let manifest = crate::verify::read_manifest(backup_dir)?;
        if let Some(example) = crate::restore::plan::original_paths(&manifest)
            .into_values()
            .next()
        {
            return Err(Error::OutsideDatadir {
                dir: backup_dir.to_owned(),
                example,
            });
        }
    }
    // Checked against apply-log's seal before anything moves.
    let files = crate::fileops::list_files(prepared_dir)?;
    prepare::sums::check(prepared_dir, &files).map_err(crate::restore::Error::from)?;
    refuse_live(layout, &[])?;
    same_filesystem(&layout.datadir, prepared_dir)?;
    std::fs::create_dir_all(&layout.state_dir)
        .map_err(|e| FileError::at("create", &layout.state_dir, e))?;
    same_filesystem(&layout.datadir, &layout.state_dir)
}

fn refuse_live(layout: &Layout, also: &[&Path]) -> Result<(), Error> {
    for dir in std::iter::once(layout.datadir.as_path()).chain(also.iter().copied()) {
        if let Some(evidence) = live::mysqld_evidence(dir)? {
            return Err(Error::ServerRunning {
                datadir: layout.datadir.clone(),
                evidence,
            });
        }
    }
    Ok(())
}

fn refuse_existing(aside: &Path) -> Result<(), Error> {
    if exchange::entry_names(aside)?.is_empty() {
        return Ok(());
    }
    Err(Error::Exists {
        path: aside.to_owned(),
        advice: "a datadir of an earlier exchange with this id is kept there; move it away \
                 (or delete it if it is not needed), then run init again"
            .into(),
    })
}

fn same_filesystem(a: &Path, b: &Path) -> Result<(), Error> {
    let device = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .map_err(|e| FileError::at("inspect", p, e))
    };
    if device(a)? != device(b)? {
        return Err(Error::CrossDevice {
            a: a.to_owned(),
            b: b.to_owned(),
        });
    }
    Ok(())
}

/// `<staging>/<id>` when the prepared dir is `<staging>/<id>/backup/prepared`
/// (where StageRestore puts it): removed after the swap, it holds the raw
/// backup too.
fn staging_of(prepared_dir: &Path, operation_id: &str) -> Option<PathBuf> {
    let staging = prepared_dir.parent()?.parent()?;
    (staging.file_name()? == operation_id).then(|| staging.to_owned())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::meta::{BackupType, Checkpoints};

    /// A folder that reads as apply-log's finished output.
    pub(in crate::swap) fn prepared(root: &Path, name: &str) -> PathBuf {
        let dir = root.join(name).join("backup/prepared");
        std::fs::create_dir_all(&dir).unwrap();
        let marker = Checkpoints {
            backup_type: BackupType::FullPrepared,
            from_lsn: 0,
            to_lsn: 1,
            last_lsn: 2,
            flushed_lsn: 2,
        };
        std::fs::write(dir.join(crate::meta::CHECKPOINTS), marker.render()).unwrap();
        dir
    }

    pub(in crate::swap) fn armed(id: &str, dir: &Path) -> Armed {
        Armed {
            operation_id: id.into(),
            prepared_dir: dir.to_owned(),
            gtid_executed: String::new(),
            armed_at: SystemTime::now(),
        }
    }

    #[test]
    fn one_swap_is_armed_at_a_time_and_a_begun_one_cannot_be_disarmed() {
        let volume = tempfile::tempdir().unwrap();
        let state_dir = volume.path().join(STATE_DIR_NAME);
        let (a, b) = (prepared(volume.path(), "a"), prepared(volume.path(), "b"));
        let raw = volume.path().join("raw");
        std::fs::create_dir_all(&raw).unwrap();
        assert!(matches!(
            arm(&state_dir, armed("r", &raw)),
            Err(Error::NotPrepared { .. })
        ));

        let now = arm(&state_dir, armed("a", &a)).unwrap();
        assert_eq!(now.armed_operation_id.as_deref(), Some("a"));
        assert_eq!(arm(&state_dir, armed("a", &a)).unwrap(), now);
        assert!(matches!(
            arm(&state_dir, armed("b", &b)),
            Err(Error::OtherArmed { .. })
        ));
        // Disarming what is not armed changes nothing.
        assert_eq!(disarm(&state_dir, "b").unwrap(), now);
        assert_eq!(disarm(&state_dir, "a").unwrap().armed_operation_id, None);
        arm(&state_dir, armed("b", &b)).unwrap();

        // init has begun b: it must finish, so disarm and re-arm are refused.
        let journal = Journal {
            kind: Kind::Swap,
            operation_id: "b".into(),
            datadir: volume.path().to_owned(),
            incoming: b.clone(),
            incoming_is_prepared: true,
            aside: state_dir.join("previous/b"),
            keep_auto_cnf: true,
            remove_after: None,
            gtid_executed: String::new(),
            begun_at: SystemTime::now(),
            phase: journal::Phase::MovingOut,
        };
        journal::write(&state_dir.join("swap"), journal::JOURNAL, &journal).unwrap();
        assert!(matches!(disarm(&state_dir, "b"), Err(Error::Begun(_))));
        assert!(matches!(
            arm(&state_dir, armed("a", &a)),
            Err(Error::Begun(_))
        ));
        let begun = state(&state_dir).unwrap();
        assert!(begun.begun && begun.armed_operation_id.as_deref() == Some("b"));
    }

    #[test]
    fn the_state_dir_and_lost_found_are_the_volumes_not_the_servers() {
        let layout = Layout::new(Path::new("/data"), None).unwrap();
        assert_eq!(layout.state_dir, Path::new("/data/.innoxide-agent"));
        assert!(layout.keeps(Path::new("/data/.innoxide-agent")));
        assert!(layout.keeps(Path::new("/data/lost+found")));
        assert!(!layout.keeps(Path::new("/data/ibdata1")));
        assert_eq!(
            staging_of(Path::new("/s/staging/r1/backup/prepared"), "r1"),
            Some(PathBuf::from("/s/staging/r1"))
        );
        assert_eq!(staging_of(Path::new("/elsewhere/prepared"), "r1"), None);
    }
}
