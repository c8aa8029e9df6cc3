//! The request-decoding path as one function for fuzzing: arbitrary bytes go through
//! what the API server does with a request body — JSON and Kubernetes protobuf
//! decoding, admission (decoding
//! into the typed object, defaulting, validation) as a create and as an update, and
//! the three patch types against a valid object. Whatever the input, every step must
//! return a result, never panic. Used by the cargo-fuzz target in `fuzz/` and by a
//! stable smoke test that mutates known bodies (`crates/api/tests/fuzz_smoke.rs`).

use serde_json::{Value, json};

use crate::admit::{FieldValidation, Operation, admit};
use crate::patch::{PatchType, apply_patch};
use crate::resources::RESOURCES;

/// Runs `data` through decoding, admission and patching. The first byte picks the
/// resource, the second the field validation and patch type; the rest is the body.
pub fn request(data: &[u8]) {
    let [pick, mode, body @ ..] = data else {
        return;
    };
    let Some(resource) = RESOURCES.get(usize::from(*pick) % RESOURCES.len()) else {
        return;
    };
    let validation = match mode % 3 {
        0 => FieldValidation::Strict,
        1 => FieldValidation::Warn,
        _ => FieldValidation::Ignore,
    };
    let patch_type = match (mode / 3) % 3 {
        0 => PatchType::Json,
        1 => PatchType::Merge,
        _ => PatchType::StrategicMerge,
    };
    let template = json!({
        "apiVersion": resource.api_version(),
        "kind": resource.kind,
        "metadata": {"name": "fuzzed", "namespace": "default", "resourceVersion": "1"},
    });
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let _ = admit(resource, value.clone(), Operation::Create, validation);
        let _ = admit(
            resource,
            value,
            Operation::Update { old: &template },
            validation,
        );
    }
    if let Ok(value) = crate::protobuf::decode(body) {
        let _ = admit(resource, value, Operation::Create, validation);
    }
    if let Ok(patched) = apply_patch(resource, &template, patch_type, body) {
        let _ = admit(
            resource,
            patched,
            Operation::Update { old: &template },
            validation,
        );
    }
}
