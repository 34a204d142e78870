//! The scheduling gate `innoxide.dev/agent`: no pod of a StatefulSet runs
//! before the operator has wired it. A StatefulSet whose pod template
//! carries the gate makes pods that Kubernetes does not schedule, so nothing
//! runs on their volumes, until the gate is removed from the pod. The
//! operator removes it from a pod made from the wired template (it has the
//! agent and its init container, with the restore's spec when the
//! StatefulSet names a restore), and deletes a gated pod made before the
//! wiring (it never ran), which the StatefulSet controller makes again from
//! the wired template.
//!
//! A NewStatefulSet restore needs this: without the gate the StatefulSet
//! controller could start the first pod from the unwired template the
//! moment the StatefulSet exists, and mysqld would initialise the empty
//! volume before the init container that restores into it is there. The
//! gate stays in the user's template (in Git): every later pod waits for
//! the operator too, a few seconds while it runs; while it is down, pods of
//! gated StatefulSets stay Pending (`SchedulingGated`).
//!
//! Pure: from the StatefulSet's desired wiring and its pods to what to do.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, PodSchedulingGate};

use super::patch::{Desired, has_wiring};

/// The scheduling gate's name.
pub const AGENT_GATE: &str = "innoxide.dev/agent";
/// The label the StatefulSet controller puts on every pod it makes.
pub const STATEFULSET_POD_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// What to do with one gated pod.
#[derive(Debug, Clone, PartialEq)]
pub enum GateAction {
    /// Made from the wired template: remove the gate (the other gates, if
    /// any, stay), from the pod as read (`resource_version`).
    Lift {
        pod: String,
        resource_version: String,
        gates: Vec<PodSchedulingGate>,
    },
    /// Made before the wiring and never run: delete it (only this UID).
    Replace { pod: String, uid: String },
}

/// Whether the StatefulSet's pod template carries the gate.
pub fn template_is_gated(sts: &StatefulSet) -> bool {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_some_and(|spec| has_gate(spec.scheduling_gates.as_deref()))
}

fn has_gate(gates: Option<&[PodSchedulingGate]>) -> bool {
    gates
        .unwrap_or_default()
        .iter()
        .any(|g| g.name == AGENT_GATE)
}

/// What to do with the StatefulSet's pods that wait at the gate, once its
/// template is wired as `desired` says.
pub fn gate_actions(desired: &Desired, pods: &[&Pod]) -> Vec<GateAction> {
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let spec = pod.spec.as_ref()?;
            let gates = spec.scheduling_gates.clone().unwrap_or_default();
            if !has_gate(Some(&gates)) {
                return None;
            }
            let name = pod.metadata.name.clone()?;
            Some(if has_wiring(spec, desired) {
                GateAction::Lift {
                    pod: name,
                    resource_version: pod.metadata.resource_version.clone().unwrap_or_default(),
                    gates,
                }
            } else {
                GateAction::Replace {
                    pod: name,
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                }
            })
        })
        .collect()
}

/// The merge patch that removes the gate from a pod, only if the pod did
/// not change since it was read (its resourceVersion; else a 409 and the
/// next reconcile looks again). Kubernetes allows removing a pod's
/// scheduling gates, never adding them.
pub fn lift_patch(resource_version: &str, gates: &[PodSchedulingGate]) -> serde_json::Value {
    let kept: Vec<&PodSchedulingGate> = gates.iter().filter(|g| g.name != AGENT_GATE).collect();
    let gates = if kept.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(kept)
    };
    serde_json::json!({
        "metadata": {"resourceVersion": resource_version},
        "spec": {"schedulingGates": gates},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wiring::patch::{WiringSettings, desired};

    const GATED: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db2
  namespace: prod
  labels: {innoxide.dev/agent: enabled}
  annotations: {innoxide.dev/restore-from: clone}
spec:
  serviceName: db2
  selector: {matchLabels: {app: db2}}
  template:
    metadata: {labels: {app: db2}}
    spec:
      schedulingGates: [{name: innoxide.dev/agent}]
      containers:
      - name: mysql
        image: mysql:9.7.4
        volumeMounts: [{name: data, mountPath: /var/lib/mysql}]
"#;

    fn sts() -> StatefulSet {
        serde_yaml::from_str(GATED).unwrap()
    }

    fn wiring() -> Desired {
        desired(
            &sts(),
            &WiringSettings {
                agent_image: "innoxide/innoxide-agent:0.1.0".into(),
            },
        )
        .unwrap()
    }

    /// A pod of the StatefulSet made from `spec`.
    fn pod(name: &str, spec: k8s_openapi::api::core::v1::PodSpec) -> Pod {
        let mut pod = Pod {
            spec: Some(spec),
            ..Pod::default()
        };
        pod.metadata.name = Some(name.into());
        pod.metadata.uid = Some(format!("uid-{name}"));
        pod
    }

    fn unwired_spec() -> k8s_openapi::api::core::v1::PodSpec {
        sts().spec.unwrap().template.spec.unwrap()
    }

    /// The template's spec once the wiring is applied.
    fn wired_spec() -> k8s_openapi::api::core::v1::PodSpec {
        let mut spec = unwired_spec();
        let patch = wiring().patch.spec.unwrap().template.spec.unwrap();
        spec.init_containers = patch.init_containers;
        spec.volumes = patch.volumes;
        for c in patch.containers {
            match spec.containers.iter_mut().find(|t| t.name == c.name) {
                Some(mine) => mine
                    .volume_mounts
                    .get_or_insert_with(Vec::new)
                    .extend(c.volume_mounts.unwrap_or_default()),
                None => spec.containers.push(c),
            }
        }
        spec
    }

    #[test]
    fn a_pod_made_before_the_wiring_is_replaced_and_one_made_after_is_let_go() {
        assert!(template_is_gated(&sts()));
        let early = pod("db2-0", unwired_spec());
        let mut late = pod("db2-1", wired_spec());
        late.metadata.resource_version = Some("7".into());
        let actions = gate_actions(&wiring(), &[&early, &late]);
        assert_eq!(
            actions,
            [
                GateAction::Replace {
                    pod: "db2-0".into(),
                    uid: "uid-db2-0".into()
                },
                GateAction::Lift {
                    pod: "db2-1".into(),
                    resource_version: "7".into(),
                    gates: vec![PodSchedulingGate {
                        name: AGENT_GATE.into()
                    }],
                },
            ]
        );
    }

    #[test]
    fn pods_that_run_or_go_are_left_alone() {
        let mut running = wired_spec();
        running.scheduling_gates = None;
        let mut leaving = pod("db2-1", unwired_spec());
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-12-06T04:00:00Z".parse().unwrap(),
            ));
        assert!(gate_actions(&wiring(), &[&pod("db2-0", running), &leaving]).is_empty());
    }

    #[test]
    fn lifting_removes_only_the_operators_gate_from_the_list_as_read() {
        let ours = PodSchedulingGate {
            name: AGENT_GATE.into(),
        };
        let theirs = PodSchedulingGate {
            name: "example.com/quota".into(),
        };
        let patch = lift_patch("7", &[ours.clone(), theirs]);
        assert_eq!(
            patch,
            serde_json::json!({
                "metadata": {"resourceVersion": "7"},
                "spec": {"schedulingGates": [{"name": "example.com/quota"}]},
            })
        );
        assert_eq!(
            lift_patch("7", &[ours])["spec"],
            serde_json::json!({"schedulingGates": null})
        );
    }
}
