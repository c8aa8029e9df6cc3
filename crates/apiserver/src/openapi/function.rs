//! The OpenAPI schema of `serverless.strata.dev/v1alpha1` Function, written by hand
//! (Strata's own types carry no `JsonSchema`), named as kube-apiserver names a custom
//! resource's (`dev.strata.serverless.v1alpha1.Function`). The Kubernetes types it
//! refers to (ObjectMeta, EnvVar, Condition, Quantity, Time) come from k8s-openapi.
//! A test keeps it in step with the serde types.

use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use schemars::generate::SchemaGenerator;
use serde_json::{Value, json};
use strata_api::function::WASM_INTERFACES;

use super::schemas::REF_PREFIX;

/// The definition-name prefix of the group's types.
const PREFIX: &str = "dev.strata.serverless.v1alpha1.";

fn local(name: &str) -> Value {
    json!({"$ref": format!("{REF_PREFIX}{PREFIX}{name}")})
}

/// A `$ref` beside a description, wrapped in `allOf` as kube-apiserver publishes it.
fn described(reference: Value, description: &str) -> Value {
    json!({"allOf": [reference], "description": description})
}

fn int(format: &str, description: &str) -> Value {
    json!({"type": "integer", "format": format, "description": description})
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn strings(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string", "default": ""}, "description": description})
}

fn object(description: &str, properties: Value, required: &[&str]) -> Value {
    let mut schema =
        json!({"type": "object", "description": description, "properties": properties});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// Registers the Function schemas with `generator`; returns the `$ref` of Function.
pub fn register(generator: &mut SchemaGenerator) -> Value {
    let meta = generator.subschema_for::<ObjectMeta>().to_value();
    let env = generator.subschema_for::<EnvVar>().to_value();
    let condition = generator.subschema_for::<Condition>().to_value();
    let quantity = generator.subschema_for::<Quantity>().to_value();
    let time = generator.subschema_for::<Time>().to_value();
    let definitions = [
        (
            "Function",
            object(
                "A serverless function: a WebAssembly module or a container image, scaled from zero by Strata and served at <name>.<namespace>.fn.localhost.",
                json!({
                    "apiVersion": string("APIVersion defines the versioned schema of this representation of an object."),
                    "kind": string("Kind is a string value representing the REST resource this object represents."),
                    "metadata": described(meta, "Standard object's metadata. The name must be a DNS-1035 label: it becomes a host name label."),
                    "spec": described(local("FunctionSpec"), "What the function runs and how it scales."),
                    "status": described(local("FunctionStatus"), "What the controller and the gateway observed. Written through the status subresource."),
                }),
                &[],
            ),
        ),
        (
            "FunctionSpec",
            object(
                "What a function runs and how it scales. Exactly one of wasm and image is set.",
                json!({
                    "wasm": described(local("WasmSource"), "A WebAssembly module, run by the embedded wasm engine."),
                    "image": described(local("ImageSource"), "A container image serving HTTP, run as pods scaled to zero when idle."),
                    "memory": described(quantity, "Memory per instance (default 128Mi): the linear-memory limit of a wasm module, the memory limit of a container; the basis of GB-second billing."),
                    "timeoutSeconds": int("int64", "Longest an invocation may run, in seconds (default 10, 1 to 900)."),
                    "minScale": int("int32", "Fewest instances kept running (default 0: scale to zero)."),
                    "maxScale": int("int32", "Most instances (default 10; at least 1 and minScale, at most 1000)."),
                    "targetConcurrency": int("int32", "Concurrent requests per instance the autoscaler aims for (default 10, 1 to 1000); ignored for wasm."),
                    "containerConcurrency": int("int32", "Most concurrent requests one instance receives; 0 (the default) is unlimited."),
                    "scaleToZeroAfterSeconds": int("int64", "Seconds without requests before the last instance is stopped (default 60, at least 1); ignored when minScale is above 0."),
                    "env": {"type": "array", "items": env, "description": "Environment variables; only name and value are supported (valueFrom is refused), and names are unique."},
                    "schedule": string("A five-field cron schedule (minute hour day-of-month month day-of-week) on which the function is invoked, besides HTTP requests."),
                    "allowNetwork": {"type": "boolean", "description": "Whether the function may open network connections (default false)."},
                }),
                &[],
            ),
        ),
        (
            "WasmSource",
            object(
                "Where a WebAssembly module comes from: exactly one of configMap and oci.",
                json!({
                    "configMap": described(local("ConfigMapKeyRef"), "A key of a ConfigMap in the function's namespace (as binaryData)."),
                    "oci": string("An OCI artifact or image reference holding the module."),
                    "interface": {"type": "string", "enum": WASM_INTERFACES, "description": "How the module is called: http (wasi-http) or cgi (WASI command, request on stdin, response on stdout). Unset lets the engine detect it."},
                }),
                &[],
            ),
        ),
        (
            "ConfigMapKeyRef",
            object(
                "A key of a ConfigMap in the same namespace.",
                json!({
                    "name": string("The ConfigMap's name."),
                    "key": string("The key (default module.wasm)."),
                }),
                &["name"],
            ),
        ),
        (
            "ImageSource",
            object(
                "A container image that serves HTTP on port.",
                json!({
                    "name": string("The image reference."),
                    "port": int("int32", "The port the container listens on (default 8080)."),
                    "command": strings("Replaces the image's entrypoint."),
                    "args": strings("Replaces the image's arguments."),
                }),
                &["name"],
            ),
        ),
        (
            "FunctionStatus",
            object(
                "What the controller and the gateway report about a function.",
                json!({
                    "observedGeneration": int("int64", "The metadata.generation this status describes."),
                    "url": string("Where the function answers."),
                    "replicas": int("int32", "Instances running or starting."),
                    "readyReplicas": int("int32", "Instances ready for requests."),
                    "lastInvoked": described(time, "When the function was last invoked."),
                    "conditions": {"type": "array", "items": condition, "description": "Conditions; Ready says whether it can serve.", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
                    "usage": described(local("FunctionUsage"), "Metered usage since creation."),
                }),
                &[],
            ),
        ),
        (
            "FunctionUsage",
            object(
                "Metered usage of a function since it was created.",
                json!({
                    "invocations": int("int64", "Invocations."),
                    "errors": int("int64", "Invocations that failed (error or timeout)."),
                    "coldStarts": int("int64", "Invocations that had to start an instance first."),
                    "durationMilliseconds": int("int64", "Total time spent in invocations, in milliseconds."),
                    "memoryPeakBytes": int("int64", "The most memory one instance used, in bytes."),
                    "gbSeconds": string("GB-seconds (memory x duration) as a decimal string."),
                }),
                &[],
            ),
        ),
    ];
    let map = generator.definitions_mut();
    for (name, schema) in definitions {
        map.insert(format!("{PREFIX}{name}"), schema);
    }
    local("Function")
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::generate::SchemaSettings;
    use serde_json::Map;
    use strata_api::function::Function;

    /// Checks that every key of `value` is a property of the schema `name`, following
    /// the group's own `$ref`s.
    fn covered(definitions: &Map<String, Value>, name: &str, value: &Value) {
        let Some(props) = definitions[name]["properties"].as_object() else {
            panic!("{name} has no properties");
        };
        for (key, child) in value.as_object().into_iter().flatten() {
            let property = props
                .get(key)
                .unwrap_or_else(|| panic!("{name} lacks {key}"));
            let target = property
                .get("allOf")
                .and_then(|a| a.get(0))
                .unwrap_or(property);
            if let Some(next) = target["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix(REF_PREFIX))
                && next.starts_with(PREFIX)
            {
                covered(definitions, next, child);
            }
        }
    }

    #[test]
    fn the_schema_has_every_field_the_types_write() {
        let mut generator = SchemaSettings::openapi3().into_generator();
        assert_eq!(
            register(&mut generator)["$ref"],
            "#/components/schemas/dev.strata.serverless.v1alpha1.Function"
        );
        let definitions = generator.take_definitions(true);
        let full: Function = serde_json::from_value(json!({
            "metadata": {"name": "f"},
            "spec": {"wasm": {"configMap": {"name": "m", "key": "k"}, "oci": "r", "interface": "http"},
                "image": {"name": "i", "port": 1, "command": ["c"], "args": ["a"]},
                "memory": "1Mi", "timeoutSeconds": 1, "minScale": 0, "maxScale": 1,
                "targetConcurrency": 1, "containerConcurrency": 0, "scaleToZeroAfterSeconds": 1,
                "env": [], "schedule": "* * * * *", "allowNetwork": true},
            "status": {"observedGeneration": 1, "url": "u", "replicas": 1, "readyReplicas": 1,
                "lastInvoked": "2026-01-01T00:00:00Z", "conditions": [],
                "usage": {"invocations": 1, "errors": 0, "coldStarts": 0,
                    "durationMilliseconds": 1, "memoryPeakBytes": 1, "gbSeconds": "0"}},
        }))
        .unwrap();
        let value = serde_json::to_value(&full).unwrap();
        covered(&definitions, &format!("{PREFIX}Function"), &value);
        for kind in ["ObjectMeta", "EnvVar", "Condition", "Quantity", "Time"] {
            assert!(
                definitions.keys().any(|k| k.ends_with(&format!(".{kind}"))),
                "{kind}"
            );
        }
    }
}
