//! The API server refuses bad specs with a message that says what to fix:
//! the CRDs' CEL rules, evaluated here as the API server evaluates them
//! (kube's CEL validator over the generated schema), on objects written the
//! way users write them.

use innoxide_operator::api::{MySQLBackup, MySQLBackupSchedule};
use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::Value;

fn schema_of<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
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

/// Creating this object: Ok, or the messages it is refused with.
fn create<K: CustomResourceExt>(yaml: &str) -> Result<(), String> {
    Validator::new()
        .validate(&schema_of::<K>(), &object(yaml), None)
        .map_err(|e| format!("{e:?}"))
}

fn update<K: CustomResourceExt>(old: &str, new: &str) -> Result<(), String> {
    Validator::new()
        .validate(&schema_of::<K>(), &object(new), Some(&object(old)))
        .map_err(|e| format!("{e:?}"))
}

fn refused_backup(yaml: &str, message: &str) {
    let err = create::<MySQLBackup>(yaml).expect_err("refused");
    assert!(err.contains(message), "expected {message:?} in {err}");
}

const GOOD_BACKUP: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackup
metadata: {name: nightly, namespace: prod}
spec:
  mysql: {statefulSetName: db}
  source: PreferReplica
  storage:
    s3:
      bucket: backups
      prefix: prod/db
      endpoint: http://minio.minio:9000
      credentialsSecretRef: {name: s3-keys}
  compression: Zstd
  throttle: 200Mi
  deletionPolicy: Delete
"#;

#[test]
fn a_well_formed_backup_is_accepted() {
    create::<MySQLBackup>(GOOD_BACKUP).unwrap();
}

#[test]
fn storage_must_be_exactly_one_of_four() {
    let two = GOOD_BACKUP.replace(
        "  compression: Zstd",
        "    pvc: {claimName: backups}\n  compression: Zstd",
    );
    refused_backup(&two, "storage: set exactly one of s3, gcs, azure or pvc");
    let none = r#"
spec:
  mysql: {statefulSetName: db}
  storage: {}
"#;
    refused_backup(none, "storage: set exactly one of s3, gcs, azure or pvc");
}

#[test]
fn the_mysql_is_a_statefulset_or_a_selector_not_both() {
    let both = GOOD_BACKUP.replace(
        "mysql: {statefulSetName: db}",
        "mysql: {statefulSetName: db, podSelector: {matchLabels: {app: db}}}",
    );
    refused_backup(
        &both,
        "mysql: set exactly one of statefulSetName or podSelector",
    );
    let neither = GOOD_BACKUP.replace("mysql: {statefulSetName: db}", "mysql: {}");
    refused_backup(
        &neither,
        "mysql: set exactly one of statefulSetName or podSelector",
    );
}

#[test]
fn a_named_pod_goes_with_source_pod() {
    let missing = GOOD_BACKUP.replace("source: PreferReplica", "source: Pod");
    refused_backup(&missing, "sourcePod names the pod to back up");
    let stray = GOOD_BACKUP.replace(
        "source: PreferReplica",
        "source: Primary\n  sourcePod: db-1",
    );
    refused_backup(&stray, "sourcePod names the pod to back up");
    let named = GOOD_BACKUP.replace("source: PreferReplica", "source: Pod\n  sourcePod: db-1");
    create::<MySQLBackup>(&named).unwrap();
}

#[test]
fn a_claim_cannot_promise_deletion() {
    let claim = r#"
spec:
  mysql: {statefulSetName: db}
  storage: {pvc: {claimName: backups, path: db1}}
  deletionPolicy: Delete
"#;
    refused_backup(claim, "deletionPolicy: Delete needs object storage");
    create::<MySQLBackup>(&claim.replace("Delete", "Retain")).unwrap();
}

