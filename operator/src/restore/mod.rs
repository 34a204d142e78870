//! The MySQLRestore controller: [`controller`] is the I/O around the pure
//! steps ([`source`]: what is restored and whether it may start;
//! [`point_in_time`]: the base backup and the archive of a point-in-time
//! restore; [`request`]: the agent's request and the init container's spec;
//! [`step`]: what happens next; [`cleanup`]: what a deletion must stop;
//! [`record`]: the restores a StatefulSet has had, so one is not done twice).

pub mod cleanup;
pub mod controller;
pub mod point_in_time;
pub mod record;
pub mod request;
pub mod source;
pub mod step;
