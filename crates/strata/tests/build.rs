#![allow(clippy::unwrap_used)]
//! `strata image build` end to end: a Containerfile over the demo busybox image, RUN
//! steps in real containers, the layer cache, and failures that leave nothing behind.

mod common;

use std::path::Path;

use common::{Harness, host_has_mount_under};

const CONTAINERFILE: &str = r#"
FROM localhost/busybox:latest
ARG GREETING=hello
ENV APP_HOME=/srv/app
WORKDIR $APP_HOME
COPY site/ ./www/
ADD app.tgz /opt/
RUN echo "$GREETING from build" > greeting.txt && rm /etc/group
USER nobody
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/srv/app/www"]
"#;

fn context(dir: &Path) {
    std::fs::create_dir_all(dir.join("site")).unwrap();
    std::fs::write(dir.join("site/index.html"), "<h1>built</h1>\n").unwrap();
    std::fs::write(dir.join("version.txt"), "v1\n").unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-czf")
        .arg(dir.join("app.tgz"))
        .arg("version.txt")
        .status()
        .unwrap();
    assert!(tar.success());
    std::fs::write(dir.join("Containerfile"), CONTAINERFILE).unwrap();
}

fn no_leftovers(h: &Harness) {
    assert!(
        !host_has_mount_under(h.data_dir()),
        "a build mount was left behind"
    );
    let work = h.data_dir().join("images/build");
    let left = std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        left,
        0,
        "build work directories were left in {}",
        work.display()
    );
    assert!(
        h.all_ids().is_empty(),
        "build containers were left: {:?}",
        h.all_ids()
    );
}

#[test]
fn a_containerfile_builds_into_a_runnable_image_and_rebuilds_from_cache() {
    let Some(h) = Harness::new("a_containerfile_builds") else {
        return;
    };
    h.demo_images();
    let ctx = tempfile::tempdir().unwrap();
    context(ctx.path());
    let ctx_path = ctx.path().to_str().unwrap();
    let built = h
        .strata(&[
            "image",
            "build",
            "-t",
            "localhost/site:1",
            "--build-arg",
            "GREETING=hi",
            ctx_path,
        ])
        .ok();
    assert!(built.stdout.contains("STEP 7/10: RUN"), "{}", built.stdout);
    assert!(
        built
            .stdout
            .contains("Successfully tagged localhost/site:1"),
        "{}",
        built.stdout
    );
    assert!(!built.stdout.contains("Using cache"), "{}", built.stdout);
    no_leftovers(&h);

    let check = h
        .strata(&[
            "run", "--rm", "--entrypoint", "sh", "localhost/site:1", "-c",
            "id -u; pwd; cat greeting.txt /opt/version.txt www/index.html; test -e /etc/group || echo group-removed",
        ])
        .ok();
    assert_eq!(
        check.stdout.lines().collect::<Vec<_>>(),
        vec![
            "65534",
            "/srv/app",
            "hi from build",
            "v1",
            "<h1>built</h1>",
            "group-removed"
        ]
    );
    let inspect = h.strata(&["image", "inspect", "localhost/site:1"]).ok();
    let json: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(json[0]["Config"]["User"], "nobody");
    assert_eq!(json[0]["Config"]["WorkingDir"], "/srv/app");
    // busybox's one layer plus WORKDIR, COPY, ADD and RUN.
    assert_eq!(json[0]["RootFS"]["Layers"].as_array().unwrap().len(), 5);

    // The same inputs: every layer step comes from the cache.
    let again = h
        .strata(&[
            "image",
            "build",
            "-t",
            "localhost/site:2",
            "--build-arg",
            "GREETING=hi",
            ctx_path,
        ])
        .ok();
    assert_eq!(
        again.stdout.matches("Using cache").count(),
        4,
        "{}",
        again.stdout
    );
    // Changed content re-runs the COPY and everything after it; a changed build
    // argument re-runs the RUN.
    std::fs::write(ctx.path().join("site/index.html"), "<h1>changed</h1>\n").unwrap();
    let changed = h
        .strata(&[
            "image",
            "build",
            "-t",
            "localhost/site:3",
            "--build-arg",
            "GREETING=hi",
            ctx_path,
        ])
        .ok();
    assert_eq!(
        changed.stdout.matches("Using cache").count(),
        1,
        "{}",
        changed.stdout
    );
    let page = h
        .strata(&[
            "run",
            "--rm",
            "--entrypoint",
            "cat",
            "localhost/site:3",
            "www/index.html",
        ])
        .ok();
    assert_eq!(page.stdout, "<h1>changed</h1>\n");
    no_leftovers(&h);
}

#[test]
fn build_failures_name_the_line_and_leave_nothing_behind() {
    let Some(h) = Harness::new("build_failures_name_the_line") else {
        return;
    };
    h.demo_images();
    let ctx = tempfile::tempdir().unwrap();
    let ctx_path = ctx.path().to_str().unwrap();
    let cases = [
        (
            "FROM localhost/busybox\nRUN echo partial > /f && exit 3\n",
            "line 2: RUN failed",
            "exited with code 3",
        ),
        (
            "FROM localhost/busybox\n\nHEALTHCHECK CMD true\n",
            "line 3",
            "unsupported instruction HEALTHCHECK",
        ),
        (
            "FROM localhost/busybox\nCOPY ../outside /x\n",
            "line 2",
            "outside the build context",
        ),
        ("RUN true\n", "line 1", "first instruction must be FROM"),
        (
            "FROM localhost/never-built\n",
            "line 1",
            "is not in the image store",
        ),
        (
            "FROM localhost/busybox\nUSER ghost\nRUN true\n",
            "line 3",
            "\"ghost\" is not in the container's /etc/passwd",
        ),
    ];
    for (containerfile, line, why) in cases {
        std::fs::write(ctx.path().join("Containerfile"), containerfile).unwrap();
        let failed = h
            .strata(&["image", "build", "-t", "localhost/broken", ctx_path])
            .expect_code(125);
        assert!(
            failed.stderr.contains(line),
            "{containerfile:?}: {}",
            failed.stderr
        );
        assert!(
            failed.stderr.contains(why),
            "{containerfile:?}: {}",
            failed.stderr
        );
        no_leftovers(&h);
    }
    let listed = h.strata(&["image", "ls"]).ok();
    assert!(
        !listed.stdout.contains("localhost/broken"),
        "{}",
        listed.stdout
    );
}
