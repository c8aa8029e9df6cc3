//! A Pod's status as the kubelet reports it, computed from what the agent observed of
//! its containers: phase, conditions, container statuses with state and last state,
//! restart counts, exit codes and reasons (Completed, Error, OOMKilled), QoS class.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::prober::Verdicts;
use crate::containers::Entry;

/// What the agent knows of one container of the pod.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The container's name.
    pub name: String,
    /// An init container.
    pub init: bool,
    /// The image as the pod names it.
    pub image: String,
    /// The image ID once resolved.
    pub image_id: Option<String>,
    /// The latest attempt and its container (attempt N means N restarts).
    pub current: Option<(u32, Entry)>,
    /// The attempt before it.
    pub previous: Option<Entry>,
    /// Why it is not running, when the agent could not start it or holds it back.
    pub waiting: Option<(String, String)>,
    /// What its probes concluded, when it has any.
    pub probed: Option<Verdicts>,
}

fn time(at: chrono::DateTime<chrono::Utc>) -> Time {
    Time(Timestamp::from_second(at.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn terminated(entry: &Entry) -> Option<ContainerStateTerminated> {
    let exit = entry.exit.as_ref()?;
    let reason = if exit.oom_killed {
        "OOMKilled"
    } else if exit.code == 0 {
        "Completed"
    } else {
        "Error"
    };
    Some(ContainerStateTerminated {
        exit_code: exit.code,
        reason: Some(reason.to_string()),
        started_at: Some(time(entry.meta.created)),
        finished_at: Some(time(exit.finished)),
        container_id: Some(format!("strata://{}", entry.meta.id)),
        signal: exit
            .signal
            .as_ref()
            .and(Some(exit.code - 128))
            .filter(|s| *s > 0),
        message: None,
    })
}

/// The state of an observed container: running, terminated, or waiting with a reason.
pub fn state_of(observed: &Observed) -> ContainerState {
    if let Some((reason, message)) = &observed.waiting {
        return ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: Some(message.clone()).filter(|m| !m.is_empty()),
            }),
            ..Default::default()
        };
    }
    match &observed.current {
        Some((_, entry)) if entry.is_running() => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(entry.meta.created)),
            }),
            ..Default::default()
        },
        Some((_, entry)) if entry.exit.is_some() => ContainerState {
            terminated: terminated(entry),
            ..Default::default()
        },
        _ => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(
                    if observed.init {
                        "PodInitializing"
                    } else {
                        "ContainerCreating"
                    }
                    .to_string(),
                ),
                message: None,
            }),
            ..Default::default()
        },
    }
}

/// True when the observed container's process runs.
pub fn running(observed: &Observed) -> bool {
    observed.waiting.is_none()
        && observed
            .current
            .as_ref()
            .is_some_and(|(_, e)| e.is_running())
}

/// True when the container serves: it runs, and its startup and readiness probes (if
/// any) pass. Init containers are never ready.
pub fn ready(observed: &Observed) -> bool {
    !observed.init && running(observed) && observed.probed.as_ref().is_none_or(|p| p.ready)
}

/// The exit code of the latest attempt, once it ended.
pub fn exit_code(observed: &Observed) -> Option<i32> {
    observed
        .current
        .as_ref()
        .and_then(|(_, e)| e.exit.as_ref())
        .map(|x| x.code)
}