#[test]
fn paths_and_endpoints_are_checked() {
    refused_backup(
        &GOOD_BACKUP.replace("prefix: prod/db", "prefix: /prod/db"),
        "prefix: no leading, trailing or double slash",
    );
    refused_backup(
        &GOOD_BACKUP.replace("http://minio.minio:9000", "minio.minio:9000"),
        "endpoint: a URL that starts with http://",
    );
    let azure = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackup
metadata: {name: nightly, namespace: prod}
spec:
  mysql: {statefulSetName: db}
  storage:
    azure: {storageAccount: acct1, container: backups, endpoint: https://acct1.blob.core.usgovcloudapi.net}
"#;
    create::<MySQLBackup>(azure).unwrap();
    refused_backup(
        &azure.replace("https://acct1", "acct1"),
        "endpoint: a URL that starts with http://",
    );
    let escape = r#"
spec:
  mysql: {statefulSetName: db}
  storage: {pvc: {claimName: backups, path: a/../../etc}}
"#;
    refused_backup(
        escape,
        "path: a relative folder inside the volume, without '..'",
    );
}

#[test]
fn throttle_is_a_quantity() {
    refused_backup(
        &GOOD_BACKUP.replace("throttle: 200Mi", "throttle: 10MB"),
        "throttle: bytes per second as a quantity",
    );
    refused_backup(
        &GOOD_BACKUP.replace("throttle: 200Mi", "throttle: \"0\""),
        "throttle: bytes per second as a quantity",
    );
    create::<MySQLBackup>(&GOOD_BACKUP.replace("throttle: 200Mi", "throttle: 1.5G")).unwrap();
}

#[test]
fn a_backup_s_spec_never_changes_but_its_status_does() {
    let moved = GOOD_BACKUP.replace("bucket: backups", "bucket: elsewhere");
    let err = update::<MySQLBackup>(GOOD_BACKUP, &moved).unwrap_err();
    assert!(err.contains("spec is immutable"), "{err}");
    let with_status = format!("{GOOD_BACKUP}status: {{phase: Running}}\n");
    update::<MySQLBackup>(GOOD_BACKUP, &with_status).unwrap();
}

const GOOD_SCHEDULE: &str = r#"
apiVersion: innoxide.dev/v1alpha1
kind: MySQLBackupSchedule
metadata: {name: nightly, namespace: prod}
spec:
  schedule: "0 3 * * *"
  timeZone: Europe/Berlin
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: 600
  retention: {keepLast: 7, maxAge: 30d}
  backupTemplate:
    spec:
      mysql: {statefulSetName: db}
      storage: {s3: {bucket: backups}}
"#;

fn refused_schedule(yaml: &str, message: &str) {
    let err = create::<MySQLBackupSchedule>(yaml).expect_err("refused");
    assert!(err.contains(message), "expected {message:?} in {err}");
}

#[test]
fn a_well_formed_schedule_is_accepted() {
    create::<MySQLBackupSchedule>(GOOD_SCHEDULE).unwrap();
    create::<MySQLBackupSchedule>(&GOOD_SCHEDULE.replace("\"0 3 * * *\"", "\"@daily\"")).unwrap();
}

#[test]
fn a_schedule_has_five_cron_fields() {
    refused_schedule(
        &GOOD_SCHEDULE.replace("\"0 3 * * *\"", "\"0 3 * *\""),
        "schedule: five cron fields",
    );
    refused_schedule(
        &GOOD_SCHEDULE.replace("\"0 3 * * *\"", "\"every day\""),
        "schedule: five cron fields",
    );
}

#[test]
fn retention_says_something_and_ages_have_units() {
    refused_schedule(
        &GOOD_SCHEDULE.replace("{keepLast: 7, maxAge: 30d}", "{}"),
        "retention: set keepLast, maxAge or both",
    );
    refused_schedule(
        &GOOD_SCHEDULE.replace("maxAge: 30d", "maxAge: 30 days"),
        "maxAge: a number and a unit",
    );
}

#[test]
fn the_template_is_held_to_the_backup_s_rules() {
    let two = GOOD_SCHEDULE.replace(
        "storage: {s3: {bucket: backups}}",
        "storage: {s3: {bucket: backups}, gcs: {bucket: other}}",
    );
    refused_schedule(&two, "storage: set exactly one of s3, gcs, azure or pvc");
}

#[test]
fn schedule_names_leave_room_for_the_run_time() {
    let long = GOOD_SCHEDULE.replace("name: nightly,", &format!("name: {},", "n".repeat(51)));
    refused_schedule(&long, "metadata.name: at most 50 characters");
}

#[test]
fn an_incremental_base_goes_with_type_incremental() {
    let incremental = GOOD_BACKUP.replace(
        "  compression: Zstd",
        "  type: Incremental\n  incrementalBase: weekly\n  compression: Zstd",
    );
    create::<MySQLBackup>(&incremental).unwrap();
    create::<MySQLBackup>(&incremental.replace("  incrementalBase: weekly\n", "")).unwrap();
    let untyped = GOOD_BACKUP.replace(
        "  compression: Zstd",
        "  incrementalBase: weekly\n  compression: Zstd",
    );
    refused_backup(
        &untyped,
        "incrementalBase names the backup an Incremental continues",
    );
    refused_backup(
        &untyped.replace("  incrementalBase", "  type: Full\n  incrementalBase"),
        "set type: Incremental",
    );
}

#[test]
fn a_schedule_takes_incrementals_on_its_own_cron_and_chooses_their_type() {
    let weekly_hourly = GOOD_SCHEDULE.replace(
        "  timeZone:",
        "  incremental: {schedule: \"0 * * * *\"}\n  timeZone:",
    );
    create::<MySQLBackupSchedule>(&weekly_hourly).unwrap();
    refused_schedule(
        &weekly_hourly.replace("\"0 * * * *\"", "\"hourly\""),
        "incremental.schedule: five cron fields",
    );
    refused_schedule(
        &GOOD_SCHEDULE.replace(
            "      mysql: {statefulSetName: db}",
            "      type: Incremental\n      mysql: {statefulSetName: db}",
        ),
        "leave type, incrementalBase and incrementalMethod out",
    );
}
