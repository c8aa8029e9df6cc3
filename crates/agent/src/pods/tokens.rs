//! Service account tokens for projected volumes, the way the kubelet's token manager
//! gets them: a TokenRequest for the pod's service account, bound to the pod, with the
//! audience and lifetime the volume asks for; kept until 80 % of its lifetime passed
//! (or 24 h), then requested again. A failed refresh keeps the old token while valid.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};

use super::projected::{TokenKey, Tokens, token_keys};

/// Longest a token is kept before it is requested again, whatever its lifetime.
const MAX_KEEP: Duration = Duration::from_secs(24 * 3600);

/// A token and when to replace it.
struct Held {
    token: String,
    refresh_at: Instant,
    expires_at: Instant,
}

/// The tokens of one pod.
#[derive(Default)]
pub struct TokenCache {
    held: BTreeMap<TokenKey, Held>,
}

impl TokenCache {
    /// The tokens `pod`'s volumes need, requesting those missing or due.
    pub async fn tokens(&mut self, client: &kube::Client, pod: &Pod) -> Tokens {
        let wanted = token_keys(pod);
        self.held.retain(|key, _| wanted.contains(key));
        let mut tokens = Tokens::new();
        for key in wanted {
            let now = Instant::now();
            if let Some(held) = self.held.get(&key)
                && now < held.refresh_at
            {
                tokens.insert(key, Ok(held.token.clone()));
                continue;
            }
            match request(client, pod, &key).await {
                Ok((token, lifetime)) => {
                    let keep = (lifetime * 4 / 5).min(MAX_KEEP);
                    self.held.insert(
                        key.clone(),
                        Held {
                            token: token.clone(),
                            refresh_at: now + keep,
                            expires_at: now + lifetime,
                        },
                    );
                    tokens.insert(key, Ok(token));
                }
                Err(why) => {
                    let still_valid = self.held.get(&key).filter(|h| now < h.expires_at);
                    match still_valid {
                        Some(held) => {
                            tracing::warn!(error = %why, "cannot refresh a service account token; keeping the old one");
                            tokens.insert(key, Ok(held.token.clone()));
                        }
                        None => {
                            tokens.insert(key, Err(why));
                        }
                    }
                }
            }
        }
        tokens
    }
}

/// Requests one token for `pod`'s service account; returns it and its lifetime.
async fn request(
    client: &kube::Client,
    pod: &Pod,
    key: &TokenKey,
) -> Result<(String, Duration), String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: if key.audience.is_empty() {
                Vec::new()
            } else {
                vec![key.audience.clone()]
            },
            expiration_seconds: Some(key.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let issued: TokenRequest = api
        .create_subresource("token", account, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("token request for serviceaccount {namespace}/{account}: {e}"))?;
    let status = issued
        .status
        .ok_or_else(|| "the token request came back without a token".to_string())?;
    let seconds = issued
        .spec
        .expiration_seconds
        .unwrap_or(key.expiration_seconds)
        .max(1);
    Ok((status.token, Duration::from_secs(seconds as u64)))
}
