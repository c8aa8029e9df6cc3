//! Admission of a submitted object: decode it as its typed kind (errors name the
//! field path), find fields the kind does not have (Strict rejects them, Warn reports
//! them, Ignore drops them — they are dropped from storage in every mode), apply
//! defaults, validate, and re-encode. Pure: the API server does the IO.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::field::FieldError;
use crate::kinds::{self, Kind};
use crate::names::{NameRule, check_annotations, check_labels, check_name};
use crate::resources::Resource;

/// `?fieldValidation=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Unknown or duplicate fields fail the request.
    #[default]
    Strict,
    /// They are dropped and reported as warnings.
    Warn,
    /// They are dropped silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query value (case-sensitive like Kubernetes; empty means Strict
    /// for kubectl ≥ 1.27's default).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Strict" | "" => Some(Self::Strict),
            "Warn" => Some(Self::Warn),
            "Ignore" => Some(Self::Ignore),
            _ => None,
        }
    }
}

/// What admission does with the object.
#[derive(Debug, Clone, Copy)]
pub enum Operation<'a> {
    /// A new object.
    Create,
    /// A replacement for `old` (the stored object).
    Update {
        /// The stored object.
        old: &'a Value,
    },
}

/// An admitted object, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// The typed, defaulted object as JSON.
    pub object: Value,
    /// Warnings for the client (`Warning:` headers).
    pub warnings: Vec<String>,
}

/// Why an object was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The body is not the kind's shape (400 BadRequest).
    #[error("{kind} in version \"{version}\" cannot be handled as a {kind}: {message}")]
    Decode {
        /// The kind.
        kind: String,
        /// Its version.
        version: String,
        /// Where and what.
        message: String,
    },
    /// Unknown fields under Strict validation (400 BadRequest).
    #[error("strict decoding error: {}", .fields.iter().map(|f| format!("unknown field \"{f}\"")).collect::<Vec<_>>().join(", "))]
    UnknownFields {
        /// The fields' paths.
        fields: Vec<String>,
    },
    /// Validation failed (422 Invalid).
    #[error("{}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Invalid {
        /// The field errors.
        errors: Vec<FieldError>,
    },
}

/// Paths present in `original` but absent from `typed` (its typed round trip).
fn unknown_fields(original: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (original, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (key, value) in o {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match t.get(key) {
                    Some(tv) => unknown_fields(value, tv, &child, out),
                    None if value.is_null() => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            for (i, (ov, tv)) in o.iter().zip(t).enumerate() {
                unknown_fields(ov, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Decodes `value` as `T`, reporting the failing field's path.
pub fn decode<T: DeserializeOwned>(resource: &Resource, value: Value) -> Result<T, AdmitError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A missing required field is a validation error (422), as Kubernetes has it.
        if let Some(field) = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            let field = if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            return AdmitError::Invalid {
                errors: vec![FieldError::required(field, "")],
            };
        }
        AdmitError::Decode {
            kind: resource.kind.to_string(),
            version: resource.api_version(),
            message: if path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            },
        }
    })
}

fn encode<T: Serialize>(object: &T) -> Value {
    // Typed Kubernetes objects always serialise.
    serde_json::to_value(object).unwrap_or(Value::Null)
}

fn name_rule(resource: &Resource) -> NameRule {
    match (resource.group, resource.plural) {
        ("", "namespaces") => NameRule::Label,
        // A Function's name becomes a host name label (`<fn>.<ns>.fn.localhost`).
        ("", "services") | ("serverless.strata.dev", "functions") => NameRule::Dns1035,
        _ => NameRule::Subdomain,
    }
}

/// Checks `metadata` (name by the resource's rule, labels, annotations).
fn check_meta(resource: &Resource, object: &Value, errors: &mut Vec<FieldError>) {
    let meta = &object["metadata"];
    match meta["name"].as_str() {
        Some(name) if !name.is_empty() && resource.group == crate::rbac::GROUP => {
            errors.extend(crate::rbac::path_segment(name, "metadata.name"));
        }
        Some(name) if !name.is_empty() => {
            errors.extend(check_name(name, name_rule(resource), "metadata.name"));
        }
        _ => errors.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
    }
    if let Ok(labels) = serde_json::from_value(meta["labels"].clone()) {
        errors.extend(check_labels(&labels, "metadata.labels"));
    }
    if let Ok(annotations) = serde_json::from_value(meta["annotations"].clone()) {
        errors.extend(check_annotations(&annotations, "metadata.annotations"));
    }
}

fn admit_typed<T: Kind>(
    resource: &Resource,
    value: Value,
    operation: Operation<'_>,
    validation: FieldValidation,
) -> Result<Admitted, AdmitError> {
    let original = value.clone();
    let mut object: T = decode(resource, value)?;
    let mut warnings = Vec::new();
    let mut unknown = Vec::new();
    unknown_fields(&original, &encode(&object), "", &mut unknown);
    if !unknown.is_empty() {
        match validation {
            FieldValidation::Strict => return Err(AdmitError::UnknownFields { fields: unknown }),
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")))
            }
            FieldValidation::Ignore => {}
        }
    }
    object.default();
    let mut errors = Vec::new();
    let encoded = encode(&object);
    check_meta(resource, &encoded, &mut errors);
    object.validate(&mut errors);
    if let Operation::Update { old } = operation {
        let old: T = decode(resource, old.clone())?;
        object.validate_update(&old, &mut errors);
    }
    if !errors.is_empty() {
        return Err(AdmitError::Invalid { errors });
    }
    Ok(Admitted {
        object: encode(&object),
        warnings,
    })
}

