//! The `components.schemas` of one group-version, generated from the
//! `schemars::JsonSchema` implementations k8s-openapi carries (descriptions come from
//! the Kubernetes spec), named and shaped as kube-apiserver publishes them; Strata's
//! own kinds have hand-written schemas (`function`).

use k8s_openapi::api::{apps, batch, coordination, core, discovery, events, rbac};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};
use strata_api::Resource;
use strata_api::patch::{ListMerge, TypeSchema, schema_for};

/// The prefix of every `$ref` in an OpenAPI v3 document.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// Maps the kinds Strata serves to their k8s-openapi types; a kind missing here gets
/// paths but no schema (and so no `kubectl explain`).
macro_rules! kinds {
    ($($group:literal $version:literal $kind:literal => $ty:ty),* $(,)?) => {
        /// Registers the schema of `group/version` `kind` (and everything it refers to)
        /// with `generator`, returning the `$ref` to it.
        fn kind_ref(generator: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<Value> {
            match (group, version, kind) {
                $(($group, $version, $kind) => Some(generator.subschema_for::<$ty>().to_value()),)*
                _ => None,
            }
        }
    };
}

kinds! {
    "" "v1" "Namespace" => core::v1::Namespace,
    "" "v1" "Pod" => core::v1::Pod,
    "" "v1" "Service" => core::v1::Service,
    "" "v1" "Endpoints" => core::v1::Endpoints,
    "" "v1" "ConfigMap" => core::v1::ConfigMap,
    "" "v1" "Secret" => core::v1::Secret,
    "" "v1" "ServiceAccount" => core::v1::ServiceAccount,
    "" "v1" "Node" => core::v1::Node,
    "" "v1" "Event" => core::v1::Event,
    "apps" "v1" "Deployment" => apps::v1::Deployment,
    "apps" "v1" "ReplicaSet" => apps::v1::ReplicaSet,
    "apps" "v1" "DaemonSet" => apps::v1::DaemonSet,
    "apps" "v1" "StatefulSet" => apps::v1::StatefulSet,
    "batch" "v1" "Job" => batch::v1::Job,
    "coordination.k8s.io" "v1" "Lease" => coordination::v1::Lease,
    "discovery.k8s.io" "v1" "EndpointSlice" => discovery::v1::EndpointSlice,
    "events.k8s.io" "v1" "Event" => events::v1::Event,
    "rbac.authorization.k8s.io" "v1" "ClusterRole" => rbac::v1::ClusterRole,
    "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" => rbac::v1::ClusterRoleBinding,
    "rbac.authorization.k8s.io" "v1" "Role" => rbac::v1::Role,
    "rbac.authorization.k8s.io" "v1" "RoleBinding" => rbac::v1::RoleBinding,
}

/// The schemas of one group-version: the `$ref` of each kind's object and list, and
/// every definition they refer to.
#[derive(Debug, Default)]
pub struct GroupVersionSchemas {
    /// `components.schemas`.
    pub definitions: Map<String, Value>,
    /// Per kind, the `$ref` of the object and of its list (`None` when the kind has
    /// no schema).
    pub refs: Vec<(&'static str, Option<(Value, Value)>)>,
}

/// Builds the schemas for `resources`, which all belong to one group-version.
pub fn build(resources: &[&'static Resource]) -> GroupVersionSchemas {
    let mut generator = SchemaSettings::openapi3()
        .with(|s| s.meta_schema = None)
        .into_generator();
    let mut found = Vec::new();
    for r in resources {
        let item = match (r.group, r.version, r.kind) {
            ("serverless.strata.dev", "v1alpha1", "Function") => {
                Some(super::function::register(&mut generator))
            }
            _ => kind_ref(&mut generator, r.group, r.version, r.kind),
        };
        found.push((*r, item));
    }
    if found.iter().any(|(_, item)| item.is_some()) {
        // Referred to by the list schemas written below.
        generator.subschema_for::<ListMeta>();
    }
    let mut definitions = generator.take_definitions(true);
    let mut refs = Vec::new();
    for (r, item) in found {
        let Some(item) = item else {
            refs.push((r.kind, None));
            continue;
        };
        let Some(name) = ref_name(&item).map(str::to_string) else {
            refs.push((r.kind, None));
            continue;
        };
        if let Some(schema) = definitions.get_mut(&name) {
            schema["x-kubernetes-group-version-kind"] = gvk(r, r.kind);
        }
        annotate_patch(&mut definitions, &name, schema_for(r.group, r.kind));
        let list_name = format!("{name}List");
        definitions.insert(list_name.clone(), list_schema(r, &item));
        refs.push((
            r.kind,
            Some((item, json!({"$ref": format!("{REF_PREFIX}{list_name}")}))),
        ));
    }
    for (definition, property, values) in ENUMS {
        if let Some(p) = definitions
            .get_mut(*definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*property))
        {
            p["enum"] = json!(values);
        }
    }
    GroupVersionSchemas { definitions, refs }
}

/// The closed string sets (`+enum` types in k8s.io/api, published by kube-apiserver as
/// `enum`, sorted) of the fields users set most; k8s-openapi's schemas carry none.
/// `kubectl explain` lists them under ENUM.
const ENUMS: &[(&str, &str, &[&str])] = &[
    (
        "io.k8s.api.apps.v1.DeploymentStrategy",
        "type",
        &["Recreate", "RollingUpdate"],
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetUpdateStrategy",
        "type",
        &["OnDelete", "RollingUpdate"],
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetUpdateStrategy",
        "type",
        &["OnDelete", "RollingUpdate"],
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetSpec",
        "podManagementPolicy",
        &["OrderedReady", "Parallel"],
    ),
    (
        "io.k8s.api.batch.v1.JobSpec",
        "completionMode",
        &["Indexed", "NonIndexed"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "imagePullPolicy",
        &["Always", "IfNotPresent", "Never"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "terminationMessagePolicy",
        &["FallbackToLogsOnError", "File"],
    ),
    (
        "io.k8s.api.core.v1.ContainerPort",
        "protocol",
        &["SCTP", "TCP", "UDP"],
    ),
    (
        "io.k8s.api.core.v1.ServicePort",
        "protocol",
        &["SCTP", "TCP", "UDP"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "restartPolicy",
        &["Always", "Never", "OnFailure"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "dnsPolicy",
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "phase",
        &["Failed", "Pending", "Running", "Succeeded", "Unknown"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "type",
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "sessionAffinity",
        &["ClientIP", "None"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "externalTrafficPolicy",
        &["Cluster", "Local"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "internalTrafficPolicy",
        &["Cluster", "Local"],
    ),
];

fn gvk(r: &Resource, kind: &str) -> Value {
    json!([{"group": r.group, "version": r.version, "kind": kind}])
}

/// The definition name a `$ref` (possibly wrapped in `allOf`, as kube-apiserver and
/// schemars wrap a `$ref` that has a description beside it) points to.
pub fn ref_name(schema: &Value) -> Option<&str> {
    let reference = schema
        .get("$ref")
        .or_else(|| schema.get("allOf")?.get(0)?.get("$ref"))?;
    reference.as_str()?.strip_prefix(REF_PREFIX)
}

fn list_schema(r: &Resource, item: &Value) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", r.kind, r.kind),
        "type": "object",
        "properties": {
            "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
            "items": {"description": format!("Items is the list of {}.", r.kind), "type": "array", "items": item},
            "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
            "metadata": {
                "allOf": [{"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")}],
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": gvk(r, &format!("{}List", r.kind)),
    })
}

/// Writes `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key` on the
/// properties Strata's strategic merge patch schema knows, following the `$ref`s from
/// the definition `name` along the schema's paths.
fn annotate_patch(definitions: &mut Map<String, Value>, name: &str, schema: Option<&TypeSchema>) {
    let Some(schema) = schema else { return };
    for field in schema.fields {
        let Some(property) = definitions
            .get_mut(name)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field.name))
        else {
            continue;
        };
        match field.list {
            ListMerge::Atomic => {}
            ListMerge::Set => {
                property["x-kubernetes-patch-strategy"] = json!("merge");
                property["x-kubernetes-list-type"] = json!("set");
            }
            ListMerge::ByKey(key) => {
                property["x-kubernetes-patch-strategy"] = json!("merge");
                property["x-kubernetes-patch-merge-key"] = json!(key);
            }
        }
        let element = property.get("items").unwrap_or(property);
        let Some(next) = ref_name(element).map(str::to_string) else {
            continue;
        };
        annotate_patch(definitions, &next, field.schema);
    }
}