fn container_status(observed: &Observed) -> ContainerStatus {
    let state = state_of(observed);
    let is_running = state.running.is_some();
    // The previous run shows as lastState; so does the current one while a restart waits.
    let last = match (&observed.waiting, &observed.current) {
        (Some(_), Some((_, entry))) if entry.exit.is_some() => terminated(entry),
        _ => observed.previous.as_ref().and_then(terminated),
    };
    ContainerStatus {
        name: observed.name.clone(),
        image: observed.image.clone(),
        image_id: observed.image_id.clone().unwrap_or_default(),
        container_id: observed
            .current
            .as_ref()
            .map(|(_, e)| format!("strata://{}", e.meta.id)),
        ready: ready(observed),
        started: Some(is_running && observed.probed.as_ref().is_none_or(|p| p.started)),
        restart_count: observed.current.as_ref().map_or(0, |(n, _)| *n as i32),
        state: Some(state),
        last_state: Some(ContainerState {
            terminated: last,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The phase Kubernetes would report for these observations under `restart_policy`.
pub fn phase(observed: &[Observed], restart_policy: &str) -> &'static str {
    let init_failed = observed
        .iter()
        .any(|o| o.init && restart_policy == "Never" && exit_code(o).is_some_and(|c| c != 0));
    if init_failed {
        return "Failed";
    }
    let inits_done = observed
        .iter()
        .filter(|o| o.init)
        .all(|o| exit_code(o) == Some(0));
    if !inits_done {
        return "Pending";
    }
    let main: Vec<&Observed> = observed.iter().filter(|o| !o.init).collect();
    let started = main.iter().filter(|o| o.current.is_some()).count();
    if main.iter().any(|o| running(o)) {
        return "Running";
    }
    if started < main.len() {
        return "Pending";
    }
    let all_ok = main.iter().all(|o| exit_code(o) == Some(0));
    match restart_policy {
        "Always" => "Running",
        "OnFailure" if all_ok => "Succeeded",
        "OnFailure" => "Running",
        _ if all_ok => "Succeeded",
        _ => "Failed",
    }
}

/// The pod status to report; conditions keep their transition times when unchanged.
/// `pod_ip` is the address the worker knows; the one reported before stays otherwise.
pub fn pod_status(
    pod: &Pod,
    observed: &[Observed],
    host_ip: &str,
    pod_ip: Option<&str>,
    phase: &str,
) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    let main: Vec<&Observed> = observed.iter().filter(|o| !o.init).collect();
    let initialized = observed
        .iter()
        .filter(|o| o.init)
        .all(|o| exit_code(o) == Some(0));
    let ready = !main.is_empty() && main.iter().all(|o| ready(o));
    let condition = |kind: &str, status: bool, reason: Option<&str>| {
        let status = if status { "True" } else { "False" };
        let previous = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == status);
        PodCondition {
            type_: kind.to_string(),
            status: status.to_string(),
            last_transition_time: previous
                .and_then(|c| c.last_transition_time.clone())
                .or_else(|| Some(now.clone())),
            reason: reason.map(str::to_string),
            ..Default::default()
        }
    };
    let not_ready = (!ready).then_some("ContainersNotReady");
    let conditions = vec![
        condition("PodReadyToStartContainers", true, None),
        condition(
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
        ),
        condition("Ready", ready, not_ready),
        condition("ContainersReady", ready, not_ready),
        condition("PodScheduled", true, None),
    ];
    let (init, regular): (Vec<&Observed>, Vec<&Observed>) = observed.iter().partition(|o| o.init);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.to_string()),
        host_ips: None,
        pod_ip: pod_ip.map(str::to_string).or(old.pod_ip.clone()),
        pod_ips: match pod_ip {
            Some(ip) => Some(vec![PodIP { ip: ip.to_string() }]),
            None => old.pod_ips.clone(),
        },
        start_time: old.start_time.clone().or(Some(now)),
        qos_class: Some(qos_class(pod).to_string()),
        init_container_statuses: (!init.is_empty())
            .then(|| init.into_iter().map(container_status).collect()),
        container_statuses: Some(regular.into_iter().map(container_status).collect()),
        ..Default::default()
    }
}

/// Kubernetes' QoS class: Guaranteed when every container has equal cpu and memory
/// requests and limits, BestEffort when none has any, Burstable otherwise.
pub fn qos_class(pod: &Pod) -> &'static str {
    let containers: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for container in containers {
        let resources = container.resources.clone().unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        if !limits.is_empty() || !requests.is_empty() {
            any = true;
        }
        for key in ["cpu", "memory"] {
            let limit = limits.get(key);
            let request = requests.get(key).or(limit);
            if limit.is_none() || request.map(|q| &q.0) != limit.map(|q| &q.0) {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}
