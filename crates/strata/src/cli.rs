//! The command line of `strata` (clap definitions only).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::oci::OciCli;

/// Strata: containers, VM sandboxes and serverless functions on one machine, behind a
/// Kubernetes-compatible API.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Directory holding all of Strata's state (containers, logs, images, the store).
    #[arg(
        long,
        global = true,
        env = "STRATA_DATA_DIR",
        default_value = "/var/lib/strata"
    )]
    pub data_dir: PathBuf,

    /// Log filter for Strata's own diagnostics on stderr (e.g. `info`, `strata=debug`).
    #[arg(long, global = true, env = "STRATA_LOG")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new container.
    Run(Box<RunArgs>),
    /// List containers.
    Ps(PsArgs),
    /// Print a container's output.
    Logs(LogsArgs),
    /// Stop running containers (SIGTERM, then SIGKILL after a grace period).
    Stop(StopArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Run a further command in a running container.
    Exec(ExecArgs),
    /// Show a container's cgroup figures (CPU, memory, pids).
    Stats(StatsArgs),
    /// Manage images: list, inspect, tag, remove, prune, import.
    #[command(subcommand)]
    Image(ImageCommand),
    /// List images (same as `image ls`).
    Images(ImageLsArgs),
    /// Remove images (same as `image rm`).
    Rmi(ImageRmArgs),
    /// Run the Kubernetes-compatible API server (HTTPS; kubectl works with the
    /// kubeconfig it writes). Alone, like kube-apiserver, it runs no controllers: no
    /// garbage collection, no namespace emptying (`strata up` runs them).
    Server(ServerArgs),
    /// Run a one-node cloud: the API server, and a node agent running the pods bound to
    /// this machine, in one process (Ctrl-C stops it; pods keep running and are
    /// adopted on the next start).
    Up(UpArgs),
    /// Join this machine to a running Strata as a further node: a node agent that runs
    /// the pods bound to it (Ctrl-C stops it; pods keep running and are adopted on the
    /// next start).
    Agent(AgentArgs),
    /// Serverless functions: deploy, invoke, logs, ls, rm, usage.
    #[command(subcommand, name = "fn", alias = "function")]
    Fn(crate::functions::FnCommand),
    /// Manage join tokens (on the server's machine, with the server's --data-dir).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print the admin kubeconfig written by `strata server`.
    Kubeconfig,
    /// Download an image from a registry (same as `image pull`).
    Pull(PullArgs),
    /// Upload an image to a registry (same as `image push`).
    Push(PushArgs),
    /// Store credentials for a registry after checking them.
    Login(LoginArgs),
    /// Forget the credentials stored for a registry.
    Logout(LogoutArgs),
    /// The runc-compatible OCI runtime (also reachable as the `strata-runc` binary).
    Oci(OciCli),
    /// Internal: supervises a detached container (logs, exit status).
    #[command(name = "__monitor", hide = true)]
    Monitor(MonitorArgs),
    /// Internal: forks a container monitor for each request of the node agent.
    #[command(name = "__monitors", hide = true)]
    Monitors,
    /// Internal: runs one exec session of the node agent (`kubectl exec`).
    #[command(name = "__exec", hide = true)]
    Session(SessionArgs),
}

/// `strata run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Use this directory as the root file system instead of an image (every
    /// positional argument is then the command).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Replace the image's Entrypoint (its Cmd is then not used either; `""` clears it).
    #[arg(long, value_name = "COMMAND")]
    pub entrypoint: Option<String>,
    /// When to pull the image: `missing` (only when not stored), `always`, `never`.
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pub pull: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    pub detach: bool,
    /// Allocate a terminal for the container (foreground only).
    #[arg(short, long)]
    pub tty: bool,
    /// Keep stdin open and connected to the container (foreground only).
    #[arg(short, long)]
    pub interactive: bool,
    /// Name (and ID) of the container; generated when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// Memory limit, e.g. 64M, 1G (bytes without a suffix).
    #[arg(short, long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. 0.5.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Relative CPU weight (cgroup v1 shares).
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may use, e.g. 0-1.
    #[arg(long, value_name = "CPUS")]
    pub cpuset_cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<i64>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Bind-mount a host path: HOST:CONTAINER[:ro].
    #[arg(short, long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volume: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User and group: UID[:GID].
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Supplementary group IDs.
    #[arg(long = "group-add", value_name = "GID")]
    pub group_add: Vec<u32>,
    /// Hostname inside the container.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Network: `none` (own namespace, loopback only) or `host`.
    #[arg(long, default_value = "none", value_parser = ["none", "host"])]
    pub network: String,
    /// Mount the root file system read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Add a capability (e.g. NET_ADMIN).
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (e.g. NET_RAW, or ALL).
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Adjust the OOM killer's preference for the container (-1000..=1000).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    pub oom_score_adj: Option<i32>,
    /// Security options: `seccomp=unconfined`.
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// IMAGE [COMMAND [ARG…]] (with --rootfs: COMMAND [ARG…]). The command replaces
    /// the image's Cmd; its Entrypoint stays.
    #[arg(trailing_var_arg = true, value_name = "IMAGE [COMMAND [ARG...]]")]
    pub args: Vec<String>,
}

