//! The agent beside each MySQL: what a StatefulSet that opts in must have
//! ([`patch`]), the certificates ([`pki`]), the scheduling gate that keeps
//! pods from running before they are wired ([`gate`]), and the controller
//! that applies them ([`controller`]).

pub mod controller;
pub mod gate;
pub mod patch;
pub mod pki;

pub use gate::{AGENT_GATE, STATEFULSET_POD_LABEL};
pub use patch::*;
