//! Core kinds with real API semantics: the StatefulSets, Pods, Secrets,
//! Events and Leases the operator writes are served by the real
//! apiextensions-apiserver as "mirror" custom resources, whose structural
//! schemas are converted from the structured-merge-diff schemas Kubernetes
//! itself uses for these kinds (client-go's
//! `applyconfigurations/internal/internal.go`, kept by
//! `scripts/kube-apiserver.sh`). Server-side apply then merges and conflicts
//! exactly as on kube-apiserver: atomic maps and lists (a StatefulSet's
//! `selector`), lists merged by their keys (containers and volumes by
//! `name`, ports by `containerPort`+`protocol`), field ownership per manager.
//! The StatefulSet's immutable fields (selector, serviceName,
//! volumeClaimTemplates) are kept immutable by CEL transition rules.
//!
//! This module owns the mapping both ways: the CRDs, and the rewriting of
//! paths and apiVersions that lets a client speak `apps/v1` while the server
//! stores `apps.mirror.innoxide.dev/v1` ([`KubeApi::routed_client`] uses it).
//!
//! What the stand-in cannot show: kube-apiserver's defaulting (e.g.
//! `imagePullPolicy`) and its validation beyond the schema's types, admission,
//! garbage collection by ownerReferences, the field selectors core kinds
//! support beyond `metadata.name`/`metadata.namespace`, the other immutable
//! StatefulSet fields (podManagementPolicy, ordinals' start), and any
//! controller (StatefulSet, kubelet): the test kit's stand-ins play those.
//!
//! [`KubeApi::routed_client`]: crate::KubeApi::routed_client

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

/// Where the file `scripts/kube-apiserver.sh` keeps in its prefix.
pub const SCHEMA_FILE: &str = "share/client-go-internal.go";

/// What mirror groups end with: `apps` is served as `apps.mirror.innoxide.dev`,
/// the core group as `core.mirror.innoxide.dev`.
const MIRROR_SUFFIX: &str = "mirror.innoxide.dev";

/// One core kind served as a mirror CRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorKind {
    /// The real group (`""` for core).
    pub group: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// Its type in the structured-merge-diff schemas.
    schema_type: &'static str,
    /// Whether status is a subresource (as on kube-apiserver).
    status: bool,
}

/// The kinds the operator (and the test kit's stand-ins) write.
pub static MIRRORED: [MirrorKind; 5] = [
    MirrorKind {
        group: "apps",
        kind: "StatefulSet",
        plural: "statefulsets",
        schema_type: "io.k8s.api.apps.v1.StatefulSet",
        status: true,
    },
    MirrorKind {
        group: "",
        kind: "Pod",
        plural: "pods",
        schema_type: "io.k8s.api.core.v1.Pod",
        status: true,
    },
    MirrorKind {
        group: "",
        kind: "Secret",
        plural: "secrets",
        schema_type: "io.k8s.api.core.v1.Secret",
        status: false,
    },
    MirrorKind {
        group: "events.k8s.io",
        kind: "Event",
        plural: "events",
        schema_type: "io.k8s.api.events.v1.Event",
        status: false,
    },
    MirrorKind {
        group: "coordination.k8s.io",
        kind: "Lease",
        plural: "leases",
        schema_type: "io.k8s.api.coordination.v1.Lease",
        status: false,
    },
];

/// Every mirrored kind is `v1`.
const VERSION: &str = "v1";

impl MirrorKind {
    /// The group the real server serves it in.
    pub fn mirror_group(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("{group}.{MIRROR_SUFFIX}")
    }

    /// `apps/v1`, or `v1` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            VERSION.to_owned()
        } else {
            format!("{}/{VERSION}", self.group)
        }
    }

    fn mirror_api_version(&self) -> String {
        format!("{}/{VERSION}", self.mirror_group())
    }
}

/// The mirror CRDs, from the text of client-go's `internal.go`.
pub fn crds(internal_go: &str) -> Result<Vec<CustomResourceDefinition>> {
    let types = Types::parse(internal_go)?;
    MIRRORED.iter().map(|kind| crd(kind, &types)).collect()
}