/// `strata ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show stopped containers too.
    #[arg(short, long)]
    pub all: bool,
    /// Print only IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `strata logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container exits.
    #[arg(short, long)]
    pub follow: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Print only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// The container.
    pub container: String,
}

/// `strata stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    /// The containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `strata rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill running containers first.
    #[arg(short, long)]
    pub force: bool,
    /// The containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `strata exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Set an environment variable.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// User and group: UID[:GID].
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// The container.
    pub container: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// `strata stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The container.
    pub container: String,
}

/// `strata __monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The prepared container.
    pub container: String,
}

/// `strata __exec`.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// Run the command on a terminal.
    #[arg(long)]
    pub tty: bool,
    /// FIFO carrying `<cols> <rows>` lines (with `--tty`).
    #[arg(long, value_name = "FIFO")]
    pub resize: Option<PathBuf>,
    /// The running container.
    pub container: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `strata image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(visible_alias = "list")]
    Ls(ImageLsArgs),
    /// Show an image's configuration and layers as JSON.
    Inspect {
        /// Image references or IDs.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Give an image another name.
    Tag {
        /// The image (reference or ID).
        source: String,
        /// The new reference.
        target: String,
    },
    /// Remove image references; blobs no image needs any more are deleted.
    #[command(visible_alias = "remove")]
    Rm(ImageRmArgs),
    /// Delete blobs and snapshots no image needs (with --all, also every image no
    /// container uses).
    Prune {
        /// Also remove every image no container uses.
        #[arg(short, long)]
        all: bool,
    },
    /// Load images from an archive: `docker save` output (old and new), or an OCI
    /// image-layout tarball; gzip-compressed or not.
    #[command(visible_alias = "load")]
    Import {
        /// The archive (`-` for stdin).
        file: PathBuf,
        /// Name for the image when the archive holds one (replaces its own name).
        reference: Option<String>,
    },
    /// Save an image as an archive that `docker load`, `podman load` and
    /// `image import` read (OCI image layout plus Docker's manifest.json).
    #[command(visible_alias = "save")]
    Export {
        /// The image reference.
        reference: String,
        /// The archive to write (`-` for stdout).
        file: PathBuf,
    },
    /// Build an image from a Containerfile (or Dockerfile) and a context directory.
    Build(BuildArgs),
    /// Download an image from a registry.
    Pull(PullArgs),
    /// Upload an image to a registry.
    Push(PushArgs),
    /// Unpack an image's layers into a new directory (a flat root file system).
    Unpack {
        /// The image.
        image: String,
        /// The directory to create.
        dir: PathBuf,
    },
    /// Make a one-layer image from a directory.
    ImportRootfs {
        /// Apply a Dockerfile instruction to the config (CMD, ENTRYPOINT, ENV, EXPOSE,
        /// WORKDIR, USER, LABEL, VOLUME, STOPSIGNAL).
        #[arg(short, long, value_name = "INSTRUCTION")]
        change: Vec<String>,
        /// The root file system directory.
        dir: PathBuf,
        /// The reference to tag the image with.
        reference: String,
    },
}

/// `strata image ls`.
#[derive(Debug, Args)]
pub struct ImageLsArgs {
    /// Print only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show repository digests.
    #[arg(long)]
    pub digests: bool,
}

/// `strata image rm`.
#[derive(Debug, Args)]
pub struct ImageRmArgs {
    /// Remove every tag of an image given by ID, and images containers use.
    #[arg(short, long)]
    pub force: bool,
    /// Image references or IDs.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `strata image build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name the image (repeatable).
    #[arg(short, long, value_name = "REF")]
    pub tag: Vec<String>,
    /// The Containerfile (default: CONTEXT/Containerfile, else CONTEXT/Dockerfile).
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set a build argument (ARG): KEY=VALUE, or KEY to take it from the environment.
    #[arg(long, value_name = "KEY=VALUE")]
    pub build_arg: Vec<String>,
    /// Run every step; use no cached layers.
    #[arg(long)]
    pub no_cache: bool,
    /// Network of RUN steps: `host` or `none`.
    #[arg(long, default_value = "host", value_parser = ["none", "host"])]
    pub network: String,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    /// The build context directory.
    pub context: PathBuf,
}

