//! Server-side apply's merge of an applied configuration into a live object,
//! for the core kinds the in-memory fake API holds (its own "apply" is a
//! plain JSON merge that replaces lists, so a StatefulSet the operator wired
//! there loses the user's containers' fields). Objects merge field by field;
//! the lists Kubernetes declares as associative (`x-kubernetes-list-type:
//! map`) merge item by item on their keys; every other list is atomic and
//! the applied one replaces it. Field ownership (who may remove what) is not
//! modelled: this answers "what does the object look like after the apply".

use serde_json::Value;

/// The merge keys of the associative lists of a pod template (core/v1).
fn list_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" | "volumeDevices" => "mountPath",
        "ports" => "containerPort",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// `live` with `applied` merged in, as server-side apply leaves it.
pub fn merge(live: &Value, applied: &Value) -> Value {
    merge_field("", live, applied)
}

fn merge_field(field: &str, live: &Value, applied: &Value) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            let mut out = l.clone();
            for (k, v) in a {
                let merged = match l.get(k) {
                    Some(existing) => merge_field(k, existing, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(a)) => match list_key(field) {
            Some(key) => {
                let mut out = l.clone();
                for item in a {
                    match out.iter_mut().find(|o| o.get(key) == item.get(key)) {
                        Some(existing) => *existing = merge_field("", existing, item),
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
            None => applied.clone(),
        },
        (_, Value::Null) => live.clone(),
        _ => applied.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_mounts_by_path() {
        let live = json!({"spec": {"containers": [
            {"name": "mysql", "image": "mysql:9.7", "args": ["--a"],
             "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"}]}
        ]}});
        let applied = json!({"spec": {"containers": [
            {"name": "mysql", "volumeMounts": [{"name": "run", "mountPath": "/var/run/mysqld"}]},
            {"name": "agent", "image": "mysql:9.7", "args": ["serve"]}
        ]}});
        let merged = merge(&live, &applied);
        let containers = merged["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(
            containers[0]["image"], "mysql:9.7",
            "the user's fields stay"
        );
        assert_eq!(containers[0]["args"], json!(["--a"]));
        assert_eq!(containers[0]["volumeMounts"].as_array().unwrap().len(), 2);
        assert_eq!(containers[1]["name"], "agent");
    }

    #[test]
    fn atomic_lists_are_replaced() {
        let merged = merge(&json!({"args": ["a", "b"]}), &json!({"args": ["c"]}));
        assert_eq!(merged, json!({"args": ["c"]}));
    }
}
