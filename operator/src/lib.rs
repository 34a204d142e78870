//! The Kubernetes operator: MySQLBackup, MySQLRestore and
//! MySQLBackupSchedule controllers driving the agent over gRPC + mTLS.
//!
//! Not built yet: this crate so far only pins the Kubernetes dependencies
//! the operator is designed around, so the workspace builds them from day
//! one. The controllers come with the operator issues.
#![forbid(unsafe_code)]

/// The API group of Innoxide's custom resources.
pub const API_GROUP: &str = "innoxide.dev";
/// The API version until the API settles.
pub const API_VERSION: &str = "v1alpha1";

/// The Kubernetes types the operator builds on; re-exported so the
/// dependency is exercised by the build.
pub use k8s_openapi::api::apps::v1::StatefulSet;
pub use kube::Client;
