//! Binary logs for point-in-time recovery: GTID sets, binlog event helpers
//! (parsed with mysql_common), and the archive of a server's binlogs in a
//! repository (docs/binlog-archive.md).

pub mod events;
pub mod gtid_set;

pub use gtid_set::{Gtid, GtidError, GtidSet, Tsid, Uuid};
