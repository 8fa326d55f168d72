#!/usr/bin/env bash
# tests/support/with-pg.sh CMD [ARGS...]
#
# Starts a throwaway PostgreSQL 15 cluster (tests/support/pg.sh), deploys schema/ into it,
# runs CMD with DATABASE_URL, CB_PG_DIR, CB_PG_PORT, CB_PG_PID exported (and PGHOST, PGPORT,
# PGUSER, PGDATABASE, so that a bare `psql` reaches the same database), then always destroys
# the cluster: on exit, on SIGINT/SIGTERM/SIGHUP (forwarded to CMD as SIGTERM), and, through a
# detached watchdog, even when this script is SIGKILLed.
# Exits with CMD's exit status (1 if the cluster or the schema could not be set up, 2 on usage).
# Setup output goes to stderr, so CMD's stdout is CMD's alone.
#   CB_WITH_PG_SCHEMA=0   start the cluster but do not deploy the schema
#   CB_WITH_PG_KEEP=1     leave the cluster directory (stopped) for post-mortem
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=tests/support/pg.sh
source "$here/pg.sh"

if (($# == 0)); then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

cb_with_pg_dir=$(mktemp -d /tmp/cloudbrain-pg-XXXXXX) || exit 1
chmod 755 "$cb_with_pg_dir"
touch "$cb_with_pg_dir/.cloudbrain-pg"
cb_with_pg_child=""

# shellcheck disable=SC2317 # called from the EXIT trap
cb_with_pg_cleanup() {
  if [[ ${CB_WITH_PG_KEEP:-0} == 1 ]]; then
    CB_PG_DIR=$cb_with_pg_dir cb_pg_stop fast || true
    echo "with-pg.sh: kept $cb_with_pg_dir" >&2
  else
    cb_pg_destroy "$cb_with_pg_dir" || true
  fi
}
# shellcheck disable=SC2317 # called from the signal traps
cb_with_pg_signal() { # $1 = exit status to use when there is no child yet
  if [[ -n $cb_with_pg_child ]]; then
    kill -TERM "$cb_with_pg_child" 2>/dev/null
  else
    exit "$1"
  fi
}
trap cb_with_pg_cleanup EXIT
trap 'cb_with_pg_signal 129' HUP
trap 'cb_with_pg_signal 130' INT
trap 'cb_with_pg_signal 143' TERM

if [[ ${CB_WITH_PG_KEEP:-0} != 1 ]]; then
  cb_pg_watchdog $$ "$cb_with_pg_dir"
fi
cb_pg_start "$cb_with_pg_dir" >&2 || exit 1
if [[ ${CB_WITH_PG_SCHEMA:-1} != 0 ]]; then
  if ! cb_schema_deploy "$DATABASE_URL" >&2; then
    echo "with-pg.sh: schema deploy failed" >&2
    exit 1
  fi
fi

export PGHOST=127.0.0.1 PGPORT=$CB_PG_PORT PGUSER=cloudbrain PGDATABASE=cloudbrain
# In the background so that signals reach the traps above at once; stdin is passed on.
"$@" <&0 &
cb_with_pg_child=$!
while :; do
  wait "$cb_with_pg_child"
  status=$?
  # wait returns early (status > 128) when a trapped signal arrives; go on until CMD is gone.
  kill -0 "$cb_with_pg_child" 2>/dev/null || break
done
exit "$status"
