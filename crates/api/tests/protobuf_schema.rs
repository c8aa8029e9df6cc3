#![allow(clippy::unwrap_used)]
//! Generates the protobuf schema table (`src/protobuf/table.rs`) and checks that the
//! committed one is current. Field numbers and types come from the `k8s-pb` crate's
//! message definitions (prost code generated from Kubernetes' `generated.proto`),
//! parsed with syn; JSON names from k8s-openapi's schemas of the same types.
//!
//! Regenerate with `STRATA_BLESS=1 cargo test -p strata-api --test protobuf_schema`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::{
    apps, authentication, authorization, autoscaling, batch, coordination, core, discovery, events,
    policy, rbac,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use quote::ToTokens;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::Value;

/// The objects a request body may carry, their k8s-pb module and k8s-openapi type.
macro_rules! roots {
    ($($api:literal $kind:literal $module:literal => $ty:ty),* $(,)?) => {
        const ROOTS: &[(&str, &str, &str)] = &[$(($api, $kind, $module)),*];
        fn register(generator: &mut SchemaGenerator) {
            $(generator.subschema_for::<$ty>();)*
        }
    };
}

roots! {
    "v1" "Namespace" "api.core.v1" => core::v1::Namespace,
    "v1" "Pod" "api.core.v1" => core::v1::Pod,
    "v1" "Service" "api.core.v1" => core::v1::Service,
    "v1" "Endpoints" "api.core.v1" => core::v1::Endpoints,
    "v1" "ConfigMap" "api.core.v1" => core::v1::ConfigMap,
    "v1" "Secret" "api.core.v1" => core::v1::Secret,
    "v1" "ServiceAccount" "api.core.v1" => core::v1::ServiceAccount,
    "v1" "Node" "api.core.v1" => core::v1::Node,
    "v1" "Event" "api.core.v1" => core::v1::Event,
    "v1" "Binding" "api.core.v1" => core::v1::Binding,
    "apps/v1" "Deployment" "api.apps.v1" => apps::v1::Deployment,
    "apps/v1" "ReplicaSet" "api.apps.v1" => apps::v1::ReplicaSet,
    "apps/v1" "DaemonSet" "api.apps.v1" => apps::v1::DaemonSet,
    "apps/v1" "StatefulSet" "api.apps.v1" => apps::v1::StatefulSet,
    "batch/v1" "Job" "api.batch.v1" => batch::v1::Job,
    "coordination.k8s.io/v1" "Lease" "api.coordination.v1" => coordination::v1::Lease,
    "discovery.k8s.io/v1" "EndpointSlice" "api.discovery.v1" => discovery::v1::EndpointSlice,
    "events.k8s.io/v1" "Event" "api.events.v1" => events::v1::Event,
    "policy/v1" "Eviction" "api.policy.v1" => policy::v1::Eviction,
    "autoscaling/v1" "Scale" "api.autoscaling.v1" => autoscaling::v1::Scale,
    "authentication.k8s.io/v1" "TokenRequest" "api.authentication.v1" => authentication::v1::TokenRequest,
    "rbac.authorization.k8s.io/v1" "ClusterRole" "api.rbac.v1" => rbac::v1::ClusterRole,
    "rbac.authorization.k8s.io/v1" "ClusterRoleBinding" "api.rbac.v1" => rbac::v1::ClusterRoleBinding,
    "rbac.authorization.k8s.io/v1" "Role" "api.rbac.v1" => rbac::v1::Role,
    "rbac.authorization.k8s.io/v1" "RoleBinding" "api.rbac.v1" => rbac::v1::RoleBinding,
    "authorization.k8s.io/v1" "SelfSubjectAccessReview" "api.authorization.v1" => authorization::v1::SelfSubjectAccessReview,
    "authorization.k8s.io/v1" "SelfSubjectRulesReview" "api.authorization.v1" => authorization::v1::SelfSubjectRulesReview,
    "v1" "DeleteOptions" "apimachinery.pkg.apis.meta.v1" => DeleteOptions,
}

/// Messages with a JSON form of their own, and the table kind for each.
const SPECIAL: &[(&str, &str)] = &[
    ("io.k8s.apimachinery.pkg.api.resource.Quantity", "Quantity"),
    (
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "IntOrString",
    ),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Time", "Time"),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
        "MicroTime",
    ),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", "RawJson"),
    ("io.k8s.apimachinery.pkg.runtime.RawExtension", "RawJson"),
];

const TABLE: &str = "src/protobuf/table.rs";

/// One field of a k8s-pb message.
#[derive(Debug)]
struct PbField {
    tag: u32,
    rust_name: String,
    /// `string`, `message`, `int32`… (for maps: the value type).
    scalar: String,
    /// `One`, `Many` or `Map`.
    card: &'static str,
    /// For messages: the full name of the referenced message.
    reference: Option<String>,
}

#[test]
fn protobuf_table_is_generated_from_k8s_pb_and_current() {
    let source = k8s_pb_source();
    let messages = parse_messages(&source);
    assert!(
        messages.contains_key("io.k8s.api.apps.v1.Deployment"),
        "k8s-pb under {} has no apps/v1 Deployment",
        source.display()
    );
    let json_names = json_names();
    let generated = generate(&messages, &json_names);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE);
    if std::env::var_os("STRATA_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{TABLE} is stale: regenerate with STRATA_BLESS=1 cargo test -p strata-api --test protobuf_schema"
    );
}

