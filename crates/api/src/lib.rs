//! Strata's API types: the Kubernetes resources Strata serves, with their validation
//! and defaulting as pure functions (no IO). The API server and every client crate
//! build on it; the object types themselves are k8s-openapi's, except Strata's own
//! groups (`function`).

pub mod admit;
pub mod cron;
pub mod endpointslice;
pub mod field;
pub mod fields;
pub mod function;
pub mod fuzz;
pub mod job;
pub mod kinds;
pub mod names;
pub mod patch;
pub mod protobuf;
pub mod quantity;
pub mod rbac;
pub mod resources;
pub mod selector;
pub mod serviceaccount;

pub use admit::{AdmitError, Admitted, FieldValidation, Operation, admit};
pub use field::{ErrorType, FieldError};
pub use patch::{PatchError, PatchType, apply_patch};
pub use resources::{RESOURCES, Resource, Subresource};
pub use selector::Selector;
