//! End-to-end tests of `strata run` and its companions: real containers from a busybox
//! root file system, run by the real binary as root.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, cgroup_exists, host_has_mount_under};

#[test]
fn the_command_is_pid_1_with_its_own_hostname() {
    let Some(h) = Harness::new("the_command_is_pid_1_with_its_own_hostname") else {
        return;
    };
    let out = h
        .run(
            &["--rm", "--hostname", "box"],
            &["sh", "-c", "echo $$; hostname"],
        )
        .ok();
    assert_eq!(out.stdout, "1\nbox\n");
    let host = nix::unistd::gethostname().unwrap();
    assert_ne!(host.to_string_lossy(), "box");
}

#[test]
fn mounts_stay_inside_the_container() {
    let Some(h) = Harness::new("mounts_stay_inside_the_container") else {
        return;
    };
    h.run(&["-d", "--name", "mnt"], &["sleep", "30"]).ok();
    // proc, sysfs, /dev … are mounted in the container's namespace, not the host's.
    let inside = h.strata(&["exec", "mnt", "cat", "/proc/mounts"]).ok();
    assert!(inside.stdout.contains(" /proc proc "), "{}", inside.stdout);
    assert!(!host_has_mount_under(h.rootfs.path()));
    h.strata(&["rm", "-f", "mnt"]).ok();
}

#[test]
fn user_groups_env_and_cwd_are_applied() {
    let Some(h) = Harness::new("user_groups_env_and_cwd_are_applied") else {
        return;
    };
    let out = h
        .run(
            &[
                "--rm",
                "-u",
                "1000:1000",
                "--group-add",
                "44",
                "-e",
                "GREETING=hi there",
                "-w",
                "/tmp",
            ],
            &["sh", "-c", "id -u; id -g; id -G; echo $GREETING; pwd"],
        )
        .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1000");
    assert!(
        lines[2].split(' ').any(|g| g == "44"),
        "groups: {}",
        lines[2]
    );
    assert_eq!(lines[3], "hi there");
    assert_eq!(lines[4], "/tmp");
}

