#!/usr/bin/env bash
# Sets up and runs cloudbrain locally on a Debian bookworm machine: installs what is missing,
# builds a Release binary, starts a throwaway PostgreSQL 15, deploys the schema, creates a token
# and serves the `fake` provider (named gce, as in the original README) on 127.0.0.1:8080.
# Ctrl-C stops the service and removes the database.
#
#   bash deploy/dev/run-local.sh            CLOUDBRAIN_LISTEN=127.0.0.1:9090 to move it
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$root"

bash deploy/dev/install-deps.sh
build=$root/build/release
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLOUDBRAIN_TESTS=OFF \
  -DCLOUDBRAIN_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target cloudbrain

# shellcheck source=tests/support/pg.sh
source "$root/tests/support/pg.sh"
cb_pg_start
trap 'cb_pg_destroy >/dev/null 2>&1 || true' EXIT
cb_schema_deploy "$DATABASE_URL" >/dev/null

config=$CB_PG_DIR/cloudbrain.ini
cat >"$config" <<INI
listen = ${CLOUDBRAIN_LISTEN:-127.0.0.1:8080}
database-url = $DATABASE_URL

[provider.gce]
type = fake
zones = zone-a zone-b
boot-delay = 2s
INI

token=$("$build/actors/cloudbrain" token create "local development" | sed 's/^generated token: //')
cat <<MSG

cloudbrain is starting on http://${CLOUDBRAIN_LISTEN:-127.0.0.1:8080} with the fake provider 'gce'.
Your token: $token
Try:
  curl -s -H "Authorization: token $token" -H 'Content-Type: application/json' \\
    -d '{"provider":"gce","image":"image-2016-01-01","instance_type":"standard"}' \\
    http://${CLOUDBRAIN_LISTEN:-127.0.0.1:8080}/instances

MSG
"$build/actors/cloudbrain" serve --config "$config"
