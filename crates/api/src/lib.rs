//! Strata's API types: the Kubernetes resources Strata serves, with their validation
//! and defaulting as pure functions (no IO). The API server and every client crate
//! build on it; the object types themselves are k8s-openapi's.

pub mod field;
pub mod names;
pub mod resources;

pub use field::{ErrorType, FieldError};
pub use resources::{RESOURCES, Resource, Subresource};
