//! Where a backup goes: exactly one of s3, gcs, azure or pvc.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SecretKeyRef;

/// Where the agent writes the backup. Exactly one of `s3`, `gcs`, `azure`
/// and `pvc`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.s3) ? 1 : 0) + (has(self.gcs) ? 1 : 0) + (has(self.azure) ? 1 : 0) + (has(self.pvc) ? 1 : 0) == 1"
).message("storage: set exactly one of s3, gcs, azure or pvc"))]
pub struct BackupStorage {
    /// Amazon S3 or any S3-compatible object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
    /// Google Cloud Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsStorage>,
    /// Azure Blob Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureStorage>,
    /// A PersistentVolumeClaim mounted into the agent sidecar (list it in
    /// the StatefulSet's `innoxide.dev/backup-claims` annotation). Use a
    /// ReadWriteMany claim when the StatefulSet has several pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcStorage>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Folder inside the bucket that holds the backups (no leading or
    /// trailing slash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.endsWith('/') && !self.contains('//')")
        .message("prefix: no leading, trailing or double slash, e.g. backups/db1"))]
    pub prefix: Option<String>,
    /// An S3-compatible endpoint, e.g. `http://minio.minio:9000`. Left out:
    /// AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')")
        .message("endpoint: a URL that starts with http:// or https://"))]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Put the bucket in the host name (AWS style) instead of the path
    /// (what S3-compatible servers expect).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub virtual_hosted_style: bool,
    /// Access keys. Left out: whatever the agent's environment provides
    /// (an IAM role for service accounts, for example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<S3CredentialsRef>,
}

/// A Secret with S3 access keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    #[serde(default = "default_secret_access_key_key")]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GcsStorage {
    #[schemars(length(min = 3, max = 222))]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.endsWith('/') && !self.contains('//')")
        .message("prefix: no leading, trailing or double slash, e.g. backups/db1"))]
    pub prefix: Option<String>,
    /// A service account key (JSON). Left out: workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AzureStorage {
    #[schemars(length(min = 3, max = 24))]
    pub storage_account: String,
    #[schemars(length(min = 3, max = 63))]
    pub container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.endsWith('/') && !self.contains('//')")
        .message("prefix: no leading, trailing or double slash, e.g. backups/db1"))]
    pub prefix: Option<String>,
    /// The account's Blob endpoint, for Azure Stack, sovereign clouds or an
    /// emulator, e.g. `https://acct1.blob.core.usgovcloudapi.net`. Left out:
    /// `https://<storageAccount>.blob.core.windows.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')")
        .message("endpoint: a URL that starts with http:// or https://"))]
    pub endpoint: Option<String>,
    /// The storage account key. Left out: workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretKeyRef>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PvcStorage {
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Folder inside the volume that holds the backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Bounded so the API server accepts the rule's cost (split is linear
    // in the length; unbounded, it exceeds the CEL budget and the CRD is
    // refused).
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.split('/').exists(s, s == '..')")
        .message("path: a relative folder inside the volume, without '..'"))]
    pub path: Option<String>,
}

/// Where the agent sidecar mounts a backup claim.
pub const CLAIM_MOUNT_ROOT: &str = "/innoxide/claims";

impl BackupStorage {
    /// The repository as the agent is asked to open it (from inside the
    /// sidecar: a claim is a folder there).
    pub fn repository_url(&self) -> String {
        match (&self.s3, &self.gcs, &self.azure, &self.pvc) {
            (Some(s3), ..) => object_url("s3", &s3.bucket, s3.prefix.as_deref()),
            (_, Some(gcs), ..) => object_url("gs", &gcs.bucket, gcs.prefix.as_deref()),
            (_, _, Some(az), _) => object_url("az", &az.container, az.prefix.as_deref()),
            (_, _, _, Some(pvc)) => {
                let mut url = format!("file://{CLAIM_MOUNT_ROOT}/{}", pvc.claim_name);
                if let Some(path) = pvc.path.as_deref().filter(|p| !p.is_empty()) {
                    url.push('/');
                    url.push_str(path.trim_end_matches('/'));
                }
                url
            }
            _ => String::new(),
        }
    }

    /// The backup's location as a person reads it: the object URL, or
    /// `pvc://claim/path/name` for a claim.
    pub fn location_of(&self, backup_name: &str) -> String {
        match &self.pvc {
            Some(pvc) => {
                let mut location = format!("pvc://{}", pvc.claim_name);
                if let Some(path) = pvc.path.as_deref().filter(|p| !p.is_empty()) {
                    location.push('/');
                    location.push_str(path.trim_end_matches('/'));
                }
                format!("{location}/{backup_name}")
            }
            None => format!("{}/{backup_name}", self.repository_url()),
        }
    }

    /// The same storage one folder down (`<prefix>/<folder>`): where a
    /// schedule's binlog archive lives beside its backups.
    pub fn child(&self, folder: &str) -> BackupStorage {
        let down = |prefix: &Option<String>| {
            Some(match prefix.as_deref().filter(|p| !p.is_empty()) {
                Some(p) => format!("{}/{folder}", p.trim_end_matches('/')),
                None => folder.to_owned(),
            })
        };
        let mut child = self.clone();
        if let Some(s3) = child.s3.as_mut() {
            s3.prefix = down(&s3.prefix);
        }
        if let Some(gcs) = child.gcs.as_mut() {
            gcs.prefix = down(&gcs.prefix);
        }
        if let Some(azure) = child.azure.as_mut() {
            azure.prefix = down(&azure.prefix);
        }
        if let Some(pvc) = child.pvc.as_mut() {
            pvc.path = down(&pvc.path);
        }
        child
    }

    /// Object stores the operator can reach itself (to delete backups):
    /// everything but a claim, which only the sidecar mounts.
    pub fn is_object_store(&self) -> bool {
        self.s3.is_some() || self.gcs.is_some() || self.azure.is_some()
    }
}

fn object_url(scheme: &str, bucket: &str, prefix: Option<&str>) -> String {
    match prefix.filter(|p| !p.is_empty()) {
        Some(prefix) => format!("{scheme}://{bucket}/{prefix}"),
        None => format!("{scheme}://{bucket}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_folder_is_one_level_below_the_prefix_of_any_storage() {
        let s3 = BackupStorage {
            s3: Some(S3Storage {
                bucket: "bk".into(),
                prefix: Some("prod/db".into()),
                ..S3Storage::default()
            }),
            ..BackupStorage::default()
        };
        assert_eq!(
            s3.child("binlogs").repository_url(),
            "s3://bk/prod/db/binlogs"
        );
        let bare = BackupStorage {
            gcs: Some(GcsStorage {
                bucket: "bk".into(),
                ..GcsStorage::default()
            }),
            ..BackupStorage::default()
        };
        assert_eq!(bare.child("binlogs").repository_url(), "gs://bk/binlogs");
        let claim = BackupStorage {
            pvc: Some(PvcStorage {
                claim_name: "backups".into(),
                path: None,
            }),
            ..BackupStorage::default()
        };
        assert_eq!(
            claim.child("binlogs").repository_url(),
            format!("file://{CLAIM_MOUNT_ROOT}/backups/binlogs")
        );
    }
}
