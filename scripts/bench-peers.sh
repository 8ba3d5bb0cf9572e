#!/usr/bin/env bash
# Side by side: trendwatch's counter against what a user would write instead (Kafka Streams,
# Flink), on one local Apache Kafka, one topic, one workload published once.
#
#   scripts/bench-peers.sh            # the load generator's default workload, then 1M videos
#   scripts/bench-peers.sh --json     # one JSON object per contender and run, for scripts
#   scripts/bench-peers.sh --smoke    # ~18 000 events, one run; fails if a contender does not
#                                     # consume every record or the JSON is malformed
#
# Each contender runs alone, from the beginning of the topic to its end, in a fresh group:
# the bare consumer (`trendwatch perf consume`), trendwatch's counter at-least-once and
# exactly-once, the Kafka Streams peer (at_least_once, exactly_once_v2) and the Flink peer
# (at-least-once, exactly-once), from peers/. Measured from each one's first record to its
# last: records/s, CPU-seconds per million records (utime+stime from /proc/PID/stat over
# that span), peak RSS (VmHWM) and the alerts on its output topic; the peers' alerts are
# compared with the counter's VIRAL_VELOCITY alerts (same videos, which fired first in event
# time).
#
# Environment: BENCH_RUNS (1) repeats every contender and gives the spread;
# BENCH_WORKLOADS ("default 1m"); BENCH_CONTENDERS (all: bare counter-alos counter-eos
# streams-alos streams-eos flink-alos flink-eos); BENCH_EVENTS (loadgen --events, its
# default when unset); BENCH_LOADGEN_ARGS (more loadgen flags); BENCH_PARTITIONS (4); BENCH_BROKER_PORT (19500); TRENDWATCH_BIN (a
# built trendwatch; else cargo builds it, release, or debug for --smoke); PEER_JAVA_OPTS (extra JVM flags for the peers);
# BENCH_SAVE (a file to keep the raw results in, one JSON line per contender and run);
# BENCH_KEEP=1 keeps the scratch folder (results, every contender's alerts, the ground
# truth; `python3 scripts/bench_peers_table.py DIR/results.jsonl` prints the table again).
# docs/BENCHMARKS.md ("Side by side") has the results.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

json=0
smoke=0
for arg in "$@"; do
  case "$arg" in
    --json) json=1 ;;
    --smoke) smoke=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--json] [--smoke]" >&2; exit 2 ;;
  esac
done

runs=${BENCH_RUNS:-1}
workloads=${BENCH_WORKLOADS:-default 1m}
contenders=${BENCH_CONTENDERS:-bare counter-alos counter-eos streams-alos streams-eos flink-alos flink-eos}
events=${BENCH_EVENTS:-}
loadgen_args=${BENCH_LOADGEN_ARGS:-}
if [ "$smoke" = 1 ]; then
  # About 18 000 events in 30 min of event time, two viral episodes.
  runs=1
  workloads=${BENCH_WORKLOADS:-smoke}
  events=${BENCH_EVENTS:-20000}
  loadgen_args=${BENCH_LOADGEN_ARGS:---episodes 2 --decoys 0 --duration 30m}
fi
partitions=${BENCH_PARTITIONS:-4}
port=${BENCH_BROKER_PORT:-19500}
bootstrap=127.0.0.1:$port
metrics_port=${BENCH_METRICS_PORT:-19564}

dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-peers.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${BENCH_KEEP:-}" ]; then
    echo "# results, alerts and ground truth kept in $dir" >&2
  else
    rm -rf "$dir"
  fi
}
trap cleanup EXIT
trap 'echo "bench-peers failed at line $LINENO; logs in the last lines below" >&2; tail -n 15 "$dir"/*.log >&2 2>/dev/null || true' ERR
say() { echo "# $*" >&2; }

# --- Build what is missing (idempotent; Maven offline first, so a warm cache needs no network).
if [ -n "${TRENDWATCH_BIN:-}" ]; then
  tw=$TRENDWATCH_BIN
elif [ "$smoke" = 1 ]; then
  # The smoke run checks that everything runs, not how fast: the debug build the test suite
  # has just made serves (a cold release build takes many minutes on a 2-core machine).
  scripts/build-deps.sh
  cargo build --quiet --locked -p trendwatch
  tw=${CARGO_TARGET_DIR:-target}/debug/trendwatch
