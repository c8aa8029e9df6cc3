//! Per-kind defaulting and validation for the typed objects (k8s-openapi types), the
//! subset of Kubernetes' own rules that users meet in practice, with its messages.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, PodSpec, PodTemplateSpec, Secret, Service,
    ServiceAccount, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::field::FieldError;
use crate::names::{NameRule, check_name};
use crate::selector::Selector;

/// Hooks of one kind. Defaults: none; validation: none.
pub trait Kind: Serialize + DeserializeOwned {
    /// Fills in defaults, as the Kubernetes API server does on write.
    fn default(&mut self) {}
    /// Adds errors for invalid fields.
    fn validate(&self, _errors: &mut Vec<FieldError>) {}
    /// Adds errors for changes an update may not make.
    fn validate_update(&self, _old: &Self, _errors: &mut Vec<FieldError>) {}
}

/// Calls `$f::<T>(args…)` with `T` the typed kind of `$resource`.
macro_rules! dispatch {
    ($resource:expr, $f:ident, $($arg:expr),*) => {{
        use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery, events::v1 as events};
        match ($resource.group, $resource.kind) {
            ("", "Namespace") => $f::<core::Namespace>($($arg),*),
            ("", "Pod") => $f::<core::Pod>($($arg),*),
            ("", "Service") => $f::<core::Service>($($arg),*),
            ("", "Endpoints") => $f::<core::Endpoints>($($arg),*),
            ("", "ConfigMap") => $f::<core::ConfigMap>($($arg),*),
            ("", "Secret") => $f::<core::Secret>($($arg),*),
            ("", "ServiceAccount") => $f::<core::ServiceAccount>($($arg),*),
            ("", "Node") => $f::<core::Node>($($arg),*),
            ("", "Event") => $f::<core::Event>($($arg),*),
            ("apps", "Deployment") => $f::<apps::Deployment>($($arg),*),
            ("apps", "ReplicaSet") => $f::<apps::ReplicaSet>($($arg),*),
            ("apps", "DaemonSet") => $f::<apps::DaemonSet>($($arg),*),
            ("apps", "StatefulSet") => $f::<apps::StatefulSet>($($arg),*),
            ("batch", "Job") => $f::<batch::Job>($($arg),*),
            ("coordination.k8s.io", "Lease") => $f::<coordination::Lease>($($arg),*),
            ("discovery.k8s.io", "EndpointSlice") => $f::<discovery::EndpointSlice>($($arg),*),
            ("events.k8s.io", "Event") => $f::<events::Event>($($arg),*),
            ("rbac.authorization.k8s.io", "Role") => $f::<k8s_openapi::api::rbac::v1::Role>($($arg),*),
            ("rbac.authorization.k8s.io", "ClusterRole") => $f::<k8s_openapi::api::rbac::v1::ClusterRole>($($arg),*),
            ("rbac.authorization.k8s.io", "RoleBinding") => $f::<k8s_openapi::api::rbac::v1::RoleBinding>($($arg),*),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding") => $f::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>($($arg),*),
            ("serverless.strata.dev", "Function") => $f::<$crate::function::Function>($($arg),*),
            (group, kind) => unreachable!("resource table and dispatch disagree on {group}/{kind}"),
        }
    }};
}
pub(crate) use dispatch;

fn set<T>(field: &mut Option<T>, value: T) {
    if field.is_none() {
        *field = Some(value);
    }
}

fn percent(p: &str) -> IntOrString {
    IntOrString::String(p.to_string())
}

/// Defaults a pod spec (also inside templates).
pub fn default_pod_spec(spec: &mut PodSpec) {
    set(&mut spec.restart_policy, "Always".into());
    set(&mut spec.termination_grace_period_seconds, 30);
    set(&mut spec.dns_policy, "ClusterFirst".into());
    set(&mut spec.scheduler_name, "default-scheduler".into());
    set(&mut spec.security_context, Default::default());
    set(&mut spec.enable_service_links, true);
    // A host-network pod's ports are the node's: its host ports are its container ports.
    let host_network = spec.host_network == Some(true);
    if spec.service_account_name.is_none() {
        spec.service_account_name = Some("default".into());
        spec.service_account = Some("default".into());
    }
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        let latest = container.image.as_deref().is_some_and(|image| {
            let last = image.rsplit('/').next().unwrap_or(image);
            !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"))
        });
        set(
            &mut container.image_pull_policy,
            if latest { "Always" } else { "IfNotPresent" }.into(),
        );
        set(
            &mut container.termination_message_path,
            "/dev/termination-log".into(),
        );
        set(&mut container.termination_message_policy, "File".into());
        set(&mut container.resources, Default::default());
        for port in container.ports.iter_mut().flatten() {
            set(&mut port.protocol, "TCP".into());
            if host_network && port.host_port.unwrap_or(0) == 0 {
                port.host_port = Some(port.container_port);
            }
        }
    }
}

