#!/bin/sh
# Builds the demo images from Debian's busybox-static, so a fresh machine can run
# something without a network: localhost/busybox:latest (a shell) and
# localhost/httpd:latest (busybox httpd serving a page on port 8080).
# Usage: demo-images.sh STRATA DATA_DIR [--if-missing]
set -eu
strata=$1
data_dir=$2
if [ "${3:-}" = --if-missing ] \
  && "$strata" --data-dir "$data_dir" image inspect localhost/busybox:latest localhost/httpd:latest >/dev/null 2>&1; then
  exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/busybox-rootfs.sh" "$work/rootfs"
"$strata" --data-dir "$data_dir" image import-rootfs \
  --change 'CMD ["sh"]' \
  --change 'LABEL org.opencontainers.image.description="busybox from Debian busybox-static"' \
  "$work/rootfs" localhost/busybox:latest >/dev/null
"$strata" --data-dir "$data_dir" image import-rootfs \
  --change 'ENTRYPOINT ["httpd", "-f", "-v", "-h", "/var/www"]' \
  --change 'CMD ["-p", "8080"]' \
  --change 'EXPOSE 8080' \
  --change 'USER nobody' \
  --change 'LABEL org.opencontainers.image.description="busybox httpd serving /var/www on port 8080"' \
  "$work/rootfs" localhost/httpd:latest >/dev/null
"$strata" --data-dir "$data_dir" image ls
