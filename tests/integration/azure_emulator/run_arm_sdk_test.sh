#!/usr/bin/env bash
# run_arm_sdk_test.sh BUILD_DIR: installs the Azure SDK packages (tests/support/azure_sdk.sh)
# into BUILD_DIR/tools/azure-sdk, makes a throwaway certificate for 127.0.0.1 that Node.js is
# told to trust, and runs arm_sdk.test.mjs with Node's test runner.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd -P)
root=$(cd "$here/../../.." && pwd -P)
build=${1:?usage: run_arm_sdk_test.sh BUILD_DIR}
modules=$(bash "$root/tests/support/azure_sdk.sh" "$build/tools/azure-sdk")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
  -addext "subjectAltName=IP:127.0.0.1" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
AZURE_SDK_MODULES=$modules ARM_TLS_CERT=$tmp/cert.pem ARM_TLS_KEY=$tmp/key.pem \
  NODE_EXTRA_CA_CERTS=$tmp/cert.pem node --test --test-reporter=spec "$here/arm_sdk.test.mjs"
