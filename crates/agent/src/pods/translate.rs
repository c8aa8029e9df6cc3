//! A Pod's container, as Kubernetes describes it, turned into the runtime's plain
//! [`ContainerConfig`]: the command (Kubernetes' command/args over the image's
//! Entrypoint/Cmd, with `$(VAR)` expansion), the environment (image, `env` with
//! `valueFrom`, `envFrom`), the user, security context, resource limits and mounts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVarSource, Pod};
use strata_api::quantity::Quantity;
use strata_image::ImageConfig;
use strata_image::containerfile::set_env;
use strata_runtime::{
    BindMount, Capability, ContainerConfig, NetworkMode, ResourceLimits, Sandbox,
};

/// Why a container cannot be made (Kubernetes: `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// What a container's config is built from besides the Pod.
pub struct Inputs<'a> {
    /// The image's config.
    pub image: &'a ImageConfig,
    /// The container's root file system.
    pub rootfs: PathBuf,
    /// The pod's sandbox.
    pub sandbox: Sandbox,
    /// ConfigMaps the pod refers to, by name (`data` and `binaryData` as text).
    pub config_maps: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// Secrets the pod refers to, by name (decoded).
    pub secrets: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// Host directory of each pod volume, by volume name.
    pub volumes: &'a BTreeMap<String, PathBuf>,
    /// The node's name and IP.
    pub node_name: &'a str,
    /// The node's IP (`status.hostIP`).
    pub host_ip: &'a str,
    /// The pod's IP (`status.podIP`), known once the sandbox is on the network.
    pub pod_ip: &'a str,
    /// The directory holding the pod's `resolv.conf` and `etc-hosts`, if written.
    pub name_files: Option<PathBuf>,
    /// The cgroup path of the container.
    pub cgroups_path: PathBuf,
    /// The `kubernetes` Service's cluster IP (the first address of the service range),
    /// announced to every container as `KUBERNETES_SERVICE_HOST` and friends.
    pub kubernetes_service_ip: Option<std::net::Ipv4Addr>,
    /// The link variables of the Services of the pod's namespace (empty with
    /// `enableServiceLinks: false`).
    pub service_env: &'a [(String, String)],
}

/// Builds the runtime config of `container` in `pod`.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    inputs: &Inputs<'_>,
) -> Result<ContainerConfig, ConfigError> {
    let env = environment(pod, container, inputs)?;
    let command = command_line(container, inputs.image, &env);
    if command.is_empty() {
        return Err(ConfigError(
            "no command specified: the image has no Entrypoint or Cmd and the container no command"
                .into(),
        ));
    }
    let mut config = ContainerConfig::new(inputs.rootfs.clone(), command);
    config.terminal = container.tty.unwrap_or(false);
    config.sandbox = Some(inputs.sandbox.clone());
    let spec = pod.spec.as_ref();
    config.network = if spec.and_then(|s| s.host_network).unwrap_or(false) {
        NetworkMode::Host
    } else {
        NetworkMode::None
    };
    config.cwd = container
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| {
            inputs
                .image
                .config
                .working_dir
                .clone()
                .filter(|d| !d.is_empty())
        })
        .unwrap_or_else(|| "/".to_string());
    if !config.cwd.starts_with('/') {
        return Err(ConfigError(format!(
            "workingDir {:?} must be an absolute path",
            config.cwd
        )));
    }
    apply_user(pod, container, inputs, &mut config)?;
    let mut env = env;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        set_env(
            &mut env,
            "HOME",
            if config.uid == 0 { "/root" } else { "/" },
        );
    }
    config.env = env;
    apply_security(pod, container, &mut config)?;
    config.limits = limits(container)?;
    config.cgroups_path = inputs.cgroups_path.clone();
    config.bind_mounts = mounts(container, inputs)?;
    Ok(config)
}

/// Kubernetes' rule: `command` replaces the Entrypoint (and drops the Cmd), `args`
/// replaces the Cmd; `$(VAR)` refers to the container's environment.
fn command_line(container: &Container, image: &ImageConfig, env: &[String]) -> Vec<String> {
    let expand = |list: &Vec<String>| list.iter().map(|a| expand(a, env)).collect::<Vec<_>>();
    match (&container.command, &container.args) {
        (Some(command), args) if !command.is_empty() => {
            let mut line = expand(command);
            line.extend(args.as_ref().map(expand).unwrap_or_default());
            line
        }
        (_, Some(args)) if !args.is_empty() => {
            let mut line = image.config.entrypoint.clone().unwrap_or_default();
            line.extend(expand(args));
            line
        }
        _ => image.command_line(&[]),
    }
}

