//! copy-back / move-back: puts a prepared backup (`D/prepared/`, made by
//! apply-log) into the datadir of a stopped server.
//!
//! - Only a prepared backup: a raw one is refused with "run apply-log first".
//! - Only an intact one: every prepared file is checked against apply-log's
//!   seal ([`prepare::sums`]); a damaged one leaves the datadir as it was
//!   (move-back checks before its first rename, copy-back while it copies,
//!   taking back all it placed when the check fails).
//! - Only into an empty or absent datadir, unless forced; even forced, no
//!   existing file is ever overwritten.
//! - Files go where the source had them ([`plan`]); `#innodb_redo` is
//!   created empty (mysqld makes fresh redo at its first start).
//! - `auto.cnf` (the source's server UUID) is kept for an in-place restore
//!   and dropped with `--new-server-uuid`, so a clone gets its own UUID.
//! - The restored tree gets the owner of the datadir (or, when it did not
//!   exist, of its parent folder): mysqld runs as that user.
//! - move-back renames the prepared files (copy + remove across
//!   filesystems) and then removes what is left of `D/prepared/`: the raw
//!   backup is untouched, so apply-log can prepare it again.
//! - Files are placed `--parallel` at a time, large ones in ranges, all or
//!   nothing ([`place`]): a failed copy-back takes back what it placed.

pub mod place;
pub mod plan;

use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

use crate::fileops::{self, FileError};
use crate::prepare::{self, ApplyLogOptions};

pub use plan::{Placement, Plan, TargetLayout};

#[derive(Debug, Clone)]
pub struct CopyBackOptions {
    pub backup_dir: PathBuf,
    pub datadir: PathBuf,
    pub force_non_empty: bool,
    pub new_server_uuid: bool,
    pub move_files: bool,
    /// Where the target server keeps system and undo tablespaces.
    pub layout: TargetLayout,
    /// Files (or ranges of large files) copied at once.
    pub parallel: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{dir} is a raw backup: run apply-log first (innoxide-agent apply-log --backup-dir {dir}), \
         or use copy-back-and-apply-log"
    )]
    NotPrepared { dir: PathBuf },
    #[error(
        "{dir} is not prepared: an earlier apply-log did not finish ({partial} is what it left); \
         run apply-log --force, then copy-back"
    )]
    PrepareUnfinished { dir: PathBuf, partial: PathBuf },
    #[error(transparent)]
    Backup(#[from] crate::verify::Error),
    #[error(transparent)]
    Prepare(#[from] prepare::Error),
    #[error(transparent)]
    Damaged(#[from] prepare::sums::SumsError),
    #[error(
        "{damage}; copy-back could not take back what it had placed ({left}): remove those \
         files before restoring again"
    )]
    NotTakenBack {
        damage: prepare::sums::SumsError,
        left: String,
    },
    #[error(
        "the datadir {0} is not empty: restore into an empty or new folder (or pass --force to add \
         to it; existing files are never overwritten)"
    )]
    NotEmpty(PathBuf),
    #[error(
        "{0} exists already: copy-back never overwrites a file (it lived outside the datadir on the \
         source and goes back to the same place); move it away"
    )]
    TargetExists(PathBuf),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Place(#[from] place::PlaceError),
    #[error("cannot give {path} to uid {uid} gid {gid}: {source}")]
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
        source: nix::Error,
    },
}

/// What copy-back did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyBackReport {
    pub datadir: PathBuf,
    pub files: usize,
    pub reflinked: usize,
    pub copied: usize,
    pub renamed: usize,
    pub owner: Option<(u32, u32)>,
}

#[tracing::instrument(name = "copy_back", skip_all, fields(backup = %options.backup_dir.display(), datadir = %options.datadir.display()))]
pub async fn copy_back(options: &CopyBackOptions) -> Result<CopyBackReport, Error> {
    let prepared = prepared_source(&options.backup_dir)?;
    let manifest = crate::verify::read_manifest(&options.backup_dir)?;
    let datadir = absolute(&options.datadir)?;
    let owner = target_owner(&datadir)?;
    if !options.force_non_empty && !fileops::is_absent_or_empty(&datadir)? {
        return Err(Error::NotEmpty(datadir));
    }
    let files = fileops::list_files(&prepared)?;
    // Every prepared file is checked against apply-log's seal, and a
    // damaged one changes nothing. move-back checks before its first
    // rename (the renames take away the files the check reads); copy-back
    // checks while it copies, both reading the same bytes from the page
    // cache, and takes back everything it placed when a file is damaged.
    let (checked, list) = (prepared.clone(), files.clone());
    let check = tokio::task::spawn_blocking(move || prepare::sums::check(&checked, &list));
    let check_alongside = if options.move_files {
        check.await.expect("the check task does not panic")?;
        None
    } else {
        Some(check)
    };
    // A datadir rebuilt from a chain holds the files of its last backup.
    let mut manifest = manifest;
    if let Some(chain) = prepare::incremental::read_chain(&prepared)? {
        manifest.files = chain.files;
    }
    let plan = plan::plan(
        &files,
        &plan::targets(&manifest, &datadir, &options.layout),
        &datadir,
        options.new_server_uuid,
    );
    if let Some(taken) = plan
        .placements
        .iter()
        .find(|p| p.to.symlink_metadata().is_ok())
    {
        return Err(Error::TargetExists(taken.to.clone()));
    }

    let redo = datadir.join(plan::REDO_DIR);
    let new_dirs = place::missing_folders_with(&plan, &[&datadir, &redo]);
    let plan = std::sync::Arc::new(plan);
    let (options, source) = (options.clone(), prepared.clone());
    let (target, placing) = (datadir.clone(), plan.clone());
    let placed =
        tokio::task::spawn_blocking(move || place_all(&options, &source, &target, &placing, owner))
            .await
            .expect("the copy task does not panic");
    if let Some(check) = check_alongside
        && let Err(damaged) = check.await.expect("the check task does not panic")
    {
        if placed.is_ok() {
            let left = place::take_back(&plan, &new_dirs);
            if !left.is_empty() {
                return Err(Error::NotTakenBack {
                    damage: damaged,
                    left: left.join(", "),
                });
            }
        }
        return Err(damaged.into());
    }
    let report = placed?;
    tracing::info!(
        files = report.files,
        reflinked = report.reflinked,
        copied = report.copied,
        renamed = report.renamed,
        "restored"
    );
    Ok(report)
}

