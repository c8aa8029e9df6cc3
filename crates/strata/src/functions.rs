//! `strata fn`: deploy, invoke, list, remove and meter serverless Functions. Deploy and
//! list talk to the API (the admin kubeconfig of `--data-dir`, or `--kubeconfig`); invoke,
//! logs and windowed usage talk to the gateway (`--gateway`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use strata_api::function::{
    API_VERSION, ConfigMapKeyRef, Function, FunctionSpec, ImageSource, KIND, WasmSource,
};
use strata_functions::instances::FUNCTION_LABEL;

/// The field manager of `strata fn deploy`.
const MANAGER: &str = "strata-fn";

/// `strata fn`.
#[derive(Debug, Subcommand)]
pub enum FnCommand {
    /// Create or update a function from a wasm module (or WAT text) or a container image.
    Deploy(DeployArgs),
    /// Push a wasm module (or WAT text) to a registry as a Wasm OCI artifact.
    Push(crate::wasm_oci::PushArgs),
    /// Call a function through the gateway and print its response body.
    Invoke(InvokeArgs),
    /// Print a function's recent logs (its standard error).
    Logs(NamedArgs),
    /// List functions.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Remove functions.
    #[command(alias = "delete")]
    Rm(RemoveArgs),
    /// Show metered usage: invocations, errors, cold starts, GB-seconds.
    Usage(UsageArgs),
}

/// Where the API and the gateway are.
#[derive(Debug, Args)]
pub struct Target {
    /// The namespace.
    #[arg(short, long, default_value = "default", global = true)]
    pub namespace: String,
    /// A kubeconfig (default: the admin kubeconfig in --data-dir).
    #[arg(long, env = "KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The serverless gateway.
    #[arg(
        long,
        env = "STRATA_GATEWAY",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub gateway: String,
}

/// `strata fn deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The function's name (a DNS label: it becomes `<name>.<namespace>.fn.localhost`).
    pub name: String,
    /// A WebAssembly module (binary or WAT text) built for WASI preview 1.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["image", "wasm_oci"],
        required_unless_present_any = ["image", "wasm_oci"]
    )]
    pub wasm: Option<PathBuf>,
    /// A wasm module pushed to a registry (`strata fn push`), fetched by the gateway.
    #[arg(long, value_name = "REF", conflicts_with = "image")]
    pub wasm_oci: Option<String>,
    /// A container image serving HTTP on $PORT.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// The port an image function listens on.
    #[arg(long, requires = "image")]
    pub port: Option<i32>,
    /// Memory per instance (limit and billing basis).
    #[arg(long, default_value = "128Mi")]
    pub memory: String,
    /// Longest an invocation may run (`10s`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Fewest instances kept running.
    #[arg(long = "min", default_value_t = 0)]
    pub min_scale: i32,
    /// Most instances.
    #[arg(long = "max", default_value_t = 10)]
    pub max_scale: i32,
    /// Concurrent requests per instance the autoscaler aims for (image functions).
    #[arg(long = "target", value_name = "N")]
    pub target_concurrency: Option<i32>,
    /// Most concurrent requests per instance (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub concurrency: i32,
    /// Idle time before scaling to zero (`60s`).
    #[arg(long, value_parser = parse_duration)]
    pub scale_to_zero_after: Option<Duration>,
    /// Environment variable K=V (repeatable).
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// A five-field cron schedule on which to invoke the function.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Let the function open network connections.
    #[arg(long)]
    pub allow_network: bool,
    /// Return without waiting for the function to be ready.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub target: Target,
}

/// `strata fn invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The function.
    pub name: String,
    /// Request body: text, or @FILE, or @- for standard input (makes the method POST).
    #[arg(short, long)]
    pub data: Option<String>,
    /// HTTP method (default GET, POST with --data).
    #[arg(short = 'X', long)]
    pub method: Option<String>,
    /// Path below the function (`/greet?x=1`).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Print the status line and headers too.
    #[arg(short, long)]
    pub include: bool,
    #[command(flatten)]
    pub target: Target,
}

/// A command naming one function.
#[derive(Debug, Args)]
pub struct NamedArgs {
    /// The function.
    pub name: String,
    #[command(flatten)]
    pub target: Target,
}

/// `strata fn ls`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub target: Target,
}

/// `strata fn rm`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The functions.
    #[arg(required = true)]
    pub names: Vec<String>,
    #[command(flatten)]
    pub target: Target,
}

