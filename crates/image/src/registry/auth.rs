//! Registry credentials: the `auth.json` file `strata login` writes (Docker's
//! `{"auths":{"host":{"auth":"base64(user:pass)"}}}` format), and parsing of the
//! `WWW-Authenticate` challenges registries answer 401 with.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::DOCKER_HUB;

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why the auth file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// Reading or writing failed.
    #[error("{operation} {path}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error("malformed auth file {path}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An entry's `auth` is not base64 of `user:password`.
    #[error("auth file {path}: the entry for {registry} is not base64(user:password)")]
    BadEntry {
        /// The file.
        path: PathBuf,
        /// The registry key.
        registry: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthDoc {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    /// Keys other tools keep here (credHelpers, …) survive a rewrite.
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// The stored credentials, keyed by registry host (`docker.io`, `localhost:5000`).
#[derive(Debug)]
pub struct AuthFile {
    path: PathBuf,
    doc: AuthDoc,
}

/// Keys under which other tools store Docker Hub credentials.
const DOCKER_HUB_KEYS: [&str; 3] = [
    "https://index.docker.io/v1/",
    "index.docker.io",
    "registry-1.docker.io",
];

/// The key `login` and `logout` use for what a user typed: a scheme and path are
/// dropped (`https://index.docker.io/v1/` → `docker.io`).
pub fn registry_key(registry: &str) -> String {
    let host = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let host = host.split('/').next().unwrap_or(host);
    if DOCKER_HUB_KEYS
        .iter()
        .any(|k| k.trim_start_matches("https://").trim_end_matches("/v1/") == host)
    {
        DOCKER_HUB.to_string()
    } else {
        host.to_string()
    }
}

impl AuthFile {
    /// Reads `path`; a missing file is an empty one.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, AuthFileError> {
        let path = path.into();
        let doc = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| AuthFileError::Malformed {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AuthDoc::default(),
            Err(source) => {
                return Err(AuthFileError::Io {
                    operation: "cannot read",
                    path,
                    source,
                });
            }
        };
        Ok(Self { path, doc })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials stored for `registry`, if any.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, AuthFileError> {
        let key = registry_key(registry);
        let mut keys = vec![key.as_str()];
        if key == DOCKER_HUB {
            keys.extend(DOCKER_HUB_KEYS);
        }
        let Some((found, encoded)) = keys.iter().find_map(|k| {
            self.doc
                .auths
                .get(*k)
                .and_then(|e| e.auth.as_deref())
                .map(|a| (*k, a))
        }) else {
            return Ok(None);
        };
        let bad = || AuthFileError::BadEntry {
            path: self.path.clone(),
            registry: found.to_string(),
        };
        let decoded = BASE64.decode(encoded.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = text.split_once(':').ok_or_else(bad)?;
        Ok(Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }))
    }

    /// Stores `credentials` for `registry` (call [`Self::save`] to write them).
    pub fn set(&mut self, registry: &str, credentials: &Credentials) {
        let auth = BASE64.encode(format!("{}:{}", credentials.username, credentials.password));
        self.doc
            .auths
            .entry(registry_key(registry))
            .or_default()
            .auth = Some(auth);
    }

    /// Forgets `registry`; returns whether anything was stored for it.
    pub fn remove(&mut self, registry: &str) -> bool {
        let key = registry_key(registry);
        let mut removed = self.doc.auths.remove(&key).is_some();
        if key == DOCKER_HUB {
            for k in DOCKER_HUB_KEYS {
                removed |= self.doc.auths.remove(k).is_some();
            }
        }
        removed
    }

    /// Writes the file, readable by its owner only (mode 0600), replacing it atomically.
    pub fn save(&self) -> Result<(), AuthFileError> {
        let io = |operation, path: &Path| {
            let path = path.to_path_buf();
            move |source| AuthFileError::Io {
                operation,
                path,
                source,
            }
        };
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        }
        let mut tmp_name = self.path.clone().into_os_string();
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let write = || -> std::io::Result<()> {
            // Serialising string maps cannot fail.
            let bytes = serde_json::to_vec_pretty(&self.doc).unwrap_or_default();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&bytes)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            AuthFileError::Io {
                operation: "cannot write",
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// What a registry's 401 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic authentication.
    Basic,
    /// A bearer token from `realm` (the distribution token protocol).
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter to pass on.
        service: Option<String>,
        /// The scopes the request needs (space-separated in the header).
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` value; `None` for schemes Strata does not speak.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        let get = |k: &str| {
            params
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// `key=value` and `key="quoted, value"` pairs separated by commas.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_with_quoted_commas() {
        let header = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push repository:a/b:pull""#;
        assert_eq!(
            Challenge::parse(header),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push repository:a/b:pull".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="strata""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse("bearer realm=http://127.0.0.1:1/t"),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate abc"), None);
    }

    #[test]
    fn auth_file_round_trips_in_dockers_format_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let mut file = AuthFile::load(&path).unwrap();
        assert_eq!(file.get("localhost:5000").unwrap(), None);
        let alice = Credentials {
            username: "alice".into(),
            password: "s:cret".into(),
        };
        file.set("localhost:5000", &alice);
        file.set("https://index.docker.io/v1/", &alice);
        file.save().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            json["auths"]["localhost:5000"]["auth"],
            BASE64.encode("alice:s:cret")
        );
        assert!(json["auths"]["docker.io"].is_object());

        let mut again = AuthFile::load(&path).unwrap();
        assert_eq!(again.get("localhost:5000").unwrap(), Some(alice.clone()));
        assert_eq!(again.get("docker.io").unwrap(), Some(alice));
        assert!(again.remove("localhost:5000"));
        assert!(!again.remove("localhost:5000"));
        again.save().unwrap();
        assert_eq!(
            AuthFile::load(&path)
                .unwrap()
                .get("localhost:5000")
                .unwrap(),
            None
        );
    }

    #[test]
    fn docker_written_hub_entries_and_foreign_keys_are_understood() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"Ym9iOnB3"}},"credHelpers":{"x":"y"}}"#,
        )
        .unwrap();
        let mut file = AuthFile::load(&path).unwrap();
        assert_eq!(
            file.get("docker.io").unwrap().map(|c| c.username),
            Some("bob".to_string())
        );
        file.set(
            "127.0.0.1:5000",
            &Credentials {
                username: "u".into(),
                password: "p".into(),
            },
        );
        file.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("credHelpers"), "{text}");
        std::fs::write(&path, r#"{"auths":{"h":{"auth":"!!"}}}"#).unwrap();
        assert!(matches!(
            AuthFile::load(&path).unwrap().get("h"),
            Err(AuthFileError::BadEntry { .. })
        ));
    }
}
