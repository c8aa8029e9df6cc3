//! Keeps the gateway's function table equal to the Function objects of the API: compiles
//! each wasm function's module (from its ConfigMap, or from a registry through the
//! injected [`ModuleSource`]) when its spec or module changes,
//! removes deleted functions, and writes what the gateway sees back to each Function's
//! status (URL, replicas, last invocation, usage, the `Ready` condition).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use strata_api::function::validate::{
    DEFAULT_MODULE_KEY, DEFAULT_SCALE_TO_ZERO_AFTER_SECONDS, DEFAULT_TIMEOUT_SECONDS,
};
use strata_api::function::{Function, FunctionSpec, FunctionStatus, FunctionUsage};
use strata_api::quantity::Quantity;

use crate::component::HttpComponent;
use crate::cron::CronTriggers;
use crate::engine::WasmEngine;
use crate::metering::UsageSnapshot;
use crate::oci::ModuleSource;
use crate::table::{Backend, FunctionConfig, FunctionKey, FunctionTable};
use crate::wasm::WasmFunction;
use strata_api::cron::Schedule;

mod image;

/// The component name (field manager, logs).
pub const COMPONENT: &str = "strata-gateway";

/// How the sync runs.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// The gateway's port, for the URL in each Function's status.
    pub gateway_port: u16,
    /// Where cron triggers call the gateway (its own listener).
    pub gateway_addr: std::net::SocketAddr,
    /// How often statuses are brought up to date (usage, replicas).
    pub status_every: Duration,
    /// Where `spec.wasm.oci` modules are fetched from; without one such functions are
    /// `Ready=False` with reason `OciSourceUnsupported`.
    pub modules: Option<Arc<dyn ModuleSource>>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            gateway_port: 8080,
            gateway_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            status_every: Duration::from_secs(2),
            modules: None,
        }
    }
}

/// Why a function cannot be served (the `Ready=False` reason and message).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NotReady {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// What the sync knows per function: the fingerprint of what it deployed, or why not.
#[derive(Clone, Debug, PartialEq)]
enum State {
    Serving { fingerprint: u64 },
    Failed { fingerprint: u64, problem: NotReady },
}

impl State {
    fn fingerprint(&self) -> u64 {
        match self {
            State::Serving { fingerprint } | State::Failed { fingerprint, .. } => *fingerprint,
        }
    }
}

struct Context {
    client: kube::Client,
    table: Arc<FunctionTable>,
    states: Mutex<HashMap<FunctionKey, State>>,
    images: image::ImageFunctions,
    triggers: Arc<Mutex<CronTriggers>>,
    modules: Option<Arc<dyn ModuleSource>>,
    /// The spec fingerprint each OCI function's module was last fetched for: a
    /// reconcile for the same spec (a status write) does not ask the registry again.
    oci_fetched: Mutex<HashMap<FunctionKey, u64>>,
}

/// Runs until dropped: the reconcile loop for Functions (and the ConfigMaps they name)
/// and the status writer.
pub async fn run(client: kube::Client, table: Arc<FunctionTable>, options: SyncOptions) {
    let context = Arc::new(Context {
        client: client.clone(),
        table,
        states: Mutex::new(HashMap::new()),
        images: image::ImageFunctions::new(client.clone()),
        triggers: Arc::new(Mutex::new(CronTriggers::new())),
        modules: options.modules.clone(),
        oci_fetched: Mutex::new(HashMap::new()),
    });
    let gateway = options.gateway_addr;
    let cron = crate::cron::run(context.triggers.clone(), move |key| {
        tokio::spawn(fire(gateway, key));
    });
    let pods = crate::instances::watch_pods(client.clone(), context.images.pools.clone());
    let controller = Controller::new(
        Api::<Function>::all(client.clone()),
        watcher::Config::default(),
    );
    let functions = controller.store();
    let by_config_map = functions.clone();
    let reconciler = controller
        .watches(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default(),
            move |config_map| referencing(&by_config_map, &config_map),
        )
        .run(reconcile, error_policy, context.clone())
        .for_each(|_| async {});
    let statuses = write_statuses(context, functions, options);
    tokio::join!(reconciler, statuses, pods, cron);
}