/// Admits `value` as an object of `resource`.
pub fn admit(
    resource: &Resource,
    value: Value,
    operation: Operation<'_>,
    validation: FieldValidation,
) -> Result<Admitted, AdmitError> {
    kinds::dispatch!(
        resource,
        admit_typed,
        resource,
        value,
        operation,
        validation
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use serde_json::json;

    fn pods() -> &'static Resource {
        find("", "v1", "pods").unwrap()
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn a_pod_is_defaulted_like_kubernetes_does() {
        let admitted = admit(
            pods(),
            pod(json!({"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]})),
            Operation::Create,
            FieldValidation::Strict,
        )
        .unwrap();
        let spec = &admitted.object["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(admitted.object["status"]["phase"], "Pending");
        assert_eq!(admitted.object["status"]["qosClass"], "BestEffort");
        assert_eq!(
            spec["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
    }

    #[test]
    fn a_pod_that_tolerates_node_failure_keeps_its_own_tolerations() {
        let body = pod(
            json!({"containers": [{"name": "c", "image": "x"}], "tolerations": [
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
                {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},
            ]}),
        );
        let admitted = admit(pods(), body, Operation::Create, FieldValidation::Strict).unwrap();
        let tolerations = admitted.object["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .clone();
        let keys: Vec<(&str, Option<i64>)> = tolerations
            .iter()
            .map(|t| (t["key"].as_str().unwrap(), t["tolerationSeconds"].as_i64()))
            .collect();
        assert_eq!(
            keys,
            [
                ("node.kubernetes.io/unreachable", Some(5)),
                ("dedicated", None),
                ("node.kubernetes.io/not-ready", Some(300)),
            ]
        );
        // Tolerating every key and effect covers both.
        let all = pod(json!({"containers": [{"name": "c", "image": "x"}],
            "tolerations": [{"operator": "Exists"}]}));
        let admitted = admit(pods(), all, Operation::Create, FieldValidation::Strict).unwrap();
        assert_eq!(
            admitted.object["spec"]["tolerations"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_service_cluster_ip_may_be_left_out_or_dropped_but_not_changed() {
        let services = find("", "v1", "services").unwrap();
        let service = |spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec});
        let old = service(json!({"clusterIP": "10.43.0.16", "ports": [{"port": 80}]}));
        let update = |spec: Value| {
            admit(
                services,
                service(spec),
                Operation::Update { old: &old },
                FieldValidation::Strict,
            )
        };
        assert!(update(json!({"ports": [{"port": 80}]})).is_ok());
        assert!(update(json!({"clusterIP": "", "ports": [{"port": 80}]})).is_ok());
        assert!(update(json!({"type": "ExternalName", "externalName": "example.com"})).is_ok());
        let Err(AdmitError::Invalid { errors }) =
            update(json!({"clusterIP": "10.43.0.17", "ports": [{"port": 80}]}))
        else {
            panic!("a changed clusterIP was admitted");
        };
        assert_eq!(errors[0].field, "spec.clusterIPs[0]");
        assert_eq!(errors[0].detail, "may not change once set");
    }

    #[test]
    fn host_ports_are_checked_and_default_on_the_host_network() {
        let invalid = |spec: Value| -> Vec<(String, String)> {
            match admit(
                pods(),
                pod(spec),
                Operation::Create,
                FieldValidation::Strict,
            ) {
                Err(AdmitError::Invalid { errors }) => {
                    errors.into_iter().map(|e| (e.field, e.detail)).collect()
                }
                other => panic!("admitted or another error: {other:?}"),
            }
        };
        let errors = invalid(json!({"containers": [
            {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 70000},
                                                  {"containerPort": 81, "hostPort": 8080, "hostIP": "nowhere"}]},
            {"name": "b", "image": "x", "ports": [{"containerPort": 82, "hostPort": 8080, "hostIP": "nowhere"}]}]}));
        assert_eq!(
            errors,
            [
                (
                    "spec.containers[0].ports[0].hostPort".into(),
                    "must be between 1 and 65535, inclusive".into()
                ),
                (
                    "spec.containers[0].ports[1].hostIP".into(),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()
                ),
                (
                    "spec.containers[1].ports[0].hostIP".into(),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()
                ),
                ("spec.containers[1].ports[0].hostPort".into(), String::new()),
            ]
        );
        let errors = invalid(json!({"hostNetwork": true, "containers": [
            {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}));
        assert_eq!(
            errors[0].1,
            "must match `containerPort` when `hostNetwork` is true"
        );
        let admitted = admit(
            pods(),
            pod(json!({"hostNetwork": true, "containers": [
                {"name": "a", "image": "x", "ports": [{"containerPort": 80}]}]})),
            Operation::Create,
            FieldValidation::Strict,
        )
        .unwrap();
        assert_eq!(
            admitted.object["spec"]["containers"][0]["ports"][0]["hostPort"],
            80
        );
        // Different protocols or addresses are different claims.
        admit(
            pods(),
            pod(json!({"containers": [{"name": "a", "image": "x", "ports": [
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 80, "hostPort": 8080, "protocol": "UDP"},
                {"containerPort": 81, "hostPort": 8080, "hostIP": "10.0.0.1"}]}]})),
            Operation::Create,
            FieldValidation::Strict,
        )
        .unwrap();
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = admit(
            pods(),
            pod(json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": "eighty"}]}]})),
            Operation::Create,
            FieldValidation::Strict,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("Pod in version \"v1\" cannot be handled as a Pod: spec.containers[0].ports[0].containerPort"), "{text}");
    }

    #[test]
    fn unknown_fields_follow_field_validation() {
        let body =
            pod(json!({"containers": [{"name": "c", "image": "x", "imagee": "typo"}], "bogus": 1}));
        let strict = admit(
            pods(),
            body.clone(),
            Operation::Create,
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert_eq!(
            strict.to_string(),
            "strict decoding error: unknown field \"spec.bogus\", unknown field \"spec.containers[0].imagee\""
        );
        let warned = admit(
            pods(),
            body.clone(),
            Operation::Create,
            FieldValidation::Warn,
        )
        .unwrap();
        assert_eq!(warned.warnings.len(), 2);
        assert!(warned.object["spec"].get("bogus").is_none());
        let ignored = admit(pods(), body, Operation::Create, FieldValidation::Ignore).unwrap();
        assert!(ignored.warnings.is_empty());
    }

    #[test]
    fn missing_required_fields_are_validation_errors() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        let err = admit(
            deploy,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                   "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
            Operation::Create,
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "spec.selector: Required value");
        let mismatch = admit(
            deploy,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                   "spec": {"selector": {"matchLabels": {"app": "a"}},
                            "template": {"metadata": {"labels": {"app": "b"}},
                                         "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
            Operation::Create,
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert!(
            mismatch
                .to_string()
                .contains("`selector` does not match template `labels`"),
            "{mismatch}"
        );
    }

    #[test]
    fn deployment_strategies_are_validated_like_kubernetes() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        let with_strategy = |strategy: serde_json::Value, extra: serde_json::Value| {
            let mut spec = json!({
                "selector": {"matchLabels": {"app": "a"}},
                "strategy": strategy,
                "template": {"metadata": {"labels": {"app": "a"}},
                             "spec": {"containers": [{"name": "c", "image": "x"}]}}
            });
            for (k, v) in extra.as_object().unwrap() {
                spec[k] = v.clone();
            }
            admit(
                deploy,
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec}),
                Operation::Create,
                FieldValidation::Strict,
            )
        };
        let frozen = with_strategy(
            json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
            json!({}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            frozen.contains("spec.strategy.rollingUpdate.maxUnavailable")
                && frozen.contains("may not be 0 when `maxSurge` is 0"),
            "{frozen}"
        );
        let bad = with_strategy(
            json!({"rollingUpdate": {"maxSurge": "lots", "maxUnavailable": "150%"}}),
            json!({}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("spec.strategy.rollingUpdate.maxSurge"),
            "{bad}"
        );
        assert!(bad.contains("must not be greater than 100%"), "{bad}");
        let recreate = with_strategy(
            json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
            json!({}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            recreate.contains("spec.strategy.rollingUpdate"),
            "{recreate}"
        );
        let unknown = with_strategy(json!({"type": "BlueGreen"}), json!({}))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("spec.strategy.type"), "{unknown}");
        let deadline = with_strategy(
            json!({}),
            json!({"minReadySeconds": 30, "progressDeadlineSeconds": 10}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            deadline.contains("spec.progressDeadlineSeconds"),
            "{deadline}"
        );
        assert!(
            with_strategy(
                json!({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
                json!({})
            )
            .is_ok()
        );
        assert!(with_strategy(json!({"type": "Recreate"}), json!({})).is_ok());
    }

    #[test]
    fn invalid_objects_list_every_field_error() {
        let err = admit(
            pods(),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
                   "spec": {"containers": [{"name": "c"}, {"name": "c", "image": "x"}], "restartPolicy": "Sometimes"}}),
            Operation::Create,
            FieldValidation::Strict,
        )
        .unwrap_err();
        let AdmitError::Invalid { errors } = err else {
            panic!("expected Invalid");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.name",
                "spec.restartPolicy",
                "spec.containers[0].image",
                "spec.containers[1].name"
            ]
        );
    }

    #[test]
    fn a_job_gets_its_selector_and_defaults() {
        let jobs = find("batch", "v1", "jobs").unwrap();
        let body = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "x"}]}}}});
        let admitted = admit(
            jobs,
            body.clone(),
            Operation::Create,
            FieldValidation::Strict,
        )
        .unwrap();
        let spec = &admitted.object["spec"];
        assert_eq!(
            spec["selector"]["matchLabels"][crate::job::CONTROLLER_UID_LABEL],
            "u-1"
        );
        assert_eq!(spec["template"]["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(
            (spec["completions"].clone(), spec["parallelism"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");

        let mut indexed = body.clone();
        indexed["spec"]["completionMode"] = json!("Indexed");
        indexed["spec"]["parallelism"] = json!(2);
        let err = admit(jobs, indexed, Operation::Create, FieldValidation::Strict).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.completions: Required value: when completion mode is Indexed"
        );

        let mut changed = admitted.object.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("y");
        let err = admit(
            jobs,
            changed,
            Operation::Update {
                old: &admitted.object,
            },
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("spec.template: Invalid value"),
            "{err}"
        );
        let same = admit(
            jobs,
            body,
            Operation::Update {
                old: &admitted.object,
            },
            FieldValidation::Strict,
        );
        assert!(same.is_ok(), "{same:?}");
    }
}
