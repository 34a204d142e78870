//! A kubelet stand-in that runs a Pod for real, in podman: the pod a
//! StatefulSet controller makes from its template ([`stateful_set_pod`]), its
//! volumes made on the host the way a kubelet makes them, its init containers
//! one after the other to completion, then its containers side by side.
//!
//! What it does as a kubelet does:
//! - securityContext, the container's over the pod's: runAsUser/runAsGroup
//!   (else the image's user), fsGroup and supplementalGroups as extra groups,
//!   runAsNonRoot (a pod that would run as root, or as a user name that cannot
//!   be checked, is refused before anything runs), readOnlyRootFilesystem,
//!   capabilities add/drop, allowPrivilegeEscalation, privileged, and the
//!   seccomp profile (unset means Unconfined, as in Kubernetes);
//! - Secret volumes written like the kubelet's atomic writer (`..data`
//!   symlink to a timestamped folder, one symlink per key), files owned by
//!   root with `items[].mode`, else `defaultMode`, else 0644, mounted
//!   read-only; with an fsGroup, the kubelet's ownership rule (group fsGroup,
//!   mode | 0440, folders setgid) applies to Secret, emptyDir and claim
//!   volumes alike;
//! - emptyDir volumes are fresh host folders (mode 0777) per pod run, claims
//!   are the host folders the test provides for them (they survive the pod);
//! - env from literal values, Secret keys and the pod's name, namespace, IP;
//!   hostAliases in /etc/hosts; hostname = the pod's name.
//!
//! What it does not: every pod uses the host's network (so a pod's ports must
//! be free on the host, and NetworkPolicies or Services cannot be shown),
//! there are no probes, no restarts on failure (a failing init container is
//! an error), no resource limits (podman here runs with cgroupfs on a hybrid
//! cgroup v1 machine), no image pulls (images must exist locally: `make
//! images`), no projected or ConfigMap volumes and no service account token.
//!
//! Containers carry a label with the test process's pid: a later run removes
//! the containers of test processes that died without cleaning up.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Secret,
    SecretVolumeSource, SecurityContext, Volume,
};
use kube::api::Api;
use tokio::process::Command;

use crate::registry::pid_is_running;
use crate::testbed::{CONTAINERS_CONF, containers_prefix};

/// The label on every container this stand-in starts: the test process's pid.
const OWNER_LABEL: &str = "innoxide.test.owner";
/// Secret volumes' files without a mode (the API server's default).
const SECRET_DEFAULT_MODE: u32 = 0o644;

