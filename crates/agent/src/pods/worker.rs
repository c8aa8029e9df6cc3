//! One task per Pod: it syncs what runs with what the Pod asks (sandbox, volumes, init
//! containers in order, then containers, restarts with Kubernetes' back-off), reports the
//! status when it changes, and on deletion stops the containers gracefully, removes
//! everything of the pod and lets the API server drop the object.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use strata_client::events::EventType;
use strata_image::{Image, Reference};
use strata_runtime::{ContainerId, Sandbox, Signal};

use super::actions::{self, Action, Network, Target};
use super::downward::Allocatable;
use super::prober::{self, ContainerProbes};
use super::projected::VolumeInputs;
use super::status::{self, Observed};
use super::tokens::TokenCache;
use super::translate::{self, ConfigError, Inputs};
use super::volumes;
use crate::Context;
use crate::containers::attach::StdioMode;
use crate::containers::{Entry, ImageUse, Meta, monitor};

/// Label keys on the containers of pods (CRI's).
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// Label with the pod's name.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// Label with the pod's namespace.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Label with the container's name.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// First back-off after a container ended (the first restart is immediate).
const BACKOFF_START: Duration = Duration::from_secs(10);
/// Longest a postStart hook may take (Kubernetes sets none; a hook that hangs would
/// hold the pod's worker forever).
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long resets its back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The container ID of attempt `attempt` of container `name` of pod `uid`.
pub fn container_id(uid: &str, name: &str, attempt: u32) -> Option<ContainerId> {
    ContainerId::new(format!("{uid}-{name}-{attempt}")).ok()
}

#[derive(Default)]
struct Backoff {
    delay: Duration,
    not_before: Option<Instant>,
}

/// What a pod worker keeps between syncs.
pub struct Worker {
    ctx: Arc<Context>,
    uid: String,
    attempts: BTreeMap<String, u32>,
    backoff: BTreeMap<String, Backoff>,
    waiting: BTreeMap<String, (String, String)>,
    image_ids: BTreeMap<String, String>,
    probes: BTreeMap<String, ContainerProbes>,
    pod_cgroup: Option<PathBuf>,
    reported: Option<serde_json::Value>,
    /// The last volume setup failure reported as an event.
    mount_error: Option<String>,
    /// The node's allocatable resources, read once.
    allocatable: Option<Allocatable>,
    /// Service account tokens of the pod's projected volumes.
    tokens: TokenCache,
    /// The ConfigMaps and Secrets last read for the pod.
    fetched: Option<Fetched>,
    /// The pod's address, once its sandbox is on the network (the node's for
    /// `hostNetwork` pods).
    pod_ip: Option<String>,
}

/// How long the ConfigMaps and Secrets read for a pod are reused before they are read
/// again (the kubelet's TTL-cache strategy, whose default is a minute): every pod refers
/// to `kube-root-ca.crt`, and a read per pod per sync would load the API server. A pod
/// whose setup failed reads them again at once.
const SOURCES_TTL: Duration = Duration::from_secs(10);

/// ConfigMaps and Secrets read for a pod, and when.
struct Fetched {
    at: Instant,
    names: (Vec<String>, Vec<String>),
    data: (volumes::Sources, volumes::Sources),
}

/// What the worker does next.
pub enum Next {
    /// Sync again after this long (or earlier when poked).
    After(Duration),
    /// The pod is gone; the worker ends.
    Done,
}

impl Worker {
    /// A worker for pod `uid`, knowing the attempts already on this machine.
    pub fn new(ctx: Arc<Context>, uid: String, attempts: BTreeMap<String, u32>) -> Self {
        Self {
            ctx,
            uid,
            attempts,
            backoff: BTreeMap::new(),
            waiting: BTreeMap::new(),
            image_ids: BTreeMap::new(),
            probes: BTreeMap::new(),
            pod_cgroup: None,
            reported: None,
            mount_error: None,
            allocatable: None,
            tokens: TokenCache::default(),
            fetched: None,
            pod_ip: None,
        }
    }

    fn pod_dir(&self) -> PathBuf {
        self.ctx.options.data_dir.join("pods").join(&self.uid)
    }

    fn sandbox(&self) -> Sandbox {
        sandbox_of(&self.ctx, &self.uid)
    }

