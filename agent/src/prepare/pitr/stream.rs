//! The binlog files a point-in-time replay reads, in order, with every
//! whole transaction in them: where it starts and ends, its GTID, when it
//! committed and which server wrote it. Scanned with the shared event
//! reader ([`crate::binlog::events`], mysql_common underneath), a window
//! at a time, so a binlog of a gigabyte never sits in memory whole.
//!
//! Also picks, among the files given, the ones that continue a backup:
//! the last file whose Previous_gtids the backup already holds starts the
//! stream, and each following file must start exactly where the one before
//! ended (its Previous_gtids = the earlier one's plus its transactions), or
//! the stream has a gap and is refused with the missing transactions named.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::binlog::events::{self, FileHeader};
use crate::binlog::{Gtid, GtidSet};

/// One whole transaction of a binlog file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// Byte offsets in its file: its GTID event, and the end of its last event.
    pub start: u64,
    pub end: u64,
    pub gtid: Gtid,
    /// The GTID event's original commit timestamp (microseconds since the
    /// epoch, UTC): when it committed on the server that first ran it,
    /// which is what a user means by "the time of the DROP TABLE", also
    /// when these binlogs are a replica's.
    pub committed_micros: u64,
    /// The server_id in its GTID event's header: the server that ran it.
    pub server_id: u32,
}

/// One binlog file of the stream.
#[derive(Debug, Clone)]
pub struct StreamFile {
    /// Its name on the source (`binlog.000007`): what `--stop-position`
    /// and the restored `xtrabackup_binlog_info` call it.
    pub name: String,
    /// The plain local file.
    pub path: PathBuf,
    /// Every transaction the server had logged before this file.
    pub previous_gtids: GtidSet,
    /// The first transaction boundary: right after the header events.
    pub header_end: u64,
    /// The end of the last whole event read; the file's bytes after it (a
    /// partly written event of a file still being written) are not used.
    pub end: u64,
    pub transactions: Vec<Txn>,
    /// Fetched for this replay (ours to move); otherwise the user's, copied.
    pub owned: bool,
}

impl StreamFile {
    pub fn gtids(&self) -> GtidSet {
        let mut set = GtidSet::new();
        for txn in &self.transactions {
            set.insert(&txn.gtid);
        }
        set
    }

    /// The byte offsets where a transaction may end or the next begin.
    pub fn boundaries(&self) -> Vec<u64> {
        let mut out = vec![self.header_end];
        out.extend(self.transactions.iter().map(|t| t.end));
        out.push(self.end);
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable binlog file: {problem}")]
    Bad { path: PathBuf, problem: String },
    #[error(
        "{dir} holds no binlog files{}",
        if want.is_empty() { String::new() } else { format!(" named {want}.NNNNNN") }
    )]
    NoFiles { dir: PathBuf, want: String },
    #[error(
        "{path} holds a transaction logged without a GTID: point-in-time replay needs \
         gtid_mode=ON on the source"
    )]
    Anonymous { path: PathBuf },
    #[error(
        "the binlogs start too late for this backup: the oldest one given, {first}, starts after \
         transactions the backup does not hold ({missing}); the binlogs between the backup and it \
         are missing (purged before they were saved?)"
    )]
    StartsAfterBackup { first: String, missing: String },
    #[error(
        "gap in the binlogs: {next} starts after transactions that neither it nor {previous} \
         holds ({missing}); a binlog file between them is missing"
    )]
    Gap {
        previous: String,
        next: String,
        missing: String,
    },
    #[error(
        "{next} does not continue {previous}: {previous} holds transactions {next}'s \
         Previous_gtids does not ({extra}); these binlogs are not one server's history"
    )]
    NotContinuous {
        previous: String,
        next: String,
        extra: String,
    },
}

/// How many bytes of a file are read at once; a transaction larger than
/// this is read in a window grown to hold it.
const WINDOW: usize = 8 << 20;

/// The header events of a local binlog file, and where they end.
fn read_header(path: &Path, file: &mut std::fs::File) -> Result<(FileHeader, u64), StreamError> {
    let io = |source| StreamError::Io {
        path: path.to_owned(),
        source,
    };
    let bad = |problem: String| StreamError::Bad {
        path: path.to_owned(),
        problem,
    };
    let length = file.metadata().map_err(io)?.len();
    // The header events are a few hundred bytes (Previous_gtids grows with
    // the number of source UUIDs).
    let mut head = vec![0u8; length.min(1 << 20) as usize];
    file.read_exact(&mut head).map_err(io)?;
    let header = events::read_file_header(&head)
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("it ends inside its header events".into()))?;
    let header_end = events::header_end(&head).map_err(|e| bad(e.to_string()))?;
    Ok((header, header_end))
}

