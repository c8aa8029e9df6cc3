//! Strata's Kubernetes-compatible API server (milestone 3, in progress).
//!
//! Landed so far: the secure edge. The REST handlers plug in as an axum `Router` handed to
//! [`Server::serve`]; every request reaches them authenticated and authorized, with the
//! caller's [`auth::Identity`] and parsed [`auth::RequestAttributes`] in its extensions.

pub mod auth;
pub mod discovery;
mod fsutil;
pub mod gc;
pub mod namespaces;
pub mod pki;
pub mod rest;
pub mod server;
pub mod status;
pub mod storage;
pub mod table;
pub mod tls;

pub use auth::Identity;
pub use pki::{Pki, PkiError};
pub use server::{Server, ServerConfig, ServerError, serve};
