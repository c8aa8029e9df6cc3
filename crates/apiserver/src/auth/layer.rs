//! The tower layer that authenticates and authorizes every request, in one place.
//!
//! After it, a handler finds on the request (extensions) the caller's [`Identity`] and the
//! parsed [`RequestAttributes`]; a request that reaches a handler is allowed, including the
//! [`Condition`]s, which this layer checks itself.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Request, StatusCode, header};
use serde::Deserialize;
use tower::{Layer, Service};

use super::Identity;
use super::attributes::{RequestAttributes, parse_request};
use super::authorize::{Condition, Decision, authorize_with, forbidden_message, forbidden_subject};
use super::rbac::{Policy, RbacCache};
use super::serviceaccount::{self, SaTokens};
use super::status::{self, Details};
use super::tokens::TokenStore;
use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};

/// Paths anyone may GET without credentials (and their sub-paths, e.g. `/healthz/ping`).
pub const PUBLIC_PATHS: &[&str] = &["/healthz", "/readyz", "/livez", "/version"];

/// Largest body read to check the name of an object a node creates (Kubernetes' limit).
pub const MAX_CHECKED_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The identity of a verified TLS client certificate (CN → user, O → groups). The TLS
/// listener puts it on every request of such a connection; nothing else may.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertIdentity(pub Identity);

/// Boxed future returned by [`PodNodeResolver::pod_node`].
pub type PodNodeFuture<'a> = Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;

/// Boxed future returned by [`PodNodeResolver::object`].
pub type ObjectFuture<'a> = Pin<Box<dyn Future<Output = Option<serde_json::Value>> + Send + 'a>>;

/// Tells which node a Pod is bound to, so node agents can be allowed to write the status of
/// (and delete) their own Pods. The storage layer implements it by reading the Pod.
pub trait PodNodeResolver: Send + Sync + 'static {
    /// `spec.nodeName` of Pod `namespace/name`; `None` if the Pod doesn't exist or is unbound.
    fn pod_node<'a>(&'a self, namespace: &'a str, name: &'a str) -> PodNodeFuture<'a>;

    /// The stored core-group object `plural` `namespace/name`, used to check that a
    /// service account token's ServiceAccount (and bound Pod) still exist, and which
    /// service account a Pod runs as. The default knows no object, so service account
    /// tokens and node token requests are refused.
    fn object<'a>(
        &'a self,
        _plural: &'a str,
        _namespace: &'a str,
        _name: &'a str,
    ) -> ObjectFuture<'a> {
        Box::pin(async { None })
    }
}

/// What the auth layer needs: the token store and, optionally, a [`PodNodeResolver`]. Without
/// a resolver, node writes to Pods are denied.
pub struct Authenticator {
    tokens: Arc<TokenStore>,
    sa_tokens: Option<Arc<SaTokens>>,
    pod_nodes: Option<Arc<dyn PodNodeResolver>>,
    rbac: Option<Arc<RbacCache>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens)
            .field("pod_nodes", &self.pod_nodes.is_some())
            .finish()
    }
}

/// Credentials were presented but are not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid credentials")]
pub struct InvalidCredentials;

impl Authenticator {
    /// An authenticator over `tokens` with no Pod resolver.
    pub fn new(tokens: Arc<TokenStore>) -> Self {
        Authenticator {
            tokens,
            sa_tokens: None,
            pod_nodes: None,
            rbac: None,
        }
    }

    /// Authorizes users and service accounts by the RBAC policy `cache` holds; without
    /// it only `system:masters` and nodes get anything.
    #[must_use]
    pub fn with_rbac(mut self, cache: Arc<RbacCache>) -> Self {
        self.rbac = Some(cache);
        self
    }

    /// Accepts service account tokens signed by `signer` (checked against the store
    /// through the [`PodNodeResolver`]).
    #[must_use]
    pub fn with_service_account_tokens(mut self, signer: Arc<SaTokens>) -> Self {
        self.sa_tokens = Some(signer);
        self
    }

