//! `oci-order` records what the debug `strata` binary runs over a real container
//! lifecycle (as root, on the benchmark's busybox bundle), and `--check` reads the file
//! back against that binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The debug `strata` binary next to `oci-order` (`make test` builds it first).
fn strata_binary() -> PathBuf {
    let tool = Path::new(env!("CARGO_BIN_EXE_oci-order"));
    let strata = tool.with_file_name("strata");
    assert!(
        strata.is_file(),
        "{} is missing: build it first (cargo build --bin strata)",
        strata.display()
    );
    strata
}

#[test]
fn records_the_functions_a_container_lifecycle_runs_in_first_run_order() {
    if !strata_testkit::require_root("records_the_functions_a_container_lifecycle_runs") {
        return;
    }
    let strata = strata_binary();
    let work = tempfile::tempdir().unwrap();
    let order = work.path().join("oci.order");

    let output = Command::new(env!("CARGO_BIN_EXE_oci-order"))
        .arg("--strata")
        .arg(&strata)
        .arg("--out")
        .arg(&order)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "oci-order failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let text = std::fs::read_to_string(&order).unwrap();
    assert!(text.starts_with("# "), "the file explains itself");
    let names: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    // The process entry runs first; the OCI command line, the runtime library and
    // youki's libcontainer all ran (legacy-mangled paths: <len><ident>…).
    let main = names
        .iter()
        .position(|n| *n == "main")
        .expect("main was run");
    assert!(main < 10, "main is among the first functions run: {main}");
    for path in [
        "6strata3oci",
        "14strata_runtime",
        "12libcontainer",
        "10libcgroups",
    ] {
        assert!(
            names.iter().any(|n| n.contains(path)),
            "no function of {path} was recorded"
        );
    }
    // Functions of other commands (the API server, say) never ran.
    assert!(!names.iter().any(|n| n.contains("16strata_apiserver")));

    let check = Command::new(env!("CARGO_BIN_EXE_oci-order"))
        .arg("--strata")
        .arg(&strata)
        .arg("--check")
        .arg(&order)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        stdout.starts_with(&format!("{n} of {n} ordered symbols", n = names.len())),
        "{stdout}"
    );
}
