#![allow(clippy::unwrap_used, missing_docs)]
//! Pods on a real `strata up` (release build, demo images, this machine as its node):
//!
//! - pod startup latency, create → Running, for N pods created at a steady rate (image
//!   present), p50 and p99, side by side with `podman run -d` of the same image (the bare
//!   container start a pod adds the control plane to);
//! - time until a Deployment of N replicas is fully available;
//! - memory: `strata up`'s RSS and PSS idle with 0 and with N pods, and the host memory
//!   per pod beyond the workloads (the growth of `strata up` plus every container
//!   monitor, by PSS, so the shared binary is not counted N times).
//!
//! Run as root: `cargo build --release --bin strata && cargo bench -p strata-bench --bench
//! pods [-- --pods 100 --rate 10]`. `STRATA_BIN` overrides the binary's path.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

mod common;
use common::{Up, flag, ms, percentile, sleeper, strata_bin, wait_until};

/// `podman run -d` latencies of the same image, in a private podman store.
fn podman_run_latencies(strata: &Path, image_source: &Path, count: usize) -> Option<Vec<Duration>> {
    if Command::new("podman").arg("--version").output().is_err() {
        println!("podman: not installed, no peer figures");
        return None;
    }
    let work = tempfile::Builder::new()
        .prefix("strata-bench-podman-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let tar = work.path().join("busybox.tar");
    let exported = Command::new(strata)
        .arg("--data-dir")
        .arg(image_source)
        .args(["image", "export", "localhost/busybox"])
        .arg(&tar)
        .status()
        .unwrap();
    assert!(exported.success());
    let podman = |args: &[&str]| {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(work.path().join("root"))
            .arg("--runroot")
            .arg(work.path().join("run"))
            .args(["--runtime", "crun", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let loaded = podman(&["load", "-q", "-i", tar.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(loaded.success(), "podman load");
    let mut latencies = Vec::new();
    for i in 0..count {
        let name = format!("bench-{i}");
        let t = Instant::now();
        let ran = podman(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
            "localhost/busybox",
            "sleep",
            "3600",
        ])
        .status()
        .unwrap();
        if !ran.success() {
            println!("podman run failed; no peer figures");
            break;
        }
        latencies.push(t.elapsed());
    }
    let _ = podman(&["rm", "-af", "-t", "0"]).status();
    let _ = podman(&["system", "reset", "-f"]).status();
    (!latencies.is_empty()).then_some(latencies)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pods = flag(&args, "--pods", 100);
    let rate = flag(&args, "--rate", 10).max(1);
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP pods benchmark: needs root");
        return;
    }
    // crun (podman's runtime) refuses this machine's v1/v2 hybrid layout: both peers run
    // in a private mount namespace with an empty tmpfs over the cgroup2 mount (plain v1).
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();
    if Path::new("/sys/fs/cgroup/unified").is_dir() {
        nix::mount::mount(
            Some("none"),
            "/sys/fs/cgroup/unified",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=4m"),
        )
        .unwrap();
    }
    let strata = strata_bin();
    assert!(
        strata.exists(),
        "build it first: cargo build --release --bin strata ({})",
        strata.display()
    );
    let up = Up::start(&strata, &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (startup, deployment_time) = runtime.block_on(async {
        let kubeconfig = up.kubeconfig();
        wait_until("the kubeconfig", Duration::from_secs(60), async || {
            kubeconfig.exists()
        })
        .await;
        let client = strata_client::connect_file(&kubeconfig).await.unwrap();
        let node_api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        wait_until("the node", Duration::from_secs(60), async || {
            node_api.get_opt("bench-node").await.ok().flatten().is_some()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (pss, rss, _, _) = up.memory();
        println!("idle, 0 pods: strata up RSS {:.1} MiB, PSS {:.1} MiB", rss as f64 / 1024.0, pss as f64 / 1024.0);
        let idle_pss = pss;

        // Startup latency: create at a steady rate, watch for Running.
        let api: Api<Pod> = Api::namespaced(client.clone(), "default");
        let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let observer = {
            let (running, api) = (running.clone(), api.clone());
            tokio::spawn(async move {
                let mut events = watcher::watcher(api, watcher::Config::default())
                    .default_backoff()
                    .applied_objects()
                    .boxed();
                while let Ok(Some(pod)) = events.try_next().await {
                    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                    if phase == Some("Running") {
                        let now = Instant::now();
                        running
                            .lock()
                            .unwrap()
                            .entry(pod.metadata.name.unwrap_or_default())
                            .or_insert(now);
                    }
                }
            })
        };
        let mut created = HashMap::new();
        let gap = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now();
        for i in 0..pods {
            let name = format!("startup-{i:04}");
            let due = start + gap * i as u32;
            tokio::time::sleep_until(due.into()).await;
            let t = Instant::now();
            api.create(&PostParams::default(), &sleeper(&name)).await.unwrap();
            created.insert(name, t);
        }
        wait_until("every pod to run", Duration::from_secs(600), async || {
            running.lock().unwrap().len() >= pods
        })
        .await;
        observer.abort();
        let mut startup: Vec<Duration> = {
            let running = running.lock().unwrap();
            created
                .iter()
                .filter_map(|(name, t)| Some(running.get(name)?.duration_since(*t)))
                .collect()
        };
        startup.sort();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (pss, rss, monitors_pss, monitors) = up.memory();
        println!(
            "idle, {pods} pods: strata up RSS {:.1} MiB, PSS {:.1} MiB; {monitors} monitors, PSS {:.1} MiB",
            rss as f64 / 1024.0,
            pss as f64 / 1024.0,
            monitors_pss as f64 / 1024.0
        );
        let per_pod = (pss.saturating_sub(idle_pss) + monitors_pss) as f64 / pods as f64;
        println!("host memory per pod beyond the workload: {:.0} KiB (goal < 1024)", per_pod);

        // A Deployment of N replicas, after the pods are gone.
        api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("bench=startup"))
            .await
            .unwrap();
        wait_until("the startup pods to go", Duration::from_secs(300), async || {
            api.list(&ListParams::default()).await.map(|l| l.items.is_empty()).unwrap_or(false)
        })
        .await;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let mut deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bench"},
            "spec": {
                "replicas": pods,
                "selector": {"matchLabels": {"app": "bench"}},
                "template": {"metadata": {"labels": {"app": "bench"}}, "spec": sleeper("x").spec}
            }
        }))
        .unwrap();
        deployment.metadata.namespace = Some("default".into());
        let t = Instant::now();
        deployments.create(&PostParams::default(), &deployment).await.unwrap();
        wait_until("the deployment to be available", Duration::from_secs(600), async || {
            deployments
                .get("bench")
                .await
                .ok()
                .and_then(|d| d.status?.available_replicas)
                == Some(pods as i32)
        })
        .await;
        let deployment_time = t.elapsed();
        let _ = deployments.delete("bench", &DeleteParams::foreground()).await;
        wait_until("the deployment's pods to go", Duration::from_secs(300), async || {
            api.list(&ListParams::default()).await.map(|l| l.items.is_empty()).unwrap_or(false)
        })
        .await;
        (startup, deployment_time)
    });
    let peer = podman_run_latencies(&strata, up.data.path(), pods);
    println!();
    println!("| what | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: |");
    println!(
        "| strata pod create → Running ({pods} pods, {rate}/s) | {:.0} | {:.0} |",
        ms(percentile(&startup, 0.5)),
        ms(percentile(&startup, 0.99))
    );
    if let Some(mut peer) = peer {
        peer.sort();
        println!(
            "| podman run -d (crun) | {:.0} | {:.0} |",
            ms(percentile(&peer, 0.5)),
            ms(percentile(&peer, 0.99))
        );
        println!(
            "strata pod / podman run: p50 {:.2}x, p99 {:.2}x",
            percentile(&startup, 0.5).as_secs_f64() / percentile(&peer, 0.5).as_secs_f64(),
            percentile(&startup, 0.99).as_secs_f64() / percentile(&peer, 0.99).as_secs_f64()
        );
    }
    println!(
        "Deployment of {pods} replicas fully available in {:.1} s",
        deployment_time.as_secs_f64()
    );
}
