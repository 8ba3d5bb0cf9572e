#!/usr/bin/env python3
"""Publish the example workload to trendwatch's events topic, in its JSON form.

Twenty minutes of event time ending now: every 10 s one VIEW on the target video and on
each of four background videos, then, in the last minute, a burst of LIKEs on the target
with four VIEWs each (views that come with the likes, as genuine engagement brings). The
counter's default velocity warm-up is 15 minutes of event time from a partition's first
event, so the history comes first and the burst after it; the whole history is published at
once. Total: 600 + 5 * likes events (900 by default).

    python produce.py --bootstrap 127.0.0.1:19092 --topic engagement-events [--video V] [--likes N]

Each event is one JSON object (keys are the proto field names of
trendwatch.v1.EngagementEvent, kind is the enum name without prefix, event_time is integer
milliseconds since the epoch), keyed by video_id. The counter must run with
counter.input_format = "json". Exit status 0 when every event was acknowledged by the
broker, 1 otherwise.
"""

import argparse
import json
import secrets
import sys
import time

from confluent_kafka import KafkaException, Producer

HISTORY_MS = 20 * 60_000
STEP_MS = 10_000
BURST_MS = 60_000
BACKGROUND_VIDEOS = 4
VIEWS_PER_LIKE = 4


def workload(video, likes, end_ms, run):
    """The events, in event-time order: (video_id, event) pairs."""
    start = end_ms - HISTORY_MS
    timed = []  # (event_time, sequence, video_id, creator_id, kind)

    def add(t, video_id, creator_id, kind):
        timed.append((t, len(timed), video_id, creator_id, kind))

    for step in range(HISTORY_MS // STEP_MS):
        t = start + step * STEP_MS
        for b in range(1, BACKGROUND_VIDEOS + 1):
            add(t + 100 * (b - 1), f"{video}-background-{b}", "creator-background", "VIEW")
        add(t + 500, video, "creator-example", "VIEW")
    burst = end_ms - BURST_MS
    for i in range(likes):
        t = burst + i * BURST_MS // likes
        add(t, video, "creator-example", "LIKE")
        for j in range(1, VIEWS_PER_LIKE + 1):
            add(t + j, video, "creator-example", "VIEW")
    timed.sort()
    for seq, (t, _, video_id, creator_id, kind) in enumerate(timed):
        yield video_id, {
            "event_id": f"{run}-{seq}",
            "video_id": video_id,
            "creator_id": creator_id,
            "user_id": f"user-{seq % 1000}",
            "kind": kind,
            "event_time": t,
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="host:port of a Kafka broker")
    parser.add_argument("--topic", required=True, help="the counter's events topic")
    parser.add_argument("--video", default="v-example", help="the video that goes viral")
    parser.add_argument("--likes", type=int, default=60, help="likes in the burst")
    args = parser.parse_args()
    if args.likes < 1:
        parser.error("--likes must be at least 1")

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        # Every event acknowledged by all in-sync replicas, never duplicated by a retry.
        "enable.idempotence": True,
        "acks": "all",
        # Java's and Go's default partitioner (murmur2), so a video's events land on the
        # same partition whichever of the examples' clients publishes them; librdkafka's
        # own default (consistent_random, CRC-32) would place them elsewhere.
        "partitioner": "murmur2_random",
        "linger.ms": 20,
    })
    failed = []

    def on_delivery(err, _msg):
        if err is not None:
            failed.append(err)

    sent = 0
    for key, event in workload(args.video, args.likes, int(time.time() * 1000), secrets.token_hex(4)):
        value = json.dumps(event, separators=(",", ":")).encode()
        while True:
            try:
                producer.produce(args.topic, key=key.encode(), value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)  # the local queue is full: serve callbacks, retry
        producer.poll(0)
        sent += 1
    unsent = producer.flush(30)
    acked = sent - unsent - len(failed)
    print(f"produced {acked} of {sent} events to {args.topic} "
          f"({args.likes} likes on {args.video} in the last minute)", file=sys.stderr)
    if failed or unsent:
        first = failed[0] if failed else "flush timed out"
        print(f"error: {len(failed)} failed, {unsent} unacknowledged; first: {first}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaException as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
