//! The restore spec: what the operator writes (as JSON, into a file the pod
//! mounts) for `innoxide-agent init --restore-spec FILE` to restore a backup
//! into a new, empty data volume before mysqld's first start.
//!
//! It carries what a StageRestore request carries, in plain serde types so
//! the operator can build it without gRPC; [`RestoreSpec::stage_request`]
//! turns it into that request, so the agent checks both the same way.
//! Credentials are references (`{"file": "/secrets/key"}`) or values
//! (`{"value": "..."}`); prefer files: a spec file is not a Secret. `Debug`
//! never shows a value.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::agent::v1 as pb;

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct RestoreSpec {
    /// The MySQLRestore's UID: the restore is done once per id on a volume.
    pub operation_id: String,
    pub repository: RepositorySpec,
    /// Which backup of the repository.
    pub backup_name: String,
    /// The AES-256 key of an encrypted backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<SecretSource>,
    /// Buffer pool of the mysqld that applies the log; 0 means 256 MiB.
    #[serde(default)]
    pub use_memory_bytes: u64,
    /// Point-in-time recovery: after apply-log, replay the binlog archive
    /// up to a point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<PointInTimeSpec>,
}

/// Where a point-in-time restore stops, and the archive it replays.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct PointInTimeSpec {
    /// The binlog archive (a repository of its own).
    pub archive: RepositorySpec,
    pub target: StopTarget,
}

/// Exactly one way to say where the replay stops.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StopTarget {
    /// The restored server's gtid_executed is exactly this set.
    Gtid(String),
    /// The last transaction committed at or before this RFC 3339 time.
    Time(String),
    /// Up to this position of an archived binlog file.
    Position { file: String, position: u64 },
}

impl StopTarget {
    /// As the API takes it; a time that is not RFC 3339 gives no target
    /// (the agent refuses the request, naming the field).
    pub fn restore_point(&self) -> pb::RestorePoint {
        use std::str::FromStr;
        let target = match self {
            StopTarget::Gtid(set) => Some(pb::restore_point::Target::Gtid(set.clone())),
            StopTarget::Time(text) => prost_types::Timestamp::from_str(text)
                .ok()
                .map(pb::restore_point::Target::Time),
            StopTarget::Position { file, position } => {
                Some(pb::restore_point::Target::Position(pb::BinlogPosition {
                    file: file.clone(),
                    position: *position,
                }))
            }
        };
        pb::RestorePoint { target }
    }
}

impl fmt::Display for StopTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopTarget::Gtid(set) => write!(f, "gtid {set}"),
            StopTarget::Time(time) => write!(f, "time {time}"),
            StopTarget::Position { file, position } => write!(f, "position {file}:{position}"),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
pub struct RepositorySpec {
    /// As in the API: file:///backups, s3://bucket/prefix, gs://, az://.
    pub url: String,
    /// Non-secret object store settings: endpoint, region, virtual_hosted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3CredentialsSpec>,
    /// A Google Cloud service account key (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs_service_account_key: Option<SecretSource>,
    /// An Azure storage account's access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_access_key: Option<SecretSource>,
}

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct S3CredentialsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<SecretSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<SecretSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretSource>,
}

/// Where a credential comes from: `{"file": "/path"}` or `{"value": "..."}`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    Value(String),
    /// An absolute path (a mounted Secret); its contents, trimmed.
    File(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Value(_) => f.write_str("Value(***)"),
            SecretSource::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl SecretSource {
    fn secret_ref(&self) -> pb::SecretRef {
        pb::SecretRef {
            source: Some(match self {
                SecretSource::Value(v) => pb::secret_ref::Source::Value(v.clone()),
                SecretSource::File(p) => pb::secret_ref::Source::File(p.clone()),
            }),
        }
    }
}

impl RestoreSpec {
    pub fn from_json(text: &str) -> Result<RestoreSpec, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a restore spec serialises")
    }

    /// The StageRestore request that fetches, verifies and prepares the
    /// backup this spec names.
    pub fn stage_request(&self) -> pb::StageRestoreRequest {
        pb::StageRestoreRequest {
            operation_id: self.operation_id.clone(),
            repository: Some(self.repository.repository()),
            backup_name: self.backup_name.clone(),
            encryption_key: self.encryption_key.as_ref().map(SecretSource::secret_ref),
            use_memory_bytes: self.use_memory_bytes,
            point_in_time: self
                .point_in_time
                .as_ref()
                .map(|p| p.target.restore_point()),
            binlog_archive: self.point_in_time.as_ref().map(|p| p.archive.repository()),
        }
    }
}

