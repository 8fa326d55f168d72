#!/usr/bin/env bash
# tests/support/azure_sdk.sh PREFIX
#
# Installs Microsoft's Azure SDK for JavaScript packages the ARM emulator is checked against
# (@azure/arm-compute and @azure/arm-network, the versions pinned below for the Node.js at
# hand, and what they need)
# into PREFIX with npm, unless those versions are there already; prints PREFIX/node_modules.
# PREFIX is a folder outside the source tree or an ignored one (the tests use the build
# directory's tools/azure-sdk). Install scripts are not run and npm's cache is kept in PREFIX.
set -euo pipefail

if (($# != 1)); then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "azure_sdk.sh: $tool is not installed (deploy/dev/install-deps.sh installs it)" >&2
    exit 1
  fi
done
# The pinned versions: the newest whose engines take the Node.js at hand (the SDK's newest
# generation needs Node.js 22; bookworm's own Node.js is 18).
read -r -a packages < <(node -e '
  const major = Number(process.versions.node.split(".")[0]);
  if (major >= 22) console.log("@azure/arm-compute@25.1.1 @azure/arm-network@39.0.0");
  else if (major >= 20) console.log("@azure/arm-compute@23.3.0 @azure/arm-network@36.0.0");
  else if (major >= 18) console.log("@azure/arm-compute@22.4.0 @azure/arm-network@33.5.0");
')
if ((${#packages[@]} == 0)); then
  echo "azure_sdk.sh: the Azure SDK needs Node.js 18 or later, not $(node --version)" >&2
  exit 1
fi

mkdir -p "$1"
prefix=$(cd "$1" && pwd -P)
installed() {
  node -e '
    const prefix = process.argv[1];
    for (const spec of process.argv.slice(2)) {
      const at = spec.lastIndexOf("@");
      const p = require(prefix + "/node_modules/" + spec.slice(0, at) + "/package.json");
      if (p.version !== spec.slice(at + 1)) process.exit(1);
    }
  ' "$prefix" "${packages[@]}" 2>/dev/null
}

# One installer at a time; the others wait for it and find the packages there.
exec 9>"$prefix/.install.lock"
flock -w 300 9
if ! installed; then
  started=$(date +%s%N)
  npm install --prefix "$prefix" --cache "$prefix/npm-cache" --no-save --no-package-lock \
    --ignore-scripts --no-audit --no-fund --no-update-notifier --loglevel=error \
    "${packages[@]}" >&2
  installed || {
    echo "azure_sdk.sh: npm did not install ${packages[*]} into $prefix" >&2
    exit 1
  }
  tenths=$((($(date +%s%N) - started) / 100000000))
  seconds="$((tenths / 10)).$((tenths % 10))"
  echo "azure_sdk.sh: installed ${packages[*]} into $prefix in ${seconds}s" >&2
fi
flock -u 9
echo "$prefix/node_modules"
