//! Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`): the
//! columns `kubectl get` shows for each kind (pods: READY STATUS RESTARTS AGE, …), with
//! the wide (`-o wide`) columns at priority 1.

use serde_json::{Value, json};
use strata_api::Resource;

/// Kubernetes' `HumanDuration` (`45s`, `3m20s`, `5h`, `2d3h`, `1y30d`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if hours < 24 * 365 * 2 {
        format!("{days}d")
    } else if hours < 24 * 365 * 8 {
        match days % 365 {
            0 => format!("{}y", days / 365),
            d => format!("{}y{d}d", days / 365),
        }
    } else {
        format!("{}y", days / 365)
    }
}

fn age(object: &Value) -> String {
    since(&object["metadata"]["creationTimestamp"])
}

/// How long ago an RFC 3339 timestamp was, as kubectl prints it.
fn since(time: &Value) -> String {
    time.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

fn containers(spec: &Value) -> (String, String) {
    let list = spec["containers"].as_array().cloned().unwrap_or_default();
    let names: Vec<String> = list.iter().map(|c| text(&c["name"])).collect();
    let images: Vec<String> = list.iter().map(|c| text(&c["image"])).collect();
    (names.join(","), images.join(","))
}

/// `k=v,k2=v2` of a JSON map of labels (a Service selector, or `matchLabels`).
pub fn labels_text(labels: &Value) -> String {
    labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn selector_text(selector: &Value) -> String {
    or_none(labels_text(&selector["matchLabels"]))
}

fn pod_status(pod: &Value) -> String {
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return "Terminating".into();
    }
    for status in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(reason) = status["state"]["waiting"]["reason"].as_str() {
            return reason.into();
        }
        if let Some(reason) = status["state"]["terminated"]["reason"].as_str() {
            return reason.into();
        }
    }
    pod["status"]["reason"]
        .as_str()
        .or(pod["status"]["phase"].as_str())
        .unwrap_or("Pending")
        .to_string()
}

type Column = (&'static str, &'static str, u8);

/// Columns (name, type, priority) and the cells of one object.
fn columns(resource: &Resource) -> Vec<Column> {
    match (resource.group, resource.kind) {
        ("", "Pod") => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        ("apps", "Deployment") => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "ReplicaSet") => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "DaemonSet") => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
        ],
        ("apps", "StatefulSet") => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Age", "string", 0),
        ],
        ("batch", "Job") => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Age", "string", 0),
        ],
        ("", "Service") => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        ("", "Node") => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
        ],
        ("", "Namespace") => vec![
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Age", "string", 0),
        ],
        ("", "ConfigMap") => vec![
            ("Name", "string", 0),
            ("Data", "integer", 0),
            ("Age", "string", 0),
        ],
        ("", "Secret") => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Data", "integer", 0),
            ("Age", "string", 0),
        ],
        ("coordination.k8s.io", "Lease") => vec![
            ("Name", "string", 0),
            ("Holder", "string", 0),
            ("Age", "string", 0),
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            ("Name", "string", 0),
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        ("serverless.strata.dev", "Function") => vec![
            ("Name", "string", 0),
            ("URL", "string", 0),
            ("Ready", "string", 0),
            ("Replicas", "integer", 0),
            ("Last Invoked", "string", 0),
            ("Age", "string", 0),
        ],
        ("", "Event") | ("events.k8s.io", "Event") => vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
            ("Count", "integer", 1),
            ("Name", "string", 1),
        ],
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            vec![("Name", "string", 0), ("Created At", "date", 0)]
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => vec![
            ("Name", "string", 0),
            ("Role", "string", 0),
            ("Age", "string", 0),
            ("Users", "string", 1),
            ("Groups", "string", 1),
            ("ServiceAccounts", "string", 1),
        ],
        _ => vec![("Name", "string", 0), ("Age", "string", 0)],
    }
}

