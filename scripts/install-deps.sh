#!/usr/bin/env bash
# Installs, quietly and only when missing, the Debian packages Strata's build, tests
# and benchmarks need. Usage: scripts/install-deps.sh [build|test|bench]
set -euo pipefail

build=(pkg-config libseccomp-dev gcc)
test=(busybox-static nftables podman uidmap iproute2 tmux docker-registry apache2-utils openssl python3-venv)
bench=(runc crun hyperfine skopeo umoci curl wrk)

wanted=("${build[@]}")
case "${1:-test}" in
  build) ;;
  test) wanted+=("${test[@]}") ;;
  bench) wanted+=("${test[@]}" "${bench[@]}") ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "strata: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "strata: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
