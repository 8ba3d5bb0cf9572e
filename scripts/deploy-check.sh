#!/usr/bin/env bash
# Checks the monitoring side of deploy/: the Prometheus configuration and alert rules with
# promtool, the rules' unit tests, and that the dashboard, the rules and their tests name
# only metrics the services export (the constants of crates/runtime/src/telemetry.rs).
#
#   scripts/deploy-check.sh
#
# promtool comes from Debian's `prometheus` package; it is installed with apt-get only when
# it is missing (with sudo when not run as root and sudo exists). Nothing else is changed.
# `promtool check config` also checks the rule files the configuration names (paths relative
# to the configuration file), then `promtool check rules` checks every rules file directly.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  # Only promtool is used.
  scripts/apt-install.sh promtool prometheus
fi

echo "==> $(promtool --version 2>&1 | head -n 1)"
echo "==> promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml
echo "==> promtool check rules deploy/prometheus/rules/*.yml"
promtool check rules deploy/prometheus/rules/*.yml
echo "==> promtool test rules deploy/prometheus/tests/*.yml"
promtool test rules deploy/prometheus/tests/*.yml

echo "==> metric names in the dashboard, the rules and their tests"
telemetry=crates/runtime/src/telemetry.rs
# Every exported name, and which of them are histograms (exported as _bucket, _sum, _count).
known=$(sed -nE 's/^pub const [A-Z_]+: &str = "(trendwatch_[a-z0-9_]+)";$/\1/p' "$telemetry" | sort -u)
histogram_consts=$(grep -A1 'describe_histogram!(' "$telemetry" | grep -oE '\b[A-Z][A-Z0-9_]{2,}\b' | grep -v '^Unit$' | sort -u)
histograms=$(for c in $histogram_consts; do
  sed -nE "s/^pub const $c: &str = \"(trendwatch_[a-z0-9_]+)\";$/\\1/p" "$telemetry"
done | sort -u)
used=$(grep -ohE 'trendwatch_[a-z0-9_]+' deploy/grafana/dashboards/*.json \
  deploy/prometheus/rules/*.yml deploy/prometheus/tests/*.yml | sort -u)
unknown=0
for name in $used; do
  if grep -qx "$name" <<<"$known"; then
    continue
  fi
  base=$(sed -E 's/_(bucket|sum|count)$//' <<<"$name")
  if [ "$base" != "$name" ] && grep -qx "$base" <<<"$histograms"; then
    continue
  fi
  echo "  unknown metric: $name (not in $telemetry)" >&2
  unknown=$((unknown + 1))
done
if [ "$unknown" -gt 0 ]; then
  exit 1
fi
echo "  $(wc -w <<<"$used") names used, all exported ($(wc -w <<<"$known") exported, histograms: $(tr '\n' ' ' <<<"$histograms"))"
