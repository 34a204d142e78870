//! A Kubernetes API for tests: a real `apiextensions-apiserver` on a private
//! etcd for our custom resources (real schema and CEL validation, watches,
//! 409s, server-side apply, status subresource, finalizers), and the in-memory
//! `kube-fake-client` for the other core resources, joined behind one
//! `kube::Client`. The core kinds the operator writes (StatefulSets, Pods,
//! Secrets, Events, Leases) are served by the real server too, as mirror CRDs
//! with Kubernetes' own merge schemas ([`crate::mirror`]).
//!
//! Both binaries come from `scripts/kube-apiserver.sh` (Debian sid, built once,
//! cached); see `/work/shared/TESTBED.md`, "Kubernetes API for tests". Like a
//! [`crate::MysqlServer`], a [`KubeApi`] kills its processes when dropped (also
//! while a test panics) and is registered for the orphan sweep.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::mirror;
use crate::registry::{KUBE_BASE_DIR_PREFIX, RunEntry, sweep_orphans};
use crate::testbed::kube_api_prefix;

/// API groups whose requests [`KubeApi::routed_client`] sends to the real
/// server: ours (and its subgroups, `*.innoxide.dev`) and CRDs themselves.
pub const REAL_API_GROUPS: [&str; 2] = ["innoxide.dev", "apiextensions.k8s.io"];

/// The admission plugins the apiserver enables by default; each needs core
/// resources it does not serve (Namespaces, webhook configurations, admission
/// policies). Any one of them left on refuses writes with 403 "not yet ready
/// to handle request" (after a 10 s wait) because its informers never sync.
const DISABLED_ADMISSION_PLUGINS: &str = "NamespaceLifecycle,MutatingAdmissionWebhook,\
ValidatingAdmissionWebhook,MutatingAdmissionPolicy,ValidatingAdmissionPolicy";

const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(30);
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(90);
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 40;

/// The field manager [`KubeApi::install_crds`] applies CRDs with.
const FIELD_MANAGER: &str = "innoxide-testkit";

/// A running Kubernetes API for one test: etcd + apiextensions-apiserver on
/// loopback ports, and an in-memory fake for everything else.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use innoxide_testkit::KubeApi;
/// let kube = KubeApi::start().await?;
/// // kube.install_crds(&[MyResource::crd()]).await?;
/// let client = kube.routed_client(); // our CRs → real server, Pods → fake
/// # Ok(()) }
/// ```
pub struct KubeApi {
    prefix: PathBuf,
    url: String,
    etcd_url: String,
    kubeconfig: PathBuf,
    config: Config,
    client: Client,
    fake: Client,
    processes: Processes,
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi")
            .field("url", &self.url)
            .field("etcd_url", &self.etcd_url)
            .field("etcd_pid", &self.etcd_pid())
            .field("apiserver_pid", &self.apiserver_pid())
            .field("base_dir", &self.base_dir())
            .finish_non_exhaustive()
    }
}

