//! The runc-compatible command line: `strata oci <command>` or `strata-runc <command>`.
//!
//! Flags follow runc's so that podman (`--runtime`), containerd and conmon can drive
//! Strata unchanged. Errors go to stderr and, when `--log` is given, to the log file in
//! the chosen `--log-format` (callers such as conmon read the JSON form).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use strata_runtime::{
    ContainerConfig, ContainerId, CreateOptions, ExecOptions, Runtime, Status, parse_signal,
    wait_for_exit,
};

use crate::output;

/// runc's default state root is /run/runc; ours sits beside it.
const DEFAULT_ROOT: &str = "/run/strata-runc";

/// Log formats of `--log-format`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`level`, `msg`, `time`).
    Json,
}

/// An OCI runtime with runc's command line.
#[derive(Debug, Parser)]
#[command(
    name = "strata-runc",
    version,
    about = "Strata's runc-compatible OCI runtime"
)]
pub struct OciCli {
    /// Directory for container state (use a tmpfs: state must not outlive a reboot).
    #[arg(long, global = true, default_value = DEFAULT_ROOT, env = "STRATA_RUNC_ROOT")]
    pub root: PathBuf,
    /// Write diagnostics to this file instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of `--log`: text or json.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Enable debug diagnostics.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility; cgroups are managed through cgroupfs.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility (`true`, `false` or `auto`).
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub command: OciCommand,
}

/// runc's commands.
#[derive(Debug, Subcommand)]
pub enum OciCommand {
    /// Create a container from a bundle; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container's process.
    Start(IdArg),
    /// Create and start a container (and wait for it unless --detach).
    Run(RunArgs),
    /// Print the container's state as JSON.
    State(IdArg),
    /// Send a signal (default SIGTERM) to the container's process.
    Kill(KillArgs),
    /// Delete a container and everything it holds.
    Delete(DeleteArgs),
    /// Run a further process in a running container.
    Exec(Box<ExecArgs>),
    /// List the processes of a container.
    Ps(PsArgs),
    /// List containers.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Freeze every process of a container.
    Pause(IdArg),
    /// Thaw a paused container.
    Resume(IdArg),
    /// Print cgroup statistics (with --stats once, else every --interval).
    Events(EventsArgs),
    /// Write a default config.json into the current (or --bundle) directory.
    Spec(SpecArgs),
    /// Print the features this runtime supports, as JSON.
    Features,
}

/// A single container ID.
#[derive(Debug, Args)]
pub struct IdArg {
    /// The container ID.
    pub id: String,
}

/// `create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// AF_UNIX socket that receives the terminal's master fd.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Write the container process's PID to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for ramfs roots).
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility (no session keyring is created).
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra file descriptors (from 3) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// The container ID.
    pub id: String,
}

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container runs instead of waiting for it.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits.
    #[arg(long)]
    pub keep: bool,
}

/// `kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Send the signal to every process of the container.
    #[arg(short, long)]
    pub all: bool,
    /// The container ID.
    pub id: String,
    /// Signal name or number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

/// `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill the container first if it is running.
    #[arg(short, long)]
    pub force: bool,
    /// The container ID.
    pub id: String,
}

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// AF_UNIX socket that receives the terminal's master fd.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variables.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// UID[:GID].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Supplementary groups.
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// A process.json describing the process.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's PID here.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility.
    #[arg(long)]
    pub process_label: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Accepted for runc compatibility.
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Accepted for runc compatibility.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Allow exec in a paused container.
    #[arg(long)]
    pub ignore_paused: bool,
    /// The container ID.
    pub id: String,
    /// The command and its arguments (unless --process).
    #[arg(trailing_var_arg = true)]
    pub command: Vec<String>,
}

/// `ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// `table` or `json`.
    #[arg(short, long, default_value = "table")]
    pub format: String,
    /// The container ID.
    pub id: String,
    /// Options for ps(1) (table format only; ignored).
    #[arg(trailing_var_arg = true)]
    pub ps_args: Vec<String>,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// `table` or `json`.
    #[arg(short, long, default_value = "table")]
    pub format: String,
    /// Print only IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print statistics once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Seconds between reports.
    #[arg(long, default_value_t = 5)]
    pub interval: u64,
    /// The container ID.
    pub id: String,
}

/// `spec`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Directory to write config.json into.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
}

/// Runs one runc-style command and turns errors into runc's exit behaviour; returns
/// the process exit code.
pub fn main(cli: OciCli) -> u8 {
    let filter = if cli.debug {
        "debug"
    } else {
        output::DEFAULT_FILTER
    };
    output::init_logging(Some(filter), cli.log.as_deref(), cli.log_format);
    match execute(&cli) {
        Ok(code) => code,
        Err(err) => {
            let line = output::one_line(&err);
            if cli.log.is_some() {
                tracing::error!("{line}");
            }
            eprintln!("strata-runc: {line}");
            1
        }
    }
}

fn parse_id(id: &str) -> Result<ContainerId> {
    Ok(ContainerId::new(id)?)
}

