//! Host-gw routes on a real kernel (as root), inside a network namespace the test makes:
//! a route through an address on an attached link is installed with Strata's protocol,
//! found again by a new `NodeRoutes`, replaced and removed; a gateway that is not on an
//! attached network is refused.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;

use strata_net::routes::NodeRoutes;
use strata_testkit::netns::TestNetns;

fn ip_routes(netns: &TestNetns) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.path().display()))
        .args(["ip", "route"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn routes_to_other_nodes_are_installed_found_again_and_removed() {
    if !strata_testkit::require_root("routes_to_other_nodes_are_installed_found_again_and_removed")
    {
        return;
    }
    let netns = TestNetns::new();
    for args in [
        vec![
            "link", "add", "link0", "type", "veth", "peer", "name", "link1",
        ],
        vec!["addr", "add", "192.168.77.1/24", "dev", "link0"],
        vec!["link", "set", "link0", "up"],
        vec!["link", "set", "link1", "up"],
    ] {
        let status = Command::new("nsenter")
            .arg(format!("--net={}", netns.path().display()))
            .arg("ip")
            .args(&args)
            .status()
            .unwrap();
        assert!(status.success(), "ip {args:?}");
    }
    let result = netns.run(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut routes = NodeRoutes::open().await.unwrap();
            assert!(routes.installed().is_empty());
            let wanted = BTreeMap::from([(
                "10.99.1.0/24".parse().unwrap(),
                "192.168.77.2".parse().unwrap(),
            )]);
            routes.sync(&wanted).await.unwrap();
            let after_add = routes.installed().clone();
            // A fresh start finds what the last run installed.
            let again = NodeRoutes::open().await.unwrap();
            let found = again.installed().clone();
            // A gateway beyond the attached networks is refused, the rest still done.
            let unreachable = BTreeMap::from([
                (
                    "10.99.1.0/24".parse().unwrap(),
                    "192.168.77.3".parse().unwrap(),
                ),
                (
                    "10.99.2.0/24".parse().unwrap(),
                    "203.0.113.9".parse().unwrap(),
                ),
            ]);
            let refused = routes.sync(&unreachable).await;
            let after_move = routes.installed().clone();
            (after_add, found, refused.is_err(), after_move, routes)
        })
    });
    let (after_add, found, refused, after_move, _routes) = result;
    assert_eq!(after_add, found);
    assert_eq!(after_add.len(), 1);
    assert!(
        refused,
        "a gateway off the attached networks must be refused"
    );
    assert_eq!(
        after_move,
        BTreeMap::from([(
            "10.99.1.0/24".parse().unwrap(),
            "192.168.77.3".parse().unwrap()
        )])
    );
    let table = ip_routes(&netns);
    assert!(
        table.contains("10.99.1.0/24 via 192.168.77.3 dev link0 proto 83"),
        "{table}"
    );
    assert!(!table.contains("10.99.2.0"), "{table}");
    assert!(!table.contains("203.0.113.9"), "{table}");
}
