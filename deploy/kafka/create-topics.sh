#!/bin/sh
# Creates every topic trendwatch uses, if missing, with its partitions and retention.
# docker-compose.yml runs it once in the apache/kafka image (`topics` service) before the
# counter, the ranker and the load generator start; it works against any Kafka:
#
#   BOOTSTRAP=broker:9092 PARTITIONS=48 REPLICATION_FACTOR=3 deploy/kafka/create-topics.sh
#
# The names and shapes are those of `trendwatch topics create` (crates/runtime/src/client.rs:
# counter_topics + ranker_topics), plus retention settings that command leaves to the broker:
#
#   engagement-events        PARTITIONS   7 days     the input; keyed by video_id
#   trendwatch-alerts        PARTITIONS   7 days     keyed by video_id
#   trendwatch-state         PARTITIONS   compacted  counter checkpoints (as many partitions as the events)
#   trendwatch-dlq           PARTITIONS   14 days    rejected input with headers saying why
#   trendwatch-candidates    1            7 days     counters -> ranker (exactly one partition)
#   trendwatch-leaderboard   1            compacted  the current board per scope
#   trendwatch-ranker-state  1            compacted  ranker checkpoints
#   trendwatch-members       1            compacted  counters' query-API addresses and partitions
#
# The late-events topic is created only when LATE_TOPIC is set (topics.late in the config).
# A topic that exists is left as it is (--if-not-exists); its partition count is printed so a
# mismatch with PARTITIONS shows. Partitions of the events topic can be added later but keys
# then move to other partitions: see docs/OPERATIONS.md#partitions.
set -eu

BOOTSTRAP=${BOOTSTRAP:-kafka:19092}
PARTITIONS=${PARTITIONS:-12}
REPLICATION_FACTOR=${REPLICATION_FACTOR:-1}
KAFKA_BIN=${KAFKA_BIN:-/opt/kafka/bin}
LATE_TOPIC=${LATE_TOPIC:-}

DAY_MS=86400000

# Checkpoint topics: a restore reads its state partition from the beginning, so what the
# log cleaner has not compacted yet is read too. Small segments that roll often and a low
# dirty ratio keep that close to the two latest checkpoints per partition.
COMPACTED="--config cleanup.policy=compact \
  --config segment.bytes=67108864 \
  --config segment.ms=600000 \
  --config min.cleanable.dirty.ratio=0.1 \
  --config max.compaction.lag.ms=900000"

create() {
  name=$1
  partitions=$2
  shift 2
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$name" --partitions "$partitions" --replication-factor "$REPLICATION_FACTOR" "$@"
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --describe --topic "$name" \
    | head -n 1
}

echo "creating trendwatch topics on $BOOTSTRAP (events partitions: $PARTITIONS, replication: $REPLICATION_FACTOR)"
create engagement-events "$PARTITIONS" --config retention.ms=$((7 * DAY_MS))
create trendwatch-alerts "$PARTITIONS" --config retention.ms=$((7 * DAY_MS))
# shellcheck disable=SC2086 # $COMPACTED is meant to split into words
create trendwatch-state "$PARTITIONS" $COMPACTED
create trendwatch-dlq "$PARTITIONS" --config retention.ms=$((14 * DAY_MS))
create trendwatch-candidates 1 --config retention.ms=$((7 * DAY_MS))
create trendwatch-leaderboard 1 --config cleanup.policy=compact
# shellcheck disable=SC2086 # as above
create trendwatch-ranker-state 1 $COMPACTED
# shellcheck disable=SC2086 # as above
create trendwatch-members 1 $COMPACTED
if [ -n "$LATE_TOPIC" ]; then
  create "$LATE_TOPIC" "$PARTITIONS" --config retention.ms=$((7 * DAY_MS))
fi
echo "topics ready"
