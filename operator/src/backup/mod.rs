//! The MySQLBackup controller.

pub mod cleanup;
pub mod request;
pub mod status;
