//! Agent wiring.

pub mod patch;
pub mod pki;

pub use patch::*;
