//! `image build`: runs a Containerfile step by step into a new image, one layer per
//! RUN, COPY and ADD (and per WORKDIR that has to create its directory), with a layer
//! cache keyed on everything a step depends on: the steps before it, its text after
//! variable substitution, the build arguments it sees and the content it copies.
//!
//! RUN steps execute in a container over an overlay mount of the layers so far; what
//! they change is the overlay's upper directory, packed as the step's layer. Running
//! the container is the caller's job ([`StepRunner`]): this crate knows no runtime.
//!
//! Limits: one stage (a second FROM and `COPY --from` are refused with the line);
//! `.containerignore` is not read; `ADD` takes local files and archives, not URLs.

mod cache;
mod context;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::config::{History, ImageConfig};
use crate::containerfile::{
    self, ContainerfileError, CopySpec, Instruction, Step, apply_to_config, substitute,
};
use crate::digest::Digest;
use crate::images::{Image, ImageError, ImageStore};
use crate::import::now_rfc3339;
use crate::manifest::Descriptor;
use crate::pack::{PackError, PackMode, PackedLayer, pack, pack_with};
use crate::reference::Reference;
use crate::rootfs::{RootfsError, mount_overlay, prepare_layers, release_rootfs};
use crate::users::{self, UserError};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Containerfile does not parse.
    #[error(transparent)]
    Parse(#[from] ContainerfileError),
    /// A step cannot be carried out as written.
    #[error("line {line}: {message}")]
    Step {
        /// The step's line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A RUN step's command failed.
    #[error("line {line}: RUN failed: {message}")]
    Run {
        /// The step's line.
        line: usize,
        /// How it failed (exit code, or why it could not start).
        message: String,
    },
    /// The user a RUN step runs as is unknown.
    #[error("line {line}")]
    User {
        /// The step's line.
        line: usize,
        /// The resolution error.
        #[source]
        source: UserError,
    },
    /// Reading the context or writing build state failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Packing a layer failed.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The image store failed (base image missing, …).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Preparing a root file system for a RUN step failed.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
}

/// The process of a RUN step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunProcess {
    /// argv (shell form is already `/bin/sh -c …`).
    pub args: Vec<String>,
    /// `KEY=VALUE` environment: the image's ENV plus build arguments.
    pub env: Vec<String>,
    /// Working directory (exists in the root file system).
    pub cwd: String,
    /// UID.
    pub uid: u32,
    /// GID.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// Runs RUN steps: a container over `rootfs` running `process`, its output shown to
/// the user. Returns an error message when it cannot start or exits non-zero.
pub trait StepRunner {
    /// Runs one step to completion.
    fn run(&self, rootfs: &Path, process: &RunProcess) -> Result<(), String>;
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Containerfile's text.
    pub containerfile: String,
    /// References to tag the result with.
    pub tags: Vec<Reference>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// Ignore the layer cache.
    pub no_cache: bool,
}

/// The result of a build.
#[derive(Debug)]
pub struct BuildOutcome {
    /// The new image.
    pub image: Image,
    /// Steps executed or taken from the cache.
    pub steps: usize,
    /// Steps taken from the cache.
    pub cached: usize,
}

/// A step's layer and its diff ID; `None` for a step that changed nothing.
type Layer = Option<(Descriptor, Digest)>;

/// The image being built.
struct State {
    config: ImageConfig,
    layers: Vec<Descriptor>,
    key: Digest,
    args: BTreeMap<String, String>,
}

impl State {
    fn vars(&self) -> BTreeMap<String, String> {
        let mut vars = self.args.clone();
        for entry in &self.config.config.env {
            if let Some((k, v)) = entry.split_once('=') {
                vars.insert(k.to_string(), v.to_string());
            }
        }
        vars
    }

    fn advance(&mut self, text: &str, extra: &str) {
        let mut hasher = Sha256::new();
        hasher.update(self.key.to_string());
        hasher.update(b"\n");
        hasher.update(text);
        hasher.update(b"\n");
        hasher.update(extra);
        self.key = Digest::from_hasher(hasher);
    }

    fn push_layer(&mut self, layer: Layer, created_by: &str) {
        let empty_layer = layer.is_none();
        if let Some((descriptor, diff_id)) = layer {
            self.layers.push(descriptor);
            self.config.rootfs.diff_ids.push(diff_id);
        }
        self.config.history.push(History {
            created: Some(now_rfc3339()),
            created_by: Some(created_by.to_string()),
            comment: Some("strata build".to_string()),
            empty_layer,
        });
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_string())
    }
}