fn execute(cli: &OciCli) -> Result<u8> {
    let open = || Runtime::open(&cli.root);
    match &cli.command {
        OciCommand::Create(args) => {
            let id = parse_id(&args.id)?;
            open()?.create(&id, &args.bundle, create_options(args))?;
        }
        OciCommand::Start(args) => open()?.start(&parse_id(&args.id)?)?,
        OciCommand::Run(args) => return run(&open()?, args),
        OciCommand::State(args) => {
            let state = open()?.state(&parse_id(&args.id)?)?;
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
        OciCommand::Kill(args) => {
            let signal = parse_signal(&args.signal)?;
            open()?.kill(&parse_id(&args.id)?, signal, args.all)?;
        }
        OciCommand::Delete(args) => {
            let runtime = open()?;
            let id = parse_id(&args.id)?;
            match runtime.delete(&id, args.force) {
                // runc: `delete --force` of a missing container succeeds.
                Err(strata_runtime::RuntimeError::NotFound(_)) if args.force => {}
                other => other?,
            }
        }
        OciCommand::Exec(args) => return exec(&open()?, args),
        OciCommand::Ps(args) => {
            let pids = open()?.pids(&parse_id(&args.id)?)?;
            if args.format == "json" {
                println!("{}", serde_json::to_string(&pids)?);
            } else {
                let rows: Vec<Vec<String>> = pids
                    .iter()
                    .map(|pid| vec![pid.to_string(), command_of(*pid)])
                    .collect();
                output::print_table(&["PID", "CMD"], &rows);
            }
        }
        OciCommand::List(args) => list(&open()?, args)?,
        OciCommand::Pause(args) => open()?.pause(&parse_id(&args.id)?)?,
        OciCommand::Resume(args) => open()?.resume(&parse_id(&args.id)?)?,
        OciCommand::Events(args) => events(&open()?, args)?,
        OciCommand::Spec(args) => {
            let path = args.bundle.join("config.json");
            if path.exists() {
                bail!("{} exists already; remove it first", path.display());
            }
            let spec = ContainerConfig::new("rootfs", vec!["sh".to_string()]).to_oci()?;
            spec.save(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        OciCommand::Features => println!("{}", features()),
    }
    Ok(0)
}

fn create_options(args: &CreateArgs) -> CreateOptions {
    CreateOptions {
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        ..Default::default()
    }
}

fn run(runtime: &Runtime, args: &RunArgs) -> Result<u8> {
    let id = parse_id(&args.create.id)?;
    let state = runtime.create(&id, &args.create.bundle, create_options(&args.create))?;
    if let Err(err) = runtime.start(&id) {
        let _ = runtime.delete(&id, true);
        return Err(err.into());
    }
    if args.detach {
        return Ok(0);
    }
    let exit = wait_for_exit(state.pid)?;
    if !args.keep {
        runtime.delete(&id, true)?;
    }
    Ok(u8::try_from(exit.code()).unwrap_or(255))
}

/// Parses `UID[:GID]`.
pub fn parse_user(text: &str) -> Result<(u32, Option<u32>)> {
    let (uid, gid) = match text.split_once(':') {
        Some((uid, gid)) => (uid, Some(gid)),
        None => (text, None),
    };
    let uid = uid
        .parse()
        .with_context(|| format!("user {text:?}: {uid:?} is not a numeric UID"))?;
    let gid = gid
        .map(|g| {
            g.parse()
                .with_context(|| format!("user {text:?}: {g:?} is not a numeric GID"))
        })
        .transpose()?;
    Ok((uid, gid))
}

/// Parses an optional `UID[:GID]` into the optional IDs `exec` takes.
pub fn parse_optional_user(text: Option<&str>) -> Result<(Option<u32>, Option<u32>)> {
    match text {
        Some(user) => {
            let (uid, gid) = parse_user(user)?;
            Ok((Some(uid), gid))
        }
        None => Ok((None, None)),
    }
}

fn exec(runtime: &Runtime, args: &ExecArgs) -> Result<u8> {
    let id = parse_id(&args.id)?;
    if args.process.is_none() && args.command.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let (uid, gid) = parse_optional_user(args.user.as_deref())?;
    let pid = runtime.exec(
        &id,
        ExecOptions {
            args: args.command.clone(),
            env: args.env.clone(),
            cwd: args.cwd.clone(),
            uid,
            gid,
            additional_gids: args.additional_gids.clone(),
            process_file: args.process.clone(),
            pid_file: args.pid_file.clone(),
            console_socket: args.console_socket.clone(),
            detach: args.detach,
            ignore_paused: args.ignore_paused,
            ..Default::default()
        },
    )?;
    if args.detach {
        return Ok(0);
    }
    let exit = wait_for_exit(pid)?;
    Ok(u8::try_from(exit.code()).unwrap_or(255))
}

fn list(runtime: &Runtime, args: &ListArgs) -> Result<()> {
    let states = runtime.list()?;
    if args.quiet {
        for state in &states {
            println!("{}", state.id);
        }
    } else if args.format == "json" {
        println!("{}", serde_json::to_string(&states)?);
    } else {
        let rows: Vec<Vec<String>> = states
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.to_string(),
                    s.bundle.display().to_string(),
                    s.created.map(|c| c.to_rfc3339()).unwrap_or_default(),
                    s.owner.clone(),
                ]
            })
            .collect();
        output::print_table(
            &["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
            &rows,
        );
    }
    Ok(())
}

fn events(runtime: &Runtime, args: &EventsArgs) -> Result<()> {
    let id = parse_id(&args.id)?;
    loop {
        let state = runtime.state(&id)?;
        if state.status == Status::Stopped {
            bail!("container {id} is not running");
        }
        let stats = runtime.stats(&id)?;
        let event = serde_json::json!({"type": "stats", "id": id.as_str(), "data": stats});
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{event}")?;
        stdout.flush()?;
        if args.stats {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(args.interval.max(1)));
    }
}

fn command_of(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": strata_runtime::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec", "relatime", "strictatime", "private", "rprivate", "shared", "rshared", "slave", "rslave"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": strata_runtime::spec::DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": false},
            "seccomp": {"enabled": true},
        },
    })
}
