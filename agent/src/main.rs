//! `innoxide-agent`: the backup engine's command line, and (with `serve`)
//! the agent that runs next to mysqld.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    innoxide_agent::cli::main()
}
