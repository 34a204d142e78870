//! Test fixtures that read like the situation they set up:
//! `BackupBuilder::named("nightly").on_stateful_set("db").storing_in_s3("bk", None).running_on("db-0")`.

use std::collections::BTreeMap;

use innoxide_proto::agent::v1 as pb;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use crate::api::*;
use crate::wiring::AGENT_CONTAINER;

pub const NAMESPACE: &str = "prod";

pub fn ts(text: &str) -> Timestamp {
    text.parse().expect("a test timestamp")
}

pub struct PodBuilder {
    pod: Pod,
}

impl PodBuilder {
    /// A ready pod of StatefulSet `db` with the agent, in namespace `prod`.
    pub fn named(name: &str) -> PodBuilder {
        let ordinal: u8 = name
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        PodBuilder {
            pod: Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(NAMESPACE.into()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "StatefulSet".into(),
                        name: "db".into(),
                        uid: "uid-sts-db".into(),
                        controller: Some(true),
                        block_owner_deletion: None,
                    }]),
                    ..ObjectMeta::default()
                },
                spec: Some(PodSpec {
                    containers: vec![
                        Container {
                            name: "mysql".into(),
                            image: Some("mysql:9.7".into()),
                            ..Container::default()
                        },
                        Container {
                            name: AGENT_CONTAINER.into(),
                            image: Some("mysql:9.7".into()),
                            ..Container::default()
                        },
                    ],
                    ..PodSpec::default()
                }),
                status: Some(PodStatus {
                    phase: Some("Running".into()),
                    pod_ip: Some(format!("10.0.0.{}", 10 + ordinal)),
                    conditions: Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        ..PodCondition::default()
                    }]),
                    ..PodStatus::default()
                }),
            },
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.pod
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.pod
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    pub fn primary(self) -> Self {
        self.label(DEFAULT_ROLE_LABEL, "primary")
    }

    pub fn replica(self) -> Self {
        self.label(DEFAULT_ROLE_LABEL, "replica")
    }

    pub fn not_ready(mut self) -> Self {
        if let Some(status) = self.pod.status.as_mut() {
            status.conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                ..PodCondition::default()
            }]);
        }
        self
    }

    pub fn without_agent(mut self) -> Self {
        if let Some(spec) = self.pod.spec.as_mut() {
            spec.containers.retain(|c| c.name != AGENT_CONTAINER);
        }
        self
    }

    pub fn build(self) -> Pod {
        self.pod
    }
}

pub struct BackupBuilder {
    backup: MySQLBackup,
}

impl BackupBuilder {
    /// A MySQLBackup in namespace `prod`, with no target or storage yet.
    pub fn named(name: &str) -> BackupBuilder {
        let mut backup = MySQLBackup::new(name, MySQLBackupSpec::default());
        backup.metadata.namespace = Some(NAMESPACE.into());
        backup.metadata.uid = Some(format!("uid-{name}"));
        backup.metadata.generation = Some(1);
        backup.spec.mysql.role_label = DEFAULT_ROLE_LABEL.into();
        BackupBuilder { backup }
    }

    pub fn on_stateful_set(mut self, name: &str) -> Self {
        self.backup.spec.mysql.stateful_set_name = Some(name.into());
        self
    }

    pub fn storing_in_s3(mut self, bucket: &str, prefix: Option<&str>) -> Self {
        self.backup.spec.storage = BackupStorage {
            s3: Some(S3Storage {
                bucket: bucket.into(),
                prefix: prefix.map(Into::into),
                ..S3Storage::default()
            }),
            ..BackupStorage::default()
        };
        self
    }

    pub fn with_s3_endpoint(mut self, endpoint: &str) -> Self {
        if let Some(s3) = self.backup.spec.storage.s3.as_mut() {
            s3.endpoint = Some(endpoint.into());
        }
        self
    }

    pub fn with_s3_credentials(mut self, secret: &str) -> Self {
        if let Some(s3) = self.backup.spec.storage.s3.as_mut() {
            s3.credentials_secret_ref = Some(S3CredentialsRef {
                name: secret.into(),
                access_key_id_key: "AWS_ACCESS_KEY_ID".into(),
                secret_access_key_key: "AWS_SECRET_ACCESS_KEY".into(),
            });
        }
        self
    }

