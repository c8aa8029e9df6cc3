//! The image configuration blob: what a container of the image runs by default
//! (entrypoint, command, environment, user, working directory) and the layer diff IDs.
//!
//! Fields Strata does not use are kept in `extra`, so a config read and written again
//! (by a build step) loses nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::{ManifestError, Platform};

/// An OCI / Docker image configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// When the image was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (`amd64`).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Defaults for containers of this image.
    #[serde(default)]
    pub config: RunConfig,
    /// The uncompressed layer digests, base first.
    #[serde(default)]
    pub rootfs: RootFs,
    /// How each layer was made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Everything else, kept as it came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The `config` section: execution defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `user`, `uid`, `user:group` or `uid:gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Ports the image listens on, as keys like `8080/tcp`.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    /// `KEY=VALUE` entries.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub env: Vec<String>,
    /// The executable and its leading arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments (to the entrypoint, or the command when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Paths meant to hold volumes.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub volumes: BTreeMap<String, serde_json::Value>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub labels: BTreeMap<String, String>,
    /// The signal that stops the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Everything else (Healthcheck, Shell, …), kept as it came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The layer list of a config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digest of each layer's uncompressed tar, base first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        Self {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction that made the layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// A note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

impl ImageConfig {
    /// Parses a config blob.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Malformed {
            what: "image config",
            source,
        })
    }

    /// Serialises the config (compact JSON, the form that gets hashed).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A config for a new image on this machine's platform.
    pub fn for_host() -> Self {
        let platform = Platform::host();
        Self {
            architecture: platform.architecture,
            os: platform.os,
            ..Self::default()
        }
    }

    /// The process a container runs: the entrypoint followed by `args` if the caller
    /// gave any, else by the image's Cmd (Docker's rule). Empty when the image defines
    /// nothing and the caller gave nothing.
    pub fn command_line(&self, args: &[String]) -> Vec<String> {
        let mut line = self.config.entrypoint.clone().unwrap_or_default();
        if args.is_empty() {
            line.extend(self.config.cmd.clone().unwrap_or_default());
        } else {
            line.extend(args.iter().cloned());
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_with_nulls_parses_and_keeps_unknown_fields() {
        let raw = r#"{"architecture":"amd64","os":"linux","docker_version":"24.0",
          "config":{"Env":null,"Cmd":["sh"],"Entrypoint":null,"ExposedPorts":{"80/tcp":{}},
                    "Healthcheck":{"Test":["NONE"]},"Labels":null},
          "rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111"]}}"#;
        let config = ImageConfig::parse(raw.as_bytes()).unwrap();
        assert!(config.config.env.is_empty());
        assert_eq!(config.config.cmd.as_deref(), Some(&["sh".to_string()][..]));
        assert!(config.config.exposed_ports.contains_key("80/tcp"));
        assert_eq!(config.rootfs.diff_ids.len(), 1);
        let again = ImageConfig::parse(&config.to_bytes()).unwrap();
        assert_eq!(again, config);
        let text = String::from_utf8(config.to_bytes()).unwrap();
        assert!(text.contains("docker_version") && text.contains("Healthcheck"));
    }

    #[test]
    fn command_line_follows_docker_rules() {
        let mut config = ImageConfig::for_host();
        config.config.cmd = Some(vec!["-f".into()]);
        assert_eq!(config.command_line(&[]), vec!["-f"]);
        config.config.entrypoint = Some(vec!["httpd".into()]);
        assert_eq!(config.command_line(&[]), vec!["httpd", "-f"]);
        assert_eq!(config.command_line(&["-v".into()]), vec!["httpd", "-v"]);
        config.config = RunConfig::default();
        assert!(config.command_line(&[]).is_empty());
    }
}
