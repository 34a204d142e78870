//! The agent beside each MySQL: what a StatefulSet that opts in must have
//! ([`patch`]), the certificates ([`pki`]), and the controller that applies
//! them ([`controller`]).

pub mod controller;
pub mod patch;
pub mod pki;

pub use patch::*;