/// The pod the StatefulSet controller makes for `ordinal`: the template with
/// the pod's name, hostname and subdomain (the governing Service) and, for
/// each claim template, a volume of that name bound to the claim
/// `<template>-<statefulset>-<ordinal>`.
pub fn stateful_set_pod(sts: &StatefulSet, ordinal: usize) -> Result<Pod> {
    let name = sts
        .metadata
        .name
        .clone()
        .context("a StatefulSet without a name")?;
    let spec = sts.spec.as_ref().context("a StatefulSet without a spec")?;
    let mut metadata = spec.template.metadata.clone().unwrap_or_default();
    metadata.name = Some(format!("{name}-{ordinal}"));
    metadata.namespace = sts.metadata.namespace.clone();
    let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
    for template in spec.volume_claim_templates.iter().flatten() {
        let volume = template.metadata.name.clone().unwrap_or_default();
        pod_spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: format!("{volume}-{name}-{ordinal}"),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    pod_spec.hostname = Some(format!("{name}-{ordinal}"));
    pod_spec.subdomain = spec.service_name.clone();
    Ok(Pod {
        metadata,
        spec: Some(pod_spec),
        status: None,
    })
}

/// Runs pods in podman; see the module docs.
pub struct Kubelet {
    conf: PathBuf,
    root: PathBuf,
    secrets: Api<Secret>,
    claims: BTreeMap<String, PathBuf>,
}

/// One volume of a pod, on the host.
#[derive(Debug, Clone)]
struct HostVolume {
    path: PathBuf,
    /// Secret volumes are always mounted read-only.
    read_only: bool,
}

impl Kubelet {
    /// A kubelet that keeps its pods' volumes under `root` and reads Secrets
    /// from `secrets` (the pod's namespace). Installs podman when missing and
    /// removes containers left behind by dead test processes.
    pub async fn new(root: impl Into<PathBuf>, secrets: Api<Secret>) -> Result<Kubelet> {
        let conf = tokio::task::spawn_blocking(containers_prefix)
            .await??
            .join(CONTAINERS_CONF);
        let kubelet = Kubelet {
            conf,
            root: root.into(),
            secrets,
            claims: BTreeMap::new(),
        };
        kubelet.sweep_orphans().await?;
        Ok(kubelet)
    }

    /// The host folder bound to a PersistentVolumeClaim of this name.
    pub fn provide_claim(&mut self, claim: &str, folder: impl Into<PathBuf>) {
        self.claims.insert(claim.to_owned(), folder.into());
    }

    fn podman(&self) -> Command {
        podman(&self.conf)
    }

    async fn sweep_orphans(&self) -> Result<()> {
        let out = self
            .podman()
            .args(["ps", "--all", "--filter", &format!("label={OWNER_LABEL}")])
            .args([
                "--format",
                &format!("{{{{.ID}}}} {{{{index .Labels \"{OWNER_LABEL}\"}}}}"),
            ])
            .output()
            .await
            .context("running podman ps")?;
        let listing = String::from_utf8_lossy(&out.stdout);
        let orphans: Vec<&str> = listing
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, pid)| pid.trim().parse::<i32>().is_ok_and(|p| !pid_is_running(p)))
            .map(|(id, _)| id)
            .collect();
        if !orphans.is_empty() {
            tracing::warn!(?orphans, "removing containers of dead test processes");
            self.podman()
                .args(["rm", "--force"])
                .args(&orphans)
                .output()
                .await?;
        }
        Ok(())
    }

    /// Runs the pod: volumes, init containers in order (each must succeed),
    /// then every container, detached.
    pub async fn run(&self, pod: &Pod) -> Result<RunningPod> {
        let name = pod.metadata.name.clone().context("a pod without a name")?;
        let spec = pod.spec.as_ref().context("a pod without a spec")?;
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("innoxide-{}-{run}-{name}", std::process::id());
        let pod_dir = self.root.join(format!("{name}-{run}"));
        let volumes = self.make_volumes(&pod_dir, spec).await?;
        let mut running = RunningPod {
            name: name.clone(),
            conf: self.conf.clone(),
            containers: Vec::new(),
            init_logs: Vec::new(),
            pod_dir,
            grace: Duration::from_secs(
                spec.termination_grace_period_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(30),
            ),
        };
        for init in spec.init_containers.iter().flatten() {
            let args = self
                .run_args(pod, init, &volumes, &format!("{prefix}-{}", init.name))
                .await?;
            let out = self
                .podman()
                .args(["run", "--rm"])
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .await
                .with_context(|| format!("running init container {}", init.name))?;
            let log = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if !out.status.success() {
                bail!(
                    "pod {name}: init container {} failed ({}):\n{log}",
                    init.name,
                    out.status
                );
            }
            running.init_logs.push((init.name.clone(), log));
        }
        for container in &spec.containers {
            let podman_name = format!("{prefix}-{}", container.name);
            let args = self
                .run_args(pod, container, &volumes, &podman_name)
                .await?;
            let out = self
                .podman()
                .args(["run", "--detach"])
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .await
                .with_context(|| format!("starting container {}", container.name))?;
            if !out.status.success() {
                bail!(
                    "pod {name}: container {} did not start ({}): {}",
                    container.name,
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            running
                .containers
                .push((container.name.clone(), podman_name));
        }
        Ok(running)
    }

    /// Every volume of the pod on the host, as the kubelet sets them up.
    async fn make_volumes(
        &self,
        pod_dir: &Path,
        spec: &PodSpec,
    ) -> Result<BTreeMap<String, HostVolume>> {
        let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
        let mut volumes = BTreeMap::new();
        for volume in spec.volumes.iter().flatten() {
            let host = if volume.empty_dir.is_some() {
                let path = pod_dir.join("empty-dir").join(&volume.name);
                std::fs::create_dir_all(&path)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
                HostVolume {
                    path,
                    read_only: false,
                }
            } else if let Some(claim) = &volume.persistent_volume_claim {
                let path = self.claims.get(&claim.claim_name).with_context(|| {
                    format!(
                        "volume {}: no folder provided for claim {}",
                        volume.name, claim.claim_name
                    )
                })?;
                HostVolume {
                    path: path.clone(),
                    read_only: claim.read_only.unwrap_or(false),
                }
            } else if let Some(secret) = &volume.secret {
                let path = pod_dir.join("secret").join(&volume.name);
                let data = self.secret_data(secret).await?;
                write_secret_volume(&path, secret, data.as_ref())?;
                HostVolume {
                    path,
                    read_only: true,
                }
            } else {
                bail!(
                    "volume {}: only emptyDir, persistentVolumeClaim and secret volumes are supported by the kubelet stand-in",
                    volume.name
                );
            };
            if let Some(gid) = fs_group {
                apply_fs_group(&host.path, gid_of(gid)?, host.read_only)?;
            }
            volumes.insert(volume.name.clone(), host);
        }
        Ok(volumes)
    }

    async fn secret_data(
        &self,
        source: &SecretVolumeSource,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
        let name = source.secret_name.clone().unwrap_or_default();
        match self.secrets.get_opt(&name).await? {
            Some(secret) => Ok(Some(secret_bytes(&secret))),
            None if source.optional == Some(true) => Ok(None),
            None => bail!("Secret {name} not found: the kubelet cannot start the pod"),
        }
    }

    async fn env(&self, pod: &Pod, container: &Container) -> Result<Vec<String>> {
        let mut env = Vec::new();
        for var in container.env.iter().flatten() {
            if let Some(value) = self.env_value(pod, var).await? {
                env.push(format!("{}={value}", var.name));
            }
        }
        if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
            bail!(
                "container {}: envFrom is not supported by the kubelet stand-in",
                container.name
            );
        }
        Ok(env)
    }

    async fn env_value(&self, pod: &Pod, var: &EnvVar) -> Result<Option<String>> {
        let Some(from) = &var.value_from else {
            return Ok(Some(var.value.clone().unwrap_or_default()));
        };
        if let Some(key) = &from.secret_key_ref {
            let value = match self.secrets.get_opt(&key.name).await? {
                Some(secret) => secret_bytes(&secret).remove(&key.key),
                None => None,
            };
            return match value {
                Some(v) => Ok(Some(String::from_utf8(v).with_context(|| {
                    format!(
                        "env {}: Secret {} key {} is not UTF-8",
                        var.name, key.name, key.key
                    )
                })?)),
                None if key.optional == Some(true) => Ok(None),
                None => bail!(
                    "env {}: Secret {} has no key {} (CreateContainerConfigError)",
                    var.name,
                    key.name,
                    key.key
                ),
            };
        }
        if let Some(field) = &from.field_ref {
            return Ok(Some(match field.field_path.as_str() {
                "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
                "metadata.namespace" => pod.metadata.namespace.clone().unwrap_or_default(),
                "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
                other => bail!("env {}: fieldRef {other} is not supported", var.name),
            }));
        }
        bail!(
            "env {}: only values, Secret keys and fieldRefs are supported",
            var.name
        )
    }

    /// `podman run` arguments for one container, or why the kubelet would
    /// refuse to start it.
    async fn run_args(
        &self,
        pod: &Pod,
        container: &Container,
        volumes: &BTreeMap<String, HostVolume>,
        podman_name: &str,
    ) -> Result<Vec<String>> {
        let image = container
            .image
            .clone()
            .with_context(|| format!("container {} has no image", container.name))?;
        let out = self
            .podman()
            .args(["image", "inspect", "--format", "{{.Config.User}}", &image])
            .output()
            .await?;
        if !out.status.success() {
            bail!("image {image} is not in podman's store: build it (`make images`)");
        }
        let image_user = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut args = vec![
            format!("--name={podman_name}"),
            format!("--label={OWNER_LABEL}={}", std::process::id()),
            "--network=host".into(),
            format!(
                "--hostname={}",
                spec.hostname
                    .clone()
                    .or_else(|| pod.metadata.name.clone())
                    .unwrap_or_default()
            ),
        ];
        args.extend(
            security_args(
                spec.security_context.as_ref(),
                container.security_context.as_ref(),
                &image_user,
            )
            .with_context(|| format!("container {}", container.name))?,
        );
        for alias in spec.host_aliases.iter().flatten() {
            for host in alias.hostnames.iter().flatten() {
                args.push(format!("--add-host={host}:{}", alias.ip));
            }
        }
        for mount in container.volume_mounts.iter().flatten() {
            let volume = volumes.get(&mount.name).with_context(|| {
                format!(
                    "container {} mounts {}, which is not a volume of the pod",
                    container.name, mount.name
                )
            })?;
            let mut source = volume.path.clone();
            if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                source = source.join(sub);
                std::fs::create_dir_all(&source)?;
            }
            let read_only = volume.read_only || mount.read_only == Some(true);
            args.push(format!(
                "--mount=type=bind,source={},destination={}{}",
                source.display(),
                mount.mount_path,
                if read_only { ",ro=true" } else { "" }
            ));
        }
        for env in self.env(pod, container).await? {
            args.push("--env".into());
            args.push(env);
        }
        if let Some(dir) = &container.working_dir {
            args.push(format!("--workdir={dir}"));
        }
        if let Some(command) = &container.command {
            args.push(format!("--entrypoint={}", serde_json::to_string(command)?));
        }
        args.push(image);
        args.extend(container.args.iter().flatten().cloned());
        Ok(args)
    }
}

