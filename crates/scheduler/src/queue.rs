//! The scheduling queue, like kube-scheduler's: an active FIFO of pods to try, a backoff set
//! (a pod that failed waits 1 s, doubling per attempt up to 10 s) and an unschedulable set
//! that is moved back when the cluster changes, or after [`UNSCHEDULABLE_MAX_WAIT`] at the
//! latest. Time is passed in, so the queue is pure and tests need no clock.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// First backoff of a pod that could not be scheduled (kube-scheduler's `podInitialBackoff`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff (kube-scheduler's `podMaxBackoff`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The longest an unschedulable pod waits for a cluster change before it is retried anyway.
pub const UNSCHEDULABLE_MAX_WAIT: Duration = Duration::from_secs(60);

/// Where a queued pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting in the active FIFO.
    Active,
    /// Handed out by [`Queue::pop`]; the attempt has not reported back.
    InFlight,
    /// Waiting for its backoff to expire.
    Backoff(Instant),
    /// No node fitted; waiting for a cluster change (since the given instant).
    Unschedulable(Instant),
}

#[derive(Debug)]
struct Entry<T> {
    item: T,
    state: State,
    attempts: u32,
    /// Backoff expiry computed at the last failure.
    backoff_until: Option<Instant>,
    /// The move counter when the pod was popped (see [`Queue::move_all`]).
    popped_at_move: u64,
}

/// Pods waiting to be scheduled, by key, carrying an item `T` (the pod).
#[derive(Debug)]
pub struct Queue<T> {
    entries: HashMap<String, Entry<T>>,
    active: VecDeque<String>,
    backoff: BTreeSet<(Instant, String)>,
    unschedulable: BTreeSet<(Instant, String)>,
    moves: u64,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            active: VecDeque::new(),
            backoff: BTreeSet::new(),
            unschedulable: BTreeSet::new(),
            moves: 0,
        }
    }
}

/// The backoff after `attempts` failures: 1 s, 2 s, 4 s, 8 s, then 10 s.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(8);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