/// The `src` directory of the k8s-pb package this workspace locks.
fn k8s_pb_source() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "k8s-pb")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("k8s-pb is a dev-dependency of strata-api");
    Path::new(manifest).parent().unwrap().join("src")
}

/// Every message under `api/` and `apimachinery/`, by full name.
fn parse_messages(source: &Path) -> HashMap<String, Vec<PbField>> {
    let mut messages = HashMap::new();
    for top in ["api", "apimachinery"] {
        let mut files = Vec::new();
        collect_files(&source.join(top), &mut files);
        for file in files {
            let module: Vec<String> = file
                .parent()
                .unwrap()
                .strip_prefix(source)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let text = std::fs::read_to_string(&file).unwrap();
            let parsed = syn::parse_file(&text).unwrap();
            for item in parsed.items {
                let syn::Item::Struct(item) = item else {
                    continue;
                };
                let fields = item
                    .fields
                    .iter()
                    .filter_map(|field| pb_field(field, &module))
                    .collect();
                messages.insert(full_name(&module, &item.ident.to_string()), fields);
            }
        }
    }
    messages
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn full_name(module: &[String], name: &str) -> String {
    format!("io.k8s.{}.{name}", module.join("."))
}

/// Reads `#[prost(message, optional, tag = "1")]` and the field's type.
fn pb_field(field: &syn::Field, module: &[String]) -> Option<PbField> {
    let attr = field.attrs.iter().find(|a| a.path().is_ident("prost"))?;
    let syn::Meta::List(list) = &attr.meta else {
        return None;
    };
    let tokens = list.tokens.to_string();
    let parts: Vec<&str> = tokens.split(',').map(str::trim).collect();
    let tag = tokens
        .split("tag = \"")
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()?;
    let (scalar, card) = if let Some(map) = tokens.strip_prefix("btree_map = \"") {
        let value = map.split('"').next()?.split(',').nth(1)?.trim().to_string();
        (value, "Map")
    } else {
        let card = if parts.contains(&"repeated") {
            "Many"
        } else {
            "One"
        };
        let scalar = parts[0].split('=').next()?.trim().to_string();
        (scalar, card)
    };
    let reference = (scalar == "message").then(|| resolve(&field.ty, module));
    Some(PbField {
        tag,
        rust_name: field
            .ident
            .as_ref()?
            .to_string()
            .trim_start_matches("r#")
            .to_string(),
        scalar,
        card,
        reference,
    })
}

/// The full name of the message a field's type (inside Option/Vec/Box/BTreeMap) names.
fn resolve(ty: &syn::Type, module: &[String]) -> String {
    let syn::Type::Path(path) = ty else {
        panic!("unexpected type {}", ty.to_token_stream())
    };
    let last = path.path.segments.last().unwrap();
    if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
        let inner = args
            .args
            .iter()
            .filter_map(|a| match a {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .last()
            .unwrap();
        return resolve(inner, module);
    }
    let mut at: Vec<String> = module.to_vec();
    let segments: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let (name, prefix) = segments.split_last().unwrap();
    for segment in prefix {
        match segment.as_str() {
            "super" => {
                at.pop();
            }
            "crate" => at.clear(),
            other => at.push(other.to_string()),
        }
    }
    full_name(&at, name)
}

/// Per OpenAPI definition, its property names.
fn json_names() -> HashMap<String, Vec<String>> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    register(&mut generator);
    generator
        .take_definitions(true)
        .into_iter()
        .map(|(name, schema)| {
            let properties = schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            (name, properties)
        })
        .collect()
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    for (i, word) in snake.split('_').enumerate() {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            if i == 0 {
                out.push(first)
            } else {
                out.extend(first.to_uppercase())
            }
            out.extend(chars);
        }
    }
    out
}

