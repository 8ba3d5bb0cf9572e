#!/usr/bin/env bash
# The demo, end to end on this machine: generate a realistic workload with ground truth,
# replay it through the engine, score the alerts, and show a few of them.
# (The Kafka services and the local broker join this demo with the counter service.)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"

echo "==> building (release)"
cargo build --release --quiet -p trendwatch
tw=target/release/trendwatch

echo "==> generating the workload: 100k videos, 1M background events over 2h, 50 viral episodes, 150 decoys"
"$tw" loadgen --out "$out/events.pb" --truth "$out/truth.json" "$@"

echo "==> replaying it through the engine and scoring against the ground truth"
"$tw" replay --input "$out/events.pb" --truth "$out/truth.json" --alerts "$out/alerts.jsonl"

echo "==> the first viral-velocity alerts ($out/alerts.jsonl, one JSON object per line)"
grep '"type":"VIRAL_VELOCITY"' "$out/alerts.jsonl" | head -n 3