    pub fn storing_on_claim(mut self, claim: &str, path: Option<&str>) -> Self {
        self.backup.spec.storage = BackupStorage {
            pvc: Some(PvcStorage {
                claim_name: claim.into(),
                path: path.map(Into::into),
            }),
            ..BackupStorage::default()
        };
        self
    }

    pub fn throttled(mut self, quantity: &str) -> Self {
        self.backup.spec.throttle = Some(Quantity(quantity.into()));
        self
    }

    pub fn compressed(mut self) -> Self {
        self.backup.spec.compression = Compression::Zstd;
        self
    }

    pub fn deleting_data(mut self) -> Self {
        self.backup.spec.deletion_policy = DeletionPolicy::Delete;
        self
    }

    pub fn generation(mut self, generation: i64) -> Self {
        self.backup.metadata.generation = Some(generation);
        self
    }

    fn status(&mut self) -> &mut MySQLBackupStatus {
        self.backup
            .status
            .get_or_insert_with(MySQLBackupStatus::default)
    }

    pub fn running_on(mut self, pod: &str) -> Self {
        let status = self.status();
        status.phase = Some(BackupPhase::Running);
        status.pod = Some(pod.into());
        self
    }

    pub fn completed_on(mut self, pod: &str) -> Self {
        let status = self.status();
        status.phase = Some(BackupPhase::Completed);
        status.pod = Some(pod.into());
        self
    }

    pub fn failed(mut self) -> Self {
        self.status().phase = Some(BackupPhase::Failed);
        self
    }

    pub fn with_gtid(mut self, gtid: &str) -> Self {
        self.status().gtid_executed = Some(gtid.into());
        self
    }

    pub fn encrypted_with(mut self, secret: &str, key: &str) -> Self {
        self.backup.spec.encryption_key_secret_ref = Some(SecretKeyRef {
            name: secret.into(),
            key: key.into(),
        });
        self
    }

    pub fn completed_at(mut self, at: &str) -> Self {
        let status = self.status();
        status.phase = Some(BackupPhase::Completed);
        status.pod.get_or_insert_with(|| "db-0".into());
        status.completion_time = Some(Time(ts(at)));
        self
    }

    /// Made by schedule `schedule` for the run at `at`.
    pub fn of_schedule(mut self, schedule: &str, at: &str) -> Self {
        self.backup
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(SCHEDULE_LABEL.into(), schedule.into());
        self.backup
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(SCHEDULED_AT_ANNOTATION.into(), at.into());
        self.backup.metadata.creation_timestamp = Some(Time(ts(at)));
        self
    }

    /// An Incremental; `base` names its base in the spec (else it is
    /// chosen when it starts).
    pub fn incremental(mut self, base: Option<&str>) -> Self {
        self.backup.spec.backup_type = BackupType::Incremental;
        self.backup.spec.incremental_base = base.map(str::to_owned);
        self
    }

    /// An Incremental whose base `base` was chosen when it started.
    pub fn continuing(mut self, base: &str) -> Self {
        self.backup.spec.backup_type = BackupType::Incremental;
        self.status().incremental = Some(IncrementalStatus {
            base_name: base.into(),
            base_backup_name: format!("{base}-uid{base}"),
            ..IncrementalStatus::default()
        });
        self
    }

    pub fn being_deleted(mut self) -> Self {
        self.backup.metadata.deletion_timestamp = Some(Time(ts("2026-11-21T12:00:00Z")));
        self
    }

    pub fn build(self) -> MySQLBackup {
        self.backup
    }
}

pub struct OperationBuilder {
    op: pb::Operation,
}

impl OperationBuilder {
    fn in_state(state: pb::OperationState) -> OperationBuilder {
        OperationBuilder {
            op: pb::Operation {
                operation_id: "uid-nightly".into(),
                kind: pb::OperationKind::Backup as i32,
                state: state as i32,
                progress: Some(pb::Progress::default()),
                ..pb::Operation::default()
            },
        }
    }

    pub fn running() -> OperationBuilder {
        Self::in_state(pb::OperationState::Running)
    }

