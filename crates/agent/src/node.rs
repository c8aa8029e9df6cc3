//! This node in the API: the Node object (capacity and allocatable from the machine,
//! addresses, conditions, system info), kept current every 10 s, and the heartbeat
//! Lease in `kube-node-lease` renewed every 10 s (held for 40 s), as the kubelet does.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::{AgentError, Context};

/// How often the Lease is renewed and the status refreshed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long a Lease is valid without renewal.
pub const LEASE_SECONDS: i32 = 40;
/// Namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the machine offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// CPUs.
    pub cpus: usize,
    /// Memory in KiB.
    pub memory_kib: u64,
    /// Available memory in KiB.
    pub available_kib: u64,
    /// Bytes of the file system holding the data dir.
    pub storage_bytes: u64,
    /// Free bytes there.
    pub storage_free: u64,
    /// Kernel release.
    pub kernel: String,
    /// OS name from /etc/os-release.
    pub os_image: String,
}

impl Machine {
    /// Reads the machine's figures.
    pub fn read(data_dir: &Path) -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |name: &str| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
        };
        let (storage_bytes, storage_free) = nix::sys::statvfs::statvfs(data_dir)
            .map(|s| {
                let block = s.fragment_size();
                (s.blocks() * block, s.blocks_available() * block)
            })
            .unwrap_or((0, 0));
        let os_image = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_kib: field("MemTotal:"),
            available_kib: field("MemAvailable:"),
            storage_bytes,
            storage_free,
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            os_image,
        }
    }
}

/// The Node's status as JSON for a merge patch (and for creation).
pub fn node_status(ctx: &Context, machine: &Machine, previous: Option<&Node>) -> Value {
    let capacity = json!({
        "cpu": machine.cpus.to_string(),
        "memory": format!("{}Ki", machine.memory_kib),
        "pods": ctx.options.max_pods.to_string(),
        "ephemeral-storage": format!("{}", machine.storage_bytes),
    });
    let now = Time(Timestamp::now());
    let old = previous
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let condition = |kind: &str, status: bool, reason: &str, message: &str| {
        let status = if status { "True" } else { "False" };
        let since = old
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    let memory_pressure = machine.available_kib < 100 * 1024;
    let disk_pressure =
        machine.storage_bytes > 0 && machine.storage_free * 10 < machine.storage_bytes;
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("MemoryPressure", memory_pressure,
                if memory_pressure { "KubeletHasInsufficientMemory" } else { "KubeletHasSufficientMemory" },
                if memory_pressure { "kubelet has insufficient memory available" } else { "kubelet has sufficient memory available" }),
            condition("DiskPressure", disk_pressure,
                if disk_pressure { "KubeletHasDiskPressure" } else { "KubeletHasNoDiskPressure" },
                if disk_pressure { "kubelet has disk pressure" } else { "kubelet has no disk pressure" }),
            condition("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", true, "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": ctx.options.node_ip},
            {"type": "Hostname", "address": ctx.options.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": ctx.kubelet_port}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": machine.kernel,
            "osImage": machine.os_image,
            "containerRuntimeVersion": concat!("strata://", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": "v1.33.0-strata",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
    })
}

/// Creates the Node, or refreshes it when it exists (a restart of the agent).
pub async fn register(ctx: &Context) -> Result<(), AgentError> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let name = &ctx.options.node_name;
    let machine = Machine::read(&ctx.options.data_dir);
    let existing = api.get_opt(name).await.map_err(AgentError::Register)?;
    if existing.is_none() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels(ctx)},
            "spec": {},
        }))
        .map_err(|err| AgentError::Internal(err.to_string()))?;
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(AgentError::Register(err)),
        }
    }
    let status = node_status(ctx, &machine, existing.as_ref());
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .map_err(AgentError::Register)?;
    Ok(())
}

fn labels(ctx: &Context) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "kubernetes.io/hostname".to_string(),
            ctx.options.node_name.clone(),
        ),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
        ),
    ])
}

/// Renews the Lease and refreshes the Node status every [`HEARTBEAT`], forever.
pub async fn heartbeat(ctx: &Context) {
    let mut ticker = tokio::time::interval(HEARTBEAT);
    loop {
        ticker.tick().await;
        if let Err(err) = renew_lease(ctx).await {
            tracing::warn!(error = %err, "cannot renew the node lease");
        }
        let api: Api<Node> = Api::all(ctx.client.clone());
        let previous = api.get_opt(&ctx.options.node_name).await.ok().flatten();
        let machine = Machine::read(&ctx.options.data_dir);
        let status = node_status(ctx, &machine, previous.as_ref());
        if let Err(err) = api
            .patch_status(
                &ctx.options.node_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            tracing::warn!(error = %err, "cannot update the node status");
        }
    }
}

async fn renew_lease(ctx: &Context) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), LEASE_NAMESPACE);
    let name = &ctx.options.node_name;
    let now = MicroTime(Timestamp::now());
    let spec =
        json!({"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now});
    if api.get_opt(name).await?.is_some() {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await?;
    } else {
        let lease: Lease =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))
                .map_err(kube::Error::SerdeError)?;
        api.create(&PostParams::default(), &lease).await?;
    }
    Ok(())
}