/// `strata fn usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// One function (default: all in the namespace).
    pub name: Option<String>,
    /// Only usage in this recent window (`10m`, `1h`, `24h`; kept by the gateway for a day).
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    #[command(flatten)]
    pub target: Target,
}

/// `10s`, `2m`, `1h`, `500ms`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 10s, 2m, 1h)"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(value),
        "s" | "" => Duration::from_secs(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        "h" => Duration::from_secs(value.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{text:?} is not a duration (e.g. 500ms, 10s, 2m, 1h)"
            ));
        }
    };
    if duration.is_zero() {
        return Err(format!("{text:?}: the duration must be positive"));
    }
    Ok(duration)
}

/// Runs `strata fn …`.
pub fn dispatch(data_dir: &std::path::Path, command: FnCommand) -> Result<u8> {
    let runtime = crate::server::async_runtime()?;
    runtime.block_on(async {
        match command {
            FnCommand::Deploy(args) => deploy(data_dir, args).await,
            FnCommand::Push(args) => crate::wasm_oci::push(data_dir, &args).await,
            FnCommand::Invoke(args) => invoke(args).await,
            FnCommand::Logs(args) => logs(data_dir, args).await,
            FnCommand::Ls(args) => list(data_dir, args).await,
            FnCommand::Rm(args) => remove(data_dir, args).await,
            FnCommand::Usage(args) => usage(data_dir, args).await,
        }
    })
}

async fn client(data_dir: &std::path::Path, target: &Target) -> Result<kube::Client> {
    let path = target
        .kubeconfig
        .clone()
        .unwrap_or_else(|| data_dir.join("kubeconfig.yaml"));
    strata_client::connect_file(&path).await.with_context(|| {
        format!(
            "cannot use the kubeconfig {} (is `strata up` running with this --data-dir?)",
            path.display()
        )
    })
}

fn env_vars(pairs: &[String]) -> Result<Vec<EnvVar>> {
    pairs
        .iter()
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("--env {pair:?} is not NAME=VALUE"))?;
            Ok(EnvVar {
                name: name.to_string(),
                value: Some(value.to_string()),
                value_from: None,
            })
        })
        .collect()
}

