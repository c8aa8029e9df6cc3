#![allow(clippy::unwrap_used)]
//! `discovery.k8s.io/v1` EndpointSlices through the in-process API server: listed by
//! discovery, created with Kubernetes' defaults, listed, printed as kubectl's table, and
//! refused with a 422 that names the invalid field.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use strata_testkit::cluster::TestApiServer;

fn slice(name: &str, address: &str, port: i32) -> EndpointSlice {
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": port}],
    }))
    .unwrap()
}

/// The causes of a 422: field and message each.
fn invalid(err: kube::Error) -> Vec<(String, String)> {
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{status:?}"
    );
    status
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| (c.field, c.message))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_slices_are_served_listed_printed_and_validated() {
    let server = TestApiServer::start().await;
    let client = server.admin_client().await;

    let resources = client
        .list_api_group_resources("discovery.k8s.io/v1")
        .await
        .unwrap();
    let served = resources
        .resources
        .iter()
        .find(|r| r.name == "endpointslices")
        .unwrap();
    assert_eq!(
        (served.kind.as_str(), served.namespaced),
        ("EndpointSlice", true)
    );

    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let created = api
        .create(
            &PostParams::default(),
            &slice("web-abcde", "10.42.0.5", 8080),
        )
        .await
        .unwrap();
    let port = &created.ports.as_ref().unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"), "defaulted");
    api.create(
        &PostParams::default(),
        &slice("web-fghij", "10.42.0.6", 8080),
    )
    .await
    .unwrap();
    let names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    // Beside the API server's own slice of the `kubernetes` Service.
    assert_eq!(names, ["kubernetes", "web-abcde", "web-fghij"]);

    // Server-side printing, as `kubectl get endpointslices` asks for it.
    let request = http::Request::get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: Value = client.request(request).await.unwrap();
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    );
    assert_eq!(
        table["rows"][1]["cells"].as_array().unwrap()[..4],
        [
            json!("web-abcde"),
            json!("IPv4"),
            json!("8080"),
            json!("10.42.0.5")
        ]
    );

    // Invalid slices are refused with the field that is wrong.
    let err = api
        .create(
            &PostParams::default(),
            &slice("web-bad1", "10.42.0.300", 8080),
        )
        .await
        .unwrap_err();
    assert_eq!(
        invalid(err),
        [(
            "endpoints[0].addresses[0]".to_string(),
            "Invalid value: \"10.42.0.300\": must be a valid IPv4 address".to_string()
        )]
    );
    let err = api
        .create(&PostParams::default(), &slice("web-bad2", "10.42.0.7", 0))
        .await
        .unwrap_err();
    assert_eq!(invalid(err)[0].0, "ports[0].port");
    let mut fqdn = slice("web-bad3", "10.42.0.7", 80);
    fqdn.address_type = "IPv5".into();
    let err = api.create(&PostParams::default(), &fqdn).await.unwrap_err();
    assert_eq!(invalid(err)[0].0, "addressType");
    assert_eq!(api.list(&Default::default()).await.unwrap().items.len(), 3);

    kubectl_lists_and_prints_them(&server);
}

/// `kubectl api-resources` lists the kind and `kubectl get endpointslices` prints the
/// table (skipped, with a SKIP line, without kubectl).
fn kubectl_lists_and_prints_them(server: &TestApiServer) {
    let kubectl = |args: &[&str]| {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(server.kubeconfig_path())
            .args(args)
            .output()
    };
    let Ok(out) = kubectl(&["api-resources", "--api-group=discovery.k8s.io"]) else {
        println!("SKIP kubectl part: kubectl is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.lines().any(|l| l.starts_with("endpointslices")
            && l.contains("discovery.k8s.io/v1")
            && l.contains("EndpointSlice")),
        "{text}"
    );
    let out = kubectl(&["get", "endpointslices", "-n", "default"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("web-abcde"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["web-abcde", "IPv4", "8080", "10.42.0.5"]);
}
