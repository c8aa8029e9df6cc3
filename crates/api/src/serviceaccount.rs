//! Kubernetes' ServiceAccount admission for new Pods, as a pure function: the pod runs
//! as `default` unless it names a service account, and unless it opts out with
//! `automountServiceAccountToken: false` every container mounts a `kube-api-access-*`
//! projected volume (token, cluster CA, namespace) at the well-known path.
//!
//! The caller looks up the ServiceAccount and says whether it allows automounting
//! (`automountServiceAccountToken` on the ServiceAccount; the pod's own field wins).
//! Limitation: Kubernetes refuses pods whose service account does not exist yet; Strata
//! admits them (their token volume waits for the account).

use serde_json::{Value, json};

/// Where the token, `ca.crt` and `namespace` appear in containers.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Prefix of the projected volume's name; a random suffix follows.
pub const VOLUME_PREFIX: &str = "kube-api-access-";
/// The per-namespace ConfigMap holding the cluster CA (`ca.crt`).
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// Key of the CA bundle in [`ROOT_CA_CONFIG_MAP`].
pub const ROOT_CA_KEY: &str = "ca.crt";
/// The service account of pods that name none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Lifetime the token source asks for (Kubernetes' 1 h + 7 s, which marks these tokens).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// The service account a Pod (as JSON) runs as: `spec.serviceAccountName`, else the
/// deprecated `spec.serviceAccount`, else `default`.
pub fn account_of(pod: &Value) -> &str {
    ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|field| pod["spec"][field].as_str().filter(|n| !n.is_empty()))
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
}

/// Admits a Pod being created: sets `spec.serviceAccountName` (and the deprecated
/// `serviceAccount`) and, unless automounting is off (the pod's
/// `automountServiceAccountToken`, else `account_automounts`, the ServiceAccount's),
/// adds the token volume (named with `suffix`, or an existing `kube-api-access-*` one)
/// and mounts it read-only in every container and init container that has nothing at
/// [`TOKEN_MOUNT_PATH`] yet.
pub fn admit_pod(pod: &mut Value, suffix: &str, account_automounts: bool) {
    let account = account_of(pod).to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert("serviceAccountName".into(), json!(account));
    spec.insert("serviceAccount".into(), json!(account));
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .unwrap_or(account_automounts);
    if !automount {
        return;
    }
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
            if mounts.is_null() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            if mounts.iter().any(|m| m["mountPath"] == TOKEN_MOUNT_PATH) {
                continue;
            }
            mounts.push(mount.clone());
            mounted = true;
        }
    }
    if mounted && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if volumes.is_null() {
            *volumes = json!([]);
        }
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(token_volume(&volume_name));
        }
    }
}

/// The projected volume the admission adds: the token, the cluster CA and the namespace.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": ROOT_CA_KEY, "path": ROOT_CA_KEY}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_the_default_account_and_a_token_volume_in_every_container() {
        let mut pod = json!({"spec": {
            "initContainers": [{"name": "init"}],
            "containers": [
                {"name": "a"},
                {"name": "b", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
            ],
        }});
        admit_pod(&mut pod, "x2b4z", true);
        let spec = &pod["spec"];
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["volumes"][0]["name"], "kube-api-access-x2b4z");
        let sources = &spec["volumes"][0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(sources[2]["downwardAPI"]["items"][0]["path"], "namespace");
        for container in ["initContainers", "containers"] {
            let mount = &spec[container][0]["volumeMounts"][0];
            assert_eq!(mount["name"], "kube-api-access-x2b4z");
            assert_eq!(mount["readOnly"], true);
        }
        // A container with its own mount at the path keeps it.
        let own = spec["containers"][1]["volumeMounts"].as_array().unwrap();
        assert_eq!(own.len(), 1);
        assert_eq!(own[0]["name"], "mine");
    }

    #[test]
    fn opting_out_keeps_the_account_but_mounts_nothing() {
        let mut pod = json!({"spec": {
            "serviceAccountName": "robot",
            "automountServiceAccountToken": false,
            "containers": [{"name": "a"}],
        }});
        admit_pod(&mut pod, "abcde", true);
        assert_eq!(pod["spec"]["serviceAccountName"], "robot");
        assert_eq!(pod["spec"]["serviceAccount"], "robot");
        assert!(pod["spec"]["volumes"].is_null());
        assert!(pod["spec"]["containers"][0]["volumeMounts"].is_null());
        // The ServiceAccount may opt out; the pod's own field wins over it.
        let mut pod = json!({"spec": {"containers": [{"name": "a"}]}});
        admit_pod(&mut pod, "abcde", false);
        assert!(pod["spec"]["volumes"].is_null());
        let mut pod = json!({"spec": {
            "automountServiceAccountToken": true,
            "volumes": null,
            "containers": [{"name": "a", "volumeMounts": null}],
        }});
        admit_pod(&mut pod, "abcde", false);
        assert_eq!(pod["spec"]["volumes"][0]["name"], "kube-api-access-abcde");
        let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
        assert_eq!(mount["name"], "kube-api-access-abcde");
    }
}
