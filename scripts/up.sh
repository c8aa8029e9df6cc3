#!/usr/bin/env bash
# Starts a single-node Strata. For now (milestone 1) that is a demo container: busybox
# httpd serving a page on 127.0.0.1:8080 from a busybox root file system.
set -euo pipefail
strata=$1
data_dir=$2
rootfs="$data_dir/demo/busybox"

if [ ! -x "$rootfs/bin/busybox" ]; then
  mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp,root,var/www}
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
  echo 'root:x:0:' > "$rootfs/etc/group"
  echo '<h1>Hello from a Strata container</h1>' > "$rootfs/var/www/index.html"
fi

"$strata" --data-dir "$data_dir" rm -f demo-web >/dev/null 2>&1 || true
"$strata" --data-dir "$data_dir" run -d --name demo-web --network host -m 64M --cpus 0.5 \
  --rootfs "$rootfs" -- httpd -f -p 127.0.0.1:8080 -h /var/www >/dev/null
echo "Strata is up (data dir $data_dir)."
echo "  demo container:  $strata --data-dir $data_dir ps"
echo "  its web page:    curl http://127.0.0.1:8080/"
echo "  stop it:         make down"
"$strata" --data-dir "$data_dir" ps
