#!/usr/bin/env bash
# The whole path through a broker: the counter against a bare consumer reading the same
# topic on the same broker, and the delay from an event reaching Kafka to its alert.
#
#   scripts/bench-broker.sh kafka [EVENTS]   # the local Apache Kafka (scripts/kafka.sh)
#   scripts/bench-broker.sh tansu [EVENTS]   # tansu 0.6.0, in memory (scripts/broker.sh; history)
#
# The mock cluster keeps at most 5 MB per partition (older records are deleted), and the
# default workload puts a tenth of its records on the partition of its busiest video, so
# mock runs spread the load: more partitions, flatter popularity, no episodes or decoys
# (BENCH_LOADGEN_ARGS is passed to the load generator):
#   BENCH_PARTITIONS=64 BENCH_LOADGEN_ARGS="--zipf 0.5 --episodes 0 --decoys 0" \
#     scripts/bench-broker.sh mock 2000000
#
# Prints one JSON object per measurement; docs/BENCHMARKS.md has the results.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-kafka}
events=${2:-1000000}
port=${BENCH_BROKER_PORT:-19400}
partitions=${BENCH_PARTITIONS:-4}
metrics=127.0.0.1:${BENCH_METRICS_PORT:-19464}
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'echo "bench failed at line $LINENO; logs:" >&2; tail -n 20 "$dir"/*.log >&2' ERR

scripts/build-deps.sh
cargo build --release --quiet -p trendwatch
tw=target/release/trendwatch

case "$mode" in
  kafka)
    pids+=("$(scripts/kafka.sh "$port" $$)")
    bootstrap=127.0.0.1:$port ;;
  tansu)
    pids+=("$(scripts/broker.sh "$port")")
    bootstrap=127.0.0.1:$port ;;
  mock)
    "$tw" perf mock-cluster --brokers 1 --partitions "$partitions" \
      --topics engagement-events,trendwatch-alerts,trendwatch-state,trendwatch-dlq,lat-events,lat-alerts,lat-state,lat-dlq >"$dir/mock" &
    pids+=("$!")
    for _ in $(seq 1 50); do [ -s "$dir/mock" ] && break; sleep 0.1; done
    bootstrap=$(head -n 1 "$dir/mock") ;;
  *) echo "usage: $0 kafka|tansu|mock [EVENTS]" >&2; exit 2 ;;
esac
export TRENDWATCH_BOOTSTRAP_SERVERS=$bootstrap
# BENCH_FETCH_WAIT_MS sets librdkafka's fetch.wait.max.ms for every client of the run.
extra=""
[ -n "${BENCH_FETCH_WAIT_MS:-}" ] && extra="\"fetch.wait.max.ms\" = \"$BENCH_FETCH_WAIT_MS\""
cat >"$dir/bench.toml" <<TOML
[kafka]
"bootstrap.servers" = "$bootstrap"
$extra
[counter]
tick_interval = "20ms"
checkpoint_interval = "10s"
TOML

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), broker: $mode at $bootstrap" >&2
"$tw" topics create --config "$dir/bench.toml" --partitions "$partitions" >&2
start_ms=$(( $(date +%s) * 1000 - 2 * 3600 * 1000 ))
"$tw" loadgen --videos 100000 --events "$events" --start "$start_ms" ${BENCH_LOADGEN_ARGS:-} \
  --out "$dir/events.pb" --truth "$dir/truth.json" --publish --config "$dir/bench.toml" >&2 2>"$dir/loadgen.log" || { cat "$dir/loadgen.log" >&2; exit 1; }
grep -E "^(wrote|published)" "$dir/loadgen.log" >&2
total=$(grep -oE '^published [0-9]+' "$dir/loadgen.log" | grep -oE '[0-9]+')

# 1. The yardstick: a consumer that only reads.
bare=$("$tw" perf consume --config "$dir/bench.toml" --records "$total" --timeout 3m)
echo "{\"measure\":\"bare_consumer\",\"broker\":\"$mode\",\"report\":$bare}"

# 2. The counter over the same records (its own group), timed from its first record to its
#    last by its metrics (refreshed every 20 ms), CPU read from /proc around the same window.
"$tw" run --config "$dir/bench.toml" --metrics-addr "$metrics" 2>"$dir/counter.log" &
counter=$!
pids+=("$counter")
# A scrape can fail while the machine is saturated; the loops below just try again.
consumed() { { curl -fsS "http://$metrics/metrics" 2>/dev/null || true; } | awk '/^trendwatch_records_consumed_total /{print $2; exit}'; }
cpu() { awk '{print ($14+$15)/100}' "/proc/$counter/stat"; }
at_least() { awk -v a="${1:-0}" -v b="$2" 'BEGIN{exit !(a >= b)}'; }
until n0=$(consumed) && at_least "$n0" 1; do sleep 0.01; done
t0=$(date +%s.%N); cpu0=$(cpu)
until n1=$(consumed) && at_least "$n1" "$total"; do sleep 0.01; done
t1=$(date +%s.%N); cpu1=$(cpu)
awk -v n0="$n0" -v n1="$n1" -v t0="$t0" -v t1="$t1" -v c0="$cpu0" -v c1="$cpu1" -v m="$mode" 'BEGIN{
  n = n1 - n0; t = t1 - t0; c = c1 - c0
  if (n <= 0 || t <= 0) { print "counter measurement window was empty; rerun with more events" > "/dev/stderr"; exit 1 }
  printf "{\"measure\":\"counter\",\"broker\":\"%s\",\"report\":{\"records\":%d,\"seconds\":%.3f,\"records_per_second\":%.0f,\"cpu_seconds\":%.2f,\"cpu_seconds_per_million\":%.3f}}\n", m, n, t, n/t, c, c/(n/1e6)}'
kill -TERM "$counter"; wait "$counter" || true

# 3. Pipeline delay: a fresh set of topics, the counter running, events published at a
#    steady rate it keeps up with; each alert names the record that decided it.
cat >"$dir/latency.toml" <<TOML
[kafka]
"bootstrap.servers" = "$bootstrap"
$extra
[topics]
events = "lat-events"
alerts = "lat-alerts"
state = "lat-state"
dlq = "lat-dlq"
[counter]
group_id = "lat-counter"
TOML
rate=${BENCH_LATENCY_RATE:-50000}
"$tw" topics create --config "$dir/latency.toml" --partitions "$partitions" >&2
"$tw" run --config "$dir/latency.toml" --metrics-addr "$metrics" 2>"$dir/counter-latency.log" &
counter=$!
pids+=("$counter")
until curl -fsS "http://$metrics/readyz" >/dev/null 2>&1; do sleep 0.2; done
"$tw" publish --config "$dir/latency.toml" --input "$dir/events.pb" --publish-rate "$rate" >&2 2>"$dir/publish.log"
sleep 3
kill -TERM "$counter"; wait "$counter" || true
delay=$("$tw" perf alert-delay --config "$dir/latency.toml")
echo "{\"measure\":\"alert_delay\",\"broker\":\"$mode\",\"publish_rate\":$rate,\"fetch_wait_max_ms\":\"${BENCH_FETCH_WAIT_MS:-default}\",\"report\":$delay}"
