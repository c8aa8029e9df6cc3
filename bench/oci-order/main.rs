//! `oci-order`: records which functions of the `strata` binary the runc-compatible
//! entry point runs, and writes them, in first-run order, as a linker symbol ordering
//! file (`crates/strata/oci.order`).
//!
//! Why: `strata` is one large binary, and a short-lived `strata-runc create` touches
//! about a thousand of its ~75,000 functions. Scattered over a 50 MB `.text`, each one
//! makes the kernel map a 64 KiB block around it (fault-around), so most of the
//! runtime's peak RSS was code it never ran. Linked first and together, they fill
//! little more than their own size. See docs/benchmarks.md, "Where the memory goes".
//!
//! How: every function entry of the binary gets a breakpoint (`int3`) in the traced
//! process; the first hit of each is recorded and the original byte put back, so each
//! function traps once. Children the runtime forks (the container's init) are traced
//! too, until they exec the container's program. The container lifecycle that podman
//! and the benchmark drive is run this way: `create`, `state`, `start`, `state`,
//! `delete`, then `create`, `kill`, `delete --force`.
//!
//! Usage (as root): `oci-order --strata PATH --out FILE` records (on the lifecycle
//! benchmark's busybox bundle, `strata_bench::lifecycle_bundle`) and writes; `oci-order --strata PATH --check FILE` prints how many of the file's symbols
//! the binary still has (hashes in Rust symbol names change with the code and the
//! toolchain, so an old file slowly stops matching). `bench/oci-order.sh` does it all.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod symbols;
mod tracer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("oci-order: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The parsed command line.
struct Args {
    strata: PathBuf,
    out: Option<PathBuf>,
    check: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        strata: PathBuf::new(),
        out: None,
        check: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(PathBuf::from)
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--strata" => args.strata = value()?,
            "--out" => args.out = Some(value()?),
            "--check" => args.check = Some(value()?),
            other => bail!(
                "unknown argument {other:?} (usage: oci-order --strata PATH (--out FILE | --check FILE))"
            ),
        }
    }
    if args.strata.as_os_str().is_empty() {
        bail!("--strata PATH is required");
    }
    Ok(args)
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let strata = std::fs::canonicalize(&args.strata)
        .with_context(|| format!("strata binary {}", args.strata.display()))?;
    let functions = symbols::Functions::read(&strata)?;
    if let Some(order) = &args.check {
        let wanted = symbols::read_order_file(order)?;
        let found = wanted.iter().filter(|n| functions.has_name(n)).count();
        println!(
            "{} of {} ordered symbols are in {} ({}%)",
            found,
            wanted.len(),
            strata.display(),
            found * 100 / wanted.len().max(1)
        );
        return Ok(());
    }
    let Some(out) = &args.out else {
        bail!("give --out FILE to record, or --check FILE");
    };
    let hits = record_lifecycle(&strata, &functions)?;
    let names = functions.names_in_order(&hits);
    write_order_file(out, &strata, &names)?;
    println!(
        "{} functions ({} symbols, {} KiB of code) written to {}",
        hits.len(),
        names.len(),
        functions.total_size(&hits) / 1024,
        out.display()
    );
    Ok(())
}

/// Runs the lifecycle under the tracer and returns the function entries hit, in
/// first-hit order across all commands.
fn record_lifecycle(strata: &Path, functions: &symbols::Functions) -> anyhow::Result<Vec<u64>> {
    let work = tempfile::tempdir()?;
    // One level deep, so `delete` leaves no parent cgroup behind.
    let bundle = strata_bench::lifecycle_bundle(work.path(), "/strata-oci-order")?;
    let links = work.path().join("bin");
    std::fs::create_dir(&links)?;
    let runc = links.join("strata-runc");
    std::os::unix::fs::symlink(strata, &runc)?;
    let root = work.path().join("root");
    let root = root.to_string_lossy().into_owned();
    let bundle = bundle.to_string_lossy().into_owned();
    let id = format!("oci-order-{}", std::process::id());
    // (whether to wait for the container's process to exit first, the command)
    let steps: [(bool, &[&str]); 8] = [
        (false, &["create", "--bundle", &bundle, &id]),
        (false, &["state", &id]),
        (false, &["start", &id]),
        (false, &["state", &id]),
        (true, &["delete", &id]),
        (false, &["create", "--bundle", &bundle, &id]),
        (false, &["kill", &id, "KILL"]),
        (true, &["delete", "--force", &id]),
    ];
    let mut hits = Vec::new();
    let mut seen = HashSet::new();
    for (wait_for_exit, step) in steps {
        if wait_for_exit {
            wait_until_stopped(&runc, &root, &id)?;
        }
        let mut argv = vec!["--root", root.as_str()];
        argv.extend_from_slice(step);
        let outcome = tracer::trace(
            &runc,
            &argv,
            functions.entries(),
            functions.position_independent(),
        )
        .with_context(|| format!("tracing strata-runc {}", step.join(" ")))?;
        if !outcome.success {
            // Leave nothing behind, then say which step failed.
            let _ = std::process::Command::new(&runc)
                .args(["--root", &root, "delete", "--force", &id])
                .status();
            bail!("strata-runc {} failed under the tracer", step.join(" "));
        }
        hits.extend(outcome.entries_hit.into_iter().filter(|e| seen.insert(*e)));
    }
    Ok(hits)
}

/// Waits (up to 10 s) for the container's `/bin/true` to exit, so `delete` runs on a
/// stopped container as podman's would.
fn wait_until_stopped(runc: &Path, root: &str, id: &str) -> anyhow::Result<()> {
    for _ in 0..1000 {
        let output = std::process::Command::new(runc)
            .args(["--root", root, "state", id])
            .output()?;
        let state: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        if state["status"] != "running" && state["status"] != "created" {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    bail!("container {id} did not stop within 10 s")
}

fn write_order_file(out: &Path, strata: &Path, names: &[&str]) -> anyhow::Result<()> {
    let mut text = String::from(
        "# Functions the runc-compatible entry point (`strata-runc`) runs, in first-run order.\n\
         # The strata binary is linked with them first (crates/strata/build.rs), so a short-lived\n\
         # runtime process maps little more code than it runs. Generated by `make oci-order`\n\
         # (bench/oci-order.sh); do not edit. Symbols the binary no longer has are skipped.\n",
    );
    text.push_str(&format!(
        "# Recorded from {} ({} symbols).\n",
        strata
            .file_name()
            .map_or("strata".into(), |n| n.to_string_lossy()),
        names.len()
    ));
    for name in names {
        text.push_str(name);
        text.push('\n');
    }
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))
}
