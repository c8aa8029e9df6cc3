//! `strata pull`, `push`, `login` and `logout`: the registry client of strata-image
//! on a tokio runtime, with credentials from `<data-dir>/auth.json`
//! (or `STRATA_REGISTRY_AUTH_FILE`).

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use strata_image::registry::{
    self, AuthFile, Credentials, PullOptions, PushOptions, RegistryOptions, registry_key,
};
use strata_image::{Platform, Reference};

use crate::cli::{LoginArgs, LogoutArgs, PullArgs, PushArgs, RegistryArgs};
use crate::images;
use crate::progress::{Bars, Direction};

/// Where credentials are kept.
pub(crate) fn auth_path(data_dir: &Path) -> PathBuf {
    std::env::var_os("STRATA_REGISTRY_AUTH_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.join("auth.json"))
}

/// The credentials file of `data_dir`.
pub(crate) fn auth_file(data_dir: &Path) -> Result<AuthFile> {
    Ok(AuthFile::load(auth_path(data_dir))?)
}

/// How to reach registries, from the command line.
pub(crate) fn options(args: &RegistryArgs) -> RegistryOptions {
    RegistryOptions {
        insecure: args.insecure_registry.clone(),
        extra_roots: args.ca_cert.clone(),
    }
}

/// Pulls `reference` into the image store of `data_dir`.
fn fetch(
    data_dir: &Path,
    reference: &Reference,
    registry: &RegistryArgs,
    platform: Option<&str>,
    bars: &Bars,
) -> Result<registry::PullReport> {
    let images = images::open(data_dir)?;
    let mut options = PullOptions {
        registry: options(registry),
        credentials: auth_file(data_dir)?.get(reference.registry())?,
        ..PullOptions::default()
    };
    if let Some(platform) = platform {
        options.platform = platform.parse::<Platform>()?;
    }
    crate::server::async_runtime()?
        .block_on(registry::pull(&images, reference, &options, bars))
        .with_context(|| format!("pull {reference}"))
}

/// Pulls an image `strata run` did not find locally, telling the user on stderr (the
/// container's output owns stdout).
pub fn pull_for_run(data_dir: &Path, reference: &Reference, registry: &RegistryArgs) -> Result<()> {
    eprintln!("Unable to find image '{reference}' locally; pulling it");
    fetch(
        data_dir,
        reference,
        registry,
        None,
        &Bars::new(Direction::Pull, true),
    )?;
    Ok(())
}

/// `strata pull`.
pub fn pull(data_dir: &Path, args: &PullArgs) -> Result<u8> {
    let reference: Reference = args.reference.parse()?;
    if !args.quiet {
        let what = reference
            .digest()
            .map(|d| d.to_string())
            .or_else(|| reference.tag_or_default().map(str::to_string))
            .unwrap_or_default();
        println!("{what}: Pulling from {}", reference.repository());
    }
    let bars = Bars::new(Direction::Pull, args.quiet);
    let report = fetch(
        data_dir,
        &reference,
        &args.registry,
        args.platform.as_deref(),
        &bars,
    )?;
    if !args.quiet {
        println!("Digest: {}", report.target.digest);
        let status = if report.updated {
            "Downloaded newer image"
        } else {
            "Image is up to date"
        };
        println!("Status: {status} for {reference}");
    }
    println!("{reference}");
    Ok(0)
}

/// `strata push`.
pub fn push(data_dir: &Path, args: &PushArgs) -> Result<u8> {
    let images = images::open(data_dir)?;
    let image = images.resolve(&args.image)?;
    let remote: Reference = match &args.remote {
        Some(remote) => remote.parse()?,
        None => args.image.parse().with_context(|| {
            format!(
                "{} is not a reference: name the destination (strata push IMAGE REGISTRY/REPO:TAG)",
                args.image
            )
        })?,
    };
    let options = PushOptions {
        registry: options(&args.registry),
        credentials: auth_file(data_dir)?.get(remote.registry())?,
        chunk_size: args.chunk_size,
        ..PushOptions::default()
    };
    if !args.quiet {
        println!("The push refers to repository [{}]", remote.name());
    }
    let bars = Bars::new(Direction::Push, args.quiet);
    let report = crate::server::async_runtime()?
        .block_on(registry::push(
            &images,
            &image.target,
            &remote,
            &options,
            &bars,
        ))
        .with_context(|| format!("push {remote}"))?;
    if !image.references.contains(&remote.to_string()) {
        images.tag(&remote, &report.target)?;
    }
    if !args.quiet {
        let name = remote
            .tag()
            .map(str::to_string)
            .or_else(|| remote.digest().map(|d| d.to_string()))
            .unwrap_or_else(|| "latest".to_string());
        println!(
            "{name}: digest: {} size: {}",
            report.target.digest, report.target.size
        );
    }
    Ok(0)
}

/// Reads one line from stdin after `prompt`, without echo when `secret` and stdin is
/// a terminal.
fn prompt(prompt: &str, secret: bool) -> Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved = if secret && stdin.is_terminal() {
        let saved = tcgetattr(&stdin).context("cannot read the terminal settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot turn off echo")?;
        Some(saved)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.context("cannot read standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// `strata login`.
pub fn login(data_dir: &Path, args: &LoginArgs) -> Result<u8> {
    let registry = registry_key(args.registry.as_deref().unwrap_or(registry::DOCKER_HUB));
    let username = match &args.username {
        Some(u) => u.clone(),
        None if args.password_stdin => bail!("--password-stdin needs --username"),
        None => prompt("Username: ", false)?,
    };
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from standard input")?;
        text.trim_end_matches(['\r', '\n']).to_string()
    } else if let Some(p) = &args.password {
        eprintln!(
            "WARNING! Using --password on the command line is insecure. Use --password-stdin."
        );
        p.clone()
    } else if std::io::stdin().is_terminal() {
        prompt("Password: ", true)?
    } else {
        bail!("no password given: use --password-stdin");
    };
    if username.is_empty() || password.is_empty() {
        bail!("username and password must not be empty");
    }
    let credentials = Credentials { username, password };
    crate::server::async_runtime()?
        .block_on(registry::login(
            &registry,
            &credentials,
            &options(&args.registry_args),
        ))
        .with_context(|| format!("login to {registry}"))?;
    let mut auth = auth_file(data_dir)?;
    auth.set(&registry, &credentials);
    auth.save()?;
    println!("Login Succeeded");
    Ok(0)
}

/// `strata logout`.
pub fn logout(data_dir: &Path, args: &LogoutArgs) -> Result<u8> {
    let registry = registry_key(args.registry.as_deref().unwrap_or(registry::DOCKER_HUB));
    let mut auth = auth_file(data_dir)?;
    if auth.remove(&registry) {
        auth.save()?;
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(0)
}
