//! Innoxide's engine: hot physical backup of MySQL/InnoDB, apply-log,
//! copy-back, and the agent that runs them next to mysqld.
//!
//! `innodb` is pure format code (bytes in, values out); `mysql` is every
//! statement we send to a server; `backup`, `prepare` and `restore` are the
//! flows; `meta` is the backup directory's files; `cli` is the command line.
#![forbid(unsafe_code)]

pub mod backup;
pub mod binlog;
pub mod cli;
pub mod fileops;
pub mod innodb;
pub mod install;
pub mod logging;
pub mod meta;
pub mod mycnf;
pub mod mysql;
pub mod prepare;
pub mod repo;
pub mod restore;
pub mod secret;
pub mod service;
pub mod swap;
pub mod verify;