    /// Syncs once against `pod` (`None`: the pod no longer exists).
    pub async fn sync(&mut self, pod: Option<Pod>) -> Next {
        let Some(pod) = pod else {
            self.tear_down(None).await;
            return Next::Done;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            self.tear_down(Some(&pod)).await;
            return Next::Done;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let finished = phase == "Succeeded" || phase == "Failed";
        if !finished && let Err(err) = self.run_pod(&pod).await {
            for container in all_containers(&pod) {
                self.waiting
                    .entry(container.name.clone())
                    .or_insert_with(|| ("CreateContainerConfigError".into(), err.0.clone()));
            }
        }
        self.update_probes(&pod).await;
        let observed = self.observe(&pod);
        let policy = restart_policy(&pod);
        let phase = if finished {
            phase.as_str()
        } else {
            status::phase(&observed, &policy)
        };
        let status = status::pod_status(
            &pod,
            &observed,
            &self.ctx.options.node_ip,
            self.pod_ip.as_deref(),
            phase,
        );
        self.report(&pod, status).await;
        if phase == "Succeeded" || phase == "Failed" {
            self.stop_all(&pod, Duration::ZERO).await;
        }
        let now = Instant::now();
        let soonest = self
            .backoff
            .values()
            .filter_map(|b| b.not_before)
            .filter(|t| *t > now)
            .map(|t| t - now)
            .min()
            .unwrap_or(Duration::from_secs(1));
        Next::After(soonest.min(Duration::from_secs(1)))
    }

    /// Starts what should run: sandbox, volumes, init containers in order, containers.
    async fn run_pod(&mut self, pod: &Pod) -> Result<(), ConfigError> {
        let sandbox = self.sandbox();
        let hostname = pod.metadata.name.clone().unwrap_or_default();
        let made = tokio::task::spawn_blocking(move || sandbox.create(&hostname)).await;
        match made {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                return Err(ConfigError(format!(
                    "cannot create the pod sandbox: {}",
                    monitor::one_line(&err)
                )));
            }
            Err(err) => return Err(ConfigError(format!("cannot create the pod sandbox: {err}"))),
        }
        if self.pod_ip.is_none() {
            let ip = self.attach_network(pod).await?;
            self.write_name_files(pod, &ip)?;
            self.pod_ip = Some(ip);
        }
        if self.pod_cgroup.is_none() {
            let path = super::cgroup::path(pod, &self.uid);
            let limits = super::cgroup::limits(pod)?;
            let group = path.clone();
            tokio::task::spawn_blocking(move || strata_cgroups::group::ensure(&group, &limits))
                .await
                .map_err(|err| ConfigError(err.to_string()))?
                .map_err(|err| {
                    ConfigError(format!(
                        "cannot make the pod cgroup: {}",
                        monitor::one_line(&err)
                    ))
                })?;
            self.pod_cgroup = Some(path);
        }
        let inputs = self.volume_inputs(pod).await?;
        let pod_dir = self.pod_dir();
        let prepared = {
            let (pod, inputs) = (pod.clone(), inputs.clone());
            tokio::task::spawn_blocking(move || volumes::prepare(&pod, &pod_dir, &inputs))
                .await
                .map_err(|err| ConfigError(err.to_string()))?
        };
        let volumes = match prepared {
            Ok(volumes) => {
                self.mount_error = None;
                volumes
            }
            Err(err) => {
                // Like the kubelet: the pod waits in ContainerCreating, a FailedMount
                // event says why (once per distinct reason), and the next sync retries.
                let message = err.to_string();
                if self.mount_error.as_ref() != Some(&message) {
                    tracing::warn!(pod = %pod_key(pod), error = %message, "volume setup failed");
                    self.event(pod, None, EventType::Warning, "FailedMount", &message)
                        .await;
                    self.mount_error = Some(message);
                }
                return Ok(());
            }
        };
        let (config_maps, secrets) = (&inputs.config_maps, &inputs.secrets);
        let policy = restart_policy(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let init_containers = spec.init_containers.clone().unwrap_or_default();
        for container in &init_containers {
            match self.latest(&container.name) {
                None => {
                    self.start(pod, container, &volumes, config_maps, secrets)
                        .await;
                    return Ok(());
                }
                Some(entry) if entry.is_running() => return Ok(()),
                Some(entry) => match entry.exit.as_ref().map(|e| e.code) {
                    Some(0) => continue,
                    Some(_) if policy == "Never" => return Ok(()),
                    Some(_) => {
                        self.restart(pod, container, &entry, &volumes, config_maps, secrets)
                            .await;
                        return Ok(());
                    }
                    None => return Ok(()),
                },
            }
        }
        for container in &spec.containers {
            match self.latest(&container.name) {
                None => {
                    self.start(pod, container, &volumes, config_maps, secrets)
                        .await
                }
                Some(entry) if entry.is_running() => {}
                Some(entry) => {
                    let code = entry.exit.as_ref().map(|e| e.code);
                    let again = match policy.as_str() {
                        "Always" => code.is_some(),
                        "OnFailure" => code.is_some_and(|c| c != 0),
                        _ => false,
                    };
                    if again {
                        self.restart(pod, container, &entry, &volumes, config_maps, secrets)
                            .await;
                    }
                }
            }
        }
        Ok(())
    }

    /// The latest attempt of a container, when there is one.
    fn latest(&self, name: &str) -> Option<Entry> {
        let attempt = *self.attempts.get(name)?;
        let id = container_id(&self.uid, name, attempt)?;
        self.ctx.containers.entry(&id).ok()
    }

    async fn restart(
        &mut self,
        pod: &Pod,
        container: &Container,
        ended: &Entry,
        volumes: &BTreeMap<String, PathBuf>,
        config_maps: &volumes::Sources,
        secrets: &volumes::Sources,
    ) {
        let now = Instant::now();
        let finished = ended.exit.as_ref().map(|e| e.finished);
        let ran_long = finished
            .and_then(|f| (f - ended.meta.created).to_std().ok())
            .is_some_and(|ran| ran >= BACKOFF_RESET);
        let backoff = self.backoff.entry(container.name.clone()).or_default();
        if ran_long {
            *backoff = Backoff::default();
        }
        // Kubernetes' back-off counts from the container's exit: the first restart is
        // immediate, then 10 s, 20 s, 40 s … up to 5 min.
        let since_exit = finished
            .and_then(|f| (chrono::Utc::now() - f).to_std().ok())
            .unwrap_or_default();
        if since_exit < backoff.delay {
            backoff.not_before = Some(now + (backoff.delay - since_exit));
            let message = format!(
                "back-off {}s restarting failed container={} pod={}({})",
                backoff.delay.as_secs(),
                container.name,
                pod_key(pod),
                self.uid
            );
            let first = !self.waiting.contains_key(&container.name);
            self.waiting
                .insert(container.name.clone(), ("CrashLoopBackOff".into(), message));
            if first {
                let text = format!(
                    "Back-off restarting failed container {} in pod {}({})",
                    container.name,
                    pod_key(pod),
                    self.uid
                );
                self.event(
                    pod,
                    Some(&container.name),
                    EventType::Warning,
                    "BackOff",
                    &text,
                )
                .await;
            }
            return;
        }
        backoff.not_before = None;
        backoff.delay = if backoff.delay.is_zero() {
            BACKOFF_START
        } else {
            (backoff.delay * 2).min(BACKOFF_MAX)
        };
        self.start(pod, container, volumes, config_maps, secrets)
            .await;
    }

    /// Pulls the image as the policy says, prepares the next attempt and starts it.
    async fn start(
        &mut self,
        pod: &Pod,
        container: &Container,
        volumes: &BTreeMap<String, PathBuf>,
        config_maps: &volumes::Sources,
        secrets: &volumes::Sources,
    ) {
        let name = container.name.clone();
        let image = match self.image(pod, container).await {
            Ok(image) => image,
            Err((reason, message)) => {
                self.waiting.insert(name, (reason, message));
                return;
            }
        };
        self.image_ids
            .insert(name.clone(), image.config_digest.to_string());
        let attempt = self.attempts.get(&name).map_or(0, |a| a + 1);
        let Some(id) = container_id(&self.uid, &name, attempt) else {
            self.waiting.insert(
                name,
                (
                    "CreateContainerError".into(),
                    "container ID too long".into(),
                ),
            );
            return;
        };
        let ctx = self.ctx.clone();
        let (pod_c, container_c) = (pod.clone(), container.clone());
        let (volumes, maps, secrets) = (volumes.clone(), config_maps.clone(), secrets.clone());
        let sandbox = self.sandbox();
        let uid = self.uid.clone();
        let pod_ip = self.pod_ip.clone().unwrap_or_default();
        let started_id = id.clone();
        let service_env = self.service_links(pod).await;
        let cgroup = self
            .pod_cgroup
            .clone()
            .unwrap_or_else(|| super::cgroup::path(pod, &self.uid))
            .join(id.as_str());
        let started = tokio::task::spawn_blocking(move || {
            start_blocking(
                &ctx,
                &pod_c,
                &container_c,
                &image,
                &id,
                Placement {
                    sandbox,
                    cgroup,
                    uid,
                    pod_ip,
                    service_env,
                },
                &volumes,
                &maps,
                &secrets,
            )
        })
        .await
        .unwrap_or_else(|err| Err(("RunContainerError".into(), err.to_string())));
        match started {
            Ok(()) => {
                self.attempts.insert(name.clone(), attempt);
                self.waiting.remove(&name);
                self.remove_old_attempts(&name, attempt).await;
                self.event(
                    pod,
                    Some(&name),
                    EventType::Normal,
                    "Created",
                    &format!("Created container: {name}"),
                )
                .await;
                self.event(
                    pod,
                    Some(&name),
                    EventType::Normal,
                    "Started",
                    &format!("Started container {name}"),
                )
                .await;
                self.post_start(pod, container, started_id).await;
            }
            Err((reason, message)) => {
                self.event(
                    pod,
                    Some(&name),
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {message}"),
                )
                .await;
                self.waiting.insert(name, (reason, message));
            }
        }
    }

    /// Runs the container's postStart hook; when it fails, the container is killed (and
    /// restarted as its policy says), like the kubelet does.
    async fn post_start(&self, pod: &Pod, container: &Container, id: ContainerId) {
        let Some(handler) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
        else {
            return;
        };
        let target = target(&self.ctx, pod, self.sandbox(), id.clone());
        let result = match Action::of_handler(handler, container) {
            Ok(action) => actions::run(&action, &target, POST_START_TIMEOUT).await,
            Err(failure) => Err(failure),
        };
        let Err(failure) = result else {
            return;
        };
        let name = container.name.as_str();
        let message = format!("PostStartHook failed: {failure}");
        self.event(
            pod,
            Some(name),
            EventType::Warning,
            "FailedPostStartHook",
            &message,
        )
        .await;
        let victim = Victim {
            container: container.clone(),
            id,
            why: format!("FailedPostStartHook: stopping container {name}"),
        };
        let sandbox = self.sandbox();
        stop_containers(&self.ctx, pod, &sandbox, vec![victim], grace_period(pod)).await;
    }

    /// Keeps the attempt before `current` (for `logs --previous`), removes older ones.
    async fn remove_old_attempts(&self, name: &str, current: u32) {
        if current < 2 {
            return;
        }
        if let Some(id) = container_id(&self.uid, name, current - 2) {
            let ctx = self.ctx.clone();
            let _ = tokio::task::spawn_blocking(move || ctx.containers.remove(&id, true)).await;
        }
    }

    /// Resolves the container's image, pulling it as `imagePullPolicy` says.
    async fn image(&mut self, pod: &Pod, container: &Container) -> Result<Image, (String, String)> {
        let name = container.image.clone().unwrap_or_default();
        let policy = container
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| "IfNotPresent".into());
        let local = self.ctx.images.resolve(&name);
        match (policy.as_str(), local) {
            ("Never", Ok(image)) | ("IfNotPresent", Ok(image)) => {
                let text = format!("Container image \"{name}\" already present on machine");
                self.event(
                    pod,
                    Some(&container.name),
                    EventType::Normal,
                    "Pulled",
                    &text,
                )
                .await;
                Ok(image)
            }
            ("Never", Err(_)) => {
                let message =
                    format!("Container image \"{name}\" is not present with pull policy of Never");
                self.event(
                    pod,
                    Some(&container.name),
                    EventType::Warning,
                    "ErrImageNeverPull",
                    &message,
                )
                .await;
                Err(("ErrImageNeverPull".into(), message))
            }
            _ => {
                let pull_key = format!("pull:{}", container.name);
                if let Some(backoff) = self.backoff.get(&pull_key)
                    && backoff.not_before.is_some_and(|t| t > Instant::now())
                {
                    return Err((
                        "ImagePullBackOff".into(),
                        format!("Back-off pulling image \"{name}\""),
                    ));
                }
                self.event(
                    pod,
                    Some(&container.name),
                    EventType::Normal,
                    "Pulling",
                    &format!("Pulling image \"{name}\""),
                )
                .await;
                // registry::pull's future is not Send (a closure held across an await in
                // the image crate), so it runs on a blocking thread driving the runtime.
                let (ctx, image_name) = (self.ctx.clone(), name.clone());
                let handle = tokio::runtime::Handle::current();
                let pulled = tokio::task::spawn_blocking(move || {
                    handle.block_on(pull_image(&ctx.images, &image_name))
                })
                .await
                .unwrap_or_else(|err| Err(err.to_string()));
                match pulled {
                    Ok(image) => {
                        self.backoff.remove(&pull_key);
                        let text = format!("Successfully pulled image \"{name}\"");
                        self.event(
                            pod,
                            Some(&container.name),
                            EventType::Normal,
                            "Pulled",
                            &text,
                        )
                        .await;
                        Ok(image)
                    }
                    Err(err) => {
                        let backoff = self.backoff.entry(pull_key).or_default();
                        backoff.delay = (backoff.delay * 2).clamp(BACKOFF_START, BACKOFF_MAX);
                        backoff.not_before = Some(Instant::now() + backoff.delay);
                        let message = format!("Failed to pull image \"{name}\": {err}");
                        self.event(
                            pod,
                            Some(&container.name),
                            EventType::Warning,
                            "Failed",
                            &message,
                        )
                        .await;
                        Err(("ErrImagePull".into(), message))
                    }
                }
            }
        }
    }

