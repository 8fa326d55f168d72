#!/usr/bin/env bash
# tests/support/redocly.sh PREFIX [REDOCLY ARGS...]
#
# Runs Redocly CLI (@redocly/cli, a version pinned below) from PREFIX, installing it there
# with npm first unless that version is already there; e.g., from the repository's root:
#   bash tests/support/redocly.sh build/tools/redocly lint --config docs/redocly.yaml docs/openapi.yaml
# PREFIX is a folder outside the source tree or an ignored one (the tests use the build
# directory's tools/redocly). Install scripts are not run (the package has none) and npm's cache
# is kept in PREFIX too, so nothing outside it is written and root needs no special treatment.
# The CLI's telemetry and its update check are off.
set -euo pipefail

if (($# < 1)); then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
prefix=$1
shift

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "redocly.sh: $tool is not installed (deploy/dev/install-deps.sh installs it)" >&2
    exit 1
  fi
done
# The pinned versions: 2.x, one bundled file tree, needs Node.js 20.19+ or 22.12+; an older
# Node.js (Debian bookworm's own is 18.20) gets 1.x, some 250 packages that take longer to install.
version=$(node -e '
  const [major, minor] = process.versions.node.split(".").map(Number);
  if ((major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major > 22) {
    console.log("2.77.0");
  } else if (major > 18 || (major === 18 && minor >= 17)) {
    console.log("1.34.20");
  }
')
if [[ -z $version ]]; then
  echo "redocly.sh: Redocly CLI needs Node.js 18.17 or later, not $(node --version)" >&2
  exit 1
fi

mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd -P)
installed() {
  node -e '
    const p = require(process.argv[1] + "/node_modules/@redocly/cli/package.json");
    process.exit(p.version === process.argv[2] ? 0 : 1);
  ' "$prefix" "$version" 2>/dev/null
}

# One installer at a time; the others wait for it and find the package there.
exec 9>"$prefix/.install.lock"
flock -w 300 9
if ! installed; then
  started=$(date +%s%N)
  npm install --prefix "$prefix" --cache "$prefix/npm-cache" --no-save --no-package-lock \
    --ignore-scripts --no-audit --no-fund --no-update-notifier --loglevel=error \
    "@redocly/cli@$version" >&2
  installed || {
    echo "redocly.sh: npm did not install @redocly/cli $version into $prefix" >&2
    exit 1
  }
  tenths=$((($(date +%s%N) - started) / 100000000))
  echo "redocly.sh: installed @redocly/cli $version into $prefix in $((tenths / 10)).$((tenths % 10))s" >&2
fi
flock -u 9

export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
exec node "$prefix/node_modules/@redocly/cli/bin/cli.js" "$@"
