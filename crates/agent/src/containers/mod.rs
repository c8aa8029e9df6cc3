//! Containers on this machine, as `strata run` and the pods of the agent both use them:
//! a directory per container ([`store`]), a monitor process per running container that
//! records its exit ([`monitor`]), CRI-format logs that rotate ([`logfile`]) and their
//! reading ([`logread`]), and exec sessions in processes of their own ([`session`]).

pub mod logfile;
pub mod logread;
pub mod monitor;
pub mod session;
pub mod store;

pub use monitor::MonitorCommand;
pub use session::SessionCommand;
pub use store::{ContainerError, Entry, ExitRecord, ImageUse, Meta, Store};
