//! Where a pod subresource request goes on the node agent's kubelet API, as a pure
//! function of the pod, its node and the request's query (kube-apiserver's
//! `LogLocation`/`ExecLocation`/`PortForwardLocation`): the node's `InternalIP` and
//! `daemonEndpoints.kubeletEndpoint.Port`, and the kubelet path with the query it takes.

use serde_json::Value;
use strata_api::Subresource;

use crate::status::ApiError;

/// A request on the kubelet API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The node's name.
    pub node: String,
    /// The node's address (an IP, or a host name).
    pub host: String,
    /// The kubelet API port.
    pub port: u16,
    /// Path and query on the kubelet API.
    pub path_and_query: String,
}

/// Query parameters of `pods/log` passed on as they are.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "previous",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "tailLines",
    "limitBytes",
];

/// Stream flags of exec/attach: the API's name and the kubelet's.
const STREAM_PARAMS: &[(&str, &str)] = &[
    ("stdin", "input"),
    ("stdout", "output"),
    ("stderr", "error"),
    ("tty", "tty"),
];

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn is_true(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// The container a request names, defaulted when the pod has exactly one.
pub fn container_name(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = str_at(pod, "/metadata/name");
    let names = |list: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| str_at(c, "/name").to_string())
            .collect()
    };
    let containers = names("containers");
    let init = names("initContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(wanted) => {
            if containers.iter().chain(init.iter()).any(|c| c == wanted) {
                Ok(wanted.to_string())
            } else {
                Err(ApiError::BadRequest(format!(
                    "container {wanted} is not valid for pod {name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::BadRequest(message))
        }
    }
}

/// The node's address and kubelet port.
fn node_endpoint(node: &Value) -> Result<(String, u16), ApiError> {
    let name = str_at(node, "/metadata/name");
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| {
            addresses
                .iter()
                .find(|a| str_at(a, "/type") == *kind)
                .map(|a| str_at(a, "/address").to_string())
        })
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::Unavailable(format!("node {name} has no address")))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            ApiError::Unavailable(format!("node {name} does not report a kubelet port"))
        })?;
    Ok((host, port))
}

/// The node a pod is bound to, or why the request cannot go anywhere.
pub fn node_name(pod: &Value) -> Result<String, ApiError> {
    let node = str_at(pod, "/spec/nodeName");
    if node.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {} does not have a host assigned",
            str_at(pod, "/metadata/name")
        )));
    }
    Ok(node.to_string())
}

/// Where `subresource` of `pod` goes, given its `node` and the request's `query`.
pub fn locate(
    subresource: Subresource,
    pod: &Value,
    node: &Value,
    query: Option<&str>,
) -> Result<Location, ApiError> {
    let node_name = node_name(pod)?;
    let namespace = str_at(pod, "/metadata/namespace");
    let name = str_at(pod, "/metadata/name");
    let params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut out = form_urlencoded::Serializer::new(String::new());
    let path = match subresource {
        Subresource::Log => {
            let container = container_name(pod, param("container"))?;
            for (key, value) in &params {
                if LOG_PARAMS.contains(&key.as_str()) {
                    out.append_pair(key, value);
                }
            }
            format!("/containerLogs/{namespace}/{name}/{container}")
        }
        Subresource::Exec | Subresource::Attach => {
            let container = container_name(pod, param("container"))?;
            if subresource == Subresource::Exec {
                let command: Vec<&str> = params
                    .iter()
                    .filter(|(k, _)| k == "command")
                    .map(|(_, v)| v.as_str())
                    .collect();
                if command.is_empty() {
                    return Err(ApiError::BadRequest(
                        "you must specify at least 1 command".into(),
                    ));
                }
                for part in command {
                    out.append_pair("command", part);
                }
            }
            for (api, kubelet) in STREAM_PARAMS {
                if param(api).is_some_and(is_true) {
                    out.append_pair(kubelet, "1");
                }
            }
            let verb = if subresource == Subresource::Exec {
                "exec"
            } else {
                "attach"
            };
            format!("/{verb}/{namespace}/{name}/{container}")
        }
        Subresource::PortForward => {
            for (key, value) in &params {
                if key == "ports" {
                    out.append_pair(key, value);
                }
            }
            format!("/portForward/{namespace}/{name}")
        }
        _ => return Err(ApiError::NoRoute),
    };
    let (host, port) = node_endpoint(node)?;
    let query = out.finish();
    let path_and_query = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    Ok(Location {
        node: node_name,
        host,
        port,
        path_and_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str]) -> Value {
        let list: Vec<Value> = containers.iter().map(|c| json!({"name": c})).collect();
        json!({"metadata": {"name": "web", "namespace": "ns"},
               "spec": {"nodeName": "n1", "containers": list, "initContainers": [{"name": "init"}]}})
    }

    fn node() -> Value {
        json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}})
    }

    #[test]
    fn logs_default_the_only_container_and_pass_their_flags() {
        let at = locate(
            Subresource::Log,
            &pod(&["app"]),
            &node(),
            Some("follow=true&tailLines=3&pretty=1"),
        )
        .unwrap();
        assert_eq!(at.host, "10.0.0.5");
        assert_eq!(at.port, 10250);
        assert_eq!(
            at.path_and_query,
            "/containerLogs/ns/web/app?follow=true&tailLines=3"
        );
    }

    #[test]
    fn exec_translates_stream_flags_and_keeps_the_command() {
        let at = locate(
            Subresource::Exec,
            &pod(&["a", "b"]),
            &node(),
            Some(
                "container=b&command=sh&command=-c&command=exit+3&stdin=true&stdout=true&tty=false",
            ),
        )
        .unwrap();
        assert_eq!(
            at.path_and_query,
            "/exec/ns/web/b?command=sh&command=-c&command=exit+3&input=1&output=1"
        );
    }

    #[test]
    fn containers_are_checked() {
        let err = locate(Subresource::Log, &pod(&["a", "b"]), &node(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [init]"
        );
        let err = locate(
            Subresource::Log,
            &pod(&["a"]),
            &node(),
            Some("container=zz"),
        )
        .unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
        assert!(
            locate(
                Subresource::Log,
                &pod(&["a"]),
                &node(),
                Some("container=init")
            )
            .is_ok()
        );
        let err = locate(Subresource::Exec, &pod(&["a"]), &node(), None).unwrap_err();
        assert_eq!(err.to_string(), "you must specify at least 1 command");
    }

    #[test]
    fn unscheduled_pods_and_nodes_without_a_port_are_errors() {
        let mut unscheduled = pod(&["a"]);
        unscheduled["spec"]["nodeName"] = json!(null);
        let err = locate(Subresource::Log, &unscheduled, &node(), None).unwrap_err();
        assert_eq!(err.to_string(), "pod web does not have a host assigned");
        let mut portless = node();
        portless["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = json!(0);
        let err = locate(Subresource::Log, &pod(&["a"]), &portless, None).unwrap_err();
        assert!(matches!(err, ApiError::Unavailable(_)), "{err}");
    }
}
