//! `innoxide-operator`: settings from flags and environment, then one call.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = innoxide_operator::run::Config::parse();
    innoxide_operator::run::init_logging(&config.log_format);
    innoxide_operator::run::run(config).await
}
