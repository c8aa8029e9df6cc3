//! The `strata` binary: every Strata command, and the runc-compatible runtime entry
//! point (`strata oci …`, or this binary invoked as `strata-runc`).

mod cli;
mod containers;
mod logfile;
mod monitor;
mod oci;
mod output;
mod run;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// The name under which the binary acts as a plain OCI runtime (argv[0] dispatch).
const RUNC_NAME: &str = "strata-runc";

fn main() -> ExitCode {
    let invoked_as = std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    if invoked_as == RUNC_NAME {
        let args = oci::OciCli::parse();
        return oci::main(args);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Oci(args) => oci::main(args),
        command => {
            output::init_logging(cli.log_level.as_deref(), None, oci::LogFormat::Text);
            match run::dispatch(&cli.data_dir, command) {
                Ok(code) => ExitCode::from(code),
                Err(err) => {
                    output::print_error(&err);
                    ExitCode::from(125)
                }
            }
        }
    }
}
