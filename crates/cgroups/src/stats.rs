//! Resource statistics of a cgroup in plain, serializable types.

use serde::Serialize;

/// A snapshot of a cgroup's resource use.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CgroupStats {
    /// CPU time and throttling.
    pub cpu: CpuStats,
    /// Memory use and limit.
    pub memory: MemoryStats,
    /// Process count and limit.
    pub pids: PidsStats,
}

/// CPU figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CpuStats {
    /// Total CPU time consumed, nanoseconds.
    pub usage_total_ns: u64,
    /// CPU time in user mode, nanoseconds.
    pub usage_user_ns: u64,
    /// CPU time in kernel mode, nanoseconds.
    pub usage_kernel_ns: u64,
    /// Enforcement periods elapsed under a CPU quota.
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    pub throttled_periods: u64,
    /// Total time throttled, nanoseconds.
    pub throttled_time_ns: u64,
}

/// Memory figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MemoryStats {
    /// Current usage, bytes.
    pub usage_bytes: u64,
    /// Peak usage, bytes (0 where the kernel does not report it).
    pub max_usage_bytes: u64,
    /// The limit, bytes (`u64::MAX`-like huge values mean unlimited).
    pub limit_bytes: u64,
    /// Times the limit was hit.
    pub fail_count: u64,
    /// Processes killed by the OOM killer inside this cgroup.
    pub oom_kills: u64,
}

/// Process-count figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PidsStats {
    /// Processes (tasks) currently in the cgroup.
    pub current: u64,
    /// The pids limit (0 means unlimited).
    pub limit: u64,
}

impl CgroupStats {
    /// Converts libcgroups' figures, adding the OOM-kill count it does not carry.
    pub fn from_libcgroups(raw: &libcgroups::stats::Stats, oom_kills: u64) -> Self {
        Self {
            cpu: CpuStats {
                usage_total_ns: raw.cpu.usage.usage_total,
                usage_user_ns: raw.cpu.usage.usage_user,
                usage_kernel_ns: raw.cpu.usage.usage_kernel,
                periods: raw.cpu.throttling.periods,
                throttled_periods: raw.cpu.throttling.throttled_periods,
                throttled_time_ns: raw.cpu.throttling.throttled_time,
            },
            memory: MemoryStats {
                usage_bytes: raw.memory.memory.usage,
                max_usage_bytes: raw.memory.memory.max_usage,
                limit_bytes: raw.memory.memory.limit,
                fail_count: raw.memory.memory.fail_count,
                oom_kills,
            },
            pids: PidsStats {
                current: raw.pids.current,
                limit: raw.pids.limit,
            },
        }
    }
}