impl<T: Clone> Queue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of pods in the queue, in any state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the queue holds no pods.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys of all queued pods.
    pub fn keys(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Whether a pod is ready to be popped.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// The state of the pod `key`, if queued.
    pub fn state(&self, key: &str) -> Option<State> {
        self.entries.get(key).map(|e| e.state)
    }

    /// The item of the pod `key`, if queued.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.entries.get(key).map(|e| &e.item)
    }

    /// Adds a pending pod, or updates its item. An update that may make an unschedulable
    /// pod schedulable (`relevant`: its spec or labels changed, not just its status) moves
    /// it back like a cluster change does.
    pub fn add_or_update(&mut self, key: &str, item: T, relevant: bool, now: Instant) {
        match self.entries.get_mut(key) {
            Some(entry) => {
                entry.item = item;
                if let (State::Unschedulable(_), true) = (entry.state, relevant) {
                    self.wake(key, now);
                }
            }
            None => {
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        item,
                        state: State::Active,
                        attempts: 0,
                        backoff_until: None,
                        popped_at_move: 0,
                    },
                );
                self.active.push_back(key.to_string());
            }
        }
    }

    /// Forgets a pod (deleted, bound, or no longer ours).
    pub fn remove(&mut self, key: &str) -> Option<T> {
        let entry = self.entries.remove(key)?;
        self.unlink(key, entry.state);
        Some(entry.item)
    }

    /// Takes the next active pod for an attempt; it stays in the queue as in flight.
    pub fn pop(&mut self) -> Option<(String, T)> {
        while let Some(key) = self.active.pop_front() {
            if let Some(entry) = self.entries.get_mut(&key) {
                if entry.state == State::Active {
                    entry.state = State::InFlight;
                    entry.popped_at_move = self.moves;
                    return Some((key, entry.item.clone()));
                }
            }
        }
        None
    }

    /// The attempt found no node. The pod waits for a cluster change — unless one already
    /// happened during the attempt, then it only backs off.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        let moves = self.moves;
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.attempts = entry.attempts.saturating_add(1);
        let until = now + backoff(entry.attempts);
        entry.backoff_until = Some(until);
        let changed_meanwhile = moves > entry.popped_at_move;
        let old = std::mem::replace(&mut entry.state, State::InFlight);
        self.unlink(key, old);
        if changed_meanwhile {
            self.set_backoff(key, until);
        } else if let Some(entry) = self.entries.get_mut(key) {
            entry.state = State::Unschedulable(now);
            self.unschedulable.insert((now, key.to_string()));
        }
    }

    /// The attempt failed for another reason (the binding call failed): retry after backoff.
    pub fn failed(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.attempts = entry.attempts.saturating_add(1);
        let until = now + backoff(entry.attempts);
        entry.backoff_until = Some(until);
        let old = std::mem::replace(&mut entry.state, State::InFlight);
        self.unlink(key, old);
        self.set_backoff(key, until);
    }

    /// The cluster changed (a node appeared or changed, a pod went away): every
    /// unschedulable pod is retried, after its backoff.
    pub fn move_all(&mut self, now: Instant) {
        self.moves += 1;
        let keys: Vec<String> = self.unschedulable.iter().map(|(_, k)| k.clone()).collect();
        for key in keys {
            self.wake(&key, now);
        }
    }

    /// Moves pods whose backoff expired to the active FIFO, and retries pods that have been
    /// unschedulable for [`UNSCHEDULABLE_MAX_WAIT`].
    pub fn flush(&mut self, now: Instant) {
        while let Some((until, key)) = self.backoff.first().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop_first();
            self.activate(&key);
        }
        while let Some((since, key)) = self.unschedulable.first().cloned() {
            if since + UNSCHEDULABLE_MAX_WAIT > now {
                break;
            }
            self.wake(&key, now);
        }
    }

    /// When [`Queue::flush`] has something to do next.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let backoff = self.backoff.first().map(|(t, _)| *t);
        let unschedulable = self
            .unschedulable
            .first()
            .map(|(t, _)| *t + UNSCHEDULABLE_MAX_WAIT);
        match (backoff, unschedulable) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves an unschedulable pod to backoff (or straight to active if its backoff is over).
    fn wake(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let State::Unschedulable(since) = entry.state else {
            return;
        };
        let until = entry.backoff_until;
        self.unschedulable.remove(&(since, key.to_string()));
        match until {
            Some(until) if until > now => self.set_backoff(key, until),
            _ => self.activate(key),
        }
    }

    fn set_backoff(&mut self, key: &str, until: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.state = State::Backoff(until);
            self.backoff.insert((until, key.to_string()));
        }
    }

    fn activate(&mut self, key: &str) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.state = State::Active;
            self.active.push_back(key.to_string());
        }
    }

    /// Takes `key` out of the set its state keeps it in (the active FIFO is cleaned lazily).
    fn unlink(&mut self, key: &str, state: State) {
        match state {
            State::Backoff(until) => {
                self.backoff.remove(&(until, key.to_string()));
            }
            State::Unschedulable(since) => {
                self.unschedulable.remove(&(since, key.to_string()));
            }
            State::Active | State::InFlight => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let got: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn fifo_and_in_flight() {
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.add_or_update("a", 1, true, t0);
        q.add_or_update("b", 2, true, t0);
        assert_eq!(q.pop(), Some(("a".to_string(), 1)));
        assert_eq!(q.state("a"), Some(State::InFlight));
        q.add_or_update("a", 10, true, t0);
        assert_eq!(
            q.state("a"),
            Some(State::InFlight),
            "an update does not requeue"
        );
        assert_eq!(q.pop(), Some(("b".to_string(), 2)));
        assert_eq!(q.pop(), None);
        assert_eq!(q.remove("a"), Some(10));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_then_back_off() {
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.add_or_update("p", (), true, t0);
        q.pop();
        q.unschedulable("p", t0);
        assert_eq!(q.state("p"), Some(State::Unschedulable(t0)));
        q.flush(t0 + secs(30));
        assert!(!q.has_active(), "no change, no retry before the max wait");
        q.move_all(t0 + secs(0));
        assert_eq!(q.state("p"), Some(State::Backoff(t0 + secs(1))));
        q.flush(t0 + secs(1));
        assert_eq!(q.pop().map(|(k, _)| k).as_deref(), Some("p"));
        q.unschedulable("p", t0 + secs(2));
        assert_eq!(q.next_wakeup(), Some(t0 + secs(62)));
        q.move_all(t0 + secs(5));
        assert_eq!(
            q.state("p"),
            Some(State::Active),
            "2 s backoff is over at 5 s"
        );
    }

    #[test]
    fn unschedulable_pods_are_retried_periodically() {
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.add_or_update("p", (), true, t0);
        q.pop();
        q.unschedulable("p", t0);
        q.flush(t0 + UNSCHEDULABLE_MAX_WAIT);
        assert!(q.has_active());
    }

    #[test]
    fn a_change_during_the_attempt_means_backoff_not_waiting() {
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.add_or_update("p", (), true, t0);
        q.pop();
        q.move_all(t0);
        q.unschedulable("p", t0);
        assert_eq!(q.state("p"), Some(State::Backoff(t0 + secs(1))));
    }

    #[test]
    fn failures_back_off_and_updates_wake_unschedulable_pods() {
        let t0 = Instant::now();
        let mut q = Queue::new();
        q.add_or_update("p", 0, true, t0);
        q.pop();
        q.failed("p", t0);
        assert_eq!(q.next_wakeup(), Some(t0 + secs(1)));
        q.flush(t0 + secs(1));
        q.pop();
        q.unschedulable("p", t0 + secs(1));
        q.add_or_update("p", 1, false, t0 + secs(10));
        assert!(
            matches!(q.state("p"), Some(State::Unschedulable(_))),
            "status-only update"
        );
        q.add_or_update("p", 2, true, t0 + secs(10));
        assert_eq!(q.state("p"), Some(State::Active));
    }
}
