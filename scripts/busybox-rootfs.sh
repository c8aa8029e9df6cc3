#!/bin/sh
# Builds a busybox root file system in DIR from Debian's busybox-static: /bin/busybox
# plus a symlink per applet, /etc/passwd and /etc/group (root, user 1000, nobody), the
# empty mount points a container needs, and a web root with a page (/var/www).
# The one recipe for the demo images, `make up` and the tests.
set -eu
root=${1:?usage: busybox-rootfs.sh DIR}
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "busybox-rootfs.sh: $busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$root"
cd "$root"
mkdir -p bin sbin etc proc sys dev tmp root home/user var/www
chmod 1777 tmp
cp "$busybox" bin/busybox
for applet in $("$busybox" --list); do
  case "$applet" in busybox|*/*) continue ;; esac
  [ -e "bin/$applet" ] || ln -s busybox "bin/$applet"
done
cat > etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/:/bin/false
PASSWD
cat > etc/group <<'GROUP'
root:x:0:
user:x:1000:
nogroup:x:65534:
GROUP
echo '<h1>Hello from a Strata container</h1>' > var/www/index.html
