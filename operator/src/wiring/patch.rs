//! What a StatefulSet that opted in must have for the agent to run beside
//! its mysqld: pure, from the StatefulSet to the fields the operator applies
//! (server-side apply, our own field manager, so we own exactly these
//! fields and the user's own manifests keep theirs).
//!
//! - an init container that copies the agent binary from the agent image
//!   into a shared emptyDir;
//! - the agent sidecar, running that binary with the MySQL container's own
//!   image (apply-log later needs the exact mysqld of the source), sharing
//!   the data volume at the datadir's path and the MySQL socket's folder;
//! - its server certificate (a Secret) and any backup claims, mounted;
//! - an init container after the install one that runs `innoxide-agent
//!   init` on the data volume before mysqld starts: a no-op unless a
//!   restore armed a datadir swap, or, when the StatefulSet names a
//!   MySQLRestore (`innoxide.dev/restore-from`), the restore of a new,
//!   empty volume from that restore's spec Secret.
//!
//! Settings come from the StatefulSet's annotations, with defaults that fit
//! the official MySQL image.
//!
//! What a real kubelet and admission need of the injected containers:
//! - the mounted Secrets are readable by the agent's user: group-readable
//!   (0440) when the pod has an fsGroup (the kubelet gives them that group),
//!   else readable by all (0444), as the kubelet leaves them owned by root;
//!   each is mounted only into the one container that needs it;
//! - nothing of the agent gates the pod's readiness: an agent that is down
//!   never takes mysqld out of its Service (the operator dials the agent
//!   itself and reports a lost agent); a liveness probe restarts only the
//!   agent's container;
//! - `restricted` Pod Security: no privilege escalation, seccomp
//!   RuntimeDefault unless the pod or mysqld say otherwise, all capabilities
//!   dropped when the container cannot run as root, and the install
//!   container runs as the agent image's non-root user; a scratch /tmp lets
//!   the agent work under a read-only root file system;
//! - resources on every injected container, requests equal to limits so a
//!   Guaranteed mysqld pod stays Guaranteed (`innoxide.dev/agent-resources`
//!   overrides them for the sidecar and `init`);
//! - the agent image is pinned per StatefulSet: once wired, an operator
//!   upgrade keeps the image the pods run (a new one would roll every
//!   database at once); `innoxide.dev/agent-image` chooses another (an image
//!   reference, or `operator` to follow the operator's own), which rolls the
//!   pods when the user asks for it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{
    CLAIM_MOUNT_ROOT, RESTORE_FROM_ANNOTATION, RESTORE_SPEC_KEY, restore_spec_secret_name,
};

/// The label a StatefulSet opts in with (value `enabled`).
pub const AGENT_LABEL: &str = "innoxide.dev/agent";
pub const AGENT_LABEL_VALUE: &str = "enabled";
/// The agent sidecar's container name.
pub const AGENT_CONTAINER: &str = "innoxide-agent";
pub const INSTALL_CONTAINER: &str = "innoxide-agent-install";
/// The init container that runs `innoxide-agent init` before mysqld: the
/// armed datadir swap of an InPlace restore, or a NewStatefulSet restore.
pub const INIT_CONTAINER: &str = "innoxide-agent-init";
/// The agent's gRPC port unless `innoxide.dev/agent-port` says otherwise.
pub const AGENT_PORT: u16 = 9443;
pub const AGENT_METRICS_PORT: u16 = 9464;
/// On the StatefulSet (and copied to its pods): the agent's gRPC port.
pub const AGENT_PORT_ANNOTATION: &str = "innoxide.dev/agent-port";
/// On the StatefulSet: which container runs mysqld (default: the one named
/// `mysql`, else the first).
pub const MYSQL_CONTAINER_ANNOTATION: &str = "innoxide.dev/mysql-container";
/// On the StatefulSet: mysqld's datadir (default /var/lib/mysql).
pub const DATADIR_ANNOTATION: &str = "innoxide.dev/datadir";
/// On the StatefulSet: mysqld's socket (default /var/run/mysqld/mysqld.sock).
pub const SOCKET_ANNOTATION: &str = "innoxide.dev/mysql-socket";
/// On the StatefulSet: PersistentVolumeClaims (comma-separated) to mount
/// into the agent as `pvc` backup storage.
pub const CLAIMS_ANNOTATION: &str = "innoxide.dev/backup-claims";
/// On the StatefulSet: the agent image its pods run (default: the one they
/// run now, else the operator's); `operator` follows the operator's image.
pub const AGENT_IMAGE_ANNOTATION: &str = "innoxide.dev/agent-image";
/// The [`AGENT_IMAGE_ANNOTATION`] value that follows the operator's image.
pub const FOLLOW_OPERATOR_IMAGE: &str = "operator";
/// On the StatefulSet: the resources (JSON, as a container's `resources`)
/// of the agent sidecar and the `init` container.
pub const RESOURCES_ANNOTATION: &str = "innoxide.dev/agent-resources";
/// The agent sidecar's and `init`'s resources unless annotated: apply-log
/// runs a mysqld with a 256Mi buffer pool (a restore's default `useMemory`)
/// inside them. Requests equal limits, so a Guaranteed pod stays one.
pub const DEFAULT_AGENT_CPU: &str = "500m";
pub const DEFAULT_AGENT_MEMORY: &str = "1Gi";
/// The install container only copies one file.
const INSTALL_CPU: &str = "50m";
const INSTALL_MEMORY: &str = "64Mi";

pub const DEFAULT_DATADIR: &str = "/var/lib/mysql";
pub const DEFAULT_SOCKET: &str = "/var/run/mysqld/mysqld.sock";

const BIN_VOLUME: &str = "innoxide-agent-bin";
const BIN_DIR: &str = "/innoxide/bin";
const TLS_VOLUME: &str = "innoxide-agent-tls";
const TLS_DIR: &str = "/innoxide/tls";
const RUN_VOLUME: &str = "innoxide-mysql-run";
const RESTORE_SPEC_VOLUME: &str = "innoxide-restore-spec";
const RESTORE_SPEC_DIR: &str = "/innoxide/restore-spec";
/// A writable /tmp for the agent (apply-log's private socket folder) even
/// when mysqld's root file system is read-only.
const TMP_VOLUME: &str = "innoxide-agent-tmp";
/// Where the agent binary is inside the agent image.
pub const AGENT_IMAGE_BINARY: &str = "/usr/local/bin/innoxide-agent";

