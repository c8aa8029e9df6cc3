#![allow(clippy::unwrap_used)]
//! Protobuf request bodies, encoded by an independent implementation (prost, with the
//! k8s-pb crate's Kubernetes messages) the way client-go writes them, read back by
//! `strata_api::protobuf` into the JSON Kubernetes would have sent.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};
use strata_api::protobuf::{ProtobufError, decode};

/// `k8s\0` + `runtime.Unknown{typeMeta, raw}`, as client-go's protobuf serializer writes.
fn envelope(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn some(text: &str) -> Option<String> {
    Some(text.to_string())
}

/// Metadata as Go writes it: every non-pointer string present, even empty, and the zero
/// creationTimestamp as an empty message.
fn metadata(name: &str, labels: &[(&str, &str)]) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: some(name),
        generate_name: some(""),
        namespace: some(""),
        self_link: some(""),
        uid: some(""),
        resource_version: some(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn deployment() -> apps::Deployment {
    let labels = [("app", "web")];
    let container = core::Container {
        name: some("web"),
        image: some("nginx:1.27"),
        ports: vec![core::ContainerPort {
            name: some("http"),
            container_port: Some(80),
            host_port: Some(0),
            protocol: some("TCP"),
            ..Default::default()
        }],
        env: vec![core::EnvVar {
            name: some("MODE"),
            value: some("prod"),
            value_from: None,
        }],
        resources: Some(core::ResourceRequirements {
            limits: BTreeMap::from([(
                "memory".to_string(),
                Quantity {
                    string: some("64Mi"),
                },
            )]),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: some("/healthz"),
                    port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: some("http"),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        ..Default::default()
    };
    apps::Deployment {
        metadata: Some(metadata("web", &labels)),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(metadata("", &labels)),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    volumes: vec![core::Volume {
                        name: some("config"),
                        volume_source: Some(core::VolumeSource {
                            config_map: Some(core::ConfigMapVolumeSource {
                                local_object_reference: Some(core::LocalObjectReference {
                                    name: some("web-config"),
                                }),
                                default_mode: Some(0o644),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: some("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: some(""),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: some("25%"),
                    }),
                }),
            }),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    }
}

#[test]
fn a_deployment_reads_as_the_json_kubernetes_would_send() {
    let object = decode(&envelope("apps/v1", "Deployment", &deployment())).unwrap();
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "generation": 0, "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"generation": 0, "labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"name": "http", "containerPort": 80, "hostPort": 0, "protocol": "TCP"}],
                        "env": [{"name": "MODE", "value": "prod"}],
                        "resources": {"limits": {"memory": "64Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}}],
                }
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
        },
        "status": {},
    });
    assert_eq!(object, expected);
    // And it is a valid k8s-openapi Deployment.
    let typed: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(object).unwrap();
    assert_eq!(typed.spec.unwrap().replicas, Some(0));
}

#[test]
fn secrets_carry_bytes_as_base64_and_events_microseconds() {
    let secret = core::Secret {
        metadata: Some(metadata("creds", &[])),
        data: BTreeMap::from([("password".to_string(), b"s3cr\xffet".to_vec())]),
        string_data: BTreeMap::from([("user".to_string(), "admin".to_string())]),
        r#type: some("Opaque"),
        immutable: None,
    };
    let object = decode(&envelope("v1", "Secret", &secret)).unwrap();
    assert_eq!(object["data"], json!({"password": "czNjcv9ldA=="}));
    assert_eq!(object["stringData"], json!({"user": "admin"}));
    assert_eq!(object["type"], "Opaque");

    let event = k8s_pb::api::events::v1::Event {
        metadata: Some(metadata("e1", &[])),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_700_000_000),
            nanos: Some(123_456_789),
        }),
        deprecated_first_timestamp: Some(meta::Time {
            seconds: Some(1_700_000_000),
            nanos: Some(5),
        }),
        reason: some("Started"),
        ..Default::default()
    };
    let object = decode(&envelope("events.k8s.io/v1", "Event", &event)).unwrap();
    assert_eq!(object["eventTime"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(object["deprecatedFirstTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(object["metadata"].get("creationTimestamp"), None);
}

#[test]
fn negative_numbers_and_delete_options_under_any_group_version() {
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(-1),
        propagation_policy: some("Foreground"),
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    let object = decode(&envelope("apps/v1", "DeleteOptions", &options)).unwrap();
    assert_eq!(object["gracePeriodSeconds"], -1);
    assert_eq!(object["propagationPolicy"], "Foreground");
    assert_eq!(object["dryRun"], json!(["All"]));
}

#[test]
fn bad_bodies_are_errors_that_say_where() {
    let body = envelope("apps/v1", "Deployment", &deployment());
    assert_eq!(decode(&body[4..]), Err(ProtobufError::NotProtobuf));

    let unknown_kind = envelope("example.com/v1", "Widget", &deployment());
    let error = decode(&unknown_kind).unwrap_err();
    assert!(
        matches!(error, ProtobufError::UnknownKind { ref kind, .. } if kind == "Widget"),
        "{error}"
    );

    // A string field holding invalid UTF-8 names its path.
    let mut bad = deployment();
    bad.spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some(String::from_utf8_lossy(b"x").into_owned());
    let mut raw = bad.encode_to_vec();
    let at = raw.windows(1).rposition(|w| w == b"x").unwrap();
    raw[at] = 0xff;
    let mut body = b"k8s\0".to_vec();
    body.extend(
        Unknown {
            type_meta: Some(TypeMeta {
                api_version: some("apps/v1"),
                kind: some("Deployment"),
            }),
            raw: Some(raw),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let error = decode(&body).unwrap_err().to_string();
    assert!(
        error.contains("spec.template.spec.containers[0].image"),
        "{error}"
    );

    // Truncation anywhere is an error, never a panic.
    for cut in 5..body.len() {
        let _ = decode(&body[..cut]);
    }
    let full = envelope("apps/v1", "Deployment", &deployment());
    assert!(decode(&full[..full.len() - 3]).is_err());
}

#[test]
fn nesting_is_bounded() {
    // managedFields[].fieldsV1 may hold a nested envelope; a tower of them must end in
    // an error, not a stack overflow.
    let mut body = envelope("v1", "ConfigMap", &core::ConfigMap::default());
    for _ in 0..200 {
        let config_map = core::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                managed_fields: vec![meta::ManagedFieldsEntry {
                    fields_v1: Some(meta::FieldsV1 { raw: Some(body) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        body = envelope("v1", "ConfigMap", &config_map);
    }
    let error = decode(&body).unwrap_err().to_string();
    assert!(error.contains("nested too deeply"), "{error}");
}

#[test]
fn mutated_bodies_never_panic() {
    let body = envelope("apps/v1", "Deployment", &deployment());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut decoded = 0;
    for _ in 0..20_000 {
        let mut mutated = body.clone();
        for _ in 0..=(next() % 4) {
            let at = 4 + (next() as usize) % (mutated.len() - 4);
            mutated[at] = next() as u8;
        }
        if decode(&mutated).is_ok() {
            decoded += 1;
        }
    }
    // Some mutations leave a readable object (unknown fields are skipped), most not.
    assert!(
        decoded > 0 && decoded < 20_000,
        "{decoded} of 20000 decoded"
    );
    let _: Value = decode(&body).unwrap();
}
