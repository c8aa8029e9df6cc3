//! Strata's node agent, a kubelet: it registers its Node, keeps a Lease fresh, and runs
//! the Pods bound to it as containers on Strata's runtime and image store.
//!
//! - [`cluster_dns`]: the node's DNS server for the cluster domain.
//! - [`containers`]: the containers of this machine (shared with `strata run`): their
//!   directories, monitors and logs.
//! - [`network`]: the node's pod network (bridge, addresses) once it has a subnet.
//! - [`node`]: the Node object and the heartbeat Lease.
//! - [`pods`]: the pods bound to this node, one worker each.
//! - [`routes`]: routes to the other nodes' pod subnets.
//! - [`proxy`]: the node's service rules (nftables), from Services and Endpoints.
//! - [`server`]: the kubelet API (logs, exec, attach, port-forward) that the API server
//!   proxies to.

pub mod cluster_dns;
pub mod containers;
pub mod network;
pub mod node;
pub mod pods;
pub mod proxy;
pub mod routes;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use strata_client::Recorder;
use strata_image::ImageStore;

use crate::containers::launcher::Launcher;
use crate::containers::logfile::Rotation;
use crate::containers::{Store, StrataCommand};
use crate::server::{KubeletServer, KubeletTls};

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The node's name.
    pub node_name: String,
    /// The node's IP (`InternalIP`, `status.hostIP`).
    pub node_ip: String,
    /// The data dir: containers, images and pods live under it.
    pub data_dir: PathBuf,
    /// How to run the strata binary (container monitors, exec sessions).
    pub strata: StrataCommand,
    /// Most pods the node takes.
    pub max_pods: u32,
    /// Where the kubelet API listens (port 0: any free port; the Node reports the port).
    pub kubelet_listen: SocketAddr,
    /// The kubelet API's certificates.
    pub kubelet_tls: KubeletTls,
    /// When container logs rotate.
    pub log_rotation: Rotation,
    /// The bridge of the pod network (`strata0` by default).
    pub bridge: String,
    /// The cluster's pod range (pods may reach it, nothing beyond).
    pub cluster_cidr: strata_net::Ipv4Net,
    /// The service range (routed onto the bridge).
    pub service_cidr: strata_net::Ipv4Net,
    /// The cluster DNS address pods are told to use.
    pub cluster_dns: std::net::Ipv4Addr,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// Where the node's DNS server forwards names outside the cluster domain, tried in
    /// order. Empty: such names are refused and no query leaves the node.
    pub dns_upstreams: Vec<SocketAddr>,
}

/// The cluster DNS address of a service range: its tenth address (10.43.0.10), as k3s
/// picks it.
pub fn cluster_dns_of(service_cidr: strata_net::Ipv4Net) -> std::net::Ipv4Addr {
    service_cidr.nth(10).unwrap_or(service_cidr.network())
}

/// The cluster domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// Aborts a task when dropped (a task that owns helpers may itself be aborted at any
/// await, and its helpers must go with it).
pub(crate) struct AbortOnDrop(tokio::task::AbortHandle);

impl AbortOnDrop {
    /// Guards `task`.
    pub(crate) fn of<T>(task: tokio::task::JoinHandle<T>) -> Self {
        Self(task.abort_handle())
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The container store could not be opened.
    #[error("cannot open the container store")]
    Containers(#[source] containers::ContainerError),
    /// The image store could not be opened.
    #[error("cannot open the image store")]
    Images(#[source] strata_image::ImageError),
    /// The Node could not be registered.
    #[error("cannot register the node")]
    Register(#[source] kube::Error),
    /// The pod network could not be set up.
    #[error("cannot set up the pod network")]
    Network(#[source] strata_net::NetError),
    /// The kubelet API could not start.
    #[error("cannot start the kubelet API")]
    Server(#[source] server::ServerError),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What every part of the agent shares.
pub struct Context {
    /// The API client (with the node's identity).
    pub client: kube::Client,
    /// The containers of this machine.
    pub containers: Store,
    /// The image store.
    pub images: ImageStore,
    /// Events as the kubelet writes them.
    pub recorder: Recorder,
    /// The options.
    pub options: AgentOptions,
    /// The port the kubelet API listens on.
    pub kubelet_port: u16,
    /// Starts container monitors (through a fork server).
    pub monitors: Launcher,
    /// The pod network, once the node has its subnet.
    pub network: std::sync::OnceLock<strata_net::PodNetwork>,
}

/// Registers the node and runs its pods until the future is dropped.
pub async fn run(client: kube::Client, options: AgentOptions) -> Result<(), AgentError> {
    let containers = Store::open(&options.data_dir).map_err(AgentError::Containers)?;
    let images = ImageStore::open(options.data_dir.join("images")).map_err(AgentError::Images)?;
    let recorder = Recorder::new(client.clone(), "kubelet", Some(&options.node_name));
    let kubelet = KubeletServer::bind(options.kubelet_listen, &options.kubelet_tls)
        .await
        .map_err(AgentError::Server)?;
    let ctx = Arc::new(Context {
        client,
        containers,
        images,
        recorder,
        monitors: Launcher::new(options.strata.clone()),
        options,
        kubelet_port: kubelet.port(),
        network: std::sync::OnceLock::new(),
    });
    let serving = tokio::spawn(kubelet.serve(ctx.clone()));
    let result = match node::register(&ctx).await {
        Ok(()) => {
            let heartbeat = {
                let ctx = ctx.clone();
                tokio::spawn(async move { node::heartbeat(&ctx).await })
            };
            let result = match network::setup(&ctx).await {
                Ok(()) => {
                    let proxy = tokio::spawn(proxy::run(ctx.clone()));
                    let routes = tokio::spawn(routes::run(ctx.clone()));
                    let result = pods::run(ctx).await;
                    proxy.abort();
                    routes.abort();
                    result
                }
                Err(err) => Err(err),
            };
            heartbeat.abort();
            result
        }
        Err(err) => Err(err),
    };
    serving.abort();
    result
}
