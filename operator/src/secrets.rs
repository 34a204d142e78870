//! Reads the Secret values a resource names (storage keys, encryption key,
//! MySQL password) for the agent request being built. The values only ever
//! travel inside a request or a Secret the operator owns.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::api::{BackupStorage, MysqlCredentials, SecretKeyRef};
use crate::backup::request::{self, Credentials};
use crate::context::Result;

/// The values the storage, the key and the MySQL login name. The inner
/// error says which Secret or key is missing (the caller waits for it) or
/// why a key is unusable.
pub async fn read_credentials(
    client: &Client,
    namespace: &str,
    storage: &BackupStorage,
    encryption_key: Option<&SecretKeyRef>,
    mysql: Option<&MysqlCredentials>,
) -> Result<std::result::Result<Credentials, String>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut credentials = Credentials::default();
    if let Some(s3) = storage
        .s3
        .as_ref()
        .and_then(|s| s.credentials_secret_ref.as_ref())
    {
        credentials.s3_access_key_id =
            match secret_value(&secrets, &s3.name, &s3.access_key_id_key).await? {
                Ok(v) => Some(String::from_utf8_lossy(&v).trim().to_owned()),
                Err(m) => return Ok(Err(m)),
            };
        credentials.s3_secret_access_key =
            match secret_value(&secrets, &s3.name, &s3.secret_access_key_key).await? {
                Ok(v) => Some(String::from_utf8_lossy(&v).trim().to_owned()),
                Err(m) => return Ok(Err(m)),
            };
    }
    let gcs = storage
        .gcs
        .as_ref()
        .and_then(|g| g.credentials_secret_ref.as_ref());
    if let Some(r) = gcs {
        credentials.gcs_service_account_key = match secret_value(&secrets, &r.name, &r.key).await? {
            Ok(v) => Some(String::from_utf8_lossy(&v).into_owned()),
            Err(m) => return Ok(Err(m)),
        };
    }
    let azure = storage
        .azure
        .as_ref()
        .and_then(|a| a.credentials_secret_ref.as_ref());
    if let Some(r) = azure {
        credentials.azure_access_key = match secret_value(&secrets, &r.name, &r.key).await? {
            Ok(v) => Some(String::from_utf8_lossy(&v).trim().to_owned()),
            Err(m) => return Ok(Err(m)),
        };
    }
    if let Some(key) = encryption_key {
        credentials.encryption_key = match secret_value(&secrets, &key.name, &key.key).await? {
            Ok(v) => match request::encryption_key_text(&v) {
                Ok(text) => Some(text),
                Err(e) => return Ok(Err(e.0)),
            },
            Err(m) => return Ok(Err(m)),
        };
    }
    if let Some(mysql) = mysql {
        let r = &mysql.password_secret_ref;
        credentials.mysql_password = match secret_value(&secrets, &r.name, &r.key).await? {
            Ok(v) => Some(
                String::from_utf8_lossy(&v)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            Err(m) => return Ok(Err(m)),
        };
    }
    Ok(Ok(credentials))
}

/// One key of a Secret: its bytes, or a message saying what is missing.
pub async fn secret_value(
    secrets: &Api<Secret>,
    name: &str,
    key: &str,
) -> Result<std::result::Result<Vec<u8>, String>> {
    let Some(secret) = secrets.get_opt(name).await? else {
        return Ok(Err(format!("Secret {name} does not exist; create it")));
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.clone().into_bytes())
        });
    Ok(value.ok_or_else(|| format!("Secret {name} has no key {key:?}")))
}
