//! The operator process: its settings (clap), logs, the /metrics, /healthz
//! and /readyz endpoint, leader election, the CA, and the four controllers
//! in the namespaces it watches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentApi, TonicAgent};
use crate::api::{MySQLBackup, MySQLBackupSchedule, MySQLRestore};
use crate::clock::{Clock, SystemClock};
use crate::context::{Context, Settings, error_policy};
use crate::leader::{LeaderElection, LeaseSettings};
use crate::metrics::Metrics;
use crate::wiring::WiringSettings;
use crate::wiring::controller::{Wiring, load_or_create_ca};
use crate::wiring::pki::Ca;
use crate::{backup, restore, schedule, wiring};

#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "innoxide-operator",
    version,
    about = "Kubernetes operator for Innoxide MySQL backups"
)]
pub struct Config {
    /// The namespace the operator runs in: its CA Secret and Lease live there.
    #[arg(long, env = "POD_NAMESPACE", default_value = "innoxide-system")]
    pub namespace: String,
    /// This replica's name in the leader Lease.
    #[arg(long, env = "POD_NAME", default_value = "innoxide-operator")]
    pub identity: String,
    /// The Secret that holds the operator's CA (made on first start).
    #[arg(
        long,
        env = "INNOXIDE_CA_SECRET",
        default_value = "innoxide-operator-ca"
    )]
    pub ca_secret: String,
    /// The image with the agent binary at /usr/local/bin/innoxide-agent.
    #[arg(long, env = "INNOXIDE_AGENT_IMAGE", default_value = concat!("ghcr.io/innoxide/innoxide-agent:", env!("CARGO_PKG_VERSION")))]
    pub agent_image: String,
    /// Plain-HTTP address of /metrics, /healthz and /readyz.
    #[arg(long, env = "INNOXIDE_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// Elect a leader among replicas through a Lease.
    #[arg(long, env = "INNOXIDE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    #[arg(long, env = "INNOXIDE_LEASE_NAME", default_value = "innoxide-operator")]
    pub lease_name: String,
    /// Logs as JSON lines (`json`) or for people (`text`).
    #[arg(long, env = "INNOXIDE_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    pub log_format: String,
    /// How long a running backup's agent may stay out of reach (pod gone,
    /// not ready, not answering) before the backup is marked Failed.
    #[arg(long, env = "INNOXIDE_AGENT_LOST_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub agent_lost_timeout: Duration,
    /// Watch only these namespaces (comma-separated); all when unset. The
    /// operator then needs Roles in these namespaces only.
    #[arg(long, env = "INNOXIDE_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// /healthz fails once a reconcile has run this long without finishing
    /// (a wedged controller), so the kubelet restarts the operator.
    #[arg(long, env = "INNOXIDE_STALL_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub stall_timeout: Duration,
}

/// The namespaces the controllers watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchScope {
    All,
    /// These namespaces only, each once.
    Namespaces(Vec<String>),
}

impl WatchScope {
    /// From `--watch-namespaces`: empty (or only blanks) means all.
    pub fn from_list(list: &[String]) -> WatchScope {
        let mut namespaces: Vec<String> = Vec::new();
        for ns in list.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            if !namespaces.iter().any(|n| n == ns) {
                namespaces.push(ns.to_owned());
            }
        }
        if namespaces.is_empty() {
            WatchScope::All
        } else {
            WatchScope::Namespaces(namespaces)
        }
    }

    /// One API root per watched namespace (one for the whole cluster).
    fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        match self {
            WatchScope::All => vec![Api::all(client.clone())],
            WatchScope::Namespaces(namespaces) => namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
        }
    }
}

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,tower=warn,hyper=warn")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

/// /metrics; /healthz, which fails while a controller is wedged (see
/// [`crate::health`]); /readyz, ready only while this replica leads, so
/// only the replica that works counts as ready.
pub fn http_routes(
    metrics: Arc<Metrics>,
    leading: CancellationToken,
    stall_timeout: Duration,
) -> axum::Router {
    use axum::http::{StatusCode, header};
    let scraped = metrics.clone();
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = scraped.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics
                        .health
                        .verdict(std::time::Instant::now(), stall_timeout)
                    {
                        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
                        Err(why) => {
                            tracing::error!(%why, "unhealthy: the kubelet will restart this replica");
                            (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
                        }
                    }
                }
            }),
        )
        .route(
            "/readyz",
            axum::routing::get(move || {
                let leading = leading.clone();
                async move {
                    if leading.is_cancelled() {
                        (StatusCode::OK, "leading\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "standby\n")
                    }
                }
            }),
        )
}

