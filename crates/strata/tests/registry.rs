#![allow(clippy::unwrap_used)]
//! `strata push|pull|login|logout` end to end against a real registry (Debian's
//! docker-registry on loopback), and `strata run` on a pulled image.

mod common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use common::{Harness, Run, strata_bin};
use strata_testkit::registry::{RegistryConfig, TestRegistry, require_registry};

/// `strata --data-dir D <args>` with `input` on stdin.
fn strata_with_input(h: &Harness, args: &[&str], input: &str) -> Run {
    let mut child = Command::new(strata_bin())
        .arg("--data-dir")
        .arg(h.data_dir())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap().into()
}

#[test]
fn an_image_pushed_and_pulled_back_runs() {
    let test = "an_image_pushed_and_pulled_back_runs";
    let Some(h) = Harness::new(test) else { return };
    if !require_registry(test) {
        return;
    }
    let registry = TestRegistry::start().unwrap();
    let rootfs = h.rootfs.path().to_str().unwrap();
    h.strata(&[
        "image",
        "import-rootfs",
        "--change",
        r#"CMD ["echo", "pulled image says hi"]"#,
        rootfs,
        "localhost/hello:1",
    ])
    .ok();
    let remote = format!("{}/demo/hello:1", registry.host());
    let pushed = h.strata(&["push", "localhost/hello:1", &remote]).ok();
    assert!(
        pushed.stdout.contains(&format!(
            "The push refers to repository [{}/demo/hello]",
            registry.host()
        )),
        "{}",
        pushed.stdout
    );
    assert!(pushed.stdout.contains(": Pushed"), "{}", pushed.stdout);
    let digest_line = pushed
        .stdout
        .lines()
        .find(|l| l.starts_with("1: digest: sha256:"))
        .unwrap_or_else(|| panic!("{}", pushed.stdout))
        .to_string();
    let digest = digest_line.split(' ').nth(2).unwrap().to_string();
    let inspect = |name: &str| -> serde_json::Value {
        let out = h.strata(&["image", "inspect", name]).ok();
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
    };
    let id_before = inspect("localhost/hello:1")["Id"].clone();

    // Gone locally (both names), then back from the registry.
    h.strata(&["rmi", "localhost/hello:1", &remote]).ok();
    assert!(
        h.strata(&["image", "ls", "-q"])
            .ok()
            .stdout
            .trim()
            .is_empty()
    );
    // `run` pulls a missing image itself (on stderr; stdout is the container's).
    let ran = h.strata(&["run", "--rm", &remote]).ok();
    assert_eq!(ran.stdout, "pulled image says hi\n");
    assert!(
        ran.stderr.contains("Unable to find image"),
        "{}",
        ran.stderr
    );
    let never = h
        .strata(&["run", "--rm", "--pull", "never", "localhost/never-pulled:1"])
        .expect_code(125);
    assert!(never.stderr.contains("not found"), "{}", never.stderr);
    h.strata(&["rmi", &remote]).ok();
    let pulled = h.strata(&["pull", &remote]).ok();
    assert!(
        pulled.stdout.contains("1: Pulling from demo/hello"),
        "{}",
        pulled.stdout
    );
    assert!(
        pulled.stdout.contains(": Pull complete"),
        "{}",
        pulled.stdout
    );
    assert!(
        pulled.stdout.contains(&format!("Digest: {digest}")),
        "{}",
        pulled.stdout
    );
    assert!(
        pulled
            .stdout
            .contains(&format!("Status: Downloaded newer image for {remote}")),
        "{}",
        pulled.stdout
    );
    assert_eq!(inspect(&remote)["Id"], id_before, "same config");
    let again = h.strata(&["image", "pull", &remote]).ok();
    assert!(
        again.stdout.contains("Already exists") && again.stdout.contains("Image is up to date"),
        "{}",
        again.stdout
    );

    let run = h.strata(&["run", "--rm", &remote]).ok();
    assert_eq!(run.stdout.trim(), "pulled image says hi");

    // By digest, into another data dir's store name.
    let by_digest = format!("{}/demo/hello@{digest}", registry.host());
    let pulled = h.strata(&["pull", "-q", &by_digest]).ok();
    assert_eq!(pulled.stdout.trim(), by_digest);

    // A tag the registry lacks: one line naming the reference.
    let missing = h.strata(&["pull", &format!("{}/demo/nope", registry.host())]);
    assert_eq!(missing.code, 125);
    assert_eq!(
        missing.stderr.trim(),
        format!(
            "strata: pull {}/demo/nope:latest: manifest unknown",
            registry.host()
        )
    );
}

#[test]
fn push_needs_login_and_login_stores_credentials_privately() {
    let test = "push_needs_login_and_login_stores_credentials_privately";
    let Some(h) = Harness::new(test) else { return };
    if !require_registry(test) {
        return;
    }
    let registry = TestRegistry::start_with(&RegistryConfig {
        user: Some(("carol".into(), "s3cret".into())),
        tls: true,
        token: false,
    })
    .unwrap();
    let host = registry.host();
    let ca = registry.ca_cert();
    let ca = ca.to_str().unwrap();
    let rootfs = h.rootfs.path().to_str().unwrap();
    let remote = format!("{host}/private/hello:1");
    h.strata(&["image", "import-rootfs", rootfs, &remote]).ok();

    let denied = h.strata(&["push", "--ca-cert", ca, &remote]);
    assert_eq!(denied.code, 125);
    assert_eq!(
        denied.stderr.trim(),
        format!("strata: push {remote}: authentication required (run strata login {host})")
    );

    let wrong = strata_with_input(
        &h,
        &[
            "login",
            "--ca-cert",
            ca,
            "-u",
            "carol",
            "--password-stdin",
            &host,
        ],
        "guess\n",
    );
    assert_eq!(wrong.code, 125, "{wrong:?}");
    assert!(
        wrong.stderr.contains(&format!(
            "login to {host}: invalid username or password for {host}"
        )),
        "{}",
        wrong.stderr
    );
    let auth = h.data_dir().join("auth.json");
    assert!(!auth.exists());

    let ok = strata_with_input(
        &h,
        &[
            "login",
            "--ca-cert",
            ca,
            "-u",
            "carol",
            "--password-stdin",
            &host,
        ],
        "s3cret\n",
    )
    .ok();
    assert_eq!(ok.stdout.trim(), "Login Succeeded");
    let mode = std::fs::metadata(&auth).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth).unwrap()).unwrap();
    assert_eq!(
        json["auths"][&host]["auth"], "Y2Fyb2w6czNjcmV0",
        "base64(carol:s3cret)"
    );

    h.strata(&["push", "--ca-cert", ca, &remote]).ok();
    h.strata(&["rmi", &remote]).ok();
    h.strata(&["pull", "--ca-cert", ca, &remote]).ok();

    // Without the CA the certificate is refused, naming the host.
    let untrusted = h.strata(&["pull", &remote]);
    assert_eq!(untrusted.code, 125);
    assert!(
        untrusted
            .stderr
            .contains(&format!("strata: pull {remote}: cannot reach {host}")),
        "{}",
        untrusted.stderr
    );

    let out = h.strata(&["logout", &host]).ok();
    assert_eq!(
        out.stdout.trim(),
        format!("Removing login credentials for {host}")
    );
    let out = h.strata(&["logout", &host]).ok();
    assert_eq!(out.stdout.trim(), format!("Not logged in to {host}"));
    let denied = h.strata(&["pull", "--ca-cert", ca, &remote]);
    assert!(
        denied.stderr.contains("authentication required"),
        "{}",
        denied.stderr
    );
}
