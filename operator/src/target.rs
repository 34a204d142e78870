//! Which pod a backup runs on, and how its agent is reached: pure, from the
//! pods the controller listed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;

use crate::api::BackupSource;
use crate::wiring::{AGENT_CONTAINER, AGENT_PORT, AGENT_PORT_ANNOTATION};

/// A pod whose agent can take the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTarget {
    pub pod: String,
    pub namespace: String,
    pub ip: String,
    pub port: u16,
    /// The StatefulSet the pod belongs to: its agent's certificate names it.
    pub stateful_set: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("{what} has no pods")]
    NoPods { what: String },
    #[error("pod {pod} does not exist among the pods of {what}")]
    PodNotFound { pod: String, what: String },
    #[error("pod {pod} is not ready ({reason}); waiting for it")]
    NotReady { pod: String, reason: String },
    #[error(
        "pod {pod} has no {AGENT_CONTAINER} container: label its StatefulSet innoxide.dev/agent=enabled so the operator adds the agent"
    )]
    NoAgent { pod: String },
    #[error(
        "cannot tell which of the {count} pods of {what} is the primary: label it {role_label}=primary, or set source: Pod and sourcePod"
    )]
    AmbiguousPrimary {
        count: usize,
        what: String,
        role_label: String,
    },
}

impl SelectError {
    /// Errors that may clear by themselves (a pod restarting), as opposed
    /// to ones that need someone to change something. Both are retried;
    /// only the message differs.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SelectError::NotReady { .. } | SelectError::NoPods { .. }
        )
    }
}

/// What the pods of a MySQL look like to the selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Primary,
    Replica,
    Unknown,
}

fn role(pod: &Pod, role_label: &str) -> Role {
    match labels(pod).get(role_label).map(String::as_str) {
        Some("primary" | "source" | "master") => Role::Primary,
        Some("replica" | "secondary" | "slave") => Role::Replica,
        _ => Role::Unknown,
    }
}

fn labels(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// Why a pod cannot take a backup now, or None if it can.
fn not_ready(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("being deleted".into());
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    if phase != "Running" {
        return Some(format!("phase {phase}"));
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if !ready {
        return Some("not Ready".into());
    }
    if status
        .and_then(|s| s.pod_ip.as_deref())
        .is_none_or(str::is_empty)
    {
        return Some("no pod IP yet".into());
    }
    None
}

fn has_agent(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.containers.iter().any(|c| c.name == AGENT_CONTAINER)
            || spec
                .init_containers
                .iter()
                .flatten()
                .any(|c| c.name == AGENT_CONTAINER)
    })
}

fn usable(pod: &Pod) -> bool {
    not_ready(pod).is_none() && has_agent(pod)
}

fn target(pod: &Pod) -> Result<AgentTarget, SelectError> {
    if let Some(reason) = not_ready(pod) {
        return Err(SelectError::NotReady {
            pod: name(pod).to_owned(),
            reason,
        });
    }
    if !has_agent(pod) {
        return Err(SelectError::NoAgent {
            pod: name(pod).to_owned(),
        });
    }
    let port = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(AGENT_PORT_ANNOTATION))
        .and_then(|p| p.parse().ok())
        .unwrap_or(AGENT_PORT);
    let stateful_set = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "StatefulSet" && o.controller == Some(true))
        .map(|o| o.name.clone());
    Ok(AgentTarget {
        pod: name(pod).to_owned(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        ip: pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default(),
        port,
        stateful_set,
    })
}

/// The pods of a StatefulSet among those its selector matched: the ones it
/// controls (another workload may share labels).
pub fn owned_by<'a>(sts: &StatefulSet, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let uid = sts.metadata.uid.as_deref();
    pods.iter()
        .filter(|pod| {
            pod.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "StatefulSet" && Some(o.uid.as_str()) == uid)
        })
        .collect()
}

/// How the pod is chosen: the spec's rule, or the pod an earlier reconcile
/// already started the backup on (the operation lives in its agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule<'a> {
    Source {
        source: BackupSource,
        pod: Option<&'a str>,
        role_label: &'a str,
    },
    Pinned(&'a str),
}

