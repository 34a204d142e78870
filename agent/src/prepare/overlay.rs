//! Rebuilds the InnoDB tablespaces of a backup chain (a full backup and
//! its incrementals, in order) as raw pages, ready for one crash recovery
//! with the redo of the chain's last backup only.
//!
//! # Why this is exact
//!
//! Name the backups B0 (full) … Bn, and S_k the checkpoint LSN from which
//! Bk captured redo (its `start_checkpoint_lsn`). Bk's redo copier starts
//! at S_k, a checkpoint already written, and its data copy starts after
//! that: every page Bk reads holds every change whose mini-transaction
//! started below S_k (a checkpoint at S_k means no page with an older
//! change is still dirty). Recovery from S_k needs exactly that of each
//! page: it applies a record only when the record starts at or after the
//! page's LSN, so a page that already holds later changes is not harmed.
//!
//! Incremental Bk copies every page whose on-disk LSN is at or above
//! S_{k-1}, the *base's start checkpoint* (not the base's to_lsn, which
//! XtraBackup uses because it replays every backup's redo in turn; we do
//! not). Claim: after the overlay of B0 … Bk every page holds every change
//! that started below S_k. By induction on k:
//! - a page in Bk's delta (or in a whole file of Bk) was read after S_k:
//!   it holds them;
//! - a page not in it had, when Bk read it, an LSN below S_{k-1}. That
//!   image held every change started below S_k, so none of those ended
//!   after S_{k-1}: the page was not changed in [S_{k-1}, S_k). What we
//!   hold from B0 … B{k-1} holds every change started below S_{k-1}
//!   (induction), hence every change started below S_k.
//!
//! So the pages of the overlay are as good as a full backup's at Bn, and
//! Bn's own redo, from S_n to its last_lsn, finishes them exactly as
//! apply-log finishes a full backup. No LSN is remapped and the redo of
//! B0 … B{n-1} is never needed, so a chain is as long to recover as a
//! single backup and the redo capacity of the source never matters.
//!
//! What else must hold, and how it does:
//! - **The file set** is Bn's, from its tablespace list (read under the
//!   backup lock): a space id Bn does not list was dropped (or truncated,
//!   which gives a new id) and is left out; a space id under a new path was
//!   renamed and is rebuilt under the new path; a space id new since the
//!   base was copied whole (CREATE, TRUNCATE, a rebuilding ALTER, and undo
//!   truncation, which gives the same file name a new id without redo). The
//!   result never has two files with one space id. Pages a delta does not
//!   cover keep what the chain held before; where a file was recreated
//!   under an id seen before (undo ids cycle through a range), those are
//!   pages the new file has not written, i.e. free pages, which InnoDB
//!   initialises from redo before any use and never reads as they are.
//! - **File sizes** follow each backup in turn: after each delta the file is
//!   cut or extended to the size that backup read. Pages past the old end
//!   that were never written are zero, as on the source; pages written
//!   there carry a new LSN and are in the delta.
//! - **Pages written without redo** (sorted index builds, INDEX_LOAD)
//!   during a backup's copy are waited for by the backup lock (or, with
//!   `--lock-ddl=reduced`, their file is copied again under it); one
//!   that ran between backups flushed its pages with a current LSN before
//!   it committed, so the next backup's scan sees them at or above S_{k-1}.
//!   (The base's start checkpoint, not its consistent point, is the line: a
//!   bulk load right after the base's copy is still caught.)
//! - **File operations** inside Bn's own redo range are those of a full
//!   backup taken at Bn, with the same limits.
//! - Every page read is validated and torn reads are re-read, as in a full
//!   backup; every stored file is checked against its manifest before use.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Error, check_bytes, decode_file};
use crate::fileops::{self, FileError};
use crate::meta::{self, FileEntry, FileKind, Manifest};

/// One backup of a chain: its folder and manifest.
#[derive(Debug, Clone)]
pub struct Member {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// How one tablespace of the chain's last backup is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuild {
    /// Path in the rebuilt datadir.
    pub path: String,
    pub space_id: u32,
    /// The chain member holding the file whole, and its path there.
    pub whole: (usize, String),
    /// Deltas applied on top, in chain order: member, path of the
    /// `.delta`, the size to cut or extend to afterwards.
    pub deltas: Vec<(usize, String, u64)>,
    pub size: u64,
}

