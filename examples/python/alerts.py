#!/usr/bin/env python3
"""Read trendwatch's alert topic (JSON form) until a VIRAL_VELOCITY alert arrives.

    python alerts.py --bootstrap 127.0.0.1:19092 --topic trendwatch-alerts [--video V] [--timeout 60]

Prints the first VIRAL_VELOCITY alert (for --video, if given) to stdout as the JSON the
counter wrote, one line, and its explanation to stderr; other alerts are reported on stderr
as they pass. Exit status 0 when the alert arrived, 1 when --timeout seconds passed first.

The counter must run with counter.output_format = "json" (its default is protobuf). Without
--group, a fresh consumer group reads the topic from its beginning, so alerts emitted before
this started are seen too; a service would use a stable group and commit as it goes.
"""

import argparse
import json
import secrets
import sys
import time

from confluent_kafka import Consumer, KafkaException


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="host:port of a Kafka broker")
    parser.add_argument("--topic", required=True, help="the counter's alert topic")
    parser.add_argument("--video", help="wait for this video's alert (default: any video)")
    parser.add_argument("--group", help="consumer group (default: a fresh one)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    args = parser.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group or f"trendwatch-example-alerts-{secrets.token_hex(4)}",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([args.topic])
    deadline = time.monotonic() + args.timeout
    warned = False
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                # Transient (the topic not created yet, a broker restarting): keep polling.
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                print(f"warning: {msg.error()}", file=sys.stderr)
                continue
            try:
                alert = json.loads(msg.value())
            except (ValueError, TypeError):
                if not warned:
                    print("warning: an alert record is not JSON: does the counter run with "
                          'counter.output_format = "json"?', file=sys.stderr)
                    warned = True
                continue
            kind, video = alert.get("type"), alert.get("video_id")
            if kind == "VIRAL_VELOCITY" and args.video in (None, video):
                print(msg.value().decode())
                print(f"{kind} {video} tier {alert.get('tier')}: {alert.get('explanation')}",
                      file=sys.stderr)
                return 0
            print(f"seen {kind} {video}", file=sys.stderr)
    finally:
        consumer.close()
    which = f" for {args.video}" if args.video else ""
    print(f"error: no VIRAL_VELOCITY alert{which} on {args.topic} within {args.timeout:g} s",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaException as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
