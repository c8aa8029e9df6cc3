//! Docker-like commands for people: `strata run`, `ps`, `logs`, `stop`, `rm`, `exec`,
//! `stats`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{SigSet, Signal};
use strata_runtime::console::ConsoleSocket;
use strata_runtime::{
    BindMount, Capability, ContainerConfig, ContainerId, CreateOptions, ExecOptions, NetworkMode,
    ResourceLimits, wait_for_exit,
};

use crate::cli::{
    Command, ExecArgs, ImageCommand, LogsArgs, PsArgs, RmArgs, RunArgs, StatsArgs, StopArgs,
};
use crate::oci::parse_user;
use crate::output;
use strata_agent::containers::StrataCommand;
use strata_agent::containers::logfile::{Stream, log_files, parse_record};
use strata_agent::containers::monitor;
use strata_agent::containers::session;
use strata_agent::containers::{Entry, ImageUse, Meta, Store};
use strata_image::containerfile::set_env;
use strata_image::users;
use strata_image::{Image, ImageConfig, ImageError, ImageStore, Reference};

/// Runs a command; returns the process exit code.
pub fn dispatch(data_dir: &Path, command: Command) -> Result<u8> {
    // OCI commands keep their state under runc's --root: only the others open the data dir.
    let store = || Store::open(data_dir);
    match command {
        Command::Run(args) => run(&store()?, data_dir, *args),
        Command::Ps(args) => ps(&store()?, &args).map(|()| 0),
        Command::Logs(args) => logs(&store()?, &args).map(|()| 0),
        Command::Stop(args) => stop(&store()?, &args).map(|()| 0),
        Command::Rm(args) => rm(&store()?, &args).map(|()| 0),
        Command::Exec(args) => exec(&store()?, args),
        Command::Stats(args) => stats(&store()?, &args).map(|()| 0),
        Command::Image(command) => crate::images::dispatch(data_dir, command),
        Command::Images(args) => crate::images::dispatch(data_dir, ImageCommand::Ls(args)),
        Command::Rmi(args) => crate::images::dispatch(data_dir, ImageCommand::Rm(args)),
        Command::Pull(args) => crate::registry::pull(data_dir, &args),
        Command::Push(args) => crate::registry::push(data_dir, &args),
        Command::Login(args) => crate::registry::login(data_dir, &args),
        Command::Logout(args) => crate::registry::logout(data_dir, &args),
        Command::Monitor(args) => Ok(monitor::run(&store()?, &ContainerId::new(args.container)?)?),
        Command::Monitors => Ok(strata_agent::containers::launcher::serve(&store()?)?),
        Command::Session(args) => Ok(exec_session(data_dir, args)),
        Command::Oci(args) => Ok(crate::oci::main(args)),
        Command::Server(args) => crate::server::run(data_dir, &args),
        Command::Up(args) => crate::up::run(data_dir, &args),
        Command::Kubeconfig => crate::server::kubeconfig(data_dir),
        Command::Agent(args) => crate::join::run(data_dir, &args),
        Command::Fn(command) => crate::functions::dispatch(data_dir, command),
        Command::Token(crate::cli::TokenCommand::Create(args)) => {
            crate::join::create_token(data_dir, &args)
        }
    }
}

/// Parses `64M`, `1g`, `512k`, `1048576`.
pub fn parse_bytes(text: &str) -> Result<i64> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (digits, multiplier) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    let value: f64 = digits
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .with_context(|| format!("{text:?} is not a size like 64M, 1G or 1048576"))?;
    Ok((value * multiplier as f64) as i64)
}

fn parse_volume(spec: &str) -> Result<BindMount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, read_only) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => bail!("volume {spec:?} is not HOST:CONTAINER[:ro]"),
    };
    let source = PathBuf::from(source);
    if !source.is_absolute() || !Path::new(destination).is_absolute() {
        bail!("volume {spec:?}: both paths must be absolute");
    }
    if !source.exists() {
        bail!(
            "volume {spec:?}: host path {} does not exist",
            source.display()
        );
    }
    Ok(BindMount {
        source,
        destination: PathBuf::from(destination),
        read_only,
    })
}

