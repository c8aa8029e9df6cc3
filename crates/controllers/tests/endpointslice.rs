//! The EndpointSlice controller against a real API server, the test playing the kubelet
//! (pod addresses and readiness): a service's slice appears with an endpoint per pod,
//! its conditions and resolved ports, follows readiness, labels and (graceful) deletion,
//! a hand-written change is put back, services without a selector get no slice, and the
//! slice goes with its Service.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cluster, eventually};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

async fn create_pod(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
                 "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    set_ready(pods, name, ip, ready).await;
}

async fn set_ready(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

/// The slices of service `name`.
async fn slices_of(slices: &Api<EndpointSlice>, name: &str) -> Vec<Value> {
    let selector = format!("kubernetes.io/service-name={name}");
    slices
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| serde_json::to_value(s).unwrap())
        .collect()
}

/// An endpoint as `(address, ready, serving, terminating)`.
type Seen = (String, bool, bool, bool);

fn seen(endpoint: &Value) -> Seen {
    let c = &endpoint["conditions"];
    (
        endpoint["addresses"][0].as_str().unwrap().to_string(),
        c["ready"] == true,
        c["serving"] == true,
        c["terminating"] == true,
    )
}

/// Waits until service `name` has exactly one slice with these endpoints; returns it.
async fn expect(
    slices: &Api<EndpointSlice>,
    name: &str,
    want: &[(&str, bool, bool, bool)],
) -> Value {
    let want: Vec<Seen> = want
        .iter()
        .map(|(ip, r, s, t)| (ip.to_string(), *r, *s, *t))
        .collect();
    eventually(&format!("the slice of {name} to hold {want:?}"), || async {
        let found = slices_of(slices, name).await;
        let [slice] = &found[..] else {
            return None;
        };
        let got: Vec<Seen> = slice["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(seen)
            .collect();
        (got == want).then(|| slice.clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_slices_follow_the_pods_a_service_selects() {
    let cluster = cluster().await;
    let client = cluster.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))
    .unwrap();
    let service = services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();

    // Before any pod, an empty placeholder slice.
    let placeholder = expect(&slices, "web", &[]).await;
    let name = placeholder["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let suffix = name.strip_prefix("web-").unwrap();
    assert_eq!(suffix.len(), 5, "{name}");

    create_pod(&pods, "a", "10.42.0.5", true).await;
    create_pod(&pods, "b", "10.42.0.6", false).await;
    let slice = expect(
        &slices,
        "web",
        &[
            ("10.42.0.5", true, true, false),
            ("10.42.0.6", false, false, false),
        ],
    )
    .await;
    assert_eq!(
        slice["metadata"]["name"],
        name.as_str(),
        "the placeholder is reused"
    );
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    let labels = &slice["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/service-name"], "web");
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(labels["tier"], "front");
    let owner = &slice["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            &owner["kind"],
            &owner["uid"],
            &owner["controller"],
            &owner["blockOwnerDeletion"]
        ),
        (
            &json!("Service"),
            &json!(service.metadata.uid.unwrap()),
            &json!(true),
            &json!(true)
        )
    );
    let endpoint = &slice["endpoints"][0];
    assert_eq!(endpoint["nodeName"], "n1");
    assert_eq!(endpoint["targetRef"]["kind"], "Pod");
    assert_eq!(endpoint["targetRef"]["name"], "a");

    // b turns ready; a stops matching the selector.
    set_ready(&pods, "b", "10.42.0.6", true).await;
    expect(
        &slices,
        "web",
        &[
            ("10.42.0.5", true, true, false),
            ("10.42.0.6", true, true, false),
        ],
    )
    .await;
    pods.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    expect(&slices, "web", &[("10.42.0.6", true, true, false)]).await;

    // A pod being deleted (gracefully: it is bound to a node) stays, terminating and not
    // ready but still serving; once it is gone, it leaves.
    pods.delete("b", &DeleteParams::default()).await.unwrap();
    expect(&slices, "web", &[("10.42.0.6", false, true, true)]).await;
    pods.delete("b", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    expect(&slices, "web", &[]).await;

    // A hand-written change is put back.
    create_pod(&pods, "c", "10.42.0.7", true).await;
    expect(&slices, "web", &[("10.42.0.7", true, true, false)]).await;
    slices
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"endpoints": []})),
        )
        .await
        .unwrap();
    let slice = expect(&slices, "web", &[("10.42.0.7", true, true, false)]).await;
    assert_eq!(slice["metadata"]["name"], name.as_str());

    // A service without a selector gets no slice from the controller.
    let manual: Service = serde_json::from_value(json!({
        "metadata": {"name": "external"}, "spec": {"ports": [{"port": 5432}]}}))
    .unwrap();
    services
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();

    // The slice goes with its Service.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the slices of web to go", || async {
        slices_of(&slices, "web").await.is_empty().then_some(())
    })
    .await;
    assert!(slices_of(&slices, "external").await.is_empty());
}
