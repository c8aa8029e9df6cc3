//! Image functions in the sync: a pod pool and a scaler task per function, kept in step
//! with the Function's spec; the pool is the function's backend in the table.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use strata_api::function::validate::{DEFAULT_PORT, DEFAULT_TARGET_CONCURRENCY};
use strata_api::function::{Function, FunctionSpec};

use super::NotReady;
use crate::instances::{self, Pools, ScaleSettings};
use crate::metering::UsageSnapshot;
use crate::pods::PodPool;
use crate::table::{Backend, FunctionKey, FunctionTable};

/// A scaler task, aborted when dropped.
struct Scaler {
    settings: Arc<Mutex<ScaleSettings>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scaler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The image functions' pools and scalers.
pub(super) struct ImageFunctions {
    client: kube::Client,
    pub(super) pools: Pools,
    scalers: Mutex<HashMap<FunctionKey, Scaler>>,
}

impl ImageFunctions {
    pub(super) fn new(client: kube::Client) -> Self {
        Self {
            client,
            pools: Arc::new(Mutex::new(HashMap::new())),
            scalers: Mutex::new(HashMap::new()),
        }
    }

    /// Serves `function` from pods: creates or updates its pool, scaler and table entry.
    pub(super) fn deploy(
        &self,
        table: &FunctionTable,
        key: &FunctionKey,
        function: &Function,
        spec: &FunctionSpec,
        seed: UsageSnapshot,
    ) -> Result<(), NotReady> {
        let port = spec
            .image
            .as_ref()
            .and_then(|i| i.port)
            .unwrap_or(DEFAULT_PORT);
        let port = u16::try_from(port).map_err(|_| NotReady {
            reason: "InvalidSpec",
            message: format!("spec.image.port {port} is not a port"),
        })?;
        let probe_template = instances::pod_template(key, spec, "", port);
        let spec_hash = {
            let mut hasher = DefaultHasher::new();
            serde_json::to_string(&probe_template.spec)
                .unwrap_or_default()
                .hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        };
        let template = instances::pod_template(key, spec, &spec_hash, port);
        let container_concurrency =
            u32::try_from(spec.container_concurrency.unwrap_or(0)).unwrap_or(0);
        let pool = {
            let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            match pools.get(key) {
                Some(pool) => {
                    pool.set_spec(port, container_concurrency, spec_hash.clone());
                    pool.clone()
                }
                None => {
                    let pool =
                        PodPool::new(key.clone(), port, container_concurrency, spec_hash.clone());
                    pools.insert(key.clone(), pool.clone());
                    pool
                }
            }
        };
        let config =
            super::config_of(key, spec, Backend::Pods(pool.clone())).map_err(|message| {
                NotReady {
                    reason: "InvalidSpec",
                    message,
                }
            })?;
        let settings = ScaleSettings {
            uid: function.uid().unwrap_or_default(),
            template,
            target: f64::from(
                spec.target_concurrency
                    .unwrap_or(DEFAULT_TARGET_CONCURRENCY)
                    .max(1),
            ),
            min_scale: config.min_scale,
            max_scale: u32::try_from(spec.max_scale.unwrap_or(10))
                .unwrap_or(1)
                .max(1),
            scale_to_zero_after: config.scale_to_zero_after,
        };
        {
            let mut scalers = self.scalers.lock().unwrap_or_else(|p| p.into_inner());
            match scalers.get(key) {
                Some(scaler) => {
                    *scaler.settings.lock().unwrap_or_else(|p| p.into_inner()) = settings
                }
                None => {
                    let settings = Arc::new(Mutex::new(settings));
                    let task = tokio::spawn(instances::scale(
                        self.client.clone(),
                        pool,
                        settings.clone(),
                    ));
                    scalers.insert(key.clone(), Scaler { settings, task });
                }
            }
        }
        table.upsert(config, seed).map_err(|e| NotReady {
            reason: "InvalidSpec",
            message: e.to_string(),
        })
    }

    /// Stops scaling a deleted function and removes its pods (the garbage collector
    /// would too, since the Function owns them, but not at once).
    pub(super) fn remove(&self, key: &FunctionKey) {
        let scaler = self
            .scalers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        if let Some(scaler) = scaler {
            let uid = scaler
                .settings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .uid
                .clone();
            // Abort the scaler before listing; a pod it was creating at that very moment
            // is left to the garbage collector.
            drop(scaler);
            tokio::spawn(instances::retire(self.client.clone(), key.clone(), uid));
        }
        self.pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}
