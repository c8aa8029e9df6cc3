#!/usr/bin/env bash
# Pull + unpack of the same multi-layer image from a loopback registry: Strata
# (`strata pull` + `strata image unpack`) vs `skopeo copy` + `umoci unpack`, run one after the other by hyperfine with a
# fresh destination each run. The ratio is the figure (goal: strata ≤ 1.0×).
# Usage: bench/image-pull.sh [RUNS]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/strata-target}
runs=${1:-10}
scripts/install-deps.sh bench
for tool in skopeo umoci docker-registry; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh bench installs it)" >&2; exit 1; }
done
cargo build --release --bin strata
strata=$CARGO_TARGET_DIR/release/strata
work=$(mktemp -d /var/tmp/strata-pull-bench-XXXXXX)
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  umount -R "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<CONF
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
log:
  level: error
CONF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
# A four-layer image: busybox plus three layers of 16 MiB of random data each.
src=$work/src
scripts/demo-images.sh "$strata" "$src" >/dev/null
mkdir -p "$work/ctx"
cat > "$work/ctx/Containerfile" <<'CF'
FROM localhost/busybox:latest
RUN head -c 16777216 /dev/urandom > /a
RUN head -c 16777216 /dev/urandom > /b
RUN head -c 16777216 /dev/urandom > /c
CF
"$strata" --data-dir "$src" image build -q -t localhost/bench:latest "$work/ctx" >/dev/null
image=127.0.0.1:$port/bench/multi:latest
"$strata" --data-dir "$src" push -q localhost/bench:latest "$image" >/dev/null
hyperfine ${HYPERFINE_FLAGS:---style basic} --runs "$runs" -N \
  --prepare "rm -rf $work/pull-s $work/rootfs $work/skopeo $work/bundle" \
  -n 'strata pull + unpack' "sh -c '$strata --data-dir $work/pull-s pull -q $image >/dev/null && $strata --data-dir $work/pull-s image unpack $image $work/rootfs'" \
  -n 'skopeo copy + umoci unpack' "sh -c 'skopeo copy -q --src-tls-verify=false docker://$image oci:$work/skopeo:latest && umoci unpack --image $work/skopeo:latest $work/bundle >/dev/null'"