/// Expands `$(NAME)` from `env`; `$$(NAME)` is a literal `$(NAME)`; unknown names stay.
pub fn expand(text: &str, env: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            let value = env
                .iter()
                .find_map(|e| e.strip_prefix(name).and_then(|v| v.strip_prefix('=')));
            match value {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn environment(
    pod: &Pod,
    container: &Container,
    inputs: &Inputs<'_>,
) -> Result<Vec<String>, ConfigError> {
    let mut env = inputs.image.config.env.clone();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    set_env(&mut env, "HOSTNAME", name);
    if let Some(ip) = inputs.kubernetes_service_ip {
        for (key, value) in super::service_env::kubernetes(ip) {
            set_env(&mut env, &key, &value);
        }
    }
    for (key, value) in inputs.service_env {
        set_env(&mut env, key, value);
    }
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        let (data, what, optional) = if let Some(map) = &source.config_map_ref {
            (
                inputs.config_maps.get(&map.name),
                format!("configmap {:?}", map.name),
                map.optional,
            )
        } else if let Some(secret) = &source.secret_ref {
            (
                inputs.secrets.get(&secret.name),
                format!("secret {:?}", secret.name),
                secret.optional,
            )
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (key, value) in data {
                    set_env(&mut env, &format!("{prefix}{key}"), value);
                }
            }
            None if optional == Some(true) => {}
            None => return Err(ConfigError(format!("{what} not found"))),
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => expand(value, &env),
            (None, Some(from)) => match value_from(pod, from, inputs)? {
                Some(value) => value,
                None => continue,
            },
            (None, None) => String::new(),
        };
        set_env(&mut env, &var.name, &value);
    }
    Ok(env)
}

fn value_from(
    pod: &Pod,
    from: &EnvVarSource,
    inputs: &Inputs<'_>,
) -> Result<Option<String>, ConfigError> {
    if let Some(field) = &from.field_ref {
        let meta = &pod.metadata;
        let label = |prefix: &str| {
            field
                .field_path
                .strip_prefix(prefix)
                .and_then(|k| k.strip_prefix("['").and_then(|k| k.strip_suffix("']")))
                .map(str::to_string)
        };
        let value = match field.field_path.as_str() {
            "metadata.name" => meta.name.clone(),
            "metadata.namespace" => meta.namespace.clone(),
            "metadata.uid" => meta.uid.clone(),
            "spec.nodeName" => Some(inputs.node_name.to_string()),
            "spec.serviceAccountName" => pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone()),
            "status.hostIP" | "status.hostIPs" => Some(inputs.host_ip.to_string()),
            "status.podIP" | "status.podIPs" => Some(inputs.pod_ip.to_string()),
            path => {
                if let Some(key) = label("metadata.labels") {
                    meta.labels.as_ref().and_then(|l| l.get(&key).cloned())
                } else if let Some(key) = label("metadata.annotations") {
                    meta.annotations.as_ref().and_then(|a| a.get(&key).cloned())
                } else {
                    return Err(ConfigError(format!("fieldRef {path:?} is not supported")));
                }
            }
        };
        return Ok(Some(value.unwrap_or_default()));
    }
    let lookup = |data: &BTreeMap<String, BTreeMap<String, String>>,
                  kind: &str,
                  name: &str,
                  key: &str,
                  optional: Option<bool>| {
        match data.get(name).map(|d| d.get(key)) {
            Some(Some(value)) => Ok(Some(value.clone())),
            _ if optional == Some(true) => Ok(None),
            Some(None) => Err(ConfigError(format!(
                "couldn't find key {key} in {kind} {name}"
            ))),
            None => Err(ConfigError(format!("{kind} {name:?} not found"))),
        }
    };
    if let Some(key) = &from.config_map_key_ref {
        return lookup(
            inputs.config_maps,
            "ConfigMap",
            &key.name,
            &key.key,
            key.optional,
        );
    }
    if let Some(key) = &from.secret_key_ref {
        return lookup(inputs.secrets, "Secret", &key.name, &key.key, key.optional);
    }
    Err(ConfigError(
        "valueFrom has no supported source (fieldRef, configMapKeyRef, secretKeyRef)".into(),
    ))
}

