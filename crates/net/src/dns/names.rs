//! What a query name means in the cluster domain, following the Kubernetes DNS
//! specification (kubernetes/dns, docs/specification.md): services under `svc`, pods by
//! dashed address under `pod`. Pure: a name in, a [`Target`] out.

use std::net::Ipv4Addr;

use hickory_server::proto::rr::Name;

use super::records::Zone;
use crate::services::Protocol;

/// Where a query name points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Not inside the cluster domain (or the domain is no valid name).
    Outside,
    /// The cluster domain itself.
    Apex,
    /// A name that always exists but holds no records: `svc.<domain>`, `pod.<domain>`
    /// and `<ns>.pod.<domain>`.
    Empty,
    /// `<ns>.svc.<domain>`: exists when a service lives in the namespace.
    Namespace {
        /// The namespace.
        namespace: String,
    },
    /// `<svc>.<ns>.svc.<domain>`.
    Service {
        /// The namespace.
        namespace: String,
        /// The service.
        service: String,
    },
    /// `<host>.<svc>.<ns>.svc.<domain>`: one endpoint of a headless service.
    Endpoint {
        /// The namespace.
        namespace: String,
        /// The service.
        service: String,
        /// The endpoint's hostname or dashed address.
        host: String,
    },
    /// `_<port>._<proto>.<svc>.<ns>.svc.<domain>`.
    Srv {
        /// The namespace.
        namespace: String,
        /// The service.
        service: String,
        /// The port's name (without the underscore).
        port: String,
        /// The protocol.
        protocol: Protocol,
    },
    /// `<a-b-c-d>.<ns>.pod.<domain>`.
    Pod {
        /// The address spelled by the first label.
        ip: Ipv4Addr,
    },
    /// Inside the cluster domain, but nothing can have this name.
    Unknown,
}

/// What `name` means in `zone` (case does not matter; the name is taken as fully
/// qualified whether or not it ends in a dot).
pub(crate) fn parse(name: &Name, zone: Option<&Zone>) -> Target {
    let Some(zone) = zone else {
        return Target::Outside;
    };
    let labels: Vec<Vec<u8>> = name.iter().map(<[u8]>::to_ascii_lowercase).collect();
    let Some(split) = labels.len().checked_sub(zone.labels.len()) else {
        return Target::Outside;
    };
    let (relative, suffix) = labels.split_at(split);
    let inside = suffix
        .iter()
        .zip(&zone.labels)
        .all(|(label, domain)| label.as_slice() == domain.as_bytes());
    if !inside {
        return Target::Outside;
    }
    let Ok(relative) = relative
        .iter()
        .map(|label| std::str::from_utf8(label))
        .collect::<Result<Vec<&str>, _>>()
    else {
        return Target::Unknown;
    };
    let owned = |text: &str| text.to_owned();
    match relative.as_slice() {
        [] => Target::Apex,
        ["svc"] | ["pod"] | [_, "pod"] => Target::Empty,
        [namespace, "svc"] => Target::Namespace {
            namespace: owned(namespace),
        },
        [service, namespace, "svc"] => Target::Service {
            namespace: owned(namespace),
            service: owned(service),
        },
        [host, service, namespace, "svc"] => Target::Endpoint {
            namespace: owned(namespace),
            service: owned(service),
            host: owned(host),
        },
        [port, proto, service, namespace, "svc"] => {
            let protocol = match *proto {
                "_tcp" => Protocol::Tcp,
                "_udp" => Protocol::Udp,
                "_sctp" => Protocol::Sctp,
                _ => return Target::Unknown,
            };
            match port.strip_prefix('_') {
                Some(port) if !port.is_empty() => Target::Srv {
                    namespace: owned(namespace),
                    service: owned(service),
                    port: owned(port),
                    protocol,
                },
                _ => Target::Unknown,
            }
        }
        [address, _namespace, "pod"] => match dashed_address(address) {
            Some(ip) => Target::Pod { ip },
            None => Target::Unknown,
        },
        _ => Target::Unknown,
    }
}