/// [`crds`] from the file in the Kubernetes API prefix.
pub fn crds_in(prefix: &Path) -> Result<Vec<CustomResourceDefinition>> {
    let path = prefix.join(SCHEMA_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (run scripts/kube-apiserver.sh to keep it)",
            path.display()
        )
    })?;
    crds(&text)
}

fn crd(kind: &MirrorKind, types: &Types) -> Result<CustomResourceDefinition> {
    let mut schema = types.named(kind.schema_type, 0)?;
    let properties = schema["properties"]
        .as_object_mut()
        .with_context(|| format!("{} has no fields", kind.schema_type))?;
    // A CRD's own metadata is the server's; only its type may be said.
    properties.insert("metadata".into(), json!({"type": "object"}));
    if kind.kind == "StatefulSet" {
        let spec = properties
            .get_mut("spec")
            .and_then(|s| s["properties"].as_object_mut())
            .context("StatefulSet has no spec")?;
        for field in ["selector", "serviceName", "volumeClaimTemplates"] {
            let field_schema = spec
                .get_mut(field)
                .with_context(|| format!("StatefulSet spec has no {field}"))?;
            field_schema["x-kubernetes-validations"] = json!([{
                "rule": "self == oldSelf",
                "message": format!("spec.{field}: field is immutable"),
            }]);
        }
    }
    let group = kind.mirror_group();
    let mut version = json!({
        "name": VERSION,
        "served": true,
        "storage": true,
        "schema": {"openAPIV3Schema": schema},
    });
    if kind.status {
        version["subresources"] = json!({"status": {}});
    }
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{group}", kind.plural)},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": format!("{}List", kind.kind),
                "plural": kind.plural,
                "singular": kind.kind.to_lowercase(),
            },
            "versions": [version],
        },
    }))
    .with_context(|| format!("building the mirror CRD of {}", kind.kind))
}

/// The structured-merge-diff types by name.
struct Types(BTreeMap<String, serde_yaml::Value>);

/// Deeper than any built-in kind nests: a guard against a cycle.
const MAX_DEPTH: usize = 40;

