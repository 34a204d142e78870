//! The relay log the mini instance's applier reads: copies of the source's
//! binlog files under the replay channel's relay log names, the last one
//! cut at the target transaction's end. The applier cannot go past what is
//! not there, so the stop is exact however many workers apply in parallel
//! (an UNTIL clause stops the coordinator, not transactions already handed
//! to workers, and needs a single-threaded applier to be exact).
//!
//! The user's files are copied (reflinked where the filesystem can), never
//! moved or cut; files fetched from an archive for this replay are moved.

use std::path::{Path, PathBuf};

use super::stream::StreamFile;
use super::target::RelaySpan;
use crate::fileops::{self, FileError};

/// The replication channel replay runs: a name of its own, so a backup of
/// a replica keeps its own channels (the default one too) untouched.
pub const CHANNEL: &str = "innoxide_replay";
/// `relay_log` of the mini instance, in the relay folder: the channel's
/// files are `relay-innoxide_replay.NNNNNN` (the server adds the channel).
const BASENAME: &str = "relay";

/// The relay folder as the mini instance is configured with it.
#[derive(Debug, Clone)]
pub struct RelayLog {
    pub dir: PathBuf,
    /// The channel's files, in order (absolute).
    pub files: Vec<PathBuf>,
}

impl RelayLog {
    /// `relay_log` (an absolute basename).
    pub fn basename(dir: &Path) -> PathBuf {
        dir.join(BASENAME)
    }

    /// `relay_log_index`.
    pub fn index(dir: &Path) -> PathBuf {
        dir.join(format!("{BASENAME}.index"))
    }

    fn channel_file(dir: &Path, number: usize) -> PathBuf {
        dir.join(format!("{BASENAME}-{CHANNEL}.{number:06}"))
    }

    fn channel_index(dir: &Path) -> PathBuf {
        dir.join(format!("{BASENAME}-{CHANNEL}.index"))
    }
}

/// Puts stream files `span.first..=span.last` into `dir` (created, must
/// not exist) as the channel's relay log, the last one cut at `span.end`,
/// and writes the channel's relay log index.
pub fn stage(files: &[StreamFile], span: RelaySpan, dir: &Path) -> Result<RelayLog, FileError> {
    std::fs::create_dir(dir).map_err(|e| FileError::at("create", dir, e))?;
    let mut staged = Vec::new();
    for (n, file) in files[span.first..=span.last].iter().enumerate() {
        let to = RelayLog::channel_file(dir, n + 1);
        if file.owned {
            fileops::move_file(&file.path, &to)?;
        } else {
            fileops::copy_file(&file.path, &to)?;
        }
        // The copy ends where the scan did (a partly written last event of
        // an active file is left out), the last one at the target.
        let end = if n + span.first == span.last {
            span.end
        } else {
            file.end
        };
        let out = std::fs::OpenOptions::new()
            .write(true)
            .open(&to)
            .map_err(|e| FileError::at("open", &to, e))?;
        out.set_len(end).map_err(|e| FileError::at("cut", &to, e))?;
        staged.push(to);
    }
    let index: String = staged
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    let index_path = RelayLog::channel_index(dir);
    std::fs::write(&index_path, index).map_err(|e| FileError::at("write", &index_path, e))?;
    Ok(RelayLog {
        dir: dir.to_owned(),
        files: staged,
    })
}

#[cfg(test)]
mod tests {
    use super::super::stream::tests::file;
    use super::*;

    #[test]
    fn files_are_copied_under_the_channels_names_and_the_last_is_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let mut files = vec![
            file("b.000001", "", 1..=2, 0),
            file("b.000002", "", 3..=5, 0),
            file("b.000003", "", 6..=6, 0),
        ];
        for f in &mut files {
            f.path = tmp.path().join(&f.name);
            // A partly written event after the scanned end.
            std::fs::write(&f.path, vec![7u8; f.end as usize + 10]).unwrap();
        }
        let relay = tmp.path().join("relay");
        let span = RelaySpan {
            first: 0,
            last: 1,
            end: 400,
        };
        let log = stage(&files, span, &relay).unwrap();
        let names: Vec<_> = log
            .files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "relay-innoxide_replay.000001",
                "relay-innoxide_replay.000002"
            ]
        );
        assert_eq!(std::fs::metadata(&log.files[0]).unwrap().len(), 400);
        assert_eq!(std::fs::metadata(&log.files[1]).unwrap().len(), 400);
        // The user's files are as they were.
        assert_eq!(std::fs::metadata(&files[1].path).unwrap().len(), 510);
        let index = std::fs::read_to_string(relay.join("relay-innoxide_replay.index")).unwrap();
        assert_eq!(index.lines().count(), 2);
        assert!(index.starts_with(&relay.display().to_string()));
    }
}