/// `strata server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: std::net::SocketAddr,
    /// Extra name or IP for the serving certificate (repeatable).
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_san: Vec<String>,
    /// IPv4 range Services' cluster IPs come from (/12 to /24). Its first 16
    /// addresses go only to Services that ask for one in `spec.clusterIP` (cluster DNS is `.10`).
    #[arg(long, value_name = "CIDR", default_value = strata_apiserver::services::DEFAULT_SERVICE_CIDR)]
    pub service_cidr: strata_apiserver::ServiceCidr,
    /// Ports NodePort and LoadBalancer Services are exposed on, both ends included.
    #[arg(long, value_name = "FIRST-LAST", default_value = strata_apiserver::services::DEFAULT_NODE_PORT_RANGE)]
    pub service_node_port_range: strata_apiserver::NodePortRange,
}

/// `strata up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Every `strata server` flag.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Name of this node (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// IP address the node reports (status.hostIP).
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: std::net::IpAddr,
    /// Port of the node agent's kubelet API (logs, exec, port-forward); 0 picks a free one.
    #[arg(long, default_value_t = strata_agent::server::DEFAULT_PORT)]
    pub kubelet_port: u16,
    /// Most pods this node runs (its `pods` capacity), as kubelet's --max-pods.
    #[arg(long, default_value_t = 110, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pods: u32,
    /// The cluster's pod range; each node gets a subnet of it (its spec.podCIDR).
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    pub cluster_cidr: strata_net::Ipv4Net,
    /// Prefix length of each node's pod subnet.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(16..=30))]
    pub node_cidr_mask_size: u8,
    /// The Linux bridge of this node's pod network.
    #[arg(long, default_value = strata_agent::network::DEFAULT_BRIDGE, value_parser = parse_bridge)]
    pub bridge: String,
    /// How long a node may go without a heartbeat before it counts as unreachable and
    /// its pods stop taking Service traffic (as kube-controller-manager's flag).
    #[arg(long, default_value = "40s", value_name = "DURATION", value_parser = parse_seconds)]
    pub node_monitor_grace_period: std::time::Duration,
    /// Where the serverless gateway listens (`<fn>.<ns>.fn.localhost` and `/fn/<ns>/<fn>`).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub gateway_listen: std::net::SocketAddr,
    /// How the gateway reaches registries for `spec.wasm.oci` modules.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Where cluster DNS forwards other names.
    #[command(flatten)]
    pub dns: DnsForwardArgs,
}

/// Where the node's cluster DNS forwards names outside the cluster domain (shared by
/// `strata up` and `strata agent`). With neither flag such names are REFUSED and no pod's
/// query leaves the node.
#[derive(Debug, Clone, Default, Args)]
pub struct DnsForwardArgs {
    /// Forward DNS queries for names outside the cluster domain to this server
    /// (ADDR[:PORT], port 53 by default; IPv6 with a port as [ADDR]:PORT). Repeatable:
    /// servers are tried in order, each for 2 s. Forwarding sends pods' non-cluster
    /// queries off the node, from the node's own address.
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_dns_upstream)]
    pub dns_upstream: Vec<std::net::SocketAddr>,
    /// Forward DNS queries for names outside the cluster domain to this machine's
    /// resolvers: the nameservers of /etc/resolv.conf (after any --dns-upstream), leaving
    /// out loopback stubs such as systemd-resolved's 127.0.0.53; if only those are listed,
    /// /run/systemd/resolve/resolv.conf is read instead. Forwarding sends pods'
    /// non-cluster queries off the node.
    #[arg(long)]
    pub dns_upstream_from_host: bool,
}

