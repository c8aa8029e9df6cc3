//! One registry's HTTP API: choosing HTTPS or (for insecure registries) HTTP, the
//! 401 → credentials or token → retry dance, and turning error bodies into messages.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;

use super::DOCKER_HUB;
use super::auth::{Challenge, Credentials};
use super::error::RegistryError;

/// Where Docker Hub's API really lives.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) that may be reached over plain HTTP or HTTPS with an
    /// unverified certificate (Docker's `--insecure-registry`). Loopback registries
    /// (`localhost`, `127.0.0.0/8`, `::1`) are treated the same way without being
    /// listed, except that their certificates are still verified.
    pub insecure: Vec<String>,
    /// PEM files of extra CA certificates to trust besides the system's roots (for
    /// private registries with their own CA).
    pub extra_roots: Vec<PathBuf>,
}

impl RegistryOptions {
    /// True if `registry` was listed as insecure.
    pub fn is_listed_insecure(&self, registry: &str) -> bool {
        self.insecure.iter().any(|r| r == registry)
    }

    /// True if `registry` may be reached over plain HTTP: listed, or on loopback.
    pub fn allows_http(&self, registry: &str) -> bool {
        self.is_listed_insecure(registry) || is_loopback(registry)
    }
}

/// `localhost[:port]`, `127.x.y.z[:port]`, `[::1][:port]`.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host to send API requests to for a registry name from a reference.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct TokenBody {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// A connection to one registry, shared by the requests of one pull or push.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    registry: String,
    base: Url,
    credentials: Option<Credentials>,
    challenge: Mutex<Option<Challenge>>,
    /// Bearer tokens by the scope they were asked for.
    tokens: Mutex<HashMap<String, String>>,
    /// Held while a token is fetched up front.
    token_fetch: tokio::sync::Mutex<()>,
}

