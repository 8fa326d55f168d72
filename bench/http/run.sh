#!/usr/bin/env bash
# The HTTP API's throughput targets, measured side by side in one run and printed as ratios:
#
#   1. durable POST /instances      / PostgreSQL's own single-row durable INSERTs (pgbench)
#   2. authenticated GET /instances/:id / the server's own GET /livez
#   3. GET /instances (100 a page) p99 at 8 connections, with 10k, 100k and 1M instances
#   4. the service's RSS with 100k+ instances, after each of five load rounds, and its peak
#
# Beside each POST and GET figure: the CPU microseconds a request cost the service and the
# PostgreSQL server over the run (their CPU time from /proc, whatever else the machine runs).
# Beside the first target, its ceiling with no service at all: the service's own create
# statement run by pgbench, 32 creates a statement from 2 clients, against the same INSERT.
#
# A Release build with the fake provider, wrk and pgbench on loopback, and a PostgreSQL cluster
# of its own with fsync and synchronous_commit ON (the test clusters of tests/support/pg.sh run
# without them), shared by pgbench and the service. Every load is bounded in time. Ratios are
# what to compare between runs: the machine's other work moves the absolute figures, but each
# ratio's two sides run one right after the other.
#
#   bash bench/http/run.sh [ROUNDS=3] [SECONDS=5] [CONNECTIONS=64]
#   CLOUDBRAIN_BENCH_MILLION=0   skip the 1M-row listing (it loads 900k more rows, ~1 min)
#   CLOUDBRAIN_BENCH_RSS=0       skip the five RSS rounds (for comparing the ratios alone)
#   CLOUDBRAIN_BENCH_BIN=PATH    measure this binary instead of building build/release
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
here=$root/bench/http
rounds=${1:-3}
seconds=${2:-5}
connections=${3:-64}
((rounds > 0 && rounds <= 10)) || { echo "ROUNDS must be 1..10" >&2; exit 2; }
((seconds > 0 && seconds <= 60)) || { echo "SECONDS must be 1..60" >&2; exit 2; }
((connections > 0 && connections <= 1000)) || { echo "CONNECTIONS must be 1..1000" >&2; exit 2; }
pgbench_clients=32
list_connections=8

if [[ -n ${CLOUDBRAIN_BENCH_BIN:-} ]]; then
  bin=$CLOUDBRAIN_BENCH_BIN
else
  bash "$root/deploy/dev/install-deps.sh" >/dev/null
  build=$root/build/release
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLOUDBRAIN_BENCH=ON \
    >/dev/null
  cmake --build "$build" -j 2 --target cloudbrain >/dev/null
  bin=$build/actors/cloudbrain
fi

# shellcheck source=tests/support/pg.sh
source "$root/tests/support/pg.sh"
CB_PG_DURABLE=1 cb_pg_start >/dev/null
service_pid=
cleanup() {
  if [[ -n $service_pid ]]; then
    kill -TERM "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  cb_pg_destroy >/dev/null 2>&1 || true
}
trap cleanup EXIT
cb_schema_deploy "$DATABASE_URL" >/dev/null
durability=$(cb_psql -At -c "SELECT 'fsync=' || current_setting('fsync') || ' synchronous_commit='
  || current_setting('synchronous_commit') || ' full_page_writes='
  || current_setting('full_page_writes')")
[[ $durability == "fsync=on synchronous_commit=on full_page_writes=on" ]] ||
  { echo "the bench cluster is not durable: $durability" >&2; exit 1; }
cb_psql -q -c "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, image text NOT NULL,
  provider text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"

port=$(_cb_pg_free_port)
config=$CB_PG_DIR/bench.ini
# The fake cloud boots what the creates ask for at a cloud's pace (the rate-limit of the
# README's GCE example), so that the jobs behind the creates run throughout, as they would,
# without drowning what is measured. The bulk-loaded rows have no VM at the fake: the
# reconciler, which would mark them vanished, waits an hour.
cat >"$config" <<INI
listen = 127.0.0.1:$port
database-url = $DATABASE_URL
log-level = warn
reconcile-interval = 1h
[provider.gce]
type = fake
zones = zone-a zone-b zone-c
boot-delay = 10ms
capacity-per-zone = 10000000
rate-limit = 20
max-in-flight = 50
INI
export CLOUDBRAIN_TOKEN CLOUDBRAIN_IDS CLOUDBRAIN_BENCH_DIR=$here
# Scope all: the bulk-loaded rows have no creator, and the GETs and listings are to find them.
CLOUDBRAIN_TOKEN=$("$bin" token create --scope all bench | sed 's/^generated token: //')
"$bin" serve --config "$config" >"$CB_PG_DIR/serve.log" 2>&1 &
service_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
url=http://127.0.0.1:$port

# bulk_to N: instances (running, no VM behind them) until the table holds N, older than any
# the bench creates; loaded as the superuser with triggers off, then vacuumed, analyzed and
# checkpointed, so that what follows measures the service rather than the load's aftermath.
bulk_to() {
  cb_psql -q <<SQL
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO instances (id, provider, image, instance_type, zone, tags, ip_address, upstream_id,
                       state, created_at, updated_at)
SELECT gen_random_uuid(), 'gce', 'bulk', 'standard', 'zone-a', '{"load":"bulk"}', '203.0.113.9',
       'bulk-' || g, 'running', now() - interval '1 day' - g * interval '1 ms',
       now() - interval '1 day'
FROM generate_series(1, greatest(0, $1 - (SELECT count(*) FROM instances))) g;
COMMIT;
VACUUM (ANALYZE) instances;
CHECKPOINT;
SQL
}

# wrk_run SCRIPT CONNECTIONS [PATH]: "rps p99_ms non2xx socket_errors"
wrk_run() {
  local out
  out=$(wrk -t 2 -c "$2" -d "${seconds}s" --timeout 10s -s "$here/$1" "$url${3:-}" |
    grep '^RESULT ') || { echo "wrk failed: $1" >&2; return 1; }
  awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
         printf "%.0f %.2f %d %d\n", v["requests"] / (v["duration_us"] / 1e6), v["p99_us"] / 1000,
                v["non2xx"], v["socket_errors"] }' <<<"$out"
}

