//! Backup repositories: where backups live and how their files are stored.
//!
//! A repository is a local folder (the default; `file://` URLs too) or an
//! object store (`s3://`, `gs://`, `az://`). A backup is one folder/prefix
//! in it; its `innoxide.json` manifest is written last and is the only proof
//! the backup exists: listing, verification, retention and deletion all read
//! manifests. Files may be stored compressed (zstd) and encrypted
//! (AES-256-GCM), chunk by chunk ([`chunk`]), so restore streams and verifies.

pub mod chunk;
pub mod direct;
pub mod lifecycle;
pub mod reader;
pub mod store;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ClientOptions;

pub use chunk::{Key, Transform};
pub use store::{Store, StoreError};

use crate::secret::Secret;

/// How to reach an object store; anything left out comes from the standard
/// environment variables (AWS_*, GOOGLE_*, AZURE_*) as the SDKs read them.
#[derive(Debug, Clone, Default)]
pub struct RepoOptions {
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<Secret>,
    /// Virtual-hosted-style requests (bucket in the host name). Off by
    /// default, which is what S3-compatible servers (MinIO, Ceph…) expect.
    pub s3_virtual_hosted: bool,
    /// gs://: a service account key (JSON). None: the environment's
    /// credentials (workload identity, GOOGLE_APPLICATION_CREDENTIALS).
    pub gcs_service_account_key: Option<Secret>,
    /// az://: the storage account (else from the URL or the environment)
    /// and its access key (else the environment: workload identity).
    pub azure_account: Option<String>,
    pub azure_access_key: Option<Secret>,
    /// az://: the account's Blob endpoint, for Azure Stack, sovereign
    /// clouds or the Azurite emulator (`http://host:port/<account>`); else
    /// `https://<account>.blob.core.windows.net`.
    pub azure_endpoint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("repository location {location:?}: {reason}")]
    BadLocation { location: String, reason: String },
    #[error("cannot open the object store at {location}: {source}")]
    Open {
        location: String,
        source: object_store::Error,
    },
}

/// Opens the repository (or backup) at `location`: a path, `file://…`,
/// `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`.
/// Must be called inside the tokio runtime (object stores use it).
pub fn open(location: &str, options: &RepoOptions) -> Result<Store, RepoError> {
    let bad = |reason: String| RepoError::BadLocation {
        location: location.to_owned(),
        reason,
    };
    let Some((scheme, _)) = location.split_once("://") else {
        return Ok(Store::Local {
            root: PathBuf::from(location),
        });
    };
    let url = url::Url::parse(location).map_err(|e| bad(e.to_string()))?;
    let prefix = object_store::path::Path::from(url.path().trim_matches('/'));
    let open_err = |source| RepoError::Open {
        location: location.to_owned(),
        source,
    };
    let endpoint = match scheme {
        "s3" => options.s3_endpoint.as_deref(),
        "az" | "azure" | "abfs" => options.azure_endpoint.as_deref(),
        _ => None,
    };
    let client =
        ClientOptions::new().with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")));
    let store: Arc<dyn object_store::ObjectStore> = match scheme {
        "file" => {
            return Ok(Store::Local {
                root: PathBuf::from(url.path()),
            });
        }
        "s3" => {
            let mut builder = object_store::aws::AmazonS3Builder::from_env()
                .with_url(location)
                .with_client_options(client)
                .with_virtual_hosted_style_request(options.s3_virtual_hosted);
            if let Some(endpoint) = &options.s3_endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &options.s3_region {
                builder = builder.with_region(region);
            }
            if let Some(key) = &options.s3_access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &options.s3_secret_access_key {
                builder = builder.with_secret_access_key(secret.expose());
            }
            Arc::new(builder.build().map_err(open_err)?)
        }
        "gs" => {
            let mut builder =
                object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(location);
            if let Some(key) = &options.gcs_service_account_key {
                builder = builder.with_service_account_key(key.expose());
            }
            Arc::new(builder.build().map_err(open_err)?)
        }
        "az" | "azure" | "abfs" => {
            let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(location)
                .with_client_options(client);
            if let Some(endpoint) = &options.azure_endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            if let Some(account) = &options.azure_account {
                builder = builder.with_account(account);
            }
            if let Some(key) = &options.azure_access_key {
                builder = builder.with_access_key(key.expose());
            }
            Arc::new(builder.build().map_err(open_err)?)
        }
        other => {
            return Err(bad(format!(
                "unknown scheme {other}://; use a path, file://, s3://, gs:// or az://"
            )));
        }
    };
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| bad(format!("no async runtime to drive the object store: {e}")))?;
    Ok(Store::Remote(Arc::new(store::Remote {
        url: location.trim_end_matches('/').to_owned(),
        store,
        prefix,
        runtime,
    })))
}

impl Store {
    /// The store rooted one level down (a backup inside a repository).
    pub fn child(&self, name: &str) -> Store {
        match self {
            Store::Local { root } => Store::Local {
                root: root.join(name),
            },
            Store::Remote(remote) => Store::Remote(Arc::new(store::Remote {
                url: format!("{}/{name}", remote.url),
                store: remote.store.clone(),
                prefix: remote.prefix.clone().join(name),
                runtime: remote.runtime.clone(),
            })),
        }
    }
}
