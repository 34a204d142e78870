//! Logs: human-readable on a terminal, JSON lines otherwise (containers,
//! CI), filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

pub fn init(json: Option<bool>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = json.unwrap_or_else(|| !std::io::stderr().is_terminal());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
