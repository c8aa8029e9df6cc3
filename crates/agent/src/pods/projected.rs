//! The payloads of configMap, secret and projected volumes: keys (or the listed items)
//! as files, and a projected volume's sources (configMap, secret, downwardAPI,
//! serviceAccountToken) merged into one directory, like the kubelet's `projected` plugin.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{KeyToPath, Pod, ProjectedVolumeSource};

use super::atomic_writer::{File, Payload, validate_path};
use super::downward::{self, Allocatable};
use super::translate::ConfigError;

/// Data of ConfigMaps or Secrets by name.
pub type Sources = BTreeMap<String, BTreeMap<String, String>>;

/// The mode of files whose volume sets no `defaultMode` (the API's default).
pub const DEFAULT_MODE: i32 = 0o644;

/// Which token a `serviceAccountToken` source asks for: its audience (empty: the API
/// server's) and lifetime.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenKey {
    /// The audience (`""` means the API server's own).
    pub audience: String,
    /// The requested lifetime in seconds.
    pub expiration_seconds: i64,
}

/// Service account tokens the worker obtained (or why it could not), by what was asked.
pub type Tokens = BTreeMap<TokenKey, Result<String, String>>;

/// The least lifetime a projected token may ask for (Kubernetes').
pub const TOKEN_MIN_SECONDS: i64 = 600;
/// The lifetime a `serviceAccountToken` source gets without `expirationSeconds`.
pub const TOKEN_DEFAULT_SECONDS: i64 = 3600;

/// Everything a volume's payload is made of besides the pod.
#[derive(Debug, Clone)]
pub struct VolumeInputs {
    /// ConfigMaps the pod refers to, by name.
    pub config_maps: Sources,
    /// Secrets the pod refers to, by name.
    pub secrets: Sources,
    /// Tokens for the pod's `serviceAccountToken` sources.
    pub tokens: Tokens,
    /// The node's allocatable resources (for `resourceFieldRef` without a limit).
    pub node: Allocatable,
}

/// The tokens the projected volumes of `pod` ask for.
pub fn token_keys(pod: &Pod) -> std::collections::BTreeSet<TokenKey> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .map(|t| token_key(t.audience.as_deref(), t.expiration_seconds))
        .collect()
}

/// The token a `serviceAccountToken` projection asks for.
pub fn token_key(audience: Option<&str>, expiration_seconds: Option<i64>) -> TokenKey {
    TokenKey {
        audience: audience.unwrap_or_default().to_string(),
        expiration_seconds: expiration_seconds.unwrap_or(TOKEN_DEFAULT_SECONDS),
    }
}

/// The files of a configMap or secret: every key, or only the listed `items` (a listed
/// key that is missing is an error unless the source is optional). `data` is `None`
/// when the object does not exist, which only an optional source tolerates.
pub fn key_payload(
    kind: &str,
    name: &str,
    data: Option<&BTreeMap<String, String>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
    optional: bool,
) -> Result<Payload, ConfigError> {
    let Some(data) = data else {
        if optional {
            return Ok(Payload::new());
        }
        return Err(ConfigError(format!("{kind} {name:?} not found")));
    };
    let mut files = Payload::new();
    match items {
        Some(items) => {
            for item in items {
                validate_path(&item.path)?;
                match data.get(&item.key) {
                    Some(value) => {
                        let file = File::new(value.as_bytes(), item.mode.unwrap_or(mode));
                        files.insert(PathBuf::from(&item.path), file);
                    }
                    None if optional => {}
                    None => {
                        return Err(ConfigError(format!(
                            "{kind} {name:?} has no key {:?}",
                            item.key
                        )));
                    }
                }
            }
        }
        None => {
            for (key, value) in data {
                validate_path(key)?;
                files.insert(PathBuf::from(key), File::new(value.as_bytes(), mode));
            }
        }
    }
    Ok(files)
}

