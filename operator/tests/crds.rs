//! The CRDs checked in under `crds/` are exactly what the Rust types
//! generate: a change to a type without `make crds` fails here.

use std::path::PathBuf;

#[test]
fn checked_in_crds_match_the_rust_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut stale = Vec::new();
    for (file, crd) in innoxide_operator::crd::all() {
        let path = dir.join(file);
        let generated = innoxide_operator::crd::to_yaml(&crd);
        match std::fs::read_to_string(&path) {
            Ok(checked_in) if checked_in == generated => {}
            Ok(_) => stale.push(format!("{} differs", path.display())),
            Err(e) => stale.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "the CRDs in crds/ drifted from the Rust types; run `make crds` and commit the result:\n  {}",
        stale.join("\n  ")
    );
}

#[test]
fn every_crd_has_a_file_and_nothing_else_hides_there() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let expected: Vec<&str> = innoxide_operator::crd::all()
        .iter()
        .map(|(f, _)| *f)
        .collect();
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    found.sort();
    let mut expected_sorted: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected_sorted.sort();
    assert_eq!(
        found, expected_sorted,
        "crds/ holds exactly the generated CRDs"
    );
}

#[test]
fn the_helm_chart_ships_the_same_crds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, crd) in innoxide_operator::crd::all() {
        let path = root.join("charts/innoxide-operator/crds").join(file);
        let shipped = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            shipped == innoxide_operator::crd::to_yaml(&crd),
            "{} differs from the generated CRD; run `make crds`",
            path.display()
        );
    }
}
