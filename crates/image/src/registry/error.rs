//! The one error type of registry operations.

use std::path::PathBuf;

use crate::digest::Digest;
use crate::images::ImageError;
use crate::manifest::ManifestError;
use crate::store::StoreError;

/// Why talking to a registry failed. Messages name the host or the blob; the CLI
/// puts the operation and reference in front (`pull localhost:5000/x:1: manifest unknown`).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// A CA certificate file could not be read or parsed.
    #[error("CA certificate {path}")]
    CaCert {
        /// The PEM file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The request never got an answer (DNS, connect, TLS, reset).
    #[error("cannot reach {host}")]
    Unreachable {
        /// The registry.
        host: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection dropped while a body was being read.
    #[error("connection to {host} dropped")]
    Interrupted {
        /// The registry.
        host: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry refused the request; the message is the registry's own (from its
    /// `{"errors":[…]}` body) or the HTTP status.
    #[error("{message}")]
    Refused {
        /// The registry.
        host: String,
        /// The HTTP status.
        status: u16,
        /// The distribution error code (`MANIFEST_UNKNOWN`), empty without a body.
        code: String,
        /// A one-line description.
        message: String,
    },
    /// Credentials are missing or were not accepted.
    #[error("authentication required (run strata login {host})")]
    AuthRequired {
        /// The registry.
        host: String,
    },
    /// `login` was given credentials the registry does not accept.
    #[error("invalid username or password for {host}")]
    LoginFailed {
        /// The registry.
        host: String,
    },
    /// The token service answered with something unusable.
    #[error("token service {realm} {message}")]
    Token {
        /// The realm URL.
        realm: String,
        /// What was wrong.
        message: String,
    },
    /// The registry broke the protocol (no `Location`, bad header, …).
    #[error("{host}: {message}")]
    Protocol {
        /// The registry.
        host: String,
        /// What was wrong.
        message: String,
    },
    /// A manifest's bytes do not hash to the digest asked for or announced.
    #[error("manifest digest mismatch: expected {expected}, got {actual}")]
    ManifestDigest {
        /// The pinned or announced digest.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A manifest is larger than any sane manifest.
    #[error("manifest is larger than {limit} bytes")]
    ManifestTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A manifest or index could not be read.
    #[error("manifest {digest}")]
    Manifest {
        /// The document.
        digest: Digest,
        /// What is wrong with it.
        #[source]
        source: ManifestError,
    },
    /// A blob could not be stored (a digest or size mismatch lands here).
    #[error("blob {digest}")]
    Blob {
        /// The blob.
        digest: Digest,
        /// The store error.
        #[source]
        source: StoreError,
    },
    /// A blob to push could not be read.
    #[error("cannot read blob {digest} from {path}")]
    ReadBlob {
        /// The blob.
        digest: Digest,
        /// Its file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The local image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The local content store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// True for failures worth retrying: transport errors, dropped bodies, 5xx and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Interrupted { .. } => true,
            RegistryError::Refused { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The distribution error code, when the registry sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            RegistryError::Refused { code, .. } if !code.is_empty() => Some(code),
            _ => None,
        }
    }
}
