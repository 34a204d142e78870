//! The Kubernetes operator of Innoxide: MySQLBackup, MySQLRestore and
//! MySQLBackupSchedule controllers driving the innoxide agent over gRPC + mTLS, and the wiring
//! that adds the agent to StatefulSets that opt in.
//!
//! Pure steps (no client) beside the I/O that uses them:
//! - `api`: the CRD types; `crd`: their YAML;
//! - `target`: which pod a backup runs on; `backup::{request, status,
//!   cleanup}`: the agent request, the status, the finalizer's decisions;
//! - `restore::{source, request, step}`: what is restored, the agent's
//!   request and the init container's spec, and what happens next;
//! - `schedule::{cron, plan}`: when runs are due, concurrency, retention;
//! - `archive::{plan, request}`: which agent archives the binlogs, and
//!   what retention prunes of them;
//! - `wiring::{patch, pki}`: what a StatefulSet needs for the agent, and
//!   the certificates;
//! - `leader`: who leads.
//!
//! I/O: `backup::controller`, `restore::controller`, `schedule::controller`
//! (with `archive::controller`), `wiring::controller`,
//! `agent` (gRPC + mTLS, behind the `AgentApi` trait), `run`.
#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod archive;
pub mod backup;
pub mod clock;
pub mod conditions;
pub mod context;
pub mod crd;
pub mod hash;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod restore;
pub mod run;
pub mod schedule;
pub mod secrets;
pub mod target;
pub mod units;
pub mod wiring;

#[cfg(test)]
mod fixtures;