/// Validates a pod spec under `path` (`spec` or `spec.template.spec`);
/// `restart_policies` are the policies allowed there.
pub fn validate_pod_spec(
    spec: &PodSpec,
    path: &str,
    restart_policies: &[&str],
    errors: &mut Vec<FieldError>,
) {
    if let Some(policy) = &spec.restart_policy
        && !restart_policies.contains(&policy.as_str())
    {
        errors.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            policy,
            restart_policies,
        ));
    }
    if spec.containers.is_empty() {
        errors.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = BTreeSet::new();
    let host_network = spec.host_network == Some(true);
    let mut host_ports = BTreeSet::new();
    for (list, containers) in [
        ("containers", &spec.containers),
        (
            "initContainers",
            spec.init_containers.as_ref().unwrap_or(&Vec::new()),
        ),
    ] {
        for (i, c) in containers.iter().enumerate() {
            let at = format!("{path}.{list}[{i}]");
            if c.image.as_deref().unwrap_or("").trim().is_empty() {
                errors.push(FieldError::required(format!("{at}.image"), ""));
            }
            if c.name.is_empty() {
                errors.push(FieldError::required(format!("{at}.name"), ""));
            } else {
                errors.extend(check_name(&c.name, NameRule::Label, &format!("{at}.name")));
                if !names.insert(c.name.clone()) {
                    errors.push(FieldError::duplicate(format!("{at}.name"), &c.name));
                }
            }
            for (j, p) in c.ports.iter().flatten().enumerate() {
                if !(1..=65535).contains(&p.container_port) {
                    errors.push(FieldError::invalid(
                        format!("{at}.ports[{j}].containerPort"),
                        p.container_port,
                        "must be between 1 and 65535, inclusive",
                    ));
                }
                validate_host_port(
                    p,
                    &format!("{at}.ports[{j}]"),
                    host_network,
                    (list == "containers").then_some(&mut host_ports),
                    errors,
                );
                if let Some(proto) = &p.protocol
                    && !["TCP", "UDP", "SCTP"].contains(&proto.as_str())
                {
                    errors.push(FieldError::not_supported(
                        format!("{at}.ports[{j}].protocol"),
                        proto,
                        &["SCTP", "TCP", "UDP"],
                    ));
                }
            }
        }
    }
    let mut volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if !volumes.insert(v.name.clone()) {
            errors.push(FieldError::duplicate(
                format!("{path}.volumes[{i}].name"),
                &v.name,
            ));
        }
    }
}