#[test]
fn kernel_paths_are_masked_or_read_only_and_oom_score_is_set() {
    let Some(h) = Harness::new("kernel_paths_are_masked_or_read_only_and_oom_score_is_set") else {
        return;
    };
    // A masked file that this kernel has and that is not empty on the host.
    let masked = [
        "/proc/timer_list",
        "/proc/keys",
        "/proc/sched_debug",
        "/proc/kcore",
    ]
    .into_iter()
    .find(|p| std::fs::read(p).is_ok_and(|bytes| !bytes.is_empty()))
    .expect("some masked /proc file exists on the host");
    let script = format!(
        "cat /proc/self/oom_score_adj; wc -c < {masked}; ls /sys/firmware | wc -l; echo 1 > /proc/sys/vm/drop_caches"
    );
    let out = h.run(&["--rm", "--oom-score-adj", "500"], &["sh", "-c", &script]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert_eq!(lines[0], "500");
    assert_eq!(lines[1].trim(), "0", "{masked} is masked with /dev/null");
    assert_eq!(
        lines[2].trim(),
        "0",
        "/sys/firmware is masked with an empty tmpfs"
    );
    assert!(
        out.stderr.contains("Read-only file system"),
        "/proc/sys is read-only: {out:?}"
    );
    let bad = h.run(&["--rm", "--oom-score-adj", "5000"], &["true"]);
    assert_eq!(
        bad.code, 2,
        "clap rejects out-of-range values: {}",
        bad.stderr
    );
    assert!(bad.stderr.contains("oom-score-adj"), "{}", bad.stderr);
}

#[test]
fn the_exit_code_of_the_container_is_returned() {
    let Some(h) = Harness::new("the_exit_code_of_the_container_is_returned") else {
        return;
    };
    h.run(&["--rm"], &["sh", "-c", "exit 42"]).expect_code(42);
    h.run(&["--rm"], &["true"]).ok();
    // PID 1 ignores signals it has no handler for, so SIGTERM is not enough: `stop`
    // escalates to SIGKILL after the grace period, and the exit reads 128 + 9.
    h.run(&["-d", "--name", "stubborn"], &["sleep", "60"]).ok();
    h.strata(&["stop", "-t", "0", "stubborn"]).ok();
    let ps = h.strata(&["ps", "-a"]).ok();
    assert!(ps.stdout.contains("Exited (137)"), "{}", ps.stdout);
}

#[test]
fn stop_sends_sigterm_that_the_program_can_handle() {
    let Some(h) = Harness::new("stop_sends_sigterm_that_the_program_can_handle") else {
        return;
    };
    h.run(
        &["-d", "--name", "trapper"],
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    )
    .ok();
    assert!(h.eventually(|| h.strata(&["logs", "trapper"]).stdout.contains("ready")));
    h.strata(&["stop", "-t", "20", "trapper"]).ok();
    let ps = h.strata(&["ps", "-a"]).ok();
    assert!(ps.stdout.contains("Exited (7)"), "{}", ps.stdout);
    assert!(h.strata(&["logs", "trapper"]).stdout.contains("got TERM"));
}

#[test]
fn a_memory_hog_is_oom_killed_and_reported() {
    let Some(h) = Harness::new("a_memory_hog_is_oom_killed_and_reported") else {
        return;
    };
    let out = h
        .run(
            &["--name", "hog", "-m", "32M"],
            &[
                "sh",
                "-c",
                "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
            ],
        )
        .expect_code(137);
    assert!(!out.stdout.contains("survived"));
    assert!(out.stderr.contains("OOM-killed"), "{}", out.stderr);
    assert!(out.stderr.contains("32 MiB"), "{}", out.stderr);
    let ps = h.strata(&["ps", "-a"]).ok();
    assert!(ps.stdout.contains("OOMKilled"), "{}", ps.stdout);
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    let Some(h) = Harness::new("a_fork_bomb_stops_at_the_pids_limit") else {
        return;
    };
    let forks = "for i in $(seq 1 40); do sleep 1 & done; wait; echo all forked";
    let limited = h.run(&["--rm", "--pids-limit", "12"], &["sh", "-c", forks]);
    assert_ne!(limited.code, 0);
    assert!(limited.stderr.contains("can't fork"), "{}", limited.stderr);
    assert!(!limited.stdout.contains("all forked"));
    // The same program without the limit forks all 40.
    let free = h.run(&["--rm"], &["sh", "-c", forks]).ok();
    assert_eq!(free.stdout, "all forked\n");
}

#[test]
fn cpu_quota_caps_usage() {
    let Some(h) = Harness::new("cpu_quota_caps_usage") else {
        return;
    };
    h.run(
        &["-d", "--name", "spin", "--cpus", "0.2"],
        &["sh", "-c", "while :; do :; done"],
    )
    .ok();
    let started = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let stats = h.strata(&["stats", "--json", "spin"]).ok();
    let elapsed_ns = started.elapsed().as_nanos() as f64;
    let stats: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    let used_ns = stats["cpu"]["usage_total_ns"].as_f64().unwrap();
    let throttled = stats["cpu"]["throttled_periods"].as_u64().unwrap();
    assert!(throttled > 0, "never throttled: {stats}");
    // A spinning loop would use a whole core; the quota allows a fifth of one.
    assert!(
        used_ns < 0.5 * elapsed_ns,
        "used {used_ns} ns in {elapsed_ns} ns"
    );
    h.strata(&["rm", "-f", "spin"]).ok();
}

#[test]
fn capabilities_are_dropped_by_default() {
    let Some(h) = Harness::new("capabilities_are_dropped_by_default") else {
        return;
    };
    let out = h
        .run(
            &["--rm"],
            &[
                "sh",
                "-c",
                "grep CapEff /proc/self/status; mount -t tmpfs none /mnt",
            ],
        )
        .expect_code(1);
    // Docker's default set: chown dac_override fowner fsetid kill setgid setuid setpcap
    // net_bind_service net_raw sys_chroot mknod audit_write setfcap.
    assert!(out.stdout.contains("00000000a80425fb"), "{}", out.stdout);
    assert!(out.stderr.contains("mount"), "{}", out.stderr);
    let added = h
        .run(
            &["--rm", "--cap-add", "SYS_ADMIN", "--cap-drop", "ALL"],
            &["grep", "CapEff", "/proc/self/status"],
        )
        .ok();
    assert!(
        added.stdout.contains("0000000000200000"),
        "{}",
        added.stdout
    );
}

#[test]
fn seccomp_blocks_namespace_creation_unless_unconfined() {
    let Some(h) = Harness::new("seccomp_blocks_namespace_creation_unless_unconfined") else {
        return;
    };
    // unshare(CLONE_NEWUSER) needs no capability: only the seccomp profile stops it.
    let blocked = h.run(&["--rm"], &["unshare", "-U", "true"]).expect_code(1);
    assert!(
        blocked.stderr.contains("Operation not permitted"),
        "{}",
        blocked.stderr
    );
    let userns_allowed = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .map(|v| v.trim() != "0")
        .unwrap_or(false);
    if userns_allowed {
        h.run(
            &["--rm", "--security-opt", "seccomp=unconfined"],
            &["unshare", "-U", "true"],
        )
        .ok();
    } else {
        println!("SKIP unconfined half: user namespaces are disabled on this host");
    }
}

#[test]
fn a_read_only_rootfs_refuses_writes() {
    let Some(h) = Harness::new("a_read_only_rootfs_refuses_writes") else {
        return;
    };
    let out = h
        .run(&["--rm", "--read-only"], &["touch", "/newfile"])
        .expect_code(1);
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
    assert!(!h.rootfs.path().join("newfile").exists());
}

#[test]
fn bind_mounts_share_files_and_honour_ro() {
    let Some(h) = Harness::new("bind_mounts_share_files_and_honour_ro") else {
        return;
    };
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("input"), "from the host\n").unwrap();
    let rw_arg = format!("{}:/data", rw.path().display());
    let ro_arg = format!("{}:/config:ro", ro.path().display());
    let out = h
        .run(
            &["--rm", "-v", &rw_arg, "-v", &ro_arg],
            &[
                "sh",
                "-c",
                "cat /config/input; echo written > /data/out; touch /config/x",
            ],
        )
        .expect_code(1);
    assert_eq!(out.stdout, "from the host\n");
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out")).unwrap(),
        "written\n"
    );
}

