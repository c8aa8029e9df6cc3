//! The `pod-template-hash`: which replica set belongs to which template. Computed like
//! Kubernetes' `controller.ComputeHash` — FNV-32a over a stable serialization of the
//! template, then the collision count as 4 little-endian bytes padded to 8, rendered
//! as the decimal number passed through the "safe encode" alphabet (no vowels, no
//! look-alike characters). The serialization is serde JSON (k8s-openapi writes fields
//! in a fixed order and maps sorted), not Go's spew dump, so the values differ from a
//! real cluster's but are just as stable.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// The label and selector key that ties pods to one replica set of a deployment.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Alphabet of `k8s.io/apimachinery/pkg/util/rand.SafeEncodeString`.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1a, 32 bits.
fn fnv32a(state: u32, bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(state, |h, b| (h ^ u32::from(*b)).wrapping_mul(FNV_PRIME))
}

/// Maps each character of `text` onto the safe alphabet, as `SafeEncodeString` does.
fn safe_encode(text: &str) -> String {
    text.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// The hash of `template` (without its own `pod-template-hash` label) and
/// `collision_count`.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(&without_hash(template)).unwrap_or_default();
    let mut hash = fnv32a(FNV_OFFSET, &bytes);
    if let Some(count) = collision_count {
        let mut extra = [0u8; 8];
        extra[..4].copy_from_slice(&u32::from_ne_bytes(count.to_ne_bytes()).to_le_bytes());
        hash = fnv32a(hash, &extra);
    }
    safe_encode(&hash.to_string())
}

/// The template without the `pod-template-hash` label.
pub fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    template
}

/// True when the two templates are the same but for `pod-template-hash`, treating an
/// empty list or map like an absent one (Kubernetes' semantic equality).
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let normal = |t: &PodTemplateSpec| {
        let mut value = serde_json::to_value(without_hash(t)).unwrap_or(Value::Null);
        prune(&mut value);
        value
    };
    normal(a) == normal(b)
}

/// Drops nulls and empty lists and maps, recursively.
fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(prune);
            map.retain(|_, v| !is_empty(v));
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn template(image: &str, labels: Value) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }))
        .unwrap()
    }

    #[test]
    fn fnv_and_safe_encoding_match_the_reference_values() {
        // FNV-1a 32 test vectors.
        assert_eq!(fnv32a(FNV_OFFSET, b""), 0x811c_9dc5);
        assert_eq!(fnv32a(FNV_OFFSET, b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(FNV_OFFSET, b"foobar"), 0xbf9c_f968);
        // '0' is 48, 48 % 27 = 21 -> '4'; '6' is 54 % 27 = 0 -> 'b'.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn the_hash_is_stable_and_ignores_its_own_label() {
        let a = template("nginx:1", json!({"app": "web"}));
        let hash = pod_template_hash(&a, None);
        assert_eq!(hash, pod_template_hash(&a.clone(), None));
        assert!(hash.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        let labeled = template("nginx:1", json!({"app": "web", POD_TEMPLATE_HASH: hash}));
        assert_eq!(pod_template_hash(&labeled, None), hash);
        assert_ne!(
            pod_template_hash(&template("nginx:2", json!({"app": "web"})), None),
            hash
        );
        assert_ne!(pod_template_hash(&a, Some(1)), hash);
        assert_ne!(
            pod_template_hash(&a, Some(1)),
            pod_template_hash(&a, Some(2))
        );
        // collisionCount 0 still changes the hash, as in Kubernetes.
        assert_ne!(pod_template_hash(&a, Some(0)), hash);
    }

    #[test]
    fn equality_ignores_the_hash_label_and_empty_collections() {
        let a = template("nginx:1", json!({"app": "web"}));
        let b = template("nginx:1", json!({"app": "web", POD_TEMPLATE_HASH: "abc"}));
        assert!(equal_ignoring_hash(&a, &b));
        let mut c = a.clone();
        c.metadata.as_mut().unwrap().annotations = Some(Default::default());
        assert!(equal_ignoring_hash(&a, &c));
        let restarted = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"},
                         "annotations": {"kubectl.kubernetes.io/restartedAt": "now"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
        }))
        .unwrap();
        assert!(!equal_ignoring_hash(&a, &restarted));
    }
}
