#![allow(clippy::unwrap_used)]
//! Server-side apply and managedFields through the in-process API server: apply
//! creates, updates and prunes; updates take fields from appliers; conflicts are
//! 409 with FieldManagerConflict causes until forced; malformed applies are refused
//! as Kubernetes refuses them.

use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use strata_testkit::cluster::TestApiServer;

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn deployment(replicas: i64, image: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}
            }
        }
    })
}

/// A raw request: status code and JSON body.
async fn raw(
    client: &kube::Client,
    method: &str,
    uri: &str,
    content_type: &str,
    user_agent: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type);
    if let Some(agent) = user_agent {
        request = request.header("user-agent", agent);
    }
    let request = request
        .body(kube::client::Body::from(body.as_bytes().to_vec()))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let code = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or_default().to_string(),
                e["operation"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_creates_updates_prunes_and_conflicts_like_kubernetes() {
    let server = TestApiServer::start().await;
    let client = server.admin_client().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let ssa = PatchParams::apply("ci");

    // Apply creates (201 on the wire); the entry records exactly the applied fields.
    let config = deployment(2, "nginx:1.24", json!({"app": "web", "tier": "front"}));
    let (code, created) = raw(
        &client,
        "PATCH",
        &format!("{DEPLOYMENTS}/web?fieldManager=ci"),
        "application/apply-patch+yaml",
        None,
        &config.to_string(),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let entries = created["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{created}");
    assert_eq!(entries[0]["manager"], "ci");
    assert_eq!(entries[0]["operation"], "Apply");
    assert_eq!(entries[0]["apiVersion"], "apps/v1");
    assert_eq!(entries[0]["fieldsType"], "FieldsV1");
    assert_eq!(
        entries[0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"],
        json!({".": {}, "f:image": {}, "f:name": {}})
    );
    assert_eq!(
        entries[0]["fieldsV1"]["f:metadata"],
        json!({"f:labels": {"f:app": {}, "f:tier": {}}})
    );

    // A new image, and a label no longer in the configuration: removed.
    let config = deployment(2, "nginx:1.25", json!({"app": "web"}));
    let applied = api
        .patch("web", &ssa, &Patch::Apply(&config))
        .await
        .unwrap();
    let image = applied
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1.25"));
    let labels = applied.metadata.labels.clone().unwrap();
    assert_eq!(labels.len(), 1, "{labels:?}");

    // An update by another manager takes spec.replicas.
    let (code, scaled) = raw(
        &client,
        "PATCH",
        &format!("{DEPLOYMENTS}/web"),
        "application/merge-patch+json",
        Some("scaler/v0.1 (linux/amd64)"),
        r#"{"spec":{"replicas":5}}"#,
    )
    .await;
    assert_eq!(code, 200, "{scaled}");
    assert!(
        managers(&scaled).contains(&("scaler".into(), "Update".into())),
        "{scaled}"
    );

    // Applying another value now conflicts: 409 with one cause per field.
    let (code, status) = raw(
        &client,
        "PATCH",
        &format!("{DEPLOYMENTS}/web?fieldManager=ci"),
        "application/apply-patch+yaml",
        None,
        &config.to_string(),
    )
    .await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Apply failed with 1 conflict: conflict with \"scaler\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{
            "reason": "FieldManagerConflict",
            "message": "conflict with \"scaler\" using apps/v1",
            "field": ".spec.replicas"
        }])
    );

    // Forced, the applier wins and the other manager owns nothing more.
    let forced = api
        .patch("web", &ssa.clone().force(), &Patch::Apply(&config))
        .await
        .unwrap();
    assert_eq!(forced.spec.as_ref().unwrap().replicas, Some(2));
    let forced = serde_json::to_value(&forced).unwrap();
    assert!(
        !managers(&forced).iter().any(|(m, _)| m == "scaler"),
        "{forced}"
    );

    // The same apply again writes nothing.
    let again = api
        .patch("web", &ssa, &Patch::Apply(&config))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        forced["metadata"]["resourceVersion"]
            .as_str()
            .map(String::from)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_and_updates_record_their_manager() {
    let server = TestApiServer::start().await;
    let client = server.admin_client().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let params = PostParams {
        field_manager: Some("creator".into()),
        ..PostParams::default()
    };
    let created = api
        .create(
            &params,
            &serde_json::from_value(deployment(1, "nginx", json!({"app": "web"}))).unwrap(),
        )
        .await
        .unwrap();
    let created = serde_json::to_value(&created).unwrap();
    assert_eq!(
        managers(&created),
        vec![("creator".to_string(), "Update".to_string())]
    );
    // Defaults the server filled in belong to the creator too, as in Kubernetes.
    let fields = &created["metadata"]["managedFields"][0]["fieldsV1"];
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert!(fields["f:spec"]["f:strategy"].is_object(), "{fields}");

    // A PUT by another client that changes nothing records nothing; one that
    // changes the image takes it.
    let mut same: Deployment = serde_json::from_value(created.clone()).unwrap();
    same.metadata.managed_fields = None;
    let unchanged = api
        .replace("web", &PostParams::default(), &same)
        .await
        .unwrap();
    assert_eq!(
        unchanged.metadata.resource_version,
        created["metadata"]["resourceVersion"]
            .as_str()
            .map(String::from)
    );
    let mut changed = created.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    let (code, replaced) = raw(
        &client,
        "PUT",
        &format!("{DEPLOYMENTS}/web"),
        "application/json",
        Some("editor/1.0"),
        &changed.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{replaced}");
    assert_eq!(
        managers(&replaced),
        vec![
            ("creator".to_string(), "Update".to_string()),
            ("editor".to_string(), "Update".to_string())
        ]
    );
    let editor = &replaced["metadata"]["managedFields"][1]["fieldsV1"];
    assert_eq!(
        editor,
        &json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {"f:image": {}}}}}}})
    );

    // managedFields sent in an update replace the stored ones: `[{}]` clears them
    // (Kubernetes' documented way).
    let mut reset = replaced.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    let (code, body) = raw(
        &client,
        "PUT",
        &format!("{DEPLOYMENTS}/web"),
        "application/json",
        None,
        &reset.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["metadata"]["managedFields"].is_null(), "{body}");
}