/// The merged files of a projected volume's sources; a later source's file replaces an
/// earlier one at the same path (API validation refuses such volumes anyway).
pub fn projected_payload(
    pod: &Pod,
    volume: &ProjectedVolumeSource,
    inputs: &VolumeInputs,
) -> Result<Payload, ConfigError> {
    let mode = volume.default_mode.unwrap_or(DEFAULT_MODE);
    let mut files = Payload::new();
    for source in volume.sources.iter().flatten() {
        let part = if let Some(map) = &source.config_map {
            key_payload(
                "configmap",
                &map.name,
                inputs.config_maps.get(&map.name),
                map.items.as_deref(),
                mode,
                map.optional == Some(true),
            )?
        } else if let Some(secret) = &source.secret {
            key_payload(
                "secret",
                &secret.name,
                inputs.secrets.get(&secret.name),
                secret.items.as_deref(),
                mode,
                secret.optional == Some(true),
            )?
        } else if let Some(api) = &source.downward_api {
            let items = api.items.as_deref().unwrap_or_default();
            downward::payload(pod, items, mode, &inputs.node)?
        } else if let Some(token) = &source.service_account_token {
            validate_path(&token.path)?;
            let key = token_key(token.audience.as_deref(), token.expiration_seconds);
            let value = match inputs.tokens.get(&key) {
                Some(Ok(value)) => value,
                Some(Err(why)) => {
                    return Err(ConfigError(format!(
                        "cannot get a service account token: {why}"
                    )));
                }
                None => {
                    return Err(ConfigError(format!(
                        "no service account token for audience {:?} yet",
                        key.audience
                    )));
                }
            };
            Payload::from([(
                PathBuf::from(&token.path),
                File::new(value.as_bytes(), mode),
            )])
        } else {
            return Err(ConfigError(
                "projected volume source: only configMap, secret, downwardAPI and serviceAccountToken are supported"
                    .into(),
            ));
        };
        files.extend(part);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, ObjectFieldSelector,
        SecretProjection, ServiceAccountTokenProjection, VolumeProjection,
    };

    fn inputs() -> VolumeInputs {
        VolumeInputs {
            config_maps: Sources::from([(
                "conf".to_string(),
                BTreeMap::from([
                    ("a".to_string(), "1".to_string()),
                    ("b".to_string(), "2".to_string()),
                ]),
            )]),
            secrets: Sources::new(),
            tokens: Tokens::from([(token_key(None, Some(3600)), Ok("jwt".to_string()))]),
            node: Allocatable {
                cpu_milli: 1000,
                memory_bytes: 1 << 30,
                ephemeral_storage_bytes: 1 << 30,
            },
        }
    }

    fn pod() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("shop".into());
        pod.metadata.labels = Some(BTreeMap::from([("app".to_string(), "web".to_string())]));
        pod
    }

    fn text(files: &Payload, path: &str) -> String {
        String::from_utf8(files[&PathBuf::from(path)].content.clone()).unwrap()
    }

    #[test]
    fn sources_are_merged_into_one_payload() {
        let volume = ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(vec![
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "conf".into(),
                        items: Some(vec![KeyToPath {
                            key: "a".into(),
                            path: "conf/a.txt".into(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    secret: Some(SecretProjection {
                        name: "absent".into(),
                        optional: Some(true),
                        items: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "labels".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.labels".into(),
                                api_version: None,
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(3600),
                        audience: None,
                    }),
                    ..Default::default()
                },
            ]),
        };
        let files = projected_payload(&pod(), &volume, &inputs()).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(text(&files, "conf/a.txt"), "1");
        assert_eq!(text(&files, "labels"), "app=\"web\"");
        assert_eq!(text(&files, "token"), "jwt");
        assert!(files.values().all(|f| f.mode == 0o440));
    }

    #[test]
    fn missing_sources_and_keys_fail_unless_optional() {
        let data = BTreeMap::from([("a".to_string(), "1".to_string())]);
        let item = |key: &str| KeyToPath {
            key: key.into(),
            path: "x".into(),
            mode: None,
        };
        assert!(key_payload("configmap", "c", None, None, 0o644, false).is_err());
        assert!(
            key_payload("configmap", "c", None, None, 0o644, true)
                .unwrap()
                .is_empty()
        );
        let missing = [item("zz")];
        assert!(key_payload("configmap", "c", Some(&data), Some(&missing), 0o644, false).is_err());
        let escaping = [KeyToPath {
            path: "../../etc/x".into(),
            ..item("a")
        }];
        assert!(key_payload("configmap", "c", Some(&data), Some(&escaping), 0o644, true).is_err());
        let all = key_payload("configmap", "c", Some(&data), None, 0o600, false).unwrap();
        assert_eq!(all[&PathBuf::from("a")], File::new("1", 0o600));
    }
}
