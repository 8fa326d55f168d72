#!/usr/bin/env bash
# deploy/cluster/run-three-nodes.sh [CONFIG]: three cloudbrain nodes on this machine, on one
# PostgreSQL, behind HAProxy (deploy/cluster/haproxy.cfg). No containers: three processes and a
# load balancer, as three machines would run them (deploy/cluster/README.md).
#
#   DATABASE_URL=postgresql://cloudbrain@db/cloudbrain bash deploy/cluster/run-three-nodes.sh \
#     deploy/cloudbrain.conf.example
#
# Environment:
#   DATABASE_URL          the request path's database (through PgBouncer, if you run one)
#   DATABASE_DIRECT_URL   the direct connection for LISTEN, locks and heartbeats (default: the same)
#   CLOUDBRAIN            the binary (default: cloudbrain on the PATH)
#   LISTEN                HAProxy's address (default 127.0.0.1:8080)
#   BASE_PORT             node-N listens on 127.0.0.1:BASE_PORT+N (default 8080: 8081, 8082, 8083)
#   ADMIN_BASE_PORT       node-N's admin-listen (/livez, /readyz, /metrics, /nodes) is
#                         127.0.0.1:ADMIN_BASE_PORT+N (default BASE_PORT+10: 8091, 8092, 8093)
#   RUN_DIR               where the logs and HAProxy's settings go (default: a new temporary one)
# CONFIG (optional) gives the providers and other keys, as for `cloudbrain serve --config`;
# `listen` and `node-name` are set per node here. The schema must be deployed already.
# Ctrl-C (or SIGTERM) stops HAProxy and the nodes, each by its own process id, and waits for them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
config=${1:-}
cloudbrain=${CLOUDBRAIN:-cloudbrain}
listen=${LISTEN:-127.0.0.1:8080}
base_port=${BASE_PORT:-8080}
admin_base_port=${ADMIN_BASE_PORT:-$((base_port + 10))}
run_dir=${RUN_DIR:-$(mktemp -d /tmp/cloudbrain-cluster-XXXXXX)}
: "${DATABASE_URL:?set DATABASE_URL to the cloudbrain database}"
direct_url=${DATABASE_DIRECT_URL:-$DATABASE_URL}

command -v haproxy >/dev/null || { echo "run-three-nodes: haproxy is not installed" >&2; exit 1; }
command -v "$cloudbrain" >/dev/null || { echo "run-three-nodes: no $cloudbrain" >&2; exit 1; }
mkdir -p "$run_dir"

pids=()
stop() {
  trap - INT TERM EXIT
  echo "run-three-nodes: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop INT TERM EXIT

for n in 1 2 3; do
  port=$((base_port + n))
  admin_port=$((admin_base_port + n))
  args=(serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin_port"
    --node-name "node-$n" --database-url "$DATABASE_URL" --database-direct-url "$direct_url")
  if [[ -n $config ]]; then args+=(--config "$config"); fi
  "$cloudbrain" "${args[@]}" >>"$run_dir/node-$n.log" 2>&1 &
  pids+=($!)
  export "CB_NODE$n=127.0.0.1:$port" "CB_NODE${n}_ADMIN_PORT=$admin_port"
done
export CB_LISTEN=$listen
haproxy -db -f "$here/haproxy.cfg" >>"$run_dir/haproxy.log" 2>&1 &
pids+=($!)

echo "run-three-nodes: node-1..3 on 127.0.0.1:$((base_port + 1))-$((base_port + 3)) (admin" \
  "$((admin_base_port + 1))-$((admin_base_port + 3))), HAProxy on $listen; logs in $run_dir"
# Until a signal, or until one of them exits on its own (which stops the others too).
while true; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run-three-nodes: process $pid exited; see $run_dir" >&2
      exit 1
    fi
  done
  sleep 1
done