else
  scripts/build-deps.sh
  cargo build --release --quiet --locked -p trendwatch
  tw=${CARGO_TARGET_DIR:-target}/release/trendwatch
fi
build_peer() { # DIR JAR
  local project=$1 jar=$1/target/$2
  if [ -f "$jar" ] && [ -z "$(find "$project/pom.xml" "$project/src" -newer "$jar" -print -quit)" ]; then
    return 0
  fi
  say "building $project (Maven)"
  mvn -q -B -o -f "$project/pom.xml" package -DskipTests >"$dir/mvn.log" 2>&1 \
    || mvn -q -B -f "$project/pom.xml" package -DskipTests >"$dir/mvn.log" 2>&1 \
    || { cat "$dir/mvn.log" >&2; exit 1; }
}
streams_jar=$root/peers/kafka-streams/target/trendwatch-peer-kafka-streams.jar
flink_jar=$root/peers/flink/target/trendwatch-peer-flink.jar
build_peer peers/kafka-streams trendwatch-peer-kafka-streams.jar
case " $contenders " in *" flink-"*) build_peer peers/flink trendwatch-peer-flink.jar ;; esac

# Flink on Java 17: the module flags of its distribution's config (env.java.opts.all).
flink_jvm=(
  --add-exports=java.base/sun.net.util=ALL-UNNAMED
  --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports=jdk.compiler/com.sun.tools.javac.api=ALL-UNNAMED
  --add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports=jdk.compiler/com.sun.tools.javac.parser=ALL-UNNAMED
  --add-exports=jdk.compiler/com.sun.tools.javac.tree=ALL-UNNAMED
  --add-exports=jdk.compiler/com.sun.tools.javac.util=ALL-UNNAMED
  --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.text=ALL-UNNAMED
  --add-opens=java.base/java.time=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
)
# shellcheck disable=SC2206
peer_jvm=(${PEER_JAVA_OPTS:-})

# --- The broker (stopped when this script exits).
pids+=("$(scripts/kafka.sh "$port" $$)")
say "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); Apache Kafka at $bootstrap"

# --- Measuring a process: its CPU (utime+stime, clock ticks) and its peak RSS.
hz=$(getconf CLK_TCK)
cpu_ticks() { # PID -> ticks of the process and its waited-for children
  local stat
  read -r stat <"/proc/$1/stat" || return 1
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  echo $(( ${12} + ${13} + ${14} + ${15} ))
}
peak_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
ge() { awk -v a="${1:-0}" -v b="$2" 'BEGIN{exit !(a >= b)}'; }
now() { date +%s.%N; }