    pub fn succeeded() -> OperationBuilder {
        let mut b = Self::in_state(pb::OperationState::Succeeded);
        b.op.result = Some(pb::operation::Result::Backup(pb::BackupResult::default()));
        if let Some(p) = b.op.progress.as_mut() {
            p.phase = pb::Phase::Done as i32;
        }
        b
    }

    pub fn failed(reason: &str, message: &str) -> OperationBuilder {
        let mut b = Self::in_state(pb::OperationState::Failed);
        b.op.error = Some(pb::OperationError {
            code: 9,
            reason: reason.into(),
            message: message.into(),
        });
        b
    }

    pub fn copying(mut self, done: u64, total: u64) -> Self {
        self.op.progress = Some(pb::Progress {
            phase: pb::Phase::CopyingTablespaces as i32,
            bytes_done: done,
            bytes_total: total,
            ..pb::Progress::default()
        });
        self
    }

    pub fn result(mut self, change: impl FnOnce(&mut pb::BackupResult)) -> Self {
        if let Some(pb::operation::Result::Backup(r)) = self.op.result.as_mut() {
            change(r);
        }
        self
    }

    pub fn build(self) -> pb::Operation {
        self.op
    }
}

pub struct ScheduleBuilder {
    schedule: MySQLBackupSchedule,
}

impl ScheduleBuilder {
    /// Schedule `nightly` in namespace `prod`, created at 2026-11-01, backing
    /// up StatefulSet `db` to S3.
    pub fn cron(expression: &str) -> ScheduleBuilder {
        let spec = MySQLBackupScheduleSpec {
            schedule: expression.into(),
            incremental: None,
            time_zone: None,
            suspend: false,
            concurrency_policy: ConcurrencyPolicy::Forbid,
            starting_deadline_seconds: None,
            retention: None,
            backups_on_delete: BackupsOnDelete::Keep,
            backup_template: BackupTemplate {
                metadata: None,
                spec: BackupBuilder::named("x")
                    .on_stateful_set("db")
                    .storing_in_s3("bk", None)
                    .build()
                    .spec,
            },
            binlog_archive: None,
        };
        let mut schedule = MySQLBackupSchedule::new("nightly", spec);
        schedule.metadata.namespace = Some(NAMESPACE.into());
        schedule.metadata.uid = Some("uid-schedule".into());
        schedule.metadata.generation = Some(1);
        schedule.metadata.creation_timestamp = Some(Time(ts("2026-11-01T00:00:00Z")));
        ScheduleBuilder { schedule }
    }

    /// Incrementals on `expression` between the fulls.
    pub fn incrementals(mut self, expression: &str) -> Self {
        self.schedule.spec.incremental = Some(IncrementalSchedule {
            schedule: expression.into(),
            method: None,
        });
        self
    }

    pub fn in_zone(mut self, zone: &str) -> Self {
        self.schedule.spec.time_zone = Some(zone.into());
        self
    }

    pub fn deleting_backups_with_it(mut self) -> Self {
        self.schedule.spec.backups_on_delete = BackupsOnDelete::Delete;
        self
    }

    pub fn suspended(mut self) -> Self {
        self.schedule.spec.suspend = true;
        self
    }

    pub fn concurrency(mut self, policy: ConcurrencyPolicy) -> Self {
        self.schedule.spec.concurrency_policy = policy;
        self
    }

    pub fn deadline_seconds(mut self, seconds: i64) -> Self {
        self.schedule.spec.starting_deadline_seconds = Some(seconds);
        self
    }

    pub fn keep_last(mut self, n: u32) -> Self {
        self.schedule
            .spec
            .retention
            .get_or_insert_with(Retention::default)
            .keep_last = Some(n);
        self
    }

    pub fn max_age(mut self, age: &str) -> Self {
        self.schedule
            .spec
            .retention
            .get_or_insert_with(Retention::default)
            .max_age = Some(age.into());
        self
    }

    pub fn keep_failed(mut self, n: u32) -> Self {
        self.schedule
            .spec
            .retention
            .get_or_insert_with(Retention::default)
            .keep_failed = n;
        self
    }

    pub fn created_at(mut self, at: &str) -> Self {
        self.schedule.metadata.creation_timestamp = Some(Time(ts(at)));
        self
    }

