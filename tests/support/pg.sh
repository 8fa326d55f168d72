# shellcheck shell=bash
# tests/support/pg.sh: throwaway PostgreSQL 15 clusters for tests and local runs.
#
#   source tests/support/pg.sh
#   cb_pg_start [DIR] [PORT]    # new cluster in DIR (a fresh mktemp dir if omitted); exports
#                               # CB_PG_DIR CB_PG_PORT CB_PG_PID CB_PG_OS_USER DATABASE_URL
#   cb_schema_deploy [URL]      # sqitch deploy --verify of schema/ (URL defaults to $DATABASE_URL)
#   cb_psql [PSQL ARGS...]      # psql -X -v ON_ERROR_STOP=1 against $DATABASE_URL
#   cb_pg_stop [MODE]           # pg_ctl stop -m MODE (fast by default; immediate = crash)
#   cb_pg_start "$CB_PG_DIR"    # after a stop: start the same cluster again, same port
#   cb_pg_restart               # cb_pg_stop fast + start again on the same port and data dir
#   cb_schema_verify [URL]      # sqitch verify
#   cb_schema_revert [URL]      # sqitch revert -y
#   cb_pg_destroy [DIR]         # stop (if running) and remove DIR
#   cb_pg_watchdog PID [DIR]    # destroy the cluster once process PID is gone (even SIGKILLed)
#
# Listens on 127.0.0.1:PORT and on a unix socket in DIR; auth is trust. Role `cloudbrain`
# (login, superuser) owns database `cloudbrain`; the bootstrap superuser is `postgres`.
# Durability is off (fsync, synchronous_commit, full_page_writes): never use it for real data.
# With CB_PG_DURABLE=1 in the environment of cb_pg_start it is on (fsync, synchronous_commit,
# full_page_writes), as a production server runs: for benchmarks that measure commits.
# When run as root, the server runs as the `postgres` user (or a system user `cloudbrain-test`
# created on demand), so DIR and all of its parents must be traversable by that user.
# Several clusters may run at once (different DIRs); each gets its own free port.
# The functions return non-zero with a message on stderr on failure; they never `exit`.
# CB_SCHEMA_DIR (default: this repository's schema/) and CB_PG_BIN may be set before sourcing.
#
# Emptying the tables between tests: instance_events refuses UPDATE/DELETE/TRUNCATE (also through
# TRUNCATE ... CASCADE) and instances refuse DELETE/TRUNCATE, so as the superuser `cloudbrain` do
# it with triggers off:
#   begin; set local session_replication_role = replica;
#   truncate tokens, instances, instance_events, idempotency_keys, jobs restart identity; commit;

CB_PG_BIN=${CB_PG_BIN:-/usr/lib/postgresql/15/bin}
_cb_pg_support_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CB_SCHEMA_DIR=${CB_SCHEMA_DIR:-$(cd "$_cb_pg_support_dir/../../schema" && pwd -P)}

_cb_pg_err() { echo "pg.sh: $*" >&2; }

# The OS user that runs the server: empty when not root (run as ourselves).
_cb_pg_os_user() {
  if [[ $(id -u) != 0 ]]; then
    echo ""
    return 0
  fi
  if id -u postgres >/dev/null 2>&1; then
    echo postgres
    return 0
  fi
  if ! id -u cloudbrain-test >/dev/null 2>&1; then
    # Parallel callers may race here; whoever loses sees the user afterwards.
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
      cloudbrain-test >/dev/null 2>&1 || true
    if ! id -u cloudbrain-test >/dev/null 2>&1; then
      _cb_pg_err "cannot create system user cloudbrain-test (useradd --system failed)"
      return 1
    fi
  fi
  echo cloudbrain-test
}

# _cb_pg_as USER CMD...: run CMD as USER (or as ourselves when USER is empty), from inside the
# cluster directory so that an unreadable working directory (e.g. /root) does not matter.
_cb_pg_as() {
  local user=$1
  shift
  (
    cd "${CB_PG_DIR:-/}" 2>/dev/null || cd /
    if [[ -n $user ]]; then
      exec runuser -u "$user" -- "$@"
    else
      exec "$@"
    fi
  )
}