    /// What the pod's volumes are made of: the ConfigMaps and Secrets it refers to, its
    /// service account tokens and the node's allocatable resources.
    async fn volume_inputs(&mut self, pod: &Pod) -> Result<VolumeInputs, ConfigError> {
        let names = referenced_sources(pod);
        let failing = self.mount_error.is_some()
            || self
                .waiting
                .values()
                .any(|(reason, _)| reason == "CreateContainerConfigError");
        let cached = self
            .fetched
            .as_ref()
            .filter(|f| !failing && f.names == names && f.at.elapsed() < SOURCES_TTL);
        let (config_maps, secrets) = match cached {
            Some(fetched) => fetched.data.clone(),
            None => {
                let data = self.fetch_sources(pod, names.clone()).await?;
                self.fetched = Some(Fetched {
                    at: Instant::now(),
                    names,
                    data: data.clone(),
                });
                data
            }
        };
        let node = *self.allocatable.get_or_insert_with(|| {
            let machine = crate::node::Machine::read(&self.ctx.options.data_dir);
            Allocatable {
                cpu_milli: machine.cpus as i64 * 1000,
                memory_bytes: machine.memory_kib as i64 * 1024,
                ephemeral_storage_bytes: machine.storage_bytes as i64,
            }
        });
        Ok(VolumeInputs {
            config_maps,
            secrets,
            tokens: self
                .tokens
                .tokens(&self.ctx.client, pod, Instant::now())
                .await,
            node,
        })
    }

