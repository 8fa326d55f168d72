#!/usr/bin/env bash
# The Prometheus configuration in deploy/prometheus: the scrape config and the alert rules are
# valid, and the alerts fire (and stay quiet) as alerts_test.yml expects.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
promtool check config "$root/deploy/prometheus/prometheus.yml"
promtool check rules "$root/deploy/prometheus/alerts.yml"
promtool test rules "$here/alerts_test.yml"
