//! Unit tests of the table rendering and its updates (no kernel needed).

use super::*;
use crate::short_hash;

fn config() -> ProxyConfig {
    ProxyConfig {
        table: "strata".into(),
        bridge: "strata0".into(),
        cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        node_link: Some("eth1".into()),
    }
}

fn port(name: &str, ip: [u8; 4], endpoints: &[([u8; 4], u16)]) -> ServicePort {
    ServicePort {
        name: name.into(),
        cluster_ip: Some(Ipv4Addr::from(ip)),
        port: 80,
        protocol: Protocol::Tcp,
        node_port: None,
        endpoints: endpoints
            .iter()
            .map(|(ip, port)| Endpoint {
                ip: Ipv4Addr::from(*ip),
                port: *port,
            })
            .collect(),
        affinity_seconds: None,
    }
}

#[test]
fn pods_leave_the_pod_range_only_for_service_endpoints_across_the_node_link() {
    let script = render(&config(), &[]);
    let accept = script
        .find("iifname \"strata0\" oifname \"eth1\" ct status dnat accept")
        .expect(&script);
    let drop = script.find("no egress beyond the cluster").expect(&script);
    assert!(accept < drop, "{script}");
    let alone = render(
        &ProxyConfig {
            node_link: None,
            ..config()
        },
        &[],
    );
    assert!(!alone.contains("ct status dnat accept"), "{alone}");
}

#[test]
fn one_map_entry_and_one_rule_per_service() {
    let mut web = port(
        "default/web:http",
        [10, 43, 0, 20],
        &[([10, 42, 0, 6], 8080), ([10, 42, 0, 5], 8080)],
    );
    web.node_port = Some(30080);
    let script = render(&config(), &[web]);
    let chain = format!("svc-{}", short_hash("default/web:http"));
    assert!(
        script.contains(&format!("10.43.0.20 . tcp . 80 : goto {chain}")),
        "{script}"
    );
    assert!(
        script.contains(&format!("tcp . 30080 : goto {chain}")),
        "{script}"
    );
    // Endpoints in address order, whatever order they came in; one rule picks one.
    assert!(
        script.contains(
            "dnat ip to numgen random mod 2 map { 0 : 10.42.0.5 . 8080, 1 : 10.42.0.6 . 8080 }"
        ),
        "{script}"
    );
    assert!(script.contains("elements = { 10.42.0.5 . 10.42.0.5, 10.42.0.6 . 10.42.0.6 }"));
}

#[test]
fn services_without_endpoints_are_rejected_and_output_is_stable() {
    let empty = port("default/db:pg", [10, 43, 0, 30], &[]);
    let web = port(
        "default/web:http",
        [10, 43, 0, 20],
        &[([10, 42, 0, 5], 8080)],
    );
    let script = render(&config(), &[web.clone(), empty.clone()]);
    assert!(script.contains("10.43.0.30 . tcp . 80 : goto reject-chain"));
    assert!(!script.contains("10.43.0.30 . tcp . 80 : goto svc-"));
    assert_eq!(
        script,
        render(&config(), &[empty, web]),
        "order of input does not matter"
    );
    assert!(
        script.contains("iifname \"strata0\" oifname != \"strata0\" ip daddr != 10.42.0.0/16 drop")
    );
    assert!(script.starts_with("add table ip strata\ndelete table ip strata\n"));
    assert!(script.contains("iifname \"eth1\" oifname != \"strata0\" drop"));
}

#[test]
fn comments_cannot_break_out_of_their_quotes() {
    assert_eq!(comment("a\"b\\c\nd"), "abcd");
}

fn host_port(port: u16, host_ip: Option<[u8; 4]>, pod: [u8; 4]) -> HostPort {
    HostPort {
        protocol: Protocol::Tcp,
        host_ip: host_ip.map(Ipv4Addr::from),
        port,
        pod_ip: Ipv4Addr::from(pod),
        container_port: 80,
    }
}

#[test]
fn host_ports_map_to_their_pod_and_the_first_claim_wins() {
    let ports = [
        host_port(8080, None, [10, 42, 0, 5]),
        host_port(8080, None, [10, 42, 0, 6]),
        host_port(8080, Some([192, 168, 1, 2]), [10, 42, 0, 7]),
        host_port(9090, Some([0, 0, 0, 0]), [10, 42, 0, 8]),
    ];
    let script = Ruleset::new(&config(), &[], &ports).script();
    assert!(
        script.contains("map host-ports { type inet_proto . inet_service : ipv4_addr . inet_service; elements = { tcp . 8080 : 10.42.0.5 . 80, tcp . 9090 : 10.42.0.8 . 80 } }"),
        "{script}"
    );
    assert!(
        script.contains("elements = { 192.168.1.2 . tcp . 8080 : 10.42.0.7 . 80 }"),
        "{script}"
    );
    assert!(!script.contains("10.42.0.6 . 80"), "{script}");
    assert!(
        script.contains("10.42.0.7 . 10.42.0.7"),
        "hairpin: {script}"
    );
}