/// The Previous_gtids of a local binlog file (its header only is read).
pub fn previous_gtids(path: &Path) -> Result<GtidSet, StreamError> {
    let mut file = std::fs::File::open(path).map_err(|source| StreamError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(read_header(path, &mut file)?.0.previous_gtids)
}

/// Reads one local binlog file: its header and every whole transaction.
pub fn scan_file(path: &Path, name: &str, owned: bool) -> Result<StreamFile, StreamError> {
    let io = |source| StreamError::Io {
        path: path.to_owned(),
        source,
    };
    let bad = |problem: String| StreamError::Bad {
        path: path.to_owned(),
        problem,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let length = file.metadata().map_err(io)?.len();
    let (header, header_end) = read_header(path, &mut file)?;

    let mut out = StreamFile {
        name: name.to_owned(),
        path: path.to_owned(),
        previous_gtids: header.previous_gtids.clone(),
        header_end,
        end: header_end,
        transactions: Vec::new(),
        owned,
    };
    let mut window = WINDOW;
    while out.end < length {
        file.seek(SeekFrom::Start(out.end)).map_err(io)?;
        let want = (length - out.end).min(window as u64) as usize;
        let mut bytes = vec![0u8; want];
        file.read_exact(&mut bytes).map_err(io)?;
        let scan = events::scan(&header.fde, &bytes, out.end).map_err(|e| bad(e.to_string()))?;
        for t in scan.transactions {
            let Some(gtid) = t.gtid else {
                return Err(StreamError::Anonymous {
                    path: path.to_owned(),
                });
            };
            out.transactions.push(Txn {
                start: t.start,
                end: t.end,
                gtid,
                committed_micros: t.original_commit_micros,
                server_id: t.server_id,
            });
        }
        if scan.end > out.end {
            out.end = scan.end;
            window = WINDOW;
        } else if want as u64 == length - out.end {
            // The rest of the file is a partly written event: stop before it.
            break;
        } else {
            // One transaction larger than the window: read more at once.
            window = window.saturating_mul(2);
        }
    }
    Ok(out)
}

/// The binlog files in `dir`, in the server's order (by their number):
/// files named `<base>.<digits>` that start with the binlog magic. With
/// several bases in the folder, `prefer_base` (the backup's) decides.
pub fn list_dir(dir: &Path, prefer_base: &str) -> Result<Vec<(String, PathBuf)>, StreamError> {
    let io = |source| StreamError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut found: Vec<(String, u64, String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((base, number)) = split_binlog_name(&name) else {
            continue;
        };
        let path = entry.path();
        if !path.is_file() || !starts_with_magic(&path) {
            continue;
        }
        found.push((base.to_owned(), number, name, path));
    }
    let bases: std::collections::BTreeSet<&str> = found.iter().map(|f| f.0.as_str()).collect();
    let base = if bases.contains(prefer_base) || bases.len() != 1 {
        prefer_base.to_owned()
    } else {
        bases
            .iter()
            .next()
            .map(|b| (*b).to_owned())
            .unwrap_or_default()
    };
    let mut files: Vec<_> = found.into_iter().filter(|f| f.0 == base).collect();
    if files.is_empty() {
        return Err(StreamError::NoFiles {
            dir: dir.to_owned(),
            want: base,
        });
    }
    files.sort_by_key(|f| f.1);
    Ok(files.into_iter().map(|f| (f.2, f.3)).collect())
}

/// `binlog.000007` → (`binlog`, 7).
pub fn split_binlog_name(name: &str) -> Option<(&str, u64)> {
    let (base, digits) = name.rsplit_once('.')?;
    if base.is_empty() || digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, digits.parse().ok()?))
}

fn starts_with_magic(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == events::MAGIC)
}