/// A Function's row: NAME URL READY (the `Ready` condition's status) REPLICAS
/// LAST INVOKED (an age) AGE.
fn function_cells(name: Value, o: &Value, age: Value) -> Vec<Value> {
    let status = &o["status"];
    let ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| text(&c["status"]))
        .unwrap_or_default();
    let last_invoked = if status["lastInvoked"].is_string() {
        since(&status["lastInvoked"])
    } else {
        "<none>".into()
    };
    vec![
        name,
        json!(or_none(text(&status["url"]))),
        json!(or_none(ready)),
        json!(int(&status["replicas"])),
        json!(last_invoked),
        age,
    ]
}

/// An event's row: both APIs' field names (core/v1 and events.k8s.io/v1).
fn event_cells(o: &Value) -> Vec<Value> {
    let first = |keys: &[&str]| {
        keys.iter()
            .map(|k| &o[*k])
            .find(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Null)
    };
    let last_seen = [
        first(&["lastTimestamp", "deprecatedLastTimestamp"]),
        first(&["eventTime"]),
        o["metadata"]["creationTimestamp"].clone(),
    ]
    .into_iter()
    .find(|t| t.is_string())
    .unwrap_or(Value::Null);
    let regarding = first(&["involvedObject", "regarding"]);
    let object = format!(
        "{}/{}",
        text(&regarding["kind"]).to_lowercase(),
        text(&regarding["name"])
    );
    let count = first(&["count", "deprecatedCount"]).as_i64().unwrap_or(1);
    vec![
        json!(since(&last_seen)),
        json!(text(&o["type"])),
        json!(text(&o["reason"])),
        json!(object),
        json!(text(&first(&["message", "note"]))),
        json!(count),
        json!(text(&o["metadata"]["name"])),
    ]
}

/// Up to three items, `,`-joined, then ` + N more...` (`<unset>` for none): how kubectl
/// prints an EndpointSlice's ports and addresses.
fn first_three(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    match items.len() {
        0 => "<unset>".into(),
        n if n > 3 => format!("{} + {} more...", items[..3].join(","), n - 3),
        _ => items.join(","),
    }
}