/// How the operator itself is set up, as far as the patch is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiringSettings {
    /// The image that holds the agent binary at [`AGENT_IMAGE_BINARY`].
    pub agent_image: String,
}

/// Where the agent keeps its records and staged restores: inside the
/// datadir, hidden, where the agent's `init` looks for an armed swap.
pub fn agent_state_dir(datadir: &str) -> String {
    format!(
        "{}/{}",
        datadir.trim_end_matches('/'),
        innoxide_agent::swap::STATE_DIR_NAME
    )
}

/// What must exist for one StatefulSet.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The operator's fields of the StatefulSet (its name, the pod
    /// template's annotation, init containers, containers and volumes),
    /// typed for reading; [`Desired::apply_body`] is what is sent.
    pub patch: StatefulSet,
    /// The Secret that must hold the agent's server certificate.
    pub tls_secret: String,
    /// The names the certificate must carry.
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WiringError {
    #[error("StatefulSet {sts}: no container {name:?} (annotation {MYSQL_CONTAINER_ANNOTATION})")]
    NoSuchContainer { sts: String, name: String },
    #[error("StatefulSet {sts} has no containers")]
    NoContainers { sts: String },
    #[error(
        "StatefulSet {sts}: container {container} mounts no volume at the datadir {datadir}; mount the data volume there or set {DATADIR_ANNOTATION}"
    )]
    NoDataVolume {
        sts: String,
        container: String,
        datadir: String,
    },
    #[error("StatefulSet {sts}: container {container} has no image")]
    NoImage { sts: String, container: String },
    #[error("StatefulSet {sts}: {annotation}={value:?} is not {expected}")]
    BadAnnotation {
        sts: String,
        annotation: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Whether the StatefulSet asked for the agent.
pub fn opted_in(sts: &StatefulSet) -> bool {
    sts.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(AGENT_LABEL))
        .is_some_and(|v| v == AGENT_LABEL_VALUE)
}

/// The Secret with the agent's server certificate for this StatefulSet.
pub fn tls_secret_name(sts: &str) -> String {
    format!("{sts}-innoxide-agent-tls")
}

/// The name the operator expects in the agent's certificate when it dials a
/// pod of this StatefulSet by IP (pod IPs change; this name does not).
pub fn agent_server_name(sts: &str, namespace: &str) -> String {
    format!("{sts}.{namespace}.innoxide-agent")
}