/// A DNS server: `ADDR`, `ADDR:PORT`, `[IPV6]` or `[IPV6]:PORT` (port 53 when absent).
fn parse_dns_upstream(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::{IpAddr, SocketAddr};
    let bare = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(text);
    let server = match (text.parse::<SocketAddr>(), bare.parse::<IpAddr>()) {
        (Ok(server), _) => server,
        (_, Ok(ip)) => SocketAddr::new(ip, strata_net::dns::RESOLV_CONF_PORT),
        _ => {
            return Err(format!(
                "{text:?} is not an IP address with an optional port (e.g. 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53)"
            ));
        }
    };
    if server.port() == 0 || server.ip().is_unspecified() {
        return Err(format!(
            "{text:?} names no server (port 0 or address 0.0.0.0/::)"
        ));
    }
    Ok(server)
}

/// A duration in whole seconds or minutes: `40s`, `2m`.
fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 40s or 2m)"))?;
    let seconds = match unit {
        "s" | "" => value,
        "m" => value.saturating_mul(60),
        _ => return Err(format!("{text:?} is not a duration (e.g. 40s or 2m)")),
    };
    if seconds == 0 {
        return Err("the grace period must be at least 1s".into());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

/// An interface name the kernel takes: 1 to 15 bytes, no '/', no white space.
fn parse_bridge(text: &str) -> Result<String, String> {
    match strata_net::interface_name_problem(text) {
        Some(problem) => Err(problem),
        None => Ok(text.to_string()),
    }
}

/// `strata agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The API server, e.g. https://10.0.0.1:6443.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The node's join token (`strata token create --node NAME` prints it). Random
    /// base64url, so it may start with '-'.
    #[arg(
        long,
        env = "STRATA_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub token: String,
    /// Trust the server if its CA certificate has this hash (`sha256:<hex>` of the DER,
    /// printed by `strata token create`).
    #[arg(long, value_name = "sha256:HEX")]
    pub ca_cert_hash: Option<String>,
    /// Trust the server's CA from this PEM file (the server's `<data-dir>/pki/ca.crt`).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Name of this node (default: the host name); the token must be for this name.
    #[arg(long)]
    pub node_name: Option<String>,
    /// IP address the node reports (status.hostIP; the API server reaches the kubelet API
    /// there). Default: this machine's address towards the API server.
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,
    /// Port of the node agent's kubelet API (logs, exec, port-forward); 0 picks a free one.
    #[arg(long, default_value_t = strata_agent::server::DEFAULT_PORT)]
    pub kubelet_port: u16,
    /// Most pods this node runs (its `pods` capacity), as kubelet's --max-pods.
    #[arg(long, default_value_t = 110, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pods: u32,
    /// The Linux bridge of this node's pod network.
    #[arg(long, default_value = strata_agent::network::DEFAULT_BRIDGE, value_parser = parse_bridge)]
    pub bridge: String,
    /// The cluster's pod range (as the server's --cluster-cidr).
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    pub cluster_cidr: strata_net::Ipv4Net,
    /// The cluster's service range (as the server's --service-cidr).
    #[arg(long, default_value = "10.43.0.0/16", value_name = "CIDR")]
    pub service_cidr: strata_net::Ipv4Net,
    /// Where cluster DNS forwards other names.
    #[command(flatten)]
    pub dns: DnsForwardArgs,
}

/// `strata token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token for node NAME and print the `strata agent` command that joins it.
    Create(TokenCreateArgs),
}

/// `strata token create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The node the token is for (it authenticates as `system:node:<NAME>`).
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// The server URL to put in the join command (default: the admin kubeconfig's).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Print only the token.
    #[arg(short, long)]
    pub quiet: bool,
}