# pgbench_tps [SCRIPT CLIENTS]: transactions a second (by default the single-row INSERT).
pgbench_tps() {
  "$CB_PG_BIN/pgbench" -n -M prepared -c "${2:-$pgbench_clients}" -j 2 -T "$seconds" \
    -f "${1:-$here/pgbench_insert.sql}" "$DATABASE_URL" 2>/dev/null |
    sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' | cut -d. -f1
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$service_pid/status"; }
# CPU time (user + system, in clock ticks) of the service, and of the PostgreSQL server: the
# postmaster and every process it runs now (backends, WAL writer, checkpointer, ...).
cpu_ticks() {
  local t=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
service_ticks() { cpu_ticks "$service_pid"; }
postgres_ticks() { cpu_ticks "$CB_PG_PID" $(pgrep -P "$CB_PG_PID"); }
ticks_per_second=$(getconf CLK_TCK)
# per_request TICKS REQUESTS_PER_SECOND: CPU microseconds a request over the run.
per_request() {
  awk -v t="$1" -v r="$2" -v s="$seconds" -v hz="$ticks_per_second" \
    'BEGIN { printf "%.0f", (r > 0 ? t / hz * 1e6 / (r * s) : 0) }'
}
# The VMs the fake cloud holds: it lives in the process, so its VMs are in the RSS too.
fake_vms() {
  curl -sf -H "Authorization: token $CLOUDBRAIN_TOKEN" "$url/providers" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["providers"][0]["details"]["vms"])'
}
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$service_pid/status"; }

list_p99() {
  local r
  r=$(wrk_run list_instances.lua "$list_connections")
  read -r rps p99 bad errs <<<"$r"
  ((bad == 0 && errs == 0)) || { echo "list: $bad non-2xx, $errs socket errors" >&2; exit 1; }
  echo "$p99 ms p99 ($rps/s)"
}

revision=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
echo "== cloudbrain $revision, $(nproc) cores," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
echo "== PostgreSQL 15 of its own: $durability; pgbench -M prepared, $pgbench_clients clients;" \
  "wrk ${seconds}s, 2 threads"
curl -sf -H "Authorization: token $CLOUDBRAIN_TOKEN" "$url/instances?limit=1" >/dev/null

bulk_to 10000
CLOUDBRAIN_IDS=$CB_PG_DIR/ids
cb_psql -At -c "SELECT id FROM instances ORDER BY random() LIMIT 1000" >"$CLOUDBRAIN_IDS"
list_10k=$(list_p99)
bulk_to 100000
list_100k=$(list_p99)

echo "RSS after the listings: $(rss_kb) kB"
echo "(CPU: microseconds of CPU a request, the service's / PostgreSQL's, over the run)"
printf '\n%-6s %10s %10s %8s | %10s %10s %8s\n' round "pgbench/s" "POST/s" ratio \
  "livez/s" "GET/s" ratio
post_ratios=() get_ratios=()
for ((round = 1; round <= rounds; round++)); do
  tps=$(pgbench_tps)
  before=$(cb_psql -At -c "SELECT count(*) FROM instances")
  service0=$(service_ticks) postgres0=$(postgres_ticks)
  read -r post_rps post_p99 post_bad post_errs <<<"$(wrk_run post_instance.lua "$connections")"
  post_cpu="$(per_request $(($(service_ticks) - service0)) "$post_rps")/$(per_request \
    $(($(postgres_ticks) - postgres0)) "$post_rps")"
  after=$(cb_psql -At -c "SELECT count(*) FROM instances")
  post_ok=$(awk -v r="$post_rps" -v s="$seconds" -v b="$post_bad" \
    'BEGIN { printf "%d", r * s - b }')
  # Every 201 is a committed row (more rows than 201s: answers still on their way at the end).
  ((after - before >= post_ok)) ||
    { echo "POST: $post_ok answers 2xx but only $((after - before)) rows" >&2; exit 1; }
  read -r livez_rps _ _ _ <<<"$(wrk_run livez.lua "$connections")"
  service0=$(service_ticks) postgres0=$(postgres_ticks)
  read -r get_rps get_p99 get_bad get_errs <<<"$(wrk_run get_instance.lua "$connections")"
  get_cpu="$(per_request $(($(service_ticks) - service0)) "$get_rps")/$(per_request \
    $(($(postgres_ticks) - postgres0)) "$get_rps")"
  ((get_bad == 0 && get_errs == 0)) ||
    { echo "GET: $get_bad non-2xx, $get_errs errors" >&2; exit 1; }
  post_ratio=$(awk -v a="$post_rps" -v b="$tps" 'BEGIN { printf "%.2f", a / b }')
  get_ratio=$(awk -v a="$get_rps" -v b="$livez_rps" 'BEGIN { printf "%.2f", a / b }')
  post_ratios+=("$post_ratio")
  get_ratios+=("$get_ratio")
  printf '%-6s %10s %10s %8s | %10s %10s %8s   (POST p99 %s ms, %s non-2xx, CPU %s us;' \
    "$round" "$tps" "$post_rps" "$post_ratio" "$livez_rps" "$get_rps" "$get_ratio" "$post_p99" \
    "$post_bad" "$post_cpu"
  printf ' GET p99 %s ms, CPU %s us;' "$get_p99" "$get_cpu"
  echo " RSS $(rss_kb) kB)"
done

rss=()
vms=()
if [[ ${CLOUDBRAIN_BENCH_RSS:-1} != 0 ]]; then
  echo
  echo "== RSS across five load rounds (POST, GET, list; ${seconds}s each) with" \
    "$(cb_psql -At -c "SELECT count(*) FROM instances") instances"
  for ((round = 1; round <= 5; round++)); do
    wrk_run post_instance.lua "$connections" >/dev/null
    wrk_run get_instance.lua "$connections" >/dev/null
    wrk_run list_instances.lua "$list_connections" >/dev/null
    rss+=("$(rss_kb)")
    vms+=("$(fake_vms)")
  done
  echo "RSS after each round (kB): ${rss[*]}; peak while loaded: $(hwm_kb) kB"
  echo "VMs the fake cloud holds after each round (in the RSS too): ${vms[*]}"
fi

list_1m=skipped
if [[ ${CLOUDBRAIN_BENCH_MILLION:-1} != 0 ]]; then
  bulk_to 1000000
  list_1m=$(list_p99)
fi

# The database alone: the service's own create statement (create_batch_sql), 32 creates a
# statement from 2 clients (the service's two batches in flight), with no HTTP in front of it,
# against the single-row INSERT run just before: how far group commit of what a create writes
# can go on this machine, whatever the service does.
python3 "$here/create_statement.py" "$root/actors/instance_store.cpp" 32 \
  "${CLOUDBRAIN_TOKEN%%-*}" >"$CB_PG_DIR/create_statement.sql"
alone_insert=$(pgbench_tps)
alone_tps=$(pgbench_tps "$CB_PG_DIR/create_statement.sql" 2)
[[ -n $alone_tps ]] || { echo "the create statement alone did not run" >&2; exit 1; }
alone_creates=$((alone_tps * 32))
alone_ratio=$(awk -v a="$alone_creates" -v b="$alone_insert" 'BEGIN { printf "%.2f", a / b }')

summary() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
  printf "median %s (min %s, max %s, %d rounds)", v[int((NR + 1) / 2)], v[1], v[NR], NR }'; }
echo
echo "== targets"
echo "POST /instances / pgbench INSERT:  $(summary "${post_ratios[@]}")   target >= 1.5"
echo "  ceiling at the database alone:  $alone_ratio (its own create statement, 32 a statement," \
  "2 clients: $alone_creates creates/s against $alone_insert INSERTs/s)"
echo "GET /instances/:id / GET /livez:   $(summary "${get_ratios[@]}")   target >= 0.5"
echo "GET /instances p99, 8 connections: 10k rows $list_10k; 100k $list_100k; 1M $list_1m" \
  "  target < 10 ms, flat"
if ((${#rss[@]} == 5)); then
  echo "RSS: $(((rss[4] + 1023) / 1024)) MB after round 5, peak $((($(hwm_kb) + 1023) / 1024))" \
    "MB, growth round 1 -> 5: $(((rss[4] - rss[0]) / 1024)) MB while the fake's VMs went" \
    "${vms[0]} -> ${vms[4]}   target < 64 MB, no growth"
else
  echo "RSS: skipped"
fi
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
