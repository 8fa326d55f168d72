#!/usr/bin/env bash
# Sets up and runs cloudbrain's whole test suite on a Debian bookworm machine: installs what is
# missing, builds with AddressSanitizer and UndefinedBehaviorSanitizer, starts a throwaway
# PostgreSQL 15 (as a non-root user when run as root), deploys the schema into a template
# database, and runs every test through CTest. Exits non-zero if anything fails.
#
#   bash tests/run-all.sh [CTEST ARGS...]     e.g. -L unit, -R api_, -j 1
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"

bash deploy/dev/install-deps.sh

# Line tables only: a sanitizer's report names files, lines and inlined frames from them, and
# without the rest of the debug information the heaviest sources compile a fifth faster.
build=${CLOUDBRAIN_TEST_BUILD:-$root/build/sanitize}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -gline-tables-only -DNDEBUG" \
  -DCLOUDBRAIN_SANITIZE=ON -DCLOUDBRAIN_FUZZ=ON -DCLOUDBRAIN_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"

# shellcheck source=tests/support/pg.sh
source "$root/tests/support/pg.sh"
cb_pg_start
trap 'cb_pg_destroy >/dev/null 2>&1 || true' EXIT
template=cloudbrain_template
cb_psql -c "CREATE DATABASE $template" >/dev/null
cb_schema_deploy "postgresql://cloudbrain@127.0.0.1:$CB_PG_PORT/$template" >/dev/null

export CLOUDBRAIN_TEST_ADMIN_URL=$DATABASE_URL
export CLOUDBRAIN_TEST_TEMPLATE=$template
export CLOUDBRAIN_TEST_DATABASE_URL=$DATABASE_URL
export CLOUDBRAIN_BIN=$build/actors/cloudbrain
export CLOUDBRAIN_SOURCE_DIR=$root
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
unset DATABASE_URL

# Most tests wait on a service, an emulator or a clock far more than they compute: twice as many
# at once as there are cores keeps both cores busy. Tests that measure time claim more slots
# (PROCESSORS), and the fuzzers run niced, so that neither skews the other.
status=0
ctest --test-dir "$build" --output-on-failure --timeout 900 -j "$((2 * $(nproc)))" "$@" ||
  status=$?

# The whole suite (no CTest arguments) runs once more under ThreadSanitizer: every unit test, and
# the service tests labelled tsan (tests/CMakeLists.txt says which and why) against a TSan build
# of the binary. -O1 with line tables only: TSan needs no more to name a race's two sides.
if [ $# -eq 0 ] && [ "${CLOUDBRAIN_TSAN_RUN:-1}" = 1 ]; then
  tsan=${CLOUDBRAIN_TSAN_BUILD:-$root/build/tsan}
  cmake -S "$root" -B "$tsan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DCLOUDBRAIN_TSAN=ON -DCLOUDBRAIN_BENCH=OFF >/dev/null
  cmake --build "$tsan" -j "$(nproc)" --target cloudbrain cloudbrain_unit_tests
  export CLOUDBRAIN_BIN=$tsan/actors/cloudbrain
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/tsan.supp}
  ctest --test-dir "$tsan" --output-on-failure --timeout 900 -j "$((2 * $(nproc)))" \
    -L '^(unit|tsan)$' || status=$?
fi
exit "$status"
