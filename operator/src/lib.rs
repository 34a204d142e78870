//! The Kubernetes operator: MySQLBackup and MySQLBackupSchedule controllers
//! driving the innoxide agent over gRPC + mTLS.
#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod backup;
pub mod clock;
pub mod conditions;
pub mod crd;
pub mod target;
pub mod units;
pub mod wiring;

#[cfg(test)]
mod fixtures;
