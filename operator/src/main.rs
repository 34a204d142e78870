//! `innoxide-operator`: not built yet; says so instead of pretending.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!(
        "innoxide-operator: the controllers are not built yet; back up and restore with \
         `innoxide-agent` (see README.md)"
    );
    std::process::ExitCode::FAILURE
}
