#!/usr/bin/env bash
# The demo, end to end on this machine: a local broker, the counter service, a realistic
# workload with viral episodes published to Kafka, and the alerts arriving live.
#
#   scripts/demo.sh                  # Ctrl-C stops everything cleanly
#   DEMO_SECONDS=60 scripts/demo.sh  # stop by itself after 60 s of alerts
#   TRENDWATCH_BOOTSTRAP_SERVERS=host:9092 scripts/demo.sh   # use a running Kafka instead
#
# Extra arguments go to the load generator (e.g. --videos 20000 --events 300000).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
port=${DEMO_BROKER_PORT:-19092}
metrics=${DEMO_METRICS_ADDR:-127.0.0.1:9464}
mkdir -p "$out"
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup INT TERM EXIT

echo "==> building (release)"
cargo build --release --quiet -p trendwatch
tw=target/release/trendwatch

if [ -z "${TRENDWATCH_BOOTSTRAP_SERVERS:-}" ]; then
  echo "==> starting the local broker (tansu) on 127.0.0.1:$port"
  pids+=("$(scripts/broker.sh "$port")")
  export TRENDWATCH_BOOTSTRAP_SERVERS=127.0.0.1:$port
else
  echo "==> using the Kafka at $TRENDWATCH_BOOTSTRAP_SERVERS"
fi

echo "==> creating topics (4 partitions; the state topic compacted)"
"$tw" topics create --partitions 4

echo "==> starting the counter: metrics at http://$metrics/metrics, health at /healthz and /readyz, log in $out/counter.log"
"$tw" run --metrics-addr "$metrics" 2>"$out/counter.log" &
pids+=("$!")

echo "==> following the alerts (trendwatch alerts tail)"
"$tw" alerts tail &
pids+=("$!")
sleep 2

# Event times end now, so alert latencies and idle partitions behave as in production.
start_ms=$(( $(date +%s) * 1000 - 2 * 3600 * 1000 ))
echo "==> generating 2 hours of engagement (50k videos, 500k background events, 30 viral episodes, decoys) and publishing it"
"$tw" loadgen --videos 50000 --events 500000 --episodes 30 --decoys 20 --start "$start_ms" \
  --out "$out/events.pb" --truth "$out/truth.json" --publish --publish-rate 150000 "$@"

echo "==> the same events replayed offline and scored against the ground truth"
"$tw" replay --input "$out/events.pb" --truth "$out/truth.json" | grep -E '^(replayed|backtest|  delay)'

sleep 5
echo "==> a few counters from http://$metrics/metrics"
curl -fsS "http://$metrics/metrics" | grep -E '^trendwatch_(records_consumed_total|events_counted_total|alerts_emitted_total|checkpoints_total|tracked_videos) ' || true
curl -fsS "http://$metrics/metrics" | grep -E '^trendwatch_alerts_emitted_total' | head -n 4 || true
echo "==> readiness: $(curl -sS "http://$metrics/readyz")"

if [ -n "${DEMO_SECONDS:-}" ]; then
  echo "==> alerts keep arriving as partitions go idle and episodes end; stopping in ${DEMO_SECONDS}s"
  sleep "$DEMO_SECONDS"
else
  echo "==> alerts keep arriving as partitions go idle and episodes end; Ctrl-C to stop"
  wait
fi
