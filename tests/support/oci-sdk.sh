#!/usr/bin/env bash
# tests/support/oci-sdk.sh PREFIX [NODE ARGS...]
#
# Runs Node.js with Oracle's TypeScript SDK for OCI (oci-core and oci-common, the versions pinned
# below; oci-core brings oci-workrequests) installed in PREFIX, installing them there with npm
# first unless those versions are already there; e.g., from the repository's root:
#   bash tests/support/oci-sdk.sh build/tools/oci-sdk \
#     --test tests/integration/oci_emulator/oci_sdk_check.mjs
# OCI_SDK_PREFIX tells the script run where the packages are. PREFIX is a folder outside the
# source tree or an ignored one (the tests use the build directory's tools/oci-sdk). Install
# scripts are not run and npm's cache is kept in PREFIX too, so nothing outside it is written.
set -euo pipefail

if (($# < 1)); then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
prefix=$1
shift

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "oci-sdk.sh: $tool is not installed (deploy/dev/install-deps.sh installs it)" >&2
    exit 1
  fi
done
# The SDK needs Node.js 18 or later (its fetch).
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
  echo "oci-sdk.sh: the OCI SDK needs Node.js 18 or later, not $(node --version)" >&2
  exit 1
fi
version=2.139.1
packages=("oci-core@$version" "oci-common@$version")

mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd -P)
installed() {
  node -e '
    const [prefix, version] = process.argv.slice(1);
    for (const p of ["oci-core", "oci-common", "oci-workrequests"]) {
      const installed = require(prefix + "/node_modules/" + p + "/package.json").version;
      if (installed !== version) process.exit(1);
    }
  ' "$prefix" "$version" 2>/dev/null
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
    echo "oci-sdk.sh: npm did not install ${packages[*]} into $prefix" >&2
    exit 1
  }
  tenths=$((($(date +%s%N) - started) / 100000000))
  echo "oci-sdk.sh: installed ${packages[*]} into $prefix in $((tenths / 10)).$((tenths % 10))s" >&2
fi
flock -u 9

export OCI_SDK_PREFIX=$prefix
exec node "$@"
