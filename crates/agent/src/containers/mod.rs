//! Containers on this machine, as `strata run` and the pods of the agent both use them:
//! a directory per container ([`store`]), a monitor process per running container that
//! records its exit ([`monitor`]), CRI-format logs that rotate ([`logfile`]) and their
//! reading ([`logread`]), and exec sessions in processes of their own ([`session`]).

pub mod attach;
pub mod exec;
pub mod launcher;
pub mod logfile;
pub mod logread;
pub mod monitor;
pub mod session;
pub mod store;

pub use store::{ContainerError, Entry, ExitRecord, ImageUse, Meta, Store};

use std::ffi::OsString;

/// How to reach the `strata` binary for a data directory: a program and its leading
/// arguments (for Strata: `[/proc/self/exe, --data-dir, D]`). A monitor is its
/// `__monitor ID` command, an exec session its `__exec ID -- ARGV` command.
#[derive(Clone, Debug)]
pub struct StrataCommand {
    /// The program and its leading arguments.
    pub argv: Vec<OsString>,
}

impl StrataCommand {
    /// The running binary, for `data_dir`.
    pub fn current_exe(data_dir: &std::path::Path) -> Result<Self, ContainerError> {
        let exe = std::env::current_exe().map_err(|err| {
            ContainerError::Monitor(format!("cannot find the strata binary: {err}"))
        })?;
        Ok(Self {
            argv: vec![exe.into(), "--data-dir".into(), data_dir.into()],
        })
    }
}
