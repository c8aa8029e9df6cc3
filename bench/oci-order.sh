#!/usr/bin/env bash
# Records the functions `strata-runc` runs over a container lifecycle and writes them to
# crates/strata/oci.order, the symbol ordering the strata binary is linked with (see
# bench/oci-order/main.rs). Run it (as root) after changes to the OCI entry path, the
# runtime or the toolchain; `--check` only reports how much of the file still matches.
# Usage: bench/oci-order.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/strata-target}
order=crates/strata/oci.order
# Without -p, as `make build` does: the same workspace-wide features, hence the same
# symbol names.
cargo build --release --bin strata --bin oci-order
strata=$CARGO_TARGET_DIR/release/strata
tool=$CARGO_TARGET_DIR/release/oci-order
if [ "${1:-}" = --check ]; then
  exec "$tool" --strata "$strata" --check "$order"
fi
"$tool" --strata "$strata" --out "$order"
echo "relink: cargo build --release --bin strata (then bench/runtime-lifecycle.sh)"
