#!/usr/bin/env bash
# The HTTP API under load: wrk against POST /instances and an authenticated GET /instances/:id,
# on a Release build with the fake provider and a throwaway PostgreSQL, all on loopback.
# Prints wrk's requests/s and latency percentiles for each.
#
#   bash bench/http/run.sh [SECONDS=10] [CONNECTIONS=32]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
seconds=${1:-10}
connections=${2:-32}
((seconds > 0 && seconds <= 120)) || { echo "SECONDS must be 1..120" >&2; exit 2; }

bash "$root/deploy/dev/install-deps.sh" >/dev/null
build=${CLOUDBRAIN_BENCH_BUILD:-$root/build/release}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLOUDBRAIN_TESTS=OFF \
  -DCLOUDBRAIN_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target cloudbrain >/dev/null
bin=$build/actors/cloudbrain

# shellcheck source=tests/support/pg.sh
source "$root/tests/support/pg.sh"
cb_pg_start >/dev/null
service_pid=
cleanup() {
  [[ -n $service_pid ]] && kill -TERM "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  cb_pg_destroy >/dev/null 2>&1 || true
}
trap cleanup EXIT
cb_schema_deploy "$DATABASE_URL" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
config=$CB_PG_DIR/bench.ini
cat >"$config" <<INI
listen = 127.0.0.1:$port
database-url = $DATABASE_URL
log-level = warn
[provider.gce]
type = fake
zones = zone-a zone-b zone-c
boot-delay = 10ms
capacity-per-zone = 1000000
rate-limit = 100000
max-in-flight = 500
INI
export CLOUDBRAIN_TOKEN
CLOUDBRAIN_TOKEN=$("$bin" token create bench | sed 's/^generated token: //')
"$bin" serve --config "$config" >"$CB_PG_DIR/serve.log" 2>&1 &
service_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done

export CLOUDBRAIN_INSTANCE
CLOUDBRAIN_INSTANCE=$(curl -sf -H "Authorization: token $CLOUDBRAIN_TOKEN" -H 'Content-Type: application/json' \
  -d '{"provider":"gce","image":"bench"}' "http://127.0.0.1:$port/instances" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

echo "== cloudbrain $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, ${seconds}s, $connections connections"
echo "== GET /instances/:id (authenticated, token cached after the first request)"
wrk -t 2 -c "$connections" -d "${seconds}s" --latency -s "$root/bench/http/get_instance.lua" \
  "http://127.0.0.1:$port" | sed -n '/Latency Distribution/,$p'
echo "== POST /instances (each creates an instance and a job; the fake cloud boots them)"
wrk -t 2 -c "$connections" -d "${seconds}s" --latency -s "$root/bench/http/post_instance.lua" \
  "http://127.0.0.1:$port" | sed -n '/Latency Distribution/,$p'
created=$(cb_psql -At -c "select count(*) from instances")
running=$(cb_psql -At -c "select count(*) from instances where state = 'running'")
echo "== instances created: $created, running at the end: $running"
