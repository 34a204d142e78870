//! `MySQLBackupSchedule`: MySQLBackups made on a cron schedule, with
//! retention applied to them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{IncrementalMethod, MySQLBackupSpec};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "innoxide.dev",
    version = "v1alpha1",
    kind = "MySQLBackupSchedule",
    plural = "mysqlbackupschedules",
    singular = "mysqlbackupschedule",
    shortname = "mybks",
    category = "innoxide",
    namespaced,
    status = "MySQLBackupScheduleStatus",
    derive = "PartialEq",
    doc = "MySQLBackups made on a cron schedule, with retention applied to them.",
    validation = Rule::new("size(self.metadata.name) <= 50").message(
        "metadata.name: at most 50 characters (each backup is named <schedule>-<YYYYMMDDhhmm>)"
    ),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Last Schedule", type_ = "date", json_path = ".status.lastScheduleTime"),
    printcolumn(name = "Last Success", type_ = "date", json_path = ".status.lastSuccessfulTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.backupTemplate.spec.incrementalBase) && !has(self.backupTemplate.spec.incrementalMethod) && (!has(self.backupTemplate.spec.type) || self.backupTemplate.spec.type == 'Full')"
).message("backupTemplate.spec: leave type, incrementalBase and incrementalMethod out: the schedule chooses them (set incremental.schedule and incremental.method to take incrementals)"))]
pub struct MySQLBackupScheduleSpec {
    /// Standard cron: five fields (minute hour day-of-month month
    /// day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly.
    #[x_kube(validation = Rule::new(
        "self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+)$')"
    ).message("schedule: five cron fields (minute hour day-of-month month day-of-week), e.g. '0 3 * * *', or @daily"))]
    pub schedule: String,
    /// Incremental backups between the full ones that `schedule` takes,
    /// e.g. fulls `@weekly` and incrementals `@hourly`. Each incremental
    /// continues the newest Completed backup of this schedule (full or
    /// incremental); a run with none to continue takes a full. At a time
    /// both schedules name, the full is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalSchedule>,
    /// An IANA time zone the schedule is read in (`Europe/Berlin`). Left
    /// out: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// No new backups while true; retention waits too, so a paused schedule
    /// never empties its history.
    #[serde(default)]
    pub suspend: bool,
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// A run that could not start within this many seconds of its time
    /// (the operator was down, or Forbid held it back) is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub starting_deadline_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// What deleting this schedule (or a GitOps tool pruning it) does to
    /// the MySQLBackups it made. `Keep`, the default: nothing; they stay,
    /// with their data, and a schedule of the same name created again
    /// takes them back (retention included).
    #[serde(default)]
    pub backups_on_delete: BackupsOnDelete,
    /// The MySQLBackup each run creates.
    pub backup_template: BackupTemplate,
    /// Point-in-time recovery: the primary's agent archives the binary
    /// logs of the template's StatefulSet into the template's storage +
    /// `/binlogs` (with its compression and encryption key), continuously,
    /// and follows the primary after a failover. Retention then also
    /// deletes the archived binlogs no kept backup needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_archive: Option<BinlogArchiveSpec>,
}

/// Continuous binlog archiving for point-in-time restores.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinlogArchiveSpec {
    /// Archive while true; false stops the archiver (the archive stays).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The longest a committed transaction waits to be uploaded (the
    /// growing binlog is uploaded at least this often). Default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub upload_interval_seconds: Option<u32>,
}

fn default_true() -> bool {
    true
}

/// The folder, under a schedule's backup storage, that holds its binlog
/// archive.
pub const BINLOG_ARCHIVE_FOLDER: &str = "binlogs";

