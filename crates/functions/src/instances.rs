//! Image functions' instances: pods the gateway creates for each image Function (owned by
//! it, so they go when it goes), the watch that tells the pool where they are, the probe
//! that finds them ready, and the scaler loop that asks the autoscaler how many to run,
//! creates pods, and drains then deletes surplus ones (no request is cut off).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, Pod, PodSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use strata_api::function::{API_VERSION, FunctionSpec, KIND};

use crate::autoscale::{self, Decision, Inputs, PANIC_WINDOW, Samples};
use crate::pods::PodPool;
use crate::table::FunctionKey;

/// The label naming a pod's function.
pub const FUNCTION_LABEL: &str = "serverless.strata.dev/function";
/// The label with the hash of the spec a pod was made from.
pub const SPEC_HASH_LABEL: &str = "serverless.strata.dev/spec-hash";
/// How long the gateway keeps probing a new pod's port.
const PROBE_FOR: Duration = Duration::from_secs(120);
/// How often the probe tries.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// How often the scaler samples concurrency and decides.
pub const TICK: Duration = Duration::from_secs(1);

/// What the scaler needs of a function, updated on every spec change.
#[derive(Clone, Debug)]
pub struct ScaleSettings {
    /// The Function's uid (owner of its pods).
    pub uid: String,
    /// The pod to make (no name).
    pub template: Pod,
    /// Concurrency per instance to aim for.
    pub target: f64,
    /// Fewest instances.
    pub min_scale: u32,
    /// Most instances.
    pub max_scale: u32,
    /// Idle window.
    pub scale_to_zero_after: Duration,
}