/// The security flags of one container: the container's securityContext
/// over the pod's, checked the way the kubelet checks runAsNonRoot.
fn security_args(
    pod: Option<&PodSecurityContext>,
    container: Option<&SecurityContext>,
    image_user: &str,
) -> Result<Vec<String>> {
    let pod = pod.cloned().unwrap_or_default();
    let c = container.cloned().unwrap_or_default();
    let run_as_user = c.run_as_user.or(pod.run_as_user);
    let run_as_group = c.run_as_group.or(pod.run_as_group);
    let non_root = c.run_as_non_root.or(pod.run_as_non_root) == Some(true);
    let mut args = Vec::new();
    if non_root {
        match run_as_user {
            Some(0) => {
                bail!("container's runAsUser breaks non-root policy (runAsNonRoot and runAsUser 0)")
            }
            Some(_) => {}
            None => {
                let user = image_user.split(':').next().unwrap_or_default();
                match user.parse::<i64>() {
                    Ok(0) => bail!("container has runAsNonRoot and image will run as root"),
                    Ok(_) => {}
                    Err(_) if user.is_empty() => {
                        bail!("container has runAsNonRoot and image will run as root")
                    }
                    Err(_) => bail!(
                        "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root"
                    ),
                }
            }
        }
    }
    match (run_as_user, run_as_group) {
        (Some(u), Some(g)) => args.push(format!("--user={u}:{g}")),
        (Some(u), None) => args.push(format!("--user={u}")),
        (None, Some(g)) => {
            let user = image_user
                .split(':')
                .next()
                .filter(|u| !u.is_empty())
                .unwrap_or("0");
            args.push(format!("--user={user}:{g}"));
        }
        (None, None) => {}
    }
    for group in pod
        .fs_group
        .iter()
        .chain(pod.supplemental_groups.iter().flatten())
    {
        args.push(format!("--group-add={group}"));
    }
    if c.privileged == Some(true) {
        args.push("--privileged".into());
    }
    if let Some(caps) = &c.capabilities {
        for cap in caps.drop.iter().flatten() {
            args.push(format!("--cap-drop={}", cap.to_lowercase()));
        }
        for cap in caps.add.iter().flatten() {
            args.push(format!("--cap-add={}", cap.to_lowercase()));
        }
    }
    if c.allow_privilege_escalation == Some(false) {
        args.push("--security-opt=no-new-privileges".into());
    }
    let seccomp = c.seccomp_profile.or(pod.seccomp_profile);
    match seccomp.as_ref().map(|s| s.type_.as_str()) {
        Some("RuntimeDefault") => {}
        None | Some("Unconfined") => args.push("--security-opt=seccomp=unconfined".into()),
        Some(other) => bail!("seccomp profile {other} is not supported by the kubelet stand-in"),
    }
    if c.read_only_root_filesystem == Some(true) {
        // Kubernetes adds no tmpfs of its own: /tmp, /run stay read-only.
        args.push("--read-only".into());
        args.push("--read-only-tmpfs=false".into());
    }
    Ok(args)
}