/// The functions whose module is in `config_map`.
fn referencing(functions: &Store<Function>, config_map: &ConfigMap) -> Vec<ObjectRef<Function>> {
    let namespace = config_map.namespace();
    functions
        .state()
        .iter()
        .filter(|f| f.namespace() == namespace)
        .filter(|f| {
            f.spec
                .as_ref()
                .and_then(|s| s.wasm.as_ref())
                .and_then(|w| w.config_map.as_ref())
                .is_some_and(|c| c.name == config_map.name_any())
        })
        .map(|f| ObjectRef::from_obj(f.as_ref()))
        .collect()
}

fn key_of(function: &Function) -> FunctionKey {
    FunctionKey::new(
        function.namespace().unwrap_or_default(),
        function.name_any(),
    )
}

async fn reconcile(function: Arc<Function>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let key = key_of(&function);
    let spec = function.spec.clone().unwrap_or_default();
    let schedule = spec
        .schedule
        .as_deref()
        .and_then(|text| Schedule::parse(text).ok());
    context
        .triggers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .set(key.clone(), schedule);
    if spec.image.is_some() {
        let fingerprint = fingerprint(&spec, &[]);
        let current = context
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if current.as_ref().map(State::fingerprint) == Some(fingerprint) {
            return Ok(Action::await_change());
        }
        let state =
            match context
                .images
                .deploy(&context.table, &key, &function, &spec, seed(&function))
            {
                Ok(()) => State::Serving { fingerprint },
                Err(problem) => State::Failed {
                    fingerprint,
                    problem,
                },
            };
        tracing::info!(function = %key, ?state, "image function synced");
        set_state(&context, key, state);
        return Ok(Action::await_change());
    }
    let module = match module_bytes(&context, &key, &spec).await {
        Ok(module) => module,
        Err(Fetch::Api(error)) => return Err(error),
        Err(Fetch::Unchanged) => return Ok(Action::await_change()),
        Err(Fetch::Problem(problem)) => {
            context.table.remove(&key);
            let fingerprint = fingerprint(&spec, &[]);
            set_state(
                &context,
                key,
                State::Failed {
                    fingerprint,
                    problem,
                },
            );
            return Ok(retry_fetch(&spec));
        }
    };
    let fingerprint = fingerprint(&spec, &module);
    let current = context
        .states
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    if current.as_ref().map(State::fingerprint) == Some(fingerprint)
        && (context.table.get(&key).is_some() || matches!(current, Some(State::Failed { .. })))
    {
        return Ok(Action::await_change());
    }
    let state = match deploy(&context.table, &key, &spec, &module, seed(&function)).await {
        Ok(()) => State::Serving { fingerprint },
        Err(problem) => {
            context.table.remove(&key);
            State::Failed {
                fingerprint,
                problem,
            }
        }
    };
    tracing::info!(function = %key, ?state, "function synced");
    set_state(&context, key, state);
    Ok(Action::await_change())
}

fn set_state(context: &Context, key: FunctionKey, state: State) {
    context
        .states
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, state);
}

fn error_policy(_function: Arc<Function>, error: &kube::Error, _context: Arc<Context>) -> Action {
    tracing::warn!(%error, "function sync failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

enum Fetch {
    Api(kube::Error),
    Problem(NotReady),
    /// An OCI module already fetched for this very spec is being served.
    Unchanged,
}

/// After a failed fetch: a registry may get the module later (a push of the missing
/// tag, a registry back up), so OCI functions try again; ConfigMaps are watched.
fn retry_fetch(spec: &FunctionSpec) -> Action {
    if spec.wasm.as_ref().is_some_and(|w| w.oci.is_some()) {
        Action::requeue(OCI_RETRY)
    } else {
        Action::await_change()
    }
}

/// How long after a failed OCI fetch the sync asks the registry again.
const OCI_RETRY: Duration = Duration::from_secs(30);

/// The module of an OCI function from the injected [`ModuleSource`], unless the one
/// fetched for this same spec is still being served.
async fn oci_module(
    context: &Context,
    key: &FunctionKey,
    spec: &FunctionSpec,
    reference: &str,
) -> Result<Vec<u8>, Fetch> {
    let Some(source) = &context.modules else {
        return Err(Fetch::Problem(NotReady {
            reason: "OciSourceUnsupported",
            message: "this gateway cannot fetch spec.wasm.oci modules; put the module in a ConfigMap (strata fn deploy --wasm FILE does)".into(),
        }));
    };
    let wanted = fingerprint(spec, &[]);
    let fetched = context
        .oci_fetched
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(key)
        .copied();
    if fetched == Some(wanted) && context.table.get(key).is_some() {
        return Err(Fetch::Unchanged);
    }
    match source.fetch(reference).await {
        Ok(module) => {
            context
                .oci_fetched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), wanted);
            Ok(module)
        }
        Err(error) => {
            tracing::warn!(function = %key, reference, %error, "cannot fetch the module");
            Err(Fetch::Problem(NotReady {
                reason: error.reason(),
                message: format!("cannot pull {reference}: {error}"),
            }))
        }
    }
}