fn apply_user(
    pod: &Pod,
    container: &Container,
    inputs: &Inputs<'_>,
    config: &mut ContainerConfig,
) -> Result<(), ConfigError> {
    let pod_security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let security = container.security_context.as_ref();
    let uid = security
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_security.and_then(|s| s.run_as_user));
    let gid = security
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_security.and_then(|s| s.run_as_group));
    let image_user = inputs.image.config.user.clone().filter(|u| !u.is_empty());
    let spec = match (uid, &image_user) {
        (Some(uid), _) => Some(uid.to_string()),
        (None, Some(user)) => Some(user.clone()),
        (None, None) => None,
    };
    if let Some(spec) = spec {
        let resolved = strata_image::users::resolve(&spec, &inputs.rootfs)
            .map_err(|err| ConfigError(format!("cannot resolve user {spec:?}: {err}")))?;
        config.uid = resolved.uid;
        config.gid = resolved.gid;
        config.additional_gids = resolved.additional_gids;
        if let Some(home) = resolved.home {
            set_env(&mut config.env, "HOME", &home);
        }
    }
    if let Some(gid) = gid {
        config.gid = u32::try_from(gid)
            .map_err(|_| ConfigError(format!("runAsGroup {gid} is out of range")))?;
    }
    let non_root = security
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_security.and_then(|s| s.run_as_non_root));
    if non_root == Some(true) && config.uid == 0 {
        return Err(ConfigError(
            "container has runAsNonRoot and image will run as root".into(),
        ));
    }
    for gid in pod_security
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
    {
        config.additional_gids.push(
            u32::try_from(gid)
                .map_err(|_| ConfigError(format!("supplemental group {gid} is out of range")))?,
        );
    }
    Ok(())
}

fn apply_security(
    pod: &Pod,
    container: &Container,
    config: &mut ContainerConfig,
) -> Result<(), ConfigError> {
    let _ = pod;
    let Some(security) = &container.security_context else {
        return Ok(());
    };
    config.read_only_rootfs = security.read_only_root_filesystem.unwrap_or(false);
    let capability = |name: &String| {
        let upper = name.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        bare.parse::<Capability>()
            .map_err(|_| ConfigError(format!("unknown capability {name:?}")))
    };
    if security.privileged == Some(true) {
        config.cap_add = all_capabilities();
        config.seccomp_unconfined = true;
        return Ok(());
    }
    if let Some(caps) = &security.capabilities {
        config.cap_add = caps
            .add
            .iter()
            .flatten()
            .map(capability)
            .collect::<Result<_, _>>()?;
        let drop = caps.drop.iter().flatten();
        config.cap_drop = if caps
            .drop
            .iter()
            .flatten()
            .any(|c| c.eq_ignore_ascii_case("ALL"))
        {
            strata_runtime::spec::DEFAULT_CAPABILITIES.to_vec()
        } else {
            drop.map(capability).collect::<Result<_, _>>()?
        };
    }
    if let Some(profile) = &security.seccomp_profile
        && profile.type_ == "Unconfined"
    {
        config.seccomp_unconfined = true;
    }
    Ok(())
}

fn all_capabilities() -> Vec<Capability> {
    use std::str::FromStr;
    caps_names()
        .iter()
        .filter_map(|name| Capability::from_str(name).ok())
        .collect()
}

fn caps_names() -> &'static [&'static str] {
    &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
    ]
}

/// A container's resource figures that become cgroup settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// `limits.memory` in bytes.
    pub memory_limit_bytes: Option<i64>,
    /// `limits.cpu` in millicores (zero counts as none).
    pub cpu_limit_milli: Option<i64>,
    /// `requests.cpu` in millicores, defaulting to the limit like Kubernetes.
    pub cpu_request_milli: Option<i64>,
}