# Waits until PROGRESS (a command printing the records so far) reaches TOTAL while PID runs;
# sets t0/t1, c0/c1 (ticks), n0/n1 (records at the first sample with records and the last).
measure() { # PID TOTAL TIMEOUT_S PROGRESS...
  local pid=$1 total=$2 timeout=$3 n deadline
  shift 3
  deadline=$(( $(date +%s) + timeout ))
  n0=""; n1=0; t0=0; t1=0; c0=0; c1=0
  while :; do
    kill -0 "$pid" 2>/dev/null || { say "contender exited early"; return 1; }
    n=$("$@" 2>/dev/null || true)
    if [ -n "$n" ] && ge "$n" 1; then
      if [ -z "$n0" ]; then n0=$n; t0=$(now); c0=$(cpu_ticks "$pid"); fi
      if ge "$n" "$total"; then n1=$n; t1=$(now); c1=$(cpu_ticks "$pid"); return 0; fi
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { n1=${n:-0}; say "timed out at $n1 of $total records"; return 1; }
    sleep 0.05
  done
}
# The peers print `records N`: Kafka Streams' process-total (records processed, so a task
# re-processed after a rebalance counts twice), Flink's records decoded.
last_records() { awk '/^records /{n=$2} END{if (n != "") print n}' "$1"; }
counter_consumed() {
  { curl -fsS "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null || true; } \
    | awk '/^trendwatch_records_consumed_total /{print $2; exit}'
}
stop() { # PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (20)
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < ${2:-20} * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
dump() { # TOPIC -> its records, one per line
  java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$streams_jar" dev.trendwatch.peers.tools.DumpTopic "$bootstrap" "$1" 2>>"$dir/dump.log"
}
# One result line: name workload run consumed span_records seconds ticks peak_kib alerts_file
# [status]; the rates are over span_records, read in `seconds` with `ticks` of CPU.
record() {
  local name=$1 wl=$2 run=$3 consumed=$4 span=$5 seconds=$6 ticks=$7 kib=$8 alerts=$9 status=${10:-ok}
  python3 - "$name" "$wl" "$run" "$consumed" "$span" "$seconds" "$ticks" "$hz" "$kib" "$alerts" "$total" "$status" "$dir/truth-$wl.json" >>"$dir/results.jsonl" <<'PY'
import json, sys
name, wl, run, consumed, span, seconds, ticks, hz, kib, alerts, total, status, truth = sys.argv[1:]
consumed, span, seconds, cpu = int(float(consumed)), int(float(span)), float(seconds), int(ticks) / int(hz)
n = 0
viral = 0
if alerts and alerts != "-":
    with open(alerts) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            a = json.loads(line)  # malformed alert JSON fails the run
            n += 1
            viral += a.get("type") == "VIRAL_VELOCITY"
print(json.dumps({
    "name": name, "workload": wl, "run": int(run), "status": status,
    "records": consumed, "expected_records": int(total), "measured_records": span,
    "seconds": round(seconds, 3),
    "records_per_s": round(span / seconds) if seconds > 0 else 0,
    "cpu_s": round(cpu, 2),
    "cpu_s_per_million": round(cpu / (span / 1e6), 3) if span > 0 else None,
    "peak_rss_mib": round(int(kib or 0) / 1024, 1),
    "alerts": n, "viral_velocity_alerts": viral,
    "alerts_file": alerts if alerts != "-" else None,
    "truth_file": truth,
}))
PY
}

# --- The contenders. Each sets nothing global but appends one result line.
run_bare() { # WL RUN
  local out=$dir/bare-$1-$2.json peak=0 pid
  "$tw" perf consume --config "$dir/$1.toml" --records "$total" --timeout 10m --group "bare-$1-$2-$$" >"$out" 2>"$dir/bare.log" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do p=$(peak_kib "$pid"); [ "${p:-0}" -gt "$peak" ] && peak=$p; sleep 0.05; done
  wait "$pid" || { record bare "$1" "$2" 0 0 0 0 "$peak" - failed; return; }
  read -r records seconds cpu < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["records"], r["seconds"], r["cpu_seconds"])' "$out")
  record bare "$1" "$2" "$records" "$records" "$seconds" "$(awk -v c="$cpu" -v h="$hz" 'BEGIN{printf "%d", c*h + 0.5}')" "$peak" -
}

run_counter() { # WL RUN GUARANTEE NAME
  local wl=$1 run=$2 name=$4 tag="$4-$1-$2" pid kib status=ok
  cat >"$dir/$tag.toml" <<TOML
[kafka]
"bootstrap.servers" = "$bootstrap"
[topics]
events = "events-$wl"
alerts = "$tag-alerts"
state = "$tag-state"
dlq = "$tag-dlq"
candidates = "$tag-candidates"
leaderboard = "$tag-leaderboard"
ranker_state = "$tag-ranker-state"
[counter]
group_id = "$tag"
input_format = "json"
output_format = "json"
processing_guarantee = "$3"
tick_interval = "20ms"
checkpoint_interval = "10s"
TOML
  "$tw" topics create --config "$dir/$tag.toml" --partitions "$partitions" >/dev/null
  "$tw" run --config "$dir/$tag.toml" --metrics-addr "127.0.0.1:$metrics_port" 2>"$dir/$tag.log" &
  pid=$!
  pids+=("$pid")
  measure "$pid" "$total" 600 counter_consumed || status=failed
  kib=$(peak_kib "$pid")
  # A graceful stop flushes the alerts and, exactly-once, commits the last transaction.
  stop "$pid" 40
  dump "$tag-alerts" >"$dir/$tag.alerts"
  record "$name" "$wl" "$run" "${n1%.*}" "$((${n1%.*} - ${n0%.*}))" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
    "$((c1 - c0))" "$kib" "$dir/$tag.alerts" "$status"
}

run_java() { # WL RUN NAME SETTLE_S ENV... -- JAVA_ARGS...
  local wl=$1 run=$2 name=$3 settle=$4 tag="$3-$1-$2" pid kib status=ok envs=()
  shift 4
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" OUTPUT_TOPIC="$tag-alerts" INPUT_TOPIC="events-$wl" BOOTSTRAP_SERVERS="$bootstrap" \
    java "${peer_jvm[@]}" "$@" >"$dir/$tag.out" 2>"$dir/$tag.log" &
  pid=$!
  pids+=("$pid")
  measure "$pid" "$total" 900 last_records "$dir/$tag.out" || status=failed
  kib=$(peak_kib "$pid")
  # Exactly-once sinks publish at their next commit (Flink: checkpoint) after the last record.
  sleep "$settle"
  stop "$pid" 30
  dump "$tag-alerts" >"$dir/$tag.alerts"
  record "$name" "$wl" "$run" "$n1" "$((n1 - n0))" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
    "$((c1 - c0))" "$kib" "$dir/$tag.alerts" "$status"
}

run_contender() { # NAME WL RUN
  local name=$1 wl=$2 run=$3 tag="$1-$2-$3"
  say "$wl run $run: $name"
  case "$name" in
    bare) run_bare "$wl" "$run" ;;
    counter-alos) run_counter "$wl" "$run" at-least-once "$name" ;;
    counter-eos) run_counter "$wl" "$run" exactly-once "$name" ;;
    streams-alos|streams-eos)
      local g=at_least_once
      [ "$name" = streams-eos ] && g=exactly_once_v2
      mkdir -p "$dir/$tag-state"
      run_java "$wl" "$run" "$name" 2 APPLICATION_ID="$tag" PROCESSING_GUARANTEE=$g STATE_DIR="$dir/$tag-state" -- \
        -jar "$streams_jar" ;;
    flink-alos|flink-eos)
      local g=at_least_once settle=2
      [ "$name" = flink-eos ] && { g=exactly_once; settle=12; }
      mkdir -p "$dir/$tag-checkpoints"
      run_java "$wl" "$run" "$name" "$settle" GROUP_ID="$tag" GUARANTEE=$g CHECKPOINT_DIR="file://$dir/$tag-checkpoints" -- \
        "${flink_jvm[@]}" -jar "$flink_jar" ;;
    *) echo "unknown contender $name" >&2; exit 2 ;;
  esac
}