/// kubectl's EXTERNAL-IP of a Service: the external name, the load balancer's
/// addresses (`<pending>` until it has one) and `spec.externalIPs`.
fn service_external_ip(spec: &Value, status: &Value) -> String {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut addresses = Vec::new();
    match spec["type"].as_str() {
        Some("ExternalName") => return text(&spec["externalName"]),
        Some("LoadBalancer") => {
            for ingress in status["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
            {
                match (ingress["ip"].as_str(), ingress["hostname"].as_str()) {
                    (Some(ip), _) if !ip.is_empty() => addresses.push(ip.to_string()),
                    (_, Some(host)) if !host.is_empty() => addresses.push(host.to_string()),
                    _ => {}
                }
            }
            addresses.extend(strings(&spec["externalIPs"]));
            if addresses.is_empty() {
                return "<pending>".into();
            }
        }
        _ => addresses.extend(strings(&spec["externalIPs"])),
    }
    or_none(addresses.join(","))
}

fn cells(resource: &Resource, o: &Value) -> Vec<Value> {
    let name = json!(text(&o["metadata"]["name"]));
    let age = json!(age(o));
    let status = &o["status"];
    let spec = &o["spec"];
    match (resource.group, resource.kind) {
        ("", "Pod") => {
            let statuses = status["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = spec["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.iter().filter(|s| s["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|s| int(&s["restartCount"])).sum();
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                age,
                json!(or_none(text(&status["podIP"]))),
                json!(or_none(text(&spec["nodeName"]))),
                json!("<none>"),
                json!("<none>"),
            ]
        }
        ("apps", "Deployment") => {
            let (names, images) = containers(&spec["template"]["spec"]);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(&status["readyReplicas"]),
                    int(&spec["replicas"])
                )),
                json!(int(&status["updatedReplicas"]).to_string()),
                json!(int(&status["availableReplicas"]).to_string()),
                age,
                json!(names),
                json!(images),
                json!(selector_text(&spec["selector"])),
            ]
        }
        ("apps", "ReplicaSet") => {
            let (names, images) = containers(&spec["template"]["spec"]);
            vec![
                name,
                json!(int(&spec["replicas"])),
                json!(int(&status["replicas"])),
                json!(int(&status["readyReplicas"])),
                age,
                json!(names),
                json!(images),
                json!(selector_text(&spec["selector"])),
            ]
        }
        ("apps", "DaemonSet") => vec![
            name,
            json!(int(&status["desiredNumberScheduled"])),
            json!(int(&status["currentNumberScheduled"])),
            json!(int(&status["numberReady"])),
            json!(int(&status["updatedNumberScheduled"])),
            json!(int(&status["numberAvailable"])),
            age,
        ],
        ("apps", "StatefulSet") => vec![
            name,
            json!(format!(
                "{}/{}",
                int(&status["readyReplicas"]),
                int(&spec["replicas"])
            )),
            age,
        ],
        ("batch", "Job") => {
            let done = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| {
                    c["status"] == "True" && (c["type"] == "Complete" || c["type"] == "Failed")
                })
                .map(|c| text(&c["type"]));
            vec![
                name,
                json!(done.unwrap_or_else(|| "Running".into())),
                json!(format!(
                    "{}/{}",
                    int(&status["succeeded"]),
                    spec["completions"].as_i64().unwrap_or(1)
                )),
                age,
            ]
        }
        ("", "Service") => {
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p["nodePort"].as_i64() {
                    Some(np) => format!("{}:{np}/{}", int(&p["port"]), text(&p["protocol"])),
                    None => format!("{}/{}", int(&p["port"]), text(&p["protocol"])),
                })
                .collect();
            let selector = labels_text(&spec["selector"]);
            vec![
                name,
                json!(text(&spec["type"])),
                json!(or_none(text(&spec["clusterIP"]))),
                json!(service_external_ip(spec, status)),
                json!(or_none(ports.join(","))),
                age,
                json!(or_none(selector)),
            ]
        }
        ("", "Node") => {
            let ready = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let roles: Vec<String> = o["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(str::to_string)
                })
                .collect();
            vec![
                name,
                json!(ready),
                json!(or_none(roles.join(","))),
                age,
                json!(text(&status["nodeInfo"]["kubeletVersion"])),
            ]
        }
        ("", "Namespace") => vec![name, json!(text(&status["phase"])), age],
        ("", "ConfigMap") => {
            let n = o["data"].as_object().map_or(0, |m| m.len())
                + o["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(n), age]
        }
        ("", "Secret") => vec![
            name,
            json!(text(&o["type"])),
            json!(o["data"].as_object().map_or(0, |m| m.len())),
            age,
        ],
        ("coordination.k8s.io", "Lease") => {
            vec![name, json!(or_none(text(&spec["holderIdentity"]))), age]
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports = o["ports"].as_array().into_iter().flatten().map(|p| {
                match (p["port"].as_i64(), p["name"].as_str()) {
                    (Some(port), _) => port.to_string(),
                    (None, Some(name)) => name.to_string(),
                    (None, None) => "*".into(),
                }
            });
            let addresses = o["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
                .map(text);
            vec![
                name,
                json!(text(&o["addressType"])),
                json!(first_three(ports)),
                json!(first_three(addresses)),
                age,
            ]
        }
        ("serverless.strata.dev", "Function") => function_cells(name, o, age),
        ("", "Event") | ("events.k8s.io", "Event") => event_cells(o),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            vec![name, json!(text(&o["metadata"]["creationTimestamp"]))]
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let subjects = |kind: &str| {
                let names: Vec<String> = o["subjects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| s["kind"] == kind)
                    .map(|s| match (kind, s["namespace"].as_str()) {
                        ("ServiceAccount", Some(ns)) => format!("{ns}/{}", text(&s["name"])),
                        _ => text(&s["name"]),
                    })
                    .collect();
                json!(names.join(", "))
            };
            let role_ref = &o["roleRef"];
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    text(&role_ref["kind"]),
                    text(&role_ref["name"])
                )),
                age,
                subjects("User"),
                subjects("Group"),
                subjects("ServiceAccount"),
            ]
        }
        _ => vec![name, age],
    }
}

