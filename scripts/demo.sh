#!/usr/bin/env bash
# The demo, end to end on this machine: a local Apache Kafka (scripts/kafka.sh), two
# counters and the ranker, a realistic workload with viral episodes published to Kafka,
# and the global leaderboard live with the latest alerts under it.
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
ranker_metrics=${DEMO_RANKER_METRICS_ADDR:-127.0.0.1:9466}
second_metrics=${DEMO_SECOND_METRICS_ADDR:-127.0.0.1:9465}
mkdir -p "$out"
pids=()
broker=""
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # The services drain through the broker, so it goes last.
  if [ -n "$broker" ]; then
    kill -TERM "$broker" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$broker" 2>/dev/null || break; sleep 0.1; done
  fi
}
trap cleanup INT TERM EXIT

# The broker's jars download while the build runs (a no-op when they are there).
fetch=""
if [ -z "${TRENDWATCH_BOOTSTRAP_SERVERS:-}" ]; then
  scripts/kafka.sh --install >"$out/kafka-install.log" 2>&1 &
  fetch=$!
fi
scripts/build-deps.sh
echo "==> building (release)"
cargo build --release --quiet -p trendwatch
tw=target/release/trendwatch
if [ -n "$fetch" ] && ! wait "$fetch"; then
  echo "fetching Apache Kafka failed:" >&2
  tail -n 20 "$out/kafka-install.log" >&2
  exit 1
fi

if [ -z "${TRENDWATCH_BOOTSTRAP_SERVERS:-}" ]; then
  echo "==> starting the local broker (Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml), KRaft) on 127.0.0.1:$port"
  broker=$(scripts/kafka.sh "$port" $$)
  export TRENDWATCH_BOOTSTRAP_SERVERS=127.0.0.1:$port
else
  echo "==> using the Kafka at $TRENDWATCH_BOOTSTRAP_SERVERS"
fi

echo "==> creating topics (4 partitions; state, leaderboard and ranker state compacted; candidates 1 partition)"
"$tw" topics create --partitions 4

echo "==> starting two counters (metrics at http://$metrics/metrics and http://$second_metrics/metrics; logs in $out/counter-*.log)"
"$tw" run --metrics-addr "$metrics" 2>"$out/counter-1.log" &
pids+=("$!")
"$tw" run --metrics-addr "$second_metrics" 2>"$out/counter-2.log" &
pids+=("$!")
echo "==> starting the ranker (metrics at http://$ranker_metrics/metrics, web console at http://$ranker_metrics/; log in $out/ranker.log)"
"$tw" rank --metrics-addr "$ranker_metrics" 2>"$out/ranker.log" &
pids+=("$!")
sleep 2

# Event times end now, so alert latencies and idle partitions behave as in production.
start_ms=$(( $(date +%s) * 1000 - 2 * 3600 * 1000 ))
echo "==> generating 2 hours of engagement (50k videos, 500k background events, 30 viral episodes, decoys); publishing it in the background (log in $out/loadgen.log)"
"$tw" loadgen --videos 50000 --events 500000 --episodes 30 --decoys 20 --start "$start_ms" \
  --out "$out/events.pb" --truth "$out/truth.json" --publish --publish-rate "${DEMO_PUBLISH_RATE:-40000}" "$@" \
  >"$out/loadgen.log" 2>&1 &
loadgen=$!

echo "==> the global leaderboard, live (trendwatch leaderboard --alerts 12): each closed 15-minute window's top 10, the latest alerts under it"
if [ -n "${DEMO_SECONDS:-}" ]; then
  timeout -s INT "$DEMO_SECONDS" "$tw" leaderboard --alerts 12 || true
else
  echo "    (Ctrl-C to stop)"
  "$tw" leaderboard --alerts 12 || true
fi
wait "$loadgen" || true
grep -E '^(wrote|published)' "$out/loadgen.log" || true

echo "==> the same events replayed offline and scored against the ground truth"
"$tw" replay --input "$out/events.pb" --truth "$out/truth.json" | grep -E '^(replayed|backtest|  delay)'

echo "==> a few counters from the services' /metrics"
for m in "$metrics" "$second_metrics"; do
  curl -fsS "http://$m/metrics" | grep -E '^trendwatch_(records_consumed_total|tracked_videos|assigned_partitions) ' || true
done
curl -fsS "http://$ranker_metrics/metrics" | grep -E '^trendwatch_ranker_(windows_closed_total|boards_total|alerts_total)' || true
echo "==> readiness: counters $(curl -sS "http://$metrics/readyz"), $(curl -sS "http://$second_metrics/readyz"); ranker $(curl -sS "http://$ranker_metrics/readyz")"
