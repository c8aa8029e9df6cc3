//! The endpoints controller against a real API server, the test playing the kubelet
//! (pod addresses and readiness): a service's Endpoints follow its pods' readiness,
//! labels and deletion, named target ports resolve per pod, services without a selector
//! keep the Endpoints their users wrote, and the Endpoints go with their Service.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cluster, eventually};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

async fn create_pod(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "x",
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

/// Waits until the Endpoints of `name` have these ready and not-ready IPs.
async fn expect(
    endpoints: &Api<Endpoints>,
    name: &str,
    ready: &[&str],
    not_ready: &[&str],
) -> Value {
    let ips = |subset: &Value, key: &str| -> Vec<String> {
        subset[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["ip"].as_str().unwrap().to_string())
            .collect()
    };
    eventually(
        &format!("endpoints {name}: ready {ready:?}, not ready {not_ready:?}"),
        || async {
            let found = serde_json::to_value(endpoints.get(name).await.ok()?).unwrap();
            let subsets = found["subsets"].as_array().cloned().unwrap_or_default();
            let got: Vec<String> = subsets.iter().flat_map(|s| ips(s, "addresses")).collect();
            let got_not: Vec<String> = subsets
                .iter()
                .flat_map(|s| ips(s, "notReadyAddresses"))
                .collect();
            (got == ready && got_not == not_ready).then_some(found)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_follow_the_pods_a_service_selects() {
    let cluster = cluster().await;
    let client = cluster.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    create_pod(&pods, "a", "10.42.0.5", true).await;
    create_pod(&pods, "b", "10.42.0.6", false).await;

    let found = expect(&endpoints, "web", &["10.42.0.5"], &["10.42.0.6"]).await;
    assert_eq!(
        found["subsets"][0]["ports"][0],
        json!({"name": "http", "port": 8080, "protocol": "TCP"})
    );
    assert_eq!(found["metadata"]["labels"]["tier"], "front");
    assert_eq!(
        found["subsets"][0]["addresses"][0]["targetRef"]["name"],
        "a"
    );

    // b turns ready; a stops matching the selector; a new pod c comes.
    set_ready(&pods, "b", "10.42.0.6", true).await;
    expect(&endpoints, "web", &["10.42.0.5", "10.42.0.6"], &[]).await;
    pods.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    expect(&endpoints, "web", &["10.42.0.6"], &[]).await;
    create_pod(&pods, "c", "10.42.0.7", true).await;
    expect(&endpoints, "web", &["10.42.0.6", "10.42.0.7"], &[]).await;
    // A pod being deleted leaves at once (grace period: the kubelet is not there).
    pods.delete("b", &DeleteParams::default()).await.unwrap();
    expect(&endpoints, "web", &["10.42.0.7"], &[]).await;

    // A hand-written change is put back.
    endpoints
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"subsets": null})),
        )
        .await
        .unwrap();
    expect(&endpoints, "web", &["10.42.0.7"], &[]).await;

    // A service without a selector keeps what its user wrote.
    let manual: Service = serde_json::from_value(json!({
        "metadata": {"name": "external"}, "spec": {"ports": [{"port": 5432}]}}))
    .unwrap();
    services
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();
    let written: Endpoints = serde_json::from_value(json!({"metadata": {"name": "external"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}]}))
    .unwrap();
    endpoints
        .create(&PostParams::default(), &written)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    expect(&endpoints, "external", &["192.0.2.10"], &[]).await;

    // The Endpoints go with their Service.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the endpoints of web to go", || async {
        endpoints
            .get_opt("web")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}