/// `10-42-0-5` as 10.42.0.5 (exactly four dashed decimal parts).
fn dashed_address(label: &str) -> Option<Ipv4Addr> {
    if label.contains('.') {
        return None;
    }
    label.replace('-', ".").parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn target(name: &str) -> Target {
        let zone = Zone::parse("cluster.local").unwrap();
        parse(&Name::from_ascii(name).unwrap(), Some(&zone))
    }

    fn service(namespace: &str, service: &str) -> Target {
        Target::Service {
            namespace: namespace.into(),
            service: service.into(),
        }
    }

    #[test]
    fn services_with_or_without_trailing_dot_and_in_any_case() {
        assert_eq!(
            target("web.default.svc.cluster.local."),
            service("default", "web")
        );
        assert_eq!(
            target("web.default.svc.cluster.local"),
            service("default", "web")
        );
        assert_eq!(
            target("WEB.Default.SVC.Cluster.Local."),
            service("default", "web")
        );
        assert_eq!(
            target("db-0.db.default.svc.cluster.local."),
            Target::Endpoint {
                namespace: "default".into(),
                service: "db".into(),
                host: "db-0".into()
            }
        );
        assert_eq!(
            target("default.svc.cluster.local."),
            Target::Namespace {
                namespace: "default".into()
            }
        );
    }

    #[test]
    fn srv_names_need_underscores_and_a_known_protocol() {
        assert_eq!(
            target("_http._TCP.web.default.svc.cluster.local."),
            Target::Srv {
                namespace: "default".into(),
                service: "web".into(),
                port: "http".into(),
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(
            target("_dns._udp.kube-dns.kube-system.svc.cluster.local.").clone(),
            Target::Srv {
                namespace: "kube-system".into(),
                service: "kube-dns".into(),
                port: "dns".into(),
                protocol: Protocol::Udp
            }
        );
        assert_eq!(
            target("_http._icmp.web.default.svc.cluster.local."),
            Target::Unknown
        );
        assert_eq!(
            target("http._tcp.web.default.svc.cluster.local."),
            Target::Unknown
        );
        assert_eq!(
            target("_._tcp.web.default.svc.cluster.local."),
            Target::Unknown
        );
    }

    #[test]
    fn pods_by_dashed_address() {
        assert_eq!(
            target("10-42-0-5.default.pod.cluster.local."),
            Target::Pod {
                ip: Ipv4Addr::new(10, 42, 0, 5)
            }
        );
        assert_eq!(
            target("10-42-0.default.pod.cluster.local."),
            Target::Unknown
        );
        assert_eq!(
            target("10-42-0-256.default.pod.cluster.local."),
            Target::Unknown
        );
        assert_eq!(target("default.pod.cluster.local."), Target::Empty);
        assert_eq!(target("pod.cluster.local."), Target::Empty);
    }

    #[test]
    fn apex_outside_and_unknown() {
        assert_eq!(target("cluster.local."), Target::Apex);
        assert_eq!(target("example.com."), Target::Outside);
        assert_eq!(target("local."), Target::Outside);
        assert_eq!(target("."), Target::Outside);
        assert_eq!(target("evilcluster.local."), Target::Outside);
        assert_eq!(target("a.b.c.d.e.f.cluster.local."), Target::Unknown);
        assert_eq!(target("web.default.nodes.cluster.local."), Target::Unknown);
        assert_eq!(
            parse(
                &Name::from_ascii("web.default.svc.cluster.local.").unwrap(),
                None
            ),
            Target::Outside
        );
    }

    #[test]
    fn labels_that_are_not_utf8_are_unknown() {
        let name =
            Name::from_labels([&b"\xff"[..], b"default", b"svc", b"cluster", b"local"]).unwrap();
        let zone = Zone::parse("cluster.local").unwrap();
        assert_eq!(parse(&name, Some(&zone)), Target::Unknown);
    }
}