async fn deploy(data_dir: &std::path::Path, args: DeployArgs) -> Result<u8> {
    let module = match &args.wasm {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let client = client(data_dir, &args.target).await?;
    let namespace = &args.target.namespace;
    let module_map = format!("{}-wasm", args.name);
    let spec = FunctionSpec {
        wasm: module
            .as_ref()
            .map(|_| WasmSource {
                config_map: Some(ConfigMapKeyRef {
                    name: module_map.clone(),
                    key: None,
                }),
                oci: None,
                interface: None,
            })
            .or_else(|| oci_source(args.wasm_oci.as_deref())),
        image: args.image.clone().map(|name| ImageSource {
            name,
            port: args.port,
            command: None,
            args: None,
        }),
        memory: Some(Quantity(args.memory.clone())),
        timeout_seconds: Some(i64::try_from(args.timeout.as_secs().max(1)).unwrap_or(i64::MAX)),
        min_scale: Some(args.min_scale),
        max_scale: Some(args.max_scale),
        container_concurrency: Some(args.concurrency),
        target_concurrency: args.target_concurrency,
        scale_to_zero_after_seconds: args
            .scale_to_zero_after
            .map(|d| i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX)),
        env: Some(env_vars(&args.env)?).filter(|e| !e.is_empty()),
        schedule: args.schedule.clone(),
        allow_network: Some(args.allow_network),
    };
    let function = Function {
        metadata: ObjectMeta {
            name: Some(args.name.clone()),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    };
    let mut body = serde_json::to_value(&function)?;
    body["apiVersion"] = API_VERSION.into();
    body["kind"] = KIND.into();
    let functions = Api::<Function>::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(MANAGER).force();
    let applied = functions
        .patch(&args.name, &params, &Patch::Apply(&body))
        .await
        .map_err(api_error)
        .with_context(|| format!("cannot deploy function {namespace}/{}", args.name))?;
    let uploaded = module.is_some();
    if let Some(bytes) = module {
        // The module lives in a ConfigMap owned by the function: removing the function
        // removes it.
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(module_map.clone()),
                namespace: Some(namespace.clone()),
                owner_references: Some(vec![OwnerReference {
                    api_version: API_VERSION.into(),
                    kind: KIND.into(),
                    name: args.name.clone(),
                    uid: applied.uid().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(
                "module.wasm".to_string(),
                ByteString(bytes),
            )])),
            ..ConfigMap::default()
        };
        let mut body = serde_json::to_value(&config_map)?;
        body["apiVersion"] = "v1".into();
        body["kind"] = "ConfigMap".into();
        Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .patch(&module_map, &params, &Patch::Apply(&body))
            .await
            .map_err(api_error)
            .with_context(|| format!("cannot store the module of {namespace}/{}", args.name))?;
    }
    if args.no_wait {
        println!("function/{} deployed", args.name);
        return Ok(0);
    }
    let generation = applied.metadata.generation;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let current = functions.get(&args.name).await.map_err(api_error)?;
        let status = current.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready" && c.observed_generation >= generation);
        match ready {
            Some(c) if c.status == "True" => {
                println!(
                    "function/{} ready: {}",
                    args.name,
                    status.url.unwrap_or_default()
                );
                return Ok(0);
            }
            // The Function is written before its module's ConfigMap (which it owns): the
            // controller may look before the module is there.
            Some(c) if c.status == "False" && uploaded && c.reason == "ModuleNotFound" => {}
            Some(c) if c.status == "False" => {
                bail!(
                    "function {namespace}/{} is not ready: {}: {}",
                    args.name,
                    c.reason,
                    c.message
                )
            }
            _ => {}
        }
        if Instant::now() > deadline {
            bail!(
                "function {namespace}/{} was not ready within 60s (is `strata up` running?)",
                args.name
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `spec.wasm` for `--wasm-oci REF`.
fn oci_source(reference: Option<&str>) -> Option<WasmSource> {
    reference.map(|reference| WasmSource {
        config_map: None,
        oci: Some(reference.to_string()),
        interface: None,
    })
}

/// The API's message for a client mistake, without kube's wrapping.
fn api_error(error: kube::Error) -> anyhow::Error {
    match error {
        kube::Error::Api(status) => anyhow::anyhow!("{}", status.message),
        other => other.into(),
    }
}

fn request_body(data: &str) -> Result<Vec<u8>> {
    match data.strip_prefix('@') {
        Some("-") => {
            let mut buffer = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buffer)
                .context("cannot read standard input")?;
            Ok(buffer)
        }
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {path}")),
        None => Ok(data.as_bytes().to_vec()),
    }
}

fn gateway_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("cannot build an HTTP client")
}

async fn invoke(args: InvokeArgs) -> Result<u8> {
    let body = args.data.as_deref().map(request_body).transpose()?;
    let method = match (&args.method, &body) {
        (Some(m), _) => reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .with_context(|| format!("{m:?} is not an HTTP method"))?,
        (None, Some(_)) => reqwest::Method::POST,
        (None, None) => reqwest::Method::GET,
    };
    let path = if args.path.starts_with('/') {
        args.path.clone()
    } else {
        format!("/{}", args.path)
    };
    let url = format!(
        "{}/fn/{}/{}{}",
        args.target.gateway.trim_end_matches('/'),
        args.target.namespace,
        args.name,
        path
    );
    let mut request = gateway_client()?.request(method, &url);
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.with_context(|| {
        format!(
            "cannot reach the gateway at {} (is `strata up` running?)",
            args.target.gateway
        )
    })?;
    let status = response.status();
    if args.include {
        println!("{:?} {}", response.version(), status);
        for (name, value) in response.headers() {
            println!("{name}: {}", value.to_str().unwrap_or("<binary>"));
        }
        println!();
    }
    let bytes = response.bytes().await.context("reading the response")?;
    if status.is_success() || args.include {
        std::io::stdout().write_all(&bytes)?;
    }
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&bytes).trim_end());
    }
    Ok(0)
}

async fn logs(data_dir: &std::path::Path, args: NamedArgs) -> Result<u8> {
    let client = client(data_dir, &args.target).await?;
    let namespace = &args.target.namespace;
    let function = Api::<Function>::namespaced(client.clone(), namespace)
        .get(&args.name)
        .await
        .map_err(api_error)?;
    if function.spec.as_ref().is_some_and(|s| s.image.is_some()) {
        // An image function logs like any pod: print its instances' logs.
        let pods = Api::<Pod>::namespaced(client, namespace);
        let selector = format!("{FUNCTION_LABEL}={}", args.name);
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(api_error)?;
        if list.items.is_empty() {
            eprintln!(
                "strata: function {namespace}/{} has no instances now (scaled to zero)",
                args.name
            );
        }
        for pod in list {
            let name = pod.name_any();
            let text = pods
                .logs(&name, &Default::default())
                .await
                .map_err(api_error)
                .with_context(|| format!("cannot read the logs of pod {name}"))?;
            for line in text.lines() {
                println!("[{name}] {line}");
            }
        }
        return Ok(0);
    }
    let url = format!(
        "{}/_strata/logs/{}/{}",
        args.target.gateway.trim_end_matches('/'),
        args.target.namespace,
        args.name
    );
    let response = gateway_client()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {}", args.target.gateway))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{}", text.trim_end());
    }
    print!("{text}");
    Ok(0)
}