impl RepositorySpec {
    /// As the API takes it.
    pub fn repository(&self) -> pb::Repository {
        let repository = self;
        let credentials = if let Some(s3) = &repository.s3 {
            Some(pb::repository::Credentials::S3(pb::S3Credentials {
                access_key_id: s3.access_key_id.as_ref().map(SecretSource::secret_ref),
                secret_access_key: s3.secret_access_key.as_ref().map(SecretSource::secret_ref),
                session_token: s3.session_token.as_ref().map(SecretSource::secret_ref),
            }))
        } else if let Some(key) = &repository.gcs_service_account_key {
            Some(pb::repository::Credentials::Gcs(pb::GcsCredentials {
                service_account_key: Some(key.secret_ref()),
            }))
        } else {
            repository.azure_access_key.as_ref().map(|key| {
                pb::repository::Credentials::Azure(pb::AzureCredentials {
                    access_key: Some(key.secret_ref()),
                })
            })
        };
        pb::Repository {
            url: self.url.clone(),
            options: self.options.clone().into_iter().collect(),
            credentials,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{
        "operation_id": "5d0c",
        "repository": {
            "url": "s3://bucket/cluster-a",
            "options": {"endpoint": "http://127.0.0.1:9000", "region": "us-east-1"},
            "s3": {"access_key_id": {"value": "AKIA"}, "secret_access_key": {"file": "/secrets/s3/key"}}
        },
        "backup_name": "nightly-1",
        "encryption_key": {"value": "hunter2"},
        "use_memory_bytes": 134217728
    }"#;

    #[test]
    fn a_spec_becomes_the_stage_request_the_api_takes() {
        let spec = RestoreSpec::from_json(SPEC).unwrap();
        let request = spec.stage_request();
        assert_eq!(request.operation_id, "5d0c");
        assert_eq!(request.backup_name, "nightly-1");
        assert_eq!(request.use_memory_bytes, 128 << 20);
        let repository = request.repository.unwrap();
        assert_eq!(repository.options["region"], "us-east-1");
        let Some(pb::repository::Credentials::S3(s3)) = repository.credentials else {
            panic!("no S3 credentials")
        };
        assert_eq!(
            s3.secret_access_key.unwrap().source,
            Some(pb::secret_ref::Source::File("/secrets/s3/key".into()))
        );
        assert_eq!(RestoreSpec::from_json(&spec.to_json()).unwrap(), spec);
    }

    #[test]
    fn a_point_in_time_reaches_the_request_with_its_archive() {
        let mut spec = RestoreSpec::from_json(SPEC).unwrap();
        assert_eq!(spec.stage_request().point_in_time, None);
        spec.point_in_time = Some(PointInTimeSpec {
            archive: RepositorySpec {
                url: "s3://bucket/cluster-a/binlogs".into(),
                ..spec.repository.clone()
            },
            target: StopTarget::Time("2026-12-06T20:14:03Z".into()),
        });
        let request = spec.stage_request();
        let Some(pb::restore_point::Target::Time(at)) = request.point_in_time.unwrap().target
        else {
            panic!("no time target")
        };
        assert_eq!(at.seconds, 1_796_588_043);
        let archive = request.binlog_archive.unwrap();
        assert_eq!(archive.url, "s3://bucket/cluster-a/binlogs");
        assert!(archive.credentials.is_some());
        assert_eq!(RestoreSpec::from_json(&spec.to_json()).unwrap(), spec);
        let position = StopTarget::Position {
            file: "binlog.000012".into(),
            position: 4567,
        };
        assert_eq!(position.to_string(), "position binlog.000012:4567");
        assert_eq!(
            StopTarget::Time("yesterday".into()).restore_point().target,
            None
        );
    }

    #[test]
    fn debug_never_shows_a_credential_and_unknown_fields_are_refused() {
        let spec = RestoreSpec::from_json(SPEC).unwrap();
        let text = format!("{spec:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("AKIA"),
            "{text}"
        );
        assert!(text.contains("/secrets/s3/key"));
        let typo = SPEC.replace("backup_name", "backupName");
        assert!(RestoreSpec::from_json(&typo).is_err());
    }
}