#[test]
fn an_unchanged_ruleset_needs_no_update_and_a_new_config_rewrites_all() {
    let web = port(
        "default/web:http",
        [10, 43, 0, 20],
        &[([10, 42, 0, 5], 8080)],
    );
    let before = Ruleset::new(&config(), std::slice::from_ref(&web), &[]);
    let same = Ruleset::new(&config(), std::slice::from_ref(&web), &[]);
    assert_eq!(same.update_from(&before), "");
    let moved = ProxyConfig {
        node_link: None,
        ..config()
    };
    let rewritten = Ruleset::new(&moved, &[web], &[]);
    assert_eq!(rewritten.update_from(&before), rewritten.script());
}

#[test]
fn an_update_touches_only_what_changed_in_a_safe_order() {
    let web = port(
        "default/web:http",
        [10, 43, 0, 20],
        &[([10, 42, 0, 5], 8080)],
    );
    let db = port("default/db:pg", [10, 43, 0, 30], &[([10, 42, 0, 9], 5432)]);
    let before = Ruleset::new(&config(), &[web.clone(), db.clone()], &[]);
    // web gains an endpoint, db goes, api comes.
    let mut web2 = web.clone();
    web2.endpoints.push(Endpoint {
        ip: Ipv4Addr::new(10, 42, 0, 6),
        port: 8080,
    });
    let api = port("default/api:http", [10, 43, 0, 40], &[([10, 42, 0, 7], 80)]);
    let after = Ruleset::new(&config(), &[web2, api], &[]);
    let script = after.update_from(&before);
    let web_chain = format!("svc-{}", short_hash("default/web:http"));
    let db_chain = format!("svc-{}", short_hash("default/db:pg"));
    let api_chain = format!("svc-{}", short_hash("default/api:http"));
    let at = |needle: &str| {
        script
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{script}"))
    };
    let new_chain = at(&format!("add chain ip strata {api_chain}\n"));
    let refill = at(&format!("flush chain ip strata {web_chain}\n"));
    let new_rules = at(&format!(
        "add rule ip strata {api_chain} meta l4proto tcp dnat"
    ));
    let elements = at(&format!(
        "add element ip strata service-ips {{ 10.43.0.40 . tcp . 80 : goto {api_chain} }}"
    ));
    let delete_element = at("delete element ip strata service-ips { 10.43.0.30 . tcp . 80 }");
    let delete_chain = at(&format!(
        "flush chain ip strata {db_chain}\ndelete chain ip strata {db_chain}\n"
    ));
    assert!(new_chain < refill && refill < new_rules && new_rules < elements);
    assert!(delete_element < delete_chain);
    assert!(script.contains(
        "add element ip strata hairpin { 10.42.0.6 . 10.42.0.6, 10.42.0.7 . 10.42.0.7 }"
    ));
    assert!(script.contains("delete element ip strata hairpin { 10.42.0.9 . 10.42.0.9 }"));
    assert!(
        !script.contains("table ip strata {"),
        "not a rewrite: {script}"
    );
}

#[test]
fn a_key_that_changes_value_is_deleted_before_it_is_added() {
    let before = Ruleset::new(&config(), &[], &[host_port(8080, None, [10, 42, 0, 5])]);
    let after = Ruleset::new(&config(), &[], &[host_port(8080, None, [10, 42, 0, 6])]);
    assert_eq!(
        after.update_from(&before),
        "delete element ip strata host-ports { tcp . 8080 }\n\
         add element ip strata host-ports { tcp . 8080 : 10.42.0.6 . 80 }\n\
         delete element ip strata hairpin { 10.42.0.5 . 10.42.0.5 }\n\
         add element ip strata hairpin { 10.42.0.6 . 10.42.0.6 }\n"
    );
}

#[test]
fn affinity_sets_are_named_by_endpoint_so_staying_endpoints_keep_them() {
    let mut sticky = port(
        "default/sticky:http",
        [10, 43, 0, 50],
        &[([10, 42, 0, 5], 80)],
    );
    sticky.affinity_seconds = Some(60);
    let before = Ruleset::new(&config(), std::slice::from_ref(&sticky), &[]);
    sticky.endpoints.push(Endpoint {
        ip: Ipv4Addr::new(10, 42, 0, 6),
        port: 80,
    });
    let after = Ruleset::new(&config(), &[sticky], &[]);
    let script = after.update_from(&before);
    assert_eq!(script.matches("add set ").count(), 1, "{script}");
    assert!(!script.contains("delete set"), "{script}");
    assert!(
        script.contains("flags dynamic,timeout; timeout 60s;"),
        "{script}"
    );
}
