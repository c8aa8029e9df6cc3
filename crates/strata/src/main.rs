//! The `strata` binary: every Strata command, and the runc-compatible runtime entry
//! point (`strata oci …`, or this binary invoked as `strata-runc`).

mod build;
mod cli;
mod functions;
mod images;
mod join;
mod oci;
mod output;
mod progress;
mod registry;
mod run;
mod server;
mod tty;
mod up;
mod wasm_oci;

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
        return ExitCode::from(oci::main(oci::OciCli::parse()));
    }
    let cli = Cli::parse();
    // The OCI commands install their own subscriber (runc's --log and --log-format).
    if !matches!(cli.command, Command::Oci(_)) {
        output::init_logging(cli.log_level.as_deref(), None, oci::LogFormat::Text);
    }
    match run::dispatch(&cli.data_dir, cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            output::print_error(&err);
            ExitCode::from(125)
        }
    }
}
