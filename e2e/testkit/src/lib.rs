//! Test support for Innoxide: throwaway MySQL 9.7 servers on loopback, sysbench
//! load against them, an in-process S3 server with fault injection, and a
//! Kubernetes API (a real apiserver for our custom resources, an in-memory
//! fake for the core ones) and a kubelet stand-in that runs pods in podman
//! ([`kubelet`]).
//!
//! Everything here runs real software: the MySQL binaries come from the test bed
//! that `scripts/testbed.sh` installs (see `/work/shared/TESTBED.md`), sysbench is
//! the Debian package, and the S3 server is `s3s-fs` (which checks SigV4
//! signatures) served by hyper on `127.0.0.1:0`. The Kubernetes API is
//! `apiextensions-apiserver` + etcd that `scripts/kube-apiserver.sh` builds
//! from Debian sid (see [`kube_api`]).
//!
//! Servers clean up after themselves: dropping a [`MysqlServer`] or a
//! [`KubeApi`] kills its processes (also while a test panics), and every start
//! sweeps servers left behind by test processes that died without running
//! `Drop` (see [`sweep_orphans`]).

pub mod azurite;
#[cfg(feature = "cluster")]
pub mod cluster;
mod gtid;
pub mod kube_api;
pub mod kubelet;
pub mod mirror;
mod mysql;
pub mod oracle;
pub mod orphan;
pub mod pod_security;
mod registry;
mod s3;
mod sysbench;
mod testbed;

/// The MySQL driver the servers' helpers use, for tests that need more.
pub use mysql_async;

pub use azurite::AzuriteServer;
#[cfg(feature = "cluster")]
pub use cluster::{
    Cluster, ClusterBuilder, PodDeleted, PodDeletedHook, PodFate, PodMysql, PodRunHook, PodStart,
    PodStartHook, Pods,
};
pub use gtid::gtid_count;
pub use kube_api::KubeApi;
pub use kubelet::{Kubelet, RunningPod, stateful_set_pod};
pub use mysql::{MysqlBuilder, MysqlServer};
pub use registry::{SweptServer, pid_is_running, runs_dir, sweep_orphans, sweep_orphans_in};
pub use s3::{Fault, FaultCounts, RequestRecord, S3Faults, S3Server};
pub use sysbench::{Sysbench, SysbenchReport, SysbenchRun, Workload};
pub use testbed::{azurite_prefix, cache_dir, containers_prefix, kube_api_prefix, mysql_prefix};