#[test]
fn detached_output_goes_to_logs() {
    let Some(h) = Harness::new("detached_output_goes_to_logs") else {
        return;
    };
    let id = h
        .run(&["-d"], &["sh", "-c", "echo one; echo two >&2; echo three"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_eq!(id.len(), 12, "a generated ID: {id}");
    assert!(h.eventually(|| h.strata(&["ps", "-a"]).stdout.contains("Exited (0)")));
    let logs = h.strata(&["logs", &id]).ok();
    assert_eq!(logs.stdout, "one\nthree\n");
    assert_eq!(logs.stderr, "two\n");
    // stdout and stderr are copied by separate threads, so --tail is checked on one stream.
    h.run(
        &["-d", "--name", "counter"],
        &["sh", "-c", "echo a; echo b; echo c"],
    )
    .ok();
    assert!(h.eventually(|| h.strata(&["logs", "counter"]).stdout == "a\nb\nc\n"));
    let tail = h.strata(&["logs", "--tail", "2", "counter"]).ok();
    assert_eq!(tail.stdout, "b\nc\n");
    let stamped = h.strata(&["logs", "-t", "--tail", "1", "counter"]).ok();
    let (stamp, line) = stamped.stdout.trim_end().split_once(' ').unwrap();
    assert_eq!(line, "c");
    assert!(chrono_like(stamp), "RFC 3339 timestamp: {stamp}");
}

/// `2026-11-22T00:21:50.777319123Z`-shaped.
fn chrono_like(stamp: &str) -> bool {
    stamp.len() >= 20 && stamp.as_bytes()[4] == b'-' && stamp.contains('T') && stamp.ends_with('Z')
}

#[test]
fn a_terminal_is_allocated_with_t_and_fed_with_i() {
    let Some(h) = Harness::new("a_terminal_is_allocated_with_t_and_fed_with_i") else {
        return;
    };
    let out = h
        .run(
            &["--rm", "-t"],
            &["sh", "-c", "tty; echo TERM=$TERM; exit 4"],
        )
        .expect_code(4);
    // A pty turns \n into \r\n on output.
    assert_eq!(out.stdout, "/dev/pts/0\r\nTERM=xterm\r\n");

    let out = h
        .run_with_input(
            &["--rm", "-t", "-i"],
            &["sh", "-c", "read line; echo got $line"],
            b"hello\n",
        )
        .ok();
    assert!(out.stdout.contains("got hello"), "{:?}", out.stdout);

    // Without -i the container reads an empty stdin.
    let out = h.run_with_input(&["--rm"], &["sh", "-c", "cat; echo end"], b"ignored\n");
    assert_eq!(out.stdout, "end\n");
}

/// Runs `tmux` with the test's own server socket.
fn tmux(socket: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn an_interactive_terminal_follows_typing_and_window_resizes() {
    let Some(h) = Harness::new("an_interactive_terminal_follows_typing_and_window_resizes") else {
        return;
    };
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_err()
    {
        println!(
            "SKIP an_interactive_terminal_follows_typing_and_window_resizes: tmux is not installed"
        );
        return;
    }
    let socket = h.data_dir().join("tmux.sock");
    let command = format!(
        "{} --data-dir {} run --rm -it --rootfs {} -- sh; echo strata-exited=$?; sleep 30",
        common::strata_bin().display(),
        h.data_dir().display(),
        h.rootfs.path().display()
    );
    /// Ends the test's tmux server (and what runs in it) even when an assertion fails.
    struct KillServer<'a>(&'a std::path::Path);
    impl Drop for KillServer<'_> {
        fn drop(&mut self) {
            tmux(self.0, &["kill-server"]);
        }
    }
    let _server = KillServer(&socket);
    let started = tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "100",
            "-y",
            "30",
            &command,
        ],
    );
    assert!(started.status.success(), "{started:?}");
    let screen = || {
        String::from_utf8_lossy(&tmux(&socket, &["capture-pane", "-t", "t", "-p"]).stdout)
            .into_owned()
    };
    let typed = |keys: &str| {
        tmux(&socket, &["send-keys", "-t", "t", keys, "Enter"]);
    };
    typed("stty size");
    let first = h.eventually(|| screen().contains("30 100"));
    tmux(
        &socket,
        &["resize-window", "-t", "t", "-x", "120", "-y", "40"],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    typed("stty size; echo typed-$((6*7))");
    let resized = h.eventually(|| screen().contains("40 120") && screen().contains("typed-42"));
    typed("exit 3");
    // Let strata finish (and clean up) before the tmux server goes away.
    let exited = h.eventually(|| screen().contains("strata-exited=3"));
    let shown = screen();
    assert!(
        exited,
        "the container's exit code did not come back: {shown}"
    );
    assert!(first, "initial size not passed on: {shown}");
    assert!(resized, "resize or typing not passed on: {shown}");
}