/// When a schedule takes incrementals.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IncrementalSchedule {
    /// Standard cron, read in the schedule's time zone, like `schedule`.
    #[x_kube(validation = Rule::new(
        "self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+)$')"
    ).message("incremental.schedule: five cron fields (minute hour day-of-month month day-of-week), e.g. '0 * * * *', or @hourly"))]
    pub schedule: String,
    /// How the incrementals find their changed pages (see MySQLBackup's
    /// `incrementalMethod`; default `Auto`). Unless it is `FullScan`, the
    /// schedule's full backups start the server's page tracking
    /// (`pageTracking: true`), so the incrementals after them read only
    /// the pages it lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<IncrementalMethod>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Start the run even if an earlier backup still runs (the agent takes
    /// one backup per server at a time: it waits).
    Allow,
    /// Hold the run back while an earlier backup runs.
    #[default]
    Forbid,
    /// Cancel the running backup and start the new one.
    Replace,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum BackupsOnDelete {
    /// The backups outlive the schedule: they carry no ownerReference to
    /// it, so Kubernetes' garbage collector never deletes them (nor, with
    /// `deletionPolicy: Delete`, their data).
    #[default]
    Keep,
    /// The backups are owned by the schedule and deleted with it; each
    /// one's `deletionPolicy` then decides whether its data goes too.
    Delete,
}

/// Which completed backups to keep. The newest completed backup is always
/// kept; a backup is deleted when no rule keeps it. Full and incremental
/// backups count alike (each is a point to restore to), and a backup that a
/// kept incremental needs (its base, and the base's base, back to the full)
/// is kept with it: retention deletes whole chains or their newest ends,
/// never a base under a kept incremental.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.keepLast) || has(self.maxAge)")
    .message("retention: set keepLast, maxAge or both"))]
pub struct Retention {
    /// Keep the newest N completed backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_last: Option<u32>,
    /// Keep every completed backup younger than this: a number and a unit,
    /// s m h d w, e.g. `30d`, `12h`, `1w`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(s|m|h|d|w))+$')")
        .message("maxAge: a number and a unit (s, m, h, d, w), e.g. 30d or 12h"))]
    pub max_age: Option<String>,
    /// Failed backups kept for inspection (their data is already gone).
    #[serde(default = "default_keep_failed")]
    #[schemars(range(min = 0))]
    pub keep_failed: u32,
}

fn default_keep_failed() -> u32 {
    3
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            keep_last: None,
            max_age: None,
            keep_failed: default_keep_failed(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    pub spec: MySQLBackupSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MySQLBackupScheduleStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the schedule is valid and being followed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::common::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The time of the last run that made a backup (or was skipped for
    /// missing its deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the newest backup of this schedule completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Backups of this schedule that are still pending or running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// The newest backup this schedule made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    /// The binlog archive, when `spec.binlogArchive` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_archive: Option<BinlogArchiveStatus>,
}

/// The binlog archive as the operator last saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinlogArchiveStatus {
    /// `Archiving`, `Stopped`, `Failed`, or `Waiting` (for a primary, its
    /// agent, a Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Where the archive is (`s3://bucket/prefix/binlogs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The pod whose agent archives (the primary), and its server UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_uuid: Option<String>,
    /// The recoverable window: a restore can reach any time from
    /// `earliest` to `latest` (from a backup completed in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<Time>,
    /// Seconds the archive is behind the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Stretches the archive does not hold: no restore can cross them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<BinlogGapStatus>,
    /// The oldest kept backup whose GTID set retention keeps binlogs after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_from: Option<String>,
    /// When the operator last read the archiver's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
    /// What is happening, or what went wrong and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One gap of the binlog archive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinlogGapStatus {
    /// PURGED_BEFORE_ARCHIVED, SERVER_CHANGED, ...
    pub reason: String,
    /// The archived files on each side (empty at an end).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub after_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub before_file: String,
    /// What is missing (a GTID set or a file range).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub missing: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_time: Option<Time>,
}

/// Labels on the backups a schedule makes.
pub const SCHEDULE_LABEL: &str = "innoxide.dev/schedule";
/// The time a backup was scheduled for (RFC 3339), on backups a schedule makes.
pub const SCHEDULED_AT_ANNOTATION: &str = "innoxide.dev/scheduled-at";