/// Plans the rebuild of every tablespace of the chain's last backup. Pure.
pub fn plan(chain: &[Member]) -> Result<Vec<Rebuild>, Error> {
    let (first, rest) = chain
        .split_first()
        .expect("a chain starts with a full backup");
    let spaces = first.manifest.tablespaces().ok_or_else(|| {
        Error::Chain(format!(
            "{} does not record its tablespace ids (taken by an older innoxide-agent)",
            first.dir.display()
        ))
    })?;
    let mut state: BTreeMap<(u32, String), Rebuild> = spaces
        .into_iter()
        .map(|t| {
            (
                t.key(),
                Rebuild {
                    path: t.path.clone(),
                    space_id: t.space_id,
                    whole: (0, t.path),
                    deltas: Vec::new(),
                    size: t.size,
                },
            )
        })
        .collect();
    for (index, member) in rest.iter().enumerate() {
        let index = index + 1;
        let incremental = member.manifest.incremental.as_ref().ok_or_else(|| {
            Error::Chain(format!(
                "{} is not an incremental backup",
                member.dir.display()
            ))
        })?;
        let mut next = BTreeMap::new();
        for t in &incremental.tablespaces {
            let rebuild = if t.delta {
                let mut held = state.remove(&t.key()).ok_or_else(|| {
                    Error::Chain(format!(
                        "{} holds changed pages of space {} ({}), which the backups before it do \
                         not hold",
                        member.dir.display(),
                        t.space_id,
                        t.path
                    ))
                })?;
                held.deltas
                    .push((index, format!("{}{}", t.path, meta::DELTA_SUFFIX), t.size));
                held.path = t.path.clone();
                held.size = t.size;
                held
            } else {
                Rebuild {
                    path: t.path.clone(),
                    space_id: t.space_id,
                    whole: (index, t.path.clone()),
                    deltas: Vec::new(),
                    size: t.size,
                }
            };
            if next.insert(t.key(), rebuild).is_some() {
                return Err(Error::Chain(format!(
                    "{} lists space {} twice",
                    member.dir.display(),
                    t.space_id
                )));
            }
        }
        // Spaces it does not list were dropped (or truncated: a new id).
        state = next;
    }
    let mut rebuilds: Vec<Rebuild> = state.into_values().collect();
    rebuilds.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(rebuilds)
}

/// Builds every planned tablespace under `into`. Blocking.
pub fn build(
    chain: &[Member],
    into: &Path,
    key: Option<&crate::repo::Key>,
    stop: &AtomicBool,
) -> Result<OverlayReport, Error> {
    let mut report = OverlayReport::default();
    for rebuild in plan(chain)? {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Cancelled {
                dir: into.to_owned(),
            });
        }
        let to = into.join(&rebuild.path);
        let (origin, path) = &rebuild.whole;
        let member = &chain[*origin];
        place_whole(member, path, key, &to)?;
        report.files += 1;
        for (index, delta_path, size) in &rebuild.deltas {
            report.pages +=
                apply_delta(&chain[*index], delta_path, rebuild.space_id, key, &to, into)?;
            let file = OpenOptions::new()
                .write(true)
                .open(&to)
                .map_err(|e| FileError::at("open", &to, e))?;
            file.set_len(*size)
                .map_err(|e| FileError::at("resize", &to, e))?;
            report.deltas += 1;
        }
        let file = File::open(&to).map_err(|e| FileError::at("open", &to, e))?;
        file.sync_all().map_err(|e| FileError::at("sync", &to, e))?;
    }
    Ok(report)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverlayReport {
    pub files: usize,
    pub deltas: usize,
    pub pages: u64,
}

fn entry<'a>(member: &'a Member, path: &str) -> Result<&'a FileEntry, Error> {
    member.manifest.file(path).ok_or_else(|| Error::Unlisted {
        path: member.dir.join(path),
    })
}

/// The file as its backup stored it, checked against the manifest.
fn place_whole(
    member: &Member,
    path: &str,
    key: Option<&crate::repo::Key>,
    to: &Path,
) -> Result<(), Error> {
    let entry = entry(member, path)?;
    let from = member.dir.join(path);
    if entry.stored_sha256.is_some() {
        return decode_file(&member.dir, entry, key, to);
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| FileError::at("create", parent, e))?;
    }
    fileops::copy_file(&from, to)?;
    check_bytes(entry, &from, to)
}