impl Client {
    /// Connects to `registry` (as spelt in references, e.g. `docker.io`,
    /// `127.0.0.1:5000`): pings `/v2/` over HTTPS, or over HTTP when that fails and
    /// the registry is insecure, and learns which authentication it wants.
    pub async fn connect(
        registry: &str,
        options: &RegistryOptions,
        credentials: Option<Credentials>,
    ) -> Result<Self, RegistryError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            .danger_accept_invalid_certs(options.is_listed_insecure(registry));
        for path in &options.extra_roots {
            let ca_error = |source| RegistryError::CaCert {
                path: path.clone(),
                source,
            };
            let pem = std::fs::read(path).map_err(ca_error)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ca_error(std::io::Error::other(e)))?;
            if certs.is_empty() {
                return Err(ca_error(std::io::Error::other(
                    "no certificate in the file",
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(RegistryError::HttpClient)?;
        let host = api_host(registry);
        let url = |scheme: &str| {
            Url::parse(&format!("{scheme}://{host}/")).map_err(|e| RegistryError::Protocol {
                host: registry.to_string(),
                message: format!("not a valid host: {e}"),
            })
        };
        let mut client = Self {
            http,
            registry: registry.to_string(),
            base: url("https")?,
            credentials,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            token_fetch: tokio::sync::Mutex::new(()),
        };
        match client.ping().await {
            Ok(()) => Ok(client),
            Err(https_error) if options.allows_http(registry) => {
                tracing::debug!(registry, error = %https_error, "HTTPS failed; trying HTTP");
                client.base = url("http")?;
                match client.ping().await {
                    Ok(()) => Ok(client),
                    // A TLS-only registry answers plain HTTP with 400: the HTTPS error
                    // says more.
                    Err(_) => Err(https_error),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// The registry, as spelt in references.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `GET /v2/`: 200 means no authentication, 401 tells which.
    async fn ping(&self) -> Result<(), RegistryError> {
        let url = self.url("/v2/")?;
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|source| self.unreachable(source))?;
        match response.status() {
            StatusCode::OK => Ok(()),
            StatusCode::UNAUTHORIZED => {
                *self.lock_challenge() = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|h| h.to_str().ok())
                    .and_then(Challenge::parse);
                Ok(())
            }
            _ => Err(self.refused(response).await),
        }
    }

    /// Checks the credentials given to [`Self::connect`] (what `login` does): a
    /// registry without authentication accepts anything.
    pub async fn verify_login(&self) -> Result<(), RegistryError> {
        let challenge = self.lock_challenge().clone();
        let result = match challenge {
            None => return Ok(()),
            Some(Challenge::Basic) => {
                let url = self.url("/v2/")?;
                match self.send(None, || self.http.get(url.clone())).await {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => Err(self.refused(response).await),
                    Err(err) => Err(err),
                }
            }
            Some(Challenge::Bearer { realm, service, .. }) => self
                .fetch_token(&realm, service.as_deref(), None)
                .await
                .map(drop),
        };
        result.map_err(|e| match e {
            RegistryError::AuthRequired { host } => RegistryError::LoginFailed { host },
            other => other,
        })
    }

    fn lock_challenge(&self) -> std::sync::MutexGuard<'_, Option<Challenge>> {
        // A panic while holding this lock leaves a plain value behind: keep using it.
        self.challenge.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An absolute URL on the registry for `path` (which may carry a query).
    pub fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base
            .join(path)
            .map_err(|e| self.protocol(format!("bad URL {path}: {e}")))
    }

    /// A `RegistryError::Protocol` for this registry.
    pub fn protocol(&self, message: impl Into<String>) -> RegistryError {
        RegistryError::Protocol {
            host: self.registry.clone(),
            message: message.into(),
        }
    }

    /// A transport error while sending.
    pub fn unreachable(&self, source: reqwest::Error) -> RegistryError {
        RegistryError::Unreachable {
            host: self.registry.clone(),
            source,
        }
    }

    /// A transport error while reading a body.
    pub fn interrupted(&self, source: reqwest::Error) -> RegistryError {
        RegistryError::Interrupted {
            host: self.registry.clone(),
            source,
        }
    }

    fn authorization(&self, scope: Option<&str>) -> Option<HeaderValue> {
        match &*self.lock_challenge() {
            Some(Challenge::Basic) => self.credentials.as_ref().and_then(|c| {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password));
                HeaderValue::from_str(&format!("Basic {encoded}")).ok()
            }),
            Some(Challenge::Bearer { .. }) => {
                let tokens = self.lock_tokens();
                tokens
                    .get(scope.unwrap_or_default())
                    .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
            }
            None => None,
        }
    }

    /// Sends the request `build` makes, with the authorization `scope`
    /// (`repository:NAME:pull,push`) needs. On a 401 it takes credentials or a token as
    /// the challenge says and sends once more; a second 401 is
    /// [`RegistryError::AuthRequired`]. Other statuses are returned as they are.
    pub async fn send(
        &self,
        scope: Option<&str>,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        // A registry that wants tokens gets one for the scope up front (as Docker
        // does), saving the 401 round trip per scope.
        let bearer = match &*self.lock_challenge() {
            Some(Challenge::Bearer { realm, service, .. }) => {
                Some((realm.clone(), service.clone()))
            }
            _ => None,
        };
        if let (Some((realm, service)), Some(scope)) = (bearer, scope) {
            // Concurrent blob transfers wait for the first one's token.
            let _one_fetch = self.token_fetch.lock().await;
            if !self.lock_tokens().contains_key(scope) {
                let token = self
                    .fetch_token(&realm, service.as_deref(), Some(scope))
                    .await?;
                self.lock_tokens().insert(scope.to_string(), token);
            }
        }
        let mut retried = false;
        loop {
            let mut request = build()
                .build()
                .map_err(|e| self.protocol(format!("cannot build a request: {e}")))?;
            // Credentials go to the registry only, never to another host an upload
            // Location points at.
            if self.is_registry_url(request.url())
                && let Some(auth) = self.authorization(scope)
            {
                request.headers_mut().insert(AUTHORIZATION, auth);
            }
            let response = self
                .http
                .execute(request)
                .await
                .map_err(|e| self.unreachable(e))?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|h| h.to_str().ok())
                .and_then(Challenge::parse);
            if retried {
                return Err(self.auth_required());
            }
            retried = true;
            match challenge {
                Some(Challenge::Basic) => {
                    let already_sent = matches!(*self.lock_challenge(), Some(Challenge::Basic));
                    if already_sent || self.credentials.is_none() {
                        return Err(self.auth_required());
                    }
                    *self.lock_challenge() = Some(Challenge::Basic);
                }
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope: wanted,
                }) => {
                    let token = self
                        .fetch_token(&realm, service.as_deref(), wanted.as_deref().or(scope))
                        .await?;
                    self.lock_tokens()
                        .insert(scope.unwrap_or_default().to_string(), token);
                    *self.lock_challenge() = Some(Challenge::Bearer {
                        realm,
                        service,
                        scope: wanted,
                    });
                }
                None => return Err(self.auth_required()),
            }
        }
    }

    fn is_registry_url(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    fn auth_required(&self) -> RegistryError {
        RegistryError::AuthRequired {
            host: self.registry.clone(),
        }
    }

    /// The distribution token protocol: `GET realm?service=…&scope=…`, with basic
    /// credentials when we have them (anonymous tokens otherwise).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let token_error = |message: String| RegistryError::Token {
            realm: realm.to_string(),
            message,
        };
        let mut url = Url::parse(realm).map_err(|e| token_error(format!("is not a URL: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scope.unwrap_or_default().split_whitespace() {
                query.append_pair("scope", scope);
            }
        }
        let mut request = self.http.get(url);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        match response.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(self.auth_required()),
            s => return Err(token_error(format!("answered {s}"))),
        }
        let body: TokenBody = response
            .json()
            .await
            .map_err(|e| token_error(format!("sent an unreadable answer: {e}")))?;
        body.token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_error("sent no token".to_string()))
    }

    /// Turns an unsuccessful response into an error with the registry's own message.
    pub async fn refused(&self, response: Response) -> RegistryError {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return self.auth_required();
        }
        let body = response.bytes().await.unwrap_or_default();
        let first = serde_json::from_slice::<ErrorBody>(&body)
            .ok()
            .and_then(|b| b.errors.into_iter().next());
        let (code, message) = match first {
            Some(e) if !e.message.is_empty() => (e.code, e.message),
            Some(e) if !e.code.is_empty() => {
                let message = e.code.to_lowercase().replace('_', " ");
                (e.code, message)
            }
            _ => (
                String::new(),
                format!("{} answered {status}", self.registry),
            ),
        };
        RegistryError::Refused {
            host: self.registry.clone(),
            status: status.as_u16(),
            code,
            message,
        }
    }

    /// A request builder for `method url`.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_allow_http_and_others_only_when_listed() {
        let options = RegistryOptions {
            insecure: vec!["registry.lan:5000".into()],
            extra_roots: vec![],
        };
        for loopback in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
        ] {
            assert!(options.allows_http(loopback), "{loopback}");
            assert!(!options.is_listed_insecure(loopback), "{loopback}");
        }
        assert!(options.allows_http("registry.lan:5000"));
        assert!(options.is_listed_insecure("registry.lan:5000"));
        for remote in [
            "registry.lan",
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
        ] {
            assert!(!options.allows_http(remote), "{remote}");
        }
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
    }
}
