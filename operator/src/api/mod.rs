//! The custom resources of `innoxide.dev/v1alpha1`, as Rust types: the
//! schema the API server enforces (OpenAPI + CEL rules) is derived from
//! them, and `crdgen` prints it. No Kubernetes I/O here.
//!
//! - [`MySQLBackup`]: one backup, with an immutable spec;
//! - [`MySQLRestore`]: one restore of a backup into a StatefulSet, in
//!   place or into a new one's empty volumes;
//! - [`MySQLBackupSchedule`]: makes MySQLBackups on a cron schedule and
//!   applies retention to them.

mod backup;
mod common;
mod restore;
mod schedule;
mod storage;

pub use backup::*;
pub use common::*;
pub use restore::*;
pub use schedule::*;
pub use storage::*;

/// The API group of Innoxide's custom resources.
pub const API_GROUP: &str = "innoxide.dev";
/// The API version until the API settles.
pub const API_VERSION: &str = "v1alpha1";
