//! The API server refuses impossible MySQLRestores with a message that
//! says what to fix: the CRD's schema and CEL rules, evaluated here as the
//! API server evaluates them (kube's CEL validator over the generated
//! schema, as in validation.rs), on objects written the way users write them.

use innoxide_operator::api::MySQLRestore;
use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::Value;

fn schema() -> Value {
    let crd = MySQLRestore::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn object(yaml: &str) -> Value {
    serde_yaml::from_str(yaml).expect("a YAML fixture")
}

fn create(yaml: &str) -> Result<(), String> {
    Validator::new()
        .validate(&schema(), &object(yaml), None)
        .map_err(|e| format!("{e:?}"))
}

fn refused(yaml: &str, message: &str) {
    let err = create(yaml).expect_err("refused");
    assert!(err.contains(message), "expected {message:?} in {err}");
}

const FROM_BACKUP: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLRestore
metadata: {name: back-to-nightly, namespace: prod}
spec:
  source: {backupName: nightly}
  target: {statefulSetName: db, mode: InPlace}
  useMemory: 1Gi
"#;

const FROM_LOCATION: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLRestore
metadata: {name: clone-of-prod, namespace: staging}
spec:
  source:
    location:
      backupName: nightly-202611210300
      storage:
        s3:
          bucket: backups
          prefix: prod/db
          endpoint: http://minio.minio:9000
          credentialsSecretRef: {name: prod-s3-keys}
  target: {statefulSetName: db-staging, mode: NewStatefulSet}
  encryptionKeySecretRef: {name: prod-backup-key, key: key}
"#;

#[test]
fn well_formed_restores_are_accepted() {
    create(FROM_BACKUP).unwrap();
    create(FROM_LOCATION).unwrap();
    create(&FROM_BACKUP.replace("mode: InPlace}", "mode: InPlace, pod: db-1}")).unwrap();
}

#[test]
fn the_source_is_a_backup_or_a_location_never_both_nor_neither() {
    let both = FROM_LOCATION.replace("  source:\n", "  source:\n    backupName: nightly\n");
    refused(&both, "source: set exactly one of backupName");
    let neither = FROM_BACKUP.replace("source: {backupName: nightly}", "source: {}");
    refused(&neither, "source: set exactly one of backupName");
}

#[test]
fn an_s3_compatible_location_needs_credentials() {
    let keyless =
        FROM_LOCATION.replace("          credentialsSecretRef: {name: prod-s3-keys}\n", "");
    refused(
        &keyless,
        "an S3-compatible endpoint needs credentialsSecretRef",
    );
    // AWS itself may give keys from the environment.
    let aws = keyless.replace("          endpoint: http://minio.minio:9000\n", "");
    create(&aws).unwrap();
}

#[test]
fn a_location_s_storage_follows_the_backup_s_rules() {
    let two = FROM_LOCATION.replace(
        "      storage:\n",
        "      storage:\n        pvc: {claimName: backups}\n",
    );
    refused(&two, "storage: set exactly one of s3, gcs, azure or pvc");
    refused(
        &FROM_LOCATION.replace("backupName: nightly-202611210300", "backupName: ../etc"),
        "location.backupName: one folder name",
    );
}

#[test]
fn a_claim_cannot_seed_a_new_statefulset() {
    let claim = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLRestore
metadata: {name: r, namespace: prod}
spec:
  source: {location: {backupName: nightly, storage: {pvc: {claimName: backups}}}}
  target: {statefulSetName: db2, mode: NewStatefulSet}
"#;
    refused(
        claim,
        "a pvc location cannot be restored into a new StatefulSet",
    );
    create(&claim.replace("NewStatefulSet", "InPlace")).unwrap();
}

#[test]
fn a_pod_is_chosen_only_in_place() {
    let pod_for_new =
        FROM_LOCATION.replace("mode: NewStatefulSet}", "mode: NewStatefulSet, pod: db-0}");
    refused(
        &pod_for_new,
        "target.pod chooses the pod of a running StatefulSet",
    );
    // The mode's enum and the required target are the schema's (the API
    // server checks them; the CEL validator here does not).
}

#[test]
fn use_memory_is_a_quantity() {
    refused(
        &FROM_BACKUP.replace("useMemory: 1Gi", "useMemory: lots"),
        "useMemory: bytes as a quantity",
    );
}

#[test]
fn a_restore_s_spec_never_changes_but_its_status_does() {
    let moved = FROM_BACKUP.replace("backupName: nightly", "backupName: weekly");
    let err = Validator::new()
        .validate(&schema(), &object(&moved), Some(&object(FROM_BACKUP)))
        .map_err(|e| format!("{e:?}"))
        .unwrap_err();
    assert!(err.contains("spec is immutable"), "{err}");
    let with_status = format!("{FROM_BACKUP}status: {{phase: Fetching}}\n");
    Validator::new()
        .validate(&schema(), &object(&with_status), Some(&object(FROM_BACKUP)))
        .unwrap();
}

#[test]
fn names_leave_room_for_the_spec_secret() {
    let long = FROM_BACKUP.replace(
        "name: back-to-nightly,",
        &format!("name: {},", "r".repeat(241)),
    );
    refused(&long, "metadata.name: at most 240 characters");
}
