#!/usr/bin/env bash
# Starts a single-node Strata: `strata up` (API server + node agent) in the background,
# logging to <data-dir>/strata-up.log, then runs the demo pod (examples/demo-web.yaml).
set -euo pipefail
strata=$1
data_dir=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$data_dir"
kubeconfig="$data_dir/kubeconfig.yaml"
pidfile="$data_dir/strata-up.pid"

"$here/demo-images.sh" "$strata" "$data_dir" --if-missing >/dev/null
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "strata up is already running (pid $(cat "$pidfile"))."
else
  nohup "$strata" --data-dir "$data_dir" up >>"$data_dir/strata-up.log" 2>&1 &
  echo $! >"$pidfile"
fi
node=$(hostname | tr '[:upper:]' '[:lower:]')
for _ in $(seq 1 100); do
  if kubectl --kubeconfig "$kubeconfig" get node "$node" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
sed "s/NODE_NAME/$node/" "$here/../examples/demo-web.yaml" | kubectl --kubeconfig "$kubeconfig" apply -f - >/dev/null
echo "Strata is up (data dir $data_dir, log $data_dir/strata-up.log)."
echo "  kubectl:         export KUBECONFIG=$kubeconfig; kubectl get nodes,pods"
echo "  the demo page:   curl http://127.0.0.1:8081/"
echo "  stop it:         make down"
kubectl --kubeconfig "$kubeconfig" get nodes