    /// The link variables of the Services in the pod's namespace, unless the pod turned
    /// them off. A failed list costs only the variables (logged), not the container.
    async fn service_links(&self, pod: &Pod) -> Vec<(String, String)> {
        let spec = pod.spec.as_ref();
        if spec.and_then(|s| s.enable_service_links) == Some(false) {
            return Vec::new();
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), namespace);
        match api.list(&Default::default()).await {
            Ok(list) => super::service_env::of_services(&list.items),
            Err(err) => {
                tracing::warn!(pod = %pod_key(pod), error = %err, "cannot list the namespace's services; no service link variables");
                Vec::new()
            }
        }
    }

    /// Reads the ConfigMaps and Secrets the pod refers to (`names`: their names).
    async fn fetch_sources(
        &self,
        pod: &Pod,
        names: (Vec<String>, Vec<String>),
    ) -> Result<(volumes::Sources, volumes::Sources), ConfigError> {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let (map_names, secret_names) = names;
        let client = &self.ctx.client;
        let config_maps = read_sources(client, &namespace, map_names, |map: ConfigMap| {
            let mut data = map.data.unwrap_or_default();
            data.extend(binary_as_text(map.binary_data.unwrap_or_default()));
            data
        })
        .await?;
        let secrets = read_sources(client, &namespace, secret_names, |secret: Secret| {
            let mut data: BTreeMap<String, String> =
                binary_as_text(secret.data.unwrap_or_default()).collect();
            data.extend(secret.string_data.unwrap_or_default());
            data
        })
        .await?;
        Ok((config_maps, secrets))
    }

    fn observe(&self, pod: &Pod) -> Vec<Observed> {
        let spec = pod.spec.clone().unwrap_or_default();
        let inits = spec.init_containers.iter().flatten().map(|c| (c, true));
        inits
            .chain(spec.containers.iter().map(|c| (c, false)))
            .map(|(container, init)| {
                let attempt = self.attempts.get(&container.name).copied();
                let entry_of = |n: u32| {
                    container_id(&self.uid, &container.name, n)
                        .and_then(|id| self.ctx.containers.entry(&id).ok())
                };
                Observed {
                    name: container.name.clone(),
                    init,
                    image: container.image.clone().unwrap_or_default(),
                    image_id: self.image_ids.get(&container.name).cloned(),
                    current: attempt.and_then(|n| entry_of(n).map(|e| (n, e))),
                    previous: attempt.and_then(|n| n.checked_sub(1)).and_then(entry_of),
                    waiting: self.waiting.get(&container.name).cloned(),
                    probed: self
                        .probes
                        .get(&container.name)
                        .filter(|p| Some(p.attempt) == attempt)
                        .map(ContainerProbes::verdicts)
                        .or_else(|| prober::has_probes(container).then(Default::default)),
                }
            })
            .collect()
    }

    async fn report(&mut self, pod: &Pod, status: k8s_openapi::api::core::v1::PodStatus) {
        let Ok(value) = serde_json::to_value(&status) else {
            return;
        };
        // Reported already, unless someone else changed it since (the node controller
        // marks the pods of a silent node not ready; the agent is back, so say so).
        if self.reported.as_ref() == Some(&value)
            && ready_of(pod.status.as_ref()) == ready_of(Some(&status))
        {
            return;
        }
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({"status": value});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.reported = Some(value),
            Err(err) => tracing::debug!(pod = %name, error = %err, "cannot report the pod status"),
        }
    }

    /// Starts the probes of newly running containers, drops those of ended attempts, and
    /// restarts containers whose liveness or startup probe failed.
    async fn update_probes(&mut self, pod: &Pod) {
        let spec = pod.spec.clone().unwrap_or_default();
        for container in &spec.containers {
            let name = &container.name;
            let running = self
                .latest(name)
                .filter(Entry::is_running)
                .zip(self.attempts.get(name).copied());
            let Some((entry, attempt)) = running.filter(|_| prober::has_probes(container)) else {
                self.probes.remove(name);
                continue;
            };
            if self.probes.get(name).is_none_or(|p| p.attempt != attempt) {
                let Some(id) = container_id(&self.uid, name, attempt) else {
                    continue;
                };
                let running_for = (chrono::Utc::now() - entry.meta.created)
                    .to_std()
                    .unwrap_or_default();
                let mut reference = pod.object_ref(&());
                reference.field_path = Some(field_path(pod, name));
                let probes = ContainerProbes::start(
                    self.ctx.clone(),
                    container,
                    attempt,
                    target(&self.ctx, pod, self.sandbox(), id),
                    running_for,
                    reference,
                );
                self.probes.insert(name.clone(), probes);
            }
            let Some(probes) = self.probes.get_mut(name) else {
                continue;
            };
            if probes.killing {
                continue;
            }
            if let Some(why) = probes.verdicts().kill {
                probes.killing = true;
                let Some(id) = container_id(&self.uid, name, attempt) else {
                    continue;
                };
                let grace = [&container.liveness_probe, &container.startup_probe]
                    .into_iter()
                    .flatten()
                    .find_map(|p| p.termination_grace_period_seconds)
                    .map_or_else(
                        || grace_period(pod),
                        |s| Duration::from_secs(s.max(0) as u64),
                    );
                let victim = Victim {
                    container: container.clone(),
                    id,
                    why,
                };
                let (ctx, pod, sandbox) = (self.ctx.clone(), pod.clone(), self.sandbox());
                tokio::spawn(async move {
                    stop_containers(&ctx, &pod, &sandbox, vec![victim], grace).await;
                });
            }
        }
    }

    /// Stops every running container of the pod: preStop hooks, SIGTERM, then SIGKILL
    /// after `grace`.
    async fn stop_all(&self, pod: &Pod, grace: Duration) {
        let victims: Vec<Victim> = all_containers(pod)
            .into_iter()
            .filter_map(|container| {
                let attempt = *self.attempts.get(&container.name)?;
                let id = container_id(&self.uid, &container.name, attempt)?;
                Some(Victim {
                    why: format!("Stopping container {}", container.name),
                    container,
                    id,
                })
            })
            .filter(|v| {
                self.ctx
                    .containers
                    .entry(&v.id)
                    .is_ok_and(|e| e.is_running())
            })
            .collect();
        stop_containers(&self.ctx, pod, &self.sandbox(), victims, grace).await;
    }

    /// The pod's address: the node's with `hostNetwork`, else one from the node's subnet
    /// for the sandbox, plugged into the bridge.
    async fn attach_network(&self, pod: &Pod) -> Result<String, ConfigError> {
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            return Ok(self.ctx.options.node_ip.clone());
        }
        let Some(network) = self.ctx.network.get() else {
            return Err(ConfigError(
                "the node's pod network is not set up yet".into(),
            ));
        };
        match network.attach(&self.uid, &self.sandbox().net()).await {
            Ok(address) => Ok(address.ip.to_string()),
            Err(err) => {
                let message = format!(
                    "cannot attach the pod sandbox to the network: {}",
                    monitor::one_line(&err)
                );
                self.event(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    &message,
                )
                .await;
                Err(ConfigError(message))
            }
        }
    }

    /// Writes the pod's `/etc/resolv.conf` and `/etc/hosts` (mounted into each container).
    fn write_name_files(&self, pod: &Pod, pod_ip: &str) -> Result<(), ConfigError> {
        let options = &self.ctx.options;
        let dns = super::dns::ClusterDns {
            ip: options.cluster_dns,
            domain: options.cluster_domain.clone(),
        };
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let hosts = if host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            super::dns::hosts(pod, pod_ip, &options.cluster_domain)
        };
        let dir = self.pod_dir();
        for (name, text) in [
            (
                RESOLV_CONF,
                super::dns::resolv_conf(pod, &dns, &host_resolv),
            ),
            (HOSTS, hosts),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|err| ConfigError(format!("cannot write {}: {err}", path.display())))?;
        }
        Ok(())
    }

    /// Stops and removes everything of the pod; deletes the object once it is empty.
    async fn tear_down(&mut self, pod: Option<&Pod>) {
        self.probes.clear();
        if let Some(pod) = pod {
            self.stop_all(pod, grace_period(pod)).await;
        }
        if let Some(network) = self.ctx.network.get()
            && let Err(err) = network.detach(&self.uid).await
        {
            tracing::warn!(pod = %self.uid, error = %monitor::one_line(&err), "cannot detach the pod from the network");
        }
        let ctx = self.ctx.clone();
        let uid = self.uid.clone();
        let sandbox = self.sandbox();
        let pod_dir = self.pod_dir();
        let _ = tokio::task::spawn_blocking(move || {
            remove_containers_of(&ctx, &uid);
            for group in super::cgroup::candidate_paths(&uid) {
                if let Err(err) = strata_cgroups::group::remove(&group) {
                    tracing::warn!(pod = %uid, error = %monitor::one_line(&err), "cannot remove the pod cgroup");
                }
            }
            volumes::remove(&pod_dir);
            let _ = sandbox.remove();
            let _ = std::fs::remove_dir_all(&pod_dir);
        })
        .await;
        if let Some(pod) = pod {
            let namespace = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if let Err(err) = api.delete(&name, &params).await {
                tracing::debug!(pod = %name, error = %err, "cannot delete the terminated pod");
            }
        }
    }

    async fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        event(&self.ctx, pod, container, kind, reason, message).await;
    }
}

