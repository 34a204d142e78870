//! What a restore leaves on the volume, removed when its owner says so
//! (the operator, when the MySQLRestore is deleted): the staging folder of
//! a restore that was never swapped in, the datadir a swap replaced
//! (`previous/<id>`, the way back), and the one a revert took out
//! (`reverted/<id>`). Each of those can be as large as the database.
//!
//! `previous/` and `reverted/` go by one rename into `discarding/` first, so
//! a removal cut short (agent killed, volume error) never leaves half a
//! datadir where a revert would take a whole one; whatever `discarding/`
//! still holds is removed by the next discard.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Error, Layout, state};
use crate::fileops::FileError;

const DISCARDING: &str = "discarding";

/// What a discard removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discarded {
    pub removed: Vec<PathBuf>,
    /// Disk space given back (allocated blocks, not apparent sizes).
    pub freed_bytes: u64,
}

/// Removes what restore `operation_id` left on the volume: its staging
/// folder (under `staging_dir`), `reverted/<id>`, and `previous/<id>`
/// unless `keep_previous`. Refused while its swap is armed or any exchange
/// has begun; nothing there is not an error.
pub fn discard(
    state_dir: &Path,
    staging_dir: &Path,
    operation_id: &str,
    keep_previous: bool,
) -> Result<Discarded, Error> {
    let layout = &Layout::state_only(state_dir);
    let _lock = layout.lock()?;
    let now = state(&layout.state_dir)?;
    if now.begun {
        return Err(Error::Begun(now.armed_operation_id.unwrap_or_default()));
    }
    if now.armed_operation_id.as_deref() == Some(operation_id) {
        return Err(Error::StillArmed(operation_id.to_owned()));
    }
    let trash = layout.state_dir.join(DISCARDING);
    let mut discarded = Discarded::default();
    // Left by a discard cut short: already out of the way, only garbage.
    discarded.freed_bytes += remove(&trash)?;

    let staging = staging_dir.join(operation_id);
    if staging.exists() {
        discarded.freed_bytes += remove(&staging)?;
        discarded.removed.push(staging);
    }
    let mut kept_for_revert = vec![layout.reverted(operation_id)];
    if !keep_previous {
        kept_for_revert.push(layout.previous(operation_id));
    }
    for dir in kept_for_revert {
        if !dir.exists() {
            continue;
        }
        std::fs::create_dir_all(&trash).map_err(|e| FileError::at("create", &trash, e))?;
        let parked = trash.join(
            dir.strip_prefix(&layout.state_dir)
                .unwrap_or(&dir)
                .to_string_lossy()
                .replace('/', "-"),
        );
        std::fs::rename(&dir, &parked).map_err(|e| FileError::at("rename", &dir, e))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        discarded.freed_bytes += remove(&parked)?;
        discarded.removed.push(dir);
    }
    remove(&trash)?;
    tracing::info!(operation_id, removed = ?discarded.removed, freed_bytes = discarded.freed_bytes, "restore leftovers discarded");
    Ok(discarded)
}

/// Removes a file tree, returning the space its files held; a missing
/// path is 0.
fn remove(path: &Path) -> Result<u64, Error> {
    let size = match allocated_bytes(path) {
        Ok(size) => size,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(FileError::at("measure", path, e).into()),
    };
    std::fs::remove_dir_all(path).map_err(|e| FileError::at("remove", path, e))?;
    Ok(size)
}

fn allocated_bytes(path: &Path) -> std::io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            total += allocated_bytes(&entry?.path())?;
        }
    }
    Ok(total)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| FileError::at("sync", dir, e).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swap::arm;
    use crate::swap::tests::{armed, prepared};

    struct Volume {
        _root: tempfile::TempDir,
        layout: Layout,
        staging: PathBuf,
    }

    fn volume() -> Volume {
        let root = tempfile::tempdir().unwrap();
        let datadir = root.path().join("data");
        let state_dir = datadir.join(super::super::STATE_DIR_NAME);
        std::fs::create_dir_all(&state_dir).unwrap();
        let layout = Layout {
            datadir,
            state_dir: state_dir.clone(),
        };
        Volume {
            staging: state_dir.join("staging"),
            _root: root,
            layout,
        }
    }

    fn fill(dir: &Path) {
        std::fs::create_dir_all(dir.join("mysql")).unwrap();
        std::fs::write(dir.join("ibdata1"), vec![7u8; 64 << 10]).unwrap();
        std::fs::write(dir.join("mysql/t.ibd"), vec![1u8; 16 << 10]).unwrap();
    }

    #[test]
    fn the_leftovers_of_a_restore_go_and_only_its_own() {
        let v = volume();
        for dir in [
            v.staging.join("r1"),
            v.layout.previous("r1"),
            v.layout.reverted("r1"),
            v.layout.previous("r0"),
        ] {
            fill(&dir);
        }
        let gone = discard(&v.layout.state_dir, &v.staging, "r1", false).unwrap();
        assert_eq!(gone.removed.len(), 3, "{gone:?}");
        assert!(gone.freed_bytes >= 3 * (80 << 10), "{gone:?}");
        assert!(!v.staging.join("r1").exists());
        assert!(!v.layout.previous("r1").exists());
        assert!(!v.layout.reverted("r1").exists());
        assert!(!v.layout.state_dir.join(DISCARDING).exists());
        // Another restore's way back is untouched.
        assert!(v.layout.previous("r0").join("ibdata1").exists());
        // Again: nothing left, nothing to do.
        assert_eq!(
            discard(&v.layout.state_dir, &v.staging, "r1", false).unwrap(),
            Discarded::default()
        );
    }

    #[test]
    fn the_previous_datadir_can_be_kept() {
        let v = volume();
        fill(&v.layout.previous("r1"));
        fill(&v.layout.reverted("r1"));
        let gone = discard(&v.layout.state_dir, &v.staging, "r1", true).unwrap();
        assert_eq!(gone.removed, vec![v.layout.reverted("r1")]);
        assert!(v.layout.previous("r1").join("ibdata1").exists());
    }

    #[test]
    fn an_armed_swap_keeps_its_staged_datadir() {
        let v = volume();
        let prepared = prepared(&v.staging, "r1");
        arm(&v.layout.state_dir, armed("r1", &prepared)).unwrap();
        let refused = discard(&v.layout.state_dir, &v.staging, "r1", false).unwrap_err();
        assert!(matches!(refused, Error::StillArmed(_)), "{refused}");
        assert!(refused.to_string().contains("DisarmSwap"), "{refused}");
        assert!(prepared.join(crate::meta::CHECKPOINTS).exists());
    }

    #[test]
    fn a_discard_cut_short_is_finished_by_the_next() {
        let v = volume();
        let parked = v.layout.state_dir.join(DISCARDING).join("previous-r0");
        fill(&parked);
        let gone = discard(&v.layout.state_dir, &v.staging, "r9", false).unwrap();
        assert!(gone.removed.is_empty());
        assert!(gone.freed_bytes > 0);
        assert!(!v.layout.state_dir.join(DISCARDING).exists());
    }
}