/// A build in progress.
struct Build<'a> {
    store: &'a ImageStore,
    options: &'a BuildOptions,
    context: PathBuf,
    runner: &'a dyn StepRunner,
    progress: &'a mut dyn FnMut(&str),
    cached: usize,
}

/// Builds `options` into an image in `store`, reporting progress lines (`STEP 2/5: …`,
/// `--> Using cache …`) to `progress`.
pub fn build(
    store: &ImageStore,
    options: &BuildOptions,
    runner: &dyn StepRunner,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildOutcome, BuildError> {
    let steps = containerfile::parse(&options.containerfile)?;
    let context = std::fs::canonicalize(&options.context).map_err(|source| BuildError::Io {
        what: format!("build context {}", options.context.display()),
        source,
    })?;
    let _lease = store.lease()?;
    let mut build = Build {
        store,
        options,
        context,
        runner,
        progress,
        cached: 0,
    };
    let mut state: Option<State> = None;
    let mut global_args: BTreeMap<String, String> = BTreeMap::new();
    let total = steps.len();
    for (index, step) in steps.iter().enumerate() {
        (build.progress)(&format!("STEP {}/{total}: {}", index + 1, step.text));
        match (&step.instruction, state.as_mut()) {
            (Instruction::Arg { name, default }, None) => {
                let value = build.arg_value(name, default.as_deref(), &global_args);
                global_args.insert(name.clone(), value);
            }
            (Instruction::From { image, .. }, None) => {
                state = Some(build.from(image, &global_args, step.line)?);
            }
            (Instruction::From { .. }, Some(_)) => {
                return Err(BuildError::Step {
                    line: step.line,
                    message: "multi-stage builds (a second FROM) are not supported yet".into(),
                });
            }
            (_, None) => {
                return Err(BuildError::Step {
                    line: step.line,
                    message: "the first instruction must be FROM (ARG may come before it)".into(),
                });
            }
            (_, Some(state)) => build.step(state, step)?,
        }
    }
    let mut state = state.ok_or_else(|| BuildError::Step {
        line: 1,
        message: "the Containerfile has no FROM".into(),
    })?;
    state.config.created = Some(now_rfc3339());
    let target = store.write_image(&state.config, &state.layers)?;
    for tag in &options.tags {
        store.tag(tag, &target)?;
    }
    let mut image = store.load(&target)?;
    image.references = options.tags.iter().map(Reference::to_string).collect();
    Ok(BuildOutcome {
        image,
        steps: total,
        cached: build.cached,
    })
}

impl Build<'_> {
    fn arg_value(
        &self,
        name: &str,
        default: Option<&str>,
        vars: &BTreeMap<String, String>,
    ) -> String {
        self.options
            .build_args
            .get(name)
            .cloned()
            .or_else(|| default.map(|d| substitute(d, vars)))
            .unwrap_or_default()
    }

    fn from(
        &mut self,
        image: &str,
        args: &BTreeMap<String, String>,
        line: usize,
    ) -> Result<State, BuildError> {
        let name = substitute(image, args);
        let (config, layers, base) = if name == "scratch" {
            (ImageConfig::for_host(), Vec::new(), "scratch".to_string())
        } else {
            let base = self.store.resolve(&name).map_err(|e| match e {
                ImageError::NotFound(_) => BuildError::Step {
                    line,
                    message: format!(
                        "base image {name} is not in the image store (pull or build it first)"
                    ),
                },
                other => other.into(),
            })?;
            let digest = base.digest().to_string();
            (base.config, base.manifest.layers, digest)
        };
        let mut state = State {
            config,
            layers,
            key: Digest::of(b"strata build cache v1"),
            args: BTreeMap::new(),
        };
        state.advance(&format!("FROM {base}"), "");
        Ok(state)
    }

    fn step(&mut self, state: &mut State, step: &Step) -> Result<(), BuildError> {
        let line = step.line;
        match &step.instruction {
            Instruction::Arg { name, default } => {
                let value = self.arg_value(name, default.as_deref(), &state.vars());
                state.advance(&step.text, &format!("{name}={value}"));
                state.args.insert(name.clone(), value);
                Ok(())
            }
            Instruction::Run(form) => {
                let args: Vec<String> =
                    state.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                state.advance(&step.text, &args.join("\n"));
                let argv = form.argv();
                let layer = self.cached_or(state, |build| {
                    build.in_overlay(state, |build, state, rootfs| {
                        build.run_in(state, rootfs, argv, line)
                    })
                })?;
                state.push_layer(layer, &step.text);
                Ok(())
            }
            _ => {
                // Everything else sees ARG and ENV values substituted, as in Docker.
                let substituted =
                    containerfile::parse_instruction(&substitute(&step.text, &state.vars()), line)?;
                match &substituted.instruction {
                    Instruction::Copy(spec) => {
                        self.copy(state, spec, false, &substituted.text, line)
                    }
                    Instruction::Add(spec) => self.copy(state, spec, true, &substituted.text, line),
                    instruction => {
                        apply_to_config(&substituted, &mut state.config)?;
                        state.advance(&substituted.text, "");
                        let layer = match instruction {
                            Instruction::Workdir(_) => {
                                let dir = state.workdir();
                                self.cached_or(state, |build| {
                                    build.in_overlay(state, |_, _, rootfs| ensure_dir(rootfs, &dir))
                                })?
                            }
                            _ => None,
                        };
                        state.push_layer(layer, &substituted.text);
                        Ok(())
                    }
                }
            }
        }
    }

    /// The layer of the step whose key `state` holds: from the cache, or made by
    /// `make` and remembered.
    fn cached_or(
        &mut self,
        state: &State,
        make: impl FnOnce(&mut Self) -> Result<Layer, BuildError>,
    ) -> Result<Layer, BuildError> {
        if let Some(layer) = self.cached(state)? {
            return Ok(layer);
        }
        let layer = make(self)?;
        self.remember(state, &layer)?;
        Ok(layer)
    }

    fn copy(
        &mut self,
        state: &mut State,
        spec: &CopySpec,
        add: bool,
        text: &str,
        line: usize,
    ) -> Result<(), BuildError> {
        if spec.from.is_some() {
            return Err(BuildError::Step {
                line,
                message: "COPY --from (multi-stage builds) is not supported yet".into(),
            });
        }
        let owner = match &spec.chown {
            None => None,
            Some(chown) => Some(self.chown_ids(state, chown, line)?),
        };
        let placements = context::place(
            &self.context,
            &spec.sources,
            &spec.dest,
            &state.workdir(),
            add,
            line,
        )?;
        let digest = context::content_digest(&placements)?;
        state.advance(text, &format!("{digest} {owner:?}"));
        let layer = self.cached_or(state, |build| {
            let packed = pack_with(build.store.content(), PackMode::Plain, owner, |writer| {
                context::stage(writer, &placements).map_err(|e| match e {
                    BuildError::Pack(p) => p,
                    other => PackError::Io {
                        path: build.context.clone(),
                        source: std::io::Error::other(other.to_string()),
                    },
                })
            })?;
            Ok(Some((packed.descriptor, packed.diff_id)))
        })?;
        state.push_layer(layer, text);
        Ok(())
    }

    /// `--chown=user[:group]`: numbers as they are; names from the image's files.
    fn chown_ids(
        &mut self,
        state: &State,
        chown: &str,
        line: usize,
    ) -> Result<(u64, u64), BuildError> {
        let numeric = chown
            .split_once(':')
            .map(|(u, g)| (u.parse::<u64>().ok(), g.parse::<u64>().ok()))
            .unwrap_or((chown.parse().ok(), chown.parse().ok()));
        if let (Some(uid), Some(gid)) = numeric {
            return Ok((uid, gid));
        }
        let mut ids = None;
        self.in_overlay(state, |_, _, rootfs| {
            let user = users::resolve(chown, rootfs)
                .map_err(|source| BuildError::User { line, source })?;
            ids = Some((u64::from(user.uid), u64::from(user.gid)));
            Ok(())
        })?;
        ids.ok_or_else(|| BuildError::Step {
            line,
            message: format!("cannot resolve --chown={chown}"),
        })
    }

    fn cached(&mut self, state: &State) -> Result<Option<Layer>, BuildError> {
        if self.options.no_cache {
            return Ok(None);
        }
        let hit = cache::lookup(self.store, &state.key);
        if hit.is_some() {
            self.cached += 1;
            (self.progress)(&format!("--> Using cache {}", &state.key.hex()[..12]));
        }
        Ok(hit)
    }

    fn remember(&mut self, state: &State, layer: &Layer) -> Result<(), BuildError> {
        cache::store(self.store, &state.key, layer)?;
        match layer {
            Some((descriptor, _)) => {
                (self.progress)(&format!("--> {}", &descriptor.digest.hex()[..12]))
            }
            None => (self.progress)("--> (no changes)"),
        }
        Ok(())
    }

    /// Mounts the layers so far under a fresh upper directory, calls `change` on the
    /// merged root, and packs what changed (`None` when nothing did). The mount and
    /// its directories are gone afterwards, also on error.
    fn in_overlay(
        &mut self,
        state: &State,
        change: impl FnOnce(&mut Self, &State, &Path) -> Result<(), BuildError>,
    ) -> Result<Layer, BuildError> {
        let lowers = prepare_layers(self.store, &state.layers, &state.config.rootfs.diff_ids)?;
        let work = WorkDir::new(self.store.root())?;
        mount_overlay(&lowers, work.path())?;
        let changed = change(self, state, &work.path().join("rootfs"));
        release_rootfs(work.path())?;
        changed?;
        let upper = work.path().join("upper");
        let empty = std::fs::read_dir(&upper)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true);
        if empty {
            return Ok(None);
        }
        let PackedLayer {
            descriptor,
            diff_id,
        } = pack(&upper, PackMode::OverlayUpper, self.store.content())?;
        Ok(Some((descriptor, diff_id)))
    }

    fn run_in(
        &mut self,
        state: &State,
        rootfs: &Path,
        args: Vec<String>,
        line: usize,
    ) -> Result<(), BuildError> {
        let cwd = state.workdir();
        ensure_dir(rootfs, &cwd)?;
        let (uid, gid, additional_gids) = match state.config.config.user.as_deref() {
            Some(user) if !user.is_empty() => {
                let resolved = users::resolve(user, rootfs)
                    .map_err(|source| BuildError::User { line, source })?;
                (resolved.uid, resolved.gid, resolved.additional_gids)
            }
            _ => (0, 0, Vec::new()),
        };
        let mut env = state.config.config.env.clone();
        for (k, v) in &state.args {
            if !env
                .iter()
                .any(|e| e.split_once('=').map(|(key, _)| key) == Some(k))
            {
                env.push(format!("{k}={v}"));
            }
        }
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        let process = RunProcess {
            args,
            env,
            cwd,
            uid,
            gid,
            additional_gids,
        };
        self.runner
            .run(rootfs, &process)
            .map_err(|message| BuildError::Run { line, message })
    }
}

