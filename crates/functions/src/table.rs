//! The functions the gateway serves: each function's configuration, its backend (a
//! compiled module), the warm instance template while it is scaled up, its meter, its
//! in-flight count and its recent logs.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::Module;
use wasmtime::component::Component;

use crate::FunctionsError;
use crate::component::HttpComponent;
use crate::engine::WasmEngine;
use crate::metering::{Meter, UsageSnapshot};
use crate::pods::PodPool;
use crate::wasm::{Limits, WasmFunction};

/// Lines of standard error kept per function.
pub const LOG_LINES: usize = 1000;

/// A function's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl FunctionKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for FunctionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What serves a function's requests.
#[derive(Clone)]
pub enum Backend {
    /// A compiled WebAssembly module (WASI preview 1, CGI), instantiated per request.
    Wasm(Module),
    /// A compiled `wasi:http` component (WASI 0.2), instantiated per request.
    Component(Component),
    /// Pods of a container image, scaled by the gateway's autoscaler.
    Pods(Arc<PodPool>),
}

/// Everything the gateway needs to serve one function (plain data, no API types).
#[derive(Clone)]
pub struct FunctionConfig {
    /// Namespace and name.
    pub key: FunctionKey,
    /// Memory per instance in bytes (the limit and the billing basis).
    pub memory_bytes: u64,
    /// Wall-clock limit of one invocation.
    pub timeout: Duration,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Sockets allowed.
    pub allow_network: bool,
    /// In-flight requests allowed at once; 0 means no limit. Beyond it: 429.
    pub max_in_flight: u32,
    /// Instances kept warm even when idle (0 or more).
    pub min_scale: u32,
    /// Idle time after which a function scales to zero.
    pub scale_to_zero_after: Duration,
    /// The backend.
    pub backend: Backend,
}

/// The linked template a WebAssembly function's requests are instantiated from.
#[derive(Clone, Debug)]
pub enum Instance {
    /// A WASI preview 1 module served through CGI.
    Cgi(WasmFunction),
    /// A `wasi:http` component.
    Http(HttpComponent),
}

/// A served function.
pub struct Deployed {
    config: FunctionConfig,
    meter: Arc<Meter>,
    warm: Mutex<Option<Instance>>,
    in_flight: AtomicU32,
    /// Milliseconds since the epoch of the last request's start.
    last_request: AtomicU64,
    logs: Mutex<VecDeque<String>>,
}

impl Deployed {
    /// Its configuration.
    pub fn config(&self) -> &FunctionConfig {
        &self.config
    }

