//! The downward API as files: a pod's own metadata (`fieldRef`) and its containers'
//! resources (`resourceFieldRef`), rendered the way the kubelet renders them for
//! `downwardAPI` volumes and `projected` volume sources.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, Pod, ResourceFieldSelector};
use strata_api::quantity::Quantity;

use super::atomic_writer::{File, Payload, validate_path};
use super::translate::ConfigError;

/// What the node can give a container: the figures a `resourceFieldRef` on a limit
/// reports when the container sets none (the kubelet merges node allocatable in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    /// CPU in millicores.
    pub cpu_milli: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage_bytes: i64,
}

/// The files of downwardAPI `items` of `pod`, each with its `mode` or `default_mode`.
pub fn payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    node: &Allocatable,
) -> Result<Payload, ConfigError> {
    let mut files = Payload::new();
    for item in items {
        validate_path(&item.path)?;
        let content = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), None) => field_value(pod, &field.field_path)?,
            (None, Some(resource)) => resource_value(pod, resource, node)?,
            _ => {
                return Err(ConfigError(format!(
                    "downwardAPI item {:?}: exactly one of fieldRef and resourceFieldRef is required",
                    item.path
                )));
            }
        };
        let mode = item.mode.unwrap_or(default_mode);
        files.insert(PathBuf::from(&item.path), File::new(content, mode));
    }
    Ok(files)
}

/// The value of a `fieldRef` a volume may use: `metadata.name`, `.namespace`, `.uid`,
/// `.labels`, `.annotations` (whole maps as sorted `key="value"` lines) or one key of
/// them (`metadata.labels['app']`, empty when absent).
pub fn field_value(pod: &Pod, path: &str) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|k| k.strip_prefix("['"))
            .and_then(|k| k.strip_suffix("']"))
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(labels),
        "metadata.annotations" => format_map(annotations),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                labels.get(key).cloned().unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations") {
                annotations.get(key).cloned().unwrap_or_default()
            } else {
                return Err(ConfigError(format!(
                    "fieldRef {path:?} is not supported in a volume"
                )));
            }
        }
    })
}

/// The value of a `resourceFieldRef`: the container's limit or request of cpu, memory
/// or ephemeral-storage divided by `divisor` (default 1), rounded up. An unset limit
/// is the node's allocatable; an unset request is the limit when one is set, else 0.
pub fn resource_value(
    pod: &Pod,
    selector: &ResourceFieldSelector,
    node: &Allocatable,
) -> Result<String, ConfigError> {
    let name = selector.container_name.as_deref().unwrap_or_default();
    let container = find_container(pod, name).ok_or_else(|| {
        ConfigError(format!(
            "resourceFieldRef: container {name:?} is not in the pod"
        ))
    })?;
    let bad_quantity =
        |err: strata_api::quantity::QuantityError| ConfigError(format!("resourceFieldRef: {err}"));
    let divisor = match &selector.divisor {
        Some(q) => Quantity::parse(&q.0).map_err(bad_quantity)?,
        None => Quantity::parse("1").map_err(bad_quantity)?,
    };
    let resources = container.resources.as_ref();
    let get = |map: Option<&ApiQuantities>, key: &str| {
        map.and_then(|m| m.get(key))
            .map(|q| Quantity::parse(&q.0).map_err(bad_quantity))
            .transpose()
    };
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let (kind, resource) = selector
        .resource
        .split_once('.')
        .unwrap_or(("", selector.resource.as_str()));
    let limit = get(limits, resource)?;
    let set = match kind {
        "limits" => limit,
        "requests" => get(requests, resource)?.or(limit),
        _ => None,
    };
    let cpu = |q: Option<Quantity>, fallback: i64| {
        ceil_div(
            q.map_or(fallback, |q| q.milli_value()),
            divisor.milli_value(),
        )
    };
    let units = |q: Option<Quantity>, fallback: i64| {
        ceil_div(q.map_or(fallback, |q| q.value()), divisor.value())
    };
    let value = match selector.resource.as_str() {
        "limits.cpu" => cpu(set, node.cpu_milli),
        "limits.memory" => units(set, node.memory_bytes),
        "limits.ephemeral-storage" => units(set, node.ephemeral_storage_bytes),
        "requests.cpu" => cpu(set, 0),
        "requests.memory" | "requests.ephemeral-storage" => units(set, 0),
        other => {
            return Err(ConfigError(format!(
                "resourceFieldRef {other:?} is not supported"
            )));
        }
    };
    Ok(value.to_string())
}

/// Resource figures as the API carries them.
type ApiQuantities = BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>;

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// `ceil(value / divisor)`, 0 for a zero divisor.
fn ceil_div(value: i64, divisor: i64) -> i64 {
    if divisor <= 0 {
        return 0;
    }
    let quotient = value / divisor;
    if value % divisor > 0 {
        quotient + 1
    } else {
        quotient
    }
}

