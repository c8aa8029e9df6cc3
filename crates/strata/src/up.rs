//! `strata up`: the API server, the scheduler, the controllers and this machine's node
//! agent in one process, each
//! component talking to the API over its own client and identity (the agent as
//! `system:node:<name>`), as ARCHITECTURE.md asks. Stopping leaves the pods running:
//! their monitors are processes of their own, and the next start adopts them.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use strata_agent::AgentOptions;
use strata_agent::containers::StrataCommand;
use strata_agent::server::KubeletTls;
use strata_apiserver::pki::Kubeconfig;

use crate::cli::{DnsForwardArgs, UpArgs};
use crate::server::{async_runtime, shutdown_signal};

/// The node's name: `given`, else the host name in lower case; it must be a DNS subdomain.
pub fn node_name(given: Option<&str>) -> Result<String> {
    let node_name = match given {
        Some(name) => name.to_string(),
        None => nix::unistd::gethostname()
            .context("cannot read the host name (give --node-name)")?
            .to_string_lossy()
            .to_ascii_lowercase(),
    };
    if !strata_api::names::is_subdomain(&node_name) {
        anyhow::bail!(
            "node name {node_name:?} is not a DNS subdomain (lower-case letters, digits, '-' and '.'); give --node-name"
        );
    }
    Ok(node_name)
}

