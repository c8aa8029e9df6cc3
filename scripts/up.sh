#!/usr/bin/env bash
# Starts a single-node Strata. For now (milestones 1–2) that is a demo container from
# the demo image localhost/httpd: busybox httpd serving a page on 127.0.0.1:8080.
set -euo pipefail
strata=$1
data_dir=$2
here=$(cd "$(dirname "$0")" && pwd)

"$here/demo-images.sh" "$strata" "$data_dir" --if-missing >/dev/null
"$strata" --data-dir "$data_dir" rm -f demo-web >/dev/null 2>&1 || true
"$strata" --data-dir "$data_dir" run -d --name demo-web --network host -m 64M --cpus 0.5 \
  localhost/httpd -p 127.0.0.1:8080 >/dev/null
echo "Strata is up (data dir $data_dir)."
echo "  demo container:  $strata --data-dir $data_dir ps"
echo "  its web page:    curl http://127.0.0.1:8080/"
echo "  images:          $strata --data-dir $data_dir image ls"
echo "  stop it:         make down"
"$strata" --data-dir "$data_dir" ps
