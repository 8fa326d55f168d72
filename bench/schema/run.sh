#!/usr/bin/env bash
# What a schema change does to the rows a create writes, measured at the database alone:
# pgbench runs create_batch.sql (one batch of 64 creates a transaction, as the service writes
# them) against the schema up to BEFORE and against the whole schema, in alternating rounds on
# one durable cluster, and prints creates per second of each and their ratio, beside
# PostgreSQL's own single-row INSERT (../http/pgbench_insert.sql) of the same round.
#
#   bash bench/schema/run.sh BEFORE [ROUNDS=3] [SECONDS=5] [CLIENTS=2]
#
# BEFORE is a change of schema/sqitch.plan (e.g. the one before the change measured). CLIENTS
# is the number of batches in flight at once (the service runs two).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
here=$root/bench/schema
before=${1:?"usage: run.sh BEFORE [ROUNDS] [SECONDS] [CLIENTS]"}
rounds=${2:-3}
seconds=${3:-5}
clients=${4:-2}
((rounds > 0 && rounds <= 10)) || { echo "ROUNDS must be 1..10" >&2; exit 2; }
((seconds > 0 && seconds <= 60)) || { echo "SECONDS must be 1..60" >&2; exit 2; }
((clients > 0 && clients <= 32)) || { echo "CLIENTS must be 1..32" >&2; exit 2; }
grep -q "^$before " "$root/schema/sqitch.plan" || { echo "no change '$before'" >&2; exit 2; }

# shellcheck source=tests/support/pg.sh
source "$root/tests/support/pg.sh"
CB_PG_DURABLE=1 cb_pg_start >/dev/null
trap 'cb_pg_destroy >/dev/null 2>&1 || true' EXIT
cb_schema_deploy "$DATABASE_URL" >/dev/null
target=$(_cb_sqitch_target "$DATABASE_URL")
last=$(awk '/^[a-z]/ { c = $1 } END { print c }' "$root/schema/sqitch.plan")
cb_psql -q -c "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, image text NOT NULL,
  provider text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
cb_psql -q -c "INSERT INTO tokens (description, salt, hash)
  VALUES ('bench', decode(repeat('01', 32), 'hex'), decode(repeat('02', 32), 'hex'))"

# Creates per second (64 a transaction), or single-row INSERTs per second.
tps() { # SCRIPT CLIENTS
  "$CB_PG_BIN/pgbench" -n -M prepared -c "$2" -j "$2" -T "$seconds" -f "$1" "$DATABASE_URL" \
    2>/dev/null | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p'
}

echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at the start; $before against $last;" \
  "$clients batches of 64 at once, ${seconds}s each"
printf '%-6s %12s %14s %14s %8s\n' round "INSERT/s" "$before" "$last" ratio
ratios=()
for ((round = 1; round <= rounds; round++)); do
  single=$(tps "$root/bench/http/pgbench_insert.sql" 32)
  _cb_sqitch revert -y --target "$target" --to "$before" >/dev/null
  cb_psql -q -c "VACUUM ANALYZE" -c "CHECKPOINT"
  a=$(tps "$here/create_batch.sql" "$clients")
  _cb_sqitch deploy --target "$target" >/dev/null
  cb_psql -q -c "VACUUM ANALYZE" -c "CHECKPOINT"
  b=$(tps "$here/create_batch.sql" "$clients")
  read -r a b ratio <<<"$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.0f %.0f %.2f", a * 64, b * 64, b / a }')"
  ratios+=("$ratio")
  printf '%-6s %12.0f %14s %14s %8s\n' "$round" "$single" "$a" "$b" "$ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END {
  printf "creates/s, %s over %s: median %s (min %s, max %s)\n", "after", "before",
         v[int((NR + 1) / 2)], v[1], v[NR] }'
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
