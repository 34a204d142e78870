//! A MySQLRestore as the agent takes it: pure, from the resolved source and
//! the Secret values the controller read. One [`RestoreSpec`] serves both
//! modes: InPlace sends it as a StageRestore request, NewStatefulSet writes
//! it into the Secret the init container reads (`--restore-spec`).

use std::collections::BTreeMap;

use innoxide_proto::agent::v1 as pb;
use innoxide_proto::restore_spec::{
    PointInTimeSpec, RepositorySpec, RestoreSpec, S3CredentialsSpec, SecretSource,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::source::Source;
use crate::api::{MySQLRestore, RESTORE_SPEC_KEY, restore_spec_secret_name};
use crate::backup::request::{self, Credentials, Unusable};
use crate::units;

/// The restore spec for this source, with credentials by value.
pub fn restore_spec(
    restore: &MySQLRestore,
    source: &Source,
    credentials: &Credentials,
) -> Result<RestoreSpec, Unusable> {
    let repository = repository_spec(&source.storage, credentials)?;
    let use_memory_bytes = match &restore.spec.use_memory {
        Some(q) => {
            units::parse_quantity_bytes(&q.0).map_err(|e| Unusable(format!("useMemory: {e}")))?
        }
        None => 0,
    };
    let point_in_time = match &source.point_in_time {
        Some(point) => Some(PointInTimeSpec {
            // The archive lives in the backups' storage: the same keys.
            archive: repository_spec(&point.archive, credentials)?,
            target: point.target.clone(),
        }),
        None => None,
    };
    Ok(RestoreSpec {
        operation_id: restore.uid().unwrap_or_default(),
        repository,
        backup_name: source.backup_name.clone(),
        encryption_key: credentials.encryption_key.clone().map(SecretSource::Value),
        use_memory_bytes,
        point_in_time,
    })
}

/// A storage as the restore spec names it, with credentials by value.
fn repository_spec(
    storage: &crate::api::BackupStorage,
    credentials: &Credentials,
) -> Result<RepositorySpec, Unusable> {
    let repository = request::repository(storage, credentials)?;
    let (mut s3, mut gcs_service_account_key, mut azure_access_key) = (None, None, None);
    match repository.credentials {
        Some(pb::repository::Credentials::S3(keys)) => {
            s3 = Some(S3CredentialsSpec {
                access_key_id: keys.access_key_id.as_ref().and_then(value_of),
                secret_access_key: keys.secret_access_key.as_ref().and_then(value_of),
                session_token: keys.session_token.as_ref().and_then(value_of),
            });
        }
        Some(pb::repository::Credentials::Gcs(keys)) => {
            gcs_service_account_key = keys.service_account_key.as_ref().and_then(value_of);
        }
        Some(pb::repository::Credentials::Azure(keys)) => {
            azure_access_key = keys.access_key.as_ref().and_then(value_of);
        }
        None => {}
    }
    Ok(RepositorySpec {
        url: repository.url,
        options: repository.options.into_iter().collect::<BTreeMap<_, _>>(),
        s3,
        gcs_service_account_key,
        azure_access_key,
    })
}

fn value_of(secret: &pb::SecretRef) -> Option<SecretSource> {
    match &secret.source {
        Some(pb::secret_ref::Source::Value(v)) => Some(SecretSource::Value(v.clone())),
        Some(pb::secret_ref::Source::File(p)) => Some(SecretSource::File(p.clone())),
        None => None,
    }
}

/// The Secret a NewStatefulSet restore's init containers mount: the spec
/// as JSON, owned by the MySQLRestore so it goes when the restore goes.
pub fn spec_secret(restore: &MySQLRestore, spec: &RestoreSpec) -> Secret {
    let owner = OwnerReference {
        api_version: MySQLRestore::api_version(&()).into_owned(),
        kind: MySQLRestore::kind(&()).into_owned(),
        name: restore.name_any(),
        uid: restore.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(restore_spec_secret_name(&restore.name_any())),
            namespace: restore.namespace(),
            owner_references: Some(vec![owner]),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "innoxide-operator".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            RESTORE_SPEC_KEY.to_owned(),
            spec.to_json(),
        )])),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::RestoreBuilder;
    use crate::restore::source::resolve;

    fn keys() -> Credentials {
        Credentials {
            s3_access_key_id: Some("AKIA".into()),
            s3_secret_access_key: Some("sekrit".into()),
            encryption_key: Some("ab".repeat(32)),
            ..Credentials::default()
        }
    }

    #[test]
    fn a_location_becomes_a_spec_with_credentials_by_value() {
        let restore = RestoreBuilder::from_location("r", "bk", "other", "nightly")
            .in_place("db")
            .with_s3_endpoint("http://minio:9000")
            .with_s3_credentials("s3-keys")
            .use_memory("1Gi")
            .build();
        let source = resolve(&restore, None).unwrap();
        let spec = restore_spec(&restore, &source, &keys()).unwrap();
        assert_eq!(spec.operation_id, "uid-r");
        assert_eq!(spec.backup_name, "nightly");
        assert_eq!(spec.repository.url, "s3://bk/other");
        assert_eq!(spec.repository.options["endpoint"], "http://minio:9000");
        assert_eq!(spec.use_memory_bytes, 1 << 30);
        let s3 = spec.repository.s3.clone().unwrap();
        assert_eq!(
            s3.secret_access_key,
            Some(SecretSource::Value("sekrit".into()))
        );
        assert_eq!(
            spec.encryption_key,
            Some(SecretSource::Value("ab".repeat(32)))
        );
        // The same spec is the InPlace request.
        let request = spec.stage_request();
        assert_eq!(request.operation_id, "uid-r");
        assert_eq!(request.use_memory_bytes, 1 << 30);
    }

    #[test]
    fn the_spec_secret_is_owned_by_the_restore() {
        let restore = RestoreBuilder::from_location("r", "bk", "other", "nightly")
            .new_stateful_set("db")
            .build();
        let source = resolve(&restore, None).unwrap();
        let spec = restore_spec(&restore, &source, &Credentials::default()).unwrap();
        let secret = spec_secret(&restore, &spec);
        assert_eq!(secret.metadata.name.as_deref(), Some("r-restore-spec"));
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("MySQLRestore", "uid-r")
        );
        let json = &secret.string_data.as_ref().unwrap()[RESTORE_SPEC_KEY];
        assert_eq!(RestoreSpec::from_json(json).unwrap(), spec);
        assert!(!format!("{spec:?}").contains("sekrit"));
    }
}