async fn serve_http(listen: SocketAddr, routes: axum::Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--metrics-listen)"))?;
    axum::serve(listener, routes)
        .await
        .context("the metrics server failed")
}

/// Runs the operator until SIGTERM, or until it loses leadership.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::new());
    let leading = CancellationToken::new();
    tokio::spawn({
        let routes = http_routes(metrics.clone(), leading.clone(), config.stall_timeout);
        async move {
            if let Err(e) = serve_http(config.metrics_listen, routes).await {
                tracing::error!(error = %e, "no /metrics endpoint");
            }
        }
    });

    let lost = if config.leader_election {
        let election = LeaderElection::new(
            client.clone(),
            LeaseSettings {
                namespace: config.namespace.clone(),
                name: config.lease_name.clone(),
                identity: config.identity.clone(),
                duration: Duration::from_secs(15),
                renew_every: Duration::from_secs(5),
            },
        );
        tracing::info!(identity = %config.identity, "waiting to lead");
        election.lead().await
    } else {
        CancellationToken::new()
    };
    leading.cancel();
    metrics.leader.set(1);

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ca = load_or_create_ca(&client, &config.namespace, &config.ca_secret, clock.now())
        .await
        .context("cannot load or create the operator's CA Secret")?;
    let agent = Arc::new(
        TonicAgent::new(ca.clone()).context("cannot issue the operator's client certificate")?,
    );
    let settings = Settings {
        namespace: config.namespace.clone(),
        ca_secret: config.ca_secret.clone(),
        wiring: WiringSettings {
            agent_image: config.agent_image.clone(),
        },
        agent_lost_timeout: config.agent_lost_timeout,
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        agent,
        clock,
        metrics.clone(),
        settings,
    ));
    let shutdown = {
        let lost = lost.clone();
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
                () = lost.cancelled() => {},
                () = sigterm() => tracing::info!("SIGTERM: stopping"),
            }
        }
    };
    let scope = WatchScope::from_list(&config.watch_namespaces);
    tracing::info!(?scope, "controllers running");
    run_scoped_controllers(ctx, ca, &scope, shutdown).await;
    metrics.leader.set(0);
    if lost.is_cancelled() {
        anyhow::bail!("lost leadership; exiting so a fresh replica can compete");
    }
    Ok(())
}

/// The four controllers in every namespace, until `shutdown` completes:
/// what [`run`] does once it leads, and what tests run in-process against
/// their own API server, agent client and clock.
pub async fn run_controllers<A: AgentApi>(
    ctx: Arc<Context<A>>,
    ca: Ca,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    run_scoped_controllers(ctx, ca, &WatchScope::All, shutdown).await;
}

