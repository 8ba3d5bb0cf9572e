#!/usr/bin/env bash
# Backtests the default configuration over several seeds and workload sizes and prints one
# JSON line per run (the figures of docs/QUALITY.md). Usage: scripts/quality.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/quality}
mkdir -p "$out"
cargo build --release --quiet -p trendwatch
tw=target/release/trendwatch
run() { # name, replay partitions, loadgen args...
  local name=$1 partitions=$2; shift 2
  "$tw" loadgen --out "$out/$name.pb" --truth "$out/$name.truth.json" "$@" 2>/dev/null
  local result
  result=$("$tw" replay --input "$out/$name.pb" --truth "$out/$name.truth.json" --json --partitions "$partitions")
  printf '{"run":"%s","args":"%s --partitions %s","result":%s}\n' "$name" "$*" "$partitions" "$result"
  rm -f "$out/$name.pb"
}
for seed in 1 2 3 4 5 42; do
  run "default-s$seed" 1 --seed "$seed"
done
for seed in 1 2 3; do
  run "dense-s$seed" 1 --seed "$seed" --videos 50000 --events 2000000
  run "wide-s$seed" 1 --seed "$seed" --videos 200000 --events 1000000 --duration 4h --episodes 100 --decoys 100
  run "parts4-s$seed" 4 --seed "$seed"
done