/// The files that continue a backup whose `gtid_executed` is `backup`,
/// from `files` in the server's order: from the last one whose
/// Previous_gtids the backup holds, each continuing the one before.
/// Files after a gap are refused, not dropped: a target past the gap
/// would otherwise be reported as merely "beyond the binlogs".
pub fn continuing(
    mut files: Vec<StreamFile>,
    backup: &GtidSet,
) -> Result<Vec<StreamFile>, StreamError> {
    let Some(start) = files
        .iter()
        .rposition(|f| f.previous_gtids.is_subset(backup))
    else {
        let Some(first) = files.first() else {
            // Nothing after the backup (an archive that holds no later file).
            return Ok(files);
        };
        return Err(StreamError::StartsAfterBackup {
            first: first.name.clone(),
            missing: first.previous_gtids.subtract(backup).to_string(),
        });
    };
    files.drain(..start);
    let mut through = GtidSet::new();
    for at in 0..files.len() {
        if at == 0 {
            through = files[0].previous_gtids.union(&files[0].gtids());
            continue;
        }
        let (head, tail) = files.split_at_mut(at);
        let (previous, next) = (&head[at - 1], &mut tail[0]);
        let missing = next.previous_gtids.subtract(&through);
        if !missing.is_empty() {
            return Err(StreamError::Gap {
                previous: previous.name.clone(),
                next: next.name.clone(),
                missing: missing.to_string(),
            });
        }
        let extra = through.subtract(&next.previous_gtids);
        if !extra.is_empty() {
            // After a failover: the new primary (a replica until then)
            // began this file before it had logged `extra`, and logs them
            // in it, replicated. Its copies are left out of the stream (the
            // applier's GTID auto-skip passes them in the relay log); any
            // other overlap is not one history.
            if !extra.is_subset(&next.gtids()) {
                return Err(StreamError::NotContinuous {
                    previous: previous.name.clone(),
                    next: next.name.clone(),
                    extra: extra.to_string(),
                });
            }
            next.transactions.retain(|t| !through.contains(&t.gtid));
        }
        through.union_with(&next.gtids());
    }
    Ok(files)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    pub fn set(text: &str) -> GtidSet {
        text.parse().unwrap()
    }

    pub fn gtid(gno: u64) -> Gtid {
        Gtid {
            tsid: crate::binlog::Tsid::untagged(U.parse().unwrap()),
            gno,
        }
    }

    /// A file whose transactions are `gnos`, 100 bytes each after a
    /// 200-byte header, one a second from `t0` seconds.
    pub fn file(
        name: &str,
        previous: &str,
        gnos: std::ops::RangeInclusive<u64>,
        t0: u64,
    ) -> StreamFile {
        let transactions: Vec<Txn> = gnos
            .enumerate()
            .map(|(i, gno)| Txn {
                start: 200 + 100 * i as u64,
                end: 300 + 100 * i as u64,
                gtid: gtid(gno),
                committed_micros: (t0 + i as u64) * 1_000_000,
                server_id: 1,
            })
            .collect();
        let end = transactions.last().map_or(200, |t| t.end);
        StreamFile {
            name: name.into(),
            path: PathBuf::from(name),
            previous_gtids: set(previous),
            header_end: 200,
            end,
            transactions,
            owned: false,
        }
    }

    #[test]
    fn binlog_names() {
        assert_eq!(split_binlog_name("binlog.000007"), Some(("binlog", 7)));
        assert_eq!(
            split_binlog_name("mysql-bin.1000000"),
            Some(("mysql-bin", 1_000_000))
        );
        assert_eq!(split_binlog_name("binlog.index"), None);
        assert_eq!(split_binlog_name("binlog.07"), None);
        assert_eq!(split_binlog_name(".000001"), None);
    }

    #[test]
    fn the_stream_starts_at_the_file_the_backup_ends_in() {
        let files = vec![
            file("b.000001", "", 1..=5, 0),
            file("b.000002", &format!("{U}:1-5"), 6..=10, 10),
            file("b.000003", &format!("{U}:1-10"), 11..=12, 20),
        ];
        let got = continuing(files.clone(), &set(&format!("{U}:1-7"))).unwrap();
        assert_eq!(
            got.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["b.000002", "b.000003"]
        );
        // A backup at a file's very end: that file still starts the stream
        // (its Previous_gtids is held), and the next one continues it.
        let got = continuing(files, &set(&format!("{U}:1-10"))).unwrap();
        assert_eq!(got[0].name, "b.000003");
    }

    #[test]
    fn a_missing_file_is_a_gap_named_by_its_transactions() {
        let files = vec![
            file("b.000001", "", 1..=5, 0),
            file("b.000003", &format!("{U}:1-10"), 11..=12, 20),
        ];
        let err = continuing(files, &set(&format!("{U}:1-3"))).unwrap_err();
        assert!(
            matches!(&err, StreamError::Gap { missing, .. } if *missing == format!("{U}:6-10")),
            "{err}"
        );
        let files = vec![file("b.000003", &format!("{U}:1-10"), 11..=12, 20)];
        let err = continuing(files, &set(&format!("{U}:1-3"))).unwrap_err();
        assert!(
            matches!(&err, StreamError::StartsAfterBackup { missing, .. } if *missing == format!("{U}:4-10")),
            "{err}"
        );
    }

    #[test]
    fn a_new_primarys_file_that_logs_the_old_ones_last_transactions_again_continues_it() {
        // The old primary wrote 1-10; the replica began r.000002 after 1-6
        // and logs 7-10 again (replicated), then its own 11-12 (one UUID
        // here for brevity).
        let mut replica = file("r.000002", &format!("{U}:1-6"), 7..=12, 30);
        let files = vec![
            file("b.000001", "", 1..=5, 0),
            file("b.000002", &format!("{U}:1-5"), 6..=10, 10),
            replica.clone(),
        ];
        let got = continuing(files, &set(&format!("{U}:1-3"))).unwrap();
        let gnos: Vec<u64> = got[2].transactions.iter().map(|t| t.gtid.gno).collect();
        assert_eq!(gnos, [11, 12], "the copies are left out");
        // A file that lacks some of them is not that history.
        replica.transactions.remove(0);
        let files = vec![file("b.000002", &format!("{U}:1-5"), 6..=10, 10), replica];
        let err = continuing(files, &set(&format!("{U}:1-5"))).unwrap_err();
        assert!(matches!(err, StreamError::NotContinuous { .. }), "{err}");
    }
}
