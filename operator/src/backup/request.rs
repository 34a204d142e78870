//! A MySQLBackup's spec as the agent's StartBackup request: pure, from the
//! spec and the Secret values the controller read.

use innoxide_proto::agent::v1 as pb;

use crate::api::{BackupStorage, Compression, MySQLBackupSpec};
use crate::units;

/// The Secret values a backup needs, read by the controller.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
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

/// The backup's folder in the repository: the resource's name, which the
/// agent accepts as is up to 128 characters; longer names are cut and keep
/// a hash of the whole so they stay unique.
pub fn backup_name_for(resource_name: &str) -> String {
    if resource_name.len() <= 128 {
        return resource_name.to_owned();
    }
    let hash = resource_name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    format!("{}-{hash:016x}", &resource_name[..111])
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
        || storage
            .azure
            .as_ref()
            .is_some_and(|a| a.credentials_secret_ref.is_some())
    {
        // The agent's API carries S3 keys only; sending the request without
        // the credentials the user named could reach the wrong place.
        return Err(Unusable(
            "storage credentialsSecretRef for gcs/azure cannot be passed to the agent yet; leave it out and give the agent workload identity"
                .into(),
        ));
    }
    if let Some(azure) = &storage.azure {
        options.insert("storage_account".to_owned(), azure.storage_account.clone());
    }
    Ok(pb::Repository {
        url: storage.repository_url(),
        options,
        credentials: repository_credentials,
    })
}

/// The StartBackup request for this spec.
pub fn start_backup_request(
    spec: &MySQLBackupSpec,
    operation_id: &str,
    backup_name: &str,
    credentials: &Credentials,
) -> Result<pb::StartBackupRequest, Unusable> {
    let repository = repository(&spec.storage, credentials)?;
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
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::BackupBuilder;

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
        let request = start_backup_request(&backup.spec, "uid-1", "nightly", &credentials).unwrap();
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
            start_backup_request(&backup.spec, "u", "b", &Credentials::default()).unwrap();
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
        let err =
            start_backup_request(&backup.spec, "u", "b", &Credentials::default()).unwrap_err();
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

    #[test]
    fn long_names_are_cut_but_stay_unique() {
        let a = backup_name_for(&"a".repeat(200));
        let b = backup_name_for(&format!("{}b", "a".repeat(199)));
        assert!(a.len() <= 128 && b.len() <= 128);
        assert_ne!(a, b);
        assert_eq!(
            backup_name_for("nightly-202611210300"),
            "nightly-202611210300"
        );
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
