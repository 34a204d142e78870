//! `MySQLBackup`: one hot physical backup of one MySQL server. A one-shot
//! resource: its spec cannot change once created (another backup is another
//! MySQLBackup), and its status records where the backup began and ended.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BackupStorage, MysqlCredentials, SecretKeyRef};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "innoxide.dev",
    version = "v1alpha1",
    kind = "MySQLBackup",
    plural = "mysqlbackups",
    singular = "mysqlbackup",
    shortname = "mybk",
    category = "innoxide",
    namespaced,
    status = "MySQLBackupStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A hot physical backup of one MySQL server, taken by the innoxide agent beside it.",
    validation = Rule::new("self.spec == oldSelf.spec").message(
        "spec is immutable: a MySQLBackup is one backup; create another MySQLBackup to take a new one"
    ),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress.percent"),
    printcolumn(name = "Size", type_ = "string", json_path = ".status.size"),
    printcolumn(name = "Pod", type_ = "string", json_path = ".status.pod", priority = 1),
    printcolumn(name = "Location", type_ = "string", json_path = ".status.location", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.source) && self.source == 'Pod') == has(self.sourcePod)")
        .message("sourcePod names the pod to back up: set it exactly when source is Pod"),
    validation = Rule::new("!(has(self.storage.pvc) && has(self.deletionPolicy) && self.deletionPolicy == 'Delete')").message(
        "deletionPolicy: Delete needs object storage (s3, gcs or azure): the operator cannot reach a PVC to delete from it; use Retain"
    ),
    validation = Rule::new("!has(self.incrementalBase) || (has(self.type) && self.type == 'Incremental')")
        .message("incrementalBase names the backup an Incremental continues: set type: Incremental, or leave incrementalBase out"),
    validation = Rule::new("!has(self.incrementalMethod) || (has(self.type) && self.type == 'Incremental')")
        .message("incrementalMethod says how an Incremental finds its changed pages: set type: Incremental, or leave incrementalMethod out")
)]
pub struct MySQLBackupSpec {
    /// Which MySQL: its StatefulSet, or a selector of its pods.
    pub mysql: MysqlRef,
    /// Which pod the backup is taken on.
    #[serde(default)]
    pub source: BackupSource,
    /// The pod to back up when `source` is `Pod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_pod: Option<String>,
    pub storage: BackupStorage,
    /// `Full` (the default), or `Incremental`: only the pages changed since
    /// its base, restored by applying its whole chain (the full and every
    /// incremental up to this one).
    #[serde(default, rename = "type")]
    pub backup_type: BackupType,
    /// The MySQLBackup an `Incremental` continues (Completed, of the same
    /// MySQL and storage; full or incremental). Left out: the newest
    /// Completed backup of the same MySQL and storage when this one starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental_base: Option<String>,
    /// How an `Incremental` finds its changed pages: `Auto` (the default:
    /// the server's page tracking when it runs and covers the base, else a
    /// scan of every page), `PageTrack` (fails, naming why, when tracking
    /// cannot serve) or `FullScan`. `status.incremental.changedPages` says
    /// which was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental_method: Option<IncrementalMethod>,
    /// Start the server's page tracking (installing `component_mysqlbackup`
    /// if it is missing), so the incrementals after this backup read only
    /// the pages it lists instead of scanning every page. The backup fails,
    /// naming why, when the agent's MySQL user may not. A schedule with
    /// incrementals sets it on its full backups (unless its
    /// `incremental.method` is `FullScan`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub page_tracking: bool,
    #[serde(default)]
    pub compression: Compression,
    /// An AES-256 key (32 bytes, raw, hex or base64) that encrypts the
    /// backup. Keep it: the backup cannot be restored without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key_secret_ref: Option<SecretKeyRef>,
    /// Read limit on data files, bytes per second (`200Mi` is 200 MiB/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(
        "string(self).matches('^[0-9]+(\\\\.[0-9]+)?(k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$') && string(self).matches('[1-9]')"
    ).message("throttle: bytes per second as a quantity, e.g. 200Mi or 1G"))]
    pub throttle: Option<Quantity>,
    /// Files copied at once; the agent's default is 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub parallel: Option<u32>,
    /// Who the agent logs in to MySQL as; left out, the agent's own
    /// configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql_credentials: Option<MysqlCredentials>,
    /// What happens to the backup's data when this resource is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// How long the backup may wait to start (for its pod, its agent, a
    /// Secret, another backup on the same server), counted from its
    /// creation, before it is marked Failed. Default 3600: a backup that
    /// starts hours late is rarely the one that was wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub start_deadline_seconds: Option<u32>,
}

