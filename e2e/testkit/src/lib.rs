//! Test support for Innoxide: throwaway MySQL 9.7 servers on loopback, sysbench
//! load against them, and an in-process S3 server with fault injection.
//!
//! Everything here runs real software: the MySQL binaries come from the test bed
//! that `scripts/testbed.sh` installs (see `/work/shared/TESTBED.md`), sysbench is
//! the Debian package, and the S3 server is `s3s-fs` (which checks SigV4
//! signatures) served by hyper on `127.0.0.1:0`.
//!
//! Servers clean up after themselves: dropping a [`MysqlServer`] kills its
//! process (also while a test panics), and every start sweeps servers left
//! behind by test processes that died without running `Drop` (see
//! [`sweep_orphans`]).

mod gtid;
mod mysql;
pub mod oracle;
mod registry;
mod s3;
mod sysbench;
mod testbed;

/// The MySQL driver the servers' helpers use, for tests that need more.
pub use mysql_async;

pub use gtid::gtid_count;
pub use mysql::{MysqlBuilder, MysqlServer};
pub use registry::{SweptServer, pid_is_running, runs_dir, sweep_orphans, sweep_orphans_in};
pub use s3::{Fault, FaultCounts, RequestRecord, S3Faults, S3Server};
pub use sysbench::{Sysbench, SysbenchReport, SysbenchRun, Workload};
pub use testbed::{cache_dir, mysql_prefix};
