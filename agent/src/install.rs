//! `innoxide-agent install DIR`: copies this executable into DIR.
//!
//! The operator's init container runs it from the agent image to put the
//! agent into a volume shared with the MySQL container's image (which runs
//! it as the sidecar, so apply-log has the source's exact mysqld). The agent
//! image needs no shell or `cp`: a distroless or scratch image works.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The name the binary gets in DIR.
pub const BINARY_NAME: &str = "innoxide-agent";

/// Copies the running executable to `dir/innoxide-agent` (mode 0755) so that
/// a reader sees the whole binary or none: written beside, synced, renamed.
pub fn install(dir: &Path) -> anyhow::Result<PathBuf> {
    let source = std::env::current_exe().context("finding this executable")?;
    install_from(&source, dir)
}

fn install_from(source: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join(BINARY_NAME);
    let partial = dir.join(format!(".{BINARY_NAME}.partial"));
    let mut from =
        std::fs::File::open(source).with_context(|| format!("reading {}", source.display()))?;
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    std::io::copy(&mut from, &mut file)
        .and_then(|_| file.flush())
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", partial.display()))?;
    drop(file);
    std::fs::rename(&partial, &target)
        .with_context(|| format!("moving {} to {}", partial.display(), target.display()))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_whole_executable_and_replaces_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::write(&source, b"\x7fELF new agent").unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join(BINARY_NAME), b"old agent").unwrap();

        let installed = install_from(&source, &bin).unwrap();
        assert_eq!(std::fs::read(&installed).unwrap(), b"\x7fELF new agent");
        let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let names: Vec<_> = std::fs::read_dir(&bin)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [BINARY_NAME], "nothing else is left in the folder");
    }

    #[test]
    fn a_missing_source_says_which_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = install_from(&dir.path().join("gone"), dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("gone"), "{err:#}");
    }
}