/// The status of a pod status's Ready condition.
fn ready_of(status: Option<&k8s_openapi::api::core::v1::PodStatus>) -> Option<&str> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// Records an event about `pod`, or one of its containers.
async fn event(
    ctx: &Context,
    pod: &Pod,
    container: Option<&str>,
    kind: EventType,
    reason: &str,
    message: &str,
) {
    let mut reference = pod.object_ref(&());
    if let Some(name) = container {
        reference.field_path = Some(field_path(pod, name));
    }
    ctx.recorder
        .publish(&reference, kind, reason, message)
        .await;
}

/// Where a container's probes and hooks run.
fn target(ctx: &Context, pod: &Pod, sandbox: Sandbox, id: ContainerId) -> Target {
    Target {
        strata: ctx.options.strata.clone(),
        container: id,
        network: network(ctx, pod, sandbox),
    }
}

/// The network `pod` lives in: the host's with `hostNetwork`, else its sandbox's.
pub fn network(ctx: &Context, pod: &Pod, sandbox: Sandbox) -> Network {
    if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        Network::Host(ctx.options.node_ip.clone())
    } else {
        Network::Sandbox(sandbox)
    }
}

/// The sandbox of the pod with `uid` on this node.
pub fn sandbox_of(ctx: &Context, uid: &str) -> Sandbox {
    Sandbox::at(ctx.options.data_dir.join("pods").join(uid).join("sandbox"))
}