/// A Kubernetes protobuf body of a kind Strata has no protobuf schema for is 415
/// Unsupported Media Type (as Kubernetes answers an encoding it cannot read), naming
/// the encodings it reads; a malformed one is 400 saying what is wrong.
#[tokio::test]
async fn protobuf_bodies_of_unknown_kinds_get_415_and_malformed_ones_400() {
    let server = TestApiServer::start().await;
    let client = server.admin_client().await;
    // k8s\0 + Unknown{typeMeta{apiVersion "example.com/v1", kind "Widget"}}
    let type_meta = "\n\u{e}example.com/v1\u{12}\u{6}Widget";
    let widget = format!("k8s\u{0}\n{}{type_meta}", char::from(type_meta.len() as u8));
    let (code, status) = raw(
        &client,
        "POST",
        DEPLOYMENTS,
        "application/vnd.kubernetes.protobuf",
        None,
        &widget,
    )
    .await;
    assert_eq!(code, 415, "{status}");
    assert_eq!(status["reason"], "UnsupportedMediaType", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("application/json") && message.contains("Widget"),
        "{status}"
    );

    // The typeMeta claims 11 bytes but the body ends after 9.
    let (code, status) = raw(
        &client,
        "POST",
        DEPLOYMENTS,
        "application/vnd.kubernetes.protobuf",
        None,
        "k8s\u{0}\n\u{b}\n\u{7}apps/v1",
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("protobuf"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_applies_are_refused_like_kubernetes() {
    let server = TestApiServer::start().await;
    let client = server.admin_client().await;
    let apply = |query: &'static str, body: String| {
        let client = client.clone();
        async move {
            raw(
                &client,
                "PATCH",
                &format!("{DEPLOYMENTS}/web{query}"),
                "application/apply-patch+yaml",
                None,
                &body,
            )
            .await
        }
    };
    let config = deployment(1, "nginx", json!({"app": "web"}));

    let (code, status) = apply("", config.to_string()).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["details"]["causes"][0]["field"], "fieldManager");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("fieldManager: Required value: is required for apply patch"),
        "{status}"
    );

    let mut with_managed = config.clone();
    with_managed["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Apply"}]);
    let (code, status) = apply("?fieldManager=m", with_managed.to_string()).await;
    assert_eq!(
        (code, status["message"].as_str()),
        (400, Some("metadata.managedFields must be nil"))
    );

    let mut wrong_version = config.clone();
    wrong_version["apiVersion"] = json!("apps/v1beta1");
    let (code, status) = apply("?fieldManager=m", wrong_version.to_string()).await;
    assert_eq!(code, 400, "{status}");

    let (code, status) = apply("?fieldManager=m", "a: [".into()).await;
    assert_eq!(code, 400, "{status}");

    let mut duplicate = config.clone();
    duplicate["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]);
    let (code, status) = apply("?fieldManager=m", duplicate.to_string()).await;
    assert_eq!(code, 422, "{status}");

    // YAML is the apply body's format.
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n";
    let (code, created) = apply("?fieldManager=m", yaml.into()).await;
    assert_eq!(code, 201, "{created}");

    // force belongs to apply only.
    let (code, status) = raw(
        &client,
        "PATCH",
        &format!("{DEPLOYMENTS}/web?force=true"),
        "application/merge-patch+json",
        None,
        "{}",
    )
    .await;
    assert_eq!(code, 422, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_dry_run_and_unknown_fields() {
    let server = TestApiServer::start().await;
    let client = server.admin_client().await;
    let config = deployment(1, "nginx", json!({"app": "web"}));
    let apply = |uri: String, body: String| {
        let client = client.clone();
        async move {
            raw(
                &client,
                "PATCH",
                &uri,
                "application/apply-patch+yaml",
                None,
                &body,
            )
            .await
        }
    };

    // A dry run creates nothing.
    let (code, _) = apply(
        format!("{DEPLOYMENTS}/web?fieldManager=ci&dryRun=All"),
        config.to_string(),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = raw(&client, "GET", &format!("{DEPLOYMENTS}/web"), "", None, "").await;
    assert_eq!(code, 404);

    // Unknown fields fail a Strict apply, as other writes.
    let mut unknown = config.clone();
    unknown["spec"]["replicaz"] = json!(3);
    let (code, status) = apply(
        format!("{DEPLOYMENTS}/web?fieldManager=ci&fieldValidation=Strict"),
        unknown.to_string(),
    )
    .await;
    assert_eq!(code, 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("spec.replicaz"),
        "{status}"
    );

    // Ignored, they are dropped, and nobody owns them.
    let mut ignored = unknown.clone();
    ignored["metadata"]["name"] = json!("ignored");
    let (code, object) = apply(
        format!("{DEPLOYMENTS}/ignored?fieldManager=ci&fieldValidation=Ignore"),
        ignored.to_string(),
    )
    .await;
    assert_eq!(code, 201, "{object}");
    assert!(object["spec"]["replicaz"].is_null(), "{object}");
    let owned = &object["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"];
    assert!(owned["f:replicaz"].is_null(), "{owned}");
    assert_eq!(owned["f:replicas"], json!({}));

    // Status applied through /status is the status manager's, and leaves spec alone.
    let (code, _) = apply(
        format!("{DEPLOYMENTS}/web?fieldManager=ci"),
        config.to_string(),
    )
    .await;
    assert_eq!(code, 201);
    let status = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 9},
        "status": {"replicas": 1, "readyReplicas": 1}
    });
    let (code, object) = apply(
        format!("{DEPLOYMENTS}/web/status?fieldManager=controller"),
        status.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{object}");
    assert_eq!(object["status"]["readyReplicas"], 1);
    assert_eq!(object["spec"]["replicas"], 1);
    let entries = object["metadata"]["managedFields"].as_array().unwrap();
    let controller = entries
        .iter()
        .find(|e| e["manager"] == "controller")
        .unwrap();
    assert_eq!(controller["subresource"], "status");
    assert_eq!(
        controller["fieldsV1"],
        json!({"f:status": {"f:readyReplicas": {}, "f:replicas": {}}})
    );
    let ci = entries.iter().find(|e| e["manager"] == "ci").unwrap();
    assert_eq!(ci["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
}