/// Everything the agent of this StatefulSet's pods needs, or why it cannot
/// be added.
pub fn desired(sts: &StatefulSet, settings: &WiringSettings) -> Result<Desired, WiringError> {
    let name = sts.metadata.name.clone().unwrap_or_default();
    let namespace = sts.metadata.namespace.clone().unwrap_or_default();
    let annotations = sts.metadata.annotations.clone().unwrap_or_default();
    let annotation = |key: &str| {
        annotations
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let bad = |annotation: &'static str, value: &str, expected: &'static str| {
        WiringError::BadAnnotation {
            sts: name.clone(),
            annotation,
            value: value.to_owned(),
            expected,
        }
    };

    let pod_spec = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .cloned()
        .unwrap_or_default();
    let mysql = match annotation(MYSQL_CONTAINER_ANNOTATION) {
        Some(wanted) => pod_spec
            .containers
            .iter()
            .find(|c| c.name == wanted)
            .ok_or_else(|| WiringError::NoSuchContainer {
                sts: name.clone(),
                name: wanted.to_owned(),
            })?,
        None => pod_spec
            .containers
            .iter()
            .find(|c| c.name == "mysql")
            .or_else(|| {
                pod_spec
                    .containers
                    .iter()
                    .find(|c| c.name != AGENT_CONTAINER)
            })
            .ok_or_else(|| WiringError::NoContainers { sts: name.clone() })?,
    };
    let image = mysql.image.clone().ok_or_else(|| WiringError::NoImage {
        sts: name.clone(),
        container: mysql.name.clone(),
    })?;
    let port = match annotation(AGENT_PORT_ANNOTATION) {
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0 && *p != AGENT_METRICS_PORT)
            .ok_or_else(|| {
                bad(
                    AGENT_PORT_ANNOTATION,
                    text,
                    "a port number (1-65535, not 9464)",
                )
            })?,
        None => AGENT_PORT,
    };
    let datadir = annotation(DATADIR_ANNOTATION).unwrap_or(DEFAULT_DATADIR);
    let socket = annotation(SOCKET_ANNOTATION).unwrap_or(DEFAULT_SOCKET);
    for (key, value) in [(DATADIR_ANNOTATION, datadir), (SOCKET_ANNOTATION, socket)] {
        if !value.starts_with('/') {
            return Err(bad(key, value, "an absolute path"));
        }
    }
    let claims: Vec<&str> = annotation(CLAIMS_ANNOTATION)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for claim in &claims {
        if !is_dns_label(claim) && !is_dns_subdomain(claim) {
            return Err(bad(
                CLAIMS_ANNOTATION,
                claim,
                "a comma-separated list of claim names",
            ));
        }
    }

    let agent_resources = match annotation(RESOURCES_ANNOTATION) {
        Some(text) => serde_json::from_str::<ResourceRequirements>(text).map_err(|_| {
            bad(
                RESOURCES_ANNOTATION,
                text,
                r#"a container's resources as JSON, e.g. {"requests":{"cpu":"1","memory":"2Gi"},"limits":{"cpu":"1","memory":"2Gi"}}"#,
            )
        })?,
        None => guaranteed(DEFAULT_AGENT_CPU, DEFAULT_AGENT_MEMORY),
    };
    let agent_image = match annotation(AGENT_IMAGE_ANNOTATION) {
        Some(FOLLOW_OPERATOR_IMAGE) => settings.agent_image.clone(),
        Some(image) => image.to_owned(),
        None => pinned_agent_image(&pod_spec).unwrap_or_else(|| settings.agent_image.clone()),
    };

    let restore_from = annotation(RESTORE_FROM_ANNOTATION);
    if let Some(restore) = restore_from
        && (!is_dns_subdomain(restore) || restore.len() > 240)
    {
        return Err(bad(
            RESTORE_FROM_ANNOTATION,
            restore,
            "the name of a MySQLRestore in this namespace",
        ));
    }

    let mysql_mounts = mysql.volume_mounts.clone().unwrap_or_default();
    // The mount that holds a path: the deepest one at or above it.
    let holder = |path: &str| {
        mysql_mounts
            .iter()
            .filter(|m| is_within(path, &m.mount_path))
            .max_by_key(|m| m.mount_path.len())
            .cloned()
    };
    let data_mount = holder(datadir)
        .filter(|m| m.name != RUN_VOLUME)
        .ok_or_else(|| WiringError::NoDataVolume {
            sts: name.clone(),
            container: mysql.name.clone(),
            datadir: datadir.to_owned(),
        })?;
    let socket_dir = parent(socket);
    // The socket's folder is shared with the agent: mysqld's own mount if it
    // has one there, else an emptyDir we add to both containers.
    let socket_mount = holder(socket).filter(|m| m.name != RUN_VOLUME);

    let secret_mode = secret_mode(pod_spec.security_context.as_ref());
    let mut volumes = vec![
        Volume {
            name: BIN_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: TLS_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls_secret_name(&name)),
                default_mode: Some(secret_mode),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: TMP_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let tmp_mount = VolumeMount {
        name: TMP_VOLUME.into(),
        mount_path: "/tmp".into(),
        ..VolumeMount::default()
    };
    // The installed agent, read-only in both containers that run it.
    let bin_mount = VolumeMount {
        name: BIN_VOLUME.into(),
        mount_path: BIN_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut agent_mounts = vec![
        same_mount(&data_mount),
        bin_mount.clone(),
        VolumeMount {
            name: TLS_VOLUME.into(),
            mount_path: TLS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        tmp_mount.clone(),
    ];
    let mut containers = Vec::new();
    match &socket_mount {
        Some(m) if m.name == data_mount.name && m.mount_path == data_mount.mount_path => {}
        Some(m) => agent_mounts.push(same_mount(m)),
        None => {
            volumes.push(Volume {
                name: RUN_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            });
            let run_mount = VolumeMount {
                name: RUN_VOLUME.into(),
                mount_path: socket_dir.clone(),
                ..VolumeMount::default()
            };
            agent_mounts.push(run_mount.clone());
            // Only the mount: server-side apply merges it into mysqld's
            // container by name, the rest of that container stays the user's.
            containers.push(Container {
                name: mysql.name.clone(),
                volume_mounts: Some(vec![run_mount]),
                ..Container::default()
            });
        }
    }
    let mut init_mounts = vec![same_mount(&data_mount), bin_mount, tmp_mount];
    for claim in &claims {
        let volume = claim_volume(claim);
        // A restore's init container reads `pvc` backups from the claim too.
        init_mounts.push(VolumeMount {
            name: volume.clone(),
            mount_path: format!("{CLAIM_MOUNT_ROOT}/{claim}"),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: (*claim).to_owned(),
                read_only: None,
            }),
            ..Volume::default()
        });
        agent_mounts.push(VolumeMount {
            name: volume,
            mount_path: format!("{CLAIM_MOUNT_ROOT}/{claim}"),
            ..VolumeMount::default()
        });
    }

    let state_dir = agent_state_dir(datadir);
    let mut env = vec![];
    // The agent logs in as root with mysqld's own root password, when the
    // MySQL container gets one the official image's way; a backup can name
    // another user (spec.mysqlCredentials).
    if let Some(root_password) = mysql
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "MYSQL_ROOT_PASSWORD")
    {
        env.push(EnvVar {
            name: "MYSQL_USER".into(),
            value: Some("root".into()),
            value_from: None,
        });
        env.push(EnvVar {
            name: "MYSQL_PWD".into(),
            ..root_password.clone()
        });
    }
    let healthz = Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(i32::from(AGENT_METRICS_PORT)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let mut init_args = vec![
        format!("--datadir={datadir}"),
        format!("--state-dir={state_dir}"),
    ];
    if let Some(restore) = restore_from {
        volumes.push(Volume {
            name: RESTORE_SPEC_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(restore_spec_secret_name(restore)),
                default_mode: Some(secret_mode),
                // Pods must still start after the restore (and its Secret)
                // is deleted; init stops only an empty volume without it.
                optional: Some(true),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        init_mounts.push(VolumeMount {
            name: RESTORE_SPEC_VOLUME.into(),
            mount_path: RESTORE_SPEC_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        init_args.push(format!(
            "--restore-spec={RESTORE_SPEC_DIR}/{RESTORE_SPEC_KEY}"
        ));
    }
    // With mysqld's image (a restore's apply-log needs its exact mysqld)
    // and its user (the files it moves keep their owner).
    let agent_security = agent_security_context(
        mysql.security_context.as_ref(),
        pod_spec.security_context.as_ref(),
    );
    let init = Container {
        name: INIT_CONTAINER.into(),
        image: Some(image.clone()),
        image_pull_policy: mysql.image_pull_policy.clone(),
        command: Some(vec![format!("{BIN_DIR}/innoxide-agent"), "init".into()]),
        args: Some(init_args),
        resources: Some(agent_resources.clone()),
        security_context: Some(agent_security.clone()),
        volume_mounts: Some(init_mounts),
        ..Container::default()
    };
    containers.push(Container {
        name: AGENT_CONTAINER.into(),
        image: Some(image),
        image_pull_policy: mysql.image_pull_policy.clone(),
        command: Some(vec![format!("{BIN_DIR}/innoxide-agent"), "serve".into()]),
        args: Some(vec![
            format!("--listen=0.0.0.0:{port}"),
            format!("--metrics-listen=0.0.0.0:{AGENT_METRICS_PORT}"),
            format!("--tls-cert={TLS_DIR}/tls.crt"),
            format!("--tls-key={TLS_DIR}/tls.key"),
            format!("--tls-client-ca={TLS_DIR}/ca.crt"),
            format!("--socket={socket}"),
            format!("--datadir={datadir}"),
            format!("--state-dir={state_dir}"),
        ]),
        env: (!env.is_empty()).then_some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some("agent-grpc".into()),
                container_port: i32::from(port),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("agent-metrics".into()),
                container_port: i32::from(AGENT_METRICS_PORT),
                ..ContainerPort::default()
            },
        ]),
        // No readiness probe: the pod's readiness is mysqld's alone.
        liveness_probe: Some(Probe {
            failure_threshold: Some(6),
            ..healthz
        }),
        resources: Some(agent_resources),
        // The agent reads and writes mysqld's files: as mysqld's user.
        security_context: Some(agent_security),
        volume_mounts: Some(agent_mounts),
        ..Container::default()
    });
    let init_containers = vec![
        Container {
            name: INSTALL_CONTAINER.into(),
            image: Some(agent_image),
            // The agent copies itself: the agent image needs no shell or cp.
            command: Some(vec![
                AGENT_IMAGE_BINARY.into(),
                "install".into(),
                BIN_DIR.into(),
            ]),
            volume_mounts: Some(vec![VolumeMount {
                name: BIN_VOLUME.into(),
                mount_path: BIN_DIR.into(),
                ..VolumeMount::default()
            }]),
            resources: Some(guaranteed(INSTALL_CPU, INSTALL_MEMORY)),
            // The agent image's own user (65532); the emptyDir is writable by all.
            security_context: Some(SecurityContext {
                run_as_non_root: Some(true),
                read_only_root_filesystem: Some(true),
                ..restricted_basics(None)
            }),
            ..Container::default()
        },
        init,
    ];

    let patch = StatefulSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: sts.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(StatefulSetSpec {
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    annotations: Some(BTreeMap::from([(
                        AGENT_PORT_ANNOTATION.to_owned(),
                        port.to_string(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    init_containers: Some(init_containers),
                    containers,
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        }),
        status: None,
    };
    Ok(Desired {
        patch,
        tls_secret: tls_secret_name(&name),
        server_names: vec![
            agent_server_name(&name, &namespace),
            format!("*.{name}.{namespace}.svc"),
            format!("*.{name}.{namespace}.svc.cluster.local"),
        ],
    })
}

impl Desired {
    /// The server-side apply body: apiVersion, kind, name and the operator's
    /// fields, nothing else. Not the typed [`StatefulSet`]: its required
    /// fields serialize even when empty (`selector: {}`, `containers: []`),
    /// and an apply that names the atomic `selector` conflicts with the
    /// StatefulSet's author (and would try to change an immutable field).
    /// Lists merge by their keys (containers and volumes by name), so the
    /// operator owns its own entries and, of the user's MySQL container,
    /// only the key and the socket folder's mount it adds.
    pub fn apply_body(&self) -> serde_json::Value {
        let template = self.patch.spec.as_ref().map(|s| &s.template);
        let pod = template.and_then(|t| t.spec.as_ref());
        let mut pod_fields = serde_json::Map::new();
        if let Some(pod) = pod {
            let mut put = |key: &str, value: serde_json::Value| {
                if !value.is_null() {
                    pod_fields.insert(key.to_owned(), value);
                }
            };
            put("initContainers", serde_json::json!(pod.init_containers));
            put("containers", serde_json::json!(pod.containers));
            put("volumes", serde_json::json!(pod.volumes));
        }
        let mut body = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": self.patch.metadata.name},
        });
        if let Some(namespace) = &self.patch.metadata.namespace {
            body["metadata"]["namespace"] = namespace.clone().into();
        }
        if pod.is_some() {
            let annotations = template
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.annotations.clone());
            body["spec"] = serde_json::json!({"template": {"spec": pod_fields}});
            if let Some(annotations) = annotations {
                body["spec"]["template"]["metadata"] =
                    serde_json::json!({"annotations": annotations});
            }
        }
        body
    }
}

/// What the operator applies once a StatefulSet has opted out: nothing,
/// which makes server-side apply remove every field it applied before.
pub fn released(sts: &StatefulSet) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: sts.metadata.name.clone(),
            namespace: sts.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        spec: None,
        status: None,
    }
}

/// Whether the StatefulSet already has everything the patch applies (the
/// agent is in place), so a reconcile can say so without an API call.
pub fn is_wired(sts: &StatefulSet, desired: &Desired) -> bool {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_some_and(|have| has_wiring(have, desired))
}

/// Whether a pod spec (a template's, or a pod's made from it) has
/// everything the patch applies.
pub fn has_wiring(have: &PodSpec, desired: &Desired) -> bool {
    let Some(want) = desired
        .patch
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
    else {
        return false;
    };
    let has_all = |have: &[Container], want: &[Container]| {
        want.iter().all(|w| {
            have.iter().any(|h| {
                h.name == w.name
                    && (w.image.is_none() || h.image == w.image)
                    && (w.args.is_none() || h.args == w.args)
                    && w.volume_mounts.iter().flatten().all(|wm| {
                        h.volume_mounts
                            .iter()
                            .flatten()
                            .any(|hm| hm.name == wm.name && hm.mount_path == wm.mount_path)
                    })
            })
        })
    };
    has_all(&have.containers, &want.containers)
        && has_all(
            have.init_containers.as_deref().unwrap_or_default(),
            want.init_containers.as_deref().unwrap_or_default(),
        )
        && want
            .volumes
            .iter()
            .flatten()
            .all(|w| have.volumes.iter().flatten().any(|h| h == w))
}

/// The agent image the StatefulSet's pods run now (the install container's),
/// if it is wired already.
fn pinned_agent_image(pod_spec: &PodSpec) -> Option<String> {
    pod_spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == INSTALL_CONTAINER)
        .and_then(|c| c.image.clone())
}

