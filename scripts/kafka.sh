#!/usr/bin/env bash
# Starts a local Apache Kafka (one KRaft node that is broker and controller, from Maven
# Central's jars) on loopback, fetching it first if it is missing, and waits until it
# answers a metadata request.
#
#   scripts/kafka.sh [PORT [WATCH_PID]]   # default port 19092; prints the broker JVM's pid
#   scripts/kafka.sh --install            # only fetch Kafka (and Java/Maven if missing)
#   scripts/kafka.sh --data DIR PORT ...  # use (or re-use) log dir DIR: a broker killed with
#                                         # kill -9 restarts on its own data this way
#
# Clients connect to 127.0.0.1:PORT; the controller listener takes PORT+1. With WATCH_PID
# the broker is stopped (and a data dir this script made is deleted) when that process
# exits: the test harness passes its own pid, so no broker outlives a test run. Without
# --data, a fresh data dir is made under ${TMPDIR:-/tmp}. The broker's log is
# DIR/logs/server.log. KAFKA_HEAP (default -Xmx1g) bounds the JVM heap.
#
# The Kafka version is the one in scripts/kafka/pom.xml (docker-compose.yml pins the same);
# its jars go to ${XDG_CACHE_HOME:-~/.cache}/trendwatch/kafka-VERSION/lib, once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pom=$here/kafka/pom.xml
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
cache=${XDG_CACHE_HOME:-$HOME/.cache}/trendwatch/kafka-$version
lib=$cache/lib

need_tools() {
  local missing=()
  # javac too: the readiness probe (scripts/kafka/Ready.java) is compiled once.
  command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  if [ ${#missing[@]} -gt 0 ]; then
    "$here/apt-install.sh" "the local Apache Kafka" "${missing[@]}"
  fi
}

install() {
  [ -f "$lib/.complete" ] && return 0
  need_tools
  echo "fetching Apache Kafka $version from Maven Central into $lib (about a minute the first time)" >&2
  rm -rf "$lib.partial"
  mkdir -p "$cache"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$lib.partial" >&2
  touch "$lib.partial/.complete"
  rm -rf "$lib"
  mv "$lib.partial" "$lib"
}

# The readiness probe, compiled once per version of its source.
probe() {
  local sum out
  sum=$(cksum <"$here/kafka/Ready.java" | cut -d' ' -f1)
  out=$cache/ready-$sum
  if [ ! -f "$out/Ready.class" ]; then
    rm -rf "$out.partial" && mkdir -p "$out.partial"
    javac -nowarn -cp "$lib/*" -d "$out.partial" "$here/kafka/Ready.java" >&2
    rm -rf "$out" && mv "$out.partial" "$out"
  fi
  echo "$out"
}
# Short-lived tools start faster without the optimising compiler.
tool_jvm=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto)

if [ "${1:-}" = "--install" ]; then
  install
  probe >/dev/null
  exit 0
fi
data=""
if [ "${1:-}" = "--data" ]; then
  data=$2
  shift 2
fi
port=${1:-19092}
watch=${2:-}
cport=$((port + 1))
install
ready_classes=$(probe)

# A data dir this script makes is deleted when WATCH_PID exits; one given with --data is
# kept, unless TRENDWATCH_KAFKA_DISPOSABLE=1 says it is the caller's scratch space.
made=${TRENDWATCH_KAFKA_DISPOSABLE:-}
[ "$made" = 1 ] || made=""
if [ -z "$data" ]; then
  data=$(mktemp -d "${TMPDIR:-/tmp}/trendwatch-kafka-$port.XXXXXX")
  made=1
fi
mkdir -p "$data/logs"
config=$data/server.properties
cat >"$config" <<PROPERTIES
# Written by scripts/kafka.sh: one node, broker and controller, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/log
# A single node: the internal topics cannot have more replicas; few partitions start fast.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
num.partitions=1
# Groups form at once (the default waits 3 s for more members).
group.initial.rebalance.delay.ms=0
# The classic protocol's sessions may be as short as the tests' 6 s (the default minimum).
group.min.session.timeout.ms=2000
# KIP-848 groups (group.protocol=consumer): the session timeout and heartbeat interval are
# the broker's; the defaults (45 s, 5 s) would make every failover test wait 45 s.
group.consumer.min.session.timeout.ms=2000
group.consumer.session.timeout.ms=6000
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=500
PROPERTIES

if [ ! -f "$data/log/meta.properties" ]; then
  # A cluster id as kafka.tools.StorageTool random-uuid makes one (16 random bytes,
  # URL-safe base64 without padding), without starting a JVM for it. Like Kafka's own
  # Uuid.randomUuid, draw again when it starts with '-': the tool's argument parser takes
  # "-t -xyz" for a missing id and another option (1 start in 64 failed so, 2026-12-02).
  id=-
  while [ "${id#-}" != "$id" ]; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  done
  java "${tool_jvm[@]}" -cp "$lib/*" -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" -Dkafka.logs.dir="$data/logs" \
    kafka.tools.StorageTool format --standalone -t "$id" -c "$config" >"$data/logs/format.log" 2>&1 \
    || { cat "$data/logs/format.log" >&2; exit 1; }
fi

# shellcheck disable=SC2086
java ${KAFKA_HEAP:--Xmx1g -Xms256m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" -Dkafka.logs.dir="$data/logs" \
  -cp "$lib/*" kafka.Kafka "$config" >"$data/logs/stdout.log" 2>&1 </dev/null &
pid=$!

if [ -n "$watch" ]; then
  # Detached from our stdout so the caller does not wait for the watcher.
  # A broker that dies by itself (or is killed to be restarted on the same data) leaves
  # its data alone; only the watched process's exit ends the broker and its scratch data.
  (while kill -0 "$watch" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
   if ! kill -0 "$watch" 2>/dev/null; then
     kill -9 "$pid" 2>/dev/null || true
     if [ -n "$made" ]; then sleep 1; rm -rf "$data"; fi
   fi) >/dev/null 2>&1 </dev/null &
fi

# Ready when it answers DescribeCluster with a controller and itself (an open port is not
# enough: the broker listens before it has caught up with the metadata log).
if java "${tool_jvm[@]}" -cp "$ready_classes:$lib/*" Ready "127.0.0.1:$port" "${KAFKA_START_TIMEOUT:-60}" 2>/dev/null; then
  echo "$pid"
  exit 0
fi
echo "Apache Kafka did not answer on 127.0.0.1:$port within ${KAFKA_START_TIMEOUT:-60} s; its log ($data/logs/server.log):" >&2
tail -n 40 "$data/logs/server.log" "$data/logs/stdout.log" >&2 || true
kill -9 "$pid" 2>/dev/null || true
exit 1
