#!/usr/bin/env bash
# Time from `run IMAGE /bin/true` to exit: Strata vs podman (with crun), on the same
# image (localhost/busybox, exported by Strata and loaded into a private podman
# store), one after the other by hyperfine. The ratio is the figure (goal: strata ≤ 0.5×).
#
# crun 1.8 refuses this machine's cgroup v1/v2 hybrid layout, so both run in a private
# mount namespace with an empty tmpfs over /sys/fs/cgroup/unified (plain v1 for both).
# podman runs with explicit --ulimit values: this sandbox cannot raise hard rlimits, which podman
# otherwise asks for.
# Usage: bench/image-run.sh [RUNS]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/strata-target}
runs=${1:-30}
scripts/install-deps.sh bench
cargo build --release --bin strata
strata=$CARGO_TARGET_DIR/release/strata
work=$(mktemp -d /var/tmp/strata-bench-XXXXXX)
cleanup() {
  "$strata" --data-dir "$work/strata" rm -f $("$strata" --data-dir "$work/strata" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
  podman --root "$work/podman/root" --runroot "$work/podman/run" rmi -af >/dev/null 2>&1 || true
  podman --root "$work/podman/root" --runroot "$work/podman/run" system reset -f >/dev/null 2>&1 || true
  umount -R "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
scripts/demo-images.sh "$strata" "$work/strata" >/dev/null
"$strata" --data-dir "$work/strata" image export localhost/busybox "$work/busybox.tar"
podman="podman --root $work/podman/root --runroot $work/podman/run --runtime crun --cgroup-manager cgroupfs --events-backend none"
$podman load -q -i "$work/busybox.tar" >/dev/null
unified=/sys/fs/cgroup/unified
unshare --mount --propagation private sh -c "
  if [ -d $unified ]; then mount -t tmpfs -o size=4m none $unified; fi
  hyperfine ${HYPERFINE_FLAGS:---style basic} --warmup 3 --runs $runs -N \
    -n 'strata run' '$strata --data-dir $work/strata run --rm localhost/busybox /bin/true' \
    -n 'podman run (crun)' '$podman run --rm --network none --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 localhost/busybox /bin/true'"
