//! `MySQLRestore`: one restore of one backup into one StatefulSet. A
//! one-shot resource like MySQLBackup: its spec cannot change once created,
//! its status records what was restored, how long it took and how long the
//! server was away.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BackupProgress, BackupStorage, SecretKeyRef};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "innoxide.dev",
    version = "v1alpha1",
    kind = "MySQLRestore",
    plural = "mysqlrestores",
    singular = "mysqlrestore",
    shortname = "myrs",
    category = "innoxide",
    namespaced,
    status = "MySQLRestoreStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Restores a backup into a MySQL StatefulSet: staged beside the running server and swapped in at a pod restart, or into a new StatefulSet's empty volume.",
    validation = Rule::new("self.spec == oldSelf.spec").message(
        "spec is immutable: a MySQLRestore is one restore; create another MySQLRestore to restore again"
    ),
    validation = Rule::new("size(self.metadata.name) <= 240").message(
        "metadata.name: at most 240 characters (the restore's Secret is named <name>-restore-spec)"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress.percent"),
    printcolumn(name = "Target", type_ = "string", json_path = ".status.target"),
    printcolumn(name = "Downtime", type_ = "string", json_path = ".status.unavailability", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "!(has(self.source.location) && has(self.source.location.storage.pvc) && self.target.mode == 'NewStatefulSet')"
    ).message(
        "a pvc location cannot be restored into a new StatefulSet: the operator cannot read the backup's GTID set from a claim to check the result; restore from a MySQLBackup (source.backupName) or from object storage"
    ),
    validation = Rule::new(
        "!has(self.source.pointInTime) || self.target.mode == 'InPlace'"
    ).message(
        "source.pointInTime restores in place only (target.mode InPlace) for now"
    )
)]
pub struct MySQLRestoreSpec {
    /// The backup to restore.
    pub source: RestoreSource,
    /// Where it goes.
    pub target: RestoreTarget,
    /// The AES-256 key of an encrypted backup. With `source.backupName`,
    /// left out means the MySQLBackup's own `encryptionKeySecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key_secret_ref: Option<SecretKeyRef>,
    /// Buffer pool of the mysqld that applies the log (`1Gi`); the agent's
    /// default is 256Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(
        "string(self).matches('^[0-9]+(\\\\.[0-9]+)?(k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$') && string(self).matches('[1-9]')"
    ).message("useMemory: bytes as a quantity, e.g. 1Gi or 512Mi"))]
    pub use_memory: Option<Quantity>,
    /// How long an in-place restore may wait to start staging (for its pod,
    /// its agent, the backup, a Secret), counted from its creation, before
    /// it is marked Failed. Default 3600. Once staging began, nothing times
    /// out: a swap in progress is never abandoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub start_deadline_seconds: Option<u32>,
}

/// Exactly one of a MySQLBackup of this namespace, a raw location, or a
/// point in time.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.backupName) ? 1 : 0) + (has(self.location) ? 1 : 0) + (has(self.pointInTime) ? 1 : 0) == 1")
    .message("source: set exactly one of backupName (a MySQLBackup in this namespace), location (a backup in a repository) or pointInTime (a time, GTID set or position in a schedule's binlog archive)"))]
pub struct RestoreSource {
    /// A Completed MySQLBackup in this namespace: its storage, credentials
    /// and encryption key are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub backup_name: Option<String>,
    /// A backup in a repository, e.g. one another cluster or namespace took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<BackupLocation>,
    /// A point in time: the newest Completed backup of the schedule before
    /// it, then the schedule's binlog archive replayed up to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<PointInTime>,
}

/// Where a point-in-time restore stops: exactly one of `gtid`, `time` and
/// `position`, in the binlog archive of a MySQLBackupSchedule of this
/// namespace (`spec.binlogArchive`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.gtid) ? 1 : 0) + (has(self.time) ? 1 : 0) + (has(self.position) ? 1 : 0) == 1")
    .message("pointInTime: set exactly one of gtid, time or position"))]
pub struct PointInTime {
    /// The MySQLBackupSchedule whose backups and binlog archive are used.
    #[schemars(length(min = 1, max = 253))]
    pub schedule_name: String,
    /// The restored server has executed exactly this GTID set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub gtid: Option<String>,
    /// The last transaction committed at or before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// `FILE:POSITION` of an archived binlog file (of the server that wrote
    /// it): the replay stops there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[^:/]+:[0-9]+$')")
        .message("position: FILE:POSITION of a binlog file, e.g. binlog.000012:4567"))]
    pub position: Option<String>,
}

/// A backup by where it is: the repository (the same storage shape as a
/// MySQLBackup's) and the backup's folder in it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.storage.s3) || !has(self.storage.s3.endpoint) || has(self.storage.s3.credentialsSecretRef)"
).message(
    "location.storage.s3: an S3-compatible endpoint needs credentialsSecretRef (only AWS offers keys from the environment)"
))]
pub struct BackupLocation {
    pub storage: BackupStorage,
    /// The backup's folder in the repository (a MySQLBackup's
    /// `status.backupName`).
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$')")
        .message("location.backupName: one folder name of 1 to 128 letters, digits, '.', '_' or '-', not starting with '.'"))]
    pub backup_name: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.pod) || self.mode == 'InPlace'")
    .message("target.pod chooses the pod of a running StatefulSet: set it only with mode InPlace"))]
