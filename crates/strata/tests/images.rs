#![allow(clippy::unwrap_used)]
//! `strata image …` and `strata run IMAGE` end to end: the demo images built from
//! busybox-static, containers on overlay snapshots, image config applied, cleanup.

mod common;

use common::{Harness, host_has_mount_under};

#[test]
fn run_image_applies_its_config_and_each_container_gets_its_own_upper_layer() {
    let Some(h) = Harness::new("run_image_applies_its_config") else {
        return;
    };
    h.demo_images();
    // Cmd of the image, replaced by the given command; env and HOME from the image.
    let out = h
        .strata(&[
            "run",
            "--rm",
            "localhost/busybox",
            "sh",
            "-c",
            "echo $PATH; echo $HOME; id -u",
        ])
        .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "/root",
            "0"
        ]
    );
    // -u takes a name from the image's /etc/passwd.
    let as_image_user = h
        .strata(&["run", "--rm", "-u", "nobody", "localhost/busybox", "id"])
        .ok();
    assert!(
        as_image_user.stdout.contains("uid=65534(nobody)"),
        "{}",
        as_image_user.stdout
    );

    // Writes land in the container's upper layer, not in the shared snapshot.
    h.strata(&[
        "run",
        "--name",
        "writer",
        "localhost/busybox",
        "sh",
        "-c",
        "echo mine > /bin/busybox-note; rm /etc/group",
    ])
    .ok();
    let fresh = h
        .strata(&[
            "run",
            "--rm",
            "localhost/busybox",
            "sh",
            "-c",
            "ls /bin/busybox-note 2>&1; test -f /etc/group && echo group-intact",
        ])
        .ok();
    assert!(fresh.stdout.contains("No such file"), "{}", fresh.stdout);
    assert!(fresh.stdout.contains("group-intact"), "{}", fresh.stdout);
    let upper = h.data_dir().join("containers/writer/upper");
    assert_eq!(
        std::fs::read_to_string(upper.join("bin/busybox-note")).unwrap(),
        "mine\n"
    );

    h.strata(&["rm", "writer"]).ok();
    assert!(
        !host_has_mount_under(h.data_dir()),
        "rm unmounts the container's rootfs"
    );
    assert!(!h.data_dir().join("containers/writer").exists());
}

#[test]
fn the_httpd_demo_image_serves_its_page() {
    let Some(h) = Harness::new("the_httpd_demo_image_serves_its_page") else {
        return;
    };
    h.demo_images();
    let port = 20000 + (std::process::id() % 20000) as u16;
    let listen = format!("127.0.0.1:{port}");
    h.strata(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "host",
        "localhost/httpd",
        "-p",
        &listen,
    ])
    .ok();
    let mut page = String::new();
    let served = h.eventually(|| {
        use std::io::{Read, Write};
        let Ok(mut conn) = std::net::TcpStream::connect(&listen) else {
            return false;
        };
        let _ = conn.write_all(b"GET / HTTP/1.0\r\n\r\n");
        page.clear();
        conn.read_to_string(&mut page).is_ok() && page.contains("200 OK")
    });
    assert!(served, "no page from {listen}: {page}");
    assert!(page.contains("Hello from a Strata container"));
    let ps = h.strata(&["exec", "web", "ps", "-o", "user,args"]).ok();
    assert!(
        ps.stdout.contains("nobody   httpd -f -v -h /var/www -p"),
        "{}",
        ps.stdout
    );
}

#[test]
fn images_list_inspect_tag_and_refuse_removal_while_used() {
    let Some(h) = Harness::new("images_list_inspect_tag") else {
        return;
    };
    h.demo_images();
    let ls = h.strata(&["image", "ls"]).ok();
    assert!(ls.stdout.starts_with("REPOSITORY"), "{}", ls.stdout);
    assert!(ls.stdout.contains("localhost/httpd"), "{}", ls.stdout);

    let inspect = h.strata(&["image", "inspect", "localhost/httpd"]).ok();
    let json: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let config = &json[0]["Config"];
    assert_eq!(config["User"], "nobody");
    assert_eq!(config["Entrypoint"][0], "httpd");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some());
    let id = json[0]["Id"].as_str().unwrap().to_string();

    h.strata(&["image", "tag", "localhost/httpd", "localhost/web:v1"])
        .ok();
    let by_id = h.strata(&["image", "inspect", &id[7..19]]).ok();
    assert!(
        by_id.stdout.contains("localhost/web:v1"),
        "{}",
        by_id.stdout
    );
    // Two tags: removal by ID needs --force.
    let refused = h.strata(&["rmi", &id[7..19]]).expect_code(1);
    assert!(
        refused.stderr.contains("tagged 2 times"),
        "{}",
        refused.stderr
    );
    h.strata(&["rmi", "localhost/web:v1"]).ok();

    // A container uses busybox: rmi refuses, prune keeps its blobs.
    h.strata(&[
        "run",
        "--name",
        "user-of-busybox",
        "localhost/busybox",
        "true",
    ])
    .ok();
    let in_use = h.strata(&["rmi", "localhost/busybox"]).expect_code(1);
    assert!(
        in_use.stderr.contains("used by a container"),
        "{}",
        in_use.stderr
    );
    h.strata(&["rmi", "localhost/httpd"]).ok();
    h.strata(&["image", "prune", "-a"]).ok();
    let still = h.strata(&["run", "--rm", "localhost/busybox", "true"]);
    still.ok();
    h.strata(&["rm", "user-of-busybox"]).ok();
    let pruned = h.strata(&["image", "prune", "-a"]).ok();
    assert!(
        pruned.stdout.contains("Untagged: localhost/busybox:latest"),
        "{}",
        pruned.stdout
    );
    let blobs = std::fs::read_dir(h.data_dir().join("images/blobs/sha256"))
        .unwrap()
        .count();
    let snapshots = std::fs::read_dir(h.data_dir().join("images/snapshots"))
        .unwrap()
        .count();
    assert_eq!(
        (blobs, snapshots),
        (0, 0),
        "prune -a with no containers empties the store"
    );
}

