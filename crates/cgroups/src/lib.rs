//! cgroup support shared by the runtime, the VM sandboxes, functions and the agent.
//!
//! Strata runs on pure cgroup v1, on the v1/v2 hybrid layout (v1 controllers with an
//! empty or near-empty cgroup2 mount under `unified/`) and on pure cgroup v2. The layout
//! is detected, never assumed. Managers come from youki's `libcgroups`; this crate adds
//! the detection report, a small handle per cgroup, and statistics in plain types.

pub mod group;
pub mod handle;
pub mod mode;
pub mod stats;

pub use group::{GroupError, GroupLimits};
pub use handle::{Cgroup, CgroupError};
pub use mode::{CgroupMode, DetectError, detect};
pub use stats::{CgroupStats, CpuStats, MemoryStats, PidsStats};