/// Writes the pages of one delta into `to`; returns how many.
fn apply_delta(
    member: &Member,
    path: &str,
    space_id: u32,
    key: Option<&crate::repo::Key>,
    to: &Path,
    work: &Path,
) -> Result<u64, Error> {
    let entry = entry(member, path)?;
    if entry.kind != FileKind::Delta {
        return Err(Error::Chain(format!(
            "{} is listed as {:?}, not as a delta",
            member.dir.join(path).display(),
            entry.kind
        )));
    }
    let stored = member.dir.join(path);
    // A compressed or encrypted delta is decoded (and checked) first; a
    // plain one is checked where it is.
    let decoded = work.join(".innoxide-delta.decoded");
    let source = if entry.stored_sha256.is_some() {
        decode_file(&member.dir, entry, key, &decoded)?;
        decoded.clone()
    } else {
        check_bytes(entry, &stored, &stored)?;
        stored.clone()
    };
    let target = OpenOptions::new()
        .write(true)
        .open(to)
        .map_err(|e| FileError::at("open", to, e))?;
    let input = File::open(&source).map_err(|e| FileError::at("read", &source, e))?;
    let mut pages = 0u64;
    let result = meta::delta::read(
        std::io::BufReader::with_capacity(1 << 20, input),
        |page_no, image| {
            pages += 1;
            target.write_all_at(image, u64::from(page_no) * image.len() as u64)
        },
    );
    let _ = std::fs::remove_file(&decoded);
    let (header, _) = result.map_err(|e| {
        Error::Chain(format!(
            "{}: {e}; the incremental is damaged",
            stored.display()
        ))
    })?;
    if header.space_id != space_id {
        return Err(Error::Chain(format!(
            "{} holds pages of space {}, the manifest says {space_id}",
            stored.display(),
            header.space_id
        )));
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{BaseRef, ChangedPages, Incremental, RedoRange, Tablespace};

    fn manifest(files: Vec<FileEntry>, incremental: Option<Vec<Tablespace>>) -> Manifest {
        Manifest {
            format_version: 1,
            tool: "t".into(),
            tool_version: "0".into(),
            backup_type: "x".into(),
            server_version: "9.7.4".into(),
            server_uuid: "u".into(),
            server_id: 1,
            page_size: 16384,
            redo: RedoRange {
                start_checkpoint_lsn: 0,
                from_lsn: 0,
                to_lsn: 0,
                last_lsn: 0,
                captured_bytes: 0,
            },
            binlog_file: String::new(),
            binlog_position: 0,
            gtid_executed: String::new(),
            source_datadir: "/d".into(),
            source_undo_directory: "/d".into(),
            compression: None,
            encryption: None,
            encryption_key_id: None,
            started_at: String::new(),
            finished_at: String::new(),
            lock_seconds: 0.0,
            files,
            page_tracking_lsn: None,
            incremental: incremental.map(|tablespaces| Incremental {
                method: ChangedPages::FullScan,
                since_lsn: 1,
                base: BaseRef {
                    location: "b".into(),
                    backup_id: "s".into(),
                    backup_type: "full-backuped".into(),
                    start_checkpoint_lsn: 0,
                    to_lsn: 0,
                    last_lsn: 0,
                    gtid_executed: String::new(),
                },
                tablespaces,
            }),
        }
    }

    fn file(path: &str, space_id: u32) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind: FileKind::Tablespace,
            original_path: None,
            size: 65536,
            sha256: String::new(),
            stored_size: None,
            stored_sha256: None,
            space_id: Some(space_id),
        }
    }

    fn space(path: &str, space_id: u32, delta: bool) -> Tablespace {
        Tablespace {
            path: path.into(),
            kind: FileKind::Tablespace,
            space_id,
            size: 98304,
            original_path: None,
            delta,
        }
    }

    fn member(manifest: Manifest) -> Member {
        Member {
            dir: "/b".into(),
            manifest,
        }
    }

    #[test]
    fn drops_renames_truncations_and_new_spaces_follow_the_last_backup() {
        let full = manifest(
            vec![
                file("db/kept.ibd", 10),
                file("db/dropped.ibd", 11),
                file("db/old_name.ibd", 12),
                file("db/truncated.ibd", 13),
            ],
            None,
        );
        let inc1 = manifest(
            vec![],
            Some(vec![
                space("db/kept.ibd", 10, true),
                space("db/new_name.ibd", 12, true),
                space("db/truncated.ibd", 20, false),
                space("db/created.ibd", 21, false),
            ]),
        );
        let inc2 = manifest(
            vec![],
            Some(vec![
                space("db/kept.ibd", 10, true),
                space("db/new_name.ibd", 12, true),
                space("db/truncated.ibd", 20, true),
                space("db/created.ibd", 21, true),
            ]),
        );
        let plan = plan(&[member(full), member(inc1), member(inc2)]).unwrap();
        let by_path: BTreeMap<&str, &Rebuild> = plan.iter().map(|r| (r.path.as_str(), r)).collect();
        assert_eq!(
            by_path.keys().copied().collect::<Vec<_>>(),
            vec![
                "db/created.ibd",
                "db/kept.ibd",
                "db/new_name.ibd",
                "db/truncated.ibd"
            ]
        );
        let renamed = by_path["db/new_name.ibd"];
        assert_eq!(renamed.whole, (0, "db/old_name.ibd".to_owned()));
        assert_eq!(
            renamed.deltas,
            vec![
                (1, "db/new_name.ibd.delta".to_owned(), 98304),
                (2, "db/new_name.ibd.delta".to_owned(), 98304)
            ]
        );
        let truncated = by_path["db/truncated.ibd"];
        assert_eq!(truncated.space_id, 20);
        assert_eq!(truncated.whole, (1, "db/truncated.ibd".to_owned()));
        assert_eq!(truncated.deltas.len(), 1);
    }

    #[test]
    fn a_delta_of_a_space_the_chain_does_not_hold_is_refused() {
        let full = manifest(vec![file("db/a.ibd", 10)], None);
        let inc = manifest(vec![], Some(vec![space("db/b.ibd", 99, true)]));
        let err = plan(&[member(full), member(inc)]).unwrap_err();
        assert!(err.to_string().contains("space 99"), "{err}");
    }
}
