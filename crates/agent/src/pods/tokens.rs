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
    /// The tokens `pod`'s volumes need at `now`, requesting those missing or due.
    pub async fn tokens(&mut self, client: &kube::Client, pod: &Pod, now: Instant) -> Tokens {
        let wanted = token_keys(pod);
        self.held.retain(|key, _| wanted.contains(key));
        let mut tokens = Tokens::new();
        for key in wanted {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::projected::token_key;
    use k8s_openapi::api::core::v1::{
        PodSpec, ProjectedVolumeSource, ServiceAccountTokenProjection, Volume, VolumeProjection,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    fn pod() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("app".into());
        pod.metadata.namespace = Some("shop".into());
        pod.metadata.uid = Some("pod-1".into());
        let source = VolumeProjection {
            service_account_token: Some(ServiceAccountTokenProjection {
                path: "token".into(),
                expiration_seconds: Some(1000),
                audience: None,
            }),
            ..Default::default()
        };
        pod.spec = Some(PodSpec {
            volumes: Some(vec![Volume {
                name: "api".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![source]),
                    default_mode: None,
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    /// A client whose API server answers each TokenRequest with `token-<n>` (or 500
    /// while `fail` is set) and records the request bodies.
    fn scripted(
        fail: Arc<Mutex<bool>>,
        bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    ) -> (kube::Client, Arc<AtomicUsize>) {
        use http_body_util::BodyExt;
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let (fail, bodies, counter) = (fail.clone(), bodies.clone(), counter.clone());
            async move {
                assert_eq!(
                    request.uri().path(),
                    "/api/v1/namespaces/shop/serviceaccounts/default/token"
                );
                let body = request.into_body().collect().await.unwrap().to_bytes();
                bodies
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let (code, answer) = if *fail.lock().unwrap() {
                    (
                        500,
                        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "down", "reason": "InternalError"}),
                    )
                } else {
                    (
                        201,
                        serde_json::json!({
                            "apiVersion": "authentication.k8s.io/v1",
                            "kind": "TokenRequest",
                            "spec": {"audiences": [], "expirationSeconds": 1000},
                            "status": {"token": format!("token-{n}"), "expirationTimestamp": "2030-01-01T00:00:00Z"},
                        }),
                    )
                };
                let response = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(
                        serde_json::to_vec(&answer).unwrap(),
                    ))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        (kube::Client::new(service, "default"), calls)
    }

    #[tokio::test]
    async fn tokens_are_bound_kept_and_refreshed_at_four_fifths_of_their_life() {
        let fail = Arc::new(Mutex::new(false));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (client, calls) = scripted(fail.clone(), bodies.clone());
        let pod = pod();
        let key = token_key(None, Some(1000));
        let mut cache = TokenCache::default();
        let start = Instant::now();
        let first = cache.tokens(&client, &pod, start).await;
        assert_eq!(first[&key], Ok("token-1".to_string()));
        let sent = bodies.lock().unwrap()[0].clone();
        assert_eq!(sent["spec"]["expirationSeconds"], 1000);
        assert_eq!(sent["spec"]["boundObjectRef"]["kind"], "Pod");
        assert_eq!(sent["spec"]["boundObjectRef"]["uid"], "pod-1");
        // Kept until 80 % of its lifetime.
        let later = cache
            .tokens(&client, &pod, start + Duration::from_secs(799))
            .await;
        assert_eq!(later[&key], Ok("token-1".to_string()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let due = cache
            .tokens(&client, &pod, start + Duration::from_secs(800))
            .await;
        assert_eq!(due[&key], Ok("token-2".to_string()));
        // A failed refresh keeps the valid token; once it expired the failure shows.
        *fail.lock().unwrap() = true;
        let kept = cache
            .tokens(&client, &pod, start + Duration::from_secs(1700))
            .await;
        assert_eq!(kept[&key], Ok("token-2".to_string()));
        let expired = cache
            .tokens(&client, &pod, start + Duration::from_secs(1801))
            .await;
        assert!(expired[&key].is_err());
    }
}