impl KubeApi {
    /// Installs the binaries on first use (`scripts/kube-apiserver.sh`: a
    /// ~10 min Go build once per machine), then starts etcd and the apiserver
    /// on free loopback ports, waits until `/readyz` says ok (a few s) and
    /// serves the core kinds' mirror CRDs (see [`mirror`]).
    pub async fn start() -> Result<Self> {
        let prefix = tokio::task::spawn_blocking(kube_api_prefix).await??;
        for swept in tokio::task::spawn_blocking(sweep_orphans).await?? {
            tracing::warn!(
                ?swept,
                "removed a server left behind by a dead test process"
            );
        }
        // kube's rustls has both ring and aws-lc-rs linked in this workspace:
        // without a process default it cannot build a TLS config.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

        let base = tempfile::Builder::new()
            .prefix(KUBE_BASE_DIR_PREFIX)
            .tempdir()
            .context("creating the Kubernetes API's temp folder")?;
        // Registered before anything can leak.
        let run = RunEntry::create(base.path())?;
        let mut processes = Processes {
            etcd: None,
            apiserver: None,
            run,
            base,
        };
        let pki = Pki::write(processes.base.path())?;
        let kubeconfig = processes.base.path().join("admin.kubeconfig");

        // Another process may take a free port between our probe and the
        // server's bind: pick others and try again.
        let mut attempt = 0;
        let etcd_url = loop {
            attempt += 1;
            let (client_port, peer_port) = (free_port()?, free_port()?);
            match processes
                .start_etcd(&prefix, attempt, client_port, peer_port)
                .await
            {
                Ok(()) => break format!("http://127.0.0.1:{client_port}"),
                Err(e)
                    if attempt < 3
                        && processes
                            .etcd_log_tail(200)
                            .contains("address already in use") =>
                {
                    tracing::warn!(client_port, peer_port, "etcd port taken, retrying: {e:#}");
                }
                Err(e) => return Err(e),
            }
        };
        let mut attempt = 0;
        let (url, config, client) = loop {
            attempt += 1;
            let url = format!("https://127.0.0.1:{}", free_port()?);
            pki.write_kubeconfig(&kubeconfig, &url)?;
            match processes
                .start_apiserver(&prefix, &pki, &etcd_url, &url, &kubeconfig)
                .await
            {
                Ok((config, client)) => break (url, config, client),
                Err(e)
                    if attempt < 3
                        && processes
                            .apiserver_log_tail(200)
                            .contains("address already in use") =>
                {
                    tracing::warn!(url, "apiserver port taken, retrying: {e:#}");
                }
                Err(e) => return Err(e),
            }
        };
        let mirrors = mirror::crds_in(&prefix)?;
        let kube = KubeApi {
            prefix,
            url,
            etcd_url,
            kubeconfig,
            config,
            client,
            fake: fake_client().await?,
            processes,
        };
        kube.install_crds(&mirrors)
            .await
            .context("serving the core kinds' mirrors")?;
        Ok(kube)
    }

