//! `innoxide-bench`: see the library's docs; `make bench` runs it.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match innoxide_bench::run(innoxide_bench::Args::parse()).await {
        Ok(report) => {
            println!("{}", report.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("innoxide-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