/// The pod an image function runs, labelled with its function and spec hash.
pub fn pod_template(key: &FunctionKey, spec: &FunctionSpec, spec_hash: &str, port: u16) -> Pod {
    let image = spec.image.clone().unwrap_or_default();
    let mut env: Vec<EnvVar> = spec.env.clone().unwrap_or_default();
    env.retain(|e| e.name != "PORT");
    env.push(EnvVar {
        name: "PORT".into(),
        value: Some(port.to_string()),
        value_from: None,
    });
    let memory = spec.memory.clone().map(|q| ApiQuantity(q.0));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", key.name)),
            namespace: Some(key.namespace.clone()),
            labels: Some(BTreeMap::from([
                (FUNCTION_LABEL.to_string(), key.name.clone()),
                (SPEC_HASH_LABEL.to_string(), spec_hash.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "function".into(),
                image: Some(image.name),
                command: image.command,
                args: image.args,
                env: Some(env),
                ports: Some(vec![ContainerPort {
                    container_port: i32::from(port),
                    name: Some("http".into()),
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                }]),
                resources: memory.map(|m| ResourceRequirements {
                    limits: Some(BTreeMap::from([("memory".to_string(), m)])),
                    ..ResourceRequirements::default()
                }),
                image_pull_policy: Some("IfNotPresent".into()),
                ..Container::default()
            }],
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(5),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The pools of the image functions, by key (shared by the watch and the sync).
pub type Pools = Arc<Mutex<HashMap<FunctionKey, Arc<PodPool>>>>;

/// Feeds every function pod's state to its pool and probes pods that start running.
pub async fn watch_pods(client: kube::Client, pools: Pools) {
    let config = watcher::Config::default().labels(FUNCTION_LABEL);
    let mut events = Box::pin(watcher::watcher(Api::<Pod>::all(client), config));
    // Pods seen by the current list, to forget those that vanished while disconnected.
    let mut listing: Vec<(FunctionKey, String)> = Vec::new();
    let mut known: Vec<(FunctionKey, String)> = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => {
                let id = pod_id(&pod);
                observe(&pools, &pod);
                listing.push(id.clone());
                if !known.contains(&id) {
                    known.push(id);
                }
            }
            Ok(Event::Delete(pod)) => {
                let (key, name) = pod_id(&pod);
                if let Some(pool) = pool_of(&pools, &key) {
                    pool.forget(&name);
                }
                known.retain(|k| *k != (key.clone(), name.clone()));
            }
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitDone) => {
                for (key, name) in known.iter().filter(|k| !listing.contains(k)) {
                    if let Some(pool) = pool_of(&pools, key) {
                        pool.forget(name);
                    }
                }
                known = std::mem::take(&mut listing);
            }
            Err(error) => {
                tracing::debug!(%error, "function pod watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn pod_id(pod: &Pod) -> (FunctionKey, String) {
    let function = pod
        .labels()
        .get(FUNCTION_LABEL)
        .cloned()
        .unwrap_or_default();
    (
        FunctionKey::new(pod.namespace().unwrap_or_default(), function),
        pod.name_any(),
    )
}

fn pool_of(pools: &Pools, key: &FunctionKey) -> Option<Arc<PodPool>> {
    pools
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(key)
        .cloned()
}

fn observe(pools: &Pools, pod: &Pod) {
    let (key, name) = pod_id(pod);
    let Some(pool) = pool_of(pools, &key) else {
        return;
    };
    let status = pod.status.clone().unwrap_or_default();
    let ip: Option<IpAddr> = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok());
    let running = status.phase.as_deref() == Some("Running");
    let terminating = pod.metadata.deletion_timestamp.is_some()
        || matches!(status.phase.as_deref(), Some("Failed" | "Succeeded"));
    let hash = pod
        .labels()
        .get(SPEC_HASH_LABEL)
        .cloned()
        .unwrap_or_default();
    if let Some(problem) = waiting_problem(pod) {
        pool.set_problem(Some(problem));
    }
    if pool.observe(&name, ip, running, terminating, &hash)
        && let Some(ip) = ip
    {
        let port = pool.port();
        tokio::spawn(probe(pool, name, std::net::SocketAddr::new(ip, port)));
    }
}

/// Why a pod's container does not run (`ErrImagePull: …`), if it says.
fn waiting_problem(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|s| {
        let waiting = s.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.clone()?;
        if reason == "ContainerCreating" || reason == "PodInitializing" {
            return None;
        }
        Some(match &waiting.message {
            Some(message) => format!("{reason}: {message}"),
            None => reason,
        })
    })
}

/// Connects to the pod's port until it answers, then marks it ready.
async fn probe(pool: Arc<PodPool>, pod: String, addr: std::net::SocketAddr) {
    let started = Instant::now();
    while started.elapsed() < PROBE_FOR {
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            tracing::debug!(function = %pool.key(), %pod, after = ?started.elapsed(), "instance ready");
            pool.set_problem(None);
            pool.set_ready(&pod, true);
            return;
        }
        let still_there = pool
            .pods()
            .get(&pod)
            .is_some_and(|e| !e.terminating && e.ip == Some(addr.ip()));
        if !still_there {
            return;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    pool.set_problem(Some(format!(
        "pod {pod} never accepted connections on port {}",
        addr.port()
    )));
}

/// Decides and applies the number of instances of one function until aborted.
pub async fn scale(client: kube::Client, pool: Arc<PodPool>, settings: Arc<Mutex<ScaleSettings>>) {
    let key = pool.key().clone();
    let pods = Api::<Pod>::namespaced(client, &key.namespace);
    let mut samples = Samples::default();
    let mut decision = Decision {
        replicas: 0,
        panicking: false,
    };
    let mut last_active = Instant::now();
    let mut next_tick = Instant::now();
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = pool.scaler_wanted() => {}
        }
        let settings = settings.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let counts = pool.counts();
        let concurrency = f64::from(counts.in_flight + counts.waiting);
        if concurrency > 0.0 {
            last_active = Instant::now();
        }
        let stable_ticks = ticks(autoscale::stable_window(settings.scale_to_zero_after));
        if Instant::now() >= next_tick {
            samples.push(concurrency, stable_ticks);
            next_tick = Instant::now() + TICK;
        }
        decision = autoscale::decide(&Inputs {
            stable_concurrency: samples.average(stable_ticks),
            panic_concurrency: samples.average(ticks(PANIC_WINDOW)),
            waiting: counts.waiting,
            ready: counts.ready,
            previous: decision.replicas,
            target: settings.target,
            min_scale: settings.min_scale,
            max_scale: settings.max_scale,
            idle_for: last_active.elapsed(),
            scale_to_zero_after: settings.scale_to_zero_after,
            panicking: decision.panicking,
        });
        if let Err(error) = converge(&pods, &pool, &settings, decision.replicas).await {
            tracing::warn!(function = %key, %error, "cannot scale the function");
        }
    }
}

fn ticks(window: Duration) -> usize {
    usize::try_from(window.as_secs() / TICK.as_secs().max(1))
        .unwrap_or(1)
        .max(1)
}

/// Deletes the pods a deleted function (`uid`) owned. The garbage collector would too;
/// the scaler that made them removes them at once so that a removed function stops
/// costing memory without waiting for it. Pods of a new Function of the same name (other
/// uid) are left alone.
pub async fn retire(client: kube::Client, key: FunctionKey, uid: String) {
    let pods: Api<Pod> = Api::namespaced(client, &key.namespace);
    let selector = format!("{FUNCTION_LABEL}={}", key.name);
    let listed = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(listed) => listed,
        Err(error) => {
            tracing::warn!(function = %key, %error, "cannot list a deleted function's pods; the garbage collector will remove them");
            return;
        }
    };
    for pod in listed {
        let owned = pod.owner_references().iter().any(|o| o.uid == uid);
        if !owned || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match pods
            .delete(&pod.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {
                tracing::debug!(function = %key, pod = %pod.name_any(), "instance of a deleted function removed")
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                tracing::warn!(function = %key, pod = %pod.name_any(), %error, "cannot remove a deleted function's pod; the garbage collector will")
            }
        }
    }
}

/// Creates or drains pods toward `replicas`, drains pods of old specs once a current
/// one is ready, and deletes drained pods.
async fn converge(
    pods: &Api<Pod>,
    pool: &Arc<PodPool>,
    settings: &ScaleSettings,
    replicas: u32,
) -> Result<(), kube::Error> {
    let counts = pool.counts();
    let current = pool.spec_hash();
    for _ in counts.live..replicas {
        let mut pod = settings.template.clone();
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            name: pool.key().name.clone(),
            uid: settings.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        let created = pods.create(&PostParams::default(), &pod).await?;
        pool.observe(&created.name_any(), None, false, false, &current);
        tracing::debug!(function = %pool.key(), pod = %created.name_any(), "instance created");
    }
    let entries = pool.pods();
    if counts.live > replicas {
        let mut candidates: Vec<_> = entries
            .iter()
            .filter(|(_, e)| e.spec_hash == current && !e.draining && !e.terminating)
            .collect();
        candidates.sort_by_key(|(_, e)| (e.ready, e.in_flight));
        for (name, _) in candidates
            .into_iter()
            .take((counts.live - replicas) as usize)
        {
            pool.drain(name);
        }
    }
    if counts.ready > 0 || replicas == 0 {
        for (name, _) in entries
            .iter()
            .filter(|(_, e)| e.spec_hash != current && !e.draining)
        {
            pool.drain(name);
        }
    }
    for name in pool.drained() {
        match pods.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                pool.observe(&name, None, false, true, "");
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                pool.forget(&name);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
