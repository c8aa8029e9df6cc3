//! Strata's controllers: the workload controllers, node lifecycle and IPAM, endpoints and
//! endpoint slices, the garbage collector and the namespace controller. Each is a kube-rs [`Controller`](kube::runtime::Controller)
//! whose decisions are pure functions of the objects its watch caches hold, so they are
//! unit-tested without a cluster; the loop around them only reads caches and writes
//! through the API. [`run`] runs them all; each module also has its own `run`.

pub mod backoff;
pub mod cache;
pub mod clusterrole_aggregation;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod garbage_collector;
pub mod job;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pod_control;
pub mod pods;
pub mod rank;
pub mod replicaset;

/// How the controllers run.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Reconciles of one controller that may run at once (0: unbounded).
    pub concurrency: u16,
    /// How long the Job controller waits before replacing failed pods.
    pub job_failure_backoff: job::FailureBackoff,
    /// How long a node may go without a heartbeat before it counts as unreachable
    /// (Kubernetes' `--node-monitor-grace-period`).
    pub node_grace_period: std::time::Duration,
    /// The pod range the node IPAM controller splits between nodes.
    pub pod_range: node_ipam::PodRange,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            job_failure_backoff: job::FailureBackoff::default(),
            node_grace_period: node_lifecycle::DEFAULT_GRACE_PERIOD,
            pod_range: node_ipam::PodRange::default(),
        }
    }
}

impl ControllerOptions {
    fn runtime_config(&self) -> kube::runtime::controller::Config {
        kube::runtime::controller::Config::default().concurrency(self.concurrency)
    }
}

/// Why a controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// Its watch of the objects it controls ended, which it never should.
    #[error("the {controller} stopped: its watch ended")]
    Ended {
        /// The controller's component name.
        controller: &'static str,
    },
}

/// Runs every controller of this crate until the future is dropped (callers spawn it
/// and abort the task on shutdown). Returns only when one of them stops.
pub async fn run(client: kube::Client, options: ControllerOptions) -> Result<(), ControllerError> {
    tokio::select! {
        result = replicaset::run(client.clone(), options.clone()) => result,
        result = deployment::run(client.clone(), options.clone()) => result,
        result = job::run(client.clone(), options.clone()) => result,
        result = daemonset::run(client.clone(), options.clone()) => result,
        result = node_lifecycle::run(client.clone(), options.clone()) => result,
        result = node_ipam::run(client.clone(), options.clone()) => result,
        result = endpoints::run(client.clone(), options.clone()) => result,
        result = endpointslice::run(client.clone(), options.clone()) => result,
        result = garbage_collector::run(client.clone(), options.clone()) => result,
        result = clusterrole_aggregation::run(client.clone(), options.clone()) => result,
        result = namespace::run(client, options) => result,
    }
}

/// True for a 404 from the API.
fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// True for a 409 AlreadyExists from the API.
fn is_already_exists(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.is_already_exists())
}

/// `namespace/name` of an object: its key for expectations, back-off and logs.
fn key<K: kube::Resource>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The error policy every controller shares: log the failure and retry the object
/// after its next back-off delay.
fn retry<K>(
    backoff: &backoff::Backoff,
    object: &K,
    err: &(dyn std::error::Error + 'static),
) -> kube::runtime::controller::Action
where
    K: kube::Resource<DynamicType = ()>,
{
    let key = key(object);
    let delay = backoff.failed(&key);
    // A conflict only means the controller acted on a stale copy; the retry reads the
    // fresh one. Routine, so not a warning.
    if is_conflict(err) {
        tracing::debug!(kind = %K::kind(&()), object = %key, retry_in = ?delay, "stale object, retrying");
    } else {
        tracing::warn!(kind = %K::kind(&()), object = %key, error = %chain(err), retry_in = ?delay, "sync failed");
    }
    kube::runtime::controller::Action::requeue(delay)
}

/// True when `err` or one of its causes is the API's 409 Conflict.
fn is_conflict(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(kube::Error::Api(status)) = e.downcast_ref::<kube::Error>()
            && status.code == 409
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// How long an owner with nothing to do waits before it is looked at again anyway. Its
/// watches normally wake it; the resync (informers' resync period in Kubernetes) heals a
/// missed wake-up, e.g. a pod deleted while the pod watch was re-listing, when the
/// trigger can arrive before the cache has the new list.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(15);

/// The action of an owner with nothing left to do: wait for a change, or the resync.
fn idle() -> kube::runtime::controller::Action {
    kube::runtime::controller::Action::requeue(RESYNC)
}

/// An error with its causes, `: `-separated, for logs.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot update the status")]
    struct Wrapped(#[source] kube::Error);

    #[test]
    fn conflicts_are_found_through_the_cause_chain() {
        let status = |code| {
            let mut s = kube::core::Status::failure("x", "Conflict");
            s.code = code;
            kube::Error::Api(Box::new(s))
        };
        assert!(is_conflict(&Wrapped(status(409))));
        assert!(!is_conflict(&Wrapped(status(500))));
        assert!(!is_conflict(&std::io::Error::other("x")));
    }
}