fn parse_capability(name: &str) -> Result<Capability> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .map_err(|_| anyhow::anyhow!("{name:?} is not a capability name"))
}

fn random_id() -> String {
    let mut bytes = [0u8; 6];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = urandom.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a container's root file system comes from, and the image defaults that go
/// with it.
enum Source {
    /// `--rootfs DIR`: the directory as it is; every positional argument is the command.
    Directory(PathBuf),
    /// An image: its name as given, the resolved image, and the store holding it.
    Image(String, Box<Image>, ImageStore),
}

fn container_config(
    args: &RunArgs,
    id: &str,
    rootfs: PathBuf,
    command: Vec<String>,
    image: Option<&ImageConfig>,
) -> Result<ContainerConfig> {
    let defaults = image.map(|i| &i.config);
    if command.is_empty() {
        bail!("no command given and the image defines neither Entrypoint nor Cmd");
    }
    let mut config = ContainerConfig::new(rootfs, command);
    let mut env: Vec<String> = defaults.map(|d| d.env.clone()).unwrap_or_default();
    for kv in &args.env {
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), std::env::var(kv).unwrap_or_default()),
        };
        set_env(&mut env, &key, &value);
    }
    if let Some(dir) = &args.workdir {
        if !dir.starts_with('/') {
            bail!("--workdir {dir:?} must be an absolute path");
        }
        config.cwd = dir.clone();
    } else if let Some(dir) = defaults
        .and_then(|d| d.working_dir.as_ref())
        .filter(|d| !d.is_empty())
    {
        config.cwd = dir.clone();
    }
    let user = args.user.clone().or_else(|| {
        defaults
            .and_then(|d| d.user.clone())
            .filter(|u| !u.is_empty())
    });
    let mut home = None;
    if let Some(user) = &user {
        let resolved = match parse_user(user) {
            Ok((uid, gid)) if image.is_none() => users::ResolvedUser {
                uid,
                gid: gid.unwrap_or(0),
                additional_gids: Vec::new(),
                home: None,
            },
            _ => users::resolve(user, &config.rootfs)?,
        };
        config.uid = resolved.uid;
        config.gid = resolved.gid;
        config.additional_gids = resolved.additional_gids;
        home = resolved.home;
    }
    if image.is_some() && !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home.unwrap_or_else(|| {
            if config.uid == 0 {
                "/root".into()
            } else {
                "/".into()
            }
        });
        set_env(&mut env, "HOME", &home);
    }
    config.env = env;
    config
        .additional_gids
        .extend(args.group_add.iter().copied());
    config.hostname = args.hostname.clone();
    config.read_only_rootfs = args.read_only;
    config.terminal = args.tty;
    config.oom_score_adj = args.oom_score_adj;
    config.network = if args.network == "host" {
        NetworkMode::Host
    } else {
        NetworkMode::None
    };
    config.bind_mounts = args
        .volume
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<_>>()?;
    if let Some(cpus) = args.cpus
        && !(cpus > 0.0 && cpus.is_finite())
    {
        bail!("--cpus {cpus} must be a positive number of cores");
    }
    if let Some(pids) = args.pids_limit
        && pids < 1
    {
        bail!("--pids-limit {pids} must be at least 1");
    }
    config.limits = ResourceLimits {
        memory_bytes: args.memory.as_deref().map(parse_bytes).transpose()?,
        cpus: args.cpus,
        cpu_shares: args.cpu_shares,
        cpuset_cpus: args.cpuset_cpus.clone(),
        pids: args.pids_limit,
    };
    config.cgroups_path = PathBuf::from(format!("/strata/{id}"));
    config.cap_add = args
        .cap_add
        .iter()
        .map(|c| parse_capability(c))
        .collect::<Result<_>>()?;
    config.cap_drop = if args.cap_drop.iter().any(|c| c.eq_ignore_ascii_case("all")) {
        strata_runtime::spec::DEFAULT_CAPABILITIES.to_vec()
    } else {
        args.cap_drop
            .iter()
            .map(|c| parse_capability(c))
            .collect::<Result<_>>()?
    };
    for opt in &args.security_opt {
        match opt.as_str() {
            "seccomp=unconfined" | "seccomp:unconfined" => config.seccomp_unconfined = true,
            "no-new-privileges" | "no-new-privileges=true" => {}
            other => bail!("--security-opt {other:?} is not supported (seccomp=unconfined is)"),
        }
    }
    Ok(config)
}

