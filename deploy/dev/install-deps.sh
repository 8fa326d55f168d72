#!/usr/bin/env bash
# deploy/dev/install-deps.sh [--check] [--simulate] [--all]
#
# Installs what building and testing cloudbrain needs on Debian 12 (bookworm). Idempotent: when
# every package is already installed it changes nothing and does not touch the network (so
# repeated runs are fast). Runs as root with no stdin (DEBIAN_FRONTEND=noninteractive); as
# another user it re-runs itself through `sudo -n` when something is missing.
#   --check     only report: exit 0 if everything is installed, 1 (listing what is missing) if not
#   --simulate  pass -s to apt-get install (shows what would happen, changes nothing)
#   --all       act on every package, not only the missing ones (with --simulate: a dry run of
#               a fresh machine's install, e.g. to check that nothing pulls Boost 1.74)
#
# Boost: only the versioned 1.81 packages. The unversioned libboost-dev pulls 1.74, which
# conflicts with them (and CMakeLists.txt asks for Boost 1.81 EXACT).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git clang-format clang-tidy
  # clang-14 builds the project (GCC 12.2 miscompiles coroutines); its sanitizer runtimes
  clang-14 libclang-rt-14-dev
  # libraries
  libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev libboost-url1.81-dev
  libssl-dev libpq-dev libscrypt-dev libspdlog-dev libsystemd-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # database and schema migrations (tests start throwaway clusters: tests/support/pg.sh)
  postgresql-15 sqitch libdbd-pg-perl
  # several nodes: the request path through PgBouncer (transaction pooling) in the tests, and the
  # load balancer of deploy/cluster (its configuration is checked with haproxy -c)
  pgbouncer haproxy
  # tools the tests, benchmarks and docs use
  httpie prometheus wrk hyperfine python3 curl ca-certificates openssl
  # the OpenAPI tests read docs/openapi.yaml and check responses against its schemas
  python3-yaml python3-jsonschema
  # the Python example driver (deploy/drivers/) and the driver protocol tests speak WebSocket
  python3-websockets
  # the AWS SigV4 signer is checked against botocore's (tests/unit/aws)
  python3-botocore
  # Go builds the replay of travis-ci/worker's cloudbrain backend (tests/integration/client)
  golang-go
  # the systemd units, the man page and the .deb (systemd-analyze, man -l, cpack, dpkg-shlibdeps)
  systemd man-db groff-base dpkg-dev
)
# Node.js and npm run Redocly CLI, the OpenAPI linter (tests/support/redocly.sh installs it with
# npm). Debian's packages only where none is on the PATH: a Node.js from elsewhere (NodeSource,
# say) conflicts with Debian's npm package.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

check_only=0 simulate=0 all=0
for arg in "$@"; do
  case $arg in
  --check) check_only=1 ;;
  --simulate) simulate=1 ;;
  --all) all=1 ;;
  -h | --help)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "install-deps: unknown argument: $arg (try --help)" >&2
    exit 2
    ;;
  esac
done

# One dpkg-query for all of them; packages dpkg has never heard of are simply not listed.
declare -A state=()
while read -r name status; do
  state[${name%%:*}]=$status
done < <(dpkg-query -W -f='${binary:Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for p in "${packages[@]}"; do
  if ((all)) || [[ ${state[$p]:-} != installed ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi
if ((check_only)); then
  echo "install-deps: missing: ${missing[*]}" >&2
  exit 1
fi

if [[ $(id -u) != 0 ]] && ((!simulate)); then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo -n -- "$0" "$@"
  fi
  echo "install-deps: missing ${missing[*]}; run this script as root" >&2
  exit 1
fi

if [[ -r /etc/os-release ]]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  if [[ ${VERSION_CODENAME:-} != bookworm ]]; then
    echo "install-deps: warning: written for Debian bookworm, this is ${PRETTY_NAME:-unknown}" >&2
  fi
fi

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
  -o Dpkg::Options::=--force-confold)
if ((simulate)); then
  echo "install-deps: simulating the install of ${missing[*]}"
  # A fresh image has no package lists; simulation needs them too.
  if [[ $(id -u) == 0 ]] && ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt-get "${apt_opts[@]}" update </dev/null
  fi
  apt-get -s install --no-install-recommends "${missing[@]}" </dev/null
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
apt-get "${apt_opts[@]}" update </dev/null
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" </dev/null

# Boost 1.74 must not come in behind our back (libboost-dev / libboost-all-dev would pull it).
if [[ $(dpkg-query -W -f='${db:Status-Status}' libboost1.74-dev 2>/dev/null) == installed ]]; then
  echo "install-deps: warning: libboost1.74-dev is installed and conflicts with Boost 1.81;" \
    "remove it with: apt-get remove libboost1.74-dev" >&2
fi
echo "install-deps: done"
