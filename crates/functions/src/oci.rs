//! Where `spec.wasm.oci` modules come from: a [`ModuleSource`] the binary injects (the
//! `strata` crate implements it with the registry client of strata-image), so that this
//! crate stays free of registries, credentials and image stores.

use std::future::Future;
use std::pin::Pin;

/// The future [`ModuleSource::fetch`] returns.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, FetchError>> + Send + 'a>>;

/// Why a module could not be fetched. Messages are the registry's own where it sent
/// one; they end up in the Function's `Ready=False` condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The registry has no such repository, tag or digest (`Ready=False` reason
    /// `ModuleNotFound`).
    #[error("{0}")]
    NotFound(String),
    /// Anything else: unreachable registry, refused credentials, not a wasm artifact, a
    /// digest mismatch (`Ready=False` reason `OciPullFailed`).
    #[error("{0}")]
    Failed(String),
}

impl FetchError {
    /// The `Ready=False` reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::NotFound(_) => "ModuleNotFound",
            FetchError::Failed(_) => "OciPullFailed",
        }
    }
}

/// Fetches WebAssembly modules by OCI reference (`registry/repo:tag` or `…@sha256:…`).
///
/// Implementations verify what they return (the layer digest) and may cache it; the
/// sync calls `fetch` when a Function's spec changes, not on every status update.
pub trait ModuleSource: Send + Sync + std::fmt::Debug {
    /// The module (binary WebAssembly) `reference` names.
    fn fetch<'a>(&'a self, reference: &'a str) -> FetchFuture<'a>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_modules_and_other_failures_have_their_own_reasons() {
        assert_eq!(
            FetchError::NotFound("manifest unknown".into()).reason(),
            "ModuleNotFound"
        );
        let failed = FetchError::Failed("cannot reach r:5000".into());
        assert_eq!(failed.reason(), "OciPullFailed");
        assert_eq!(failed.to_string(), "cannot reach r:5000");
    }
}