/// Mode of the Secret files the agent's user must read: the kubelet gives
/// them the pod's fsGroup if it has one, else leaves them root's.
fn secret_mode(pod: Option<&PodSecurityContext>) -> i32 {
    if pod.and_then(|p| p.fs_group).is_some() {
        0o440
    } else {
        0o444
    }
}

fn guaranteed(cpu: &str, memory: &str) -> ResourceRequirements {
    let both = BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.to_owned())),
        ("memory".to_owned(), Quantity(memory.to_owned())),
    ]);
    ResourceRequirements {
        limits: Some(both.clone()),
        requests: Some(both),
        ..ResourceRequirements::default()
    }
}

/// What `restricted` Pod Security asks of every container, over `base`: no
/// privilege escalation, not privileged, seccomp RuntimeDefault unless
/// chosen already, every capability dropped.
fn restricted_basics(base: Option<&SecurityContext>) -> SecurityContext {
    let base = base.cloned().unwrap_or_default();
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: None,
        seccomp_profile: base.seccomp_profile.clone().or(Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        })),
        capabilities: Some(Capabilities {
            add: None,
            drop: Some(vec!["ALL".into()]),
        }),
        ..base
    }
}

/// The sidecar's and `init`'s context: mysqld's user, groups and file
/// system settings, hardened. An agent that may run as root (no non-root
/// user anywhere) keeps mysqld's capabilities: it may need them to handle
/// files of mysqld's user.
fn agent_security_context(
    mysql: Option<&SecurityContext>,
    pod: Option<&PodSecurityContext>,
) -> SecurityContext {
    let user = mysql
        .and_then(|c| c.run_as_user)
        .or(pod.and_then(|p| p.run_as_user));
    let non_root = mysql
        .and_then(|c| c.run_as_non_root)
        .or(pod.and_then(|p| p.run_as_non_root))
        == Some(true);
    let mut context = restricted_basics(mysql);
    if pod.and_then(|p| p.seccomp_profile.as_ref()).is_some()
        && mysql.and_then(|c| c.seccomp_profile.as_ref()).is_none()
    {
        // The pod's profile applies.
        context.seccomp_profile = None;
    }
    let may_be_root = !non_root && user.is_none_or(|u| u == 0);
    if may_be_root {
        context.capabilities = mysql.and_then(|c| c.capabilities.clone());
    }
    context
}