    /// A client of the real server only: `apiextensions.k8s.io` and custom
    /// resources. Core groups answer 404 there, and there is no discovery.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A client that sends [`REAL_API_GROUPS`] to the real server, the core
    /// kinds of [`mirror::MIRRORED`] (StatefulSets, Pods, Secrets, Events,
    /// Leases) to their mirror CRDs on the real server (real apply
    /// semantics, see [`mirror`]; the client still speaks `apps/v1`), and
    /// every other request to the in-memory fake that [`Self::fake`] shows:
    /// what an operator under test should get. The fake has no watch of its own; a watch through this
    /// client is answered by listing the fake every [`FAKE_WATCH_POLL`] and
    /// streaming what changed, so kube's `Controller` and `watcher` work on
    /// core resources unchanged (events arrive up to a poll late, and the
    /// first poll of each watch reports every object as ADDED).
    pub fn routed_client(&self) -> Client {
        let real = self.client.clone();
        let fake = self.fake.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let (real, fake) = (real.clone(), fake.clone());
            async move {
                if let Some((path, kind)) = mirror::mirror_path(request.uri().path()) {
                    return to_mirror(&real, request, path, kind).await;
                }
                if serves_on_real(request.uri().path()) {
                    return real.send(request).await.map(boxed_response);
                }
                if is_watch(request.uri()) {
                    return Ok(polled_watch(fake, request.uri()));
                }
                fake.send(request).await.map(boxed_response)
            }
        });
        Client::new(service, "default")
    }

    /// A client of the in-memory fake alone, sharing its store with
    /// [`Self::routed_client`]: seed Pods, StatefulSets, Secrets, Events or
    /// Leases before a test and inspect them after. Status is a subresource
    /// for Pods, StatefulSets, Deployments and Jobs, as on a real cluster.
    pub fn fake(&self) -> Client {
        self.fake.clone()
    }

    /// The config [`Self::client`] was built from (for a `Client` with other
    /// timeouts, say).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// An admin kubeconfig for the real server (certificate in the
    /// `system:masters` group), e.g. for an operator run as a child process.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT` of the real server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `http://127.0.0.1:PORT` of etcd.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// The prefix the binaries run from.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The folder holding certificates, kubeconfig, etcd data and logs.
    pub fn base_dir(&self) -> &Path {
        self.processes.base.path()
    }

    /// The pid of etcd while it runs.
    pub fn etcd_pid(&self) -> Option<u32> {
        self.processes.etcd.as_ref().map(Child::id)
    }

    /// The pid of the apiserver while it runs.
    pub fn apiserver_pid(&self) -> Option<u32> {
        self.processes.apiserver.as_ref().map(Child::id)
    }

    /// The last `lines` lines of the apiserver's log (stderr).
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        self.processes.apiserver_log_tail(lines)
    }

    /// Creates or updates (server-side apply) each CRD, then waits until the
    /// server says it is Established and serves its custom resources.
    pub async fn install_crds(&self, crds: &[CustomResourceDefinition]) -> Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        for crd in crds {
            let name = crd
                .metadata
                .name
                .as_deref()
                .context("a CRD without a name")?;
            let mut crd = crd.clone();
            // Apply takes no server-owned fields.
            crd.metadata.resource_version = None;
            crd.metadata.managed_fields = None;
            crd.status = None;
            api.patch(name, &params, &Patch::Apply(&crd))
                .await
                .with_context(|| format!("applying CRD {name}"))?;
        }
        for crd in crds {
            self.wait_served(crd).await?;
        }
        Ok(())
    }

    async fn wait_served(&self, crd: &CustomResourceDefinition) -> Result<()> {
        let name = crd.metadata.name.as_deref().unwrap_or_default();
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let deadline = Instant::now() + CRD_ESTABLISHED_TIMEOUT;
        loop {
            let current = api
                .get(name)
                .await
                .with_context(|| format!("reading CRD {name}"))?;
            if is_established(&current) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "CRD {name} not Established within {CRD_ESTABLISHED_TIMEOUT:?}; conditions: {:?}",
                    current.status.and_then(|s| s.conditions)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Established can come a moment before the handler serves the new
        // resource: list each served version until it answers.
        for resource in served_resources(crd) {
            let objects: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            loop {
                match objects.list(&ListParams::default().limit(1)).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => {
                        return Err(e).with_context(|| {
                            format!(
                                "CRD {name} Established but {} not served",
                                resource.api_version
                            )
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Ok(())
    }
}

/// The processes of one [`KubeApi`] and the folder they work in; dropping it
/// kills them (SIGKILL: the data is throwaway) and removes the folder.
struct Processes {
    etcd: Option<Child>,
    apiserver: Option<Child>,
    run: RunEntry,
    base: TempDir,
}

impl Processes {
    /// Starts etcd and waits until it answers `/health` with `"health":"true"`.
    async fn start_etcd(
        &mut self,
        prefix: &Path,
        attempt: u32,
        client_port: u16,
        peer_port: u16,
    ) -> Result<()> {
        let base = self.base.path();
        let log = open_log(&base.join("etcd.log"))?;
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let binary = prefix.join("bin/etcd");
        let child = Command::new(&binary)
            .args([
                "--name=default".to_owned(),
                format!(
                    "--data-dir={}",
                    base.join(format!("etcd-{attempt}")).display()
                ),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster=default={peer}"),
                // A test's data is thrown away: fsync buys nothing but time.
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        self.run.record("etcd", child.id() as i32)?;
        self.etcd = Some(child);

        let deadline = Instant::now() + ETCD_READY_TIMEOUT;
        loop {
            if let Some(status) = self.etcd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.stop_etcd();
                bail!(
                    "etcd exited during startup ({status}); log:\n{}",
                    self.etcd_log_tail(LOG_TAIL_LINES)
                );
            }
            let health =
                tokio::time::timeout(Duration::from_secs(2), http_get(client_port, "/health"))
                    .await;
            if let Ok(Ok(body)) = health
                && body.contains(r#""health":"true""#)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop_etcd();
                bail!(
                    "etcd not healthy within {ETCD_READY_TIMEOUT:?} (killed it); log:\n{}",
                    self.etcd_log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the apiserver at `url` and waits until `/readyz` says ok;
    /// returns the admin config and client.
    async fn start_apiserver(
        &mut self,
        prefix: &Path,
        pki: &Pki,
        etcd_url: &str,
        url: &str,
        kubeconfig: &Path,
    ) -> Result<(Config, Client)> {
        let port = url.rsplit(':').next().unwrap_or_default();
        let log = open_log(&self.base.path().join("apiserver.log"))?;
        let binary = prefix.join("bin/apiextensions-apiserver");
        let child = Command::new(&binary)
            .args([
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", self.base.path().join("serving").display()),
                format!("--tls-cert-file={}", pki.server_cert.display()),
                format!("--tls-private-key-file={}", pki.server_key.display()),
                format!("--client-ca-file={}", pki.ca_cert.display()),
                // Authentication by client certificate only, and
                // system:masters needs no authorization lookup: both
                // kubeconfigs point at the server itself, which cannot answer
                // TokenReviews or SubjectAccessReviews.
                "--authentication-skip-lookup".into(),
                format!("--authentication-kubeconfig={}", kubeconfig.display()),
                format!("--authorization-kubeconfig={}", kubeconfig.display()),
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--disable-admission-plugins={DISABLED_ADMISSION_PLUGINS}"),
                // Priority and fairness reads its configuration from the
                // flowcontrol API, which this server does not serve.
                "--enable-priority-and-fairness=false".into(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        self.run.record("apiserver", child.id() as i32)?;
        self.apiserver = Some(child);

        let file = Kubeconfig::read_from(kubeconfig)
            .with_context(|| format!("reading {}", kubeconfig.display()))?;
        let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .context("loading the admin kubeconfig")?;
        let client = Client::try_from(config.clone()).context("building the kube client")?;

        let deadline = Instant::now() + APISERVER_READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .apiserver
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.stop_apiserver();
                bail!(
                    "apiextensions-apiserver exited during startup ({status}); log:\n{}",
                    self.apiserver_log_tail(LOG_TAIL_LINES)
                );
            }
            // `informer-sync` never passes: the server's own Service informer
            // (for webhook and conversion endpoints) lists core/v1 Services,
            // which it does not serve. Nothing our tests use needs it.
            let readyz = http::Request::get("/readyz?exclude=informer-sync").body(Vec::new())?;
            let answer =
                tokio::time::timeout(Duration::from_secs(5), client.request_text(readyz)).await;
            if let Ok(Ok(text)) = &answer
                && text.trim() == "ok"
            {
                return Ok((config, client));
            }
            if Instant::now() > deadline {
                self.stop_apiserver();
                bail!(
                    "apiextensions-apiserver not ready within {APISERVER_READY_TIMEOUT:?} (killed it; last answer {answer:?}); log:\n{}",
                    self.apiserver_log_tail(LOG_TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop_apiserver(&mut self) {
        kill_child(&mut self.apiserver);
        self.run.clear("apiserver");
    }

    fn stop_etcd(&mut self) {
        kill_child(&mut self.etcd);
        self.run.clear("etcd");
    }

    fn apiserver_log_tail(&self, lines: usize) -> String {
        log_tail(&self.base.path().join("apiserver.log"), lines)
    }

    fn etcd_log_tail(&self, lines: usize) -> String {
        log_tail(&self.base.path().join("etcd.log"), lines)
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // The apiserver first, so it does not log a storm of etcd errors.
        self.stop_apiserver();
        self.stop_etcd();
        if std::thread::panicking() {
            eprintln!(
                "--- apiserver log (tail) ---\n{}\n--- etcd log (tail) ---\n{}\n---",
                self.apiserver_log_tail(LOG_TAIL_LINES),
                self.etcd_log_tail(LOG_TAIL_LINES)
            );
            if std::env::var_os("INNOXIDE_KEEP_FAILED").is_some() {
                self.base.disable_cleanup(true);
                eprintln!("kept {}", self.base.path().display());
            }
        }
    }
}

/// How often a watch on the fake lists it to find changes.
pub const FAKE_WATCH_POLL: Duration = Duration::from_millis(200);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type RoutedBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

fn boxed_response(response: http::Response<kube::client::Body>) -> http::Response<RoutedBody> {
    use http_body_util::BodyExt;
    response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
}

fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn is_watch(uri: &http::Uri) -> bool {
    query_pairs(uri)
        .iter()
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
}

/// A watch on the fake, by polling: lists what the watch selects every
/// [`FAKE_WATCH_POLL`] and streams `ADDED`/`MODIFIED`/`DELETED` lines as an
/// API server would, until the watch's `timeoutSeconds` (the client then
/// watches again).
fn polled_watch(fake: Client, uri: &http::Uri) -> http::Response<RoutedBody> {
    use http_body_util::BodyExt;
    let pairs = query_pairs(uri);
    let timeout = pairs
        .iter()
        .find(|(k, _)| k == "timeoutSeconds")
        .and_then(|(_, v)| v.parse().ok())
        .map_or(Duration::from_secs(290), Duration::from_secs);
    let kept: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, _)| k == "labelSelector" || k == "fieldSelector")
        .collect();
    let mut list_uri = uri.path().to_owned();
    if !kept.is_empty() {
        list_uri.push('?');
        list_uri.push_str(
            &url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(kept)
                .finish(),
        );
    }
    struct Poll {
        fake: Client,
        list_uri: String,
        known: std::collections::BTreeMap<String, serde_json::Value>,
        first: bool,
        until: Instant,
        pending: std::collections::VecDeque<bytes::Bytes>,
    }
    let state = Poll {
        fake,
        list_uri,
        known: Default::default(),
        first: true,
        until: Instant::now() + timeout,
        pending: Default::default(),
    };
    let lines = futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(line) = state.pending.pop_front() {
                return Some((Ok::<_, BoxError>(http_body::Frame::data(line)), state));
            }
            if Instant::now() >= state.until {
                return None;
            }
            if !state.first {
                tokio::time::sleep(FAKE_WATCH_POLL).await;
            }
            state.first = false;
            let Ok(request) = http::Request::get(&state.list_uri).body(Vec::new()) else {
                return None;
            };
            let Ok(list) = state.fake.request::<serde_json::Value>(request).await else {
                continue;
            };
            let api_version = list["apiVersion"].clone();
            let kind = list["kind"]
                .as_str()
                .and_then(|k| k.strip_suffix("List"))
                .map(serde_json::Value::from);
            let mut seen = std::collections::BTreeMap::new();
            for mut object in list["items"].as_array().cloned().unwrap_or_default() {
                if object.get("apiVersion").is_none() {
                    object["apiVersion"] = api_version.clone();
                }
                if let (None, Some(kind)) = (object.get("kind"), &kind) {
                    object["kind"] = kind.clone();
                }
                let key = format!(
                    "{}/{}",
                    object["metadata"]["namespace"].as_str().unwrap_or_default(),
                    object["metadata"]["name"].as_str().unwrap_or_default()
                );
                let event = match state.known.get(&key) {
                    None => Some("ADDED"),
                    Some(old)
                        if old["metadata"]["resourceVersion"]
                            != object["metadata"]["resourceVersion"] =>
                    {
                        Some("MODIFIED")
                    }
                    Some(_) => None,
                };
                if let Some(kind) = event {
                    state.pending.push_back(watch_line(kind, &object));
                }
                seen.insert(key, object);
            }
            for (key, object) in &state.known {
                if !seen.contains_key(key) {
                    state.pending.push_back(watch_line("DELETED", object));
                }
            }
            state.known = seen;
        }
    });
    let body = http_body_util::StreamBody::new(lines).boxed_unsync();
    let mut response = http::Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn watch_line(kind: &str, object: &serde_json::Value) -> bytes::Bytes {
    let mut line = serde_json::json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    bytes::Bytes::from(line)
}

/// A request for a mirrored core kind, sent to its mirror on the real server
/// (`path`), its body and answer translated (see [`mirror`]).
async fn to_mirror(
    real: &Client,
    request: http::Request<kube::client::Body>,
    path: String,
    kind: &'static mirror::MirrorKind,
) -> std::result::Result<http::Response<RoutedBody>, kube::Error> {
    use http_body_util::BodyExt;
    let (mut parts, body) = request.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let body = match mirror::mirror_request_body(kind, &bytes) {
        Some(rewritten) => {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            kube::client::Body::from(rewritten)
        }
        None => kube::client::Body::from(bytes.to_vec()),
    };
    let uri = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    parts.uri = uri.parse().expect("a mirror path is a valid URI");
    let response = real.send(http::Request::from_parts(parts, body)).await?;
    Ok(response.map(|body| {
        // Line by line (a watch streams one event per line), each read as
        // the real kind.
        let frames = futures::stream::unfold(
            (body.into_data_stream(), Vec::<u8>::new(), false),
            |(mut stream, mut pending, mut done)| async move {
                use futures::StreamExt;
                loop {
                    let cut = match pending.iter().rposition(|b| *b == b'\n') {
                        Some(end) => end + 1,
                        None if done => pending.len(),
                        None => 0,
                    };
                    if cut > 0 {
                        let rest = pending.split_off(cut);
                        let text = mirror::real_response_text(&String::from_utf8_lossy(&pending));
                        let frame = http_body::Frame::data(bytes::Bytes::from(text));
                        return Some((Ok::<_, BoxError>(frame), (stream, rest, done)));
                    }
                    if done {
                        return None;
                    }
                    match stream.next().await {
                        Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            return Some((Err(Box::new(e) as BoxError), (stream, pending, true)));
                        }
                        None => done = true,
                    }
                }
            },
        );
        http_body_util::StreamBody::new(frames).boxed_unsync()
    }))
}

/// True when `path` (`/apis/<group>/...`) belongs to one of [`REAL_API_GROUPS`]
/// or a subgroup of ours; core (`/api/...`), other groups and discovery go to
/// the fake.
pub fn serves_on_real(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/apis/") else {
        return false;
    };
    let group = rest.split('/').next().unwrap_or_default();
    REAL_API_GROUPS.contains(&group) || group.ends_with(".innoxide.dev")
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

fn served_resources(crd: &CustomResourceDefinition) -> Vec<ApiResource> {
    let spec = &crd.spec;
    spec.versions
        .iter()
        .filter(|v| v.served)
        .map(|v| {
            let gvk = GroupVersionKind::gvk(&spec.group, &v.name, &spec.names.kind);
            ApiResource::from_gvk_with_plural(&gvk, &spec.names.plural)
        })
        .collect()
}

async fn fake_client() -> Result<Client> {
    kube_fake_client::ClientBuilder::new()
        .with_status_subresource::<Pod>()
        .with_status_subresource::<StatefulSet>()
        .with_status_subresource::<Deployment>()
        .with_status_subresource::<Job>()
        .build()
        .await
        .context("building the in-memory fake API")
}

/// A plain HTTP/1.0 GET on loopback: the whole response as text.
async fn http_get(port: u16, path: &str) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// SIGKILL and reap; a no-op when there is no child. Test data is throwaway,
/// so there is nothing a clean shutdown would save.
fn kill_child(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

fn open_log(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port nobody listens on right now (the kernel's pick for 127.0.0.1:0).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The certificates of one server, as files: a CA that signs both the
/// serving certificate (127.0.0.1, localhost) and an admin client certificate
/// in `system:masters`, the group the apiserver lets do anything.
struct Pki {
    ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
}

impl Pki {
    fn write(base: &Path) -> Result<Self> {
        let dir = base.join("pki");
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "innoxide test kube CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

        let mut server = CertificateParams::new(vec!["localhost".to_owned()])?;
        server
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        server
            .distinguished_name
            .push(DnType::CommonName, "apiextensions-apiserver");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin
            .distinguished_name
            .push(DnType::CommonName, "innoxide-test-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];

        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        let server_key = KeyPair::generate()?;
        let admin_key = KeyPair::generate()?;
        Ok(Pki {
            ca_cert: write("ca.crt", &ca.pem())?,
            server_cert: write("server.crt", &server.signed_by(&server_key, &ca)?.pem())?,
            server_key: write("server.key", &server_key.serialize_pem())?,
            admin_cert: write("admin.crt", &admin.signed_by(&admin_key, &ca)?.pem())?,
            admin_key: write("admin.key", &admin_key.serialize_pem())?,
        })
    }

    fn write_kubeconfig(&self, path: &Path, url: &str) -> Result<()> {
        let text = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": url,
                "certificate-authority": self.ca_cert,
            }}],
            "users": [{"name": "admin", "user": {
                "client-certificate": self.admin_cert,
                "client-key": self.admin_key,
            }}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin", "namespace": "default"}}],
            "current-context": "test",
        });
        // JSON is YAML: both kube-rs and client-go read it.
        fs::write(path, serde_json::to_string_pretty(&text)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_groups_go_to_the_real_server_and_the_rest_to_the_fake() {
        assert!(serves_on_real(
            "/apis/innoxide.dev/v1alpha1/namespaces/a/probes"
        ));
        assert!(serves_on_real("/apis/innoxide.dev"));
        assert!(serves_on_real("/apis/backup.innoxide.dev/v1/mysqlbackups"));
        assert!(serves_on_real(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x"
        ));
        assert!(!serves_on_real("/api/v1/namespaces/a/pods"));
        assert!(!serves_on_real("/apis/apps/v1/namespaces/a/statefulsets"));
        assert!(!serves_on_real(
            "/apis/coordination.k8s.io/v1/namespaces/a/leases"
        ));
        assert!(!serves_on_real("/apis/notinnoxide.dev/v1/things"));
        assert!(!serves_on_real("/apis"));
    }
}
