#![allow(clippy::unwrap_used)]

use serde_json::json;
use strata_store::SqliteStore;

use super::*;

fn services() -> &'static Resource {
    strata_api::resources::find("", "v1", "services").unwrap()
}

fn allocator() -> ServiceAllocator {
    ServiceAllocator::new(ServiceCidr::default(), NodePortRange::default())
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

fn node_port_service(name: &str) -> Value {
    service(
        name,
        json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}),
    )
}

fn conflict() -> Result<(), StoreError> {
    Err(StoreError::Conflict {
        key: "k".into(),
        expected: 1,
        current: 2,
    })
}

#[test]
fn other_resources_pass_untouched() {
    let allocator = allocator();
    let pods = strata_api::resources::find("", "v1", "pods").unwrap();
    let mut pod = json!({"spec": {"clusterIP": "bogus"}});
    let before = pod.clone();
    allocator
        .reserve(pods, None, &mut pod, false)
        .unwrap()
        .commit();
    assert_eq!(pod, before);
    assert_eq!(allocator.in_use(), (0, 0));
}

#[test]
fn a_dry_run_fills_in_but_keeps_nothing() {
    let allocator = allocator();
    let mut svc = node_port_service("web");
    allocator
        .reserve(services(), None, &mut svc, true)
        .unwrap()
        .commit();
    assert_eq!(svc["spec"]["clusterIP"], "10.43.0.16");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30000);
    assert_eq!(allocator.in_use(), (0, 0));
}

#[test]
fn a_refused_write_gives_back_and_an_unknown_one_keeps() {
    let allocator = allocator();
    let mut svc = node_port_service("web");
    let reservation = allocator
        .reserve(services(), None, &mut svc, false)
        .unwrap();
    assert_eq!(allocator.in_use(), (1, 1));
    reservation.settle(&conflict());
    assert_eq!(allocator.in_use(), (0, 0));

    let reservation = allocator
        .reserve(services(), None, &mut svc, false)
        .unwrap();
    reservation.settle(&Err::<(), _>(StoreError::WriterStopped { key: "k".into() }));
    assert_eq!(allocator.in_use(), (1, 1));
}

#[test]
fn a_committed_update_frees_what_the_old_version_held() {
    let allocator = allocator();
    let mut old = node_port_service("web");
    allocator
        .reserve(services(), None, &mut old, false)
        .unwrap()
        .settle(&Ok(()));
    let mut new = old.clone();
    new["spec"]["type"] = json!("ClusterIP");
    let reservation = allocator
        .reserve(services(), Some(&old), &mut new, false)
        .unwrap();
    assert!(new["spec"]["ports"][0]["nodePort"].is_null());
    // Until the update is stored, the old node port stays taken.
    assert_eq!(allocator.in_use(), (1, 1));
    reservation.settle(&Ok(()));
    assert_eq!(allocator.in_use(), (1, 0));
    allocator.release(services(), &new);
    assert_eq!(allocator.in_use(), (0, 0));
}

#[test]
fn errors_are_422_naming_the_service_and_field() {
    let allocator = allocator();
    let mut svc = service(
        "web",
        json!({"type": "ClusterIP", "clusterIP": "10.44.0.1", "ports": [{"port": 80}]}),
    );
    let err = allocator
        .reserve(services(), None, &mut svc, false)
        .unwrap_err();
    let ApiError::Invalid {
        kind, name, causes, ..
    } = err
    else {
        panic!("not Invalid: {err:?}");
    };
    assert_eq!((kind.as_str(), name.as_str()), ("Service", "web"));
    assert_eq!(causes[0].field, "spec.clusterIPs");
}

#[tokio::test(flavor = "multi_thread")]
async fn load_marks_what_stored_services_hold() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("state.db")).unwrap();
    let first = allocator();
    // More Services than one load page.
    for i in 0..(LOAD_PAGE + 3) {
        let mut svc = node_port_service(&format!("web-{i}"));
        first
            .reserve(services(), None, &mut svc, false)
            .unwrap()
            .commit();
        let key = storage::key(services(), Some("default"), &format!("web-{i}"));
        store.create(&key, storage::encode(&svc)).await.unwrap();
    }
    let loaded = ServiceAllocator::load(&store, ServiceCidr::default(), NodePortRange::default())
        .await
        .unwrap();
    assert_eq!(loaded.in_use(), first.in_use());
    assert_eq!(loaded.in_use(), (503, 503));
    // What the loaded allocator hands out next is free.
    let mut next = node_port_service("next");
    loaded
        .reserve(services(), None, &mut next, false)
        .unwrap()
        .commit();
    assert_eq!(next["spec"]["clusterIP"], "10.43.2.7");
}