#[test]
fn exec_joins_the_running_container() {
    let Some(h) = Harness::new("exec_joins_the_running_container") else {
        return;
    };
    h.run(
        &["-d", "--name", "host1", "--hostname", "inside"],
        &["sleep", "30"],
    )
    .ok();
    let out = h
        .strata(&[
            "exec",
            "-e",
            "X=1",
            "host1",
            "sh",
            "-c",
            "hostname; tr '\\0' ' ' < /proc/1/cmdline; echo; echo $X; exit 5",
        ])
        .expect_code(5);
    assert_eq!(out.stdout, "inside\nsleep 30 \n1\n");
}

#[test]
fn bad_input_fails_cleanly_and_leaves_nothing() {
    let Some(h) = Harness::new("bad_input_fails_cleanly_and_leaves_nothing") else {
        return;
    };
    let bad_id = h.run(&["--name", "../escape"], &["true"]);
    assert_eq!(bad_id.code, 125);
    assert!(bad_id.stderr.contains("container ID"), "{}", bad_id.stderr);

    let missing = h.strata(&["run", "--rootfs", "/nonexistent/rootfs", "--", "true"]);
    assert_eq!(missing.code, 125);
    assert!(
        missing.stderr.contains("/nonexistent/rootfs"),
        "{}",
        missing.stderr
    );

    let no_cmd = h.run(&["--name", "nocmd"], &["no-such-program"]);
    assert_eq!(no_cmd.code, 125);
    assert!(
        no_cmd.stderr.contains("no-such-program"),
        "{}",
        no_cmd.stderr
    );
    assert_eq!(
        no_cmd.stderr.trim().lines().count(),
        1,
        "one line: {}",
        no_cmd.stderr
    );
    assert!(!cgroup_exists("/strata/nocmd"));

    let bad_mem = h.run(&["-m", "lots"], &["true"]);
    assert_eq!(bad_mem.code, 125);
    assert!(bad_mem.stderr.contains("lots"), "{}", bad_mem.stderr);

    h.run(&["-d", "--name", "dup"], &["sleep", "30"]).ok();
    let dup = h.run(&["--name", "dup"], &["true"]);
    assert_eq!(dup.code, 125);
    assert!(dup.stderr.contains("exists"), "{}", dup.stderr);
    h.strata(&["rm", "-f", "dup"]).ok();

    assert!(h.all_ids().is_empty(), "left behind: {:?}", h.all_ids());
    let containers = std::fs::read_dir(h.data_dir().join("containers"))
        .unwrap()
        .count();
    assert_eq!(containers, 0);
}

#[test]
fn rm_force_removes_processes_cgroups_and_mounts() {
    let Some(h) = Harness::new("rm_force_removes_processes_cgroups_and_mounts") else {
        return;
    };
    h.run(
        &["-d", "--name", "victim", "-m", "64M"],
        &["sh", "-c", "sleep 60 & sleep 60"],
    )
    .ok();
    assert!(cgroup_exists("/strata/victim"));
    let busy = h.strata(&["rm", "victim"]);
    assert_ne!(busy.code, 0);
    assert!(busy.stderr.contains("running"), "{}", busy.stderr);
    h.strata(&["rm", "-f", "victim"]).ok();
    assert!(!cgroup_exists("/strata/victim"));
    assert!(!h.data_dir().join("containers/victim").exists());
    assert!(!h.data_dir().join("runtime/victim").exists());
}