fn generate(
    messages: &HashMap<String, Vec<PbField>>,
    json_names: &HashMap<String, Vec<String>>,
) -> String {
    let special: HashMap<&str, &str> = SPECIAL.iter().copied().collect();
    // Breadth-first from the roots, so indices are stable for a given k8s-pb.
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    let enqueue = |name: String,
                   index: &mut BTreeMap<String, usize>,
                   order: &mut Vec<String>,
                   queue: &mut VecDeque<String>|
     -> usize {
        if let Some(i) = index.get(&name) {
            return *i;
        }
        let i = order.len();
        index.insert(name.clone(), i);
        order.push(name.clone());
        queue.push_back(name);
        i
    };
    let mut roots = Vec::new();
    for (api_version, kind, module) in ROOTS {
        let name = format!("io.k8s.{module}.{kind}");
        assert!(messages.contains_key(&name), "k8s-pb has no {name}");
        roots.push((
            *api_version,
            *kind,
            enqueue(name, &mut index, &mut order, &mut queue),
        ));
    }
    // Definitions by lower-cased name: prost spells `PodDNSConfig` as `PodDnsConfig`.
    let definitions: HashMap<String, (&String, &Vec<String>)> = json_names
        .iter()
        .map(|(name, properties)| (name.to_lowercase(), (name, properties)))
        .collect();
    // A message Go embeds inline (`VolumeSource` in `Volume`) has its fields named by
    // the embedding message's definition.
    let mut named_by: HashMap<String, String> = HashMap::new();
    let mut bodies: BTreeMap<usize, (String, String)> = BTreeMap::new();
    let mut guessed = Vec::new();
    while let Some(name) = queue.pop_front() {
        let fields = &messages[&name];
        let definition = definitions
            .get(&name.to_lowercase())
            .or_else(|| definitions.get(&named_by.get(&name)?.to_lowercase()));
        let properties: &[String] = definition.map(|d| d.1.as_slice()).unwrap_or(&[]);
        let json_name = |rust_name: &str| {
            properties
                .iter()
                .find(|p| normalize(p) == normalize(rust_name))
                .cloned()
        };
        let mut sorted: Vec<&PbField> = fields.iter().collect();
        sorted.sort_by_key(|f| f.tag);
        let mut line = String::new();
        for field in sorted {
            let mut card = field.card;
            let json = match json_name(&field.rust_name) {
                Some(json) => json,
                None => {
                    let inline = field.card == "One"
                        && field.reference.as_ref().is_some_and(|target| {
                            let inner = &messages[target];
                            let named = inner
                                .iter()
                                .filter(|f| json_name(&f.rust_name).is_some())
                                .count();
                            named * 2 >= inner.len() && named > 0
                        });
                    if inline {
                        card = "Inline";
                        named_by.insert(
                            field.reference.clone().unwrap(),
                            named_by.get(&name).unwrap_or(&name).clone(),
                        );
                    } else {
                        guessed.push(format!("{name}.{}", field.rust_name));
                    }
                    lower_camel(&field.rust_name)
                }
            };
            let kind = match field.scalar.as_str() {
                "string" => "Str".to_string(),
                "bytes" => "Bytes".to_string(),
                "bool" => "Bool".to_string(),
                "int32" => "I32".to_string(),
                "int64" => "I64".to_string(),
                "message" => {
                    let target = field.reference.clone().unwrap();
                    // A message with a JSON form of its own the decoder lacks (e.g.
                    // meta.v1.Duration) must be added there and to SPECIAL first.
                    assert!(
                        !target.ends_with(".Duration"),
                        "{name}.{}: add Duration to the decoder",
                        field.rust_name
                    );
                    match special.get(target.as_str()) {
                        Some(kind) => kind.to_string(),
                        None => {
                            assert!(
                                messages.contains_key(&target),
                                "{name}.{}: no message {target}",
                                field.rust_name
                            );
                            format!(
                                "Msg({})",
                                enqueue(target, &mut index, &mut order, &mut queue)
                            )
                        }
                    }
                }
                other => panic!(
                    "{name}.{}: the decoder has no {other} kind yet",
                    field.rust_name
                ),
            };
            write!(line, "({}, {json:?}, {kind}, {card}), ", field.tag).unwrap();
        }
        let spelled = definition
            .map(|d| d.0.clone())
            .unwrap_or_else(|| name.clone());
        bodies.insert(index[&name], (spelled, line.trim_end().to_string()));
    }
    let mut out = String::new();
    out.push_str(
        "//! The protobuf schema table: @generated by `tests/protobuf_schema.rs` (regenerate\n",
    );
    out.push_str(
        "//! with `STRATA_BLESS=1 cargo test -p strata-api --test protobuf_schema`) from the\n",
    );
    out.push_str(
        "//! k8s-pb crate's messages (field numbers) and k8s-openapi's schemas (JSON names).\n",
    );
    out.push_str("//! Do not edit.\n");
    for field in &guessed {
        writeln!(
            out,
            "//! No JSON name in k8s-openapi (guessed from the protobuf name): {field}"
        )
        .unwrap();
    }
    out.push_str("\nuse super::schema::Card::{Inline, Many, Map, One};\n");
    out.push_str("use super::schema::Kind::*;\n");
    out.push_str("use super::schema::{Message, Root};\n\n");
    writeln!(
        out,
        "/// Every message a request body can hold, reachable from [`ROOTS`]."
    )
    .unwrap();
    writeln!(
        out,
        "pub(crate) static MESSAGES: [Message; {}] = [",
        order.len()
    )
    .unwrap();
    for (i, (name, fields)) in &bodies {
        writeln!(out, "    // {i}: {name}").unwrap();
        writeln!(out, "    Message {{ fields: &[{fields}] }},").unwrap();
    }
    out.push_str("];\n\n");
    writeln!(out, "/// The objects a request body may carry.").unwrap();
    writeln!(out, "pub(crate) static ROOTS: [Root; {}] = [", roots.len()).unwrap();
    for (api_version, kind, message) in roots {
        writeln!(
            out,
            "    Root {{ api_version: {api_version:?}, kind: {kind:?}, message: {message} }},"
        )
        .unwrap();
    }
    out.push_str("];\n");
    out
}