    pub fn last_scheduled(mut self, at: &str) -> Self {
        self.schedule
            .status
            .get_or_insert_with(MySQLBackupScheduleStatus::default)
            .last_schedule_time = Some(Time(ts(at)));
        self
    }

    pub fn build(self) -> MySQLBackupSchedule {
        self.schedule
    }
}

pub struct RestoreBuilder {
    restore: MySQLRestore,
}

impl RestoreBuilder {
    fn with_source(name: &str, source: RestoreSource) -> RestoreBuilder {
        let mut restore = MySQLRestore::new(
            name,
            MySQLRestoreSpec {
                source,
                ..MySQLRestoreSpec::default()
            },
        );
        restore.metadata.namespace = Some(NAMESPACE.into());
        restore.metadata.uid = Some(format!("uid-{name}"));
        restore.metadata.generation = Some(1);
        restore.metadata.creation_timestamp = Some(Time(ts("2026-11-21T10:00:00Z")));
        restore.spec.target.role_label = DEFAULT_ROLE_LABEL.into();
        RestoreBuilder { restore }
    }

    /// Restore `name` of MySQLBackup `backup`, in namespace `prod`.
    pub fn from_backup(name: &str, backup: &str) -> RestoreBuilder {
        Self::with_source(
            name,
            RestoreSource {
                backup_name: Some(backup.into()),
                location: None,
                point_in_time: None,
            },
        )
    }

    /// Restore `name` to `time` from the binlog archive of schedule
    /// `schedule`.
    pub fn to_point_in_time(name: &str, schedule: &str, time: &str) -> RestoreBuilder {
        Self::with_source(
            name,
            RestoreSource {
                backup_name: None,
                location: None,
                point_in_time: Some(PointInTime {
                    schedule_name: schedule.into(),
                    gtid: None,
                    time: Some(Time(ts(time))),
                    position: None,
                }),
            },
        )
    }

    /// Restore `name` of backup `backup_name` in s3://bucket/prefix.
    pub fn from_location(
        name: &str,
        bucket: &str,
        prefix: &str,
        backup_name: &str,
    ) -> RestoreBuilder {
        let storage = BackupBuilder::named("x")
            .storing_in_s3(bucket, Some(prefix))
            .build()
            .spec
            .storage;
        Self::with_source(
            name,
            RestoreSource {
                backup_name: None,
                location: Some(BackupLocation {
                    storage,
                    backup_name: backup_name.into(),
                }),
                point_in_time: None,
            },
        )
    }

    fn s3(&mut self) -> Option<&mut S3Storage> {
        self.restore
            .spec
            .source
            .location
            .as_mut()
            .and_then(|l| l.storage.s3.as_mut())
    }

    pub fn with_s3_endpoint(mut self, endpoint: &str) -> Self {
        if let Some(s3) = self.s3() {
            s3.endpoint = Some(endpoint.into());
        }
        self
    }

    pub fn with_s3_credentials(mut self, secret: &str) -> Self {
        if let Some(s3) = self.s3() {
            s3.credentials_secret_ref = Some(S3CredentialsRef {
                name: secret.into(),
                access_key_id_key: "AWS_ACCESS_KEY_ID".into(),
                secret_access_key_key: "AWS_SECRET_ACCESS_KEY".into(),
            });
        }
        self
    }

    pub fn in_place(mut self, sts: &str) -> Self {
        self.restore.spec.target.stateful_set_name = sts.into();
        self.restore.spec.target.mode = RestoreMode::InPlace;
        self
    }

    pub fn new_stateful_set(mut self, sts: &str) -> Self {
        self.restore.spec.target.stateful_set_name = sts.into();
        self.restore.spec.target.mode = RestoreMode::NewStatefulSet;
        self
    }

    pub fn use_memory(mut self, quantity: &str) -> Self {
        self.restore.spec.use_memory = Some(Quantity(quantity.into()));
        self
    }

    pub fn created_at(mut self, at: &str) -> Self {
        self.restore.metadata.creation_timestamp = Some(Time(ts(at)));
        self
    }

    pub fn phase(mut self, phase: RestorePhase) -> Self {
        self.restore
            .status
            .get_or_insert_with(MySQLRestoreStatus::default)
            .phase = Some(phase);
        self
    }

    pub fn build(self) -> MySQLRestore {
        self.restore
    }
}
