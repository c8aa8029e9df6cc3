//! `POST /strata/v1/kubelet-serving-certificate`: a joining node agent sends a certificate
//! signing request (PEM) for its kubelet API and gets back a certificate of the cluster CA
//! (`{"certificate": "<PEM>"}`); the private key never leaves the node.
//!
//! Why not `certificates.k8s.io/v1` CertificateSigningRequests: Strata does not serve that
//! group yet, and without an approver and a signer a CSR object would only be a detour. This
//! endpoint signs synchronously what Kubernetes' `kubernetes.io/kubelet-serving` signer signs
//! (see [`Pki::sign_kubelet_serving_csr`]), for the node identity the caller authenticated as
//! (its node token or certificate); authorization lets only `system:node:<name>` callers in.
//! When the CSR API lands, agents can switch to it with the same key handling.
//!
//! Limitation: kubelet serving certificates come from the cluster CA, which clients also trust
//! for the API server, and a node may ask for any IP address. A node able to intercept traffic
//! to the API server's address could thus present a valid certificate for it. Kubernetes
//! avoids this with a separate kubelet-serving CA or manual approval; Strata has one CA.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::pki::Pki;
use crate::status::{ApiError, json_response};

/// The path of the endpoint.
pub const KUBELET_SERVING_CERT_PATH: &str = "/strata/v1/kubelet-serving-certificate";

/// Largest request accepted (a P-256 CSR is well under 1 KiB).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The request body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningRequest {
    /// The PKCS#10 certificate signing request, PEM.
    pub csr: String,
}

/// The response body.
#[derive(Debug, Serialize, Deserialize)]
pub struct SignedCertificate {
    /// The issued certificate, PEM.
    pub certificate: String,
}

/// The handler (mounted by [`crate::embedded::EmbeddedServer::serve`] behind the auth layer).
pub async fn handle(
    State(pki): State<Arc<Pki>>,
    identity: Option<Extension<Identity>>,
    body: axum::body::Bytes,
) -> Response {
    match sign(&pki, identity.as_ref().map(|e| &e.0), &body) {
        Ok(certificate) => json_response(
            StatusCode::CREATED,
            &serde_json::json!(SignedCertificate { certificate }),
        ),
        Err(err) => err.into_response(),
    }
}

fn sign(pki: &Pki, identity: Option<&Identity>, body: &[u8]) -> Result<String, ApiError> {
    let node = identity
        .and_then(Identity::node_name)
        .ok_or_else(|| ApiError::Forbidden("only node agents get kubelet certificates".into()))?;
    if body.len() > MAX_REQUEST_BYTES {
        return Err(ApiError::TooLarge(MAX_REQUEST_BYTES));
    }
    let request: SigningRequest = serde_json::from_slice(body)
        .map_err(|err| ApiError::BadRequest(format!("invalid signing request: {err}")))?;
    pki.sign_kubelet_serving_csr(node, &request.csr)
        .map_err(|err| ApiError::BadRequest(chain(&err)))
}

/// `err: cause: cause…` on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_for_the_callers_node_only() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let ip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        let csr = crate::pki::kubelet_serving_csr("n1", &[ip]).unwrap();
        let body = serde_json::to_vec(&SigningRequest {
            csr: csr.cert_pem.clone(),
        })
        .unwrap();
        let cert = sign(&pki, Some(&Identity::node("n1")), &body).unwrap();
        let names = ["n1".to_string(), "10.0.0.7".to_string()];
        let cert = crate::pki::CertAndKey {
            cert_pem: cert,
            key_pem: csr.key_pem.clone(),
        };
        assert!(crate::pki::kubelet_cert_is_current(
            &cert,
            pki.ca_cert_pem(),
            &names
        ));
        // Not for another address, nor with another key.
        let moved = ["n1".to_string(), "10.0.0.8".to_string()];
        assert!(!crate::pki::kubelet_cert_is_current(
            &cert,
            pki.ca_cert_pem(),
            &moved
        ));
        let rekeyed = crate::pki::CertAndKey {
            key_pem: crate::pki::kubelet_serving_csr("n1", &[ip])
                .unwrap()
                .key_pem,
            ..cert.clone()
        };
        assert!(!crate::pki::kubelet_cert_is_current(
            &rekeyed,
            pki.ca_cert_pem(),
            &names
        ));
        // Another CA's certificate is not current.
        let other = tempfile::tempdir().unwrap();
        let other = Pki::load_or_create(other.path(), &[]).unwrap();
        assert!(!crate::pki::kubelet_cert_is_current(
            &cert,
            other.ca_cert_pem(),
            &names
        ));
        // Node n2 may not get a certificate naming n1; non-nodes get nothing.
        let err = sign(&pki, Some(&Identity::node("n2")), &body).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(m) if m.contains("may not have")));
        let admin = Identity::new("strata-admin", ["system:masters"]);
        assert!(matches!(
            sign(&pki, Some(&admin), &body),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            sign(&pki, Some(&Identity::node("n1")), b"{\"csr\":\"junk\"}"),
            Err(ApiError::BadRequest(_))
        ));
    }
}
