//! A Kubernetes cluster on loopback for the operator's end-to-end tests: a
//! [`KubeApi`] with our CRDs installed, the operator's controllers running
//! in-process through its real entry point ([`run_controllers`]) against
//! the routed client, and a small stand-in for the StatefulSet controller
//! and the kubelet: it makes the pods of a StatefulSet from its template (so
//! they carry the agent sidecar the operator's wiring added), marks them
//! Running and Ready on `127.0.0.1`, and runs a REAL `innoxide-agent serve`
//! per pod with the server certificate the operator issued into the
//! StatefulSet's TLS Secret, so the operator reaches it over real gRPC +
//! mTLS exactly as in a cluster.
//!
//! All pods share one IP here, so each pod carries its own agent's port in
//! the `innoxide.dev/agent-port` annotation (which the operator reads per
//! pod); the TLS server name is the StatefulSet's, as the operator expects.
//!
//! When the operator (or a test) deletes a pod, the pod's agent dies with
//! it and the [`PodDeletedHook`] decides what happens next: by default the
//! pod comes back (a new agent, a new Ready pod), as a StatefulSet would; a
//! restore test can stop mysqld, swap a datadir, start it again and then
//! let the pod come back, or keep it gone.
//!
//! Dropping a [`Cluster`] stops the controllers, kills every agent (also
//! while a test panics) and then the API server; agents are registered for
//! the orphan sweep like every server here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::future::BoxFuture;
use innoxide_operator::api::MySQLBackup;
use innoxide_operator::clock::{Clock, ManualClock, SystemClock};
use innoxide_operator::context::{Context, DEFAULT_AGENT_LOST_TIMEOUT, Settings};
use innoxide_operator::metrics::Metrics;
use innoxide_operator::run::run_controllers;
use innoxide_operator::wiring::{self, WiringSettings};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::kube_api::KubeApi;
use crate::mysql::MysqlServer;
use crate::registry::{KUBE_BASE_DIR_PREFIX, RunEntry};
use crate::s3::S3Server;

/// Where the operator itself runs: its CA Secret lives there.
pub const OPERATOR_NAMESPACE: &str = "innoxide-system";
pub const CA_SECRET: &str = "innoxide-operator-ca";
/// The image the MySQL container names (only the wiring reads it).
const MYSQL_IMAGE: &str = "mysql:9.7.4";
/// How often the kubelet stand-in looks for deleted pods.
const KUBELET_POLL: Duration = Duration::from_millis(200);
const WIRING_TIMEOUT: Duration = Duration::from_secs(60);
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// The MySQL a pod runs: how its agent reaches it.
#[derive(Debug, Clone)]
pub struct PodMysql {
    pub socket: PathBuf,
    pub datadir: PathBuf,
    /// The exact mysqld of the server, for apply-log in the agent.
    pub mysqld: PathBuf,
    /// The agent's default user (requests may bring their own credentials).
    pub user: String,
}

impl PodMysql {
    /// The MySQL of a test server, reached as root over its socket.
    pub fn of(server: &MysqlServer) -> PodMysql {
        PodMysql {
            socket: server.socket().to_owned(),
            datadir: server.datadir().to_owned(),
            mysqld: server.bin("mysqld"),
            user: "root".into(),
        }
    }
}

/// What becomes of a deleted pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodFate {
    /// It comes back, Ready, with a fresh agent (a StatefulSet's pod).
    Recreate,
    /// It stays gone (a node that died).
    Gone,
}

/// A deleted pod, as a [`PodDeletedHook`] sees it.
#[derive(Clone)]
pub struct PodDeleted {
    pub pod: String,
    pub stateful_set: String,
    /// The cluster, to start or stop agents and pods from the hook.
    pub pods: Pods,
}

/// Called when a pod disappears from the API (its agent has been stopped
/// already); returns what becomes of it. Runs on the kubelet stand-in's
/// task: other deletions wait for it.
pub type PodDeletedHook = Arc<dyn Fn(PodDeleted) -> BoxFuture<'static, PodFate> + Send + Sync>;

/// Builds a [`Cluster`].
pub struct ClusterBuilder {
    namespace: String,
    agent_binary: Option<PathBuf>,
    manual_clock: Option<jiff::Timestamp>,
    agent_lost_timeout: Duration,
    agent_image: String,
}