fn gid_of(gid: i64) -> Result<u32> {
    u32::try_from(gid).with_context(|| format!("group id {gid}"))
}

fn secret_bytes(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .string_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in secret.data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    data
}

/// A Secret volume as the kubelet's atomic writer leaves it: the files in a
/// timestamped folder, `..data` pointing at it, and one symlink per
/// top-level path through `..data`. The volume's root is a tmpfs in a real
/// kubelet (mode 1777).
fn write_secret_volume(
    dir: &Path,
    source: &SecretVolumeSource,
    data: Option<&BTreeMap<String, Vec<u8>>>,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777))?;
    let default_mode = source
        .default_mode
        .map(|m| m as u32)
        .unwrap_or(SECRET_DEFAULT_MODE);
    let Some(data) = data else {
        return Ok(());
    };
    let files: Vec<(String, Vec<u8>, u32)> = match &source.items {
        Some(items) => items
            .iter()
            .map(|item| {
                let value = data.get(&item.key).with_context(|| {
                    format!(
                        "Secret {} has no key {}",
                        source.secret_name.as_deref().unwrap_or_default(),
                        item.key
                    )
                })?;
                Ok((
                    item.path.clone(),
                    value.clone(),
                    item.mode.map(|m| m as u32).unwrap_or(default_mode),
                ))
            })
            .collect::<Result<_>>()?,
        None => data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), default_mode))
            .collect(),
    };
    let stamp = atomic_writer_stamp();
    let versioned = dir.join(format!("..{stamp}"));
    std::fs::create_dir(&versioned)?;
    std::fs::set_permissions(&versioned, std::fs::Permissions::from_mode(0o755))?;
    let mut top_level = Vec::new();
    for (path, value, mode) in files {
        let file = versioned.join(&path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, value)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o777))?;
        let first = path.split('/').next().unwrap_or_default().to_owned();
        if !top_level.contains(&first) {
            top_level.push(first);
        }
    }
    symlink(format!("..{stamp}"), dir.join("..data"))?;
    for name in top_level {
        symlink(format!("..data/{name}"), dir.join(&name))?;
    }
    Ok(())
}

