//! The Pod Security Standard `restricted` (Kubernetes 1.33), as the API
//! server's PodSecurity admission checks a pod in a namespace labelled
//! `pod-security.kubernetes.io/enforce: restricted`: what a test needs to
//! know whether such a namespace would admit a pod. The checks follow the
//! standard's table; AppArmor, SELinux, /proc mount and sysctl fields, which
//! nothing here sets, are not checked.

use k8s_openapi::api::core::v1::{Container, PodSpec};

/// Why the `restricted` level would reject the pod (empty: admitted).
pub fn restricted_violations(spec: &PodSpec) -> Vec<String> {
    let mut found = Vec::new();
    let pod = spec.security_context.clone().unwrap_or_default();
    for (flag, name) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if flag == Some(true) {
            found.push(format!("{name}=true"));
        }
    }
    for volume in spec.volumes.iter().flatten() {
        let allowed = volume.config_map.is_some()
            || volume.csi.is_some()
            || volume.downward_api.is_some()
            || volume.empty_dir.is_some()
            || volume.ephemeral.is_some()
            || volume.persistent_volume_claim.is_some()
            || volume.projected.is_some()
            || volume.secret.is_some();
        if !allowed {
            found.push(format!(
                "volume {} has a restricted volume type",
                volume.name
            ));
        }
    }
    if pod.run_as_user == Some(0) {
        found.push("pod runAsUser=0".into());
    }
    let pod_seccomp = pod.seccomp_profile.as_ref().map(|s| s.type_.clone());
    if pod_seccomp.as_deref() == Some("Unconfined") {
        found.push("pod seccompProfile Unconfined".into());
    }
    let all: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    for c in all {
        let sc = c.security_context.clone().unwrap_or_default();
        let name = &c.name;
        if sc.privileged == Some(true) {
            found.push(format!("container {name} is privileged"));
        }
        if sc.allow_privilege_escalation != Some(false) {
            found.push(format!(
                "container {name} must set allowPrivilegeEscalation=false"
            ));
        }
        if sc.run_as_non_root.or(pod.run_as_non_root) != Some(true) {
            found.push(format!(
                "container {name} must set runAsNonRoot=true (or the pod)"
            ));
        }
        if sc.run_as_user == Some(0) {
            found.push(format!("container {name} runAsUser=0"));
        }
        match sc
            .seccomp_profile
            .map(|s| s.type_)
            .or(pod_seccomp.clone())
            .as_deref()
        {
            Some("RuntimeDefault" | "Localhost") => {}
            _ => found.push(format!(
                "container {name} must set seccompProfile RuntimeDefault or Localhost (or the pod)"
            )),
        }
        let caps = sc.capabilities.unwrap_or_default();
        if !caps.drop.iter().flatten().any(|d| d == "ALL") {
            found.push(format!("container {name} must drop ALL capabilities"));
        }
        for add in caps.add.iter().flatten() {
            if add != "NET_BIND_SERVICE" {
                found.push(format!("container {name} adds capability {add}"));
            }
        }
        for port in c.ports.iter().flatten() {
            if port.host_port.is_some_and(|p| p != 0) {
                found.push(format!("container {name} uses hostPort"));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> PodSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_compliant_pod_is_admitted() {
        let pod = spec(
            r#"{"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}],
                "volumes": [{"name": "d", "emptyDir": {}}]}"#,
        );
        assert_eq!(restricted_violations(&pod), Vec::<String>::new());
    }

    #[test]
    fn a_bare_init_container_is_rejected() {
        let pod = spec(
            r#"{"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "initContainers": [{"name": "install"}],
                "containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}}}],
                "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}"#,
        );
        let found = restricted_violations(&pod);
        assert!(
            found
                .iter()
                .any(|v| v.contains("install must set allowPrivilegeEscalation")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|v| v.contains("install must drop ALL")),
            "{found:?}"
        );
        assert!(found.iter().any(|v| v.contains("volume h")), "{found:?}");
        assert_eq!(found.len(), 3, "{found:?}");
    }
}