/// apply-log (unless the backup is prepared already), then copy-back.
pub async fn copy_back_and_apply_log(
    options: &CopyBackOptions,
    mysqld: Option<PathBuf>,
) -> Result<CopyBackReport, Error> {
    let datadir = absolute(&options.datadir)?;
    // Refuse before the (long) apply-log, not after it.
    if !options.force_non_empty && !fileops::is_absent_or_empty(&datadir)? {
        return Err(Error::NotEmpty(datadir));
    }
    let apply = ApplyLogOptions {
        key: None,
        backup_dir: options.backup_dir.clone(),
        mysqld,
        force: false,
        buffer_pool: DEFAULT_BUFFER_POOL,
    };
    prepare::apply_log(&apply, tokio_util::sync::CancellationToken::new()).await?;
    copy_back(options).await
}

/// apply-log's `--use-memory` default.
const DEFAULT_BUFFER_POOL: u64 = 256 << 20;

/// `D/prepared`, or why there is none.
fn prepared_source(backup_dir: &Path) -> Result<PathBuf, Error> {
    let prepared = prepare::prepared_dir(backup_dir);
    if prepare::is_prepared(&prepared)? {
        return Ok(prepared);
    }
    // Not a backup at all says so first.
    crate::verify::read_manifest(backup_dir)?;
    let partial = backup_dir.join(prepare::PARTIAL_DIR);
    if partial.exists() {
        return Err(Error::PrepareUnfinished {
            dir: backup_dir.to_owned(),
            partial,
        });
    }
    Err(Error::NotPrepared {
        dir: backup_dir.to_owned(),
    })
}

fn place_all(
    options: &CopyBackOptions,
    prepared: &Path,
    datadir: &Path,
    plan: &Plan,
    owner: Option<(Uid, Gid)>,
) -> Result<CopyBackReport, Error> {
    create_private_dir(datadir)?;
    let placed = place::place_all(plan, prepared, options.move_files, options.parallel.max(1))?;
    let report = CopyBackReport {
        datadir: datadir.to_owned(),
        files: plan.placements.len(),
        reflinked: placed.reflinked,
        copied: placed.copied,
        renamed: placed.renamed,
        owner: owner.map(|(u, g)| (u.as_raw(), g.as_raw())),
    };
    let redo = datadir.join(plan::REDO_DIR);
    create_private_dir(&redo)?;
    if let Some((uid, gid)) = owner {
        chown_tree(datadir, uid, gid)?;
        for placement in plan.outside(datadir) {
            chown(&placement.to, uid, gid)?;
        }
    }
    for dir in folders_of(plan, datadir) {
        fileops::sync_dir(&dir)?;
    }
    if options.move_files {
        // What is left is apply-log's output minus the data: drop it so the
        // backup reads as raw again (apply-log can rebuild it from there).
        std::fs::remove_dir_all(prepared).map_err(|e| FileError::at("remove", prepared, e))?;
    }
    Ok(report)
}

/// Creates `dir` (and missing parents) as mysqld does its datadir: 0750.
fn create_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| FileError::at("create", dir, e).into())
}

/// Every folder that received a file, plus the datadir itself.
fn folders_of(plan: &Plan, datadir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = plan
        .placements
        .iter()
        .filter_map(|p| p.to.parent().map(Path::to_owned))
        .chain([datadir.to_owned()])
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Whom the restored files belong to: the datadir's owner if it exists
/// (a packaged /var/lib/mysql is mysql:mysql), else its parent's. `None`
/// when we are not root: then every file we create is ours anyway, and we
/// could not give it away.
pub(crate) fn target_owner(datadir: &Path) -> Result<Option<(Uid, Gid)>, Error> {
    use std::os::unix::fs::MetadataExt;
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let reference = if datadir.exists() {
        datadir.to_owned()
    } else {
        datadir
            .ancestors()
            .skip(1)
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"))
            .to_owned()
    };
    let meta =
        std::fs::metadata(&reference).map_err(|e| FileError::at("inspect", &reference, e))?;
    Ok(Some((Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid()))))
}

/// Gives `root` and, when it is a folder, everything below it to uid:gid.
pub(crate) fn chown_tree(root: &Path, uid: Uid, gid: Gid) -> Result<(), Error> {
    chown(root, uid, gid)?;
    if !root.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| FileError::at("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| FileError::at("list", &dir, e))?;
            let path = entry.path();
            chown(&path, uid, gid)?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            }
        }
    }
    Ok(())
}

fn chown(path: &Path, uid: Uid, gid: Gid) -> Result<(), Error> {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(uid),
        Some(gid),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|source| Error::Chown {
        path: path.to_owned(),
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        source,
    })
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| FileError::at("resolve", path, e).into())
}
