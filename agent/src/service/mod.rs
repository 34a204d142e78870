//! `innoxide-agent serve`: the engine behind gRPC + mTLS, next to mysqld.
//!
//! - `api`: the `innoxide.agent.v1.Agent` service (requests in, records out);
//! - `jobs`: requests turned into engine options, and the operations' bodies;
//! - `operations`: the registry keyed by the caller's id, with its records on
//!   the volume and one running operation of a kind at a time; `record`: what
//!   a record holds;
//! - `archive`: the binlog archiver task behind the archive RPCs;
//! - `tls`: the mTLS listener; `metrics`: Prometheus; `server`: listeners,
//!   signals and the order of a clean shutdown.

mod api;
mod archive;
mod chain;
mod jobs;
mod metrics;
mod operations;
mod record;
mod server;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use innoxide_proto::agent::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::mysql::ConnectOptions;
pub use record::check_name;
pub use tls::TlsFiles;

/// Everything `serve` needs, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gRPC address; port 0 picks a free one (logged as `listening`).
    pub listen: SocketAddr,
    /// The plain-HTTP address of `/metrics` and `/healthz`.
    pub metrics_listen: SocketAddr,
    /// `None` is the insecure mode: plaintext, no client authentication.
    pub tls: Option<TlsFiles>,
    /// Operation records (on the data volume, so they outlive the agent).
    pub state_dir: PathBuf,
    /// Where staged restores are fetched and prepared.
    pub staging_dir: PathBuf,
    /// How the agent reaches its MySQL server unless a request says otherwise.
    pub connect: ConnectOptions,
    /// The mysqld that applies the log (the source's exact version).
    pub mysqld: Option<PathBuf>,
    /// How long SIGTERM waits for running operations to release the server.
    pub shutdown_grace: Duration,
}

impl Config {
    #[cfg(test)]
    fn for_tests(state_dir: PathBuf) -> Config {
        Config {
            listen: ([127, 0, 0, 1], 0).into(),
            metrics_listen: ([127, 0, 0, 1], 0).into(),
            tls: None,
            staging_dir: state_dir.join("staging"),
            state_dir,
            connect: ConnectOptions::default(),
            mysqld: None,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT, then cancels what runs and stops.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    server::run(config).await
}

/// A backup fetched, verified and prepared outside the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub prepared_dir: PathBuf,
    pub gtid_executed: String,
}

/// Runs what a StageRestore runs (same checks, same code) into
/// `<staging_dir>/<operation id>`, without the service: `init` restoring
/// into a new volume. Errors carry the operation's reason code.
pub async fn stage_without_service(
    request: &pb::StageRestoreRequest,
    staging_dir: &Path,
    mysqld: Option<PathBuf>,
    cancel: CancellationToken,
) -> anyhow::Result<Staged> {
    let plan = jobs::stage_plan_in(request, staging_dir, mysqld)
        .map_err(|status| anyhow::anyhow!("{}", status.message()))?;
    let live = operations::Live::default();
    let outcome = jobs::stage(&plan, &live, &cancel)
        .await
        .map_err(|f| anyhow::anyhow!("{}: {}", f.reason, f.message))?;
    Ok(Staged {
        prepared_dir: outcome.prepared_dir,
        gtid_executed: outcome.gtid_executed,
    })
}
