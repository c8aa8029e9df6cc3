#![allow(clippy::unwrap_used)]
//! Service cluster IPs and node ports through the in-process API server and kube-rs:
//! allocated in range and never twice (concurrently, and across a restart), explicit
//! requests checked with Kubernetes' 422s, freed on delete, immutable on update, and
//! untouched by dry runs.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use strata_testkit::cluster::TestApiServer;

fn service(name: &str, spec: Value) -> Service {
    let mut spec = spec;
    if spec["ports"].is_null() {
        spec["ports"] = json!([{"port": 80}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn cluster_ip(service: &Service) -> String {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.clone())
        .unwrap_or_default()
}

fn node_ports(service: &Service) -> Vec<Option<i32>> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .iter()
        .map(|p| p.node_port)
        .collect()
}

/// The one cause of a 422: its field and message.
fn invalid(err: kube::Error) -> (String, String) {
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{status:?}"
    );
    let causes = status.details.unwrap().causes;
    assert_eq!(causes.len(), 1, "{causes:?}");
    (causes[0].field.clone(), causes[0].message.clone())
}

fn in_service_cidr(ip: &str) -> bool {
    let ip: Ipv4Addr = ip.parse().unwrap();
    let [a, b, c, d] = ip.octets();
    // 10.43.0.0/16, above the reserved low band, not the broadcast address.
    (a, b) == (10, 43) && (c, d) >= (0, 16) && (c, d) != (255, 255)
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_ips_are_allocated_in_range_and_explicit_ones_are_checked() {
    let server = TestApiServer::start().await;
    let api: Api<Service> = Api::namespaced(server.admin_client().await, "default");
    let pp = PostParams::default();

    let a = api.create(&pp, &service("a", json!({}))).await.unwrap();
    let b = api.create(&pp, &service("b", json!({}))).await.unwrap();
    assert!(in_service_cidr(&cluster_ip(&a)), "{}", cluster_ip(&a));
    assert!(in_service_cidr(&cluster_ip(&b)), "{}", cluster_ip(&b));
    assert_ne!(cluster_ip(&a), cluster_ip(&b));
    let spec = a.spec.clone().unwrap();
    assert_eq!(spec.cluster_ips, Some(vec![cluster_ip(&a)]));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    // What a get returns is what the create answered.
    assert_eq!(cluster_ip(&api.get("a").await.unwrap()), cluster_ip(&a));

    // Cluster DNS's address is free for whoever asks for it by name.
    let dns = api
        .create(&pp, &service("dns", json!({"clusterIP": "10.43.0.10"})))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&dns), "10.43.0.10");

    let taken = api
        .create(&pp, &service("taken", json!({"clusterIP": cluster_ip(&a)})))
        .await
        .unwrap_err();
    let (field, message) = invalid(taken);
    assert_eq!(field, "spec.clusterIPs");
    assert!(
        message.ends_with(&format!(
            "failed to allocate IP {}: provided IP is already allocated",
            cluster_ip(&a)
        )),
        "{message}"
    );

    let outside = api
        .create(&pp, &service("outside", json!({"clusterIP": "10.96.0.1"})))
        .await
        .unwrap_err();
    let (field, message) = invalid(outside);
    assert_eq!(field, "spec.clusterIPs");
    assert!(
        message.ends_with(
            "the provided IP (10.96.0.1) is not in the valid range. The range of valid IPs is 10.43.0.0/16"
        ),
        "{message}"
    );

    let headless = api
        .create(&pp, &service("headless", json!({"clusterIP": "None"})))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&headless), "None");
    let external = api
        .create(
            &pp,
            &service(
                "external",
                json!({"type": "ExternalName", "externalName": "example.com", "ports": []}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(cluster_ip(&external), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn node_ports_are_allocated_in_range_and_never_twice() {
    let server = TestApiServer::start().await;
    let api: Api<Service> = Api::namespaced(server.admin_client().await, "default");
    let pp = PostParams::default();

    let web = api
        .create(&pp, &service("web", json!({"type": "NodePort"})))
        .await
        .unwrap();
    let [Some(port)] = node_ports(&web)[..] else {
        panic!("no node port: {web:?}");
    };
    assert!((30000..=32767).contains(&port), "{port}");

    let lb = api
        .create(
            &pp,
            &service(
                "lb",
                json!({"type": "LoadBalancer", "ports": [{"port": 443, "nodePort": 30443}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(node_ports(&lb), [Some(30443)]);

    let twice = api
        .create(
            &pp,
            &service(
                "twice",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30443}]}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(
        invalid(twice),
        (
            "spec.ports[0].nodePort".to_string(),
            "Invalid value: 30443: provided port is already allocated".to_string()
        )
    );

    let outside = api
        .create(
            &pp,
            &service(
                "outside",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]}),
            ),
        )
        .await
        .unwrap_err();
    let (field, message) = invalid(outside);
    assert_eq!(field, "spec.ports[0].nodePort");
    assert!(
        message.ends_with("The range of valid ports is 30000-32767"),
        "{message}"
    );

    let cluster_ip_type = api
        .create(
            &pp,
            &service("plain", json!({"ports": [{"port": 80, "nodePort": 30081}]})),
        )
        .await
        .unwrap_err();
    let (field, message) = invalid(cluster_ip_type);
    assert_eq!(field, "spec.ports[0].nodePort");
    assert_eq!(
        message,
        "Forbidden: may not be used when `type` is 'ClusterIP'"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_frees_the_ip_and_node_ports() {
    let server = TestApiServer::start().await;
    let client = server.admin_client().await;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let pinned = || {
        service(
            "pinned",
            json!({"type": "NodePort", "clusterIP": "10.43.100.100",
                   "ports": [{"port": 80, "nodePort": 30100}]}),
        )
    };

    api.create(&pp, &pinned()).await.unwrap();
    api.delete("pinned", &DeleteParams::default())
        .await
        .unwrap();
    let again = api.create(&pp, &pinned()).await.unwrap();
    assert_eq!(cluster_ip(&again), "10.43.100.100");
    assert_eq!(node_ports(&again), [Some(30100)]);

    // deletecollection frees them too.
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    let mut renamed = pinned();
    renamed.metadata.name = Some("renamed".into());
    api.create(&pp, &renamed).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_keep_the_cluster_ip_and_follow_the_type() {
    let server = TestApiServer::start().await;
    let api: Api<Service> = Api::namespaced(server.admin_client().await, "default");
    let pp = PostParams::default();
    let web = api.create(&pp, &service("web", json!({}))).await.unwrap();
    let ip = cluster_ip(&web);

    // A changed clusterIP is refused as Kubernetes refuses it.
    let mut moved = web.clone();
    moved.spec.as_mut().unwrap().cluster_ip = Some("10.43.200.200".into());
    moved.spec.as_mut().unwrap().cluster_ips = None;
    let (field, message) = invalid(api.replace("web", &pp, &moved).await.unwrap_err());
    assert_eq!(field, "spec.clusterIPs[0]");
    assert!(message.ends_with("may not change once set"), "{message}");

    // A replace that leaves the allocated fields out keeps them.
    let mut bare = service("web", json!({}));
    bare.metadata.resource_version = web.metadata.resource_version.clone();
    let kept = api.replace("web", &pp, &bare).await.unwrap();
    assert_eq!(cluster_ip(&kept), ip);

    // ClusterIP -> NodePort gets a node port; back to ClusterIP gives it up.
    let patch = |kind: &str| Patch::Merge(json!({"spec": {"type": kind}}));
    let node_port = api
        .patch("web", &PatchParams::default(), &patch("NodePort"))
        .await
        .unwrap();
    let [Some(port)] = node_ports(&node_port)[..] else {
        panic!("no node port: {node_port:?}");
    };
    assert_eq!(cluster_ip(&node_port), ip);
    let back = api
        .patch("web", &PatchParams::default(), &patch("ClusterIP"))
        .await
        .unwrap();
    assert_eq!(node_ports(&back), [None]);
    let reuse = service(
        "reuse",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}),
    );
    api.create(&pp, &reuse).await.unwrap();

    // -> ExternalName gives up the cluster IP.
    let external =
        Patch::Merge(json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
    let gone = api
        .patch("web", &PatchParams::default(), &external)
        .await
        .unwrap();
    assert_eq!(cluster_ip(&gone), "");
    let takeover = service("takeover", json!({"clusterIP": ip}));
    api.create(&pp, &takeover).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_allocates_nothing() {
    let server = TestApiServer::start().await;
    let api: Api<Service> = Api::namespaced(server.admin_client().await, "default");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pinned = service(
        "pinned",
        json!({"type": "NodePort", "clusterIP": "10.43.9.9",
               "ports": [{"port": 80, "nodePort": 30999}]}),
    );
    let answered = api.create(&dry, &pinned).await.unwrap();
    assert_eq!(cluster_ip(&answered), "10.43.9.9");
    let dynamic = api
        .create(&dry, &service("dynamic", json!({})))
        .await
        .unwrap();
    assert!(in_service_cidr(&cluster_ip(&dynamic)));
    // Nothing but the API server's own `kubernetes` Service.
    let names: Vec<_> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert_eq!(names, ["kubernetes"]);
    api.create(&PostParams::default(), &pinned).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_get_distinct_ips() {
    let server = TestApiServer::start().await;
    let api: Api<Service> = Api::namespaced(server.admin_client().await, "default");
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..24 {
        let api = api.clone();
        creates.spawn(async move {
            let svc = service(&format!("s{i}"), json!({"type": "NodePort"}));
            api.create(&PostParams::default(), &svc).await.unwrap()
        });
    }
    let created = creates.join_all().await;
    let ips: BTreeSet<String> = created.iter().map(cluster_ip).collect();
    let ports: BTreeSet<Option<i32>> = created.iter().flat_map(node_ports).collect();
    assert_eq!((ips.len(), ports.len()), (24, 24));
}

#[tokio::test(flavor = "multi_thread")]
async fn allocations_survive_a_restart() {
    let mut server = TestApiServer::start().await;
    let pp = PostParams::default();
    let api: Api<Service> = Api::namespaced(server.admin_client().await, "default");
    let mut held = BTreeSet::new();
    for i in 0..5 {
        let svc = api
            .create(&pp, &service(&format!("s{i}"), json!({"type": "NodePort"})))
            .await
            .unwrap();
        held.insert(cluster_ip(&svc));
    }
    let first = api.get("s0").await.unwrap();
    drop(api);

    server.restart().await;
    let api: Api<Service> = Api::namespaced(server.admin_client().await, "default");
    let (field, _) = invalid(
        api.create(
            &pp,
            &service("copy", json!({"clusterIP": cluster_ip(&first)})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(field, "spec.clusterIPs");
    let port = node_ports(&first)[0].unwrap();
    let (field, _) = invalid(
        api.create(
            &pp,
            &service(
                "copy",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(field, "spec.ports[0].nodePort");
    for i in 0..5 {
        let svc = api
            .create(&pp, &service(&format!("new{i}"), json!({})))
            .await
            .unwrap();
        assert!(
            held.insert(cluster_ip(&svc)),
            "{} handed out twice",
            cluster_ip(&svc)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubernetes_service_holds_the_first_address_and_survives_restarts() {
    let mut server = TestApiServer::start().await;
    let client = server.admin_client().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let kubernetes = services.get("kubernetes").await.unwrap();
    assert_eq!(cluster_ip(&kubernetes), "10.43.0.1");
    let port = &kubernetes.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("https"), 443));
    let api_port: i32 = server.url().rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(api_port))
    );
    // Its address is taken: nobody else gets it.
    let error = services
        .create(
            &PostParams::default(),
            &service("squatter", json!({"clusterIP": "10.43.0.1"})),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("already allocated"), "{error}");
    // Loopback is out of pods' reach: the Endpoints name no address.
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(client, "default");
    let subsets = endpoints.get("kubernetes").await.unwrap().subsets;
    assert!(subsets.unwrap_or_default().is_empty());
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(server.admin_client().await, "default");
    let slice = slices.get("kubernetes").await.unwrap();
    assert_eq!(
        slice
            .metadata
            .labels
            .unwrap_or_default()
            .get("kubernetes.io/service-name")
            .map(String::as_str),
        Some("kubernetes")
    );
    assert!(slice.endpoints.is_empty());
    assert_eq!(slice.ports.unwrap_or_default()[0].port, Some(api_port));
    // Deleted, it comes back on the next start.
    services
        .delete("kubernetes", &DeleteParams::default())
        .await
        .unwrap();
    server.restart().await;
    let services: Api<Service> = Api::namespaced(server.admin_client().await, "default");
    assert_eq!(
        cluster_ip(&services.get("kubernetes").await.unwrap()),
        "10.43.0.1"
    );
}