/// The resource figures of `container`; a malformed quantity is an error naming it.
pub fn resources(container: &Container) -> Result<Resources, ConfigError> {
    let resources = container.resources.as_ref();
    let quantity = |map: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
                    key: &str| {
        map.and_then(|m| m.get(key))
            .map(|q| {
                Quantity::parse(&q.0)
                    .map_err(|err| ConfigError(format!("resources of {}: {err}", container.name)))
            })
            .transpose()
    };
    let limits_map = resources.and_then(|r| r.limits.as_ref());
    let requests_map = resources.and_then(|r| r.requests.as_ref());
    let cpu_limit = quantity(limits_map, "cpu")?
        .map(|q| q.milli_value())
        .filter(|m| *m > 0);
    Ok(Resources {
        memory_limit_bytes: quantity(limits_map, "memory")?.map(|q| q.value()),
        cpu_limit_milli: cpu_limit,
        cpu_request_milli: quantity(requests_map, "cpu")?
            .map(|q| q.milli_value())
            .or(cpu_limit),
    })
}

/// Kubernetes resources as cgroup limits: memory limit, CPU limit as CFS quota, CPU
/// request as shares (1024 per core, at least 2).
pub fn limits(container: &Container) -> Result<ResourceLimits, ConfigError> {
    let figures = resources(container)?;
    Ok(ResourceLimits {
        memory_bytes: figures.memory_limit_bytes,
        cpus: figures.cpu_limit_milli.map(|milli| milli as f64 / 1000.0),
        cpu_shares: figures
            .cpu_request_milli
            .map(|milli| (milli.max(0) as u64 * 1024 / 1000).max(2)),
        cpuset_cpus: None,
        pids: None,
    })
}

fn mounts(container: &Container, inputs: &Inputs<'_>) -> Result<Vec<BindMount>, ConfigError> {
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(source) = inputs.volumes.get(&mount.name) else {
            return Err(ConfigError(format!(
                "volume {:?} is not defined in the pod",
                mount.name
            )));
        };
        let source = match mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
            Some(sub) => sub_path(source, sub)?,
            None => source.clone(),
        };
        if !mount.mount_path.starts_with('/') {
            return Err(ConfigError(format!(
                "mountPath {:?} must be absolute",
                mount.mount_path
            )));
        }
        mounts.push(BindMount {
            source,
            destination: PathBuf::from(&mount.mount_path),
            read_only: mount.read_only.unwrap_or(false),
        });
    }
    // The pod's name resolution files, unless the container mounts its own there.
    if let Some(dir) = &inputs.name_files {
        for (file, destination) in [
            (super::worker::RESOLV_CONF, "/etc/resolv.conf"),
            (super::worker::HOSTS, "/etc/hosts"),
        ] {
            let source = dir.join(file);
            let taken = mounts
                .iter()
                .any(|m| m.destination == Path::new(destination));
            if !taken && source.is_file() {
                mounts.push(BindMount {
                    source,
                    destination: PathBuf::from(destination),
                    read_only: false,
                });
            }
        }
    }
    Ok(mounts)
}

/// `subPath` inside a volume: relative, no `..`, created as a directory when missing
/// (what the kubelet does).
fn sub_path(volume: &Path, sub: &str) -> Result<PathBuf, ConfigError> {
    let relative = Path::new(sub);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ConfigError(format!(
            "subPath {sub:?} must be a relative path without '..'"
        )));
    }
    let path = volume.join(relative);
    let canonical_volume = volume
        .canonicalize()
        .unwrap_or_else(|_| volume.to_path_buf());
    if !path.exists() {
        std::fs::create_dir_all(&path)
            .map_err(|err| ConfigError(format!("cannot create subPath {sub:?}: {err}")))?;
    }
    let resolved = path
        .canonicalize()
        .map_err(|err| ConfigError(format!("subPath {sub:?}: {err}")))?;
    if !resolved.starts_with(&canonical_volume) {
        return Err(ConfigError(format!("subPath {sub:?} leaves its volume")));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let env = vec!["A=1".to_string(), "AB=2".to_string()];
        assert_eq!(expand("x$(A)y$(AB)", &env), "x1y2");
        assert_eq!(expand("$$(A) $(C) $", &env), "$(A) $(C) $");
    }

    #[test]
    fn cpu_and_memory_limits() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}}
        }))
        .unwrap_or_default();
        let limits = limits(&container).unwrap_or_default();
        assert_eq!(limits.memory_bytes, Some(64 << 20));
        assert_eq!(limits.cpus, Some(0.5));
        assert_eq!(limits.cpu_shares, Some(256));
    }
}
