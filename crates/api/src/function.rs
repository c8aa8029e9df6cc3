//! `serverless.strata.dev/v1alpha1` Function: Strata's own kind for serverless
//! functions, either a WebAssembly module or a container image, scaled by the
//! functions controller and served by the gateway at `<fn>.<ns>.fn.localhost`. It is
//! served like a custom resource: JSON only, no strategic merge patch.
//!
//! The serde shape is the wire shape (camelCase, unset fields left out); defaulting and
//! validation, with Kubernetes-style field errors, live in [`validate`](self::validate).

use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde::{Deserialize, Serialize};

pub mod validate;

/// The API group.
pub const GROUP: &str = "serverless.strata.dev";
/// The version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of a Function.
pub const API_VERSION: &str = "serverless.strata.dev/v1alpha1";
/// The kind.
pub const KIND: &str = "Function";
/// The plural resource name (the URL segment).
pub const PLURAL: &str = "functions";

/// A serverless function: what to run ([`FunctionSpec`]) and how it is doing
/// ([`FunctionStatus`]). Namespaced; its name is a DNS-1035 label because it becomes a
/// host name label.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "wire::Function", try_from = "wire::Function")]
pub struct Function {
    /// Standard object metadata.
    pub metadata: ObjectMeta,
    /// What to run and how to scale it.
    pub spec: Option<FunctionSpec>,
    /// What the controller and the gateway observed; written through `…/status`.
    pub status: Option<FunctionStatus>,
}

/// What a function runs and how it scales. Exactly one of `wasm` and `image` is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSpec {
    /// A WebAssembly module, run by the embedded wasm engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<WasmSource>,
    /// A container image serving HTTP, run as pods scaled to zero when idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSource>,
    /// Memory per instance (default `128Mi`): the linear-memory limit of a wasm module,
    /// the memory limit of a container; the basis of GB-second billing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Longest an invocation may run, in seconds (default 10, 1 to 900).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Fewest instances kept running (default 0: scale to zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_scale: Option<i32>,
    /// Most instances (default 10; at least 1 and `minScale`, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_scale: Option<i32>,
    /// Concurrent requests per instance the autoscaler aims for (default 10, 1 to
    /// 1000); a soft target, ignored for wasm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_concurrency: Option<i32>,
    /// Most concurrent requests one instance receives; 0 (the default) is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i32>,
    /// Seconds without requests before the last instance is stopped (default 60,
    /// at least 1); ignored when `minScale` is above 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_to_zero_after_seconds: Option<i64>,
    /// Environment variables; only `name` and `value` are supported (`valueFrom` is
    /// refused), and names are unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// A five-field cron schedule (`minute hour day-of-month month day-of-week`) on
    /// which the function is invoked, besides HTTP requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Whether the function may open network connections (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_network: Option<bool>,
}

/// Where a WebAssembly module comes from: exactly one of `configMap` and `oci`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmSource {
    /// A key of a ConfigMap in the function's namespace (as `binaryData`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKeyRef>,
    /// An OCI artifact or image reference holding the module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<String>,
    /// How the module is called: `http` (wasi-http) or `cgi` (WASI command, request on
    /// stdin, response on stdout). Unset lets the engine detect it from the exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// The wasm interfaces [`WasmSource::interface`] may name.
pub const WASM_INTERFACES: [&str; 2] = ["http", "cgi"];

/// A key of a ConfigMap in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// The ConfigMap's name.
    pub name: String,
    /// The key (default `module.wasm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A container image that serves HTTP on `port`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSource {
    /// The image reference (`localhost/httpd:latest`).
    pub name: String,
    /// The port the container listens on (default 8080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
}

/// What the controller and the gateway report about a function.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the function answers (`http://<fn>.<ns>.fn.localhost:8080/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Instances running or starting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Instances ready for requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// When the function was last invoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_invoked: Option<Time>,
    /// Conditions; `Ready` says whether it can serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Metered usage since creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<FunctionUsage>,
}

/// Metered usage of a function since it was created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUsage {
    /// Invocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations: Option<i64>,
    /// Invocations that failed (error or timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<i64>,
    /// Invocations that had to start an instance first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_starts: Option<i64>,
    /// Total time spent in invocations, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_milliseconds: Option<i64>,
    /// The most memory one instance used, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak_bytes: Option<i64>,
    /// GB-seconds (memory × duration) as a decimal string (`"0.125"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gb_seconds: Option<String>,
}