/// The module's bytes from the function's ConfigMap (`binaryData`, or `data` for text).
async fn module_bytes(
    context: &Context,
    key: &FunctionKey,
    spec: &FunctionSpec,
) -> Result<Vec<u8>, Fetch> {
    let client = &context.client;
    let problem = |reason, message: String| Err(Fetch::Problem(NotReady { reason, message }));
    let Some(wasm) = &spec.wasm else {
        return problem("NoSource", "spec.wasm or spec.image must be set".into());
    };
    if let Some(oci) = &wasm.oci {
        return oci_module(context, key, spec, oci).await;
    }
    let Some(reference) = &wasm.config_map else {
        return problem(
            "NoSource",
            "spec.wasm.configMap or spec.wasm.oci must be set".into(),
        );
    };
    let module_key = reference.key.as_deref().unwrap_or(DEFAULT_MODULE_KEY);
    let api = Api::<ConfigMap>::namespaced(client.clone(), &key.namespace);
    let config_map = match api.get_opt(&reference.name).await {
        Ok(Some(config_map)) => config_map,
        Ok(None) => {
            return problem(
                "ModuleNotFound",
                format!(
                    "ConfigMap {}/{} does not exist",
                    key.namespace, reference.name
                ),
            );
        }
        Err(error) => return Err(Fetch::Api(error)),
    };
    let binary = config_map
        .binary_data
        .as_ref()
        .and_then(|d| d.get(module_key))
        .map(|b| b.0.clone());
    let text = config_map
        .data
        .as_ref()
        .and_then(|d| d.get(module_key))
        .map(|t| t.clone().into_bytes());
    match binary.or(text) {
        Some(bytes) => Ok(bytes),
        None => problem(
            "ModuleNotFound",
            format!(
                "ConfigMap {}/{} has no key {module_key:?}",
                key.namespace, reference.name
            ),
        ),
    }
}

fn fingerprint(spec: &FunctionSpec, module: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(spec)
        .unwrap_or_default()
        .hash(&mut hasher);
    module.hash(&mut hasher);
    hasher.finish()
}

/// The plain configuration the table serves, from a (defaulted) spec.
pub fn config_of(
    key: &FunctionKey,
    spec: &FunctionSpec,
    backend: Backend,
) -> Result<FunctionConfig, String> {
    let memory = spec
        .memory
        .as_ref()
        .map(|q| Quantity::parse(&q.0).map(|q| q.value()))
        .transpose()
        .map_err(|e| format!("spec.memory: {e}"))?
        .unwrap_or(128 << 20);
    let memory_bytes =
        u64::try_from(memory).map_err(|_| "spec.memory must be positive".to_string())?;
    let seconds = |value: Option<i64>, default: i64| {
        Duration::from_secs(u64::try_from(value.unwrap_or(default)).unwrap_or(1).max(1))
    };
    let container_concurrency = u32::try_from(spec.container_concurrency.unwrap_or(0)).unwrap_or(0);
    let max_scale = u32::try_from(spec.max_scale.unwrap_or(10))
        .unwrap_or(1)
        .max(1);
    Ok(FunctionConfig {
        key: key.clone(),
        memory_bytes,
        timeout: seconds(spec.timeout_seconds, DEFAULT_TIMEOUT_SECONDS),
        env: spec
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect(),
        allow_network: spec.allow_network.unwrap_or(false),
        max_in_flight: container_concurrency.saturating_mul(max_scale),
        min_scale: u32::try_from(spec.min_scale.unwrap_or(0)).unwrap_or(0),
        scale_to_zero_after: seconds(
            spec.scale_to_zero_after_seconds,
            DEFAULT_SCALE_TO_ZERO_AFTER_SECONDS,
        ),
        backend,
    })
}

