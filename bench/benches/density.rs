#![allow(clippy::unwrap_used, missing_docs)]
//! Density: N sleeping pods on one `strata up` node (release build, demo images).
//!
//! - host memory per pod beyond the workloads: the growth of `strata up`'s PSS plus the
//!   PSS of every container monitor and their fork server, divided by N (PSS, so pages
//!   the processes share are counted once); and, as context, the growth of the kernel's
//!   slab (namespaces, mounts, cgroups, overlay inodes) per pod;
//! - exits while the agent is down: `strata up` is stopped, K containers are killed,
//!   `strata up` starts again, and every one of those exits must be reported (exit code
//!   137, restartCount 1).
//!
//! Run as root: `cargo build --release --bin strata && cargo bench -p strata-bench --bench
//! density [-- --pods 1000 --rate 20 --kill 10]`. `STRATA_BIN` overrides the binary.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

mod common;
use common::{Up, flag, sleeper, strata_bin, wait_until};

/// A /proc/meminfo figure in KiB.
fn meminfo_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn running_pods(api: &Api<Pod>) -> Vec<Pod> {
    api.list(&ListParams::default())
        .await
        .map(|list| {
            list.items
                .into_iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pods = flag(&args, "--pods", 1000);
    let rate = flag(&args, "--rate", 20).max(1);
    let kill = flag(&args, "--kill", 10).min(pods);
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP density benchmark: needs root");
        return;
    }
    let strata = strata_bin();
    assert!(
        strata.exists(),
        "build it first: cargo build --release --bin strata ({})",
        strata.display()
    );
    let max_pods = (pods + 10).to_string();
    let mut up = Up::start(&strata, &["--max-pods", &max_pods]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let kubeconfig = up.kubeconfig();
        wait_until("the kubeconfig", Duration::from_secs(60), async || kubeconfig.exists()).await;
        let client = strata_client::connect_file(&kubeconfig).await.unwrap();
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        wait_until("the node", Duration::from_secs(60), async || {
            nodes.get_opt("bench-node").await.ok().flatten().is_some()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (idle_pss, idle_rss, _, _) = up.memory();
        let idle_slab = meminfo_kib("Slab:");
        println!(
            "idle, 0 pods: strata up RSS {:.1} MiB, PSS {:.1} MiB",
            idle_rss as f64 / 1024.0,
            idle_pss as f64 / 1024.0
        );

        let api: Api<Pod> = Api::namespaced(client.clone(), "default");
        let gap = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now();
        for i in 0..pods {
            tokio::time::sleep_until((start + gap * i as u32).into()).await;
            api.create(&PostParams::default(), &sleeper(&format!("dense-{i:04}")))
                .await
                .unwrap();
        }
        wait_until("every pod to run", Duration::from_secs(1800), async || {
            running_pods(&api).await.len() >= pods
        })
        .await;
        println!("{pods} pods running {:.0} s after the first was created", start.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(20)).await;
        let (pss, rss, monitors_pss, monitors) = up.memory();
        let slab = meminfo_kib("Slab:");
        println!(
            "{pods} pods: strata up RSS {:.1} MiB, PSS {:.1} MiB; {monitors} monitor processes, PSS {:.1} MiB",
            rss as f64 / 1024.0,
            pss as f64 / 1024.0,
            monitors_pss as f64 / 1024.0
        );
        let per_pod = (pss.saturating_sub(idle_pss) + monitors_pss) as f64 / pods as f64;
        println!(
            "host memory per pod beyond the workload (user space, PSS): {per_pod:.0} KiB (goal < 1024)"
        );
        println!(
            "kernel slab growth per pod (namespaces, mounts, cgroups, inodes; machine-wide, noisy): {:.0} KiB",
            slab.saturating_sub(idle_slab) as f64 / pods as f64
        );

        // Exits while the agent is down are recorded by the monitors and reported later.
        up.stop();
        let ps = std::process::Command::new(&strata)
            .arg("--data-dir")
            .arg(up.data.path())
            .arg("ps")
            .output()
            .unwrap();
        let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
        let victims: Vec<(String, i32)> = ps
            .lines()
            .skip(1)
            .filter_map(|l| {
                let id = l.split_whitespace().next()?;
                let pid = l.split_whitespace().last()?.parse().ok()?;
                Some((id.to_string(), pid))
            })
            .take(kill)
            .collect();
        for (_, pid) in &victims {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL)
                .unwrap();
        }
        up.launch();
        let client = strata_client::connect_file(&up.kubeconfig()).await.unwrap();
        let api: Api<Pod> = Api::namespaced(client, "default");
        let reported = |pods: &[Pod]| {
            pods.iter()
                .filter(|p| {
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    victims.iter().any(|(id, _)| id.starts_with(&uid))
                        && p.status
                            .as_ref()
                            .and_then(|s| s.container_statuses.as_ref()?.first().cloned())
                            .is_some_and(|c| {
                                c.restart_count == 1
                                    && c.last_state
                                        .and_then(|s| s.terminated)
                                        .is_some_and(|t| t.exit_code == 137)
                            })
                })
                .count()
        };
        let t = Instant::now();
        wait_until("the exits while down to be reported", Duration::from_secs(600), async || {
            reported(&api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default())
                >= victims.len()
        })
        .await;
        println!(
            "{} of {} containers killed while strata up was down reported (exit 137, restartCount 1) {:.1} s after it came back",
            victims.len(),
            kill,
            t.elapsed().as_secs_f64()
        );

        api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("bench=startup"))
            .await
            .unwrap();
        wait_until("the pods to go", Duration::from_secs(1800), async || {
            api.list(&ListParams::default()).await.map(|l| l.items.is_empty()).unwrap_or(false)
        })
        .await;
    });
}