fn run(store: &Store, data_dir: &Path, args: RunArgs) -> Result<u8> {
    let id = match &args.name {
        Some(name) => ContainerId::new(name.clone())?.to_string(),
        None => random_id(),
    };
    if args.detach && (args.tty || args.interactive) {
        bail!("-t and -i need the foreground; drop -d (detached containers log to `strata logs`)");
    }
    let (source, rest) = match &args.rootfs {
        Some(dir) => {
            let rootfs = std::fs::canonicalize(dir)
                .with_context(|| format!("rootfs {} does not exist", dir.display()))?;
            if !rootfs.is_dir() {
                bail!("rootfs {} is not a directory", rootfs.display());
            }
            if args.entrypoint.is_some() {
                bail!("--entrypoint applies to images; with --rootfs give the whole command");
            }
            (Source::Directory(rootfs), args.args.clone())
        }
        None => {
            let (name, rest) = args
                .args
                .split_first()
                .context("give an image to run (or --rootfs DIR and a command)")?;
            let images = crate::images::open(data_dir)?;
            let image = match images.resolve(name) {
                Ok(image) if args.pull != "always" => image,
                Err(ImageError::NotFound(_)) | Ok(_) if args.pull != "never" => {
                    // Only a reference can be pulled; an unknown ID stays not found.
                    let reference: Reference = name
                        .parse()
                        .map_err(|_| ImageError::NotFound(name.clone()))
                        .with_context(|| format!("cannot run {name}"))?;
                    crate::registry::pull_for_run(data_dir, &reference, &args.registry)
                        .with_context(|| format!("cannot run {name}: image \"{name}\" not found locally, and pulling it failed"))?;
                    images
                        .resolve(name)
                        .with_context(|| format!("cannot run {name}"))?
                }
                other => other.with_context(|| format!("cannot run {name}"))?,
            };
            (
                Source::Image(name.clone(), Box::new(image), images),
                rest.to_vec(),
            )
        }
    };
    let id = store.prepare(&id, |dir| {
        let (rootfs, command, image_config, image_use) = match &source {
            Source::Directory(rootfs) => (rootfs.clone(), rest.clone(), None, None),
            Source::Image(name, image, images) => {
                let (rootfs, _) = strata_image::rootfs::prepare_rootfs(images, image, dir)
                    .with_context(|| format!("cannot prepare the root file system of {name}"))?;
                let image_use = ImageUse {
                    name: name.clone(),
                    id: image.id().clone(),
                    digest: image.digest().clone(),
                };
                let command = match &args.entrypoint {
                    // Docker: a new entrypoint drops the image's Cmd too.
                    Some(entrypoint) => entrypoint
                        .split_whitespace()
                        .map(str::to_string)
                        .chain(rest.iter().cloned())
                        .collect(),
                    None => image.config.command_line(&rest),
                };
                (rootfs, command, Some(&image.config), Some(image_use))
            }
        };
        let config = container_config(&args, &id, rootfs, command, image_config)?;
        let spec = config.to_oci().context("cannot build the OCI spec")?;
        let meta = Meta {
            id: id.clone(),
            command: config.args.clone(),
            rootfs: config.rootfs.clone(),
            image: image_use,
            created: chrono::Utc::now(),
            auto_remove: args.rm,
            memory_limit: config.limits.memory_bytes,
            labels: Default::default(),
            log_rotation: None,
            stdio: Default::default(),
        };
        Ok::<_, anyhow::Error>((meta, spec))
    })?;
    if args.detach {
        return run_detached(store, &id);
    }
    run_foreground(store, &id, args.tty, args.interactive)
}

