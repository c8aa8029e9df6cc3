//! The default seccomp profile of `strata run`.
//!
//! Like Docker's profile it blocks the syscalls that let a contained root process reach
//! the host kernel's global state: module loading, kexec, reboot, swap, clock setting,
//! accounting, quotas, the kernel keyring, BPF, perf, userfaultfd, namespace creation
//! and joining (`unshare`, `setns`, `clone` with `CLONE_NEW*` flags), new mount API
//! calls and `open_by_handle_at` (the "shocker" escape). Docker writes this as an
//! allow-list; Strata writes it as a deny-list with default ALLOW, so that a syscall the
//! kernel gains later works instead of failing with EPERM in an old profile. Profiles
//! the user supplies through an OCI `config.json` are applied as given.
//!
//! When the container is granted `CAP_SYS_ADMIN` the namespace and mount rules are
//! dropped, as Docker does, since the capability already allows what they prevent.

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};

/// Blocked regardless of capabilities.
const ALWAYS_BLOCKED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "move_pages",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "syslog",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// Blocked unless the container holds `CAP_SYS_ADMIN`.
const BLOCKED_WITHOUT_SYS_ADMIN: &[&str] = &[
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "open_tree",
    "pivot_root",
    "setns",
    "umount",
    "umount2",
    "unshare",
];

/// `clone` flags that create namespaces; `clone` with any of them is refused.
const NAMESPACE_CLONE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// Builds the default profile. `sys_admin` says whether the container holds
/// `CAP_SYS_ADMIN`.
pub fn default_profile(sys_admin: bool) -> Result<LinuxSeccomp, OciSpecError> {
    let eperm = Some(libc::EPERM as u32);
    let mut names: Vec<String> = ALWAYS_BLOCKED.iter().map(|s| s.to_string()).collect();
    let mut rules = Vec::new();
    if !sys_admin {
        names.extend(BLOCKED_WITHOUT_SYS_ADMIN.iter().map(|s| s.to_string()));
        // One rule per flag: libseccomp ANDs the conditions of one rule, and ORs rules.
        for &flag in NAMESPACE_CLONE_FLAGS {
            let mut rule = LinuxSyscall::default();
            rule.set_names(vec!["clone".to_string()]);
            rule.set_action(LinuxSeccompAction::ScmpActErrno);
            rule.set_errno_ret(eperm);
            let arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(flag)
                .value_two(flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()?;
            rule.set_args(Some(vec![arg]));
            rules.push(rule);
        }
        // clone3 passes its flags in memory that seccomp cannot inspect: answer ENOSYS so
        // that libc falls back to clone, whose flags the rules above do check (Docker's way).
        let mut clone3 = LinuxSyscall::default();
        clone3.set_names(vec!["clone3".to_string()]);
        clone3.set_action(LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(libc::ENOSYS as u32));
        rules.push(clone3);
    }
    let mut blocked = LinuxSyscall::default();
    blocked.set_names(names);
    blocked.set_action(LinuxSeccompAction::ScmpActErrno);
    blocked.set_errno_ret(eperm);
    rules.insert(0, blocked);

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActAllow);
    profile.set_architectures(Some(vec![
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX86,
        Arch::ScmpArchX32,
        Arch::ScmpArchAarch64,
        Arch::ScmpArchArm,
    ]));
    profile.set_syscalls(Some(rules));
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked_names(profile: &LinuxSeccomp) -> Vec<String> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|rule| rule.args().is_none())
            .flat_map(|rule| rule.names().clone())
            .collect()
    }

    #[test]
    fn blocks_namespace_creation_without_sys_admin() {
        let profile = default_profile(false).unwrap();
        let names = blocked_names(&profile);
        for syscall in ["unshare", "setns", "mount", "kexec_load", "bpf", "clone3"] {
            assert!(names.iter().any(|n| n == syscall), "{syscall} not blocked");
        }
        let clone_rules = profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|rule| rule.names() == &["clone".to_string()])
            .count();
        assert_eq!(clone_rules, NAMESPACE_CLONE_FLAGS.len());
    }

    #[test]
    fn sys_admin_lifts_namespace_and_mount_rules_but_not_the_rest() {
        let names = blocked_names(&default_profile(true).unwrap());
        assert!(!names.iter().any(|n| n == "unshare" || n == "mount"));
        assert!(names.iter().any(|n| n == "kexec_load"));
        assert_eq!(
            default_profile(true).unwrap().default_action(),
            LinuxSeccompAction::ScmpActAllow
        );
    }
}