/// The four controllers for each namespace of `scope` (each only lists and
/// watches its own namespace, so namespace-scoped Roles suffice), until
/// `shutdown` completes. A clock that jumps (a test's) makes every
/// controller look at everything again.
pub async fn run_scoped_controllers<A: AgentApi>(
    ctx: Arc<Context<A>>,
    ca: Ca,
    scope: &WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let client = ctx.client.clone();
    let wiring_ctx = Arc::new(Wiring {
        ctx: ctx.clone(),
        ca,
    });
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let jumps = || {
        ctx.clock
            .jumps()
            .unwrap_or_else(|| futures::stream::pending().boxed())
    };
    // Reports a controller loop that returned to /healthz.
    let watched = |controller: &'static str, run: futures::stream::BoxStream<'static, ()>| {
        let ctx = ctx.clone();
        run.for_each(|()| futures::future::ready(()))
            .map(move |()| ctx.metrics.health.loop_ended(controller))
            .boxed()
    };
    let mut loops = Vec::new();
    let backup_apis = scope.apis::<DeserializeGuard<MySQLBackup>>(&client);
    let schedule_apis = scope.apis::<DeserializeGuard<MySQLBackupSchedule>>(&client);
    let restore_apis = scope.apis::<DeserializeGuard<MySQLRestore>>(&client);
    let statefulset_apis = scope.apis::<StatefulSet>(&client);
    let pod_apis = scope.apis::<Pod>(&client);
    for ((((backups, schedules), restores), statefulsets), pods) in backup_apis
        .into_iter()
        .zip(schedule_apis)
        .zip(restore_apis)
        .zip(statefulset_apis)
        .zip(pod_apis)
    {
        let run = Controller::new(backups.clone(), watcher::Config::default().any_semantic())
            .reconcile_all_on(jumps())
            .graceful_shutdown_on(shutdown.clone())
            .run(
                backup::controller::reconcile,
                |obj, err, ctx| {
                    error_policy(backup::controller::CONTROLLER, obj.as_ref(), err, &ctx)
                },
                ctx.clone(),
            )
            .map(|_| ())
            .boxed();
        loops.push(watched(backup::controller::CONTROLLER, run));
        let run = Controller::new(schedules, watcher::Config::default().any_semantic())
            // A schedule's backups name it by label, not by ownerReference
            // (that would make deleting the schedule delete them).
            .watches(
                backups,
                watcher::Config::default().labels(crate::api::SCHEDULE_LABEL),
                |backup| {
                    let schedule = backup.labels().get(crate::api::SCHEDULE_LABEL)?.clone();
                    Some(ObjectRef::new(&schedule).within(&backup.namespace()?))
                },
            )
            .reconcile_all_on(jumps())
            .graceful_shutdown_on(shutdown.clone())
            .run(
                schedule::controller::reconcile,
                |obj, err, ctx| {
                    error_policy(schedule::controller::CONTROLLER, obj.as_ref(), err, &ctx)
                },
                ctx.clone(),
            )
            .map(|_| ())
            .boxed();
        loops.push(watched(schedule::controller::CONTROLLER, run));
        // A restore polls its pod and agent while it runs (every few seconds
        // while the pod restarts), so it needs no pod watch.
        let run = Controller::new(restores, watcher::Config::default().any_semantic())
            .reconcile_all_on(jumps())
            .graceful_shutdown_on(shutdown.clone())
            .run(
                restore::controller::reconcile,
                |obj, err, ctx| {
                    error_policy(restore::controller::CONTROLLER, obj.as_ref(), err, &ctx)
                },
                ctx.clone(),
            )
            .map(|_| ())
            .boxed();
        loops.push(watched(restore::controller::CONTROLLER, run));
        // Pods of StatefulSets (the label their controller sets): a pod
        // held at the operator's scheduling gate is let go, or replaced, as
        // soon as it appears.
        let run = Controller::new(statefulsets, watcher::Config::default())
            .owns(
                pods,
                watcher::Config::default().labels(wiring::STATEFULSET_POD_LABEL),
            )
            .graceful_shutdown_on(shutdown.clone())
            .run(
                wiring::controller::reconcile,
                |obj, err, w| {
                    error_policy(wiring::controller::CONTROLLER, obj.as_ref(), err, &w.ctx)
                },
                wiring_ctx.clone(),
            )
            .map(|_| ())
            .boxed();
        loops.push(watched(wiring::controller::CONTROLLER, run));
    }
    futures::future::join_all(loops).await;
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(items: &[&str]) -> WatchScope {
        WatchScope::from_list(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_watch_list_is_trimmed_and_deduplicated_and_empty_means_all() {
        assert_eq!(scope(&[]), WatchScope::All);
        assert_eq!(scope(&["", " "]), WatchScope::All);
        assert_eq!(
            scope(&["a", " b", "a"]),
            WatchScope::Namespaces(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn the_flag_takes_a_comma_separated_list() {
        use clap::Parser as _;
        let config = Config::try_parse_from([
            "innoxide-operator",
            "--watch-namespaces=team-a,team-b",
            "--stall-timeout=90s",
        ])
        .unwrap();
        assert_eq!(config.watch_namespaces, ["team-a", "team-b"]);
        assert_eq!(config.stall_timeout, Duration::from_secs(90));
    }
}