/// The host's resolver configuration.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The upstream servers systemd-resolved itself uses, for hosts whose /etc/resolv.conf
/// lists only its stub (k3s and kubelet's documentation use this file the same way).
const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// Where cluster DNS forwards names outside the cluster domain: every `--dns-upstream`,
/// then with `--dns-upstream-from-host` the host's resolvers (see [`host_resolvers`]).
pub fn dns_upstreams(args: &DnsForwardArgs) -> Result<Vec<SocketAddr>> {
    let mut servers = args.dns_upstream.clone();
    if args.dns_upstream_from_host {
        for server in host_resolvers(Path::new(HOST_RESOLV_CONF), Path::new(SYSTEMD_RESOLV_CONF))? {
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
    }
    Ok(servers)
}

/// The non-loopback nameservers of `host` (/etc/resolv.conf). When it lists loopback
/// stubs only (systemd-resolved's 127.0.0.53), those of `fallback` (systemd-resolved's
/// own upstreams) if that file exists. An error when none is left: the flag asked for
/// forwarding, so running without it would surprise.
fn host_resolvers(host: &Path, fallback: &Path) -> Result<Vec<SocketAddr>> {
    let found = strata_net::dns::read_resolv_conf(host)
        .context("--dns-upstream-from-host: cannot read the host's resolvers")?;
    if !found.usable.is_empty() {
        return Ok(found.usable);
    }
    if !found.loopback.is_empty() && fallback.exists() {
        tracing::info!(
            path = %fallback.display(),
            "{} lists only loopback nameservers; using systemd-resolved's upstreams",
            host.display()
        );
        let upstream = strata_net::dns::read_resolv_conf(fallback)
            .context("--dns-upstream-from-host: cannot read systemd-resolved's upstreams")?;
        if !upstream.usable.is_empty() {
            return Ok(upstream.usable);
        }
    }
    anyhow::bail!(
        "--dns-upstream-from-host: {} lists no nameserver that pods' queries can be forwarded to (loopback ones are left out); give --dns-upstream ADDR",
        host.display()
    )
}

/// Runs the one-node cloud until SIGINT or SIGTERM.
pub fn run(data_dir: &Path, args: &UpArgs) -> Result<u8> {
    let node_name = node_name(args.node_name.as_deref())?;
    let dns_upstreams = dns_upstreams(&args.dns)?;
    async_runtime()?.block_on(async {
        let embedded = crate::server::start(data_dir, &args.server).await?;
        let server = embedded.server();
        let node_cert = server
            .pki()
            .issue_node_cert(&node_name)
            .context("cannot issue the node certificate")?;
        // The kubelet API serves with a certificate of the cluster CA, for the node's name
        // and IP, and lets only the API server's kubelet-client identity in.
        let kubelet_cert = server
            .pki()
            .issue_kubelet_serving_cert(&node_name, &[args.node_ip])
            .context("cannot issue the kubelet serving certificate")?;
        let service_cidr: strata_net::Ipv4Net = args
            .server
            .service_cidr
            .to_string()
            .parse()
            .context("the service range")?;
        let options = AgentOptions {
            cluster_dns: strata_agent::cluster_dns_of(service_cidr),
            cluster_domain: strata_agent::CLUSTER_DOMAIN.to_string(),
            node_name: node_name.clone(),
            node_ip: args.node_ip.to_string(),
            data_dir: data_dir.to_path_buf(),
            strata: StrataCommand::current_exe(data_dir)?,
            max_pods: args.max_pods,
            kubelet_listen: std::net::SocketAddr::new(args.node_ip, args.kubelet_port),
            kubelet_tls: KubeletTls {
                cert_pem: kubelet_cert.cert_pem,
                key_pem: kubelet_cert.key_pem,
                client_ca_pem: server.pki().ca_cert_pem().to_string(),
            },
            log_rotation: Default::default(),
            bridge: args.bridge.clone(),
            cluster_cidr: args.cluster_cidr,
            service_cidr,
            dns_upstreams,
        };
        let yaml = Kubeconfig::with_client_cert(&server.url(), server.pki().ca_cert_pem(), &node_cert)
            .to_yaml()
            .context("cannot write the node kubeconfig")?;
        let admin_yaml = server
            .pki()
            .admin_kubeconfig(&server.url())
            .to_yaml()
            .context("cannot write the admin kubeconfig")?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(embedded.serve(async {
            let _ = stop_rx.await;
        }));
        let node_client = strata_client::connect(&yaml).await?;
        let admin_client = strata_client::connect(&admin_yaml).await?;
        let scheduler = tokio::spawn(strata_scheduler::run(
            admin_client.clone(),
            strata_scheduler::SchedulerOptions::default(),
        ));
        let admin_client_for_gateway = admin_client.clone();
        let controllers = tokio::spawn(strata_controllers::run(
            admin_client,
            strata_controllers::ControllerOptions {
                pod_range: strata_controllers::node_ipam::PodRange {
                    cluster: args.cluster_cidr,
                    node_prefix: args.node_cidr_mask_size,
                },
                node_grace_period: args.node_monitor_grace_period,
                ..Default::default()
            },
        ));
        let modules = crate::wasm_oci::RegistryModules::open(data_dir, &args.registry)?;
        let gateway = start_gateway(
            admin_client_for_gateway,
            args.gateway_listen,
            std::sync::Arc::new(modules),
        )
        .await?;
        let mut agent = tokio::spawn(strata_agent::run(node_client, options));
        eprintln!("strata: node {node_name} is up");
        eprintln!(
            "strata: to join another node, run `strata --data-dir {} token create --node NAME` and the command it prints on that node",
            data_dir.display()
        );
        tokio::select! {
            _ = shutdown_signal() => {}
            ended = &mut agent => match ended {
                Ok(Ok(())) => eprintln!("strata: the agent stopped"),
                Ok(Err(err)) => eprintln!("strata: the agent failed: {}", strata_agent::containers::monitor::one_line(&err)),
                Err(err) => eprintln!("strata: the agent failed: {err}"),
            },
        }
        agent.abort();
        gateway.abort();
        scheduler.abort();
        controllers.abort();
        let _ = stop_tx.send(());
        let _ = serving.await;
        eprintln!("strata: stopped (pods keep running and are adopted on the next `strata up`)");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

/// The serverless gateway on `listen` and the sync that feeds it Functions (fetching
/// `spec.wasm.oci` modules from `modules`); stopped by aborting the returned task.
async fn start_gateway(
    client: kube::Client,
    listen: std::net::SocketAddr,
    modules: std::sync::Arc<dyn strata_functions::oci::ModuleSource>,
) -> Result<tokio::task::JoinHandle<()>> {
    use strata_functions::gateway::{Gateway, GatewayOptions};
    let engine = strata_functions::WasmEngine::new(&Default::default())
        .context("cannot start the WebAssembly engine")?;
    let table = std::sync::Arc::new(strata_functions::FunctionTable::new(engine));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} for the serverless gateway (give --gateway-listen)")
        })?;
    let bound = listener.local_addr().unwrap_or(listen);
    let port = bound.port();
    eprintln!(
        "strata: serverless gateway on http://{bound} (http://<fn>.<ns>.fn.localhost:{port}/)"
    );
    let serving = Gateway::new(table.clone(), GatewayOptions::default())
        .serve(listener, std::future::pending());
    let sync = strata_functions::sync::run(
        client,
        table,
        strata_functions::sync::SyncOptions {
            gateway_port: port,
            gateway_addr: if bound.ip().is_unspecified() {
                std::net::SocketAddr::from(([127, 0, 0, 1], port))
            } else {
                bound
            },
            modules: Some(modules),
            ..Default::default()
        },
    );
    Ok(tokio::spawn(async move {
        let (served, ()) = tokio::join!(serving, sync);
        if let Err(error) = served {
            eprintln!("strata: the serverless gateway stopped: {error}");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_resolvers_skip_stubs_and_fall_back_to_systemd_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("resolv.conf");
        let systemd = dir.path().join("systemd-resolv.conf");
        let missing = dir.path().join("missing");
        std::fs::write(&host, "nameserver 127.0.0.53\noptions edns0\n").unwrap();
        std::fs::write(&systemd, "nameserver 192.0.2.1\nnameserver 192.0.2.2\n").unwrap();
        let servers = host_resolvers(&host, &systemd).unwrap();
        assert_eq!(
            servers,
            [
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "192.0.2.2:53".parse().unwrap()
            ]
        );
        // Only stubs and no systemd-resolved: an error, not silent refusal.
        let error = host_resolvers(&host, &missing).unwrap_err();
        assert!(error.to_string().contains("--dns-upstream"), "{error:#}");
        // Real servers beside a stub: the fallback is not read.
        std::fs::write(&host, "nameserver 127.0.0.53\nnameserver 198.51.100.1\n").unwrap();
        assert_eq!(
            host_resolvers(&host, &systemd).unwrap(),
            ["198.51.100.1:53".parse::<SocketAddr>().unwrap()]
        );
        assert!(host_resolvers(&missing, &systemd).is_err());
    }

    #[test]
    fn explicit_upstreams_come_first_and_default_to_none() {
        assert!(
            dns_upstreams(&DnsForwardArgs::default())
                .unwrap()
                .is_empty()
        );
        let args = DnsForwardArgs {
            dns_upstream: vec!["192.0.2.9:5353".parse().unwrap()],
            dns_upstream_from_host: false,
        };
        assert_eq!(dns_upstreams(&args).unwrap(), args.dns_upstream);
    }
}