/// The grace period of a pod's termination: the deletion's, else the spec's (30 s).
fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(seconds.max(0) as u64)
}

/// A container to stop, and why (the `Killing` event's message).
struct Victim {
    container: Container,
    id: ContainerId,
    why: String,
}

/// Stops containers like the kubelet: their preStop hooks, then SIGTERM, then SIGKILL
/// once `grace` (which the hooks use up too) is over.
async fn stop_containers(
    ctx: &Arc<Context>,
    pod: &Pod,
    sandbox: &Sandbox,
    victims: Vec<Victim>,
    grace: Duration,
) {
    let deadline = Instant::now() + grace;
    let mut hooks = Vec::new();
    for victim in &victims {
        let name = victim.container.name.as_str();
        event(
            ctx,
            pod,
            Some(name),
            EventType::Normal,
            "Killing",
            &victim.why,
        )
        .await;
        let Some(handler) = victim
            .container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
        else {
            continue;
        };
        let target = target(ctx, pod, sandbox.clone(), victim.id.clone());
        let action = Action::of_handler(handler, &victim.container);
        hooks.push(async move {
            let result = match action {
                Ok(action) => tokio::time::timeout(grace, actions::run(&action, &target, grace))
                    .await
                    .unwrap_or_else(|_| {
                        Err(actions::Failure(format!(
                            "did not end within the grace period of {}s",
                            grace.as_secs()
                        )))
                    }),
                Err(failure) => Err(failure),
            };
            (name, result)
        });
    }
    for (name, result) in futures_util::future::join_all(hooks).await {
        if let Err(failure) = result {
            let message = format!("PreStopHook failed: {failure}");
            event(
                ctx,
                pod,
                Some(name),
                EventType::Warning,
                "FailedPreStopHook",
                &message,
            )
            .await;
        }
    }
    let ctx = ctx.clone();
    let ids: Vec<ContainerId> = victims.into_iter().map(|v| v.id).collect();
    let _ = tokio::task::spawn_blocking(move || {
        for id in &ids {
            let _ = ctx.containers.runtime().kill(id, Signal::SIGTERM, true);
        }
        while Instant::now() < deadline
            && ids
                .iter()
                .any(|id| ctx.containers.entry(id).is_ok_and(|e| e.is_running()))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for id in &ids {
            if ctx.containers.entry(id).is_ok_and(|e| e.is_running()) {
                let _ = ctx.containers.runtime().kill(id, Signal::SIGKILL, true);
            }
        }
    })
    .await;
}