async fn deploy(
    table: &Arc<FunctionTable>,
    key: &FunctionKey,
    spec: &FunctionSpec,
    module: &[u8],
    seed: UsageSnapshot,
) -> Result<(), NotReady> {
    let engine = table.engine().clone();
    let bytes = module.to_vec();
    let interface = spec.wasm.as_ref().and_then(|w| w.interface.clone());
    let backend = tokio::task::spawn_blocking(move || compile(&engine, &bytes, interface))
        .await
        .map_err(|e| NotReady {
            reason: "CompileFailed",
            message: e.to_string(),
        })??;
    // Link once now so a module with missing imports fails here, not on its first request.
    let linked = match &backend {
        Backend::Wasm(module) => WasmFunction::link(table.engine(), module).map(drop),
        Backend::Component(component) => HttpComponent::link(table.engine(), component).map(drop),
        Backend::Pods(_) => Ok(()),
    };
    linked.map_err(|e| NotReady {
        reason: "LinkFailed",
        message: e.to_string(),
    })?;
    let config = config_of(key, spec, backend).map_err(|message| NotReady {
        reason: "InvalidSpec",
        message,
    })?;
    if config.memory_bytes > table.engine().max_memory_bytes() {
        return Err(NotReady {
            reason: "InvalidSpec",
            message: format!(
                "spec.memory {} bytes is more than the engine's limit of {} bytes",
                config.memory_bytes,
                table.engine().max_memory_bytes()
            ),
        });
    }
    table.upsert(config, seed).map_err(|e| NotReady {
        reason: "LinkFailed",
        message: e.to_string(),
    })
}

/// Compiles `bytes` (binary or text) as `spec.wasm.interface` says: `cgi` a WASI preview 1
/// module, `http` a `wasi:http` component; unset, whichever the bytes are.
fn compile(
    engine: &WasmEngine,
    bytes: &[u8],
    interface: Option<String>,
) -> Result<Backend, NotReady> {
    let failed = |e: crate::FunctionsError| NotReady {
        reason: "CompileFailed",
        message: e.to_string(),
    };
    let component = match interface.as_deref() {
        Some("http") => true,
        Some(_) => false,
        None => {
            let binary = wat::parse_bytes(bytes).map_err(|e| NotReady {
                reason: "CompileFailed",
                message: e.to_string(),
            })?;
            !crate::component::is_core_module(&binary)
        }
    };
    if component {
        HttpComponent::compile(engine, bytes)
            .map(Backend::Component)
            .map_err(failed)
    } else {
        WasmFunction::compile(engine, bytes)
            .map(Backend::Wasm)
            .map_err(failed)
    }
}

/// The usage a Function's status already records (so totals survive restarts).
fn seed(function: &Function) -> UsageSnapshot {
    let status = function.status.clone().unwrap_or_default();
    let usage = status.usage.unwrap_or_default();
    let count = |v: Option<i64>| u64::try_from(v.unwrap_or(0)).unwrap_or(0);
    let gb_seconds: f64 = usage
        .gb_seconds
        .as_deref()
        .and_then(|g| g.parse().ok())
        .unwrap_or(0.0);
    UsageSnapshot {
        invocations: count(usage.invocations),
        errors: count(usage.errors),
        cold_starts: count(usage.cold_starts),
        billed_milliseconds: count(usage.duration_milliseconds),
        mib_milliseconds: (gb_seconds * 1024.0 * 1000.0).round() as u64,
        memory_peak_bytes: count(usage.memory_peak_bytes),
        last_invoked: status
            .last_invoked
            .map(|t| u64::try_from(t.0.as_second()).unwrap_or(0)),
        ..UsageSnapshot::default()
    }
}