/// How long a backup may wait to start unless `startDeadlineSeconds` says.
pub const DEFAULT_START_DEADLINE_SECONDS: u32 = 3600;

/// The MySQL server: a StatefulSet in this namespace, or a pod selector.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.statefulSetName) != has(self.podSelector)")
    .message("mysql: set exactly one of statefulSetName or podSelector"))]
pub struct MysqlRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_set_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// The pod label that says which pod is the primary (value `primary`)
    /// and which are replicas (value `replica`).
    #[serde(default = "default_role_label")]
    pub role_label: String,
}

/// The label the pods' roles are read from unless `roleLabel` says otherwise.
pub const DEFAULT_ROLE_LABEL: &str = "innoxide.dev/role";

pub(crate) fn default_role_label() -> String {
    DEFAULT_ROLE_LABEL.into()
}

/// Which pod a backup is taken on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum BackupSource {
    /// The primary (the pod whose role label says `primary`; a lone pod is
    /// its own primary).
    #[default]
    Primary,
    /// A ready replica if there is one (the same one every time), else the
    /// primary.
    PreferReplica,
    /// The pod named in `sourcePod`.
    Pod,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum BackupType {
    /// Every page of every tablespace.
    #[default]
    Full,
    /// The pages changed since the base backup.
    Incremental,
}

/// How an incremental backup finds the pages changed since its base.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum IncrementalMethod {
    /// Page tracking when the server's covers the base, else a full scan.
    #[default]
    Auto,
    /// The server's page tracking only.
    PageTrack,
    /// Read every page, keep those changed since the base.
    FullScan,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "Full",
            BackupType::Incremental => "Incremental",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Compression {
    #[default]
    None,
    Zstd,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Deleting the resource leaves the backup in storage.
    #[default]
    Retain,
    /// Deleting the resource deletes the backup from storage first.
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum BackupPhase {
    #[default]
    Pending,
    Running,
    Completed,
    Failed,
}

impl BackupPhase {
    pub fn is_terminal(self) -> bool {
        matches!(self, BackupPhase::Completed | BackupPhase::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackupPhase::Pending => "Pending",
            BackupPhase::Running => "Running",
            BackupPhase::Completed => "Completed",
            BackupPhase::Failed => "Failed",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MySQLBackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the backup is complete and usable) and `Progressing`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::common::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The pod the backup runs (ran) on. Once set it never changes: the
    /// operation lives in that pod's agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The backup's folder in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<BackupProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<LsnRange>,
    /// An Incremental's chain: the backup it continues (chosen when it
    /// starts and never changed after) and, once Completed, its LSN range
    /// and every backup a restore of it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalStatus>,
    /// The point this backup marked in the server's page tracking: the
    /// next incremental can read its changed pages from the server's list
    /// instead of scanning. Unset: tracking did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_tracking_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogPosition>,
    /// The GTID set the backup contains: a restored server has executed
    /// exactly this set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_executed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_uuid: Option<String>,
    /// Bytes stored, and the same for people (`1.5Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Since when a running backup's agent has been out of reach; the
    /// backup fails when that lasts longer than the operator's
    /// agent-lost timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_unreachable_since: Option<Time>,
    /// What is happening, or what went wrong and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupProgress {
    /// The agent's step: Connecting, CopyingTablespaces, ConsistentPoint,
    /// FinishingRedo, WritingMetadata, Done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    #[serde(default)]
    pub files_done: u64,
    #[serde(default)]
    pub files_total: u64,
    /// `bytesDone / bytesTotal`, for `kubectl get` (`42%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LsnRange {
    /// The checkpoint LSN redo capture started at (apply-log starts here).
    pub start: u64,
    /// The consistent point.
    pub end: u64,
    /// The last LSN captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncrementalStatus {
    /// The MySQLBackup this one continues.
    pub base_name: String,
    /// The base's folder in the repository.
    pub base_backup_name: String,
    /// The base's consistent LSN, where this backup's changes begin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_lsn: Option<u64>,
    /// This backup's consistent LSN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_lsn: Option<u64>,
    /// How many backups a restore of this one applies, the full included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_length: Option<u32>,
    /// Their folders in the repository, the full first and this one last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// How its changed pages were found: `PageTracking` (the server's list)
    /// or `FullScan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_pages: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinlogPosition {
    pub file: String,
    pub position: u64,
}

/// The finalizer that keeps a MySQLBackup until its operation is stopped
/// and, with `deletionPolicy: Delete`, its data deleted.
pub const BACKUP_FINALIZER: &str = "innoxide.dev/backup";

impl MySQLBackup {
    pub fn phase(&self) -> BackupPhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }
}
