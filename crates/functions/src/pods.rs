//! The instances of an image function as the gateway sees them: each pod's address,
//! whether the gateway's probe found it ready, whether it is draining (no new requests,
//! deleted once its in-flight requests finish), and its in-flight count. Requests lease
//! the least busy ready pod, or wait (bounded) for one while the function scales from zero
//! or its pods are at their concurrency limit: waiting requests are served in the order
//! they came, and a newcomer does not overtake them.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::table::FunctionKey;

/// Requests that may wait for an instance at once, per function; more get 429.
pub const MAX_WAITING: u32 = 1000;

/// One pod of the function.
#[derive(Debug, Clone)]
pub struct PodEntry {
    /// Its IP, once it has one.
    pub ip: Option<IpAddr>,
    /// The gateway reached its port.
    pub ready: bool,
    /// No new requests; delete once idle.
    pub draining: bool,
    /// Being deleted (or failed): gone for routing.
    pub terminating: bool,
    /// Requests being served by it.
    pub in_flight: u32,
    /// The spec hash it was made from.
    pub spec_hash: String,
}

/// Why no instance could be leased.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Too many requests already wait.
    #[error("{0} requests are already waiting for an instance")]
    QueueFull(u32),
    /// No instance became ready in time.
    #[error("no instance became ready within {0:?}")]
    Timeout(Duration),
}

/// What the scaler reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Pods of the current spec that are neither draining nor terminating.
    pub live: u32,
    /// Of those, ready.
    pub ready: u32,
    /// Requests in flight on all pods.
    pub in_flight: u32,
    /// Requests waiting for a pod.
    pub waiting: u32,
    /// All pods not yet terminating (any spec, draining included).
    pub existing: u32,
}

/// The pods of one image function.
pub struct PodPool {
    key: FunctionKey,
    port: AtomicU32,
    container_concurrency: AtomicU32,
    spec_hash: Mutex<String>,
    pods: Mutex<BTreeMap<String, PodEntry>>,
    /// Waiting requests in arrival order (ticket, wake-up); only the first may lease.
    queue: Mutex<VecDeque<(u64, Arc<Notify>)>>,
    next_ticket: AtomicU64,
    wake_scaler: Notify,
    waiting: AtomicU32,
    problem: Mutex<Option<String>>,
}

