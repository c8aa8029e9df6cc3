//! The answer to one question, built from one version of the records: the response code
//! and the records of each section. Pure: no sockets, no clock.

use std::net::Ipv4Addr;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};

use super::names::{self, Target};
use super::records::{DnsService, Table, Zone};

/// The TTL of every record, positive or negative (CoreDNS' default, in seconds).
pub const TTL_SEC: u32 = 5;

/// A response's code and sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// NOERROR, NXDOMAIN or REFUSED (any code when relayed from an upstream server).
    pub(crate) code: ResponseCode,
    /// The answer section.
    pub(crate) answers: Vec<Record>,
    /// The authority section (the SOA of negative answers).
    pub(crate) authorities: Vec<Record>,
    /// The additional section (addresses of SRV targets).
    pub(crate) additionals: Vec<Record>,
}

impl Answer {
    /// A response with `code` and no records.
    pub(crate) fn new(code: ResponseCode) -> Self {
        Self {
            code,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// The answer to `qtype` questions about `name` (class IN). Records are owned by `name`
/// as asked, so the client sees the case it sent.
pub(crate) fn answer(table: &Table, name: &Name, qtype: RecordType) -> Answer {
    let Some(zone) = table.zone.as_ref() else {
        return Answer::new(ResponseCode::Refused);
    };
    let wants_a = matches!(qtype, RecordType::A | RecordType::ANY);
    let mut name = name.clone();
    name.set_fqdn(true);
    let exists = |answers: Vec<Record>, additionals: Vec<Record>| {
        positive(table, zone, answers, additionals)
    };
    let address = |ip: Ipv4Addr| Record::from_rdata(name.clone(), TTL_SEC, RData::A(A(ip)));
    match names::parse(&name, Some(zone)) {
        Target::Outside => Answer::new(ResponseCode::Refused),
        Target::Apex if qtype == RecordType::SOA => exists(vec![soa(table, zone)], Vec::new()),
        Target::Apex | Target::Empty => exists(Vec::new(), Vec::new()),
        Target::Namespace { namespace } if table.has_namespace(&namespace) => {
            exists(Vec::new(), Vec::new())
        }
        Target::Service { namespace, service } => match table.service(&namespace, &service) {
            Some(service) if wants_a => {
                exists(addresses(service).map(address).collect(), Vec::new())
            }
            Some(_) => exists(Vec::new(), Vec::new()),
            None => nxdomain(table, zone),
        },
        Target::Endpoint {
            namespace,
            service,
            host,
        } => {
            let found: Vec<Ipv4Addr> = table
                .service(&namespace, &service)
                .filter(|service| service.cluster_ip.is_none())
                .map(|service| {
                    service
                        .endpoints
                        .iter()
                        .filter(|endpoint| endpoint.label() == host)
                        .map(|endpoint| endpoint.ip)
                        .collect()
                })
                .unwrap_or_default();
            match found {
                found if found.is_empty() => nxdomain(table, zone),
                found if wants_a => exists(found.into_iter().map(address).collect(), Vec::new()),
                _ => exists(Vec::new(), Vec::new()),
            }
        }
        Target::Srv {
            namespace,
            service,
            port,
            protocol,
        } => {
            let found = table.service(&namespace, &service).and_then(|service| {
                service
                    .ports
                    .iter()
                    .find(|p| p.protocol == protocol && p.name.eq_ignore_ascii_case(&port))
                    .map(|port| (service, port.port))
            });
            match found {
                None => nxdomain(table, zone),
                Some((service, port)) if matches!(qtype, RecordType::SRV | RecordType::ANY) => {
                    let (answers, additionals) = srv(zone, &name, service, port);
                    exists(answers, additionals)
                }
                Some(_) => exists(Vec::new(), Vec::new()),
            }
        }
        Target::Pod { ip } if wants_a => exists(vec![address(ip)], Vec::new()),
        Target::Pod { .. } => exists(Vec::new(), Vec::new()),
        Target::Namespace { .. } | Target::Unknown => nxdomain(table, zone),
    }
}

/// The addresses a service name resolves to: its cluster IP, or a headless service's
/// ready endpoints.
fn addresses(service: &DnsService) -> impl Iterator<Item = Ipv4Addr> + '_ {
    let endpoints = match service.cluster_ip {
        Some(_) => &[][..],
        None => &service.endpoints[..],
    };
    service
        .cluster_ip
        .into_iter()
        .chain(endpoints.iter().map(|endpoint| endpoint.ip))
}

/// SRV records for one port of `service` asked as `name`, and their targets' addresses.
/// A service with a cluster IP has one target, its own name; a headless one has one per
/// endpoint. The weight of 100 is split between the records, as CoreDNS does.
fn srv(zone: &Zone, name: &Name, service: &DnsService, port: u16) -> (Vec<Record>, Vec<Record>) {
    let namespace = service.namespace.to_ascii_lowercase();
    let service_name = service.name.to_ascii_lowercase();
    let targets: Vec<(Name, Ipv4Addr)> = match service.cluster_ip {
        Some(ip) => zone
            .fqdn(&[&service_name, &namespace, "svc"])
            .map(|target| (target, ip))
            .into_iter()
            .collect(),
        None => service
            .endpoints
            .iter()
            .filter_map(|endpoint| {
                let host = endpoint.label();
                let target = zone.fqdn(&[&host, &service_name, &namespace, "svc"])?;
                Some((target, endpoint.ip))
            })
            .collect(),
    };
    let count = u16::try_from(targets.len()).unwrap_or(u16::MAX).max(1);
    let weight = (100 / count).max(1);
    let mut answers = Vec::with_capacity(targets.len());
    let mut additionals = Vec::with_capacity(targets.len());
    for (target, ip) in targets {
        let data = RData::SRV(SRV::new(0, weight, port, target.clone()));
        answers.push(Record::from_rdata(name.clone(), TTL_SEC, data));
        additionals.push(Record::from_rdata(target, TTL_SEC, RData::A(A(ip))));
    }
    (answers, additionals)
}

/// NOERROR with `answers`; with none (NODATA), the SOA goes in the authority section so
/// resolvers cache the absence for its minimum TTL (RFC 2308).
fn positive(table: &Table, zone: &Zone, answers: Vec<Record>, additionals: Vec<Record>) -> Answer {
    let mut answer = Answer::new(ResponseCode::NoError);
    if answers.is_empty() {
        answer.authorities.push(soa(table, zone));
    }
    answer.answers = answers;
    answer.additionals = additionals;
    answer
}

/// NXDOMAIN with the SOA in the authority section.
fn nxdomain(table: &Table, zone: &Zone) -> Answer {
    let mut answer = Answer::new(ResponseCode::NXDomain);
    answer.authorities.push(soa(table, zone));
    answer
}

/// A synthetic SOA for the cluster domain, like CoreDNS': `ns.dns.<domain>` and
/// `hostmaster.<domain>`, a serial that grows with every replace, TTL and minimum of
/// [`TTL_SEC`].
fn soa(table: &Table, zone: &Zone) -> Record {
    let mname = zone
        .fqdn(&["ns", "dns"])
        .unwrap_or_else(|| zone.name.clone());
    let rname = zone
        .fqdn(&["hostmaster"])
        .unwrap_or_else(|| zone.name.clone());
    let data = SOA::new(mname, rname, table.serial, 7200, 1800, 86400, TTL_SEC);
    Record::from_rdata(zone.name.clone(), TTL_SEC, RData::SOA(data))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::dns::records::{DnsEndpoint, DnsPort, DnsRecords};
    use crate::services::Protocol;

    fn records() -> DnsRecords {
        let records = DnsRecords::new("cluster.local");
        records.replace(vec![
            DnsService {
                namespace: "default".into(),
                name: "web".into(),
                cluster_ip: Some(Ipv4Addr::new(10, 43, 0, 20)),
                ports: vec![
                    DnsPort {
                        name: "http".into(),
                        protocol: Protocol::Tcp,
                        port: 80,
                    },
                    DnsPort {
                        name: String::new(),
                        protocol: Protocol::Udp,
                        port: 53,
                    },
                ],
                endpoints: vec![DnsEndpoint {
                    ip: Ipv4Addr::new(10, 42, 0, 9),
                    hostname: Some("web-0".into()),
                }],
            },
            DnsService {
                namespace: "default".into(),
                name: "db".into(),
                cluster_ip: None,
                ports: vec![DnsPort {
                    name: "pg".into(),
                    protocol: Protocol::Tcp,
                    port: 5432,
                }],
                endpoints: vec![
                    DnsEndpoint {
                        ip: Ipv4Addr::new(10, 42, 0, 5),
                        hostname: Some("db-0".into()),
                    },
                    DnsEndpoint {
                        ip: Ipv4Addr::new(10, 42, 0, 6),
                        hostname: None,
                    },
                ],
            },
        ]);
        records
    }

    fn ask(name: &str, qtype: RecordType) -> Answer {
        answer(
            &records().snapshot(),
            &Name::from_ascii(name).unwrap(),
            qtype,
        )
    }

    fn a(records: &[Record]) -> Vec<Ipv4Addr> {
        records
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(A(ip)) => Some(*ip),
                _ => None,
            })
            .collect()
    }

