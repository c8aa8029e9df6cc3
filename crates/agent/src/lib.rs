//! Strata's node agent, a kubelet: it registers its Node, keeps a Lease fresh, and runs
//! the Pods bound to it as containers on Strata's runtime and image store.
//!
//! - [`containers`]: the containers of this machine (shared with `strata run`): their
//!   directories, monitors and logs.

pub mod containers;
