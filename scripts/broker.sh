#!/usr/bin/env bash
# Starts tansu 0.6.0 (a young Kafka-compatible broker, in-memory storage) on loopback,
# installing it first if it is missing, and waits until it accepts connections. Not on the
# path of the tests or the demo any more (they run on Apache Kafka, scripts/kafka.sh):
# kept for compatibility checks by hand (TRENDWATCH_TEST_BOOTSTRAP=127.0.0.1:PORT for the
# tests, TRENDWATCH_BOOTSTRAP_SERVERS for the demo) and `scripts/bench-broker.sh tansu`.
#
#   scripts/broker.sh [PORT [WATCH_PID]]  # default port 19092; prints the broker's pid
#   scripts/broker.sh --install           # only make sure tansu is installed
#
# With WATCH_PID the broker is stopped when that process exits (the test harness passes
# its own pid, so no broker outlives a test run). Installing takes about 8 minutes from
# cold (cargo install builds it). An existing Kafka can be used instead of this broker by
# pointing --bootstrap-servers at it.
set -euo pipefail
version=0.6.0

install() {
  if ! command -v tansu >/dev/null 2>&1 || ! tansu --version 2>/dev/null | grep -q "$version"; then
    echo "installing tansu $version (about 8 minutes the first time)" >&2
    cargo install tansu --version "$version" --locked --features dynostore >&2
  fi
}

if [ "${1:-}" = "--install" ]; then
  install
  exit 0
fi
port=${1:-19092}
watch=${2:-}
install

log=${TMPDIR:-/tmp}/trendwatch-tansu-$port.log
tansu broker \
  --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine "memory://tansu/" >"$log" 2>&1 &
pid=$!

if [ -n "$watch" ]; then
  # Detached from our stdout so the caller does not wait for the watcher.
  (while kill -0 "$watch" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
   kill "$pid" 2>/dev/null || true) >/dev/null 2>&1 </dev/null &
fi

for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "$pid"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "tansu exited; its log ($log):" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "tansu did not accept connections on 127.0.0.1:$port within 10 s; log: $log" >&2
kill "$pid" 2>/dev/null || true
exit 1