_cb_pg_free_port() {
  python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# _cb_pg_write_conf DIR PORT: the settings cb_pg_start owns (rewritten at every start).
_cb_pg_write_conf() {
  local dir=$1 port=$2 durable=off
  [[ ${CB_PG_DURABLE:-0} == 1 ]] && durable=on
  cat >"$dir/data/cloudbrain-test.conf" <<EOF
# Written by tests/support/pg.sh at every start; do not edit.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = $durable
synchronous_commit = $durable
full_page_writes = $durable
wal_level = minimal
max_wal_senders = 0
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
timezone = 'UTC'
EOF
  cat >"$dir/data/pg_hba.conf" <<'EOF'
# Written by tests/support/pg.sh: trust on the unix socket and loopback only.
local all all              trust
host  all all 127.0.0.1/32 trust
host  all all ::1/128      trust
EOF
}

_cb_pg_export() {
  local dir=$1 port=$2 user=$3
  export CB_PG_DIR=$dir
  export CB_PG_PORT=$port
  export CB_PG_OS_USER=$user
  export CB_PG_PID
  CB_PG_PID=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)
  export DATABASE_URL="postgresql://cloudbrain@127.0.0.1:$port/cloudbrain"
}

cb_pg_start() {
  local dir=${1:-} port=${2:-} user fresh=0 attempt
  local max_attempts=1

  if [[ -z $dir ]]; then
    dir=$(mktemp -d /tmp/cloudbrain-pg-XXXXXX) || return 1
    chmod 755 "$dir"
  fi
  mkdir -p "$dir" || return 1
  dir=$(cd "$dir" && pwd -P) || return 1
  # The unix socket path ("DIR/.s.PGSQL.PORT") must fit in sun_path (107 bytes).
  if ((${#dir} > 80)); then
    _cb_pg_err "directory path too long for a unix socket (${#dir} > 80 chars): $dir"
    return 1
  fi

  user=$(_cb_pg_os_user) || return 1
  if [[ -n $user ]]; then
    chown "$user:" "$dir" || return 1
    chmod 755 "$dir" || return 1
    if ! runuser -u "$user" -- test -w "$dir" -a -x "$dir"; then
      _cb_pg_err "$dir is not reachable by user $user (are all of its parents world-traversable?);" \
        "use e.g. a directory made with mktemp -d /tmp/cloudbrain-pg-XXXX and chmod 755"
      return 1
    fi
  fi

  if [[ -f $dir/data/postmaster.pid ]] && kill -0 "$(head -n 1 "$dir/data/postmaster.pid")" 2>/dev/null; then
    _cb_pg_err "a server is already running in $dir (pid $(head -n 1 "$dir/data/postmaster.pid"))"
    return 1
  fi

  if [[ ! -f $dir/data/PG_VERSION ]]; then
    if [[ -e $dir/data ]]; then
      _cb_pg_err "$dir/data exists but is not a PostgreSQL data directory"
      return 1
    fi
    fresh=1
    touch "$dir/.cloudbrain-pg" || return 1
    if ! CB_PG_DIR=$dir _cb_pg_as "$user" "$CB_PG_BIN/initdb" -D "$dir/data" -U postgres \
      --auth=trust --encoding=UTF8 --no-locale --no-sync --no-instructions \
      >"$dir/initdb.log" 2>&1; then
      _cb_pg_err "initdb failed in $dir:"
      cat "$dir/initdb.log" >&2
      return 1
    fi
    echo "include_if_exists = 'cloudbrain-test.conf'" >>"$dir/data/postgresql.conf"
  fi

  # Port: the one asked for; else the one this cluster had before (restart); else a free one.
  if [[ -z $port && -s $dir/port ]]; then
    port=$(<"$dir/port")
  fi
  if [[ -z $port ]]; then
    port=$(_cb_pg_free_port) || return 1
    max_attempts=5 # a parallel caller may grab the same free port: retry with another one
  fi

  for ((attempt = 1; ; attempt++)); do
    _cb_pg_write_conf "$dir" "$port" || return 1
    : >>"$dir/postgres.log" || return 1
    if [[ -n $user ]]; then
      chown "$user:" "$dir/data/cloudbrain-test.conf" "$dir/data/pg_hba.conf" "$dir/postgres.log" ||
        return 1
    fi
    local mark
    mark=$(wc -l <"$dir/postgres.log")
    if CB_PG_DIR=$dir _cb_pg_as "$user" "$CB_PG_BIN/pg_ctl" start -D "$dir/data" \
      -l "$dir/postgres.log" -w -t 30 -s >/dev/null 2>&1; then
      break
    fi
    if ((attempt < max_attempts)) && tail -n +"$((mark + 1))" "$dir/postgres.log" |
      grep -q "could not bind\|could not create any TCP/IP sockets\|already in use"; then
      port=$(_cb_pg_free_port) || return 1
      continue
    fi
    _cb_pg_err "PostgreSQL did not start in $dir on port $port; end of $dir/postgres.log:"
    tail -n +"$((mark + 1))" "$dir/postgres.log" | tail -n 20 >&2
    CB_PG_DIR=$dir _cb_pg_as "$user" "$CB_PG_BIN/pg_ctl" stop -D "$dir/data" -m immediate -s \
      >/dev/null 2>&1
    return 1
  done
  echo "$port" >"$dir/port"

  local deadline=$((SECONDS + 30))
  until pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2 >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      _cb_pg_err "PostgreSQL on 127.0.0.1:$port not ready after 30 s; see $dir/postgres.log"
      return 1
    fi
    sleep 0.1
  done

  if ((fresh)); then
    if ! psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c "CREATE ROLE cloudbrain LOGIN SUPERUSER" \
      -c "CREATE DATABASE cloudbrain OWNER cloudbrain" >&2; then
      _cb_pg_err "could not create role/database cloudbrain on port $port"
      return 1
    fi
  fi

  _cb_pg_export "$dir" "$port" "$user"
  if [[ -z $CB_PG_PID ]]; then
    _cb_pg_err "no postmaster.pid in $dir/data after start"
    return 1
  fi
  return 0
}

# cb_pg_stop [MODE]: stop the current cluster ($CB_PG_DIR); MODE is smart|fast|immediate.
cb_pg_stop() {
  local mode=${1:-fast} dir=${CB_PG_DIR:-}
  if [[ -z $dir || ! -f $dir/data/PG_VERSION ]]; then
    _cb_pg_err "cb_pg_stop: no cluster (CB_PG_DIR=${dir:-unset})"
    return 1
  fi
  if ! _cb_pg_as "${CB_PG_OS_USER:-}" "$CB_PG_BIN/pg_ctl" status -D "$dir/data" >/dev/null 2>&1; then
    return 0 # already stopped
  fi
  if ! _cb_pg_as "${CB_PG_OS_USER:-}" "$CB_PG_BIN/pg_ctl" stop -D "$dir/data" -m "$mode" \
    -w -t 60 -s >&2; then
    _cb_pg_err "pg_ctl stop -m $mode failed in $dir"
    return 1
  fi
  return 0
}

# cb_pg_restart: stop (fast) and start again on the same port and data directory;
# CB_PG_PID is updated.
cb_pg_restart() {
  local dir=${CB_PG_DIR:-} port=${CB_PG_PORT:-}
  if [[ -z $dir ]]; then
    _cb_pg_err "cb_pg_restart: no cluster (CB_PG_DIR unset)"
    return 1
  fi
  cb_pg_stop fast || return 1
  cb_pg_start "$dir" "$port"
}

# cb_pg_destroy [DIR]: stop the cluster in DIR (default $CB_PG_DIR) and remove DIR.
cb_pg_destroy() {
  local dir=${1:-${CB_PG_DIR:-}} user pid
  if [[ -z $dir || ! -d $dir ]]; then
    return 0
  fi
  dir=$(cd "$dir" && pwd -P) || return 1
  if [[ ! -e $dir/.cloudbrain-pg && ! -f $dir/data/PG_VERSION ]]; then
    _cb_pg_err "cb_pg_destroy: $dir was not made by cb_pg_start; not removing it"
    return 1
  fi
  user=$(_cb_pg_os_user) || user=""
  if [[ -f $dir/data/postmaster.pid ]]; then
    pid=$(head -n 1 "$dir/data/postmaster.pid")
    CB_PG_DIR=$dir _cb_pg_as "$user" "$CB_PG_BIN/pg_ctl" stop -D "$dir/data" -m fast -w -t 30 -s \
      >/dev/null 2>&1 ||
      CB_PG_DIR=$dir _cb_pg_as "$user" "$CB_PG_BIN/pg_ctl" stop -D "$dir/data" -m immediate -w \
        -t 30 -s >/dev/null 2>&1
    # Last resort: the postmaster of this very data directory, by its pid.
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null &&
      [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$dir/data" ]]; then
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  if [[ ${CB_PG_DIR:-} == "$dir" ]]; then
    unset CB_PG_DIR CB_PG_PORT CB_PG_PID CB_PG_OS_USER DATABASE_URL
  fi
  rm -rf -- "$dir"
}

# cb_pg_watchdog PID [DIR]: destroy the cluster in DIR (default $CB_PG_DIR) once process PID is
# gone, even if PID was killed with SIGKILL (e.g. a CTest timeout) and never ran its traps.
# The watcher is detached (own session, reparented, no inherited stdio) and polls once a second.
cb_pg_watchdog() {
  local pid=${1:?cb_pg_watchdog PID [DIR]} dir=${2:-${CB_PG_DIR:-}}
  [[ -n $dir ]] || return 1
  (
    # shellcheck disable=SC2016 # expanded by the inner bash, from its own arguments
    setsid bash -c 'source "$1"; while kill -0 "$2" 2>/dev/null; do sleep 1; done; cb_pg_destroy "$3"' \
      cb-pg-watchdog "$_cb_pg_support_dir/pg.sh" "$pid" "$dir" </dev/null >/dev/null 2>&1 &
  )
}

# _cb_sqitch_target URL: postgresql://u@h:p/db (or postgres://, or db:pg:...) -> db:pg://u@h:p/db
_cb_sqitch_target() {
  local url=${1:-${DATABASE_URL:-}}
  case $url in
  db:pg:*) echo "$url" ;;
  postgresql://*) echo "db:pg://${url#postgresql://}" ;;
  postgres://*) echo "db:pg://${url#postgres://}" ;;
  *)
    _cb_pg_err "not a PostgreSQL URL: '${url}'"
    return 1
    ;;
  esac
}

_cb_sqitch() {
  (
    cd "$CB_SCHEMA_DIR" || exit 1
    export SQITCH_FULLNAME=${SQITCH_FULLNAME:-cloudbrain tests}
    export SQITCH_EMAIL=${SQITCH_EMAIL:-cloudbrain@localhost}
    exec sqitch "$@"
  )
}

# cb_schema_deploy [URL]: deploy (and verify) every change of schema/ to URL ($DATABASE_URL).
cb_schema_deploy() {
  local target
  target=$(_cb_sqitch_target "${1:-}") || return 1
  _cb_sqitch deploy --verify --target "$target"
}

# cb_schema_verify [URL]: run the verify scripts of every deployed change.
cb_schema_verify() {
  local target
  target=$(_cb_sqitch_target "${1:-}") || return 1
  _cb_sqitch verify --target "$target"
}

# cb_schema_revert [URL]: revert every change, without prompting.
cb_schema_revert() {
  local target
  target=$(_cb_sqitch_target "${1:-}") || return 1
  _cb_sqitch revert -y --target "$target"
}

# cb_psql [ARGS...]: psql against $DATABASE_URL, no psqlrc, stop on the first error.
cb_psql() {
  psql -X -v ON_ERROR_STOP=1 "${DATABASE_URL:?DATABASE_URL is not set}" "$@"
}