fn claim_volume(claim: &str) -> String {
    // Volume names are DNS labels: a long claim name is cut and keeps a
    // hash so two claims never share one.
    let base = format!("innoxide-claim-{claim}").replace('.', "-");
    if base.len() <= 63 {
        return base;
    }
    let hash = crate::hash::fnv1a_64(claim.as_bytes());
    format!("{}-{:08x}", &base[..54], hash as u32)
}

fn same_mount(m: &VolumeMount) -> VolumeMount {
    VolumeMount {
        name: m.name.clone(),
        mount_path: m.mount_path.clone(),
        sub_path: m.sub_path.clone(),
        sub_path_expr: m.sub_path_expr.clone(),
        ..VolumeMount::default()
    }
}

fn is_within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir
        || dir.is_empty()
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((dir, _)) => dir.into(),
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official MySQL image's way: data volume at /var/lib/mysql, the
    /// socket in /var/run/mysqld (not a volume), the root password from a Secret.
    const OFFICIAL_IMAGE: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: prod
  labels: {innoxide.dev/agent: enabled}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: mysql
        image: mysql:9.7.4
        env:
        - name: MYSQL_ROOT_PASSWORD
          valueFrom: {secretKeyRef: {name: db-root, key: password}}
        securityContext: {runAsUser: 999, runAsGroup: 999}
        volumeMounts:
        - {name: data, mountPath: /var/lib/mysql}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}
