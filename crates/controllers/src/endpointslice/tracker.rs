//! What the controller wrote and waits to see in its slice cache (Kubernetes'
//! `EndpointSliceTracker`): until the cache shows a slice it created, the version after
//! one it replaced, or the absence of one it deleted, a service's slices are not
//! planned again, so a watch lagging behind the controller's own writes cannot make it
//! create a slice twice. Entries expire after [`TRACK_TTL`] so that a lost watch event
//! cannot hold a service back for ever.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;

/// How long a write is waited for.
pub const TRACK_TTL: Duration = Duration::from_secs(60);

/// One write, as the cache must come to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// The slice exists.
    Created,
    /// The slice exists at a version other than this one (the one replaced).
    Replaced(String),
    /// The slice is gone.
    Deleted,
}

/// One service's pending writes: slice name → the expected state, with when.
type Pending = HashMap<String, (Expect, Instant)>;

/// Pending writes per service (`namespace/name`).
#[derive(Debug, Default)]
pub struct Tracker {
    services: Mutex<HashMap<String, Pending>>,
}

impl Tracker {
    fn expect(&self, service: &str, slice: &str, expect: Expect) {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services
            .entry(service.to_string())
            .or_default()
            .insert(slice.to_string(), (expect, Instant::now()));
    }

    /// Records that `slice` was created for `service`.
    pub fn created(&self, service: &str, slice: &str) {
        self.expect(service, slice, Expect::Created);
    }

    /// Records that `slice`, read at `old_version`, was replaced.
    pub fn replaced(&self, service: &str, slice: &str, old_version: &str) {
        self.expect(service, slice, Expect::Replaced(old_version.to_string()));
    }

    /// Records that `slice` was deleted.
    pub fn deleted(&self, service: &str, slice: &str) {
        self.expect(service, slice, Expect::Deleted);
    }

    /// True when `cached` (the service's namespace's slices in the cache) shows every
    /// write recorded for `service`; met and expired entries are dropped.
    pub fn caught_up(&self, service: &str, cached: &[&EndpointSlice]) -> bool {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let Some(pending) = services.get_mut(service) else {
            return true;
        };
        pending.retain(|name, (expect, since)| {
            let found = cached
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            let met = match (expect, found) {
                (Expect::Created, found) => found.is_some(),
                (Expect::Replaced(old), Some(s)) => {
                    s.metadata.resource_version.as_deref() != Some(old.as_str())
                }
                // Deleted by someone else after our replace: nothing left to wait for.
                (Expect::Replaced(_), None) => true,
                (Expect::Deleted, found) => found.is_none(),
            };
            !met && since.elapsed() < TRACK_TTL
        });
        let caught_up = pending.is_empty();
        if caught_up {
            services.remove(service);
        }
        caught_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, version: &str) -> EndpointSlice {
        let mut s = EndpointSlice::default();
        s.metadata.name = Some(name.into());
        s.metadata.resource_version = Some(version.into());
        s
    }

    #[test]
    fn writes_are_waited_for_until_the_cache_shows_them() {
        let tracker = Tracker::default();
        assert!(tracker.caught_up("default/web", &[]));
        tracker.created("default/web", "web-a");
        tracker.replaced("default/web", "web-b", "5");
        tracker.deleted("default/web", "web-c");
        let (b5, b6, c) = (
            slice("web-b", "5"),
            slice("web-b", "6"),
            slice("web-c", "1"),
        );
        assert!(!tracker.caught_up("default/web", &[&b5, &c]));
        let a = slice("web-a", "7");
        assert!(
            !tracker.caught_up("default/web", &[&a, &b5]),
            "b not yet replaced"
        );
        assert!(tracker.caught_up("default/web", &[&a, &b6]));
        assert!(tracker.caught_up("default/other", &[]));
    }
}