/// Removes every container of pod `uid` on this machine.
pub fn remove_containers_of(ctx: &Context, uid: &str) {
    if let Ok(entries) = ctx.containers.list() {
        for entry in entries {
            if entry.meta.labels.get(POD_UID_LABEL).map(String::as_str) == Some(uid)
                && let Ok(id) = ContainerId::new(entry.meta.id.clone())
            {
                let _ = ctx.containers.remove(&id, true);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn start_blocking(
    ctx: &Context,
    pod: &Pod,
    container: &Container,
    image: &Image,
    id: &ContainerId,
    placement: Placement,
    volumes: &BTreeMap<String, PathBuf>,
    config_maps: &volumes::Sources,
    secrets: &volumes::Sources,
) -> Result<(), (String, String)> {
    let Placement {
        sandbox,
        cgroup,
        uid,
        pod_ip,
        service_env,
    } = placement;
    let config_error = |err: ConfigError| ("CreateContainerConfigError".to_string(), err.0);
    let prepared = ctx.containers.prepare(id.as_str(), |dir| {
        let (rootfs, _) = strata_image::rootfs::prepare_rootfs(&ctx.images, image, dir)
            .map_err(|err| ("CreateContainerError".to_string(), monitor::one_line(&err)))?;
        let inputs = Inputs {
            image: &image.config,
            rootfs,
            sandbox,
            config_maps,
            secrets,
            volumes,
            node_name: &ctx.options.node_name,
            host_ip: &ctx.options.node_ip,
            pod_ip: &pod_ip,
            name_files: Some(ctx.options.data_dir.join("pods").join(&uid)),
            cgroups_path: cgroup.clone(),
            kubernetes_service_ip: ctx.options.service_cidr.nth(1),
            service_env: &service_env,
        };
        let config = translate::container_config(pod, container, &inputs).map_err(config_error)?;
        let spec = config
            .to_oci()
            .map_err(|err| ("CreateContainerError".to_string(), err.to_string()))?;
        let labels = BTreeMap::from([
            (POD_UID_LABEL.to_string(), uid.clone()),
            (
                POD_NAME_LABEL.to_string(),
                pod.metadata.name.clone().unwrap_or_default(),
            ),
            (
                POD_NAMESPACE_LABEL.to_string(),
                pod.metadata.namespace.clone().unwrap_or_default(),
            ),
            (CONTAINER_NAME_LABEL.to_string(), container.name.clone()),
        ]);
        let meta = Meta {
            id: id.to_string(),
            command: config.args.clone(),
            rootfs: config.rootfs.clone(),
            image: Some(ImageUse {
                name: container.image.clone().unwrap_or_default(),
                id: image.id().clone(),
                digest: image.digest().clone(),
            }),
            created: chrono::Utc::now(),
            auto_remove: false,
            memory_limit: config.limits.memory_bytes,
            labels,
            log_rotation: Some(ctx.options.log_rotation),
            stdio: StdioMode {
                stdin: container.stdin.unwrap_or(false),
                stdin_once: container.stdin_once.unwrap_or(false),
                tty: container.tty.unwrap_or(false),
            },
        };
        Ok((meta, spec))
    });
    let id = prepared.map_err(|err: StartError| err.0)?;
    ctx.monitors
        .spawn(&ctx.containers, &id)
        .map_err(|err| ("RunContainerError".to_string(), monitor::one_line(&err)))
}

/// The pod's resolv.conf, in its directory.
pub const RESOLV_CONF: &str = "resolv.conf";
/// The pod's hosts file, in its directory.
pub const HOSTS: &str = "etc-hosts";

/// Where a container goes: its pod's sandbox and cgroup.
struct Placement {
    sandbox: Sandbox,
    cgroup: PathBuf,
    uid: String,
    /// The pod's IP (empty while unknown).
    pod_ip: String,
    /// Link variables of the namespace's Services.
    service_env: Vec<(String, String)>,
}

/// A start failure: the waiting reason and its message.
struct StartError((String, String));

impl From<(String, String)> for StartError {
    fn from(value: (String, String)) -> Self {
        StartError(value)
    }
}

impl From<crate::containers::ContainerError> for StartError {
    fn from(err: crate::containers::ContainerError) -> Self {
        StartError(("CreateContainerError".into(), monitor::one_line(&err)))
    }
}

/// `spec.containers{name}` or `spec.initContainers{name}`: where events point.
fn field_path(pod: &Pod, name: &str) -> String {
    let init = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .any(|c| c.name == name);
    let list = if init { "initContainers" } else { "containers" };
    format!("spec.{list}{{{name}}}")
}

fn all_containers(pod: &Pod) -> Vec<Container> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .cloned()
        .collect()
}

fn restart_policy(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into())
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}_{}",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default()
    )
}