#[test]
fn a_failing_run_of_an_image_leaves_no_container_and_no_mount() {
    let Some(h) = Harness::new("a_failing_run_of_an_image_leaves_nothing") else {
        return;
    };
    h.demo_images();
    let missing = h
        .strata(&["run", "--rm", "localhost/nothing-here"])
        .expect_code(125);
    assert!(
        missing
            .stderr
            .contains("image \"localhost/nothing-here\" not found"),
        "{}",
        missing.stderr
    );
    let bad_user = h
        .strata(&[
            "run",
            "--name",
            "bad-user",
            "-u",
            "no-such-user",
            "localhost/busybox",
            "id",
        ])
        .expect_code(125);
    assert!(
        bad_user
            .stderr
            .contains("\"no-such-user\" is not in the container's /etc/passwd"),
        "{}",
        bad_user.stderr
    );
    assert!(!h.data_dir().join("containers/bad-user").exists());
    assert!(!host_has_mount_under(h.data_dir()));
    let no_image = h.strata(&["run", "--rm"]).expect_code(125);
    assert!(
        no_image.stderr.contains("give an image to run"),
        "{}",
        no_image.stderr
    );
}

/// podman with its own storage under a temporary directory, so tests never touch the
/// machine's images.
fn podman(storage: &std::path::Path, args: &[&str]) -> common::Run {
    std::process::Command::new("podman")
        .arg("--root")
        .arg(storage.join("root"))
        .arg("--runroot")
        .arg(storage.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .expect("spawn podman")
        .into()
}

#[test]
fn archives_round_trip_through_podman_in_both_formats() {
    let Some(h) = Harness::new("archives_round_trip_through_podman") else {
        return;
    };
    if std::process::Command::new("podman")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIP archives_round_trip_through_podman: podman is not installed");
        return;
    }
    h.demo_images();
    let work = tempfile::tempdir().unwrap();
    let exported = work.path().join("httpd.tar");
    let exported_str = exported.to_str().unwrap();
    h.strata(&["image", "export", "localhost/httpd", exported_str])
        .ok();

    // Our archive is what `docker save` writes: podman loads it under its name.
    podman(work.path(), &["load", "-i", exported_str]).ok();
    let inspect = podman(work.path(), &["image", "inspect", "localhost/httpd:latest"]).ok();
    assert!(inspect.stdout.contains("\"nobody\""), "{}", inspect.stdout);

    // podman's own archives, legacy docker-archive and oci-archive, load into Strata.
    for (format, name) in [
        ("docker-archive", "localhost/from-docker:1"),
        ("oci-archive", "localhost/from-oci:1"),
    ] {
        let file = work.path().join(format!("{format}.tar"));
        let file_str = file.to_str().unwrap();
        podman(
            work.path(),
            &[
                "save",
                "--format",
                format,
                "-o",
                file_str,
                "localhost/httpd:latest",
            ],
        )
        .ok();
        let loaded = h.strata(&["image", "import", file_str, name]).ok();
        assert!(loaded.stdout.contains(name), "{format}: {}", loaded.stdout);
        let cat = h
            .strata(&[
                "run",
                "--rm",
                "--entrypoint",
                "cat",
                name,
                "/var/www/index.html",
            ])
            .ok();
        assert!(
            cat.stdout.contains("Hello from a Strata container"),
            "{format}: {cat:?}"
        );
    }
    let _ = podman(work.path(), &["rmi", "-a", "-f"]);
}
