#!/usr/bin/env bash
# Runs the container lifecycle benchmark (bench/benches/lifecycle.rs): Strata's CLI,
# runc, crun and Strata's library path side by side, interleaved.
#
# crun 1.8 refuses this machine's cgroup v1/v2 hybrid layout, so every runtime runs in a
# private mount namespace with an empty tmpfs over /sys/fs/cgroup/unified: all of them
# see plain cgroup v1 alike.
# Usage: bench/runtime-lifecycle.sh [RUNS]   (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/strata-target}
runs=${1:-50}
scripts/install-deps.sh bench
cargo build --release --bin strata --bin oci-order
# A stale symbol ordering file shows up as a larger strata-runc RSS; say how stale it is.
"$CARGO_TARGET_DIR/release/oci-order" --strata "$CARGO_TARGET_DIR/release/strata" \
  --check crates/strata/oci.order || true
bench_exe=$(cargo bench -p strata-bench --bench lifecycle --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*lifecycle[^"]*\)".*/\1/p' | tail -1)
[ -x "$bench_exe" ] || { echo "cannot find the lifecycle bench binary" >&2; exit 1; }
unified=/sys/fs/cgroup/unified
exec unshare --mount --propagation private sh -c "
  if [ -d $unified ]; then mount -t tmpfs -o size=1k none $unified; fi
  exec '$bench_exe' --strata '$CARGO_TARGET_DIR/release/strata' --runs $runs"