/// Names of the ConfigMaps and Secrets a pod's env, envFrom and volumes refer to.
fn referenced_sources(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut maps = std::collections::BTreeSet::new();
    let mut secrets = std::collections::BTreeSet::new();
    for container in all_containers(pod) {
        for from in container.env_from.iter().flatten() {
            if let Some(m) = &from.config_map_ref {
                maps.insert(m.name.clone());
            }
            if let Some(s) = &from.secret_ref {
                secrets.insert(s.name.clone());
            }
        }
        for var in container.env.iter().flatten() {
            if let Some(from) = &var.value_from {
                if let Some(k) = &from.config_map_key_ref {
                    maps.insert(k.name.clone());
                }
                if let Some(k) = &from.secret_key_ref {
                    secrets.insert(k.name.clone());
                }
            }
        }
    }
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(m) = &volume.config_map {
            maps.insert(m.name.clone());
        }
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(name);
        }
        let projected = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
        for source in projected.into_iter().flatten() {
            if let Some(m) = &source.config_map {
                maps.insert(m.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    (maps.into_iter().collect(), secrets.into_iter().collect())
}

/// Pulls `name` from its registry into `images`; the error is one line for the status.
async fn pull_image(images: &strata_image::ImageStore, name: &str) -> Result<Image, String> {
    let reference: Reference = match name.parse() {
        Ok(reference) => reference,
        Err(err) => return Err(format!("{err}")),
    };
    let options = strata_image::registry::PullOptions::default();
    if let Err(err) = strata_image::registry::pull(
        images,
        &reference,
        &options,
        &strata_image::registry::NoProgress,
    )
    .await
    {
        return Err(monitor::one_line(&err));
    }
    images.resolve(name).map_err(|err| err.to_string())
}

/// Reads the named ConfigMaps or Secrets of `namespace` (missing ones are left out: the
/// caller decides whether they were optional) and turns each into its data.
async fn read_sources<K>(
    client: &kube::Client,
    namespace: &str,
    names: Vec<String>,
    data_of: impl Fn(K) -> BTreeMap<String, String>,
) -> Result<volumes::Sources, ConfigError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut sources = BTreeMap::new();
    for name in names {
        match api.get_opt(&name).await {
            Ok(Some(object)) => {
                sources.insert(name, data_of(object));
            }
            Ok(None) => {}
            Err(err) => {
                let kind = K::kind(&()).to_lowercase();
                return Err(ConfigError(format!("cannot read {kind} {name:?}: {err}")));
            }
        }
    }
    Ok(sources)
}

fn binary_as_text(
    data: BTreeMap<String, k8s_openapi::ByteString>,
) -> impl Iterator<Item = (String, String)> {
    data.into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
}
