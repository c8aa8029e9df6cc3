//! NodePorts: a pod that binds host ports fits only a node where no pod already binds a
//! conflicting one, by the rule of kube-scheduler's `HostPortInfo.CheckConflict`.

use super::{Reason, Verdict};
use crate::snapshot::{HostPort, NodeInfo, PodInfo};

/// NodePorts filter: rejects the node if any host port the pod binds conflicts with one
/// bound by a pod on the node (in-flight bindings included). A pod that binds no host port
/// always passes.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Verdict {
    let taken = pod
        .host_ports
        .iter()
        .any(|want| node.used_ports.keys().any(|used| conflicts(want, used)));
    if taken {
        Err(vec![Reason::NodePorts])
    } else {
        Ok(())
    }
}

/// Whether two host ports cannot both be bound on one node: same protocol and port, and
/// overlapping addresses. [`HostPort::ALL_ADDRESSES`] overlaps every address; two specific
/// addresses overlap only when they are the same string, as in kube-scheduler.
pub fn conflicts(a: &HostPort, b: &HostPort) -> bool {
    let all = HostPort::ALL_ADDRESSES;
    a.protocol == b.protocol
        && a.port == b.port
        && (a.host_ip == all || b.host_ip == all || a.host_ip == b.host_ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;
    use crate::test_support::{container_port, node, pod, pod_with_ports};
    use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec};
    use std::sync::Arc;

    /// A snapshot with node `n1` holding a pod `old` that binds `ports`.
    fn holding(ports: &[ContainerPort]) -> Snapshot {
        let mut s = Snapshot::new();
        s.upsert_node(node("n1", &[]));
        s.add_pod("n1", Arc::new(pod_with_ports("old", ports)));
        s
    }

    fn check(s: &Snapshot, ports: &[ContainerPort]) -> Verdict {
        let n1 = s.node("n1").expect("n1 is in the snapshot");
        filter(&pod_with_ports("new", ports), n1)
    }

    fn taken() -> Verdict {
        Err(vec![Reason::NodePorts])
    }

    #[test]
    fn all_addresses_conflict_with_any_address() {
        let s = holding(&[container_port("", "", 8080)]);
        assert_eq!(check(&s, &[container_port("", "10.0.0.1", 8080)]), taken());
        assert_eq!(
            check(&s, &[container_port("TCP", "0.0.0.0", 8080)]),
            taken()
        );
        let s = holding(&[container_port("", "10.0.0.1", 8080)]);
        assert_eq!(check(&s, &[container_port("", "", 8080)]), taken());
        assert_eq!(check(&s, &[container_port("", "0.0.0.0", 8080)]), taken());
        assert_eq!(check(&s, &[container_port("", "", 8081)]), Ok(()));
    }

    #[test]
    fn different_protocols_do_not_conflict() {
        let s = holding(&[container_port("", "", 53)]);
        assert_eq!(check(&s, &[container_port("UDP", "", 53)]), Ok(()));
        assert_eq!(check(&s, &[container_port("SCTP", "", 53)]), Ok(()));
        assert_eq!(
            check(&s, &[container_port("TCP", "", 53)]),
            taken(),
            "an unset protocol is TCP"
        );
    }

    #[test]
    fn different_specific_addresses_do_not_conflict() {
        let s = holding(&[container_port("", "10.0.0.1", 8080)]);
        assert_eq!(check(&s, &[container_port("", "10.0.0.2", 8080)]), Ok(()));
        assert_eq!(check(&s, &[container_port("", "10.0.0.1", 8080)]), taken());
    }

    #[test]
    fn any_conflicting_port_of_several_rejects() {
        let s = holding(&[container_port("UDP", "", 9000)]);
        let want = [
            container_port("", "", 8080),
            container_port("UDP", "10.0.0.1", 9000),
        ];
        assert_eq!(check(&s, &want), taken());
    }

    #[test]
    fn pods_without_host_ports_always_pass() {
        let s = holding(&[container_port("", "", 8080), container_port("UDP", "", 53)]);
        let n1 = s.node("n1").expect("n1 is in the snapshot");
        assert_eq!(filter(&pod("p", 0, 0), n1), Ok(()));
        let mut container_only = container_port("", "", 8080);
        container_only.host_port = None;
        assert_eq!(check(&s, &[container_only.clone()]), Ok(()));
        container_only.host_port = Some(0);
        assert_eq!(
            check(&s, &[container_only]),
            Ok(()),
            "hostPort 0 binds nothing"
        );
    }

    #[test]
    fn removing_a_pod_frees_its_port() {
        let mut s = holding(&[container_port("", "", 8080)]);
        // Seen again (an update): counted once, not freed by forgetting the old version.
        s.add_pod(
            "n1",
            Arc::new(pod_with_ports("old", &[container_port("", "", 8080)])),
        );
        assert_eq!(s.node("n1").map(|n| n.used_ports.len()), Some(1));
        assert_eq!(check(&s, &[container_port("", "", 8080)]), taken());
        s.remove_pod("default/old");
        assert!(s.node("n1").is_some_and(|n| n.used_ports.is_empty()));
        assert_eq!(check(&s, &[container_port("", "", 8080)]), Ok(()));
    }

    #[test]
    fn pods_moved_elsewhere_free_their_port() {
        let mut s = holding(&[container_port("", "", 8080)]);
        s.upsert_node(node("n2", &[]));
        s.add_pod(
            "n2",
            Arc::new(pod_with_ports("old", &[container_port("", "", 8080)])),
        );
        assert_eq!(check(&s, &[container_port("", "", 8080)]), Ok(()));
    }

    fn pod_object(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: Some(init),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(ports: Vec<ContainerPort>, restart_policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            ports: Some(ports),
            restart_policy: restart_policy.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn ports_come_from_containers_and_sidecar_init_containers() {
        let pod = pod_object(
            vec![container(vec![container_port("", "", 80)], None)],
            vec![
                container(vec![container_port("UDP", "10.0.0.1", 53)], Some("Always")),
                container(vec![container_port("", "", 9000)], None),
            ],
        );
        let info = PodInfo::from_pod(&pod).expect("no resource quantities to parse");
        assert_eq!(
            info.host_ports,
            [
                HostPort {
                    protocol: "UDP".into(),
                    host_ip: "10.0.0.1".into(),
                    port: 53,
                },
                HostPort {
                    protocol: "TCP".into(),
                    host_ip: HostPort::ALL_ADDRESSES.into(),
                    port: 80,
                },
            ],
            "an ordinary init container has exited before the pod runs: its port 9000 is free"
        );
    }

    #[test]
    fn sidecar_init_container_ports_conflict() {
        let pod = pod_object(
            Vec::new(),
            vec![container(
                vec![container_port("", "", 8080)],
                Some("Always"),
            )],
        );
        let info = PodInfo::from_pod(&pod).expect("no resource quantities to parse");
        let mut s = Snapshot::new();
        s.upsert_node(node("n1", &[]));
        s.add_pod("n1", Arc::new(info));
        assert_eq!(check(&s, &[container_port("", "", 8080)]), taken());
    }

    #[test]
    fn reason_matches_kube_scheduler() {
        assert_eq!(
            Reason::NodePorts.to_string(),
            "node(s) didn't have free ports for the requested pod ports"
        );
    }
}