/// A container port's `hostPort` and `hostIP`: in range, an address, equal to the
/// container port on the host network, and (among `spec.containers`, whose claims are
/// gathered in `seen`) not claimed twice.
fn validate_host_port(
    port: &k8s_openapi::api::core::v1::ContainerPort,
    at: &str,
    host_network: bool,
    seen: Option<&mut BTreeSet<String>>,
    errors: &mut Vec<FieldError>,
) {
    let host_port = port.host_port.unwrap_or(0);
    if host_port != 0 && !(1..=65535).contains(&host_port) {
        errors.push(FieldError::invalid(
            format!("{at}.hostPort"),
            host_port,
            "must be between 1 and 65535, inclusive",
        ));
    }
    if host_network && host_port != port.container_port {
        errors.push(FieldError::invalid(
            format!("{at}.hostPort"),
            host_port,
            "must match `containerPort` when `hostNetwork` is true",
        ));
    }
    let host_ip = port.host_ip.as_deref().unwrap_or_default();
    if !host_ip.is_empty() && host_ip.parse::<std::net::IpAddr>().is_err() {
        errors.push(FieldError::invalid(
            format!("{at}.hostIP"),
            host_ip,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    if let Some(seen) = seen
        && host_port != 0
    {
        let claim = format!(
            "{host_ip}/{}/{host_port}",
            port.protocol.as_deref().unwrap_or("TCP")
        );
        if !seen.insert(claim.clone()) {
            errors.push(FieldError::duplicate(format!("{at}.hostPort"), claim));
        }
    }
}

fn validate_replicas(replicas: Option<i32>, path: &str, errors: &mut Vec<FieldError>) {
    if let Some(r) = replicas
        && r < 0
    {
        errors.push(FieldError::invalid(
            path,
            r,
            "must be greater than or equal to 0",
        ));
    }
}

/// A workload's selector must be set, non-empty, and select its template's labels.
fn validate_selector(
    selector: Option<&LabelSelector>,
    template: &PodTemplateSpec,
    errors: &mut Vec<FieldError>,
) {
    let Some(selector) = selector else {
        errors.push(FieldError::required("spec.selector", ""));
        return;
    };
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if empty {
        // Missing and empty look alike after decoding; both need a selector.
        errors.push(FieldError::required("spec.selector", ""));
        return;
    }
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    match Selector::from_label_selector(selector) {
        Some(s) if s.matches(&labels) => {}
        Some(_) => errors.push(FieldError::invalid(
            "spec.template.metadata.labels",
            &labels,
            "`selector` does not match template `labels`",
        )),
        None => errors.push(FieldError::invalid(
            "spec.selector.matchExpressions",
            "…",
            "operator must be one of In, NotIn, Exists, DoesNotExist",
        )),
    }
}

fn selector_immutable(
    new: Option<&LabelSelector>,
    old: Option<&LabelSelector>,
    errors: &mut Vec<FieldError>,
) {
    if new != old {
        errors.push(FieldError::invalid(
            "spec.selector",
            new.map(|s| format!("{s:?}")).unwrap_or_default(),
            "field is immutable",
        ));
    }
}

fn template_spec(template: &mut PodTemplateSpec) -> &mut PodSpec {
    template.spec.get_or_insert_with(Default::default)
}

/// How long a pod stays on a not-ready or unreachable node by default.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Kubernetes' `DefaultTolerationSeconds` admission: a pod that does not already
/// tolerate the `node.kubernetes.io/not-ready` or `node.kubernetes.io/unreachable`
/// `NoExecute` taint tolerates it for [`DEFAULT_TOLERATION_SECONDS`], so a node
/// that stops reporting loses its pods after five minutes, not at once.
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = tolerations.iter().any(|t| {
            t.key.as_deref().is_none_or(|k| k.is_empty() || k == key)
                && t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "NoExecute")
        });
        if !tolerated {
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some("NoExecute".to_string()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
}

impl Kind for Pod {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        default_pod_spec(spec);
        add_default_tolerations(spec);
        let qos = qos_class(spec);
        let status = self.status.get_or_insert_with(Default::default);
        set(&mut status.phase, "Pending".into());
        set(&mut status.qos_class, qos.into());
    }
    fn validate(&self, errors: &mut Vec<FieldError>) {
        match &self.spec {
            Some(spec) => {
                validate_pod_spec(spec, "spec", &["Always", "OnFailure", "Never"], errors)
            }
            None => errors.push(FieldError::required("spec", "")),
        }
    }
    fn validate_update(&self, old: &Self, errors: &mut Vec<FieldError>) {
        // Pod specs are immutable except container images (Kubernetes also allows
        // activeDeadlineSeconds and added tolerations).
        let strip = |pod: &Pod| {
            let mut spec = pod.spec.clone().unwrap_or_default();
            for c in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                c.image = None;
            }
            spec.active_deadline_seconds = None;
            spec.tolerations = None;
            spec.node_name = None;
            spec
        };
        if strip(self) != strip(old) {
            errors.push(FieldError::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` (only additions to existing tolerations)",
            ));
        }
    }
}

/// BestEffort, Burstable or Guaranteed, from the containers' requests and limits.
fn qos_class(spec: &PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in &spec.containers {
        let resources = c.resources.clone().unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        if !requests.is_empty() || !limits.is_empty() {
            any = true;
        }
        for resource in ["cpu", "memory"] {
            let limit = limits.get(resource);
            let request = requests.get(resource).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

impl Kind for Deployment {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        set(&mut spec.replicas, 1);
        set(&mut spec.revision_history_limit, 10);
        set(&mut spec.progress_deadline_seconds, 600);
        let strategy = spec.strategy.get_or_insert_with(Default::default);
        set(&mut strategy.type_, "RollingUpdate".into());
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
            set(&mut rolling.max_unavailable, percent("25%"));
            set(&mut rolling.max_surge, percent("25%"));
        }
        default_pod_spec(template_spec(&mut spec.template));
    }
    fn validate(&self, errors: &mut Vec<FieldError>) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        validate_replicas(spec.replicas, "spec.replicas", errors);
        validate_selector(Some(&spec.selector), &spec.template, errors);
        match &spec.template.spec {
            Some(pod) => validate_pod_spec(pod, "spec.template.spec", &["Always"], errors),
            None => errors.push(FieldError::required("spec.template.spec", "")),
        }
        validate_deployment_strategy(spec, errors);
    }
    fn validate_update(&self, old: &Self, errors: &mut Vec<FieldError>) {
        selector_immutable(
            self.spec.as_ref().map(|s| &s.selector),
            old.spec.as_ref().map(|s| &s.selector),
            errors,
        );
    }
}

/// An IntOrString that must be a non-negative count or a percentage (at most 100%
/// when `at_most_all`); returns whether it is zero.
fn validate_int_or_percent(
    value: Option<&IntOrString>,
    path: &str,
    at_most_all: bool,
    errors: &mut Vec<FieldError>,
) -> bool {
    match value {
        None => true,
        Some(IntOrString::Int(n)) => {
            if *n < 0 {
                errors.push(FieldError::invalid(
                    path,
                    n,
                    "must be greater than or equal to 0",
                ));
            }
            *n == 0
        }
        Some(IntOrString::String(text)) => {
            let Some(number) = text.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) else {
                errors.push(FieldError::invalid(
                    path,
                    text,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
                return false;
            };
            if number < 0 {
                errors.push(FieldError::invalid(
                    path,
                    text,
                    "must be greater than or equal to 0",
                ));
            } else if at_most_all && number > 100 {
                errors.push(FieldError::invalid(
                    path,
                    text,
                    "must not be greater than 100%",
                ));
            }
            number == 0
        }
    }
}

/// A Deployment's strategy, as Kubernetes validates it: a known type, no rollingUpdate
/// with Recreate, counts or percentages, not both maxSurge and maxUnavailable zero, and a
/// progress deadline beyond minReadySeconds.
fn validate_deployment_strategy(
    spec: &k8s_openapi::api::apps::v1::DeploymentSpec,
    errors: &mut Vec<FieldError>,
) {
    let strategy = spec.strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref() {
        Some("Recreate") => {
            if strategy.rolling_update.is_some() {
                errors.push(FieldError::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        Some("RollingUpdate") | None => {
            if let Some(rolling) = &strategy.rolling_update {
                let unavailable_path = "spec.strategy.rollingUpdate.maxUnavailable";
                let surge_zero = validate_int_or_percent(
                    rolling.max_surge.as_ref(),
                    "spec.strategy.rollingUpdate.maxSurge",
                    false,
                    errors,
                );
                let unavailable_zero = validate_int_or_percent(
                    rolling.max_unavailable.as_ref(),
                    unavailable_path,
                    true,
                    errors,
                );
                if surge_zero && unavailable_zero {
                    errors.push(FieldError::invalid(
                        unavailable_path,
                        0,
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
        }
        Some(other) => errors.push(FieldError::not_supported(
            "spec.strategy.type",
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    if min_ready < 0 {
        errors.push(FieldError::invalid(
            "spec.minReadySeconds",
            min_ready,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(deadline) = spec.progress_deadline_seconds
        && deadline <= min_ready
    {
        errors.push(FieldError::invalid(
            "spec.progressDeadlineSeconds",
            deadline,
            "must be greater than minReadySeconds",
        ));
    }
}

impl Kind for ReplicaSet {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        set(&mut spec.replicas, 1);
        if let Some(template) = spec.template.as_mut() {
            default_pod_spec(template_spec(template));
        }
    }
    fn validate(&self, errors: &mut Vec<FieldError>) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        validate_replicas(spec.replicas, "spec.replicas", errors);
        match &spec.template {
            Some(template) => {
                validate_selector(Some(&spec.selector), template, errors);
                if let Some(pod) = &template.spec {
                    validate_pod_spec(pod, "spec.template.spec", &["Always"], errors);
                }
            }
            None => errors.push(FieldError::required("spec.template", "")),
        }
    }
    fn validate_update(&self, old: &Self, errors: &mut Vec<FieldError>) {
        selector_immutable(
            self.spec.as_ref().map(|s| &s.selector),
            old.spec.as_ref().map(|s| &s.selector),
            errors,
        );
    }
}

impl Kind for DaemonSet {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        set(&mut spec.revision_history_limit, 10);
        let strategy = spec.update_strategy.get_or_insert_with(Default::default);
        set(&mut strategy.type_, "RollingUpdate".into());
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
            set(&mut rolling.max_unavailable, IntOrString::Int(1));
            set(&mut rolling.max_surge, IntOrString::Int(0));
        }
        default_pod_spec(template_spec(&mut spec.template));
    }
    fn validate(&self, errors: &mut Vec<FieldError>) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        validate_selector(Some(&spec.selector), &spec.template, errors);
        if let Some(pod) = &spec.template.spec {
            validate_pod_spec(pod, "spec.template.spec", &["Always"], errors);
        }
    }
}

impl Kind for StatefulSet {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        set(&mut spec.replicas, 1);
        set(&mut spec.revision_history_limit, 10);
        set(&mut spec.pod_management_policy, "OrderedReady".into());
        let strategy = spec.update_strategy.get_or_insert_with(Default::default);
        set(&mut strategy.type_, "RollingUpdate".into());
        default_pod_spec(template_spec(&mut spec.template));
    }
    fn validate(&self, errors: &mut Vec<FieldError>) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        validate_replicas(spec.replicas, "spec.replicas", errors);
        validate_selector(Some(&spec.selector), &spec.template, errors);
        if let Some(pod) = &spec.template.spec {
            validate_pod_spec(pod, "spec.template.spec", &["Always"], errors);
        }
    }
}

impl Kind for Job {
    fn default(&mut self) {
        crate::job::generate_selector(self);
        let spec = self.spec.get_or_insert_with(Default::default);
        // Both unset means one pod that must succeed once.
        if spec.completions.is_none() && spec.parallelism.is_none() {
            spec.completions = Some(1);
        }
        set(&mut spec.parallelism, 1);
        set(&mut spec.backoff_limit, 6);
        set(&mut spec.completion_mode, "NonIndexed".into());
        set(&mut spec.suspend, false);
        let replacement = if spec.pod_failure_policy.is_some() {
            "Failed"
        } else {
            "TerminatingOrFailed"
        };
        set(&mut spec.pod_replacement_policy, replacement.into());
        // Pod templates default `restartPolicy: Always`, which validation refuses for
        // Jobs: Kubernetes requires the field to be set, and so does Strata.
        default_pod_spec(template_spec(&mut spec.template));
    }
    fn validate(&self, errors: &mut Vec<FieldError>) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        validate_selector(spec.selector.as_ref(), &spec.template, errors);
        if let Some(pod) = &spec.template.spec {
            validate_pod_spec(pod, "spec.template.spec", &["OnFailure", "Never"], errors);
        }
        for (field, value) in [
            ("spec.parallelism", spec.parallelism),
            ("spec.completions", spec.completions),
            ("spec.backoffLimit", spec.backoff_limit),
            (
                "spec.ttlSecondsAfterFinished",
                spec.ttl_seconds_after_finished,
            ),
        ] {
            validate_replicas(value, field, errors);
        }
        if let Some(deadline) = spec.active_deadline_seconds
            && deadline <= 0
        {
            errors.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                deadline,
                "must be greater than 0",
            ));
        }
        match spec.completion_mode.as_deref() {
            None | Some("NonIndexed") => {}
            Some("Indexed") if spec.completions.is_none() => errors.push(FieldError::required(
                "spec.completions",
                "when completion mode is Indexed",
            )),
            Some("Indexed") => {}
            Some(other) => errors.push(FieldError::not_supported(
                "spec.completionMode",
                other,
                &["NonIndexed", "Indexed"],
            )),
        }
    }
    fn validate_update(&self, old: &Self, errors: &mut Vec<FieldError>) {
        let spec = |job: &Job| job.spec.clone().unwrap_or_default();
        let (new, old) = (spec(self), spec(old));
        selector_immutable(new.selector.as_ref(), old.selector.as_ref(), errors);
        if new.template != old.template {
            errors.push(FieldError::invalid(
                "spec.template",
                "…",
                "field is immutable",
            ));
        }
        if new.completion_mode != old.completion_mode {
            errors.push(FieldError::invalid(
                "spec.completionMode",
                new.completion_mode.unwrap_or_default(),
                "field is immutable",
            ));
        }
    }
}

impl Kind for Service {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        set(&mut spec.type_, "ClusterIP".into());
        if spec.type_.as_deref() != Some("ExternalName") {
            set(&mut spec.session_affinity, "None".into());
            set(&mut spec.internal_traffic_policy, "Cluster".into());
            set(&mut spec.ip_families, vec!["IPv4".into()]);
            set(&mut spec.ip_family_policy, "SingleStack".into());
        }
        for port in spec.ports.iter_mut().flatten() {
            // 0 is Go's unset (protobuf clients send it): allocate, as for none.
            if port.node_port == Some(0) {
                port.node_port = None;
            }
            set(&mut port.protocol, "TCP".into());
            set(&mut port.target_port, IntOrString::Int(port.port));
        }
        set(&mut self.status, Default::default());
    }
    fn validate(&self, errors: &mut Vec<FieldError>) {
        let Some(spec) = &self.spec else {
            return errors.push(FieldError::required("spec", ""));
        };
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
        if !TYPES.contains(&kind) {
            errors.push(FieldError::not_supported("spec.type", kind, &TYPES));
        }
        let ports = spec.ports.clone().unwrap_or_default();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if ports.is_empty() && kind != "ExternalName" && !headless {
            errors.push(FieldError::required("spec.ports", ""));
        }
        let mut names = BTreeSet::new();
        for (i, p) in ports.iter().enumerate() {
            if !(1..=65535).contains(&p.port) {
                errors.push(FieldError::invalid(
                    format!("spec.ports[{i}].port"),
                    p.port,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            match &p.name {
                Some(name) if !name.is_empty() => {
                    errors.extend(check_name(
                        name,
                        NameRule::Label,
                        &format!("spec.ports[{i}].name"),
                    ));
                    if !names.insert(name.clone()) {
                        errors.push(FieldError::duplicate(format!("spec.ports[{i}].name"), name));
                    }
                }
                _ if ports.len() > 1 => errors.push(FieldError::required(
                    format!("spec.ports[{i}].name"),
                    "must be specified when > 1 port",
                )),
                _ => {}
            }
            // Whether it is in the server's NodePort range, free, and allowed for
            // the Service's type is the API server's check (it allocates them).
            if let Some(node_port) = p.node_port
                && !(1..=65535).contains(&node_port)
            {
                errors.push(FieldError::invalid(
                    format!("spec.ports[{i}].nodePort"),
                    node_port,
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
    }
    fn validate_update(&self, old: &Self, errors: &mut Vec<FieldError>) {
        // An empty clusterIP keeps the allocated one (the API server fills it in), and
        // a change to or from ExternalName may drop or gain one.
        let ip = |s: &Service| {
            s.spec
                .as_ref()
                .filter(|s| s.type_.as_deref() != Some("ExternalName"))
                .and_then(|s| s.cluster_ip.clone())
                .filter(|ip| !ip.is_empty())
        };
        if ip(old).is_some() && ip(self).is_some() && ip(self) != ip(old) {
            errors.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                ip(self).unwrap_or_default(),
                "may not change once set",
            ));
        }
    }
}

fn validate_data_keys<'a>(
    keys: impl Iterator<Item = &'a String>,
    field: &str,
    errors: &mut Vec<FieldError>,
) {
    for key in keys {
        let valid = !key.is_empty()
            && key.len() <= 253
            && key
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        if !valid {
            errors.push(FieldError::invalid(
                field,
                key,
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ));
        }
    }
}

impl Kind for ConfigMap {
    fn validate(&self, errors: &mut Vec<FieldError>) {
        validate_data_keys(self.data.iter().flat_map(BTreeMap::keys), "data", errors);
        validate_data_keys(
            self.binary_data.iter().flat_map(BTreeMap::keys),
            "binaryData",
            errors,
        );
    }
}

impl Kind for Secret {
    fn default(&mut self) {
        set(&mut self.type_, "Opaque".into());
        // stringData is write-only: merged into data, as Kubernetes does.
        if let Some(strings) = self.string_data.take() {
            let data = self.data.get_or_insert_with(Default::default);
            for (k, v) in strings {
                data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
            }
        }
    }
    fn validate(&self, errors: &mut Vec<FieldError>) {
        validate_data_keys(self.data.iter().flat_map(BTreeMap::keys), "data", errors);
    }
}

impl Kind for Namespace {
    fn default(&mut self) {
        let name = self.metadata.name.clone().unwrap_or_default();
        self.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("kubernetes.io/metadata.name".into(), name);
        let spec = self.spec.get_or_insert_with(Default::default);
        set(&mut spec.finalizers, vec!["kubernetes".into()]);
        let status = self.status.get_or_insert_with(Default::default);
        set(&mut status.phase, "Active".into());
    }
}

impl Kind for Node {}
impl Kind for ServiceAccount {}
impl Kind for Endpoints {}
impl Kind for Event {}
impl Kind for Lease {}
impl Kind for k8s_openapi::api::events::v1::Event {}
