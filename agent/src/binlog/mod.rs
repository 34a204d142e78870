//! Binary logs for point-in-time recovery: GTID sets, binlog event helpers
//! (parsed with mysql_common), and the archive of a server's binlogs in a
//! repository (docs/binlog-archive.md).

pub mod archive;
pub mod archive_fetch;
pub mod archive_index;
pub mod archive_plan;
pub mod archive_prune;
pub mod events;
pub mod gtid_set;

pub use archive::{
    ArchiveError, ArchiveOptions, ArchiveReport, ArchiveStatus, StatusSnapshot, Stop,
    archive_binlogs,
};
pub use archive_fetch::{FetchError, ReplayTarget, fetch_for_replay, plan_replay};
pub use archive_index::{ArchiveIndex, ArchivedFile, CommitTime, Gap, GapKind, RecoverableWindow};
pub use archive_prune::{PruneError, PruneReport, prune_archive};
pub use gtid_set::{Gtid, GtidError, GtidSet, Tsid, Uuid};
