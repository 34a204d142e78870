//! The archive's index, `binlog-index.json`: which binlog files (and which
//! byte ranges of them, as segments) the archive holds, their GTID sets and
//! commit times, and the gaps found. It is the only source of truth: a
//! segment not named here does not exist. Pure data and rules; the
//! archiver and `fetch_for_replay` do the I/O. Layout and format:
//! docs/binlog-archive.md.

use serde::{Deserialize, Serialize};

use super::gtid_set::GtidSet;
use crate::repo::{Store, StoreError};

pub const INDEX: &str = "binlog-index.json";
pub const FORMAT_VERSION: u32 = 1;

/// A commit time: microseconds since the Unix epoch (UTC), as binlog GTID
/// events carry it; stored as RFC 3339 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitTime(pub u64);

impl CommitTime {
    pub fn now() -> CommitTime {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        CommitTime(since.as_micros() as u64)
    }

    pub fn to_datetime(self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    pub fn from_datetime(at: time::OffsetDateTime) -> CommitTime {
        CommitTime(u64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(0))
    }
}

impl std::fmt::Display for CommitTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self
            .to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for CommitTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CommitTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .map(CommitTime::from_datetime)
            .map_err(serde::de::Error::custom)
    }
}

/// One stored byte range of a binlog file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub path: String,
    pub start: u64,
    pub end: u64,
    /// SHA-256 of the original bytes.
    pub sha256: String,
    /// The stored form, when compressed or encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_sha256: Option<String>,
}

impl Segment {
    /// The stored object's name: offsets zero-padded so names sort by
    /// position, and the start of the bytes' SHA-256, so two different
    /// segments never share a name (a file name reused by a server of
    /// another history) while a retried one gets its old name back.
    pub fn path_for(server_uuid: &str, file: &str, start: u64, end: u64, sha256: &str) -> String {
        let short = sha256.get(..12).unwrap_or(sha256);
        format!("segments/{server_uuid}/{file}/{start:020}-{end:020}-{short}")
    }

    /// As a manifest file entry, so the repository's checked reader reads it.
    pub fn file_entry(&self) -> crate::meta::FileEntry {
        crate::meta::FileEntry {
            path: self.path.clone(),
            kind: crate::meta::FileKind::Binlog,
            original_path: None,
            size: self.end - self.start,
            sha256: self.sha256.clone(),
            stored_size: self.stored_size,
            stored_sha256: self.stored_sha256.clone(),
            space_id: None,
        }
    }
}

/// One binlog file of one server, as far as it is archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedFile {
    pub server_uuid: String,
    pub name: String,
    /// The file's Previous_gtids event: every transaction before it.
    pub previous_gtids: GtidSet,
    /// The transactions archived from it.
    pub gtids: GtidSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_event_time: Option<CommitTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_time: Option<CommitTime>,
    /// Bytes archived: the next segment starts here.
    pub size: u64,
    /// The whole file is archived; the server writes no more to it.
    pub complete: bool,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GapKind {
    /// Binlogs were purged from the server before they were archived.
    Purged,
    /// The server now archived (after a failover) lacks transactions the
    /// archive holds: the history does not continue.
    Diverged,
}

/// Transactions the archive can never hold, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub detected_at: CommitTime,
    pub kind: GapKind,
    pub missing: GtidSet,
    /// How many files the index held when the gap was found: the gap lies
    /// between `files[position - 1]` and `files[position]`.
    pub position: usize,
    /// The first file archived after the gap.
    pub before: String,
    pub server_uuid: String,
    pub message: String,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gap ({:?}) before {} of server {}: {} (missing {})",
            self.kind, self.before, self.server_uuid, self.message, self.missing
        )
    }
}

