//! Continuous binlog archiving for point-in-time restores, turned on by a
//! MySQLBackupSchedule's `spec.binlogArchive`: [`plan`] (pure: which agent
//! archives, what moves after a failover, what retention prunes, the
//! status), [`request`] (the agent's requests), [`controller`] (the I/O,
//! run inside the schedule's reconcile).

pub mod controller;
pub mod plan;
pub mod request;