/// The name of the atomic writer's timestamped folder (seconds and
/// nanoseconds here), unique per write.
fn atomic_writer_stamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}_{:09}", now.as_secs(), now.subsec_nanos())
}

/// The kubelet's fsGroup ownership rule (`SetVolumeOwnership`): every file
/// and folder gets group `gid` and mode | 0660 (0440 on read-only volumes);
/// folders also get setgid and the group's execute bit. Symlinks are left
/// alone.
fn apply_fs_group(path: &Path, gid: u32, read_only: bool) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, None, Some(gid))
        .with_context(|| format!("changing the group of {}", path.display()))?;
    let mut mask = if read_only { 0o440 } else { 0o660 };
    if meta.is_dir() {
        mask |= 0o2000 | 0o110;
    }
    let mode = (meta.mode() & 0o7777) | mask;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            apply_fs_group(&entry?.path(), gid, read_only)?;
        }
    }
    Ok(())
}

fn podman(conf: &Path) -> Command {
    let mut command = Command::new("podman");
    command.env("CONTAINERS_CONF", conf).kill_on_drop(true);
    command
}

/// A pod whose containers run in podman; dropping it removes them.
pub struct RunningPod {
    name: String,
    conf: PathBuf,
    /// (container name in the pod, podman's name) of the running containers.
    containers: Vec<(String, String)>,
    init_logs: Vec<(String, String)>,
    pod_dir: PathBuf,
    grace: Duration,
}