/// A `meta.k8s.io/v1` Table of `objects`.
pub fn table(resource: &Resource, objects: &[Value], resource_version: Value) -> Value {
    let definitions: Vec<Value> = columns(resource)
        .into_iter()
        .map(|(name, kind, priority)| {
            let mut d = json!({"name": name, "type": kind, "format": "", "description": "", "priority": priority});
            if name == "Name" {
                d["format"] = json!("name");
            }
            d
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "cells": cells(resource, o),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3600 * 5), "5h");
        assert_eq!(human_duration(3600 * 24 * 2 + 3600 * 3), "2d3h");
        assert_eq!(human_duration(3600 * 24 * 400), "400d");
    }

    #[test]
    fn services_show_cluster_ip_node_ports_and_external_ips() {
        let services = strata_api::resources::find("", "v1", "services").unwrap();
        let service = |spec: Value| json!({"metadata": {"name": "web"}, "spec": spec});
        let rows = table(
            services,
            &[
                service(
                    json!({"type": "NodePort", "clusterIP": "10.43.0.20", "ports": [
                    {"port": 80, "protocol": "TCP", "nodePort": 30080},
                    {"port": 53, "protocol": "UDP", "nodePort": 30053}]}),
                ),
                service(json!({"type": "ClusterIP", "clusterIP": "None", "ports": [
                    {"port": 80, "protocol": "TCP"}]})),
                service(
                    json!({"type": "LoadBalancer", "clusterIP": "10.43.0.21", "ports": [
                    {"port": 443, "protocol": "TCP", "nodePort": 30443}]}),
                ),
                service(json!({"type": "ExternalName", "externalName": "example.com"})),
            ],
            json!("5"),
        );
        let cells = |i: usize| -> Vec<String> {
            rows["rows"][i]["cells"].as_array().unwrap()[1..5]
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            cells(0),
            [
                "NodePort",
                "10.43.0.20",
                "<none>",
                "80:30080/TCP,53:30053/UDP"
            ]
        );
        assert_eq!(cells(1), ["ClusterIP", "None", "<none>", "80/TCP"]);
        assert_eq!(
            cells(2),
            ["LoadBalancer", "10.43.0.21", "<pending>", "443:30443/TCP"]
        );
        assert_eq!(
            cells(3),
            ["ExternalName", "<none>", "example.com", "<none>"]
        );
    }

    #[test]
    fn endpoint_slices_show_three_ports_and_addresses_then_how_many_more() {
        let slices =
            strata_api::resources::find("discovery.k8s.io", "v1", "endpointslices").unwrap();
        let endpoints: Vec<Value> = (1..=5)
            .map(|i| json!({"addresses": [format!("10.42.0.{i}")]}))
            .collect();
        let t = table(
            slices,
            &[
                json!({"metadata": {"name": "web-x1y2z"}, "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": [{"name": "http", "port": 8080}, {"name": "all"}]}),
                json!({"metadata": {"name": "web-abcde"}, "addressType": "IPv6", "endpoints": []}),
            ],
            json!("5"),
        );
        let row = |i: usize| t["rows"][i]["cells"].as_array().unwrap()[..4].to_vec();
        assert_eq!(
            row(0),
            [
                json!("web-x1y2z"),
                json!("IPv4"),
                json!("8080,all"),
                json!("10.42.0.1,10.42.0.2,10.42.0.3 + 2 more...")
            ]
        );
        assert_eq!(
            row(1),
            [
                json!("web-abcde"),
                json!("IPv6"),
                json!("<unset>"),
                json!("<unset>")
            ]
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Name", "AddressType", "Ports", "Endpoints", "Age"]);
    }

    #[test]
    fn functions_show_url_readiness_replicas_and_last_invocation() {
        let functions =
            strata_api::resources::find("serverless.strata.dev", "v1alpha1", "functions").unwrap();
        let invoked = (chrono::Utc::now() - chrono::Duration::seconds(90)).to_rfc3339();
        let t = table(
            functions,
            &[
                json!({"metadata": {"name": "hello"}, "status": {
                    "url": "http://hello.default.fn.localhost:8080/", "replicas": 2,
                    "lastInvoked": invoked,
                    "conditions": [{"type": "Scheduled", "status": "False"},
                        {"type": "Ready", "status": "True"}]}}),
                json!({"metadata": {"name": "idle"}}),
            ],
            json!("7"),
        );
        let row = |i: usize| t["rows"][i]["cells"].as_array().unwrap()[..5].to_vec();
        assert_eq!(
            row(0),
            [
                json!("hello"),
                json!("http://hello.default.fn.localhost:8080/"),
                json!("True"),
                json!(2),
                json!("90s")
            ]
        );
        assert_eq!(
            row(1),
            [
                json!("idle"),
                json!("<none>"),
                json!("<none>"),
                json!(0),
                json!("<none>")
            ]
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["Name", "URL", "Ready", "Replicas", "Last Invoked", "Age"]
        );
    }

    #[test]
    fn pods_show_ready_status_and_restarts() {
        let pods = strata_api::resources::find("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "containerStatuses": [
                {"ready": true, "restartCount": 2, "state": {"running": {}}},
                {"ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        let t = table(pods, &[pod], json!("5"));
        let row = &t["rows"][0]["cells"];
        assert_eq!(row[0], "web");
        assert_eq!(row[1], "1/2");
        assert_eq!(row[2], "CrashLoopBackOff");
        assert_eq!(row[3], "3");
        assert_eq!(row[6], "n1");
        assert_eq!(
            t["columnDefinitions"].as_array().unwrap().len(),
            row.as_array().unwrap().len()
        );
    }

    #[test]
    fn events_show_what_happened_to_which_object() {
        for (group, version, event) in [
            (
                "",
                "v1",
                json!({
                    "metadata": {"name": "web.1", "creationTimestamp": "2020-01-01T00:00:00Z"},
                    "type": "Warning", "reason": "Unhealthy", "count": 4,
                    "message": "Liveness probe failed",
                    "lastTimestamp": "2020-01-01T00:00:00Z",
                    "involvedObject": {"kind": "Pod", "name": "web"}
                }),
            ),
            (
                "events.k8s.io",
                "v1",
                json!({
                    "metadata": {"name": "web.1"},
                    "type": "Warning", "reason": "Unhealthy", "deprecatedCount": 4,
                    "note": "Liveness probe failed",
                    "eventTime": "2020-01-01T00:00:00.000000Z",
                    "regarding": {"kind": "Pod", "name": "web"}
                }),
            ),
        ] {
            let events = strata_api::resources::find(group, version, "events").unwrap();
            let t = table(events, &[event], json!("5"));
            let row = &t["rows"][0]["cells"];
            assert!(row[0].as_str().unwrap().ends_with('d'), "{row}");
            assert_eq!(row[1], "Warning");
            assert_eq!(row[2], "Unhealthy");
            assert_eq!(row[3], "pod/web");
            assert_eq!(row[4], "Liveness probe failed");
            assert_eq!(row[5], 4);
            assert_eq!(
                t["columnDefinitions"].as_array().unwrap().len(),
                row.as_array().unwrap().len()
            );
        }
    }
}