impl ClusterBuilder {
    /// The `innoxide-agent` to run per pod (default: `$INNOXIDE_AGENT_BIN`,
    /// else `innoxide-agent` in the test binary's target folder).
    pub fn agent_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.agent_binary = Some(path.into());
        self
    }

    /// The namespace the test's objects live in (default `db`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The operator's clock stands still at `now` until [`Cluster::advance_clock`].
    pub fn manual_clock(mut self, now: jiff::Timestamp) -> Self {
        self.manual_clock = Some(now);
        self
    }

    /// The operator's `--agent-image` (what the wiring's install container
    /// runs; only pods run by the [`crate::Kubelet`] use it).
    pub fn agent_image(mut self, image: impl Into<String>) -> Self {
        self.agent_image = image.into();
        self
    }

    /// The operator's `--agent-lost-timeout`.
    pub fn agent_lost_timeout(mut self, timeout: Duration) -> Self {
        self.agent_lost_timeout = timeout;
        self
    }

    /// Starts the API server, installs the CRDs, starts the controllers and
    /// the kubelet stand-in.
    pub async fn start(self) -> Result<Cluster> {
        let agent_binary = match self.agent_binary {
            Some(path) => path,
            None => default_agent_binary()?,
        };
        if !agent_binary.exists() {
            bail!(
                "{} not found: build it (cargo build -p innoxide-agent)",
                agent_binary.display()
            );
        }
        let kube = KubeApi::start().await?;
        let crds: Vec<_> = innoxide_operator::crd::all()
            .into_iter()
            .map(|(_, crd)| crd)
            .collect();
        kube.install_crds(&crds).await?;
        let client = kube.routed_client();

        let manual = self.manual_clock.map(ManualClock::at);
        let clock: Arc<dyn Clock> = match &manual {
            Some(clock) => Arc::new(clock.clone()),
            None => Arc::new(SystemClock),
        };
        let ca = innoxide_operator::wiring::controller::load_or_create_ca(
            &client,
            OPERATOR_NAMESPACE,
            CA_SECRET,
            clock.now(),
        )
        .await
        .map_err(|e| anyhow!("creating the operator's CA: {e}"))?;
        let agent = Arc::new(
            innoxide_operator::agent::TonicAgent::new(ca.clone())
                .map_err(|e| anyhow!("issuing the operator's client certificate: {e}"))?,
        );
        let ctx = Arc::new(Context::new(
            client.clone(),
            agent,
            clock,
            Arc::new(Metrics::new()),
            Settings {
                namespace: OPERATOR_NAMESPACE.into(),
                ca_secret: CA_SECRET.into(),
                wiring: WiringSettings {
                    agent_image: self.agent_image,
                },
                agent_lost_timeout: self.agent_lost_timeout,
            },
        ));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let operator = tokio::spawn(run_controllers(ctx, ca, async move {
            let _ = stopped.await;
        }));

        let dir = tempfile::Builder::new()
            .prefix(&format!("{KUBE_BASE_DIR_PREFIX}cluster-"))
            .tempdir()
            .context("creating the cluster's temp folder")?;
        let run = RunEntry::create(dir.path())?;
        let pods = Pods(Arc::new(Shared {
            agent_binary,
            dir: dir.path().to_owned(),
            namespace: self.namespace.clone(),
            client: client.clone(),
            run,
            pods: Mutex::new(BTreeMap::new()),
            hook: Mutex::new(None),
        }));
        let kubelet = tokio::spawn(kubelet(pods.clone()));
        Ok(Cluster {
            stop: Some(stop),
            operator,
            kubelet,
            stand_ins: Mutex::new(Vec::new()),
            pods,
            namespace: self.namespace,
            clock: manual,
            client,
            kube,
            _dir: dir,
        })
    }
}

