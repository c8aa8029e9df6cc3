//! Strata's OCI runtime library.
//!
//! It runs OCI bundles (a `config.json` and a root file system) as isolated, limited
//! containers, on youki's `libcontainer`, and knows nothing of Kubernetes or of a CLI:
//! the `strata` binary wraps it as `strata run` and as the runc-compatible `strata oci`,
//! and the node agent calls it in-process.
//!
//! ```no_run
//! use strata_runtime::{ContainerConfig, ContainerId, CreateOptions, Runtime};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::open("/run/strata-example")?;
//! let bundle = std::path::Path::new("/tmp/bundle");
//! let spec = ContainerConfig::new("/tmp/bundle/rootfs", vec!["true".into()]).to_oci()?;
//! spec.save(bundle.join("config.json"))?;
//! let id = ContainerId::new("example")?;
//! let state = runtime.create(&id, bundle, CreateOptions::default())?;
//! runtime.start(&id)?;
//! let exit = strata_runtime::wait_for_exit(state.pid)?;
//! runtime.delete(&id, false)?;
//! # let _ = exit; Ok(()) }
//! ```

pub mod bundle;
pub mod console;
pub mod error;
pub mod forkserver;
pub mod id;
pub mod lifecycle;
pub mod process;
pub mod sandbox;
pub mod seccomp;
pub mod spec;
pub mod state;
mod sys;

pub use bundle::{Bundle, BundleError};
pub use error::RuntimeError;
pub use id::{ContainerId, InvalidId};
pub use lifecycle::{CreateOptions, ExecOptions, Runtime, Stdio};
pub use process::{Exit, parse_signal, wait_for_exit};
pub use sandbox::{Sandbox, SandboxError};
pub use spec::{BindMount, CPU_PERIOD_US, ContainerConfig, NetworkMode, ResourceLimits};
pub use state::{ContainerState, Status};

/// Re-exported so callers can name capabilities and signals without extra dependencies.
pub use nix::sys::signal::Signal;
pub use oci_spec::runtime::{Capability, Spec};
