//! Events as Kubernetes components write them: core/v1 `Event` objects in the involved
//! object's namespace, named `<object>.<unique suffix>`, with `source.component` and
//! `reportingComponent` set. A repeat of the same event (same object, type, reason and
//! message) within [`REPEAT_WINDOW`] bumps `count` and `lastTimestamp` of the first one
//! instead of creating another, as client-go's event correlator does, so a crash-looping
//! container makes one Event with a growing count, not thousands.
//!
//! Publishing never fails the caller: an event that cannot be written is logged and
//! dropped (events are best-effort in Kubernetes too).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

/// How long a repeated event is folded into the first one.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The most distinct events remembered for folding repeats.
const REMEMBERED: usize = 4096;

/// `type` of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

type RepeatKey = (String, String, &'static str, String, String);

/// Writes Events on behalf of one component (`default-scheduler`, `kubelet`, …).
pub struct Recorder {
    client: kube::Client,
    component: String,
    host: Option<String>,
    seen: Mutex<HashMap<RepeatKey, Seen>>,
}

struct Seen {
    namespace: String,
    name: String,
    count: i32,
    first: Instant,
}

impl Recorder {
    /// A recorder for `component`, running on `host` (the node name, for node agents).
    pub fn new(client: kube::Client, component: &str, host: Option<&str>) -> Self {
        Self {
            client,
            component: component.to_string(),
            host: host.map(str::to_string),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Reports that `reason` happened to `object`, explained by `message`.
    pub async fn publish(
        &self,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let namespace = object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let key: RepeatKey = (
            object.uid.clone().unwrap_or_default(),
            object.name.clone().unwrap_or_default(),
            kind.as_str(),
            reason.to_string(),
            message.to_string(),
        );
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let repeat = self.repeat_of(&key);
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Some((name, count)) = repeat {
            let patch = serde_json_patch(count, &now);
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => return,
                Err(err) => {
                    tracing::debug!(error = %err, event = %name, "cannot bump event; creating a new one")
                }
            }
        }
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{}",
                    object.name.as_deref().unwrap_or("object"),
                    unique_suffix()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: object.clone(),
            type_: Some(kind.as_str().to_string()),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(created) => self.remember(key, namespace, created.metadata.name.unwrap_or_default()),
            Err(err) => tracing::warn!(error = %err, reason, "cannot write event"),
        }
    }

    /// The event to bump and its new count, when this is a recent repeat.
    fn repeat_of(&self, key: &RepeatKey) -> Option<(String, i32)> {
        let mut seen = self.seen.lock().ok()?;
        let entry = seen.get_mut(key)?;
        if entry.first.elapsed() > REPEAT_WINDOW {
            seen.remove(key);
            return None;
        }
        entry.count += 1;
        Some((entry.name.clone(), entry.count)).filter(|_| !entry.namespace.is_empty())
    }

    fn remember(&self, key: RepeatKey, namespace: String, name: String) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.len() >= REMEMBERED {
            seen.retain(|_, s| s.first.elapsed() <= REPEAT_WINDOW);
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(
            key,
            Seen {
                namespace,
                name,
                count: 1,
                first: Instant::now(),
            },
        );
    }
}

fn serde_json_patch(count: i32, now: &Time) -> k8s_openapi::serde_json::Value {
    k8s_openapi::serde_json::json!({"count": count, "lastTimestamp": now})
}

/// 16 hex digits, like the suffix client-go derives from the timestamp.
fn unique_suffix() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = k8s_openapi::jiff::Timestamp::now().as_nanosecond() as i64;
        bytes = nanos.to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
