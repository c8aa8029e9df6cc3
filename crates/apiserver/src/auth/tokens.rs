//! Bearer tokens in `<data-dir>/pki/tokens.json` (0600): each maps to an [`Identity`]. An admin
//! token is created on first start; node tokens are issued on demand.
//!
//! Tokens are 32 random bytes, URL-safe base64 (43 characters). They are stored in clear, like
//! k3s's token files, because `strata server` must be able to print them again; the file is
//! readable by its owner only. Lookups compare SHA-256 digests in constant time and visit every
//! entry, so timing tells nothing about which token (or how much of one) matched.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use base64::Engine as _;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::Identity;
use crate::fsutil;
use crate::pki::{ADMIN_GROUP, ADMIN_USER};

/// File name of the token file inside the PKI directory.
pub const TOKENS_FILE: &str = "tokens.json";

/// Errors of the token store.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The token file is not valid.
    #[error("cannot parse {path}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The token file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The system random generator failed.
    #[error("cannot draw random bytes for a token")]
    Random,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    user: String,
    groups: Vec<String>,
    /// What the token is for, e.g. `admin` or `node n1`.
    description: String,
}

/// The bearer tokens of one server, shared by the auth layer and whatever issues tokens.
pub struct TokenStore {
    path: PathBuf,
    file: RwLock<TokensFile>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// Loads `<pki_dir>/tokens.json`, creating it with an admin token (`strata-admin` in
    /// `system:masters`) if it is missing or has no admin token.
    pub fn load_or_init(pki_dir: &Path) -> Result<TokenStore, TokenError> {
        let path = pki_dir.join(TOKENS_FILE);
        let file = match fsutil::read_optional(&path).map_err(|source| TokenError::Read {
            path: path.clone(),
            source,
        })? {
            Some(text) => serde_json::from_str(&text).map_err(|source| TokenError::Parse {
                path: path.clone(),
                source,
            })?,
            None => TokensFile::default(),
        };
        let store = TokenStore {
            path,
            file: RwLock::new(file),
        };
        if store.admin_token().is_none() {
            store.issue(&Identity::new(ADMIN_USER, [ADMIN_GROUP]), "admin")?;
        }
        Ok(store)
    }

    /// Path of the token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The admin token.
    pub fn admin_token(&self) -> Option<String> {
        let file = self.file.read().unwrap_or_else(PoisonError::into_inner);
        file.tokens
            .iter()
            .find(|t| t.user == ADMIN_USER && t.groups.iter().any(|g| g == ADMIN_GROUP))
            .map(|t| t.token.clone())
    }

    /// Issues a new token for `identity` and saves the file. `description` says what it is
    /// for (shown to nobody but the file's reader).
    pub fn issue(&self, identity: &Identity, description: &str) -> Result<String, TokenError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| TokenError::Random)?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut file = self.file.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = file.clone();
        next.tokens.push(TokenEntry {
            token: token.clone(),
            user: identity.user.clone(),
            groups: identity.groups.clone(),
            description: description.to_string(),
        });
        self.save(&next)?;
        *file = next;
        Ok(token)
    }

    /// Issues a token for node `name`'s agent: `system:node:<name>` in `system:nodes`.
    pub fn issue_node_token(&self, name: &str) -> Result<String, TokenError> {
        self.issue(&Identity::node(name), &format!("node {name}"))
    }

    /// Removes `token`; returns whether it existed.
    pub fn revoke(&self, token: &str) -> Result<bool, TokenError> {
        let mut file = self.file.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = file.clone();
        next.tokens.retain(|t| !tokens_equal(&t.token, token));
        if next.tokens.len() == file.tokens.len() {
            return Ok(false);
        }
        self.save(&next)?;
        *file = next;
        Ok(true)
    }

    /// The identity `token` stands for, if any. Constant time in the token's content.
    pub fn authenticate(&self, token: &str) -> Option<Identity> {
        let file = self.file.read().unwrap_or_else(PoisonError::into_inner);
        let mut found = None;
        for entry in &file.tokens {
            // No early exit: every entry costs the same whether or not it matches.
            if tokens_equal(&entry.token, token) && found.is_none() {
                found = Some(Identity::new(
                    entry.user.clone(),
                    entry.groups.iter().cloned(),
                ));
            }
        }
        found
    }

    fn save(&self, file: &TokensFile) -> Result<(), TokenError> {
        let mut json = serde_json::to_vec_pretty(file).map_err(|source| TokenError::Parse {
            path: self.path.clone(),
            source,
        })?;
        json.push(b'\n');
        fsutil::write_private(&self.path, &json).map_err(|source| TokenError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Compares digests, so neither the content nor the length of a stored token leaks.
fn tokens_equal(stored: &str, given: &str) -> bool {
    let a = digest(&SHA256, stored.as_bytes());
    let b = digest(&SHA256, given.as_bytes());
    a.as_ref().ct_eq(b.as_ref()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn admin_token_is_created_once_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::load_or_init(dir.path()).unwrap();
        let admin = store.admin_token().unwrap();
        assert_eq!(admin.len(), 43);
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = TokenStore::load_or_init(dir.path()).unwrap();
        assert_eq!(again.admin_token(), Some(admin.clone()));
        let id = again.authenticate(&admin).unwrap();
        assert_eq!(
            (id.user.as_str(), id.groups.as_slice()),
            ("strata-admin", &["system:masters".to_string()][..])
        );
    }

    #[test]
    fn node_tokens_authenticate_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::load_or_init(dir.path()).unwrap();
        let token = store.issue_node_token("n1").unwrap();
        assert_eq!(store.authenticate(&token), Some(Identity::node("n1")));
        assert_eq!(store.authenticate("wrong"), None);
        assert_eq!(store.authenticate(""), None);
        assert!(store.revoke(&token).unwrap());
        assert!(!store.revoke(&token).unwrap());
        assert_eq!(store.authenticate(&token), None);
        let reloaded = TokenStore::load_or_init(dir.path()).unwrap();
        assert_eq!(reloaded.authenticate(&token), None);
    }
}
