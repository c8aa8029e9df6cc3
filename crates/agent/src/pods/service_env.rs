//! The environment the kubelet derives from Services (`envvars.FromServices`): the
//! `kubernetes` Service's variables for every container, and, unless the pod sets
//! `enableServiceLinks: false`, Docker-link style variables for each Service of its
//! namespace that existed when the container started (`WEB_SERVICE_HOST`,
//! `WEB_SERVICE_PORT`, `WEB_PORT_80_TCP_ADDR`…).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;

/// The variables that let in-cluster clients find the API server (client-go's
/// `InClusterConfig` reads the first two).
pub fn kubernetes(ip: Ipv4Addr) -> Vec<(String, String)> {
    links(
        "kubernetes",
        &ip.to_string(),
        &[(Some("https"), 443, "TCP")],
    )
}

/// The link variables of `services` (those with a cluster IP), sorted by name so that
/// the result does not depend on the order they were listed in.
pub fn of_services(services: &[Service]) -> Vec<(String, String)> {
    let mut services: Vec<&Service> = services.iter().collect();
    services.sort_by_key(|s| s.metadata.name.clone());
    let mut env = Vec::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let ports: Vec<(Option<&str>, i32, &str)> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.as_deref().filter(|n| !n.is_empty()),
                    p.port,
                    p.protocol.as_deref().unwrap_or("TCP"),
                )
            })
            .collect();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        env.extend(links(name, ip, &ports));
    }
    env
}

/// `{NAME}_SERVICE_HOST`, `{NAME}_SERVICE_PORT[_{PORT NAME}]`, `{NAME}_PORT` and
/// `{NAME}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]`, as the kubelet writes them.
fn links(name: &str, ip: &str, ports: &[(Option<&str>, i32, &str)]) -> Vec<(String, String)> {
    let Some((_, first_port, first_proto)) = ports.first() else {
        return Vec::new();
    };
    let prefix = variable(name);
    let mut env = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.to_string()),
        (format!("{prefix}_SERVICE_PORT"), first_port.to_string()),
    ];
    for (port_name, port, _) in ports {
        if let Some(port_name) = port_name {
            env.push((
                format!("{prefix}_SERVICE_PORT_{}", variable(port_name)),
                port.to_string(),
            ));
        }
    }
    env.push((
        format!("{prefix}_PORT"),
        format!("{}://{ip}:{first_port}", first_proto.to_ascii_lowercase()),
    ));
    for (_, port, proto) in ports {
        let base = format!("{prefix}_PORT_{port}_{}", proto.to_ascii_uppercase());
        let proto = proto.to_ascii_lowercase();
        env.push((base.clone(), format!("{proto}://{ip}:{port}")));
        env.push((format!("{base}_PROTO"), proto));
        env.push((format!("{base}_PORT"), port.to_string()));
        env.push((format!("{base}_ADDR"), ip.to_string()));
    }
    env
}

/// A name as a variable name: upper case, `-` as `_`.
fn variable(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_kubernetes_service_variables_are_those_of_the_kubelet() {
        let env = kubernetes(Ipv4Addr::new(10, 43, 0, 1));
        let expected = [
            ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(env, expected);
    }

    #[test]
    fn services_with_a_cluster_ip_get_link_variables() {
        let services: Vec<Service> = serde_json::from_value(json!([
            {"metadata": {"name": "my-web"}, "spec": {"clusterIP": "10.43.0.20", "ports": [
                {"name": "http", "port": 80}, {"port": 53, "protocol": "UDP"}]}},
            {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}},
            {"metadata": {"name": "db"}, "spec": {"clusterIP": "10.43.0.30", "ports": [{"port": 5432}]}},
        ]))
        .unwrap();
        let env = of_services(&services);
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("MY_WEB_SERVICE_HOST"), Some("10.43.0.20"));
        assert_eq!(get("MY_WEB_SERVICE_PORT"), Some("80"));
        assert_eq!(get("MY_WEB_SERVICE_PORT_HTTP"), Some("80"));
        assert_eq!(get("MY_WEB_PORT"), Some("tcp://10.43.0.20:80"));
        assert_eq!(get("MY_WEB_PORT_53_UDP"), Some("udp://10.43.0.20:53"));
        assert_eq!(get("MY_WEB_PORT_53_UDP_ADDR"), Some("10.43.0.20"));
        assert_eq!(get("DB_SERVICE_HOST"), Some("10.43.0.30"));
        assert!(env.iter().all(|(k, _)| !k.starts_with("HEADLESS")));
        assert_eq!(env[0].0, "DB_SERVICE_HOST", "sorted by service name");
    }
}