impl PodPool {
    /// An empty pool.
    pub fn new(
        key: FunctionKey,
        port: u16,
        container_concurrency: u32,
        spec_hash: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            key,
            port: AtomicU32::new(u32::from(port)),
            container_concurrency: AtomicU32::new(container_concurrency),
            spec_hash: Mutex::new(spec_hash),
            pods: Mutex::new(BTreeMap::new()),
            queue: Mutex::new(VecDeque::new()),
            next_ticket: AtomicU64::new(0),
            wake_scaler: Notify::new(),
            waiting: AtomicU32::new(0),
            problem: Mutex::new(None),
        })
    }

    /// Records why instances do not start (`ErrImagePull: …`), or clears it.
    pub fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    /// Why instances do not start, if known.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The function.
    pub fn key(&self) -> &FunctionKey {
        &self.key
    }

    /// Takes a new spec: pods of other specs drain once a current one is ready.
    pub fn set_spec(&self, port: u16, container_concurrency: u32, spec_hash: String) {
        self.port.store(u32::from(port), Ordering::Relaxed);
        self.container_concurrency
            .store(container_concurrency, Ordering::Relaxed);
        *self.spec_hash.lock().unwrap_or_else(|p| p.into_inner()) = spec_hash;
        self.wake_first();
        self.wake_scaler.notify_one();
    }

    /// The current spec hash.
    pub fn spec_hash(&self) -> String {
        self.spec_hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The port pods listen on.
    pub fn port(&self) -> u16 {
        u16::try_from(self.port.load(Ordering::Relaxed)).unwrap_or(8080)
    }

    /// Records what the API says of a pod; true when the gateway should probe it now
    /// (it has an address, runs, and is not known ready).
    pub fn observe(
        &self,
        name: &str,
        ip: Option<IpAddr>,
        running: bool,
        terminating: bool,
        spec_hash: &str,
    ) -> bool {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pods.entry(name.to_string()).or_insert_with(|| PodEntry {
            ip: None,
            ready: false,
            draining: false,
            terminating: false,
            in_flight: 0,
            spec_hash: spec_hash.to_string(),
        });
        if entry.ip != ip {
            entry.ready = false;
        }
        entry.ip = ip;
        entry.terminating = terminating;
        if !running || terminating {
            entry.ready = false;
        }
        let probe = running && !terminating && ip.is_some() && !entry.ready;
        drop(pods);
        self.wake_first();
        probe
    }

    /// Forgets a deleted pod.
    pub fn forget(&self, name: &str) {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.wake_first();
        self.wake_scaler.notify_one();
    }

    /// The gateway reached the pod (`true`) or lost it (`false`).
    pub fn set_ready(&self, name: &str, ready: bool) {
        if let Some(entry) = self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(name)
        {
            entry.ready = ready && !entry.terminating;
        }
        self.wake_first();
        if !ready {
            self.wake_scaler.notify_one();
        }
    }

    /// Stops sending new requests to a pod.
    pub fn drain(&self, name: &str) {
        if let Some(entry) = self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(name)
        {
            entry.draining = true;
        }
    }

    /// Draining pods with nothing in flight: ready to delete.
    pub fn drained(&self) -> Vec<String> {
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.iter()
            .filter(|(_, e)| e.draining && e.in_flight == 0 && !e.terminating)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A copy of every pod entry.
    pub fn pods(&self) -> BTreeMap<String, PodEntry> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The counts the scaler decides on.
    pub fn counts(&self) -> PoolCounts {
        let current = self.spec_hash();
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        let mut counts = PoolCounts {
            waiting: self.waiting.load(Ordering::Acquire),
            ..PoolCounts::default()
        };
        for entry in pods.values() {
            counts.in_flight += entry.in_flight;
            if entry.terminating {
                continue;
            }
            counts.existing += 1;
            if entry.spec_hash == current && !entry.draining {
                counts.live += 1;
                counts.ready += u32::from(entry.ready);
            }
        }
        counts
    }

    /// Resolves when a request waits with no instance (or a pod went away).
    pub async fn scaler_wanted(&self) {
        self.wake_scaler.notified().await;
    }

    /// Leases the least busy ready pod, waiting up to `wait` (and telling the scaler)
    /// when there is none or others already wait; the flag is true when the request had to
    /// wait. Waiting requests get pods in the order they came.
    pub async fn lease(self: &Arc<Self>, wait: Duration) -> Result<(Lease, bool), LeaseError> {
        {
            let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.is_empty()
                && let Some(lease) = self.try_lease()
            {
                return Ok((lease, false));
            }
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = WaitingGuard(self.clone());
        if queued >= MAX_WAITING {
            return Err(LeaseError::QueueFull(queued));
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((ticket, wake.clone()));
        // Leaves the queue however this ends (leased, timed out, or the caller gone).
        let _place = QueuePlace {
            pool: self.clone(),
            ticket,
        };
        self.wake_scaler.notify_one();
        let deadline = Instant::now() + wait;
        loop {
            {
                let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if queue.front().map(|(t, _)| *t) == Some(ticket)
                    && let Some(lease) = self.try_lease()
                {
                    return Ok((lease, true));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, wake.notified()).await.is_err() {
                return Err(LeaseError::Timeout(wait));
            }
        }
    }

    /// Tells the first waiting request to try again (a pod became ready, or one of its
    /// requests ended). `notify_one` keeps the wake-up if it is not waiting yet.
    fn wake_first(&self) {
        if let Some((_, wake)) = self.queue.lock().unwrap_or_else(|p| p.into_inner()).front() {
            wake.notify_one();
        }
    }

    fn try_lease(self: &Arc<Self>) -> Option<Lease> {
        let limit = self.container_concurrency.load(Ordering::Relaxed);
        let current = self.spec_hash();
        let port = self.port();
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        let any_current_ready = pods
            .values()
            .any(|e| e.ready && !e.draining && !e.terminating && e.spec_hash == current);
        let (name, entry) = pods
            .iter_mut()
            .filter(|(_, e)| e.ready && !e.draining && !e.terminating && e.ip.is_some())
            // Old pods serve only until a pod of the current spec is ready.
            .filter(|(_, e)| !any_current_ready || e.spec_hash == current)
            .filter(|(_, e)| limit == 0 || e.in_flight < limit)
            .min_by_key(|(_, e)| e.in_flight)?;
        entry.in_flight += 1;
        let addr = SocketAddr::new(entry.ip?, port);
        Some(Lease {
            pool: self.clone(),
            pod: name.clone(),
            addr,
        })
    }
}

/// A waiting request's place in the queue; leaving it lets the next one try.
struct QueuePlace {
    pool: Arc<PodPool>,
    ticket: u64,
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        let mut queue = self.pool.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = queue.iter().position(|(t, _)| *t == self.ticket) {
            queue.remove(at);
            if at == 0
                && let Some((_, next)) = queue.front()
            {
                next.notify_one();
            }
        }
    }
}

struct WaitingGuard(Arc<PodPool>);

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's claim on one pod; released when dropped.
pub struct Lease {
    pool: Arc<PodPool>,
    pod: String,
    addr: SocketAddr,
}

impl Lease {
    /// The pod's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The pod's name.
    pub fn pod(&self) -> &str {
        &self.pod
    }

    /// Marks the pod unreachable (a connection to it failed).
    pub fn unreachable(&self) {
        self.pool.set_ready(&self.pod, false);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(entry) = self
            .pool
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&self.pod)
        {
            entry.in_flight = entry.in_flight.saturating_sub(1);
        }
        self.pool.wake_first();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    #[tokio::test]
    async fn leases_least_busy_ready_pod_within_the_limit() {
        let pool = PodPool::new(FunctionKey::new("d", "f"), 8080, 1, "h1".into());
        assert!(pool.observe("a", ip(1), true, false, "h1"));
        assert!(pool.observe("b", ip(2), true, false, "h1"));
        pool.set_ready("a", true);
        pool.set_ready("b", true);
        let (first, waited) = pool.lease(Duration::from_millis(10)).await.unwrap();
        assert!(!waited);
        let (second, _) = pool.lease(Duration::from_millis(10)).await.unwrap();
        assert_ne!(first.addr(), second.addr(), "spread over both pods");
        assert_eq!(second.addr().port(), 8080);
        let third = pool.lease(Duration::from_millis(30)).await.err();
        assert_eq!(
            third,
            Some(LeaseError::Timeout(Duration::from_millis(30))),
            "both at containerConcurrency 1"
        );
        drop(first);
        assert!(pool.lease(Duration::from_millis(10)).await.is_ok());
        assert_eq!(pool.counts().in_flight, 1);
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_pod_that_becomes_ready() {
        let pool = PodPool::new(FunctionKey::new("d", "f"), 80, 0, "h1".into());
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.lease(Duration::from_secs(5))
                    .await
                    .map(|(l, waited)| (l.pod().to_string(), waited))
            })
        };
        pool.scaler_wanted().await;
        assert_eq!(pool.counts().waiting, 1);
        pool.observe("a", ip(1), true, false, "h1");
        pool.set_ready("a", true);
        assert_eq!(waiter.await.unwrap(), Ok(("a".to_string(), true)));
        assert_eq!(pool.counts().waiting, 0);
    }

    #[tokio::test]
    async fn waiting_requests_are_served_in_arrival_order() {
        // One pod taking one request at a time, busy: requests queue up.
        let pool = PodPool::new(FunctionKey::new("d", "f"), 80, 1, "h1".into());
        pool.observe("a", ip(1), true, false, "h1");
        pool.set_ready("a", true);
        let (busy, _) = pool.lease(Duration::from_millis(10)).await.unwrap();
        let (served_tx, mut served) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for n in 0..5u32 {
            let pool_for_waiter = pool.clone();
            let served_tx = served_tx.clone();
            waiters.push(tokio::spawn(async move {
                let (lease, waited) = pool_for_waiter.lease(Duration::from_secs(5)).await.unwrap();
                served_tx.send((n, waited)).unwrap();
                // Hold the pod a moment, as a request does.
                tokio::task::yield_now().await;
                drop(lease);
            }));
            while pool.counts().waiting <= n {
                tokio::task::yield_now().await;
            }
        }
        // The pod frees up just as a newcomer asks: it queues behind the five.
        drop(busy);
        let (late, waited) = pool.lease(Duration::from_secs(5)).await.unwrap();
        served_tx.send((5, waited)).unwrap();
        drop(late);
        let mut order = Vec::new();
        for _ in 0..6 {
            order.push(served.recv().await.unwrap());
        }
        assert_eq!(
            order,
            (0..6).map(|n| (n, true)).collect::<Vec<_>>(),
            "first come, first served"
        );
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(pool.counts().waiting, 0);
        assert!(pool.queue.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_lets_the_next_one_through() {
        let pool = PodPool::new(FunctionKey::new("d", "f"), 80, 1, "h1".into());
        pool.observe("a", ip(1), true, false, "h1");
        pool.set_ready("a", true);
        let (busy, _) = pool.lease(Duration::from_millis(10)).await.unwrap();
        let impatient = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.lease(Duration::from_millis(50)).await.map(|_| ()) })
        };
        while pool.counts().waiting == 0 {
            tokio::task::yield_now().await;
        }
        let patient = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.lease(Duration::from_secs(5)).await.map(|_| ()) })
        };
        assert_eq!(
            impatient.await.unwrap(),
            Err(LeaseError::Timeout(Duration::from_millis(50)))
        );
        drop(busy);
        assert_eq!(patient.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn draining_and_old_pods_get_no_new_requests() {
        let pool = PodPool::new(FunctionKey::new("d", "f"), 80, 0, "h1".into());
        pool.observe("old", ip(1), true, false, "h1");
        pool.set_ready("old", true);
        pool.set_spec(80, 0, "h2".into());
        let (lease, _) = pool.lease(Duration::from_millis(10)).await.unwrap();
        assert_eq!(
            lease.pod(),
            "old",
            "old pods serve until a current one is ready"
        );
        drop(lease);
        pool.observe("new", ip(2), true, false, "h2");
        pool.set_ready("new", true);
        let (lease, _) = pool.lease(Duration::from_millis(10)).await.unwrap();
        assert_eq!(lease.pod(), "new");
        pool.drain("new");
        assert!(pool.drained().is_empty(), "in flight: not drained yet");
        drop(lease);
        assert_eq!(pool.drained(), vec!["new".to_string()]);
        assert_eq!(
            pool.counts(),
            PoolCounts {
                live: 0,
                ready: 0,
                in_flight: 0,
                waiting: 0,
                existing: 2
            }
        );
    }
}
