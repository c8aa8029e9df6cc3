//! The shared wasmtime engine: cranelift compilation, the pooling instance allocator with
//! copy-on-write memory images (instantiation costs microseconds), and the epoch ticker
//! that bounds how long an invocation may run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::FunctionsError;

/// How often the epoch advances: the granularity of timeouts, and how often a busy
/// function yields its thread to other requests.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Bytes of each pooled memory, table and stack slot reset with memset rather than
/// returned to the kernel when an instance is freed.
const KEEP_RESIDENT_BYTES: usize = 256 << 10;
/// Slots whose remaining pages are decommitted together, in one batch.
const DECOMMIT_BATCH: usize = 16;

/// Engine-wide limits.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Instances that may exist at once (pooled slots).
    pub max_instances: u32,
    /// The largest linear memory any function may be given, in bytes.
    pub max_memory_bytes: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_instances: 256,
            max_memory_bytes: 4 << 30,
        }
    }
}

/// One wasmtime engine shared by every function, with its epoch ticker.
#[derive(Clone)]
pub struct WasmEngine {
    engine: Engine,
    max_memory_bytes: u64,
    pooled: bool,
    _ticker: Arc<EpochTicker>,
}

impl WasmEngine {
    /// Builds the engine: pooled instances when the address space allows the reservation,
    /// on-demand allocation (slower to instantiate) otherwise.
    pub fn new(options: &EngineOptions) -> Result<Self, FunctionsError> {
        let pooled = Engine::new(&config(Some(options)));
        let (engine, pooled) = match pooled {
            Ok(engine) => (engine, true),
            Err(error) => {
                tracing::warn!(%error, "pooling allocator unavailable; instances are allocated on demand");
                let engine = Engine::new(&config(None))
                    .map_err(|e| FunctionsError::Engine(format!("{e:#}")))?;
                (engine, false)
            }
        };
        let ticker = EpochTicker::start(engine.clone())?;
        Ok(Self {
            engine,
            max_memory_bytes: options.max_memory_bytes,
            pooled,
            _ticker: Arc::new(ticker),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The largest memory a function may be given.
    pub fn max_memory_bytes(&self) -> u64 {
        self.max_memory_bytes
    }

    /// True when instances come from the pooling allocator.
    pub fn pooled(&self) -> bool {
        self.pooled
    }
}

fn config(pool: Option<&EngineOptions>) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    if let Some(options) = pool {
        let mut pooling = PoolingAllocationConfig::default();
        pooling.total_core_instances(options.max_instances);
        pooling.total_memories(options.max_instances);
        pooling.total_tables(options.max_instances);
        pooling.total_stacks(options.max_instances);
        pooling.total_component_instances(options.max_instances);
        pooling.max_memory_size(usize::try_from(options.max_memory_bytes).unwrap_or(usize::MAX));
        // Every request frees its instance. Resetting the first pages of a slot with memset
        // and batching the madvise calls for the rest spares most of the TLB shootdowns
        // (IPIs to every core) that a decommit per request costs; the slot is still reset
        // to its initial image before it is reused.
        pooling.linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
        pooling.table_keep_resident(KEEP_RESIDENT_BYTES);
        pooling.async_stack_keep_resident(KEEP_RESIDENT_BYTES);
        pooling.decommit_batch_size(DECOMMIT_BATCH);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    }
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Result<Self, FunctionsError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| FunctionsError::Engine(format!("starting the epoch ticker: {e}")))?;
        Ok(Self { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
