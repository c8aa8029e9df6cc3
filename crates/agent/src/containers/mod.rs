//! Containers on this machine, as `strata run` and the pods of the agent both use them:
//! a directory per container ([`store`]), a monitor process per running container that
//! records its exit ([`monitor`]), and CRI-format logs ([`logfile`]).

pub mod exec;
pub mod logfile;
pub mod monitor;
pub mod store;

pub use monitor::MonitorCommand;
pub use store::{ContainerError, Entry, ExitRecord, ImageUse, Meta, Store};