# --- Workloads: published once each, then every contender alone, BENCH_RUNS times.
: >"$dir/results.jsonl"
for wl in $workloads; do
  case "$wl" in
    default|smoke) videos=() ;;
    1m) videos=(--videos 1000000) ;;
    *) echo "unknown workload $wl (default, 1m, smoke)" >&2; exit 2 ;;
  esac
  cat >"$dir/$wl.toml" <<TOML
[kafka]
"bootstrap.servers" = "$bootstrap"
[topics]
events = "events-$wl"
TOML
  "$tw" topics create --config "$dir/$wl.toml" --partitions "$partitions" >/dev/null
  # Event times end about now (the counter rejects events too far in the future).
  start_ms=$(( $(date +%s) * 1000 - 7200 * 1000 ))
  # shellcheck disable=SC2086
  "$tw" loadgen "${videos[@]}" ${events:+--events $events} $loadgen_args --start "$start_ms" \
    --out "$dir/events-$wl.jsonl" --truth "$dir/truth-$wl.json" --publish --config "$dir/$wl.toml" \
    >"$dir/loadgen-$wl.log" 2>&1 || { cat "$dir/loadgen-$wl.log" >&2; exit 1; }
  total=$(grep -oE '^published [0-9]+' "$dir/loadgen-$wl.log" | grep -oE '[0-9]+')
  say "workload $wl: $total events on events-$wl ($partitions partitions) — $(grep -E '^wrote' "$dir/loadgen-$wl.log" | head -n 1)"
  rm -f "$dir/events-$wl.jsonl"
  for ((run = 1; run <= runs; run++)); do
    for c in $contenders; do run_contender "$c" "$wl" "$run"; done
  done
done

# --- The table (or JSON), the alert comparison, and the verdict (scripts/bench_peers_table.py).
[ -n "${BENCH_SAVE:-}" ] && cp "$dir/results.jsonl" "$BENCH_SAVE"
table=(python3 scripts/bench_peers_table.py)
[ "$json" = 1 ] && table+=(--json)
"${table[@]}" "$dir/results.jsonl"
