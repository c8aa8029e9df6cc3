//! `strata image build`: reads the Containerfile and context, and runs each RUN step as
//! a short-lived container of our own runtime (the image crate drives the steps).

use std::cell::Cell;
use std::path::Path;

use anyhow::{Context, Result, bail};
use strata_image::build::{BuildOptions, RunProcess, StepRunner, build};
use strata_image::{ImageStore, Reference};
use strata_runtime::{ContainerConfig, CreateOptions, NetworkMode, wait_for_exit};

use crate::cli::BuildArgs;
use strata_agent::containers::{Meta, Store};

/// Runs RUN steps as containers named `build-<pid>-<n>`, removed when they exit.
struct ContainerSteps<'a> {
    containers: &'a Store,
    network: NetworkMode,
    counter: Cell<u32>,
}

impl ContainerSteps<'_> {
    fn run_step(&self, rootfs: &Path, process: &RunProcess) -> Result<i32> {
        let n = self.counter.get();
        self.counter.set(n + 1);
        let id = format!("build-{}-{n}", std::process::id());
        let mut config = ContainerConfig::new(rootfs.to_path_buf(), process.args.clone());
        config.env = process.env.clone();
        config.cwd = process.cwd.clone();
        config.uid = process.uid;
        config.gid = process.gid;
        config.additional_gids = process.additional_gids.clone();
        config.network = self.network;
        config.cgroups_path = format!("/strata/{id}").into();
        let spec = config.to_oci().context("cannot build the OCI spec")?;
        let meta = Meta {
            id: id.clone(),
            command: process.args.clone(),
            rootfs: rootfs.to_path_buf(),
            image: None,
            created: chrono::Utc::now(),
            auto_remove: true,
            memory_limit: None,
            labels: Default::default(),
            log_rotation: None,
            stdio: Default::default(),
        };
        let id = self
            .containers
            .prepare(&id, |_| Ok::<_, anyhow::Error>((meta, spec)))?;
        let result = (|| -> Result<i32> {
            let mut options = CreateOptions::default();
            let null = std::fs::File::open("/dev/null").context("cannot open /dev/null")?;
            options.stdio.stdin = Some(null.into());
            let state =
                self.containers
                    .runtime()
                    .create(&id, &self.containers.dir(&id), options)?;
            self.containers.runtime().start(&id)?;
            Ok(wait_for_exit(state.pid)?.code())
        })();
        let removed = self.containers.remove(&id, true);
        let code = result?;
        removed?;
        Ok(code)
    }
}

impl StepRunner for ContainerSteps<'_> {
    fn run(&self, rootfs: &Path, process: &RunProcess) -> Result<(), String> {
        match self.run_step(rootfs, process) {
            Ok(0) => Ok(()),
            Ok(code) => Err(format!(
                "{} exited with code {code}",
                process.args.join(" ")
            )),
            Err(err) => Err(crate::output::one_line(&err)),
        }
    }
}

/// Runs `strata image build`.
pub fn run(data_dir: &Path, images: &ImageStore, args: &BuildArgs) -> Result<u8> {
    let file = args.file.clone().unwrap_or_else(|| {
        let containerfile = args.context.join("Containerfile");
        if containerfile.exists() {
            containerfile
        } else {
            args.context.join("Dockerfile")
        }
    });
    let containerfile = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let tags = args
        .tag
        .iter()
        .map(|t| t.parse::<Reference>().with_context(|| format!("-t {t}")))
        .collect::<Result<Vec<_>>>()?;
    let mut build_args = std::collections::BTreeMap::new();
    for arg in &args.build_arg {
        match arg.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => match std::env::var(arg) {
                Ok(v) => build_args.insert(arg.clone(), v),
                Err(_) => bail!("--build-arg {arg}: no value given and none in the environment"),
            },
        };
    }
    let options = BuildOptions {
        context: args.context.clone(),
        containerfile,
        tags,
        build_args,
        no_cache: args.no_cache,
    };
    let containers = Store::open(data_dir)?;
    let runner = ContainerSteps {
        containers: &containers,
        network: if args.network == "none" {
            NetworkMode::None
        } else {
            NetworkMode::Host
        },
        counter: Cell::new(0),
    };
    let quiet = args.quiet;
    let mut progress = |line: &str| {
        if !quiet {
            println!("{line}");
        }
    };
    let outcome = build(images, &options, &runner, &mut progress)
        .with_context(|| format!("build of {} failed", file.display()))?;
    if !quiet {
        for tag in &outcome.image.references {
            println!("Successfully tagged {tag}");
        }
    }
    println!("{}", outcome.image.id());
    Ok(0)
}