pub struct RestoreTarget {
    /// A StatefulSet in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub stateful_set_name: String,
    pub mode: RestoreMode,
    /// InPlace: the pod whose data is replaced. Left out: the primary (the
    /// pod labelled `<roleLabel>=primary`), else ordinal 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The pod label that says which pod is the primary.
    #[serde(default = "super::backup::default_role_label")]
    pub role_label: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RestoreMode {
    /// Into the running StatefulSet: the agent stages the restore beside
    /// the live server, then the pod restarts once and its init container
    /// swaps the datadir in. The previous datadir is kept.
    #[default]
    InPlace,
    /// Into a StatefulSet that has not started yet (annotate it
    /// `innoxide.dev/restore-from: <this restore>`): each pod's init
    /// container restores into its empty volume before mysqld first starts.
    NewStatefulSet,
}

/// The annotation on a StatefulSet that names the MySQLRestore its empty
/// volumes are restored from.
pub const RESTORE_FROM_ANNOTATION: &str = "innoxide.dev/restore-from";

/// The Secret that holds a NewStatefulSet restore's spec for the init
/// container (owned by the MySQLRestore).
pub fn restore_spec_secret_name(restore: &str) -> String {
    format!("{restore}-restore-spec")
}

/// The key of that Secret.
pub const RESTORE_SPEC_KEY: &str = "restore-spec.json";

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RestorePhase {
    /// Waiting to start: the backup, the pod, a Secret, another restore.
    #[default]
    Pending,
    /// The agent downloads and verifies the backup beside the live server.
    Fetching,
    /// The agent applies the log to the staged copy.
    Preparing,
    /// Staged and prepared; the server still runs on its old data.
    Ready,
    /// The swap is armed and the pod is being deleted.
    Switching,
    /// The pod restarts on the restored data.
    Restarting,
    Completed,
    Failed,
}

impl RestorePhase {
    pub fn is_terminal(self) -> bool {
        matches!(self, RestorePhase::Completed | RestorePhase::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RestorePhase::Pending => "Pending",
            RestorePhase::Fetching => "Fetching",
            RestorePhase::Preparing => "Preparing",
            RestorePhase::Ready => "Ready",
            RestorePhase::Switching => "Switching",
            RestorePhase::Restarting => "Restarting",
            RestorePhase::Completed => "Completed",
            RestorePhase::Failed => "Failed",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MySQLRestoreStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the server runs on the restored data) and `Progressing`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::common::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// `StatefulSet/pod (mode)`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The pod restored into. Once staging began it never changes: the
    /// staged copy lives on that pod's volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Staging progress (bytes fetched of the backup's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<BackupProgress>,
    /// What is restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<RestoredBackup>,
    /// A point-in-time restore: the base backup and the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<PointInTimeStatus>,
    /// The restored server's @@GLOBAL.gtid_executed, read after it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_executed: Option<String>,
    /// InPlace: the pod deletion that starts the swap. Written before the
    /// pod is deleted, so a restarted operator knows whether it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<SwitchRecord>,
    /// InPlace: where the replaced datadir is kept on the pod's volume;
    /// removed when a Completed restore is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_datadir: Option<String>,
    /// Seconds spent fetching, verifying and preparing while the server
    /// kept serving (InPlace), or restoring in the init container
    /// (NewStatefulSet: pod creation to Ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_seconds: Option<f64>,
    /// InPlace: seconds from the pod's deletion until its agent answered
    /// on the restored data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailability_seconds: Option<f64>,
    /// The same for people (`12s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// What is happening, or what went wrong and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoredBackup {
    /// Where the backup is (`s3://bucket/prefix/name`).
    pub location: String,
    /// The backup's last LSN (the restored redo ends there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_lsn: Option<u64>,
    /// The GTID set the backup contains: the restored server must have
    /// executed exactly this set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_executed: Option<String>,
    /// The chain the restore applied, as the backups' folders in the
    /// repository: the full first, then each incremental in order (one
    /// entry for a full backup).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
}

/// What a point-in-time restore restores.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointInTimeStatus {
    /// The target as asked (`time 2026-12-06T20:14:03Z`, `gtid …`,
    /// `position binlog.000012:4567`).
    pub target: String,
    /// The MySQLBackup the restore starts from: the newest Completed one
    /// of the schedule before the target.
    pub base_backup: String,
    /// The binlog archive replayed (`s3://bucket/prefix/binlogs`).
    pub archive: String,
    /// The GTID set at the target: what the restored server has executed
    /// (known once staged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_executed: Option<String>,
    /// Transactions replayed from the archive on top of the base backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions_replayed: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchRecord {
    /// The UID of the pod that is deleted; a pod with another UID is its
    /// replacement.
    pub pod_uid: String,
    pub deleted_at: Time,
}

/// The finalizer that keeps a MySQLRestore until what it started in the
/// agent is stopped (a staging) or withdrawn (a swap armed, not begun).
pub const RESTORE_FINALIZER: &str = "innoxide.dev/restore";

impl MySQLRestore {
    pub fn phase(&self) -> RestorePhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }
}