/// The window a restore can reach from the archive alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverableWindow {
    /// The earliest and latest commit time archived after the last gap.
    pub earliest: Option<CommitTime>,
    pub latest: Option<CommitTime>,
    /// Every transaction reachable by replay from a backup at or after the
    /// window's start: the history since the last gap.
    pub gtids: GtidSet,
    /// The transactions before the window (a base backup must hold them).
    pub base: GtidSet,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{location}/{INDEX} is not a binlog archive index: {problem}")]
    Invalid { location: String, problem: String },
    #[error(
        "{location}/{INDEX} was written by a newer Innoxide (format {found}, this one reads {FORMAT_VERSION})"
    )]
    TooNew { location: String, found: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveIndex {
    pub format_version: u32,
    /// Grows by one on every write (a second archiver is noticed).
    pub generation: u64,
    /// How segments are stored: `zstd` or none.
    pub compression: Option<String>,
    /// The public id of the key segments are encrypted with.
    pub key_id: Option<String>,
    /// When the archiver last had everything the server had logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caught_up_at: Option<CommitTime>,
    pub files: Vec<ArchivedFile>,
    pub gaps: Vec<Gap>,
}

impl ArchiveIndex {
    pub fn new(compression: Option<String>, key_id: Option<String>) -> ArchiveIndex {
        ArchiveIndex {
            format_version: FORMAT_VERSION,
            generation: 0,
            compression,
            key_id,
            caught_up_at: None,
            files: Vec::new(),
            gaps: Vec::new(),
        }
    }

    pub fn parse(text: &[u8], location: &str) -> Result<ArchiveIndex, IndexError> {
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let invalid = |e: serde_json::Error| IndexError::Invalid {
            location: location.to_owned(),
            problem: e.to_string(),
        };
        let version: Version = serde_json::from_slice(text).map_err(invalid)?;
        if version.format_version > FORMAT_VERSION {
            return Err(IndexError::TooNew {
                location: location.to_owned(),
                found: version.format_version,
            });
        }
        serde_json::from_slice(text).map_err(invalid)
    }

    /// The archive's index; None when there is no archive there yet.
    pub async fn load(store: &Store) -> Result<Option<ArchiveIndex>, IndexError> {
        match store.get(INDEX).await {
            Ok(bytes) => Self::parse(&bytes, &store.describe()).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the index (one atomic put), one generation on.
    pub async fn save(&mut self, store: &Store) -> Result<(), IndexError> {
        self.generation += 1;
        let text = serde_json::to_vec_pretty(self).map_err(|e| IndexError::Invalid {
            location: store.describe(),
            problem: e.to_string(),
        })?;
        store.put(INDEX, &text).await?;
        Ok(())
    }

    /// Every transaction the archive's history holds: the first file's
    /// Previous_gtids (what came before the archive: base backups' business)
    /// and every archived transaction.
    pub fn history(&self) -> GtidSet {
        let mut history = self
            .files
            .first()
            .map(|f| f.previous_gtids.clone())
            .unwrap_or_default();
        for file in &self.files {
            history.union_with(&file.gtids);
        }
        history
    }

    /// Every transaction archived (without the first file's predecessors).
    pub fn archived(&self) -> GtidSet {
        let mut set = GtidSet::new();
        for file in &self.files {
            set.union_with(&file.gtids);
        }
        set
    }

    /// The newest commit time archived.
    pub fn last_event_time(&self) -> Option<CommitTime> {
        self.files.iter().filter_map(|f| f.last_event_time).max()
    }

    /// What a restore can reach: the files after the last gap.
    pub fn recoverable_window(&self) -> RecoverableWindow {
        let start = self.gaps.iter().map(|g| g.position).max().unwrap_or(0);
        let files = &self.files[start.min(self.files.len())..];
        let mut gtids = GtidSet::new();
        for file in files {
            gtids.union_with(&file.gtids);
        }
        let base = files
            .first()
            .map(|f| f.previous_gtids.clone())
            .unwrap_or_default();
        RecoverableWindow {
            earliest: files.iter().filter_map(|f| f.first_event_time).min(),
            latest: files
                .iter()
                .filter_map(|f| f.last_event_time)
                .max()
                .max(self.caught_up_at),
            gtids: base.union(&gtids),
            base,
        }
    }

    /// The last file, when it is this server's: where archiving continues.
    pub fn tip(&self) -> Option<&ArchivedFile> {
        self.files.last()
    }

    /// Records a gap unless the same one is recorded already (a pass that
    /// failed after finding it finds it again).
    pub fn add_gap(&mut self, gap: Gap) -> bool {
        let known = self.gaps.iter().any(|g| {
            g.kind == gap.kind
                && g.missing == gap.missing
                && g.server_uuid == gap.server_uuid
                && g.before == gap.before
        });
        if !known {
            self.gaps.push(gap);
        }
        !known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "6f1c1a2e-0000-11ef-9d2f-0242ac120002";

    fn file(name: &str, previous: &str, gtids: &str, times: (u64, u64)) -> ArchivedFile {
        ArchivedFile {
            server_uuid: U.into(),
            name: name.into(),
            previous_gtids: previous.parse().unwrap(),
            gtids: gtids.parse().unwrap(),
            first_event_time: Some(CommitTime(times.0)),
            last_event_time: Some(CommitTime(times.1)),
            size: 1000,
            complete: true,
            segments: vec![Segment {
                path: Segment::path_for(U, name, 0, 1000, "00112233445566778899"),
                start: 0,
                end: 1000,
                sha256: "00112233445566778899".into(),
                stored_size: None,
                stored_sha256: None,
            }],
        }
    }

    #[test]
    fn round_trips_through_json_with_readable_times_and_sets() {
        let mut index = ArchiveIndex::new(Some("zstd".into()), None);
        index.files.push(file(
            "binlog.000001",
            &format!("{U}:1-5"),
            &format!("{U}:6-9"),
            (1_765_000_000_123_456, 1_765_000_001_000_000),
        ));
        let text = serde_json::to_string(&index).unwrap();
        assert!(text.contains("\"2025-12-06T05:46:40.123456Z\""), "{text}");
        assert!(text.contains(&format!("\"{U}:6-9\"")), "{text}");
        assert_eq!(ArchiveIndex::parse(text.as_bytes(), "x").unwrap(), index);
        assert_eq!(
            index.files[0].segments[0].path,
            "segments/6f1c1a2e-0000-11ef-9d2f-0242ac120002/binlog.000001/00000000000000000000-00000000000000001000-001122334455"
        );
    }

    #[test]
    fn history_starts_at_the_first_files_predecessors_and_the_window_after_the_last_gap() {
        let mut index = ArchiveIndex::new(None, None);
        index.files.push(file(
            "binlog.000001",
            &format!("{U}:1-5"),
            &format!("{U}:6-9"),
            (10, 20),
        ));
        index.files.push(file(
            "binlog.000003",
            &format!("{U}:1-20"),
            &format!("{U}:21-30"),
            (40, 50),
        ));
        assert_eq!(index.history().to_string(), format!("{U}:1-9:21-30"));
        assert!(index.add_gap(Gap {
            detected_at: CommitTime(45),
            kind: GapKind::Purged,
            missing: format!("{U}:10-20").parse().unwrap(),
            position: 1,
            before: "binlog.000003".into(),
            server_uuid: U.into(),
            message: "purged".into(),
        }));
        let again = index.gaps[0].clone();
        assert!(!index.add_gap(again));
        let window = index.recoverable_window();
        assert_eq!(window.earliest, Some(CommitTime(40)));
        assert_eq!(window.latest, Some(CommitTime(50)));
        assert_eq!(window.gtids.to_string(), format!("{U}:1-30"));
        assert_eq!(window.base.to_string(), format!("{U}:1-20"));
    }

    #[test]
    fn a_newer_format_is_refused_by_name() {
        let err = ArchiveIndex::parse(br#"{"format_version": 9}"#, "s3://b/p").unwrap_err();
        assert!(err.to_string().contains("newer Innoxide"), "{err}");
    }
}