async fn list(data_dir: &std::path::Path, args: ListArgs) -> Result<u8> {
    let client = client(data_dir, &args.target).await?;
    let api = if args.all_namespaces {
        Api::<Function>::all(client)
    } else {
        Api::<Function>::namespaced(client, &args.target.namespace)
    };
    let functions = api.list(&ListParams::default()).await.map_err(api_error)?;
    let mut rows = vec![
        vec![
            "NAMESPACE",
            "NAME",
            "KIND",
            "READY",
            "REPLICAS",
            "INVOCATIONS",
            "URL",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>(),
    ];
    for function in functions {
        let status = function.status.clone().unwrap_or_default();
        let spec = function.spec.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .map_or("Unknown".to_string(), |c| c.status.clone());
        rows.push(vec![
            function.namespace().unwrap_or_default(),
            function.name_any(),
            if spec.image.is_some() {
                "image"
            } else {
                "wasm"
            }
            .into(),
            ready,
            status.replicas.unwrap_or(0).to_string(),
            status
                .usage
                .and_then(|u| u.invocations)
                .unwrap_or(0)
                .to_string(),
            status.url.unwrap_or_default(),
        ]);
    }
    print_table(&rows, !args.all_namespaces);
    Ok(0)
}

fn print_table(rows: &[Vec<String>], skip_first_column: bool) {
    let skip = usize::from(skip_first_column);
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

async fn remove(data_dir: &std::path::Path, args: RemoveArgs) -> Result<u8> {
    let client = client(data_dir, &args.target).await?;
    let api = Api::<Function>::namespaced(client, &args.target.namespace);
    let mut failed = false;
    for name in &args.names {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => println!("function/{name} deleted"),
            Err(error) => {
                eprintln!(
                    "strata: cannot delete function {}/{name}: {}",
                    args.target.namespace,
                    api_error(error)
                );
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}

async fn usage(data_dir: &std::path::Path, args: UsageArgs) -> Result<u8> {
    let mut rows = vec![
        [
            "NAME",
            "INVOCATIONS",
            "ERRORS",
            "COLD STARTS",
            "BILLED MS",
            "MEMORY PEAK",
            "GB-SECONDS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    if let Some(window) = args.since {
        let url = format!(
            "{}/_strata/usage/{}?since={}",
            args.target.gateway.trim_end_matches('/'),
            args.target.namespace,
            window.as_secs()
        );
        let response = gateway_client()?
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", args.target.gateway))?;
        if !response.status().is_success() {
            bail!("{}", response.text().await.unwrap_or_default().trim_end());
        }
        let entries: Vec<serde_json::Value> =
            response.json().await.context("the gateway's usage")?;
        for entry in entries {
            let name = entry["name"].as_str().unwrap_or_default().to_string();
            if args.name.as_ref().is_some_and(|n| *n != name) {
                continue;
            }
            let number = |k: &str| entry[k].as_u64().unwrap_or(0).to_string();
            rows.push(vec![
                name,
                number("invocations"),
                number("errors"),
                number("coldStarts"),
                number("durationMilliseconds"),
                number("memoryPeakBytes"),
                entry["gbSeconds"].as_str().unwrap_or("0").to_string(),
            ]);
        }
    } else {
        let client = client(data_dir, &args.target).await?;
        let api = Api::<Function>::namespaced(client, &args.target.namespace);
        let functions = match &args.name {
            Some(name) => vec![api.get(name).await.map_err(api_error)?],
            None => {
                api.list(&ListParams::default())
                    .await
                    .map_err(api_error)?
                    .items
            }
        };
        for function in functions {
            let usage = function.status.and_then(|s| s.usage).unwrap_or_default();
            let number = |v: Option<i64>| v.unwrap_or(0).to_string();
            rows.push(vec![
                function.metadata.name.unwrap_or_default(),
                number(usage.invocations),
                number(usage.errors),
                number(usage.cold_starts),
                number(usage.duration_milliseconds),
                number(usage.memory_peak_bytes),
                usage.gb_seconds.unwrap_or_else(|| "0".into()),
            ]);
        }
    }
    print_table(&rows, false);
    Ok(0)
}
