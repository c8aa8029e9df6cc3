//! Strata's Kubernetes-compatible API server (milestone 3, in progress).
//!
//! Landed so far: the secure edge. [`pki`] makes and keeps the CA and certificates and writes
//! the admin kubeconfig; [`tls`] is the HTTPS listener; [`auth`] authenticates and authorizes
//! every request in one place; [`server`] ties them together. [`services`] hands Services
//! their cluster IPs and node ports.
//!
//! How the REST handlers plug in: build an axum `Router` and hand it to [`Server::serve`].
//! Every request that reaches it has passed authentication and authorization, and carries in
//! its extensions the caller's [`auth::Identity`] and the parsed [`auth::RequestAttributes`]
//! (verb, group, version, resource, subresource, namespace, name), so handlers need not parse
//! the URL again. Node agents may update the status of (and delete) only Pods bound to them:
//! give the server a [`auth::PodNodeResolver`] backed by the store
//! ([`Server::with_pod_node_resolver`]); without one those writes are denied.
//!
//! ```no_run
//! # async fn f() -> Result<(), strata_apiserver::ServerError> {
//! use axum::{Extension, Router, routing::get};
//! use strata_apiserver::{Identity, ServerConfig, serve};
//!
//! let router = Router::new()
//!     .route("/version", get(|| async { "{}" }))
//!     .route("/api", get(|Extension(who): Extension<Identity>| async move { who.user }));
//! let config = ServerConfig::new("/var/lib/strata", "127.0.0.1:6443".parse().unwrap())
//!     .with_tls_sans(["strata.example.com"]);
//! serve(config, router, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod auth;
pub mod discovery;
pub mod document;
pub mod embedded;
mod fsutil;
pub mod kubelet;
pub mod kubernetes_service;
pub mod namespaces;
pub mod node_certs;
pub mod openapi;
pub mod pki;
pub mod rest;
pub mod server;
pub mod serviceaccounts;
pub mod services;
pub mod status;
pub mod storage;
pub mod table;
pub mod tls;

pub use auth::Identity;
pub use embedded::{EmbeddedError, EmbeddedServer};
pub use pki::{Pki, PkiError};
pub use server::{Server, ServerConfig, ServerError, serve};
pub use services::{NodePortRange, ServiceAllocator, ServiceCidr};