/// Picks the pod. `what` names the MySQL in messages ("StatefulSet db").
pub fn select(rule: &Rule<'_>, pods: &[&Pod], what: &str) -> Result<AgentTarget, SelectError> {
    let mut pods: Vec<&Pod> = pods.to_vec();
    pods.sort_by(|a, b| name(a).cmp(name(b)));
    if pods.is_empty() {
        return Err(SelectError::NoPods { what: what.into() });
    }
    let named = |wanted: &str| {
        pods.iter()
            .find(|p| name(p) == wanted)
            .ok_or_else(|| SelectError::PodNotFound {
                pod: wanted.into(),
                what: what.into(),
            })
            .and_then(|p| target(p))
    };
    let (source, role_label) = match rule {
        Rule::Pinned(pod) => return named(pod),
        Rule::Source {
            source: BackupSource::Pod,
            pod,
            ..
        } => return named(pod.unwrap_or_default()),
        Rule::Source {
            source, role_label, ..
        } => (*source, *role_label),
    };
    if source == BackupSource::PreferReplica
        && let Some(replica) = pods
            .iter()
            .find(|p| role(p, role_label) == Role::Replica && usable(p))
    {
        return target(replica);
    }
    let primaries: Vec<&&Pod> = pods
        .iter()
        .filter(|p| role(p, role_label) == Role::Primary)
        .collect();
    match (primaries.as_slice(), pods.as_slice()) {
        ([primary], _) => target(primary),
        ([], [only]) => target(only),
        _ => Err(SelectError::AmbiguousPrimary {
            count: pods.len(),
            what: what.into(),
            role_label: role_label.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::PodBuilder;

    fn by_source(source: BackupSource) -> Rule<'static> {
        Rule::Source {
            source,
            pod: None,
            role_label: crate::api::DEFAULT_ROLE_LABEL,
        }
    }

    fn pick(rule: &Rule<'_>, pods: &[Pod]) -> Result<String, SelectError> {
        let refs: Vec<&Pod> = pods.iter().collect();
        select(rule, &refs, "StatefulSet db").map(|t| t.pod)
    }

    #[test]
    fn primary_is_the_pod_labelled_primary() {
        let pods = [
            PodBuilder::named("db-0").replica().build(),
            PodBuilder::named("db-1").primary().build(),
            PodBuilder::named("db-2").replica().build(),
        ];
        assert_eq!(
            pick(&by_source(BackupSource::Primary), &pods),
            Ok("db-1".into())
        );
    }

    #[test]
    fn a_lone_unlabelled_pod_is_its_own_primary() {
        let pods = [PodBuilder::named("db-0").build()];
        let target = select(&by_source(BackupSource::Primary), &[&pods[0]], "x").unwrap();
        assert_eq!(
            target,
            AgentTarget {
                pod: "db-0".into(),
                namespace: "prod".into(),
                ip: "10.0.0.10".into(),
                port: AGENT_PORT,
                stateful_set: Some("db".into()),
            }
        );
    }

    #[test]
    fn several_unlabelled_pods_make_the_primary_ambiguous() {
        let pods = [
            PodBuilder::named("db-0").build(),
            PodBuilder::named("db-1").build(),
        ];
        let err = pick(&by_source(BackupSource::Primary), &pods).unwrap_err();
        assert!(
            err.to_string()
                .contains("label it innoxide.dev/role=primary"),
            "{err}"
        );
    }

    #[test]
    fn prefer_replica_takes_the_first_ready_replica_by_name() {
        let pods = [
            PodBuilder::named("db-0").primary().build(),
            PodBuilder::named("db-2").replica().build(),
            PodBuilder::named("db-1").replica().not_ready().build(),
        ];
        assert_eq!(
            pick(&by_source(BackupSource::PreferReplica), &pods),
            Ok("db-2".into())
        );
    }

    #[test]
    fn prefer_replica_falls_back_to_the_primary() {
        let pods = [
            PodBuilder::named("db-0").primary().build(),
            PodBuilder::named("db-1").replica().without_agent().build(),
        ];
        assert_eq!(
            pick(&by_source(BackupSource::PreferReplica), &pods),
            Ok("db-0".into())
        );
    }

    #[test]
    fn a_named_pod_must_exist_be_ready_and_have_the_agent() {
        let pods = [
            PodBuilder::named("db-0").primary().build(),
            PodBuilder::named("db-1").replica().not_ready().build(),
            PodBuilder::named("db-2").replica().without_agent().build(),
        ];
        let named = |pod: &'static str| Rule::Source {
            source: BackupSource::Pod,
            pod: Some(pod),
            role_label: crate::api::DEFAULT_ROLE_LABEL,
        };
        assert_eq!(pick(&named("db-0"), &pods), Ok("db-0".into()));
        assert!(matches!(
            pick(&named("db-1"), &pods),
            Err(SelectError::NotReady { .. })
        ));
        assert!(matches!(
            pick(&named("db-2"), &pods),
            Err(SelectError::NoAgent { .. })
        ));
        assert!(matches!(
            pick(&named("db-9"), &pods),
            Err(SelectError::PodNotFound { .. })
        ));
    }

    #[test]
    fn a_pinned_pod_wins_over_the_rule() {
        let pods = [
            PodBuilder::named("db-0").primary().build(),
            PodBuilder::named("db-1").replica().build(),
        ];
        assert_eq!(pick(&Rule::Pinned("db-1"), &pods), Ok("db-1".into()));
    }

    #[test]
    fn the_agent_port_annotation_overrides_the_default() {
        let pods = [PodBuilder::named("db-0")
            .annotation(AGENT_PORT_ANNOTATION, "7443")
            .build()];
        let target = select(&by_source(BackupSource::Primary), &[&pods[0]], "x").unwrap();
        assert_eq!(target.port, 7443);
    }

    #[test]
    fn custom_role_labels_are_read() {
        let pods = [
            PodBuilder::named("db-0")
                .label("moco.cybozu.com/role", "replica")
                .build(),
            PodBuilder::named("db-1")
                .label("moco.cybozu.com/role", "primary")
                .build(),
        ];
        let rule = Rule::Source {
            source: BackupSource::Primary,
            pod: None,
            role_label: "moco.cybozu.com/role",
        };
        assert_eq!(pick(&rule, &pods), Ok("db-1".into()));
    }
}