fn run_detached(store: &Store, id: &ContainerId) -> Result<u8> {
    monitor::spawn(store, id, &StrataCommand::current_exe(store.data_dir())?)?;
    println!("{id}");
    Ok(0)
}

fn run_foreground(store: &Store, id: &ContainerId, tty: bool, interactive: bool) -> Result<u8> {
    let console = if tty {
        Some(ConsoleSocket::bind(&store.dir(id).join("console.sock"))?)
    } else {
        None
    };
    let mut options = CreateOptions {
        console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
        ..CreateOptions::default()
    };
    if !interactive {
        // Like Docker: without -i the container's stdin is empty.
        let null = std::fs::File::open("/dev/null").context("cannot open /dev/null")?;
        options.stdio.stdin = Some(null.into());
    }
    let created = store
        .runtime()
        .create(id, &store.dir(id), options)
        .map_err(anyhow::Error::from)
        .and_then(|state| {
            let master = console
                .as_ref()
                .map(ConsoleSocket::receive_master)
                .transpose()?;
            Ok((state, master))
        });
    let (state, master) = match created {
        Ok(created) => created,
        Err(err) => {
            let _ = store.remove(id, true);
            return Err(err);
        }
    };
    drop(console);
    let raw_mode = master.as_ref().map(|_| crate::tty::RawMode::enter());
    // Block the forwarded signals before any thread starts: a signal goes to a thread
    // that does not block it, and only the forwarding thread should get them. (Not
    // before `create`: the container would inherit the mask.)
    let signals = forwarded_signals(master.is_some());
    let _ = signals.thread_block();
    let mut resize_target = None;
    let output = match master {
        Some(master) => {
            crate::tty::copy_window_size(&master);
            resize_target = master.try_clone().ok();
            Some(crate::tty::relay(master, interactive).context("cannot relay the terminal")?)
        }
        None => None,
    };
    if let Err(err) = store.runtime().start(id) {
        let _ = store.remove(id, true);
        return Err(err.into());
    }
    let memory_limit = store.meta(id).ok().and_then(|m| m.memory_limit);
    let forwarder = forward_signals(signals, state.pid, resize_target);
    let exit = wait_for_exit(state.pid)?;
    drop(forwarder);
    if let Some(output) = output {
        let _ = output.join();
    }
    drop(raw_mode);
    let record = monitor::finish(store, id, exit)?;
    if record.oom_killed {
        let limit = memory_limit
            .map(|b| format!(" (memory limit {} MiB)", b >> 20))
            .unwrap_or_default();
        eprintln!("strata: container {id} was OOM-killed{limit}");
    }
    Ok(u8::try_from(record.code).unwrap_or(255))
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT, plus SIGWINCH with a terminal.
fn forwarded_signals(terminal: bool) -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(signal);
    }
    if terminal {
        set.add(Signal::SIGWINCH);
    }
    set
}

/// Forwards the (already blocked) `signals` this process receives to `pid`; SIGWINCH
/// resizes the container's terminal to ours instead.
fn forward_signals(
    signals: SigSet,
    pid: i32,
    terminal: Option<std::os::fd::OwnedFd>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while let Ok(signal) = signals.wait() {
            if signal == Signal::SIGWINCH {
                if let Some(terminal) = &terminal {
                    crate::tty::copy_window_size(terminal);
                }
                continue;
            }
            let target = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(target, signal).is_err() {
                return;
            }
        }
    })
}

