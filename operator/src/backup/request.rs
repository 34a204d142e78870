//! A MySQLBackup's spec as the agent's StartBackup request: pure, from the
//! spec and the Secret values the controller read.

use innoxide_proto::agent::v1 as pb;

use crate::api::{BackupStorage, BackupType, Compression, IncrementalMethod, MySQLBackupSpec};
use crate::units;

/// The Secret values a backup needs, read by the controller.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    /// gcs: a service account key (JSON); azure: the account's access key.
    pub gcs_service_account_key: Option<String>,
    pub azure_access_key: Option<String>,
    /// The key as the agent reads a key file: 64 hex characters or base64.
    pub encryption_key: Option<String>,
    pub mysql_password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| if v.is_some() { "Some(***)" } else { "None" };
        f.debug_struct("Credentials")
            .field("s3_access_key_id", &shown(&self.s3_access_key_id))
            .field("s3_secret_access_key", &shown(&self.s3_secret_access_key))
            .field(
                "gcs_service_account_key",
                &shown(&self.gcs_service_account_key),
            )
            .field("azure_access_key", &shown(&self.azure_access_key))
            .field("encryption_key", &shown(&self.encryption_key))
            .field("mysql_password", &shown(&self.mysql_password))
            .finish()
    }
}

/// A spec that can never become a backup: the backup fails with this
/// message (the spec is immutable, so waiting would not help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// The backup's folder in the repository: the resource's name and the
/// first 8 characters of its UID, so a MySQLBackup deleted and created again
/// with the same name (a GitOps re-sync, a rebuilt cluster) writes to a
/// fresh folder instead of failing on the old backup's files (or mixing
/// with them). The agent takes up to 128 characters; a longer name is cut
/// and keeps a hash of the whole so it stays unique.
pub fn backup_name_for(resource_name: &str, uid: &str) -> String {
    let suffix: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let suffix = if suffix.is_empty() {
        String::new()
    } else {
        format!("-{suffix}")
    };
    if resource_name.len() + suffix.len() <= 128 {
        return format!("{resource_name}{suffix}");
    }
    let hash = crate::hash::fnv1a_64(resource_name.as_bytes());
    format!(
        "{}-{hash:016x}{suffix}",
        &resource_name[..111 - suffix.len()]
    )
}

/// An encryption key Secret's value as the agent takes it: the agent reads
/// 32 raw bytes, 64 hex characters or base64; raw bytes travel as hex.
pub fn encryption_key_text(bytes: &[u8]) -> Result<String, Unusable> {
    innoxide_agent::repo::Key::from_file_contents(bytes)
        .map_err(|e| Unusable(format!("encryptionKeySecretRef: {e}")))?;
    if bytes.len() == 32 {
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    } else {
        Ok(String::from_utf8_lossy(bytes).trim().to_owned())
    }
}

pub fn secret(value: &Option<String>) -> Option<pb::SecretRef> {
    value.as_ref().map(|v| pb::SecretRef {
        source: Some(pb::secret_ref::Source::Value(v.clone())),
    })
}

/// The repository as the agent opens it: URL, object store options and the
/// S3 keys the controller read. Shared by backups and restores.
pub fn repository(
    storage: &BackupStorage,
    credentials: &Credentials,
) -> Result<pb::Repository, Unusable> {
    let mut options = std::collections::HashMap::new();
    let mut repository_credentials = None;
    if let Some(s3) = &storage.s3 {
        if let Some(endpoint) = &s3.endpoint {
            options.insert("endpoint".to_owned(), endpoint.clone());
        }
        if let Some(region) = &s3.region {
            options.insert("region".to_owned(), region.clone());
        }
        if s3.virtual_hosted_style {
            options.insert("virtual_hosted".to_owned(), "true".to_owned());
        }
        if s3.credentials_secret_ref.is_some() {
            repository_credentials = Some(pb::repository::Credentials::S3(pb::S3Credentials {
                access_key_id: secret(&credentials.s3_access_key_id),
                secret_access_key: secret(&credentials.s3_secret_access_key),
                session_token: None,
            }));
        }
    }
    if storage
        .gcs
        .as_ref()
        .is_some_and(|g| g.credentials_secret_ref.is_some())
    {
        repository_credentials = Some(pb::repository::Credentials::Gcs(pb::GcsCredentials {
            service_account_key: secret(&credentials.gcs_service_account_key),
        }));
    }
    if storage
        .azure
        .as_ref()
        .is_some_and(|a| a.credentials_secret_ref.is_some())
    {
        repository_credentials = Some(pb::repository::Credentials::Azure(pb::AzureCredentials {
            access_key: secret(&credentials.azure_access_key),
        }));
    }
    if let Some(azure) = &storage.azure {
        options.insert("storage_account".to_owned(), azure.storage_account.clone());
        if let Some(endpoint) = &azure.endpoint {
            options.insert("endpoint".to_owned(), endpoint.clone());
        }
    }
    Ok(pb::Repository {
        url: storage.repository_url(),
        options,
        credentials: repository_credentials,
    })
}

