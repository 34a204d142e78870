//! The agent process: its listeners (gRPC with mTLS, plain HTTP for
//! `/metrics` and `/healthz`), its signals, and the order of a clean stop:
//!
//! 1. SIGTERM or SIGINT: health says NOT_SERVING, new operations are refused
//!    (UNAVAILABLE);
//! 2. running operations are cancelled, and we wait (up to the grace period)
//!    until the engine has released the server's backup lock and redo log
//!    consumer and removed partial output, with each record written; the
//!    binlog archiver ends after its pass in flight (its index whole);
//! 3. watch streams end, the listeners close, the process exits 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{StatusCode, header};
use innoxide_proto::agent::v1::agent_server::AgentServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use super::Config;
use super::api::AgentService;
use super::archive::Archives;
use super::metrics::Metrics;
use super::operations::Operations;
use super::tls;

/// How long open connections get to finish once the operations are done.
const DRAIN: Duration = Duration::from_secs(5);

pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let ops = Operations::open(&config.state_dir, metrics.clone())?;
    let archives = Archives::new(config.clone());
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(tls::Reloading::load(files.clone())?)),
        None => None,
    };
    let grpc_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
    let metrics_listener = TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--metrics-listen)",
                config.metrics_listen
            )
        })?;
    let grpc_addr = grpc_listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AgentServer<AgentService>>().await;

    let stopping = CancellationToken::new();
    tokio::spawn(stop_on_signals(stopping.clone()));
    // Cancelled once the operations have stopped: the listeners close then.
    let stopped = CancellationToken::new();
    tokio::spawn({
        let (stopping, stopped, ops, archives, grace) = (
            stopping.clone(),
            stopped.clone(),
            ops.clone(),
            archives.clone(),
            config.shutdown_grace,
        );
        async move {
            stopping.cancelled().await;
            health.set_not_serving::<AgentServer<AgentService>>().await;
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            tokio::join!(ops.shutdown(grace), archives.shutdown(grace));
            tracing::info!("operations stopped; closing the listeners");
            stopped.cancel();
        }
    });

    let http = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get({
                let metrics = metrics.clone();
                move || async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            axum::routing::get({
                let stopping = stopping.clone();
                move || async move {
                    if stopping.is_cancelled() {
                        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
                    } else {
                        (StatusCode::OK, "ok\n")
                    }
                }
            }),
        );
    let http_server = tokio::spawn(
        axum::serve(metrics_listener, http)
            .with_graceful_shutdown(stopped.clone().cancelled_owned())
            .into_future(),
    );

    tracing::info!(
        grpc = %grpc_addr,
        metrics = %metrics_addr,
        state_dir = %config.state_dir.display(),
        mtls = tls.is_some(),
        mysql = %config.connect.target(),
        "listening"
    );
    if tls.is_none() {
        tracing::warn!(
            grpc = %grpc_addr,
            "INSECURE MODE: plaintext gRPC and no client authentication. Anyone who can reach this port can \
             take and cancel backups and read server details. For a local demo only: in a cluster, give \
             --tls-cert, --tls-key and --tls-client-ca"
        );
    }

    let router = Server::builder()
        .add_service(health_service)
        .add_service(AgentServer::new(AgentService::new(
            ops,
            archives,
            config.clone(),
        )));
    let until_stopped = stopped.clone().cancelled_owned();
    let serving = async {
        match tls {
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(tls::incoming(grpc_listener, tls), until_stopped)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(TcpIncoming::from(grpc_listener), until_stopped)
                    .await
            }
        }
    };
    // Clients that keep connections open do not hold the agent up for long.
    let drained = async {
        stopped.cancelled().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        served = serving => served.context("the gRPC server failed")?,
        () = drained => tracing::warn!("clients still connected after {DRAIN:?}; stopping anyway"),
    }
    let _ = tokio::time::timeout(DRAIN, http_server).await;
    tracing::info!("stopped");
    Ok(())
}

async fn stop_on_signals(stopping: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; the agent will not stop cleanly");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::warn!("SIGTERM: cancelling running operations, then stopping"),
        _ = int.recv() => tracing::warn!("SIGINT: cancelling running operations, then stopping"),
    }
    stopping.cancel();
}