    /// Uses `resolver` for the [`Condition::PodOnNode`] check.
    #[must_use]
    pub fn with_pod_node_resolver(mut self, resolver: Arc<dyn PodNodeResolver>) -> Self {
        self.pod_nodes = Some(resolver);
        self
    }

    /// Who is calling: the client certificate's identity, else the bearer token's (a
    /// static token, or a service account JWT), else anonymous. A malformed
    /// `Authorization` header or an unknown token is an error, as in Kubernetes, even
    /// where anonymous callers are let in.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        cert: Option<&ClientCertIdentity>,
    ) -> Result<Identity, InvalidCredentials> {
        if let Some(ClientCertIdentity(identity)) = cert {
            return Ok(identity.clone().authenticated());
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(Identity::anonymous());
        };
        let value = value.to_str().map_err(|_| InvalidCredentials)?;
        let (scheme, token) = value.split_once(' ').ok_or(InvalidCredentials)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(InvalidCredentials);
        }
        if let Some(signer) = &self.sa_tokens
            && serviceaccount::looks_like_jwt(token)
        {
            return self.service_account(signer, token).await;
        }
        self.tokens
            .authenticate(token)
            .map(Identity::authenticated)
            .ok_or(InvalidCredentials)
    }

    /// The identity of a service account JWT: valid signature, audience and time, and
    /// the ServiceAccount (and the Pod it is bound to) still there with the same uids,
    /// as Kubernetes' legacy-free token authenticator checks.
    async fn service_account(
        &self,
        signer: &SaTokens,
        token: &str,
    ) -> Result<Identity, InvalidCredentials> {
        let now = chrono::Utc::now().timestamp();
        let claims = signer
            .verify(token, &[serviceaccount::ISSUER], now)
            .map_err(|_| InvalidCredentials)?;
        let resolver = self.pod_nodes.as_ref().ok_or(InvalidCredentials)?;
        let ns = claims.kubernetes.namespace.as_str();
        let uid_matches = |object: Option<serde_json::Value>, uid: &str| {
            object.is_some_and(|o| o["metadata"]["uid"].as_str() == Some(uid))
        };
        let account = &claims.kubernetes.serviceaccount;
        let found = resolver.object("serviceaccounts", ns, &account.name).await;
        if !uid_matches(found, &account.uid) {
            return Err(InvalidCredentials);
        }
        if let Some(pod) = &claims.kubernetes.pod {
            let found = resolver.object("pods", ns, &pod.name).await;
            let deleting = found
                .as_ref()
                .is_some_and(|p| p["metadata"]["deletionTimestamp"].is_string());
            if deleting || !uid_matches(found, &pod.uid) {
                return Err(InvalidCredentials);
            }
        }
        Ok(claims.identity().authenticated())
    }

    /// Authenticates and authorizes `req`. On success returns the request with [`Identity`]
    /// and [`RequestAttributes`] in its extensions; otherwise the 401/403 response to send.
    pub async fn check(&self, req: Request<Body>) -> Result<Request<Body>, Response> {
        let mut identity = self
            .authenticate(req.headers(), req.extensions().get::<ClientCertIdentity>())
            .await
            .map_err(|_| status::unauthorized())?;
        let attrs = parse_request(req.method(), req.uri().path(), req.uri().query());
        let public = is_public_path(req.uri().path());
        if identity.is_anonymous() && !public {
            return Err(status::unauthorized());
        }
        let mut req = req;
        if !public && req.headers().contains_key(super::impersonate::USER_HEADER) {
            let mut verdict = self.impersonation(&identity, req.headers(), false).await;
            if matches!(verdict, Some(Err(_))) && self.rbac.is_some() {
                // A binding written just before may not have reached the cache yet.
                verdict = self.impersonation(&identity, req.headers(), true).await;
            }
            match verdict {
                Some(Ok(acting)) => identity = acting,
                Some(Err(refused)) => {
                    tracing::debug!(user = %identity.user, reason = %refused.0, "impersonation refused");
                    return Err(status::failure(
                        StatusCode::FORBIDDEN,
                        "Forbidden",
                        &refused.0,
                        None,
                    ));
                }
                None => {}
            }
            // The handlers must not see the headers again.
            req.headers_mut().remove(super::impersonate::USER_HEADER);
            req.headers_mut().remove(super::impersonate::GROUP_HEADER);
        }
        if !public {
            let mut decision = self.decide(&identity, &attrs, false).await;
            if matches!(decision, Decision::Deny(_)) && self.rbac.is_some() {
                // A binding written just before may not have reached the cache yet.
                decision = self.decide(&identity, &attrs, true).await;
            }
            match decision {
                Decision::Allow => {}
                Decision::Deny(reason) => return Err(forbidden(&identity, &attrs, &reason)),
                Decision::AllowIf(condition) => {
                    req = self
                        .check_condition(req, &identity, &attrs, condition)
                        .await?;
                }
            }
        }
        req.extensions_mut().insert(identity);
        req.extensions_mut().insert(attrs);
        Ok(req)
    }

    /// The RBAC policy: as cached, or (`fresh`) as the store holds it now.
    async fn policy(&self, fresh: bool) -> Option<Arc<Policy>> {
        match (&self.rbac, fresh) {
            (Some(cache), false) => Some(cache.snapshot()),
            (Some(cache), true) => Some(cache.fresh_snapshot().await),
            (None, _) => None,
        }
    }

    async fn decide(
        &self,
        identity: &Identity,
        attrs: &RequestAttributes,
        fresh: bool,
    ) -> Decision {
        authorize_with(identity, attrs, self.policy(fresh).await.as_deref())
    }

    async fn impersonation(
        &self,
        identity: &Identity,
        headers: &HeaderMap,
        fresh: bool,
    ) -> Option<Result<Identity, super::impersonate::Refused>> {
        let policy = self.policy(fresh).await;
        super::impersonate::impersonated(identity, headers, policy.as_deref())
    }
    /// RBAC escalation prevention: the rules the Role in the body grants, or the rules
    /// of the role the binding in the body names, must all be the caller's already.
    async fn check_no_escalation(
        &self,
        req: Request<Body>,
        identity: &Identity,
        attrs: &RequestAttributes,
    ) -> Result<Request<Body>, Response> {
        let (RequestAttributes::Resource(r), Some(cache)) = (attrs, &self.rbac) else {
            return Err(forbidden(identity, attrs, "no RBAC policy"));
        };
        let (parts, bytes) = buffer_body(req).await?;
        // An unreadable body is the handler's to refuse, with its usual message.
        let Ok(object) = crate::rest::parse_body(&parts.headers, &bytes) else {
            return Ok(Request::from_parts(parts, Body::from(bytes)));
        };
        let policy = cache.fresh_snapshot().await;
        let namespace = r.namespace.as_deref();
        let rules: Vec<PolicyRule> = if r.resource.ends_with("bindings") {
            let Ok(role_ref) = serde_json::from_value::<RoleRef>(object["roleRef"].clone()) else {
                return Ok(Request::from_parts(parts, Body::from(bytes)));
            };
            policy.role_rules(&role_ref, namespace).to_vec()
        } else {
            serde_json::from_value(object["rules"].clone()).unwrap_or_default()
        };
        if let Some(rule) = policy.uncovered(identity, namespace, &rules) {
            let rule = serde_json::to_string(rule).unwrap_or_default();
            let named = crate::auth::ResourceAttributes {
                name: r
                    .name
                    .clone()
                    .or_else(|| object["metadata"]["name"].as_str().map(str::to_string)),
                ..r.clone()
            };
            let message = format!(
                "{} is forbidden: user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held: {rule}",
                forbidden_subject(&named),
                identity.user,
                identity.groups,
            );
            let details = Details {
                name: r.name.as_deref().unwrap_or(""),
                group: &r.api_group,
                kind: &r.resource,
            };
            return Err(status::failure(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &message,
                Some(details),
            ));
        }
        Ok(Request::from_parts(parts, Body::from(bytes)))
    }

    async fn check_condition(
        &self,
        req: Request<Body>,
        identity: &Identity,
        attrs: &RequestAttributes,
        condition: Condition,
    ) -> Result<Request<Body>, Response> {
        match condition {
            Condition::NoEscalation => self.check_no_escalation(req, identity, attrs).await,
            Condition::ObjectNameIs(wanted) => {
                let (parts, bytes) = buffer_body(req).await?;
                let name = serde_json::from_slice::<NameOnly>(&bytes)
                    .ok()
                    .and_then(|o| o.metadata)
                    .and_then(|m| m.name);
                if name.as_deref() != Some(wanted.as_str()) {
                    let reason = format!("the object must be named {wanted:?}");
                    return Err(forbidden(identity, attrs, &reason));
                }
                Ok(Request::from_parts(parts, Body::from(bytes)))
            }
            Condition::TokenForPodOnNode(node) => {
                let RequestAttributes::Resource(r) = attrs else {
                    return Err(forbidden(identity, attrs, "not a token request"));
                };
                let (parts, bytes) = buffer_body(req).await?;
                let request: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let bound = &request["spec"]["boundObjectRef"];
                let pod = match (
                    &self.pod_nodes,
                    r.namespace.as_deref(),
                    bound["name"].as_str(),
                ) {
                    (Some(resolver), Some(ns), Some(name)) if bound["kind"] == "Pod" => {
                        resolver.object("pods", ns, name).await
                    }
                    _ => None,
                };
                let allowed = pod.is_some_and(|pod| {
                    let spec = &pod["spec"];
                    spec["nodeName"].as_str() == Some(node.as_str())
                        && spec["serviceAccountName"].as_str().unwrap_or("default")
                            == r.name.as_deref().unwrap_or_default()
                });
                if !allowed {
                    let reason = "a node may only request tokens bound to pods on it that run as that service account";
                    return Err(forbidden(identity, attrs, reason));
                }
                Ok(Request::from_parts(parts, Body::from(bytes)))
            }
            Condition::PodOnNode(node) => {
                let RequestAttributes::Resource(r) = attrs else {
                    return Err(forbidden(identity, attrs, "not a pod request"));
                };
                let (Some(resolver), Some(ns), Some(name)) =
                    (&self.pod_nodes, r.namespace.as_deref(), r.name.as_deref())
                else {
                    return Err(forbidden(identity, attrs, "pod binding cannot be checked"));
                };
                match resolver.pod_node(ns, name).await {
                    Some(bound) if bound == node => Ok(req),
                    _ => Err(forbidden(
                        identity,
                        attrs,
                        "the pod is not bound to this node",
                    )),
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct NameOnly {
    metadata: Option<NameMeta>,
}

#[derive(Deserialize)]
struct NameMeta {
    name: Option<String>,
}

/// Whether `path` is served without credentials: [`PUBLIC_PATHS`] and their sub-paths. Paths
/// with `.` or `..` segments are never public, whatever a router might make of them.
pub fn is_public_path(path: &str) -> bool {
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return false;
    }
    PUBLIC_PATHS.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Reads the whole body (at most [`MAX_CHECKED_BODY_BYTES`]) so that a condition can
/// look at it; the caller puts it back with `Request::from_parts`.
async fn buffer_body(req: Request<Body>) -> Result<(http::request::Parts, bytes::Bytes), Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_CHECKED_BODY_BYTES)
        .await
        .map_err(|_| {
            status::failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the request body could not be read",
                None,
            )
        })?;
    Ok((parts, bytes))
}

fn forbidden(identity: &Identity, attrs: &RequestAttributes, reason: &str) -> Response {
    tracing::debug!(user = %identity.user, ?attrs, reason, "request forbidden");
    let message = forbidden_message(identity, attrs);
    let details = match attrs {
        RequestAttributes::Resource(r) => Some(Details {
            name: r.name.as_deref().unwrap_or(""),
            group: &r.api_group,
            kind: &r.resource,
        }),
        RequestAttributes::NonResource { .. } => None,
    };
    status::failure(StatusCode::FORBIDDEN, "Forbidden", &message, details)
}

/// Tower layer applying an [`Authenticator`] to every request.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer using `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        AuthLayer { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around an inner service (typically an axum `Router`).
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> Service<Request<Body>> for AuthService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone is not ready; keep the ready one for this call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            match auth.check(req).await {
                Ok(req) => inner.call(req).await,
                Err(response) => Ok(response),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> (tempfile::TempDir, Authenticator, String) {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Arc::new(TokenStore::load_or_init(dir.path()).unwrap());
        let admin = tokens.admin_token().unwrap();
        (dir, Authenticator::new(tokens), admin)
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn public_paths() {
        assert!(is_public_path("/healthz"));
        assert!(is_public_path("/livez/ping"));
        assert!(is_public_path("/version"));
        assert!(!is_public_path("/versions"));
        assert!(!is_public_path("/api"));
        assert!(!is_public_path("/healthz/../api"));
    }

    #[tokio::test]
    async fn authentication_order() {
        let (_dir, auth, admin) = authenticator();
        let node = ClientCertIdentity(Identity::node("n1"));
        let id = auth
            .authenticate(&headers("Bearer wrong"), Some(&node))
            .await
            .unwrap();
        assert_eq!(id.user, "system:node:n1");
        assert!(id.in_group("system:authenticated"));
        let id = auth
            .authenticate(&headers(&format!("bearer {admin}")), None)
            .await
            .unwrap();
        assert!(id.in_group("system:masters"));
        assert_eq!(
            auth.authenticate(&headers("Bearer wrong"), None).await,
            Err(InvalidCredentials)
        );
        assert_eq!(
            auth.authenticate(&headers("Basic YTpi"), None).await,
            Err(InvalidCredentials)
        );
        assert_eq!(
            auth.authenticate(&HeaderMap::new(), None).await,
            Ok(Identity::anonymous())
        );
    }

    struct OnePod;
    impl PodNodeResolver for OnePod {
        fn pod_node<'a>(&'a self, _ns: &'a str, name: &'a str) -> PodNodeFuture<'a> {
            Box::pin(async move { (name == "mine").then(|| "n1".to_string()) })
        }
    }

    fn node_request(method: http::Method, uri: &str, body: &str) -> Request<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_string()))
            .unwrap();
        req.extensions_mut()
            .insert(ClientCertIdentity(Identity::node("n1")));
        req
    }

    #[tokio::test]
    async fn conditions_are_checked() {
        let (_dir, auth, _) = authenticator();
        let auth = auth.with_pod_node_resolver(Arc::new(OnePod));
        let ok = auth
            .check(node_request(
                http::Method::PATCH,
                "/api/v1/namespaces/ns/pods/mine/status",
                "{}",
            ))
            .await;
        assert!(ok.is_ok());
        let err = auth
            .check(node_request(
                http::Method::PATCH,
                "/api/v1/namespaces/ns/pods/other/status",
                "{}",
            ))
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);

        let req = auth
            .check(node_request(
                http::Method::POST,
                "/api/v1/nodes",
                r#"{"metadata":{"name":"n1"}}"#,
            ))
            .await
            .unwrap();
        let body = axum::body::to_bytes(req.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], br#"{"metadata":{"name":"n1"}}"#);
        let err = auth
            .check(node_request(
                http::Method::POST,
                "/api/v1/nodes",
                r#"{"metadata":{"name":"n2"}}"#,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn without_resolver_pod_writes_are_denied() {
        let (_dir, auth, _) = authenticator();
        let err = auth
            .check(node_request(
                http::Method::PATCH,
                "/api/v1/namespaces/ns/pods/mine/status",
                "{}",
            ))
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
    }

    /// A store with ServiceAccount `ns/default` (uid `sa-1`) and Pod `ns/mine` (uid
    /// `pod-1`, on node n1, running as `default`).
    struct Objects;
    impl PodNodeResolver for Objects {
        fn pod_node<'a>(&'a self, _ns: &'a str, name: &'a str) -> PodNodeFuture<'a> {
            Box::pin(async move { (name == "mine").then(|| "n1".to_string()) })
        }
        fn object<'a>(&'a self, plural: &'a str, _ns: &'a str, name: &'a str) -> ObjectFuture<'a> {
            Box::pin(async move {
                match (plural, name) {
                    ("serviceaccounts", "default") => {
                        Some(serde_json::json!({"metadata": {"uid": "sa-1"}}))
                    }
                    ("pods", "mine") => Some(serde_json::json!({
                        "metadata": {"uid": "pod-1"},
                        "spec": {"nodeName": "n1"},
                    })),
                    _ => None,
                }
            })
        }
    }

    #[tokio::test]
    async fn nodes_request_tokens_only_for_their_pods_service_accounts() {
        let (_dir, auth, _) = authenticator();
        let auth = auth.with_pod_node_resolver(Arc::new(Objects));
        let request = |account: &str, pod: &str| {
            node_request(
                http::Method::POST,
                &format!("/api/v1/namespaces/ns/serviceaccounts/{account}/token"),
                &format!(r#"{{"spec":{{"boundObjectRef":{{"kind":"Pod","name":"{pod}"}}}}}}"#),
            )
        };
        assert!(auth.check(request("default", "mine")).await.is_ok());
        for (account, pod) in [("default", "other"), ("robot", "mine")] {
            let err = auth.check(request(account, pod)).await.unwrap_err();
            assert_eq!(err.status(), StatusCode::FORBIDDEN);
        }
        let unbound = node_request(
            http::Method::POST,
            "/api/v1/namespaces/ns/serviceaccounts/default/token",
            "{}",
        );
        let err = auth.check(unbound).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn service_account_tokens_hold_while_their_objects_exist() {
        use crate::auth::serviceaccount::{Claims, ISSUER, KubernetesClaims, ObjectClaim};
        let (dir, auth, _) = authenticator();
        let signer = Arc::new(SaTokens::load_or_create(dir.path()).unwrap());
        let auth = auth
            .with_pod_node_resolver(Arc::new(Objects))
            .with_service_account_tokens(signer.clone());
        let now = chrono::Utc::now().timestamp();
        let token_at = |issued: i64, sa_uid: &str, pod: Option<(&str, &str)>| {
            let claims = Claims {
                iss: ISSUER.into(),
                sub: "system:serviceaccount:ns:default".into(),
                aud: vec![ISSUER.into()],
                exp: issued + 600,
                iat: issued,
                nbf: issued,
                jti: "j".into(),
                kubernetes: KubernetesClaims {
                    namespace: "ns".into(),
                    serviceaccount: ObjectClaim {
                        name: "default".into(),
                        uid: sa_uid.into(),
                    },
                    pod: pod.map(|(name, uid)| ObjectClaim {
                        name: name.into(),
                        uid: uid.into(),
                    }),
                },
            };
            headers(&format!("Bearer {}", signer.issue(&claims).unwrap()))
        };
        let token = |sa_uid: &str, pod: Option<(&str, &str)>| token_at(now, sa_uid, pod);
        let who = auth.authenticate(&token("sa-1", None), None).await.unwrap();
        assert_eq!(who.user, "system:serviceaccount:ns:default");
        assert!(who.in_group("system:serviceaccounts:ns"));
        assert!(who.in_group("system:authenticated"));
        let bound = token("sa-1", Some(("mine", "pod-1")));
        assert!(auth.authenticate(&bound, None).await.is_ok());
        // Expired, a recreated ServiceAccount, or a pod that is gone or was recreated:
        // refused.
        for stale in [
            token_at(now - 3600, "sa-1", None),
            token("sa-0", None),
            token("sa-1", Some(("gone", "pod-1"))),
            token("sa-1", Some(("mine", "pod-0"))),
        ] {
            assert_eq!(
                auth.authenticate(&stale, None).await,
                Err(InvalidCredentials)
            );
        }
    }
}
