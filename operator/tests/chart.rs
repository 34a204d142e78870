//! The Helm chart, checked by Helm's own code: `charts/check_chart.py` lints
//! and renders it with helm-python-sdk (Helm v4's Go SDK) and validates every
//! rendered object strictly against the Kubernetes schemas, for the default
//! install, a second release beside it, fullnameOverride, the
//! namespace-scoped mode and values the schema must refuse.
//! `scripts/helm.sh` installs the tools (cached under ~/.cache/innoxide).

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python, installed on first use.
fn helm_python() -> String {
    let out = Command::new("bash")
        .arg(repo().join("scripts/helm.sh"))
        .output()
        .expect("bash runs scripts/helm.sh");
    assert!(
        out.status.success(),
        "scripts/helm.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("scripts/helm.sh prints the venv's python")
        .trim()
        .to_owned()
}

#[test]
fn helm_renders_lints_and_the_kubernetes_schemas_accept_every_install_mode() {
    let out = Command::new(helm_python())
        .arg(repo().join("charts/check_chart.py"))
        .arg(repo().join("charts/innoxide-operator"))
        .output()
        .expect("the venv's python runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(out.status.success(), "the chart check failed:\n{report}");
    assert!(report.contains("all checks passed"), "{report}");
}