impl Types {
    fn parse(internal_go: &str) -> Result<Types> {
        let start = internal_go
            .find("typed.YAMLObject(`")
            .context("no schemaYAML in client-go's internal.go")?
            + "typed.YAMLObject(`".len();
        let len = internal_go[start..]
            .find('`')
            .context("schemaYAML does not end")?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&internal_go[start..start + len])
            .context("parsing client-go's schemaYAML")?;
        let types = doc["types"]
            .as_sequence()
            .context("schemaYAML has no types")?
            .iter()
            .filter_map(|t| Some((t["name"].as_str()?.to_owned(), t.clone())))
            .collect();
        Ok(Types(types))
    }

    fn named(&self, name: &str, depth: usize) -> Result<Value> {
        if matches!(name, "__untyped_atomic_" | "__untyped_deduced_") {
            // Anything goes, merged as a whole or by what it holds.
            return Ok(json!({"x-kubernetes-preserve-unknown-fields": true}));
        }
        if depth > MAX_DEPTH {
            bail!("{name}: nested deeper than {MAX_DEPTH}");
        }
        let atom = self
            .0
            .get(name)
            .with_context(|| format!("no type {name} in the schemas"))?;
        self.atom(atom, depth + 1)
            .with_context(|| format!("in {name}"))
    }

    /// A type reference: a named type or an inline scalar, map or list.
    fn atom(&self, atom: &serde_yaml::Value, depth: usize) -> Result<Value> {
        if let Some(name) = atom["namedType"].as_str() {
            return self.named(name, depth);
        }
        if let Some(scalar) = atom["scalar"].as_str() {
            return Ok(match scalar {
                "string" => json!({"type": "string"}),
                "numeric" => json!({"type": "number"}),
                "boolean" => json!({"type": "boolean"}),
                // IntOrString, Quantity, Time: a string or a number.
                "untyped" => json!({"x-kubernetes-int-or-string": true}),
                other => bail!("unknown scalar {other}"),
            });
        }
        if !atom["list"].is_null() {
            return self.list(&atom["list"], depth);
        }
        if !atom["map"].is_null() {
            return self.map(&atom["map"], depth);
        }
        bail!("a type that is neither scalar, list nor map: {atom:?}")
    }

    fn list(&self, list: &serde_yaml::Value, depth: usize) -> Result<Value> {
        let mut items = self.atom(&list["elementType"], depth)?;
        let keys: Vec<&str> = list["keys"]
            .as_sequence()
            .map(|k| k.iter().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default();
        // A list's default relationship is atomic.
        let list_type = match list["elementRelationship"].as_str().unwrap_or("atomic") {
            "associative" if keys.is_empty() => "set",
            "associative" => "map",
            _ => "atomic",
        };
        let mut schema = json!({"type": "array", "x-kubernetes-list-type": list_type});
        if list_type == "map" {
            // A key an entry may omit has a default (`protocol: TCP`);
            // merging needs it.
            let defaults = self.field_defaults(&list["elementType"]);
            for key in &keys {
                if let Some(default) = defaults.get(*key) {
                    items["properties"][key]["default"] = default.clone();
                }
            }
            schema["x-kubernetes-list-map-keys"] = json!(keys);
        }
        schema["items"] = items;
        Ok(schema)
    }

    fn map(&self, map: &serde_yaml::Value, depth: usize) -> Result<Value> {
        let mut schema = json!({"type": "object"});
        if map["elementRelationship"].as_str() == Some("atomic") {
            schema["x-kubernetes-map-type"] = "atomic".into();
        }
        let fields = map["fields"].as_sequence();
        if let Some(fields) = fields {
            let mut properties = serde_json::Map::new();
            for field in fields {
                let name = field["name"].as_str().context("a field without a name")?;
                let field_schema = self
                    .atom(&field["type"], depth)
                    .with_context(|| format!("field {name}"))?;
                properties.insert(name.to_owned(), field_schema);
            }
            schema["properties"] = properties.into();
        }
        if !map["elementType"].is_null() {
            if fields.is_some() {
                // Known fields and anything else besides.
                schema["x-kubernetes-preserve-unknown-fields"] = true.into();
            } else {
                schema["additionalProperties"] = self.atom(&map["elementType"], depth)?;
            }
        }
        Ok(schema)
    }

    /// The defaults of a map type's fields, by field name.
    fn field_defaults(&self, atom: &serde_yaml::Value) -> BTreeMap<String, Value> {
        let resolved = match atom["namedType"].as_str() {
            Some(name) => self.0.get(name).cloned().unwrap_or_default(),
            None => atom.clone(),
        };
        resolved["map"]["fields"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter(|f| !f["default"].is_null())
            .filter_map(|f| {
                let default = serde_json::to_value(&f["default"]).ok()?;
                Some((f["name"].as_str()?.to_owned(), default))
            })
            .collect()
    }
}

/// The mirror path of a request for a mirrored kind
/// (`/api/v1/namespaces/a/pods/x` → `/apis/core.mirror.innoxide.dev/v1/namespaces/a/pods/x`),
/// with the kind; `None` for everything else.
pub fn mirror_path(path: &str) -> Option<(String, &'static MirrorKind)> {
    let (group, rest) = if let Some(rest) = path.strip_prefix("/api/") {
        ("", rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        rest.split_once('/')?
    };
    let rest = rest.strip_prefix(VERSION)?.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    let plural = match segments.as_slice() {
        ["namespaces", _, plural, ..] => *plural,
        [plural, ..] => *plural,
        [] => return None,
    };
    let kind = MIRRORED
        .iter()
        .find(|k| k.group == group && k.plural == plural)?;
    Some((
        format!("/apis/{}/{VERSION}/{rest}", kind.mirror_group()),
        kind,
    ))
}

/// A request body for the mirror: an object of the kind gets the mirror's
/// apiVersion (patches, DeleteOptions and anything else pass unchanged).
pub fn mirror_request_body(kind: &MirrorKind, body: &[u8]) -> Option<Vec<u8>> {
    let mut object: Value = serde_json::from_slice(body).ok()?;
    if object["kind"] != kind.kind || object["apiVersion"] != kind.api_version().as_str() {
        return None;
    }
    object["apiVersion"] = kind.mirror_api_version().into();
    serde_json::to_vec(&object).ok()
}

/// A response from the mirror as the real kind would read: apiVersions (of
/// objects, lists, watch events and managedFields) and group names in errors.
pub fn real_response_text(text: &str) -> String {
    let mut text = text.to_owned();
    for kind in &MIRRORED {
        let mirror = kind.mirror_group();
        if !text.contains(&mirror) {
            continue;
        }
        text = text.replace(
            &format!("\"{}\"", kind.mirror_api_version()),
            &format!("\"{}\"", kind.api_version()),
        );
        // `statefulsets.apps.mirror.innoxide.dev "db" not found`, `"group":"…"`.
        let group_suffix = if kind.group.is_empty() {
            String::new()
        } else {
            format!(".{}", kind.group)
        };
        text = text.replace(&format!(".{mirror}"), &group_suffix);
        text = text.replace(&format!("\"{mirror}\""), &format!("\"{}\"", kind.group));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_group_paths_map_to_their_mirror() {
        assert_eq!(
            mirror_path("/api/v1/namespaces/a/pods/x/status").map(|(p, _)| p),
            Some("/apis/core.mirror.innoxide.dev/v1/namespaces/a/pods/x/status".into())
        );
        assert_eq!(
            mirror_path("/apis/apps/v1/namespaces/a/statefulsets").map(|(p, k)| (p, k.kind)),
            Some((
                "/apis/apps.mirror.innoxide.dev/v1/namespaces/a/statefulsets".into(),
                "StatefulSet"
            ))
        );
        assert_eq!(
            mirror_path("/apis/events.k8s.io/v1/events").map(|(p, _)| p),
            Some("/apis/events.k8s.io.mirror.innoxide.dev/v1/events".into())
        );
        assert_eq!(mirror_path("/api/v1/namespaces/a/configmaps"), None);
        assert_eq!(mirror_path("/apis/apps/v1/namespaces/a/deployments"), None);
        assert_eq!(mirror_path("/apis/innoxide.dev/v1alpha1/x"), None);
    }

    #[test]
    fn responses_read_as_the_real_kind() {
        let text = r#"{"apiVersion":"apps.mirror.innoxide.dev/v1","kind":"StatefulSet","metadata":{"managedFields":[{"apiVersion":"apps.mirror.innoxide.dev/v1"}]},"message":"statefulsets.apps.mirror.innoxide.dev \"db\" not found","details":{"group":"apps.mirror.innoxide.dev"}}"#;
        assert_eq!(
            real_response_text(text),
            r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"managedFields":[{"apiVersion":"apps/v1"}]},"message":"statefulsets.apps \"db\" not found","details":{"group":"apps"}}"#
        );
        let core = r#"{"apiVersion":"core.mirror.innoxide.dev/v1","message":"pods.core.mirror.innoxide.dev \"x\"","group":"core.mirror.innoxide.dev"}"#;
        assert_eq!(
            real_response_text(core),
            r#"{"apiVersion":"v1","message":"pods \"x\"","group":""}"#
        );
    }

    #[test]
    fn only_objects_of_the_kind_get_the_mirror_api_version() {
        let kind = &MIRRORED[0];
        let body = br#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db"}}"#;
        let out: Value = serde_json::from_slice(&mirror_request_body(kind, body).unwrap()).unwrap();
        assert_eq!(out["apiVersion"], "apps.mirror.innoxide.dev/v1");
        assert_eq!(
            mirror_request_body(kind, br#"{"kind":"DeleteOptions","apiVersion":"v1"}"#),
            None
        );
        assert_eq!(
            mirror_request_body(kind, br#"{"spec":{"replicas":0}}"#),
            None
        );
    }
}