/// Creates directory `path` (and missing parents) inside `root` unless it exists,
/// resolving it as the container would (symlinks stay inside `root`).
fn ensure_dir(root: &Path, path: &str) -> Result<(), BuildError> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let io = |what: String| move |source: std::io::Error| BuildError::Io { what, source };
    let root_fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .map_err(|e| io(format!("cannot open {}", root.display()))(e.into()))?;
    let relative = path.trim_start_matches('/');
    if relative.is_empty() {
        return Ok(());
    }
    let exists = rustix::fs::openat2(
        &root_fd,
        relative,
        OFlags::PATH | OFlags::DIRECTORY,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )
    .is_ok();
    if exists {
        return Ok(());
    }
    // A one-entry layer unpacked in-root: missing parents are created, symlinks are
    // resolved inside `root`, existing directories keep their metadata.
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = crate::pack::synthetic_header(tar::EntryType::Directory, 0, 0o755);
    tar.append_data(&mut header, relative, std::io::empty())
        .map_err(io(format!("cannot create {path}")))?;
    let bytes = tar
        .into_inner()
        .map_err(io(format!("cannot create {path}")))?;
    crate::unpack::unpack_layer(
        &bytes[..],
        crate::unpack::Compression::None,
        root,
        &crate::unpack::UnpackOptions::flatten(),
    )
    .map_err(|e| io(format!("cannot create {path}"))(std::io::Error::other(e.to_string())))?;
    Ok(())
}

/// A scratch directory for one overlay mount, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(root: &Path) -> Result<Self, BuildError> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = root.join("build").join(format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(|source| BuildError::Io {
            what: format!("cannot create {}", path.display()),
            source,
        })?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = release_rootfs(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