"#;

    fn sts(yaml: &str) -> StatefulSet {
        serde_yaml::from_str(yaml).expect("a StatefulSet fixture")
    }

    fn settings() -> WiringSettings {
        WiringSettings {
            agent_image: "innoxide/innoxide-agent:0.1.0".into(),
        }
    }

    fn pod_spec(desired: &Desired) -> &PodSpec {
        desired
            .patch
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
    }

    fn container<'a>(spec: &'a PodSpec, name: &str) -> &'a Container {
        spec.containers
            .iter()
            .find(|c| c.name == name)
            .expect("container")
    }

    fn mounts(c: &Container) -> Vec<(String, String)> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.clone(), m.mount_path.clone()))
            .collect()
    }

    #[test]
    fn the_sidecar_runs_the_copied_agent_with_mysqlds_own_image() {
        let desired = desired(&sts(OFFICIAL_IMAGE), &settings()).unwrap();
        let spec = pod_spec(&desired);
        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.image.as_deref(), Some("innoxide/innoxide-agent:0.1.0"));
        assert_eq!(
            init.command.as_deref().unwrap(),
            ["/usr/local/bin/innoxide-agent", "install", "/innoxide/bin"]
        );
        let agent = container(spec, AGENT_CONTAINER);
        assert_eq!(
            agent.image.as_deref(),
            Some("mysql:9.7.4"),
            "apply-log needs the exact mysqld"
        );
        assert_eq!(
            agent.command.as_deref().unwrap(),
            ["/innoxide/bin/innoxide-agent", "serve"]
        );
        let args = agent.args.as_deref().unwrap();
        for expected in [
            "--listen=0.0.0.0:9443",
            "--tls-client-ca=/innoxide/tls/ca.crt",
            "--socket=/var/run/mysqld/mysqld.sock",
            "--datadir=/var/lib/mysql",
            "--state-dir=/var/lib/mysql/.innoxide-agent",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
        }
        assert_eq!(
            agent.security_context.as_ref().unwrap().run_as_user,
            Some(999),
            "as mysqld's user"
        );
    }

    #[test]
    fn the_sidecar_shares_the_data_volume_and_the_socket_folder() {
        let desired = desired(&sts(OFFICIAL_IMAGE), &settings()).unwrap();
        let spec = pod_spec(&desired);
        let agent_mounts = mounts(container(spec, AGENT_CONTAINER));
        assert!(agent_mounts.contains(&("data".into(), "/var/lib/mysql".into())));
        assert!(agent_mounts.contains(&(RUN_VOLUME.into(), "/var/run/mysqld".into())));
        assert!(agent_mounts.contains(&(TLS_VOLUME.into(), TLS_DIR.into())));
        // mysqld gets only the socket folder's mount; the rest of its
        // container stays the user's.
        let mysql = container(spec, "mysql");
        assert_eq!(
            mounts(mysql),
            [(RUN_VOLUME.to_owned(), "/var/run/mysqld".to_owned())]
        );
        assert_eq!(mysql.image, None);
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, [BIN_VOLUME, TLS_VOLUME, TMP_VOLUME, RUN_VOLUME]);
        let tls = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == TLS_VOLUME)
            .unwrap();
        assert_eq!(
            tls.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("db-innoxide-agent-tls")
        );
    }

    #[test]
    fn the_agent_logs_in_with_mysqlds_root_password_source() {
        let desired = desired(&sts(OFFICIAL_IMAGE), &settings()).unwrap();
        let agent = container(pod_spec(&desired), AGENT_CONTAINER);
        let env = agent.env.as_ref().unwrap();
        assert_eq!(env[0].value.as_deref(), Some("root"));
        let pwd = &env[1];
        assert_eq!(pwd.name, "MYSQL_PWD");
        let secret = pwd
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            ("db-root", "password")
        );
    }

    #[test]
    fn a_socket_inside_a_mounted_folder_needs_no_extra_volume() {
        let yaml = OFFICIAL_IMAGE.replace(
            "labels: {innoxide.dev/agent: enabled}",
            "labels: {innoxide.dev/agent: enabled}\n  annotations: {innoxide.dev/mysql-socket: /var/lib/mysql/mysql.sock}",
        );
        let desired = desired(&sts(&yaml), &settings()).unwrap();
        let spec = pod_spec(&desired);
        assert!(
            spec.containers.iter().all(|c| c.name != "mysql"),
            "mysqld's container is left alone"
        );
        assert!(spec.volumes.iter().flatten().all(|v| v.name != RUN_VOLUME));
    }

    #[test]
    fn annotations_choose_container_datadir_port_and_claims() {
        let yaml = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: prod
  labels: {innoxide.dev/agent: enabled}
  annotations:
    innoxide.dev/mysql-container: server
    innoxide.dev/datadir: /data/mysql
    innoxide.dev/agent-port: "7443"
    innoxide.dev/backup-claims: "backups, archive"
spec:
  selector: {matchLabels: {app: db}}
  template:
    spec:
      containers:
      - name: exporter
        image: prom/mysqld-exporter
      - name: server
        image: percona/percona-server:9.7
        volumeMounts:
        - {name: data, mountPath: /data, subPath: mysql-root}
        - {name: run, mountPath: /var/run/mysqld}
"#;
        let desired = desired(&sts(yaml), &settings()).unwrap();
        let spec = pod_spec(&desired);
        let agent = container(spec, AGENT_CONTAINER);
        assert_eq!(agent.image.as_deref(), Some("percona/percona-server:9.7"));
        assert!(
            agent
                .args
                .as_ref()
                .unwrap()
                .contains(&"--listen=0.0.0.0:7443".to_owned())
        );
        let data = agent
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "data")
            .unwrap();
        assert_eq!(
            (data.mount_path.as_str(), data.sub_path.as_deref()),
            ("/data", Some("mysql-root"))
        );
        let m = mounts(agent);
        assert!(
            m.contains(&("run".into(), "/var/run/mysqld".into())),
            "mysqld's own socket volume is shared"
        );
        assert!(m.contains(&(
            "innoxide-claim-backups".into(),
            "/innoxide/claims/backups".into()
        )));
        assert!(m.contains(&(
            "innoxide-claim-archive".into(),
            "/innoxide/claims/archive".into()
        )));
        let annotations = desired
            .patch
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .clone()
            .unwrap();
        assert_eq!(
            annotations[AGENT_PORT_ANNOTATION], "7443",
            "pods say where their agent listens"
        );
    }

    fn init_container(spec: &PodSpec) -> &Container {
        spec.init_containers
            .iter()
            .flatten()
            .find(|c| c.name == INIT_CONTAINER)
            .expect("the init container")
    }

    #[test]
    fn the_init_container_runs_init_on_the_data_volume_after_the_install() {
        let desired = desired(&sts(OFFICIAL_IMAGE), &settings()).unwrap();
        let spec = pod_spec(&desired);
        let names: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            names,
            [INSTALL_CONTAINER, INIT_CONTAINER],
            "the binary is copied first"
        );
        let init = init_container(spec);
        assert_eq!(
            init.image.as_deref(),
            Some("mysql:9.7.4"),
            "mysqld's own image"
        );
        assert_eq!(
            init.command.as_deref().unwrap(),
            ["/innoxide/bin/innoxide-agent", "init"]
        );
        assert_eq!(
            init.args.as_deref().unwrap(),
            [
                "--datadir=/var/lib/mysql",
                "--state-dir=/var/lib/mysql/.innoxide-agent"
            ],
            "a no-op unless a swap is armed"
        );
        assert_eq!(
            init.security_context.as_ref().unwrap().run_as_user,
            Some(999),
            "the files keep mysqld's owner"
        );
        let m = mounts(init);
        assert!(m.contains(&("data".into(), "/var/lib/mysql".into())));
        assert!(m.contains(&(BIN_VOLUME.into(), BIN_DIR.into())));
        assert!(
            spec.volumes
                .iter()
                .flatten()
                .all(|v| v.name != RESTORE_SPEC_VOLUME),
            "no restore, no spec"
        );
    }

    #[test]
    fn a_statefulset_that_names_a_restore_mounts_its_spec_into_init() {
        let yaml = OFFICIAL_IMAGE.replace(
            "labels: {innoxide.dev/agent: enabled}",
            "labels: {innoxide.dev/agent: enabled}\n  annotations: {innoxide.dev/restore-from: clone-of-prod, innoxide.dev/backup-claims: backups}",
        );
        let desired = desired(&sts(&yaml), &settings()).unwrap();
        let spec = pod_spec(&desired);
        let init = init_container(spec);
        assert!(
            init.args
                .as_ref()
                .unwrap()
                .contains(&"--restore-spec=/innoxide/restore-spec/restore-spec.json".to_owned())
        );
        let m = mounts(init);
        assert!(m.contains(&(RESTORE_SPEC_VOLUME.into(), RESTORE_SPEC_DIR.into())));
        assert!(
            m.contains(&(
                "innoxide-claim-backups".into(),
                "/innoxide/claims/backups".into()
            )),
            "pvc backups are read by init too"
        );
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == RESTORE_SPEC_VOLUME)
            .unwrap();
        assert_eq!(
            volume.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("clone-of-prod-restore-spec")
        );
        let agent = container(spec, AGENT_CONTAINER);
        assert!(
            mounts(agent).iter().all(|(n, _)| n != RESTORE_SPEC_VOLUME),
            "the sidecar never sees the spec's credentials"
        );
    }

    #[test]
    fn a_restore_annotation_must_name_a_restore() {
        let yaml = OFFICIAL_IMAGE.replace(
            "labels: {innoxide.dev/agent: enabled}",
            "labels: {innoxide.dev/agent: enabled}\n  annotations: {innoxide.dev/restore-from: \"../etc\"}",
        );
        let err = desired(&sts(&yaml), &settings()).unwrap_err();
        assert!(
            err.to_string().contains("the name of a MySQLRestore"),
            "{err}"
        );
    }

    #[test]
    fn the_certificate_names_the_statefulset() {
        let desired = desired(&sts(OFFICIAL_IMAGE), &settings()).unwrap();
        assert_eq!(desired.tls_secret, "db-innoxide-agent-tls");
        assert_eq!(desired.server_names[0], "db.prod.innoxide-agent");
        assert!(desired.server_names.contains(&"*.db.prod.svc".to_owned()));
    }

    #[test]
    fn statefulsets_that_cannot_take_the_agent_say_why() {
        let no_volume = OFFICIAL_IMAGE.replace(
            "- {name: data, mountPath: /var/lib/mysql}",
            "- {name: data, mountPath: /srv}",
        );
        let err = desired(&sts(&no_volume), &settings()).unwrap_err();
        assert!(
            err.to_string()
                .contains("mounts no volume at the datadir /var/lib/mysql"),
            "{err}"
        );
        let wrong_container = OFFICIAL_IMAGE.replace(
            "labels: {innoxide.dev/agent: enabled}",
            "labels: {innoxide.dev/agent: enabled}\n  annotations: {innoxide.dev/mysql-container: mariadb}",
        );
        assert!(matches!(
            desired(&sts(&wrong_container), &settings()),
            Err(WiringError::NoSuchContainer { .. })
        ));
        let bad_port = OFFICIAL_IMAGE.replace(
            "labels: {innoxide.dev/agent: enabled}",
            "labels: {innoxide.dev/agent: enabled}\n  annotations: {innoxide.dev/agent-port: http}",
        );
        assert!(
            desired(&sts(&bad_port), &settings())
                .unwrap_err()
                .to_string()
                .contains("a port number")
        );
    }

    #[test]
    fn the_patch_is_the_same_once_applied() {
        // After the operator's fields are in the StatefulSet, computing
        // again gives the same patch: applying it changes nothing.
        let before = sts(OFFICIAL_IMAGE);
        let first = desired(&before, &settings()).unwrap();
        assert!(!is_wired(&before, &first));
        let mut after = before.clone();
        let template = after.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        let patch = pod_spec(&first).clone();
        template.init_containers = patch.init_containers.clone();
        template
            .volumes
            .get_or_insert_with(Vec::new)
            .extend(patch.volumes.clone().unwrap());
        for c in patch.containers {
            match template.containers.iter_mut().find(|t| t.name == c.name) {
                Some(existing) => existing
                    .volume_mounts
                    .get_or_insert_with(Vec::new)
                    .extend(c.volume_mounts.unwrap()),
                None => template.containers.push(c),
            }
        }
        let second = desired(&after, &settings()).unwrap();
        assert_eq!(first, second);
        assert!(is_wired(&after, &second));
    }

    fn volume<'a>(spec: &'a PodSpec, name: &str) -> &'a Volume {
        spec.volumes
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .expect("volume")
    }

    #[test]
    fn secrets_are_readable_by_the_agents_user_with_or_without_fs_group() {
        // The official images' way (runAsUser 999, no fsGroup): the kubelet
        // leaves the files root's, so only "other" can let 999 read them.
        let desired = super::desired(&sts(OFFICIAL_IMAGE), &settings()).unwrap();
        let tls = volume(pod_spec(&desired), TLS_VOLUME);
        assert_eq!(tls.secret.as_ref().unwrap().default_mode, Some(0o444));
        // With an fsGroup the kubelet gives them that group: 0440 suffices.
        let yaml = OFFICIAL_IMAGE.replace(
            "    spec:\n      containers:",
            "    spec:\n      securityContext: {fsGroup: 999}\n      containers:",
        );
        let yaml = yaml.replace(
            "labels: {innoxide.dev/agent: enabled}",
            "labels: {innoxide.dev/agent: enabled}\n  annotations: {innoxide.dev/restore-from: r}",
        );
        let desired = super::desired(&sts(&yaml), &settings()).unwrap();
        let spec = pod_spec(&desired);
        for name in [TLS_VOLUME, RESTORE_SPEC_VOLUME] {
            assert_eq!(
                volume(spec, name).secret.as_ref().unwrap().default_mode,
                Some(0o440),
                "{name}"
            );
        }
    }

    #[test]
    fn the_agent_never_gates_the_pods_readiness() {
        let desired = super::desired(&sts(OFFICIAL_IMAGE), &settings()).unwrap();
        let agent = container(pod_spec(&desired), AGENT_CONTAINER);
        assert_eq!(agent.readiness_probe, None);
        assert!(
            agent.liveness_probe.is_some(),
            "a stuck agent restarts alone"
        );
    }

    #[test]
    fn injected_containers_meet_restricted_pod_security() {
        let desired = super::desired(&sts(OFFICIAL_IMAGE), &settings()).unwrap();
        let spec = pod_spec(&desired);
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain([container(spec, AGENT_CONTAINER)])
        {
            let sc = c.security_context.as_ref().expect("a security context");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop.as_deref(),
                Some(&["ALL".to_owned()][..]),
                "{}",
                c.name
            );
            assert_eq!(
                sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
                Some("RuntimeDefault"),
                "{}",
                c.name
            );
        }
        let install = &spec.init_containers.as_ref().unwrap()[0];
        let sc = install.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_user, None, "the agent image's own non-root user");
        let agent = container(spec, AGENT_CONTAINER);
        assert_eq!(
            agent.security_context.as_ref().unwrap().run_as_user,
            Some(999),
            "still mysqld's user"
        );
        assert!(
            mounts(agent).contains(&(TMP_VOLUME.into(), "/tmp".into())),
            "a writable /tmp under a read-only root"
        );
    }

    #[test]
    fn an_agent_that_may_run_as_root_keeps_mysqlds_capabilities() {
        let yaml = OFFICIAL_IMAGE.replace(
            "securityContext: {runAsUser: 999, runAsGroup: 999}",
            "securityContext: {capabilities: {add: [SYS_NICE]}}",
        );
        let desired = super::desired(&sts(&yaml), &settings()).unwrap();
        let agent = container(pod_spec(&desired), AGENT_CONTAINER);
        let sc = agent.security_context.as_ref().unwrap();
        assert_eq!(
            sc.capabilities.as_ref().unwrap().add.as_deref(),
            Some(&["SYS_NICE".to_owned()][..])
        );
        assert_eq!(sc.allow_privilege_escalation, Some(false));
    }

    #[test]
    fn injected_containers_have_guaranteed_resources_that_an_annotation_overrides() {
        let desired = super::desired(&sts(OFFICIAL_IMAGE), &settings()).unwrap();
        let spec = pod_spec(&desired);
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain([container(spec, AGENT_CONTAINER)])
        {
            let r = c.resources.as_ref().expect("resources");
            assert_eq!(r.requests, r.limits, "{}: Guaranteed QoS", c.name);
            assert!(
                r.limits.as_ref().unwrap().contains_key("memory"),
                "{}",
                c.name
            );
        }
        let agent = container(spec, AGENT_CONTAINER);
        assert_eq!(
            agent.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"],
            Quantity(DEFAULT_AGENT_MEMORY.into())
        );

        let yaml = OFFICIAL_IMAGE.replace(
            "labels: {innoxide.dev/agent: enabled}",
            "labels: {innoxide.dev/agent: enabled}\n  annotations: {innoxide.dev/agent-resources: '{\"requests\":{\"cpu\":\"2\",\"memory\":\"4Gi\"}}'}",
        );
        let desired = super::desired(&sts(&yaml), &settings()).unwrap();
        let spec = pod_spec(&desired);
        for c in [init_container(spec), container(spec, AGENT_CONTAINER)] {
            let r = c.resources.as_ref().unwrap();
            assert_eq!(
                r.requests.as_ref().unwrap()["memory"],
                Quantity("4Gi".into())
            );
            assert_eq!(r.limits, None);
        }
        let bad = OFFICIAL_IMAGE.replace(
            "labels: {innoxide.dev/agent: enabled}",
            "labels: {innoxide.dev/agent: enabled}\n  annotations: {innoxide.dev/agent-resources: 2Gi}",
        );
        let err = super::desired(&sts(&bad), &settings()).unwrap_err();
        assert!(err.to_string().contains("resources as JSON"), "{err}");
    }

    fn install_image(desired: &Desired) -> String {
        pod_spec(desired).init_containers.as_ref().unwrap()[0]
            .image
            .clone()
            .unwrap()
    }

    #[test]
    fn an_operator_upgrade_keeps_the_agent_image_a_statefulset_runs() {
        // Wired by the old operator.
        let mut wired = sts(OFFICIAL_IMAGE);
        let old = super::desired(&wired, &settings()).unwrap();
        wired
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .init_containers = pod_spec(&old).init_containers.clone();
        let upgraded = WiringSettings {
            agent_image: "innoxide/innoxide-agent:0.2.0".into(),
        };
        let after = super::desired(&wired, &upgraded).unwrap();
        assert_eq!(install_image(&after), "innoxide/innoxide-agent:0.1.0");
        assert_eq!(
            after.patch, old.patch,
            "the same fields: no template change, no rollout"
        );
        // A new StatefulSet gets the operator's image.
        assert_eq!(
            install_image(&super::desired(&sts(OFFICIAL_IMAGE), &upgraded).unwrap()),
            "innoxide/innoxide-agent:0.2.0"
        );
        // The user moves when they choose: to the operator's, or any image.
        for (value, image) in [
            ("operator", "innoxide/innoxide-agent:0.2.0"),
            ("registry.local/agent:0.1.1", "registry.local/agent:0.1.1"),
        ] {
            let mut chosen = wired.clone();
            chosen
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(AGENT_IMAGE_ANNOTATION.into(), value.into());
            assert_eq!(
                install_image(&super::desired(&chosen, &upgraded).unwrap()),
                image
            );
        }
    }

    #[test]
    fn the_apply_body_holds_only_the_operators_fields() {
        let body = desired(&sts(OFFICIAL_IMAGE), &settings())
            .unwrap()
            .apply_body();
        assert_eq!(body["apiVersion"], "apps/v1");
        assert_eq!(body["kind"], "StatefulSet");
        assert_eq!(
            body["metadata"],
            serde_json::json!({"name": "db", "namespace": "prod"})
        );
        let spec = body["spec"].as_object().unwrap();
        assert_eq!(
            spec.keys().collect::<Vec<_>>(),
            ["template"],
            "no selector, serviceName, replicas or claim templates: {spec:?}"
        );
        let template = &body["spec"]["template"];
        assert_eq!(
            template["metadata"],
            serde_json::json!({"annotations": {AGENT_PORT_ANNOTATION: "9443"}})
        );
        let mut fields: Vec<&String> = template["spec"].as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(fields, ["containers", "initContainers", "volumes"]);
        let mysql = template["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "mysql")
            .unwrap();
        assert_eq!(
            *mysql,
            serde_json::json!({"name": "mysql", "volumeMounts": [
                {"name": RUN_VOLUME, "mountPath": "/var/run/mysqld"}
            ]}),
            "of the user's container, only its key and the mount the operator adds"
        );
    }

    #[test]
    fn opting_out_applies_nothing() {
        let mut s = sts(OFFICIAL_IMAGE);
        assert!(opted_in(&s));
        s.metadata.labels = None;
        assert!(!opted_in(&s));
        let released = released(&s);
        assert_eq!(released.spec, None);
        assert_eq!(released.metadata.name.as_deref(), Some("db"));
    }
}
