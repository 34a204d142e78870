//! The MySQLBackupSchedule controller: [`controller`] is the I/O around
//! the pure steps ([`cron`], [`plan`]).

pub mod controller;
pub mod cron;
pub mod plan;
