//! Types several resources share.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One key of a Secret in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Who the agent logs in to MySQL as for this backup. Left out, the agent
/// uses its own configuration (the MySQL container's root password).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MysqlCredentials {
    /// A user with BACKUP_ADMIN, PROCESS, RELOAD and SELECT on
    /// performance_schema.log_status.
    #[schemars(length(min = 1, max = 255))]
    pub user: String,
    pub password_secret_ref: SecretKeyRef,
}

/// Adds the list-map markers to a condition list, so server-side apply
/// merges conditions by type.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema =
        generator.subschema_for::<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}
