//! Bearer tokens in `<data-dir>/pki/tokens.json` (0600): each maps to an [`Identity`]. An admin
//! token is created on first start; node tokens are issued on demand.
//!
//! Another process (a CLI issuing a join token) may write the same file: the store notices a
//! replaced file (new inode, size or mtime) on the next lookup and reloads it, and issuing or
//! revoking re-reads the file first so neither writer drops the other's tokens. Two writers at
//! the very same moment can still race; the file is not locked.
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

/// Identifies one version of the token file; the file is replaced by rename on every write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            inode: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

struct Loaded {
    file: TokensFile,
    stamp: Option<FileStamp>,
}

/// The bearer tokens of one server, shared by the auth layer and whatever issues tokens.
pub struct TokenStore {
    path: PathBuf,
    state: RwLock<Loaded>,
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
        let loaded = read_file(&path)?;
        let store = TokenStore {
            path,
            state: RwLock::new(loaded),
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
        self.reload_if_changed();
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .file
            .tokens
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
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        *state = read_file(&self.path)?;
        let mut next = state.file.clone();
        next.tokens.push(TokenEntry {
            token: token.clone(),
            user: identity.user.clone(),
            groups: identity.groups.clone(),
            description: description.to_string(),
        });
        *state = self.save(next)?;
        Ok(token)
    }

    /// Issues a token for node `name`'s agent: `system:node:<name>` in `system:nodes`.
    pub fn issue_node_token(&self, name: &str) -> Result<String, TokenError> {
        self.issue(&Identity::node(name), &format!("node {name}"))
    }

    /// Removes `token`; returns whether it existed.
    pub fn revoke(&self, token: &str) -> Result<bool, TokenError> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        *state = read_file(&self.path)?;
        let mut next = state.file.clone();
        next.tokens.retain(|t| !tokens_equal(&t.token, token));
        if next.tokens.len() == state.file.tokens.len() {
            return Ok(false);
        }
        *state = self.save(next)?;
        Ok(true)
    }

    /// The identity `token` stands for, if any. Constant time in the token's content.
    pub fn authenticate(&self, token: &str) -> Option<Identity> {
        self.reload_if_changed();
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut found = None;
        for entry in &state.file.tokens {
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

    /// Rereads the file if another writer replaced it. A file that can't be read keeps the
    /// tokens already loaded (and is reported), so a bad edit doesn't lock everyone out.
    fn reload_if_changed(&self) {
        let now = FileStamp::of(&self.path);
        let known = self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .stamp;
        if now == known {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match read_file(&self.path) {
            Ok(loaded) => *state = loaded,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "keeping the tokens already loaded"
                );
                state.stamp = now;
            }
        }
    }

    fn save(&self, file: TokensFile) -> Result<Loaded, TokenError> {
        let mut json = serde_json::to_vec_pretty(&file).map_err(|source| TokenError::Parse {
            path: self.path.clone(),
            source,
        })?;
        json.push(b'\n');
        fsutil::write_private(&self.path, &json).map_err(|source| TokenError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(Loaded {
            file,
            stamp: FileStamp::of(&self.path),
        })
    }
}

/// Reads the token file; a missing file is an empty one.
fn read_file(path: &Path) -> Result<Loaded, TokenError> {
    // Stamp first: if the file changes after this, the next lookup sees a new stamp and rereads.
    let stamp = FileStamp::of(path);
    let text = fsutil::read_optional(path).map_err(|source| TokenError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file = match text {
        Some(text) => serde_json::from_str(&text).map_err(|source| TokenError::Parse {
            path: path.to_path_buf(),
            source,
        })?,
        None => TokensFile::default(),
    };
    Ok(Loaded { file, stamp })
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