/// A map as the kubelet writes `metadata.labels`/`.annotations`: one `key="value"`
/// line per key in sorted order, values quoted like Go's `%q`, no trailing newline.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A string quoted like Go's `strconv.Quote`: `"` and `\` escaped, control characters
/// as `\n`-style escapes or `\xNN`/`\uNNNN`.
fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ObjectFieldSelector, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;

    const NODE: Allocatable = Allocatable {
        cpu_milli: 4000,
        memory_bytes: 8 << 30,
        ephemeral_storage_bytes: 100 << 30,
    };

    fn pod() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("shop".into());
        pod.metadata.uid = Some("u-1".into());
        pod.metadata.labels = Some(BTreeMap::from([
            ("tier".to_string(), "front".to_string()),
            ("app".to_string(), "web".to_string()),
        ]));
        pod.metadata.annotations = Some(BTreeMap::from([(
            "note".to_string(),
            "say \"hi\"\nbye".to_string(),
        )]));
        let resources = ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_string(), Q("250m".into())),
                ("memory".to_string(), Q("64Mi".into())),
            ])),
            ..Default::default()
        };
        pod.spec = Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                resources: Some(resources),
                ..Default::default()
            }],
            ..Default::default()
        });
        pod
    }

    fn field(path: &str, field_path: &str) -> DownwardAPIVolumeFile {
        DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.into(),
                api_version: None,
            }),
            ..Default::default()
        }
    }

    fn resource(path: &str, name: &str, divisor: Option<&str>) -> DownwardAPIVolumeFile {
        DownwardAPIVolumeFile {
            path: path.into(),
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: Some("main".into()),
                resource: name.into(),
                divisor: divisor.map(|d| Q(d.into())),
            }),
            ..Default::default()
        }
    }

    fn text(files: &Payload, path: &str) -> String {
        String::from_utf8(files[&PathBuf::from(path)].content.clone()).unwrap()
    }

    #[test]
    fn metadata_is_written_like_the_kubelet() {
        let items = [
            field("name", "metadata.name"),
            field("ns", "metadata.namespace"),
            field("uid", "metadata.uid"),
            field("labels", "metadata.labels"),
            field("annotations", "metadata.annotations"),
            field("tier", "metadata.labels['tier']"),
            field("missing", "metadata.labels['nope']"),
            DownwardAPIVolumeFile {
                mode: Some(0o400),
                ..field("sub/name", "metadata.name")
            },
        ];
        let files = payload(&pod(), &items, 0o644, &NODE).unwrap();
        assert_eq!(text(&files, "name"), "web");
        assert_eq!(text(&files, "ns"), "shop");
        assert_eq!(text(&files, "uid"), "u-1");
        assert_eq!(text(&files, "labels"), "app=\"web\"\ntier=\"front\"");
        assert_eq!(text(&files, "annotations"), r#"note="say \"hi\"\nbye""#);
        assert_eq!(text(&files, "tier"), "front");
        assert_eq!(text(&files, "missing"), "");
        assert_eq!(files[&PathBuf::from("name")].mode, 0o644);
        assert_eq!(files[&PathBuf::from("sub/name")].mode, 0o400);
    }

    #[test]
    fn resources_are_divided_and_rounded_up_with_node_fallbacks() {
        let items = [
            resource("cpu", "limits.cpu", None),
            resource("cpu_m", "limits.cpu", Some("1m")),
            resource("mem_mi", "limits.memory", Some("1Mi")),
            resource("req_cpu_m", "requests.cpu", Some("1m")),
            resource("req_mem", "requests.memory", None),
            resource("eph", "limits.ephemeral-storage", Some("1Gi")),
        ];
        let files = payload(&pod(), &items, 0o644, &NODE).unwrap();
        assert_eq!(text(&files, "cpu"), "1");
        assert_eq!(text(&files, "cpu_m"), "250");
        assert_eq!(text(&files, "mem_mi"), "64");
        assert_eq!(text(&files, "req_cpu_m"), "250");
        assert_eq!(text(&files, "req_mem"), (64 << 20).to_string());
        assert_eq!(text(&files, "eph"), "100");
    }

    #[test]
    fn bad_items_are_errors_not_panics() {
        for item in [
            field("../x", "metadata.name"),
            field("/abs", "metadata.name"),
            field("x", "spec.nodeName"),
            resource("x", "limits.gpu", None),
            resource("x", "limits.cpu", Some("bogus")),
            DownwardAPIVolumeFile {
                path: "x".into(),
                ..Default::default()
            },
        ] {
            assert!(payload(&pod(), &[item], 0o644, &NODE).is_err());
        }
    }
}