/// How to reach registries (shared by pull, push and login).
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Allow plain HTTP, and HTTPS without certificate checks, for this registry
    /// (HOST[:PORT]). Loopback registries (localhost, 127.0.0.0/8, ::1) may use HTTP
    /// without being listed.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST[:PORT]",
        env = "STRATA_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,
    /// Trust the CA certificates in this PEM file besides the system's roots.
    #[arg(long = "ca-cert", value_name = "FILE", env = "STRATA_CA_CERT")]
    pub ca_cert: Vec<PathBuf>,
}

/// `strata pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The platform to choose from a multi-platform image (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Print no progress, only the reference at the end.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The image, e.g. busybox, localhost:5000/app:1, repo@sha256:….
    pub reference: String,
}

/// `strata push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Blobs larger than this go up in chunks of this many bytes.
    #[arg(
        long,
        hide = true,
        value_name = "BYTES",
        env = "STRATA_PUSH_CHUNK_SIZE",
        default_value_t = strata_image::registry::DEFAULT_CHUNK_SIZE
    )]
    pub chunk_size: u64,
    /// Print no progress.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The local image (reference or ID).
    pub image: String,
    /// Where to push it, when not to the image's own reference (the image is then
    /// also tagged with it locally).
    pub remote: Option<String>,
}

/// `strata login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name (asked for when absent).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible to other users of this machine: prefer --password-stdin).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
    /// The registry (HOST[:PORT]); Docker Hub when absent.
    pub registry: Option<String>,
}

/// `strata logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (HOST[:PORT]); Docker Hub when absent.
    pub registry: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The command `args` parse to; a parse error fails the test with clap's message.
    fn command(args: &[&str]) -> Command {
        match Cli::try_parse_from(args) {
            Ok(cli) => cli.command,
            Err(err) => panic!("{args:?}: {err}"),
        }
    }

    #[test]
    fn a_join_token_may_start_with_a_hyphen() {
        let Command::Agent(args) = command(&[
            "strata",
            "agent",
            "--server",
            "https://10.0.0.1:6443",
            "--token",
            "-Hx_y.z",
        ]) else {
            panic!("not parsed as an agent command");
        };
        assert_eq!(args.token, "-Hx_y.z");
    }

    #[test]
    fn dns_upstreams_are_addresses_with_port_53_by_default() {
        let parse = |text: &str| parse_dns_upstream(text).map(|server| server.to_string());
        assert_eq!(parse("192.0.2.53"), Ok("192.0.2.53:53".into()));
        assert_eq!(parse("192.0.2.53:5353"), Ok("192.0.2.53:5353".into()));
        assert_eq!(parse("2001:db8::53"), Ok("[2001:db8::53]:53".into()));
        assert_eq!(parse("[2001:db8::53]"), Ok("[2001:db8::53]:53".into()));
        assert_eq!(parse("[2001:db8::53]:54"), Ok("[2001:db8::53]:54".into()));
        for bad in ["dns.example", "192.0.2.53:0", "0.0.0.0", "192.0.2.53:x", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let Command::Up(args) = command(&[
            "strata",
            "up",
            "--dns-upstream",
            "192.0.2.1",
            "--dns-upstream",
            "192.0.2.2:5353",
            "--dns-upstream-from-host",
        ]) else {
            panic!("not parsed as an up command");
        };
        assert_eq!(
            args.dns.dns_upstream,
            [
                "192.0.2.1:53".parse::<std::net::SocketAddr>().unwrap(),
                "192.0.2.2:5353".parse().unwrap()
            ]
        );
        assert!(args.dns.dns_upstream_from_host);
        let Command::Agent(args) = command(&[
            "strata",
            "agent",
            "--server",
            "https://10.0.0.1:6443",
            "--token",
            "t",
        ]) else {
            panic!("not parsed as an agent command");
        };
        assert!(args.dns.dns_upstream.is_empty() && !args.dns.dns_upstream_from_host);
    }

    #[test]
    fn grace_periods_are_seconds_or_minutes() {
        assert_eq!(parse_seconds("40s"), Ok(std::time::Duration::from_secs(40)));
        assert_eq!(parse_seconds("2m"), Ok(std::time::Duration::from_secs(120)));
        assert!(parse_seconds("0s").is_err());
        assert!(parse_seconds("5h").unwrap_err().contains("not a duration"));
        assert!(parse_seconds("s").is_err());
    }
}
