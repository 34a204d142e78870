//! The agent binary the end-to-end tests run, built as a target of this
//! package so Cargo builds it before the tests and names it in
//! `CARGO_BIN_EXE_e2e-agent`: `cargo test -p innoxide-e2e` (or
//! `--workspace`) from a clean checkout then always runs the agent of the
//! same source and profile, with no nested `cargo build` and no nightly
//! artifact dependencies. Same code as `innoxide-agent`: its `main` is this
//! one call.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    innoxide_agent::cli::main()
}