impl RunningPod {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The init containers that ran to completion, in order.
    pub fn init_containers_run(&self) -> Vec<String> {
        self.init_logs.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The containers started (after the init containers), in order.
    pub fn containers_started(&self) -> Vec<String> {
        self.containers.iter().map(|(n, _)| n.clone()).collect()
    }

    /// What an init container printed.
    pub fn init_log(&self, container: &str) -> Option<&str> {
        self.init_logs
            .iter()
            .find(|(n, _)| n == container)
            .map(|(_, log)| log.as_str())
    }

    fn podman_name(&self, container: &str) -> Result<&str> {
        self.containers
            .iter()
            .find(|(n, _)| n == container)
            .map(|(_, p)| p.as_str())
            .with_context(|| format!("pod {} has no running container {container}", self.name))
    }

    /// A container's output so far (stdout and stderr).
    pub async fn logs(&self, container: &str) -> Result<String> {
        let out = podman(&self.conf)
            .args(["logs", self.podman_name(container)?])
            .output()
            .await?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// Whether the container is still running.
    pub async fn is_running(&self, container: &str) -> Result<bool> {
        let out = podman(&self.conf)
            .args([
                "inspect",
                "--format",
                "{{.State.Running}}",
                self.podman_name(container)?,
            ])
            .output()
            .await?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "true")
    }

    /// Waits until the container's output contains `needle`; fails early
    /// when the container exits, with its output.
    pub async fn wait_for_log(
        &self,
        container: &str,
        needle: &str,
        within: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let logs = self.logs(container).await?;
            if logs.contains(needle) {
                return Ok(());
            }
            if !self.is_running(container).await? {
                bail!(
                    "pod {}: container {container} exited before {needle:?}:\n{logs}",
                    self.name
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "pod {}: no {needle:?} from {container} within {within:?}:\n{logs}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops every container (SIGTERM, then SIGKILL after the pod's grace
    /// period) and removes them and the pod's emptyDir and Secret volumes,
    /// as when a pod is deleted. Claims stay.
    pub async fn stop(&mut self) -> Result<()> {
        let names: Vec<String> = self.containers.iter().map(|(_, p)| p.clone()).collect();
        if !names.is_empty() {
            let out = podman(&self.conf)
                .args(["stop", "--time", &self.grace.as_secs().to_string()])
                .args(&names)
                .output()
                .await?;
            if !out.status.success() {
                bail!(
                    "stopping pod {}: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            podman(&self.conf)
                .args(["rm", "--force"])
                .args(&names)
                .output()
                .await?;
        }
        self.containers.clear();
        if self.pod_dir.exists() {
            std::fs::remove_dir_all(&self.pod_dir)?;
        }
        Ok(())
    }
}

impl Drop for RunningPod {
    fn drop(&mut self) {
        let names: Vec<&str> = self.containers.iter().map(|(_, p)| p.as_str()).collect();
        if !names.is_empty() {
            let _ = std::process::Command::new("podman")
                .env("CONTAINERS_CONF", &self.conf)
                .args(["rm", "--force", "--time=0"])
                .args(&names)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, KeyToPath, SeccompProfile};

    fn restricted() -> SecurityContext {
        SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }
    }

    #[test]
    fn the_containers_context_wins_over_the_pods() {
        let pod = PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            fs_group: Some(2000),
            supplemental_groups: Some(vec![3000]),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        };
        let container = SecurityContext {
            run_as_user: Some(999),
            ..restricted()
        };
        let args = security_args(Some(&pod), Some(&container), "").unwrap();
        assert_eq!(
            args,
            [
                "--user=999:1000",
                "--group-add=2000",
                "--group-add=3000",
                "--cap-drop=all",
                "--security-opt=no-new-privileges",
                "--read-only",
                "--read-only-tmpfs=false",
            ]
        );
    }

    #[test]
    fn no_seccomp_profile_is_unconfined_as_in_kubernetes() {
        let args = security_args(None, None, "").unwrap();
        assert_eq!(args, ["--security-opt=seccomp=unconfined"]);
    }

    #[test]
    fn run_as_non_root_refuses_root_and_unverifiable_users() {
        let pod = PodSecurityContext {
            run_as_non_root: Some(true),
            ..PodSecurityContext::default()
        };
        for (image_user, refusal) in [
            ("", "image will run as root"),
            ("0", "image will run as root"),
            ("mysql", "non-numeric user (mysql)"),
        ] {
            let err = security_args(Some(&pod), None, image_user).unwrap_err();
            assert!(err.to_string().contains(refusal), "{image_user}: {err}");
        }
        let root = SecurityContext {
            run_as_user: Some(0),
            ..SecurityContext::default()
        };
        assert!(security_args(Some(&pod), Some(&root), "999").is_err());
        assert!(security_args(Some(&pod), None, "65532:65532").is_ok());
        let as_999 = SecurityContext {
            run_as_user: Some(999),
            ..SecurityContext::default()
        };
        assert!(security_args(Some(&pod), Some(&as_999), "mysql").is_ok());
    }

    fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn mode_of(path: &Path) -> (u32, u32, u32) {
        let meta = std::fs::metadata(path).unwrap();
        (meta.mode() & 0o7777, meta.uid(), meta.gid())
    }

    #[test]
    fn secret_volumes_are_written_like_the_atomic_writer_with_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("tls");
        let source = SecretVolumeSource {
            secret_name: Some("tls".into()),
            default_mode: Some(0o440),
            items: Some(vec![
                KeyToPath {
                    key: "tls.key".into(),
                    path: "tls.key".into(),
                    mode: Some(0o400),
                },
                KeyToPath {
                    key: "ca.crt".into(),
                    path: "ca.crt".into(),
                    mode: None,
                },
            ]),
            ..SecretVolumeSource::default()
        };
        let data = secret(&[("tls.key", "KEY"), ("ca.crt", "CA"), ("unused", "x")]);
        write_secret_volume(&volume, &source, Some(&data)).unwrap();
        assert_eq!(
            std::fs::read_to_string(volume.join("tls.key")).unwrap(),
            "KEY"
        );
        assert!(
            std::fs::symlink_metadata(volume.join("ca.crt"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!volume.join("unused").exists());
        let me = nix::unistd::getuid().as_raw();
        let group = nix::unistd::getgid().as_raw();
        assert_eq!(mode_of(&volume.join("tls.key")), (0o400, me, group));
        assert_eq!(mode_of(&volume.join("ca.crt")), (0o440, me, group));

        // With an fsGroup: group fsGroup, mode | 0440 (a read-only volume).
        apply_fs_group(&volume, 4242, true).unwrap();
        assert_eq!(mode_of(&volume.join("tls.key")), (0o440, me, 4242));
        assert_eq!(mode_of(&volume.join("ca.crt")), (0o440, me, 4242));
        assert_eq!(mode_of(&volume).0 & 0o2000, 0o2000, "folders are setgid");
    }

    #[test]
    fn a_missing_key_of_an_item_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let source = SecretVolumeSource {
            secret_name: Some("s".into()),
            items: Some(vec![KeyToPath {
                key: "nope".into(),
                path: "nope".into(),
                mode: None,
            }]),
            ..SecretVolumeSource::default()
        };
        let err =
            write_secret_volume(dir.path(), &source, Some(&secret(&[("k", "v")]))).unwrap_err();
        assert!(err.to_string().contains("no key nope"), "{err}");
    }

    #[test]
    fn a_statefulset_pod_gets_its_claims_and_name() {
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "prod"},
            "spec": {
                "selector": {},
                "serviceName": "db",
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "mysql"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
            },
        }))
        .unwrap();
        let pod = stateful_set_pod(&sts, 2).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("db-2"));
        let volumes = pod.spec.unwrap().volumes.unwrap();
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data-db-2"
        );
    }
}
