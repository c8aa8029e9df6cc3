//! Small literal nodes and pods for the filter and score tests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerPort, Taint, Toleration};

use crate::resources::Resources;
use crate::snapshot::{HostPort, NodeAttrs, PodInfo};

/// A node with 4 cores, 8 GiB, 110 pods and `labels`.
pub fn node(name: &str, labels: &[(&str, &str)]) -> NodeAttrs {
    NodeAttrs {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        allocatable: Resources {
            milli_cpu: 4000,
            memory: 8 << 30,
            ephemeral_storage: 100 << 30,
            pods: 110,
        },
        ..Default::default()
    }
}

/// A pod in `default` requesting `milli_cpu` and `memory`.
pub fn pod(name: &str, milli_cpu: i64, memory: i64) -> PodInfo {
    let mut p = PodInfo {
        namespace: "default".into(),
        name: name.into(),
        ..Default::default()
    };
    p.requests.fit = Resources {
        milli_cpu,
        memory,
        ephemeral_storage: 0,
        pods: 1,
    };
    p.requests.score_milli_cpu = milli_cpu;
    p.requests.score_memory = memory;
    p
}

/// A taint.
pub fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: (!value.is_empty()).then(|| value.into()),
        effect: effect.into(),
        time_added: None,
    }
}

/// A toleration.
pub fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Toleration {
        key: opt(key),
        operator: opt(operator),
        value: opt(value),
        effect: opt(effect),
        toleration_seconds: None,
    }
}

/// A container port binding `host_port`; an empty `protocol` or `host_ip` is left unset.
pub fn container_port(protocol: &str, host_ip: &str, host_port: i32) -> ContainerPort {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    ContainerPort {
        container_port: host_port,
        host_port: Some(host_port),
        host_ip: opt(host_ip),
        protocol: opt(protocol),
        name: None,
    }
}

/// A pod in `default` requesting nothing and binding `ports` (built with [`container_port`]).
pub fn pod_with_ports(name: &str, ports: &[ContainerPort]) -> PodInfo {
    let mut p = pod(name, 0, 0);
    p.host_ports = ports
        .iter()
        .filter_map(HostPort::from_container_port)
        .collect();
    p
}
