//! Service account tokens: ES256-signed JWTs with Kubernetes' claims, issued by the
//! `serviceaccounts/token` subresource (TokenRequest) and accepted as bearer tokens.
//!
//! The signing key is an ECDSA P-256 key kept in `<pki>/sa.key` (PKCS#8, 0600), made on
//! first start and never replaced (every issued token hangs on it). Verification here
//! checks the signature, issuer, audience and time window; that the service account
//! (and the bound pod) still exist with the same uids is the auth layer's job, since it
//! needs the store.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};

use super::Identity;
use crate::fsutil;

/// File name of the signing key inside the PKI directory.
pub const KEY_FILE: &str = "sa.key";
/// The issuer (`iss`) of Strata's tokens, and the API server's own audience, as
/// kube-apiserver's default `--service-account-issuer` in a kubeadm cluster.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Prefix of a service account's user name: `system:serviceaccount:<ns>:<name>`.
pub const USER_PREFIX: &str = "system:serviceaccount:";
/// Group of every service account.
pub const ALL_GROUP: &str = "system:serviceaccounts";
/// Allowed clock skew when checking `nbf` and `exp`, in seconds.
const LEEWAY_SECONDS: i64 = 60;

/// Errors of loading the key or issuing and checking tokens.
#[derive(Debug, thiserror::Error)]
pub enum SaTokenError {
    /// The key file could not be read or written.
    #[error("cannot access the service account key {path}")]
    KeyFile {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file does not hold a P-256 PKCS#8 key.
    #[error("the service account key {path} is not a PKCS#8 P-256 key")]
    KeyFormat {
        /// File.
        path: PathBuf,
    },
    /// Key generation or signing failed.
    #[error("cannot sign a service account token")]
    Sign,
    /// The token is malformed, badly signed, expired or for someone else.
    #[error("invalid service account token: {0}")]
    Invalid(&'static str),
}

/// The `kubernetes.io` private claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub serviceaccount: ObjectClaim,
    /// The pod the token is bound to, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectClaim>,
}

/// A name and uid in the claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectClaim {
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// The claims of a service account token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: `system:serviceaccount:<ns>:<name>`.
    pub sub: String,
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id.
    pub jti: String,
    /// Kubernetes' own claims.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

impl Claims {
    /// The identity the token stands for: `system:serviceaccount:<ns>:<name>` in
    /// `system:serviceaccounts` and `system:serviceaccounts:<ns>`.
    pub fn identity(&self) -> Identity {
        let ns = &self.kubernetes.namespace;
        Identity::new(
            format!("{USER_PREFIX}{ns}:{}", self.kubernetes.serviceaccount.name),
            [ALL_GROUP.to_string(), format!("{ALL_GROUP}:{ns}")],
        )
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: String,
}

/// The signer and verifier of service account tokens.
pub struct SaTokens {
    key: EcdsaKeyPair,
    key_id: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for SaTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaTokens")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SaTokens {
    /// Loads `<pki_dir>/sa.key`, making it first when missing.
    pub fn load_or_create(pki_dir: &Path) -> Result<Self, SaTokenError> {
        let path = pki_dir.join(KEY_FILE);
        let file_error = |source| SaTokenError::KeyFile {
            path: path.clone(),
            source,
        };
        let rng = SystemRandom::new();
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| SaTokenError::Sign)?;
                fsutil::create_private_dir(pki_dir).map_err(file_error)?;
                fsutil::write_private(&path, doc.as_ref()).map_err(file_error)?;
                doc.as_ref().to_vec()
            }
            Err(err) => return Err(file_error(err)),
        };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|_| SaTokenError::KeyFormat { path: path.clone() })?;
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let key_id = URL_SAFE_NO_PAD.encode(digest.as_ref());
        Ok(Self { key, key_id, rng })
    }

    /// Signs `claims` into a compact JWT.
    pub fn issue(&self, claims: &Claims) -> Result<String, SaTokenError> {
        let header = Header {
            alg: "ES256".into(),
            kid: self.key_id.clone(),
        };
        let signing_input = format!("{}.{}", encode_part(&header)?, encode_part(claims)?);
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| SaTokenError::Sign)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// Checks `token`'s signature, issuer, time window (at `now`, seconds since the epoch)
    /// and that one of its audiences is in `audiences`; returns its claims.
    pub fn verify(
        &self,
        token: &str,
        audiences: &[&str],
        now: i64,
    ) -> Result<Claims, SaTokenError> {
        let invalid = SaTokenError::Invalid;
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a JWT"));
        };
        let header: Header = decode_json(header).ok_or(invalid("bad header"))?;
        if header.alg != "ES256" {
            return Err(invalid("unexpected algorithm"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| invalid("bad signature encoding"))?;
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key());
        let signed = &token[..header_and_payload_len(token)];
        public
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| invalid("bad signature"))?;
        let claims: Claims = decode_json(payload).ok_or(invalid("bad claims"))?;
        if claims.iss != ISSUER {
            return Err(invalid("unknown issuer"));
        }
        if now > claims.exp + LEEWAY_SECONDS {
            return Err(invalid("expired"));
        }
        if now + LEEWAY_SECONDS < claims.nbf {
            return Err(invalid("not valid yet"));
        }
        if !claims.aud.iter().any(|a| audiences.contains(&a.as_str())) {
            return Err(invalid("not for this audience"));
        }
        let expected = format!(
            "{USER_PREFIX}{}:{}",
            claims.kubernetes.namespace, claims.kubernetes.serviceaccount.name
        );
        if claims.sub != expected {
            return Err(invalid("subject does not match the claims"));
        }
        Ok(claims)
    }
}

