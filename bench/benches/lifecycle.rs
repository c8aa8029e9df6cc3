//! Container lifecycle benchmark: create → start → wait → delete of `/bin/true` from
//! one busybox bundle, for Strata's runc-compatible CLI, runc, crun, and Strata's
//! in-process library path (what the node agent uses). Runs are interleaved (the order
//! rotates each round) so machine noise hits every runtime alike; the figures that
//! matter are the ratios printed at the end.
//!
//! Run it through `bench/runtime-lifecycle.sh`, which hides this machine's cgroup2
//! `unified` mount in a private mount namespace so crun (which refuses the hybrid
//! layout) and the others all see plain cgroup v1.
//!
//! Arguments: `[--runs N] [--strata PATH]`; the hidden `rss-probe RUNTIME ROOT BUNDLE N`
//! mode runs N lifecycles and prints the peak RSS (KiB) of every process it waited for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_runtime::{ContainerId, CreateOptions, Runtime, wait_for_exit};

/// A way to run the lifecycle.
#[derive(Clone)]
enum Subject {
    /// A runc-compatible binary (the name printed, the program).
    Cli(String, PathBuf),
    /// Strata's library, in this process.
    Library,
}

impl Subject {
    fn name(&self) -> &str {
        match self {
            Subject::Cli(name, _) => name,
            Subject::Library => "strata (library)",
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP lifecycle benchmark: needs root");
        return;
    }
    // Container processes outlive their `create` command; as a subreaper this process
    // inherits them and can wait for their exit, whichever runtime made them.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    if args.first().map(String::as_str) == Some("rss-probe") {
        rss_probe(&args[1..]);
        return;
    }
    let runs: usize = flag(&args, "--runs").map_or(50, |v| v.parse().expect("--runs N"));
    let strata = flag(&args, "--strata")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            PathBuf::from(target).join("release/strata")
        });

    let work = tempfile::tempdir().unwrap();
    let bundle = strata_bench::lifecycle_bundle(work.path(), "/strata-bench/lifecycle").unwrap();
    let links = work.path().join("bin");
    std::fs::create_dir(&links).unwrap();
    let strata_runc = links.join("strata-runc");
    std::os::unix::fs::symlink(
        std::fs::canonicalize(&strata).expect("strata binary"),
        &strata_runc,
    )
    .unwrap();

    let mut subjects = vec![Subject::Cli("strata-runc".into(), strata_runc)];
    for peer in ["runc", "crun"] {
        match which(peer) {
            Some(path) => subjects.push(Subject::Cli(peer.into(), path)),
            None => println!("note: {peer} is not installed; it is left out"),
        }
    }
    subjects.push(Subject::Library);

    let roots: Vec<PathBuf> = (0..subjects.len())
        .map(|i| {
            let root = work.path().join(format!("root{i}"));
            std::fs::create_dir(&root).unwrap();
            root
        })
        .collect();
    let library = Runtime::open(work.path().join("library-root")).unwrap();

    // Warm-up: page cache, binaries, cgroup directories.
    for (subject, root) in subjects.iter().zip(&roots) {
        for _ in 0..3 {
            lifecycle(subject, root, &bundle, &library, "warmup");
        }
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); subjects.len()];
    for round in 0..runs {
        for k in 0..subjects.len() {
            let i = (round + k) % subjects.len();
            let id = format!("bench-{round}-{i}");
            times[i].push(lifecycle(&subjects[i], &roots[i], &bundle, &library, &id));
        }
    }

    let rss: Vec<Option<u64>> = subjects
        .iter()
        .zip(&roots)
        .map(|(subject, root)| match subject {
            Subject::Cli(_, program) => Some(peak_rss_kib(program, root, &bundle)),
            Subject::Library => None,
        })
        .collect();

    let medians: Vec<f64> = times.iter_mut().map(|t| percentile(t, 50.0)).collect();
    let crun = subjects.iter().position(|s| s.name() == "crun");
    println!();
    println!("lifecycle of /bin/true (create, start, wait, delete), {runs} interleaved runs each");
    println!(
        "{:<18} {:>10} {:>10} {:>12} {:>14} {:>10}",
        "runtime", "median ms", "p90 ms", "vs crun", "peak RSS MiB", "vs crun"
    );
    for (i, subject) in subjects.iter().enumerate() {
        let p90 = percentile(&mut times[i], 90.0);
        let ratio = crun.map_or("-".to_string(), |c| {
            format!("{:.2}x", medians[i] / medians[c])
        });
        let rss_text = rss[i].map_or("-".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
        let rss_ratio = match (crun.and_then(|c| rss[c]), rss[i]) {
            (Some(base), Some(mine)) => format!("{:.2}x", mine as f64 / base as f64),
            _ => "-".to_string(),
        };
        println!(
            "{:<18} {:>10.2} {:>10.2} {:>12} {:>14} {:>10}",
            subject.name(),
            medians[i],
            p90,
            ratio,
            rss_text,
            rss_ratio
        );
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// One create → start → wait → delete; returns its wall time.
fn lifecycle(
    subject: &Subject,
    root: &Path,
    bundle: &Path,
    library: &Runtime,
    id: &str,
) -> Duration {
    let started = Instant::now();
    match subject {
        Subject::Cli(_, program) => cli_lifecycle(program, root, bundle, id),
        Subject::Library => {
            let cid = ContainerId::new(id).unwrap();
            let state = library
                .create(&cid, bundle, CreateOptions::default())
                .unwrap();
            library.start(&cid).unwrap();
            wait_for_exit(state.pid).unwrap();
            library.delete(&cid, false).unwrap();
        }
    }
    started.elapsed()
}

fn cli_lifecycle(program: &Path, root: &Path, bundle: &Path, id: &str) {
    let pid_file = root.join(format!("{id}.pid"));
    let run = |args: &[&str]| {
        let status = Command::new(program)
            .arg("--root")
            .arg(root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        assert!(status.success(), "{} {args:?} failed", program.display());
    };
    run(&[
        "create",
        "--bundle",
        bundle.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        id,
    ]);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    run(&["start", id]);
    wait_for_exit(pid).unwrap();
    run(&["delete", id]);
    std::fs::remove_file(pid_file).unwrap();
}

/// Peak RSS of the runtime's processes, measured in a fresh child process so that
/// only that runtime's processes are counted.
fn peak_rss_kib(program: &Path, root: &Path, bundle: &Path) -> u64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("rss-probe")
        .arg(program)
        .arg(root)
        .arg(bundle)
        .arg("10")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rss-probe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn rss_probe(args: &[String]) {
    let program = PathBuf::from(&args[0]);
    let root = PathBuf::from(&args[1]);
    let bundle = PathBuf::from(&args[2]);
    let runs: usize = args[3].parse().unwrap();
    for i in 0..runs {
        cli_lifecycle(&program, &root, &bundle, &format!("rss-{i}"));
    }
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    println!("{}", usage.max_rss());
}

fn percentile(samples: &mut [Duration], pct: f64) -> f64 {
    samples.sort_unstable();
    let index = ((pct / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[index].as_secs_f64() * 1000.0
}
