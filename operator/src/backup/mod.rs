//! The MySQLBackup controller: [`controller`] is the I/O around the pure
//! steps ([`base`], [`request`], [`status`], [`cleanup`]).

pub mod base;
pub mod cleanup;
pub mod controller;
pub mod request;
pub mod status;