    /// Its meter.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// The invocation limits from the configuration.
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.config.memory_bytes,
            timeout: self.config.timeout,
            env: self.config.env.clone(),
            allow_network: self.config.allow_network,
        }
    }

    /// Claims an in-flight slot; `None` when the function is at its limit.
    pub fn admit(self: &Arc<Self>) -> Option<InFlight> {
        let limit = self.config.max_in_flight;
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (limit == 0 || n < limit).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| {
            self.last_request.store(now_millis(), Ordering::Relaxed);
            InFlight(self.clone())
        })
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The warm instance template, linking it first when the function is scaled to zero;
    /// the flag is true for such a cold start.
    pub fn instance(&self, engine: &WasmEngine) -> Result<(Instance, bool), FunctionsError> {
        let mut warm = self.warm.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(instance) = warm.as_ref() {
            return Ok((instance.clone(), false));
        }
        let instance = match &self.config.backend {
            Backend::Wasm(module) => Instance::Cgi(WasmFunction::link(engine, module)?),
            Backend::Component(component) => {
                Instance::Http(HttpComponent::link(engine, component)?)
            }
            Backend::Pods(_) => {
                return Err(FunctionsError::Link(
                    "an image function has no wasm instance".into(),
                ));
            }
        };
        *warm = Some(instance.clone());
        Ok((instance, true))
    }

    /// The CGI module template ([`Deployed::instance`]); an error for other backends.
    pub fn cgi_instance(
        &self,
        engine: &WasmEngine,
    ) -> Result<(WasmFunction, bool), FunctionsError> {
        match self.instance(engine)? {
            (Instance::Cgi(function), cold) => Ok((function, cold)),
            (Instance::Http(_), _) => Err(FunctionsError::Link(
                "the function is a wasi:http component, not a CGI module".into(),
            )),
        }
    }

    /// The `wasi:http` component template ([`Deployed::instance`]); an error for other
    /// backends.
    pub fn http_instance(
        &self,
        engine: &WasmEngine,
    ) -> Result<(HttpComponent, bool), FunctionsError> {
        match self.instance(engine)? {
            (Instance::Http(component), cold) => Ok((component, cold)),
            (Instance::Cgi(_), _) => Err(FunctionsError::Link(
                "the function is a CGI module, not a wasi:http component".into(),
            )),
        }
    }

    /// Instances running or starting, and those ready: for a WebAssembly function 0 or 1
    /// (one warm template serves every request), for an image function its pods.
    pub fn replicas(&self) -> (u32, u32) {
        match &self.config.backend {
            Backend::Wasm(_) | Backend::Component(_) => {
                let warm = u32::from(
                    self.warm
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some(),
                );
                (warm, warm)
            }
            Backend::Pods(pool) => {
                let counts = pool.counts();
                (counts.existing, counts.ready)
            }
        }
    }

    /// Drops the warm template when idle past the window and not held by `min_scale`;
    /// true when it scaled to zero now.
    pub fn scale_down_if_idle(&self, now_ms: u64) -> bool {
        if matches!(self.config.backend, Backend::Pods(_))
            || self.config.min_scale > 0
            || self.in_flight() > 0
        {
            return false;
        }
        let idle_ms = now_ms.saturating_sub(self.last_request.load(Ordering::Relaxed));
        if u128::from(idle_ms) < self.config.scale_to_zero_after.as_millis() {
            return false;
        }
        self.warm
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
    }

    /// Appends standard error output to the function's log.
    pub fn log(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        for line in text.lines() {
            logs.push_back(line.to_string());
            if logs.len() > LOG_LINES {
                logs.pop_front();
            }
        }
    }

    /// The last `tail` log lines.
    pub fn logs(&self, tail: usize) -> Vec<String> {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.iter()
            .skip(logs.len().saturating_sub(tail))
            .cloned()
            .collect()
    }
}

/// An admitted request; releases its slot when dropped.
pub struct InFlight(Arc<Deployed>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The functions the gateway serves, by key.
pub struct FunctionTable {
    engine: WasmEngine,
    functions: RwLock<HashMap<FunctionKey, Arc<Deployed>>>,
}

impl FunctionTable {
    /// An empty table over `engine`.
    pub fn new(engine: WasmEngine) -> Self {
        Self {
            engine,
            functions: RwLock::new(HashMap::new()),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    /// Serves `config`, replacing an earlier version of the function (whose meter totals
    /// carry over); `seed` starts the meter of a function not served yet. With `min_scale`
    /// above zero the instance template is linked now.
    pub fn upsert(
        &self,
        config: FunctionConfig,
        seed: UsageSnapshot,
    ) -> Result<(), FunctionsError> {
        let key = config.key.clone();
        let previous = self.get(&key).map(|d| d.meter.total());
        let meter = Arc::new(Meter::new(config.memory_bytes, previous.unwrap_or(seed)));
        let deployed = Arc::new(Deployed {
            config,
            meter,
            warm: Mutex::new(None),
            in_flight: AtomicU32::new(0),
            last_request: AtomicU64::new(now_millis()),
            logs: Mutex::new(VecDeque::new()),
        });
        if deployed.config.min_scale > 0 && !matches!(deployed.config.backend, Backend::Pods(_)) {
            deployed.instance(&self.engine)?;
        }
        if let Some(old) = self.get(&key) {
            deployed.log(&old.logs(LOG_LINES).join("\n"));
        }
        self.functions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, deployed);
        Ok(())
    }

    /// Stops serving a function; true if it was served.
    pub fn remove(&self, key: &FunctionKey) -> bool {
        self.functions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
            .is_some()
    }

    /// The function, if served.
    pub fn get(&self, key: &FunctionKey) -> Option<Arc<Deployed>> {
        self.functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Every served function, sorted by key.
    pub fn list(&self) -> Vec<Arc<Deployed>> {
        let mut all: Vec<_> = self
            .functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.config.key.cmp(&b.config.key));
        all
    }

    /// Scales idle functions to zero; returns the keys that scaled down.
    pub fn scale_down_idle(&self) -> Vec<FunctionKey> {
        let now = now_millis();
        self.list()
            .into_iter()
            .filter(|d| d.scale_down_if_idle(now))
            .map(|d| d.config.key.clone())
            .collect()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}