/// Whether a bearer token looks like a JWT (three dot-separated parts), as opposed to
/// one of the static tokens.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Length of `header.payload` in a compact JWT.
fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A JWT part: the value's JSON, base64url without padding.
fn encode_part<T: Serialize>(value: &T) -> Result<String, SaTokenError> {
    let json = serde_json::to_vec(value).map_err(|_| SaTokenError::Sign)?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: "system:serviceaccount:shop:default".into(),
            aud: vec![ISSUER.into()],
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: "j".into(),
            kubernetes: KubernetesClaims {
                namespace: "shop".into(),
                serviceaccount: ObjectClaim {
                    name: "default".into(),
                    uid: "sa-uid".into(),
                },
                pod: None,
            },
        }
    }

    #[test]
    fn issued_tokens_verify_and_name_the_service_account() {
        let dir = tempfile::tempdir().unwrap();
        let signer = SaTokens::load_or_create(dir.path()).unwrap();
        let now = 1_800_000_000;
        let token = signer.issue(&claims(now)).unwrap();
        assert!(looks_like_jwt(&token));
        let back = signer.verify(&token, &[ISSUER], now + 10).unwrap();
        assert_eq!(back, claims(now));
        let who = back.identity();
        assert_eq!(who.user, "system:serviceaccount:shop:default");
        assert!(who.in_group("system:serviceaccounts"));
        assert!(who.in_group("system:serviceaccounts:shop"));
        // The same key after a restart.
        let again = SaTokens::load_or_create(dir.path()).unwrap();
        assert!(again.verify(&token, &[ISSUER], now).is_ok());
    }

    #[test]
    fn expired_foreign_or_tampered_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let signer = SaTokens::load_or_create(dir.path()).unwrap();
        let now = 1_800_000_000;
        let token = signer.issue(&claims(now)).unwrap();
        assert!(signer.verify(&token, &[ISSUER], now + 3600).is_err());
        assert!(signer.verify(&token, &["other"], now).is_err());
        let mut forged = claims(now);
        forged.kubernetes.namespace = "kube-system".into();
        forged.sub = "system:serviceaccount:kube-system:default".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert!(signer.verify(&tampered, &[ISSUER], now).is_err());
        let other = tempfile::tempdir().unwrap();
        let stranger = SaTokens::load_or_create(other.path()).unwrap();
        assert!(stranger.verify(&token, &[ISSUER], now).is_err());
        assert!(signer.verify("garbage", &[ISSUER], now).is_err());
        assert!(signer.verify("a.b.c", &[ISSUER], now).is_err());
    }
}