    fn is_soa(records: &[Record]) -> bool {
        matches!(records, [record] if record.record_type() == RecordType::SOA
            && record.name.to_string() == "cluster.local."
            && record.ttl == TTL_SEC)
    }

    #[test]
    fn a_cluster_ip_service_has_its_cluster_ip() {
        let answer = ask("Web.default.svc.cluster.local", RecordType::A);
        assert_eq!(answer.code, ResponseCode::NoError);
        assert_eq!(a(&answer.answers), [Ipv4Addr::new(10, 43, 0, 20)]);
        assert_eq!(
            answer.answers[0].name.to_string(),
            "Web.default.svc.cluster.local."
        );
        assert_eq!(answer.answers[0].ttl, TTL_SEC);
        assert!(answer.authorities.is_empty());
    }

    #[test]
    fn a_headless_service_has_its_endpoints_and_their_names() {
        let answer = ask("db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(
            a(&answer.answers),
            [Ipv4Addr::new(10, 42, 0, 5), Ipv4Addr::new(10, 42, 0, 6)]
        );
        let named = ask("db-0.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(a(&named.answers), [Ipv4Addr::new(10, 42, 0, 5)]);
        let dashed = ask("10-42-0-6.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(a(&dashed.answers), [Ipv4Addr::new(10, 42, 0, 6)]);
        // Endpoint names are only for headless services, as the specification has it.
        let clustered = ask("web-0.web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(clustered.code, ResponseCode::NXDomain);
        let missing = ask("db-9.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(missing.code, ResponseCode::NXDomain);
    }

    #[test]
    fn other_types_of_existing_names_get_nodata_with_soa() {
        for name in [
            "web.default.svc.cluster.local.",
            "db-0.db.default.svc.cluster.local.",
            "10-1-2-3.default.pod.cluster.local.",
            "default.svc.cluster.local.",
            "svc.cluster.local.",
            "cluster.local.",
        ] {
            let answer = ask(name, RecordType::AAAA);
            assert_eq!(answer.code, ResponseCode::NoError, "{name}");
            assert!(answer.answers.is_empty(), "{name}");
            assert!(
                is_soa(&answer.authorities),
                "{name}: {:?}",
                answer.authorities
            );
        }
        let srv_as_a = ask("_http._tcp.web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(srv_as_a.code, ResponseCode::NoError);
        assert!(srv_as_a.answers.is_empty());
    }

    #[test]
    fn srv_of_a_cluster_ip_service_targets_its_name() {
        let answer = ask("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(answer.code, ResponseCode::NoError);
        let [record] = answer.answers.as_slice() else {
            panic!("{:?}", answer.answers)
        };
        let RData::SRV(srv) = &record.data else {
            panic!("{record:?}")
        };
        assert_eq!((srv.priority, srv.weight, srv.port), (0, 100, 80));
        assert_eq!(srv.target.to_string(), "web.default.svc.cluster.local.");
        assert_eq!(a(&answer.additionals), [Ipv4Addr::new(10, 43, 0, 20)]);
        assert_eq!(
            answer.additionals[0].name.to_string(),
            "web.default.svc.cluster.local."
        );
    }

    #[test]
    fn srv_of_a_headless_service_has_one_record_per_endpoint() {
        let answer = ask("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
        let targets: Vec<(String, u16, u16)> = answer
            .answers
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some((srv.target.to_string(), srv.weight, srv.port)),
                _ => None,
            })
            .collect();
        assert_eq!(
            targets,
            [
                ("db-0.db.default.svc.cluster.local.".to_owned(), 50, 5432),
                (
                    "10-42-0-6.db.default.svc.cluster.local.".to_owned(),
                    50,
                    5432
                ),
            ]
        );
        assert_eq!(
            a(&answer.additionals),
            [Ipv4Addr::new(10, 42, 0, 5), Ipv4Addr::new(10, 42, 0, 6)]
        );
    }

    #[test]
    fn srv_needs_a_named_port_of_that_protocol() {
        for name in [
            "_http._udp.web.default.svc.cluster.local.",
            "_dns._udp.web.default.svc.cluster.local.",
            "_http._tcp.nope.default.svc.cluster.local.",
        ] {
            let answer = ask(name, RecordType::SRV);
            assert_eq!(answer.code, ResponseCode::NXDomain, "{name}");
            assert!(is_soa(&answer.authorities), "{name}");
        }
    }

    #[test]
    fn pods_resolve_by_dashed_address() {
        let answer = ask("10-42-0-7.any.pod.cluster.local.", RecordType::A);
        assert_eq!(a(&answer.answers), [Ipv4Addr::new(10, 42, 0, 7)]);
    }

    #[test]
    fn unknown_names_get_nxdomain_and_outside_names_are_refused() {
        for name in [
            "nope.default.svc.cluster.local.",
            "web.other.svc.cluster.local.",
            "other.svc.cluster.local.",
            "x.y.z.w.v.u.cluster.local.",
        ] {
            let answer = ask(name, RecordType::A);
            assert_eq!(answer.code, ResponseCode::NXDomain, "{name}");
            assert!(answer.answers.is_empty());
            assert!(is_soa(&answer.authorities), "{name}");
        }
        let outside = ask("example.com.", RecordType::A);
        assert_eq!(outside, Answer::new(ResponseCode::Refused));
    }

    #[test]
    fn the_apex_has_its_soa() {
        let answer = ask("cluster.local.", RecordType::SOA);
        assert_eq!(answer.code, ResponseCode::NoError);
        assert!(is_soa(&answer.answers));
        let RData::SOA(soa) = &answer.answers[0].data else {
            panic!()
        };
        assert_eq!(soa.minimum, TTL_SEC);
        assert_eq!(soa.mname.to_string(), "ns.dns.cluster.local.");
    }

    #[test]
    fn an_invalid_domain_serves_nothing() {
        let records = DnsRecords::new(&"x".repeat(64));
        let name = Name::from_ascii("web.default.svc.cluster.local.").unwrap();
        let answer = answer(&records.snapshot(), &name, RecordType::A);
        assert_eq!(answer.code, ResponseCode::Refused);
    }
}