/// How the operator itself opens the repository (to delete a backup's data
/// or read its manifest): the same settings and keys the agent gets.
pub fn repo_options(
    storage: &BackupStorage,
    credentials: Credentials,
) -> innoxide_agent::repo::RepoOptions {
    use innoxide_agent::secret::Secret;
    let mut options = innoxide_agent::repo::RepoOptions::default();
    if let Some(s3) = &storage.s3 {
        options.s3_endpoint = s3.endpoint.clone();
        options.s3_region = s3.region.clone();
        options.s3_virtual_hosted = s3.virtual_hosted_style;
        options.s3_access_key_id = credentials.s3_access_key_id;
        options.s3_secret_access_key = credentials.s3_secret_access_key.map(Secret::new);
    }
    if storage.gcs.is_some() {
        options.gcs_service_account_key = credentials.gcs_service_account_key.map(Secret::new);
    }
    if let Some(azure) = &storage.azure {
        options.azure_account = Some(azure.storage_account.clone());
        options.azure_endpoint = azure.endpoint.clone();
        options.azure_access_key = credentials.azure_access_key.map(Secret::new);
    }
    options
}

/// The StartBackup request for this spec; an Incremental's base is its
/// base's folder in the same repository (chosen before it starts).
pub fn start_backup_request(
    spec: &MySQLBackupSpec,
    operation_id: &str,
    backup_name: &str,
    base_backup_name: Option<&str>,
    credentials: &Credentials,
) -> Result<pb::StartBackupRequest, Unusable> {
    let repository = repository(&spec.storage, credentials)?;
    let incremental = match (spec.backup_type, base_backup_name) {
        (BackupType::Full, _) => None,
        (BackupType::Incremental, Some(base)) => Some(pb::IncrementalBackup {
            base_backup_name: base.to_owned(),
            method: match spec.incremental_method.unwrap_or_default() {
                IncrementalMethod::Auto => pb::IncrementalMethod::Auto,
                IncrementalMethod::PageTrack => pb::IncrementalMethod::PageTrack,
                IncrementalMethod::FullScan => pb::IncrementalMethod::FullScan,
            } as i32,
        }),
        (BackupType::Incremental, None) => {
            return Err(Unusable(
                "an Incremental backup has no base chosen; this is a bug: please report it".into(),
            ));
        }
    };
    let throttle = match &spec.throttle {
        Some(q) => {
            units::parse_quantity_bytes(&q.0).map_err(|e| Unusable(format!("throttle: {e}")))?
        }
        None => 0,
    };
    let mysql = spec
        .mysql_credentials
        .as_ref()
        .map(|c| pb::MysqlCredentials {
            user: c.user.clone(),
            password: secret(&credentials.mysql_password),
        });
    Ok(pb::StartBackupRequest {
        operation_id: operation_id.to_owned(),
        repository: Some(repository),
        backup_name: backup_name.to_owned(),
        mysql,
        options: Some(pb::BackupOptions {
            parallel: spec.parallel.unwrap_or(0),
            throttle_bytes_per_second: throttle,
            compression: match spec.compression {
                Compression::None => pb::Compression::None,
                Compression::Zstd => pb::Compression::Zstd,
            } as i32,
            encryption_key: secret(&credentials.encryption_key),
            slave_info: false,
            skip_redo_consumer: false,
            start_page_tracking: spec.page_tracking,
        }),
        incremental,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::BackupBuilder;

    #[test]
    fn gcs_and_azure_keys_reach_the_agent_and_the_operators_own_store() {
        use crate::api::{AzureStorage, GcsStorage, SecretKeyRef};
        let key_ref = Some(SecretKeyRef {
            name: "cloud-keys".into(),
            key: "key".into(),
        });
        let gcs = BackupStorage {
            gcs: Some(GcsStorage {
                bucket: "backups".into(),
                prefix: Some("db".into()),
                credentials_secret_ref: key_ref.clone(),
            }),
            ..BackupStorage::default()
        };
        let credentials = Credentials {
            gcs_service_account_key: Some("{\"private_key\": \"sa-secret\"}".into()),
            azure_access_key: Some("azure-secret".into()),
            ..Credentials::default()
        };
        let to_gcs = repository(&gcs, &credentials).unwrap();
        assert_eq!(to_gcs.url, "gs://backups/db");
        let Some(pb::repository::Credentials::Gcs(keys)) = to_gcs.credentials else {
            panic!("the service account key is passed")
        };
        assert_eq!(
            keys.service_account_key.unwrap().source,
            Some(pb::secret_ref::Source::Value(
                "{\"private_key\": \"sa-secret\"}".into()
            ))
        );
        let own = repo_options(&gcs, credentials.clone());
        assert!(own.gcs_service_account_key.is_some());
        assert!(!format!("{own:?}{credentials:?}").contains("sa-secret"));

        let azure = BackupStorage {
            azure: Some(AzureStorage {
                storage_account: "acct1".into(),
                container: "backups".into(),
                prefix: None,
                endpoint: Some("https://acct1.blob.core.usgovcloudapi.net".into()),
                credentials_secret_ref: key_ref,
            }),
            ..BackupStorage::default()
        };
        let to_azure = repository(&azure, &credentials).unwrap();
        assert_eq!(to_azure.options["storage_account"], "acct1");
        assert_eq!(
            to_azure.options["endpoint"],
            "https://acct1.blob.core.usgovcloudapi.net"
        );
        let Some(pb::repository::Credentials::Azure(keys)) = to_azure.credentials else {
            panic!("the access key is passed")
        };
        assert_eq!(
            keys.access_key.unwrap().source,
            Some(pb::secret_ref::Source::Value("azure-secret".into()))
        );
        let own = repo_options(&azure, credentials);
        assert_eq!(own.azure_account.as_deref(), Some("acct1"));
        assert_eq!(
            own.azure_endpoint.as_deref(),
            Some("https://acct1.blob.core.usgovcloudapi.net")
        );
        assert!(!format!("{own:?}").contains("azure-secret"));
    }

    #[test]
    fn an_s3_backup_carries_its_bucket_endpoint_and_keys() {
        let backup = BackupBuilder::named("nightly")
            .on_stateful_set("db")
            .storing_in_s3("backups", Some("prod/db"))
            .with_s3_endpoint("http://minio:9000")
            .with_s3_credentials("s3-keys")
            .throttled("200Mi")
            .compressed()
            .build();
        let credentials = Credentials {
            s3_access_key_id: Some("AKIA".into()),
            s3_secret_access_key: Some("secret".into()),
            ..Credentials::default()
        };
        let request =
            start_backup_request(&backup.spec, "uid-1", "nightly", None, &credentials).unwrap();
        let repository = request.repository.unwrap();
        assert_eq!(repository.url, "s3://backups/prod/db");
        assert_eq!(repository.options["endpoint"], "http://minio:9000");
        let Some(pb::repository::Credentials::S3(keys)) = repository.credentials else {
            panic!("S3 keys are passed");
        };
        assert_eq!(
            keys.secret_access_key.unwrap().source,
            Some(pb::secret_ref::Source::Value("secret".into()))
        );
        let options = request.options.unwrap();
        assert_eq!(options.throttle_bytes_per_second, 200 << 20);
        assert_eq!(options.compression, pb::Compression::Zstd as i32);
        assert_eq!(
            (request.operation_id.as_str(), request.backup_name.as_str()),
            ("uid-1", "nightly")
        );
    }

    #[test]
    fn a_claim_becomes_a_folder_inside_the_sidecar() {
        let backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_on_claim("backups", Some("db1"))
            .build();
        let request =
            start_backup_request(&backup.spec, "u", "b", None, &Credentials::default()).unwrap();
        assert_eq!(
            request.repository.unwrap().url,
            "file:///innoxide/claims/backups/db1"
        );
        assert_eq!(backup.spec.storage.location_of("b"), "pvc://backups/db1/b");
    }

    #[test]
    fn a_bad_throttle_is_unusable_with_a_message() {
        let backup = BackupBuilder::named("b")
            .on_stateful_set("db")
            .storing_in_s3("x", None)
            .throttled("10MB")
            .build();
        let err = start_backup_request(&backup.spec, "u", "b", None, &Credentials::default())
            .unwrap_err();
        assert!(
            err.0.starts_with("throttle:") && err.0.contains("200Mi"),
            "{err}"
        );
    }

    #[test]
    fn raw_keys_travel_as_hex_and_bad_keys_are_refused() {
        assert_eq!(encryption_key_text(&[0xab; 32]).unwrap(), "ab".repeat(32));
        let hex = "01".repeat(32);
        assert_eq!(
            encryption_key_text(format!("{hex}\n").as_bytes()).unwrap(),
            hex
        );
        assert!(
            encryption_key_text(b"short")
                .unwrap_err()
                .0
                .contains("256-bit")
        );
    }

    const UID: &str = "3f2a9c1d-58e7-4b0e-9d61-0c6f2f7f5a10";

    #[test]
    fn long_names_are_cut_but_stay_unique() {
        let a = backup_name_for(&"a".repeat(200), UID);
        let b = backup_name_for(&format!("{}b", "a".repeat(199)), UID);
        assert_eq!((a.len(), b.len()), (128, 128));
        assert_ne!(a, b);
        assert!(a.ends_with("-3f2a9c1d"), "{a}");
        assert_eq!(
            backup_name_for("nightly-202611210300", UID),
            "nightly-202611210300-3f2a9c1d"
        );
    }

    #[test]
    fn a_recreated_backup_gets_a_fresh_folder() {
        let first = backup_name_for("nightly", UID);
        let again = backup_name_for("nightly", "9b1e0d2c-0000-4000-8000-000000000000");
        assert_ne!(first, again);
        assert_eq!(again, "nightly-9b1e0d2c");
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let c = Credentials {
            mysql_password: Some("hunter2".into()),
            ..Credentials::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