/// A running cluster; see the module docs.
pub struct Cluster {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    operator: tokio::task::JoinHandle<()>,
    kubelet: tokio::task::JoinHandle<()>,
    /// StatefulSet controller stand-ins of gated StatefulSets.
    stand_ins: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pods: Pods,
    namespace: String,
    clock: Option<ManualClock>,
    client: Client,
    kube: KubeApi,
    _dir: TempDir,
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            namespace: "db".into(),
            agent_binary: None,
            manual_clock: None,
            agent_lost_timeout: DEFAULT_AGENT_LOST_TIMEOUT,
            agent_image: "innoxide/innoxide-agent:test".into(),
        }
    }

    /// The routed client (our resources and the mirrored core kinds on the
    /// real server, the rest in the fake): what the operator uses.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn kube(&self) -> &KubeApi {
        &self.kube
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Typed API of a namespaced resource in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The pods and their agents.
    pub fn pods(&self) -> &Pods {
        &self.pods
    }

    /// Moves the operator's clock (a manual one, see
    /// [`ClusterBuilder::manual_clock`]); the controllers look at
    /// everything again.
    pub fn advance_clock(&self, by: Duration) -> Result<()> {
        self.clock
            .as_ref()
            .context("the cluster runs on the real clock")?
            .advance(by);
        Ok(())
    }

    /// Sets the operator's manual clock to `now` (see [`Self::advance_clock`]).
    pub fn set_clock(&self, now: jiff::Timestamp) -> Result<()> {
        self.clock
            .as_ref()
            .context("the cluster runs on the real clock")?
            .set(now);
        Ok(())
    }

    /// What to do when a pod is deleted (replaces the default, which
    /// recreates it).
    pub fn on_pod_deleted(&self, hook: PodDeletedHook) {
        *lock(&self.pods.0.hook) = Some(hook);
    }

    /// Creates an opted-in StatefulSet with one pod per MySQL, waits for the
    /// operator to wire it (certificate Secret, agent sidecar in the
    /// template), then starts each pod's agent and makes the pod Ready.
    pub async fn add_stateful_set(&self, name: &str, mysqls: &[PodMysql]) -> Result<StatefulSet> {
        let sts = self.create_stateful_set(name, mysqls.len(), &[]).await?;
        for (i, mysql) in mysqls.iter().enumerate() {
            self.start_pod(name, i, mysql).await?;
        }
        Ok(sts)
    }

    /// Creates an opted-in StatefulSet of `replicas` pods with these
    /// annotations and waits for the operator to wire it, without starting
    /// any pod: a test that restores into a new StatefulSet runs the init
    /// container's work first, then [`Self::start_pod`].
    pub async fn create_stateful_set(
        &self,
        name: &str,
        replicas: usize,
        annotations: &[(&str, &str)],
    ) -> Result<StatefulSet> {
        let ns = &self.namespace;
        let statefulsets: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        let sts = self.stateful_set(name, replicas, annotations, false)?;
        statefulsets
            .create(&PostParams::default(), &sts)
            .await
            .with_context(|| format!("creating StatefulSet {name}"))?;
        let sts = self.wait_wired(name).await?;
        self.write_tls(name).await?;
        Ok(sts)
    }

    /// The opted-in StatefulSet a user writes: one `mysql` container with
    /// the data volume at the default datadir, its pod template carrying
    /// the operator's scheduling gate when `gated`.
    fn stateful_set(
        &self,
        name: &str,
        replicas: usize,
        annotations: &[(&str, &str)],
        gated: bool,
    ) -> Result<StatefulSet> {
        let ns = &self.namespace;
        let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
        let gates = if gated {
            serde_json::json!([{"name": wiring::AGENT_GATE}])
        } else {
            serde_json::Value::Null
        };
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {"app": name, wiring::AGENT_LABEL: wiring::AGENT_LABEL_VALUE},
                "annotations": annotations,
            },
            "spec": {
                "replicas": replicas,
                "serviceName": name,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "schedulingGates": gates,
                        "containers": [{
                            "name": "mysql",
                            "image": MYSQL_IMAGE,
                            "volumeMounts": [{"name": "data", "mountPath": wiring::DEFAULT_DATADIR}],
                        }],
                    },
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }],
            },
        }))?;
        Ok(sts)
    }

    /// Waits for the operator's wiring: the certificate Secret and the
    /// sidecar in the template.
    async fn wait_wired(&self, name: &str) -> Result<StatefulSet> {
        let ns = &self.namespace;
        let statefulsets: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let tls_secret = wiring::tls_secret_name(name);
        let deadline = Instant::now() + WIRING_TIMEOUT;
        loop {
            let sts = statefulsets.get(name).await?;
            let wired = sts
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .is_some_and(|p| {
                    p.containers
                        .iter()
                        .chain(p.init_containers.iter().flatten())
                        .any(|c| c.name == wiring::AGENT_CONTAINER)
                });
            if wired && secrets.get_opt(&tls_secret).await?.is_some() {
                return Ok(sts);
            }
            if Instant::now() > deadline {
                bail!(
                    "the operator did not wire StatefulSet {name} within {WIRING_TIMEOUT:?} (sidecar in template: {wired})"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes the agent's certificate, key and CA from the StatefulSet's
    /// TLS Secret where its pods' agents read them.
    async fn write_tls(&self, name: &str) -> Result<()> {
        self.pods.write_tls(name).await
    }

    /// Creates an opted-in StatefulSet of one pod whose template carries
    /// the operator's scheduling gate, and plays the StatefulSet controller
    /// and kubelet for it as a real cluster would at its worst: pod
    /// `<name>-0` is made the moment the StatefulSet exists, from the
    /// template the create returned (before the operator could wire it), and
    /// again whenever it is deleted, from the template of that time. A pod
    /// is started only once no scheduling gate is left on it: `on_start`
    /// does what its init container would (the test decides, and sees the
    /// pod's spec) and returns the MySQL it then runs; then its agent
    /// starts and the pod turns Running and Ready. Returns the pods made,
    /// in order, as the stand-in made them.
    pub async fn create_gated_stateful_set(
        &self,
        name: &str,
        annotations: &[(&str, &str)],
        on_start: PodStartHook,
    ) -> Result<Arc<Mutex<Vec<Pod>>>> {
        let ns = &self.namespace;
        let statefulsets: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        let sts = self.stateful_set(name, 1, annotations, true)?;
        let created = statefulsets
            .create(&PostParams::default(), &sts)
            .await
            .with_context(|| format!("creating StatefulSet {name}"))?;
        let pod = format!("{name}-0");
        lock(&self.pods.0.pods).insert(
            pod.clone(),
            PodRecord {
                stateful_set: name.to_owned(),
                mysql: None,
                agent: None,
                real: None,
                present: false,
            },
        );
        let made = Arc::new(Mutex::new(Vec::new()));
        let first = self.pods.make_pod(&pod, &created).await?;
        lock(&made).push(first);
        let task = tokio::spawn(statefulset_controller(
            self.pods.clone(),
            name.to_owned(),
            pod,
            on_start,
            made.clone(),
        ));
        lock(&self.stand_ins).push(task);
        Ok(made)
    }

    /// Starts pod `<name>-<ordinal>` of a StatefulSet made by
    /// [`Self::create_stateful_set`]: its agent beside `mysql`, then the pod,
    /// Running and Ready.
    pub async fn start_pod(&self, name: &str, ordinal: usize, mysql: &PodMysql) -> Result<()> {
        let pod = format!("{name}-{ordinal}");
        lock(&self.pods.0.pods).insert(
            pod.clone(),
            PodRecord {
                stateful_set: name.to_owned(),
                mysql: Some(mysql.clone()),
                agent: None,
                real: None,
                present: false,
            },
        );
        self.pods.start_agent(&pod).await?;
        self.pods.create_pod(&pod).await?;
        Ok(())
    }

    /// Creates this StatefulSet (it must carry the opt-in label, and no
    /// scheduling gate) and waits for the operator to wire it.
    pub async fn create_custom_stateful_set(&self, sts: &StatefulSet) -> Result<StatefulSet> {
        let name = sts.name_any();
        Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace)
            .create(&PostParams::default(), sts)
            .await
            .with_context(|| format!("creating StatefulSet {name}"))?;
        let wired = self.wait_wired(&name).await?;
        self.write_tls(&name).await?;
        Ok(wired)
    }

    /// Makes pod `<name>-<ordinal>` from the StatefulSet's template in the
    /// API, has `run` run it for real (in the [`crate::Kubelet`]: the pod
    /// as the API holds it), then marks it Running and Ready, its agent
    /// listening on `agent_port` of 127.0.0.1. Each time the pod is deleted,
    /// the [`PodDeletedHook`] must stop what runs; on [`PodFate::Recreate`]
    /// the pod is made again from the template of that time and `run` runs
    /// it. The cluster starts no agent for it. Returns the Ready pod.
    pub async fn register_real_pod(
        &self,
        name: &str,
        ordinal: usize,
        agent_port: u16,
        run: PodRunHook,
    ) -> Result<Pod> {
        let pod = format!("{name}-{ordinal}");
        lock(&self.pods.0.pods).insert(
            pod.clone(),
            PodRecord {
                stateful_set: name.to_owned(),
                mysql: None,
                agent: None,
                real: Some(RealPod { agent_port, run }),
                present: false,
            },
        );
        self.pods.create_pod(&pod).await
    }

    /// A Secret in the test's namespace.
    pub async fn create_secret(&self, name: &str, data: &[(&str, &[u8])]) -> Result<()> {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .create(&PostParams::default(), &secret)
            .await
            .with_context(|| format!("creating Secret {name}"))?;
        Ok(())
    }

    /// A Secret with the S3 server's keys under the operator's default
    /// key names (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
    pub async fn create_s3_secret(&self, name: &str, s3: &S3Server) -> Result<()> {
        self.create_secret(
            name,
            &[
                ("AWS_ACCESS_KEY_ID", s3.access_key().as_bytes()),
                ("AWS_SECRET_ACCESS_KEY", s3.secret_key().as_bytes()),
            ],
        )
        .await
    }

    /// Waits until the MySQLBackup satisfies `done`; the error shows its
    /// last status.
    pub async fn wait_backup(
        &self,
        name: &str,
        within: Duration,
        done: impl Fn(&MySQLBackup) -> bool,
    ) -> Result<MySQLBackup> {
        let api: Api<MySQLBackup> = self.api();
        let deadline = Instant::now() + within;
        loop {
            let backup = api.get_opt(name).await?;
            if let Some(backup) = &backup
                && done(backup)
            {
                return Ok(backup.clone());
            }
            if Instant::now() > deadline {
                bail!(
                    "MySQLBackup {name} not as expected within {within:?}; last seen: {}",
                    serde_json::to_string_pretty(&backup.map(|b| b.status))?
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the MySQLBackup is Completed or Failed.
    pub async fn wait_backup_finished(&self, name: &str, within: Duration) -> Result<MySQLBackup> {
        self.wait_backup(name, within, |b| b.phase().is_terminal())
            .await
    }

    /// Waits until the MySQLBackup is gone from the API (its finalizer ran).
    pub async fn wait_backup_gone(&self, name: &str, within: Duration) -> Result<()> {
        let api: Api<MySQLBackup> = self.api();
        let deadline = Instant::now() + within;
        while api.get_opt(name).await?.is_some() {
            if Instant::now() > deadline {
                bail!("MySQLBackup {name} still exists after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The Events about an object of the test's namespace, oldest first.
    pub async fn events_about(&self, name: &str) -> Result<Vec<Event>> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut found: Vec<Event> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        found.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        Ok(found)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.operator.abort();
        self.kubelet.abort();
        for task in lock(&self.stand_ins).drain(..) {
            task.abort();
        }
        self.pods.kill_all();
    }
}

fn default_agent_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("INNOXIDE_AGENT_BIN") {
        return Ok(path.into());
    }
    // target/<profile>/deps/<test binary> → target/<profile>/innoxide-agent
    let me = std::env::current_exe()?;
    let profile = me
        .parent()
        .and_then(|deps| {
            if deps.ends_with("deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .context("no folder around the test binary")?;
    Ok(profile.join("innoxide-agent"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

struct PodRecord {
    stateful_set: String,
    /// None until a gated pod is started (see [`PodStartHook`]).
    mysql: Option<PodMysql>,
    agent: Option<AgentProcess>,
    /// A pod that really runs (see [`Cluster::register_real_pod`]).
    real: Option<RealPod>,
    /// The pod exists in the API (as far as the kubelet stand-in knows).
    present: bool,
}

/// How a pod that really runs is run, and where its agent listens.
struct RealPod {
    agent_port: u16,
    run: PodRunHook,
}

/// Runs a pod for real, the kubelet's part (see
/// [`Cluster::register_real_pod`]): it gets the pod exactly as the API holds
/// it and returns once its containers serve.
pub type PodRunHook = Arc<dyn Fn(Pod) -> BoxFuture<'static, Result<()>> + Send + Sync>;

struct Shared {
    agent_binary: PathBuf,
    dir: PathBuf,
    namespace: String,
    /// The routed client: core kinds on their mirrors in the real server.
    client: Client,
    run: RunEntry,
    pods: Mutex<BTreeMap<String, PodRecord>>,
    hook: Mutex<Option<PodDeletedHook>>,
}

/// The pods of a [`Cluster`] and their agents; cheap to clone (hooks get one).
#[derive(Clone)]
pub struct Pods(Arc<Shared>);

/// One `innoxide-agent serve` process; killed when dropped.
struct AgentProcess {
    child: tokio::process::Child,
    grpc: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Pods {
    /// The routed client, for hooks.
    pub fn client(&self) -> Client {
        self.0.client.clone()
    }

    /// The pod's agent's gRPC address while it runs.
    pub fn agent_address(&self, pod: &str) -> Option<SocketAddr> {
        lock(&self.0.pods)
            .get(pod)
            .and_then(|r| r.agent.as_ref())
            .map(|a| a.grpc)
    }

    /// The pod's agent's `--state-dir` (what `innoxide-agent init` needs to
    /// find an armed swap).
    pub fn state_dir(&self, pod: &str) -> PathBuf {
        self.0.dir.join("state").join(pod)
    }

    /// The pod's agent's log lines so far (JSON), for failure messages.
    pub fn agent_log(&self, pod: &str) -> String {
        lock(&self.0.pods)
            .get(pod)
            .and_then(|r| r.agent.as_ref())
            .map(|a| lock(&a.log).join("\n"))
            .unwrap_or_default()
    }

    /// Starts the pod's agent (stopping a running one first). The pod, if
    /// it exists, keeps the port it was made with: call
    /// [`Self::create_pod`] after deleting it to point it at the new agent.
    pub async fn start_agent(&self, pod: &str) -> Result<SocketAddr> {
        self.stop_agent(pod);
        let (sts, mysql) = {
            let pods = lock(&self.0.pods);
            let record = pods.get(pod).with_context(|| format!("no pod {pod}"))?;
            let mysql = record
                .mysql
                .clone()
                .with_context(|| format!("pod {pod} has not started: no MySQL yet"))?;
            (record.stateful_set.clone(), mysql)
        };
        let tls = self.0.dir.join("tls").join(&sts);
        let state = self.state_dir(pod);
        std::fs::create_dir_all(&state)?;
        let mut command = tokio::process::Command::new(&self.0.agent_binary);
        command
            .args([
                "serve",
                "--listen=127.0.0.1:0",
                "--metrics-listen=127.0.0.1:0",
                "--shutdown-grace=5s",
            ])
            .arg(format!("--user={}", mysql.user))
            .arg(format!("--socket={}", mysql.socket.display()))
            .arg(format!("--datadir={}", mysql.datadir.display()))
            .arg(format!("--mysqld={}", mysql.mysqld.display()))
            .arg(format!("--state-dir={}", state.display()))
            .arg(format!("--tls-cert={}", tls.join("tls.crt").display()))
            .arg(format!("--tls-key={}", tls.join("tls.key").display()))
            .arg(format!("--tls-client-ca={}", tls.join("ca.crt").display()))
            .env_remove("MYSQL_PWD")
            .env("INNOXIDE_LOG_JSON", "true")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.0.agent_binary.display()))?;
        if let Some(pid) = child.id() {
            self.0.run.record(&format!("agent-{pod}"), pid as i32)?;
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stderr = child.stderr.take().context("agent stderr")?;
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "listening"
                {
                    let _ = tx.send(event["grpc"].as_str().map(str::to_owned));
                }
                lock(&sink).push(line);
            }
        });
        let grpc: SocketAddr = match tokio::time::timeout(AGENT_START_TIMEOUT, rx.recv()).await {
            Ok(Some(Some(addr))) => addr.parse()?,
            _ => {
                let _ = child.start_kill();
                bail!(
                    "the agent of pod {pod} did not start listening:\n{}",
                    lock(&log).join("\n")
                );
            }
        };
        if let Some(record) = lock(&self.0.pods).get_mut(pod) {
            record.agent = Some(AgentProcess { child, grpc, log });
        }
        Ok(grpc)
    }

    /// Kills the pod's agent (SIGKILL); the pod stays as it is, so the
    /// operator finds it Ready with nobody answering.
    pub fn stop_agent(&self, pod: &str) {
        let agent = lock(&self.0.pods).get_mut(pod).and_then(|r| r.agent.take());
        if let Some(mut agent) = agent {
            let _ = agent.child.start_kill();
            self.0.run.clear(&format!("agent-{pod}"));
        }
    }

    /// Creates the pod from its StatefulSet's current template, Running and
    /// Ready on 127.0.0.1, its annotation naming its agent's port (a port
    /// nobody listens on when the agent is stopped). A pod that really runs
    /// is run (from the pod the create returned) before it turns Ready.
    pub async fn create_pod(&self, pod: &str) -> Result<Pod> {
        let sts_name = {
            let pods = lock(&self.0.pods);
            let record = pods.get(pod).with_context(|| format!("no pod {pod}"))?;
            record.stateful_set.clone()
        };
        let ns = &self.0.namespace;
        let sts = Api::<StatefulSet>::namespaced(self.0.client.clone(), ns)
            .get(&sts_name)
            .await?;
        let made = self.make_pod(pod, &sts).await?;
        let run = lock(&self.0.pods)
            .get(pod)
            .and_then(|r| r.real.as_ref())
            .map(|r| r.run.clone());
        if let Some(run) = run {
            run(made)
                .await
                .with_context(|| format!("running pod {pod}"))?;
        }
        self.mark_running(pod).await
    }

    /// Makes the pod from the StatefulSet's template as given, as the
    /// StatefulSet controller does (its name, claims' volumes, hostname,
    /// labels, controller reference); not started.
    async fn make_pod(&self, pod: &str, sts: &StatefulSet) -> Result<Pod> {
        let ns = &self.0.namespace;
        let sts_name = sts.name_any();
        let ordinal: usize = pod
            .strip_prefix(&format!("{sts_name}-"))
            .and_then(|o| o.parse().ok())
            .with_context(|| format!("pod {pod} is not one of StatefulSet {sts_name}'s"))?;
        let made = crate::kubelet::stateful_set_pod(sts, ordinal)?;
        let mut metadata = made.metadata;
        metadata.namespace = Some(ns.clone());
        let labels = metadata.labels.get_or_insert_with(Default::default);
        labels.insert(wiring::STATEFULSET_POD_LABEL.into(), pod.to_owned());
        labels.insert(
            "controller-revision-hash".into(),
            format!("{sts_name}-{}", sts.metadata.generation.unwrap_or_default()),
        );
        metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                name: sts_name.clone(),
                uid: sts.uid().context("the StatefulSet has no uid")?,
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        ]);
        let pods: Api<Pod> = Api::namespaced(self.0.client.clone(), ns);
        pods.create(
            &PostParams::default(),
            &Pod {
                metadata,
                spec: made.spec,
                status: None,
            },
        )
        .await
        .with_context(|| format!("creating pod {pod}"))
    }

    /// The kubelet's part: the pod's annotation names its agent's port (a
    /// port nobody listens on when the agent is stopped), and it turns
    /// Running and Ready on 127.0.0.1.
    async fn mark_running(&self, pod: &str) -> Result<Pod> {
        let port = {
            let pods = lock(&self.0.pods);
            let record = pods.get(pod).with_context(|| format!("no pod {pod}"))?;
            match (&record.agent, &record.real) {
                (Some(agent), _) => agent.grpc.port(),
                (None, Some(real)) => real.agent_port,
                (None, None) => closed_port()?,
            }
        };
        let pods: Api<Pod> = Api::namespaced(self.0.client.clone(), &self.0.namespace);
        let annotated = serde_json::json!({"metadata": {"annotations": {
            wiring::AGENT_PORT_ANNOTATION: port.to_string(),
        }}});
        pods.patch(pod, &PatchParams::default(), &Patch::Merge(&annotated))
            .await
            .with_context(|| format!("annotating pod {pod}"))?;
        let status = serde_json::json!({"status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
            ],
        }});
        let ready = pods
            .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .with_context(|| format!("marking pod {pod} Ready"))?;
        if let Some(record) = lock(&self.0.pods).get_mut(pod) {
            record.present = true;
        }
        Ok(ready)
    }

    /// Deletes the pod from the API, as `kubectl delete pod` would; the
    /// kubelet stand-in then stops its agent and runs the hook.
    pub async fn delete_pod(&self, pod: &str) -> Result<()> {
        Api::<Pod>::namespaced(self.0.client.clone(), &self.0.namespace)
            .delete(pod, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting pod {pod}"))?;
        Ok(())
    }

    fn kill_all(&self) {
        let names: Vec<String> = lock(&self.0.pods).keys().cloned().collect();
        for pod in names {
            self.stop_agent(&pod);
        }
    }
}

impl Pods {
    /// Writes the agent's certificate, key and CA from the StatefulSet's
    /// TLS Secret where its pods' agents read them.
    async fn write_tls(&self, sts: &str) -> Result<()> {
        let secrets: Api<Secret> = Api::namespaced(self.0.client.clone(), &self.0.namespace);
        let tls_secret = wiring::tls_secret_name(sts);
        let secret = secrets.get(&tls_secret).await?;
        let tls_dir = self.0.dir.join("tls").join(sts);
        std::fs::create_dir_all(&tls_dir)?;
        let data = secret.data.unwrap_or_default();
        for key in ["tls.crt", "tls.key", "ca.crt"] {
            let value = data
                .get(key)
                .with_context(|| format!("Secret {tls_secret} has no {key}"))?;
            std::fs::write(tls_dir.join(key), &value.0)?;
        }
        Ok(())
    }
}

/// A gated pod the kubelet stand-in starts now that no scheduling gate is
/// left on it, as a [`PodStartHook`] sees it.
#[derive(Clone)]
pub struct PodStart {
    /// The pod as the API has it: its spec is what would run.
    pub pod: Pod,
    pub pods: Pods,
}

/// Does what the started pod's init containers would and returns the MySQL
/// it then runs (see [`Cluster::create_gated_stateful_set`]).
pub type PodStartHook = Arc<dyn Fn(PodStart) -> BoxFuture<'static, Result<PodMysql>> + Send + Sync>;

/// How often the StatefulSet controller stand-in looks at its pod.
const STAND_IN_POLL: Duration = Duration::from_millis(100);

/// The StatefulSet controller and kubelet for one gated StatefulSet of one
/// pod: a deleted pod is made again from the current template; a pod with
/// no gate left is started once.
async fn statefulset_controller(
    pods: Pods,
    sts: String,
    pod: String,
    on_start: PodStartHook,
    made: Arc<Mutex<Vec<Pod>>>,
) {
    let ns = pods.0.namespace.clone();
    let pod_api: Api<Pod> = Api::namespaced(pods.0.client.clone(), &ns);
    let sts_api: Api<StatefulSet> = Api::namespaced(pods.0.client.clone(), &ns);
    let mut started: Option<String> = None;
    loop {
        tokio::time::sleep(STAND_IN_POLL).await;
        let current = match pod_api.get_opt(&pod).await {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!(pod, "stand-in cannot read the pod: {e}");
                continue;
            }
        };
        let Some(current) = current else {
            if started.is_some() {
                // Started pods are the kubelet loop's (and its hook's).
                continue;
            }
            let made_again = match sts_api.get(&sts).await {
                Ok(template) => pods.make_pod(&pod, &template).await,
                Err(e) => Err(e.into()),
            };
            match made_again {
                Ok(new) => lock(&made).push(new),
                Err(e) => eprintln!("stand-in: cannot make pod {pod} again: {e:#}"),
            }
            continue;
        };
        let gated = current
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        if gated || current.metadata.deletion_timestamp.is_some() || started.is_some() {
            continue;
        }
        started = current.metadata.uid.clone();
        let result = async {
            let mysql = on_start(PodStart {
                pod: current.clone(),
                pods: pods.clone(),
            })
            .await?;
            if let Some(record) = lock(&pods.0.pods).get_mut(&pod) {
                record.mysql = Some(mysql);
            }
            pods.write_tls(&sts).await?;
            pods.start_agent(&pod).await?;
            pods.mark_running(&pod).await
        }
        .await;
        if let Err(e) = result {
            // A test's own assertion may be the cause: show it.
            eprintln!("stand-in: cannot start pod {pod}: {e:#}");
        }
    }
}

/// A loopback port nobody listens on now.
fn closed_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The kubelet and StatefulSet controller, as far as tests need them: a
/// pod that vanished from the API loses its agent, then the hook (default:
/// recreate) says what follows.
async fn kubelet(pods: Pods) {
    let api: Api<Pod> = Api::namespaced(pods.0.client.clone(), &pods.0.namespace);
    loop {
        tokio::time::sleep(KUBELET_POLL).await;
        let Ok(listed) = api.list(&ListParams::default()).await else {
            continue;
        };
        let existing: Vec<String> = listed.items.iter().map(|p| p.name_any()).collect();
        let vanished: Vec<(String, String)> = lock(&pods.0.pods)
            .iter_mut()
            .filter(|(name, r)| r.present && !existing.contains(name))
            .map(|(name, r)| {
                r.present = false;
                (name.clone(), r.stateful_set.clone())
            })
            .collect();
        for (pod, stateful_set) in vanished {
            pods.stop_agent(&pod);
            let hook = lock(&pods.0.hook).clone();
            let fate = match hook {
                Some(hook) => {
                    hook(PodDeleted {
                        pod: pod.clone(),
                        stateful_set,
                        pods: pods.clone(),
                    })
                    .await
                }
                None => PodFate::Recreate,
            };
            if fate == PodFate::Recreate {
                let real = lock(&pods.0.pods)
                    .get(&pod)
                    .is_some_and(|r| r.real.is_some());
                let started = if real {
                    Ok(())
                } else {
                    pods.start_agent(&pod).await.map(|_| ())
                };
                let recreated = match started {
                    Ok(()) => pods.create_pod(&pod).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = recreated {
                    tracing::error!(pod, "cannot recreate the pod: {e:#}");
                }
            }
        }
    }
}