fn status_text(entry: &Entry) -> String {
    let now = chrono::Utc::now();
    if let Some(exit) = &entry.exit {
        let ago = output::human_duration((now - exit.finished).num_seconds());
        let oom = if exit.oom_killed { " OOMKilled" } else { "" };
        return format!("Exited ({}){oom} {ago} ago", exit.code);
    }
    match &entry.state {
        Some(state) => {
            let since = state.created.unwrap_or(entry.meta.created);
            let up = output::human_duration((now - since).num_seconds());
            match state.status {
                strata_runtime::Status::Running => format!("Up {up}"),
                strata_runtime::Status::Paused => format!("Up {up} (Paused)"),
                other => other.to_string(),
            }
        }
        None => "Exited".to_string(),
    }
}

fn ps(store: &Store, args: &PsArgs) -> Result<()> {
    let entries: Vec<Entry> = store
        .list()?
        .into_iter()
        .filter(|e| args.all || e.is_running())
        .collect();
    if args.quiet {
        for entry in &entries {
            println!("{}", entry.meta.id);
        }
        return Ok(());
    }
    let now = chrono::Utc::now();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let mut command = e.meta.command.join(" ");
            if command.chars().count() > 30 {
                command = command.chars().take(29).collect::<String>() + "…";
            }
            let image = match &e.meta.image {
                Some(image) => image.name.clone(),
                None => e.meta.rootfs.display().to_string(),
            };
            vec![
                e.meta.id.clone(),
                image,
                command,
                format!(
                    "{} ago",
                    output::human_duration((now - e.meta.created).num_seconds())
                ),
                status_text(e),
                e.state
                    .as_ref()
                    .filter(|_| e.is_running())
                    .map(|s| s.pid.to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    output::print_table(
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PID",
        ],
        &rows,
    );
    Ok(())
}

fn logs(store: &Store, args: &LogsArgs) -> Result<()> {
    let id = ContainerId::new(args.container.clone())?;
    store.meta(&id)?;
    let path = store.log_path(&id);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if args.follow {
                bail!("container {id} has no log (it ran in the foreground)");
            }
            return Ok(());
        }
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    // Rotated files first (oldest first), then the current one.
    let rotation = store
        .meta(&id)
        .ok()
        .and_then(|m| m.log_rotation)
        .unwrap_or_default();
    let mut text = Vec::new();
    for rotated in log_files(&path, rotation) {
        if rotated != path {
            text.extend(std::fs::read(&rotated).unwrap_or_default());
        }
    }
    let before = text.len();
    file.read_to_end(&mut text)?;
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let skip = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
    for line in &lines[skip..] {
        print_record(line, args.timestamps)?;
    }
    if !args.follow {
        return Ok(());
    }
    let mut offset = (text.len() - before) as u64;
    let mut pending = Vec::new();
    loop {
        let running = store.entry(&id).map(|e| e.is_running()).unwrap_or(false);
        file.seek(SeekFrom::Start(offset))?;
        let mut fresh = Vec::new();
        file.read_to_end(&mut fresh)?;
        offset += fresh.len() as u64;
        pending.extend_from_slice(&fresh);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            print_record(&line[..line.len() - 1], args.timestamps)?;
        }
        if !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn print_record(line: &[u8], timestamps: bool) -> Result<()> {
    let Some(record) = parse_record(line) else {
        return Ok(());
    };
    let mut out: Box<dyn Write> = match record.stream {
        Stream::Stdout => Box::new(std::io::stdout().lock()),
        Stream::Stderr => Box::new(std::io::stderr().lock()),
    };
    if timestamps {
        write!(out, "{} ", record.time)?;
    }
    out.write_all(&record.content)?;
    if !record.partial {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn stop(store: &Store, args: &StopArgs) -> Result<()> {
    for name in &args.containers {
        let id = ContainerId::new(name.clone())?;
        let entry = store.entry(&id)?;
        if !entry.is_running() {
            println!("{id}");
            continue;
        }
        let runtime = store.runtime();
        runtime.kill(&id, Signal::SIGTERM, false)?;
        let deadline = Instant::now() + Duration::from_secs(args.time);
        while store.entry(&id).map(|e| e.is_running()).unwrap_or(false) {
            if Instant::now() >= deadline {
                runtime.kill(&id, Signal::SIGKILL, true)?;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The monitor (or the foreground `run`) records the exit; wait for it briefly.
        let until = Instant::now() + Duration::from_secs(5);
        while store.exit(&id).is_none() && store.dir(&id).exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("{id}");
    }
    Ok(())
}

fn rm(store: &Store, args: &RmArgs) -> Result<()> {
    let mut failed = Vec::new();
    for name in &args.containers {
        let result = ContainerId::new(name.clone())
            .map_err(anyhow::Error::from)
            .and_then(|id| {
                let entry = store.entry(&id)?;
                if entry.is_running() && !args.force {
                    bail!("container {id} is running: stop it first or use --force");
                }
                store.remove(&id, args.force)?;
                println!("{id}");
                Ok(())
            });
        if let Err(err) = result {
            failed.push(output::one_line(&err));
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

fn exec(store: &Store, args: ExecArgs) -> Result<u8> {
    let id = ContainerId::new(args.container.clone())?;
    let meta = store.meta(&id)?;
    // Unset, the user is the container's own; given, it is resolved like `run -u`.
    let user = args
        .user
        .as_deref()
        .map(|u| users::resolve(u, &meta.rootfs))
        .transpose()?;
    let pid = store.runtime().exec(
        &id,
        ExecOptions {
            args: args.command,
            env: args.env,
            cwd: args.workdir,
            uid: user.as_ref().map(|u| u.uid),
            gid: user.as_ref().map(|u| u.gid),
            additional_gids: user.map(|u| u.additional_gids).unwrap_or_default(),
            ..Default::default()
        },
    )?;
    let exit = wait_for_exit(pid)?;
    Ok(u8::try_from(exit.code()).unwrap_or(255))
}

/// `strata __exec`: the command's exit code, or [`session::SESSION_FAILED`] with the
/// reason on stderr (which the session's client sees).
fn exec_session(data_dir: &Path, args: crate::cli::SessionArgs) -> u8 {
    let request = session::ExecRequest {
        container: args.container,
        command: args.command,
        tty: args.tty,
        resize: args.resize,
    };
    let ran = Store::open(data_dir).and_then(|store| session::run(&store, &request));
    match ran {
        Ok(code) => code,
        Err(err) => {
            eprintln!(
                "strata: cannot exec in the container: {}",
                monitor::one_line(&err)
            );
            session::SESSION_FAILED
        }
    }
}

fn stats(store: &Store, args: &StatsArgs) -> Result<()> {
    let id = ContainerId::new(args.container.clone())?;
    store.meta(&id)?;
    let stats = store.runtime().stats(&id)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    let limit = if stats.memory.limit_bytes >= (1 << 62) {
        "unlimited".to_string()
    } else {
        format!("{:.1}MiB", stats.memory.limit_bytes as f64 / 1048576.0)
    };
    output::print_table(
        &["CONTAINER", "CPU TIME", "MEM USAGE / LIMIT", "PIDS"],
        &[vec![
            id.to_string(),
            format!("{:.2}s", stats.cpu.usage_total_ns as f64 / 1e9),
            format!(
                "{:.1}MiB / {limit}",
                stats.memory.usage_bytes as f64 / 1048576.0
            ),
            stats.pids.current.to_string(),
        ]],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-5M").is_err());
    }

    #[test]
    fn volumes_need_absolute_existing_paths() {
        let bind = parse_volume("/tmp:/data:ro").unwrap();
        assert!(bind.read_only);
        assert_eq!(bind.destination, PathBuf::from("/data"));
        assert!(parse_volume("relative:/data").is_err());
        assert!(parse_volume("/nonexistent-strata-path:/data").is_err());
        assert!(parse_volume("/tmp").is_err());
    }

    #[test]
    fn capability_names_accept_both_spellings() {
        assert_eq!(parse_capability("net_admin").unwrap(), Capability::NetAdmin);
        assert_eq!(
            parse_capability("CAP_SYS_ADMIN").unwrap(),
            Capability::SysAdmin
        );
        assert!(parse_capability("FLY").is_err());
    }
}