/// Brings every Function's status up to date every `status_every`, and stops serving
/// functions that were deleted.
async fn write_statuses(context: Arc<Context>, functions: Store<Function>, options: SyncOptions) {
    let mut written: BTreeMap<FunctionKey, FunctionStatus> = BTreeMap::new();
    let mut ticker = tokio::time::interval(options.status_every);
    loop {
        ticker.tick().await;
        let present: Vec<Arc<Function>> = functions.state();
        let keys: std::collections::BTreeSet<FunctionKey> =
            present.iter().map(|f| key_of(f)).collect();
        for deployed in context.table.list() {
            let key = &deployed.config().key;
            if !keys.contains(key) && context.table.remove(key) {
                context.images.remove(key);
                context
                    .triggers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(key);
                tracing::info!(function = %key, "function deleted; no longer served");
            }
        }
        context
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keys.contains(k));
        written.retain(|k, _| keys.contains(k));
        for function in present {
            let key = key_of(&function);
            let state = context
                .states
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            let Some(state) = state else { continue };
            let status = status_of(
                &context.table,
                &key,
                &function,
                &state,
                options.gateway_port,
            );
            let unchanged = written.get(&key) == Some(&status)
                || (!written.contains_key(&key) && function.status.as_ref() == Some(&status));
            if unchanged {
                written.insert(key, status);
                continue;
            }
            let api = Api::<Function>::namespaced(context.client.clone(), &key.namespace);
            let patch = serde_json::json!({ "status": status });
            match api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    written.insert(key, status);
                }
                Err(error) => {
                    tracing::debug!(function = %key, %error, "status write failed; retrying")
                }
            }
        }
    }
}

fn status_of(
    table: &FunctionTable,
    key: &FunctionKey,
    function: &Function,
    state: &State,
    port: u16,
) -> FunctionStatus {
    let previous = function.status.clone().unwrap_or_default();
    let generation = function.metadata.generation;
    let (ready, reason, message) = match state {
        State::Serving { .. } => (
            "True",
            "Serving",
            "the gateway serves the function".to_string(),
        ),
        State::Failed { problem, .. } => ("False", problem.reason, problem.message.clone()),
    };
    let condition = |since: Time| Condition {
        type_: "Ready".into(),
        status: ready.into(),
        reason: reason.into(),
        message: message.clone(),
        observed_generation: generation,
        last_transition_time: since,
    };
    let since = previous
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == ready && c.reason == reason)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()));
    let mut status = FunctionStatus {
        observed_generation: generation,
        url: Some(format!(
            "http://{}.{}.fn.localhost:{port}/",
            key.name, key.namespace
        )),
        replicas: Some(0),
        ready_replicas: Some(0),
        last_invoked: previous.last_invoked.clone(),
        conditions: Some(vec![condition(since)]),
        usage: previous.usage.clone(),
    };
    if let Some(deployed) = table.get(key) {
        let usage = deployed.meter().total();
        let (replicas, ready) = deployed.replicas();
        status.replicas = Some(i32::try_from(replicas).unwrap_or(i32::MAX));
        status.ready_replicas = Some(i32::try_from(ready).unwrap_or(i32::MAX));
        status.last_invoked = usage
            .last_invoked
            .and_then(|s| Timestamp::from_second(i64::try_from(s).ok()?).ok())
            .map(Time)
            .or(status.last_invoked);
        let count = |v: u64| Some(i64::try_from(v).unwrap_or(i64::MAX));
        status.usage = Some(FunctionUsage {
            invocations: count(usage.invocations),
            errors: count(usage.errors),
            cold_starts: count(usage.cold_starts),
            duration_milliseconds: count(usage.billed_milliseconds),
            memory_peak_bytes: count(usage.memory_peak_bytes),
            gb_seconds: Some(usage.gb_seconds_text()),
        });
    }
    status
}

/// Invokes a scheduled function through the gateway (so it is limited and metered like any
/// request), as `POST /fn/<ns>/<fn>/` with `X-Strata-Trigger: cron`.
async fn fire(gateway: std::net::SocketAddr, key: FunctionKey) {
    use http_body_util::{BodyExt, Empty};
    let request = match http::Request::post(format!("/fn/{}/{}/", key.namespace, key.name))
        .header(http::header::HOST, gateway.to_string())
        .header("x-strata-trigger", "cron")
        .body(Empty::<bytes::Bytes>::new())
    {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(function = %key, %error, "cannot build the cron request");
            return;
        }
    };
    let result = async {
        let stream = tokio::net::TcpStream::connect(gateway).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)?;
        let status = response.status();
        let _ = response.into_body().collect().await;
        Ok::<_, std::io::Error>(status)
    }
    .await;
    match result {
        Ok(status) => tracing::debug!(function = %key, %status, "cron trigger fired"),
        Err(error) => tracing::warn!(function = %key, %error, "cron trigger failed"),
    }
}