impl k8s_openapi::Resource for Function {
    const API_VERSION: &'static str = API_VERSION;
    const GROUP: &'static str = GROUP;
    const KIND: &'static str = KIND;
    const VERSION: &'static str = VERSION;
    const URL_PATH_SEGMENT: &'static str = PLURAL;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for Function {
    const LIST_KIND: &'static str = "FunctionList";
}

impl k8s_openapi::Metadata for Function {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The JSON form with `apiVersion` and `kind`, which [`Function`] goes through so that
/// it serialises them (as k8s-openapi's types do) and refuses a body naming another
/// kind.
mod wire {
    use super::*;

    #[derive(Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Function {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api_version: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        #[serde(default)]
        metadata: ObjectMeta,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spec: Option<FunctionSpec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<FunctionStatus>,
    }

    impl From<super::Function> for Function {
        fn from(f: super::Function) -> Self {
            Self {
                api_version: Some(API_VERSION.into()),
                kind: Some(KIND.into()),
                metadata: f.metadata,
                spec: f.spec,
                status: f.status,
            }
        }
    }

    impl TryFrom<Function> for super::Function {
        type Error = String;

        fn try_from(f: Function) -> Result<Self, String> {
            if let Some(v) = f.api_version.as_deref().filter(|v| *v != API_VERSION) {
                return Err(format!(
                    "invalid apiVersion {v:?}, expected {API_VERSION:?}"
                ));
            }
            if let Some(k) = f.kind.as_deref().filter(|k| *k != KIND) {
                return Err(format!("invalid kind {k:?}, expected {KIND:?}"));
            }
            Ok(Self {
                metadata: f.metadata,
                spec: f.spec,
                status: f.status,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn json_round_trips_faithfully_with_api_version_and_kind() {
        let body = json!({
            "apiVersion": "serverless.strata.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {
                "wasm": {"configMap": {"name": "hello-wasm"}, "interface": "cgi"},
                "memory": "64Mi", "timeoutSeconds": 5, "minScale": 0, "maxScale": 3,
                "targetConcurrency": 4, "containerConcurrency": 0,
                "scaleToZeroAfterSeconds": 30, "env": [{"name": "GREETING", "value": "hi"}],
                "schedule": "*/5 * * * *", "allowNetwork": false,
            },
            "status": {
                "observedGeneration": 2, "url": "http://hello.default.fn.localhost:8080/",
                "replicas": 1, "readyReplicas": 1, "lastInvoked": "2026-01-02T03:04:05Z",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Serving",
                    "message": "", "lastTransitionTime": "2026-01-02T03:04:05Z"}],
                "usage": {"invocations": 7, "errors": 1, "coldStarts": 1,
                    "durationMilliseconds": 120, "memoryPeakBytes": 1048576, "gbSeconds": "0.0075"},
            },
        });
        let f: Function = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(f.spec.as_ref().unwrap().max_scale, Some(3));
        assert_eq!(serde_json::to_value(&f).unwrap(), body);
        let bare = serde_json::to_value(Function::default()).unwrap();
        assert_eq!(
            bare,
            json!({"apiVersion": API_VERSION, "kind": "Function", "metadata": {}})
        );
    }

    #[test]
    fn another_kind_or_version_is_refused() {
        let other = |api_version: &str, kind: &str| {
            serde_json::from_value::<Function>(
                json!({"apiVersion": api_version, "kind": kind, "metadata": {}}),
            )
        };
        assert!(other(API_VERSION, "Pod").is_err());
        assert!(other("serverless.strata.dev/v1", "Function").is_err());
        assert!(serde_json::from_value::<Function>(Value::Null).is_err());
        assert!(serde_json::from_value::<Function>(json!({"metadata": {}})).is_ok());
    }

    #[test]
    fn k8s_openapi_traits_name_the_resource() {
        use k8s_openapi::{ListableResource, Metadata, Resource};
        assert_eq!(<Function as Resource>::API_VERSION, API_VERSION);
        assert_eq!(<Function as Resource>::URL_PATH_SEGMENT, "functions");
        assert_eq!(<Function as ListableResource>::LIST_KIND, "FunctionList");
        let mut f = Function::default();
        f.metadata_mut().name = Some("x".into());
        assert_eq!(f.metadata().name.as_deref(), Some("x"));
    }
}
