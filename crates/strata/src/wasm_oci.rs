//! WebAssembly modules as OCI artifacts: `strata fn push FILE REF`, and the
//! [`ModuleSource`] that lets `strata up`'s gateway fetch `spec.wasm.oci` modules with
//! the registry client of strata-image (credentials from `<data-dir>/auth.json`,
//! layers cached by digest under `<data-dir>/functions/modules`).

use std::path::{Path, PathBuf};
use strata_agent::containers::monitor::one_line;

use anyhow::{Context, Result};
use clap::Args;
use strata_functions::oci::{FetchError, FetchFuture, ModuleSource};
use strata_image::registry::{
    self, AuthFile, PullOptions, PushOptions, RegistryError, RegistryOptions,
};
use strata_image::wasm::Artifact;
use strata_image::{ContentStore, Reference};

use crate::cli::RegistryArgs;
use crate::progress::{Bars, Direction};

/// `strata fn push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Print no progress.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The module: binary WebAssembly, or WAT text (compiled first).
    pub file: PathBuf,
    /// Where to push it (`registry/repository:tag`).
    pub reference: String,
}

/// `strata fn push`: the module as a Wasm OCI artifact (config
/// `application/vnd.wasm.config.v0+json`, one `application/vnd.wasm.content.layer.v1+wasm`
/// layer) under `reference`.
pub async fn push(data_dir: &Path, args: &PushArgs) -> Result<u8> {
    let remote: Reference = args.reference.parse()?;
    let text = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let module = wat::parse_bytes(&text)
        .with_context(|| {
            format!(
                "{} is neither WebAssembly nor valid WAT text",
                args.file.display()
            )
        })?
        .into_owned();
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let artifact = Artifact::wasm_module(module, &created);
    let options = PushOptions {
        registry: crate::registry::options(&args.registry),
        credentials: crate::registry::auth_file(data_dir)?.get(remote.registry())?,
        ..PushOptions::default()
    };
    if !args.quiet {
        println!("The push refers to repository [{}]", remote.name());
    }
    let bars = Bars::new(Direction::Push, args.quiet);
    let report = registry::push_artifact(&artifact, &remote, &options, &bars)
        .await
        .with_context(|| format!("push {remote}"))?;
    println!(
        "{remote}: digest: {} size: {}",
        report.target.digest, report.target.size
    );
    Ok(0)
}

/// Fetches `spec.wasm.oci` modules for the gateway of `strata up`.
#[derive(Debug)]
pub struct RegistryModules {
    auth: PathBuf,
    registry: RegistryOptions,
    cache: ContentStore,
}

impl RegistryModules {
    /// A source using the credentials and module cache of `data_dir` and `registry`'s
    /// ways of reaching registries.
    pub fn open(data_dir: &Path, registry: &RegistryArgs) -> Result<Self> {
        let root = data_dir.join("functions/modules");
        Ok(Self {
            auth: crate::registry::auth_path(data_dir),
            registry: crate::registry::options(registry),
            cache: ContentStore::open(&root)
                .with_context(|| format!("cannot open the module cache {}", root.display()))?,
        })
    }

    async fn pull(&self, reference: &str) -> Result<Vec<u8>, FetchError> {
        let reference: Reference = reference
            .parse()
            .map_err(|e| FetchError::Failed(one_line(&e)))?;
        // Read on every fetch: a `strata login` after `strata up` counts.
        let credentials = AuthFile::load(&self.auth)
            .and_then(|file| file.get(reference.registry()))
            .map_err(|e| FetchError::Failed(one_line(&e)))?;
        let options = PullOptions {
            registry: self.registry.clone(),
            credentials,
            max_attempts: 3,
            ..PullOptions::default()
        };
        let pulled = registry::pull_wasm_module(&reference, &self.cache, &options)
            .await
            .map_err(fetch_error)?;
        tracing::info!(
            %reference,
            manifest = %pulled.manifest_digest,
            layer = %pulled.layer_digest,
            downloaded = pulled.downloaded,
            "module fetched"
        );
        Ok(pulled.bytes)
    }
}

impl ModuleSource for RegistryModules {
    fn fetch<'a>(&'a self, reference: &'a str) -> FetchFuture<'a> {
        Box::pin(self.pull(reference))
    }
}

/// A registry error as the Function's condition shows it: missing repositories, tags
/// and blobs are [`FetchError::NotFound`].
fn fetch_error(error: RegistryError) -> FetchError {
    let missing = matches!(
        error.code(),
        Some("MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN")
    ) || matches!(error, RegistryError::Refused { status: 404, .. });
    if missing {
        FetchError::NotFound(one_line(&error))
    } else {
        FetchError::Failed(one_line(&error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: &str, message: &str) -> RegistryError {
        RegistryError::Refused {
            host: "127.0.0.1:5000".into(),
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn missing_tags_are_not_found_and_other_refusals_fail() {
        assert_eq!(
            fetch_error(refused(404, "MANIFEST_UNKNOWN", "manifest unknown")),
            FetchError::NotFound("manifest unknown".into())
        );
        assert!(matches!(
            fetch_error(refused(404, "", "127.0.0.1:5000 answered 404 Not Found")),
            FetchError::NotFound(_)
        ));
        assert_eq!(
            fetch_error(refused(
                403,
                "DENIED",
                "requested access to the resource is denied"
            )),
            FetchError::Failed("requested access to the resource is denied".into())
        );
        let auth = fetch_error(RegistryError::AuthRequired {
            host: "r.example".into(),
        });
        assert_eq!(
            auth,
            FetchError::Failed("authentication required (run strata login r.example)".into())
        );
    }
}
