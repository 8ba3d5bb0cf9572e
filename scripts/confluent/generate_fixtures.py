"""Writes the frames Confluent's own Python serializers produce for trendwatch's golden
event, as fixtures for crates/proto/tests/confluent.rs.

Run by scripts/confluent-fixtures.sh (which pins the versions in requirements.txt). The
registry is confluent-kafka's in-process mock (url mock://...): it assigns schema ids
1, 2, 3 in registration order, which the Rust test relies on.

  1 python-protobuf.bin          ProtobufSerializer, proto/trendwatch/v1/events.proto
  2 python-json.bin              JSONSerializer, proto/trendwatch/v1/engagement_event.schema.json
  3 python-protobuf-second-message.bin
                                 ProtobufSerializer, a producer's own .proto file in which
                                 EngagementEvent is the second message (indexes [1])
"""

import importlib
import json
import pathlib
import subprocess
import sys
import tempfile

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"
OUT = ROOT / "crates/proto/tests/fixtures/confluent"

# The golden event of crates/proto/tests/contract.rs.
GOLDEN = {
    "event_id": "e-0001",
    "video_id": "v0000042",
    "creator_id": "c000007",
    "user_id": "u123",
    "kind": "LIKE",
    "event_time": 1767571234567,
}

# A producer's file with another message first: Confluent must write indexes [1].
SECOND_MESSAGE_PROTO = """
syntax = "proto3";
package producer.v1;
message Envelope { string note = 1; }
message EngagementEvent {
  string event_id = 1;
  string video_id = 2;
  string creator_id = 3;
  optional string user_id = 4;
  int32 kind = 5;
  int64 event_time = 6;
}
"""


def compile_proto(include: pathlib.Path, rel: str, out: pathlib.Path):
    """protoc from grpcio-tools (no system protoc here); returns the generated module."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{include}", f"--python_out={out}", str(include / rel)]
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed on {rel}")
    sys.path.insert(0, str(out))
    return importlib.import_module(rel.removesuffix(".proto").replace("/", ".") + "_pb2")


def main():
    registry = SchemaRegistryClient.new_client({"url": "mock://trendwatch-fixtures"})
    ctx = SerializationContext("engagement-events", MessageField.VALUE)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        events = compile_proto(PROTO, "trendwatch/v1/events.proto", tmp)
        msg = events.EngagementEvent(
            event_id=GOLDEN["event_id"],
            video_id=GOLDEN["video_id"],
            creator_id=GOLDEN["creator_id"],
            user_id=GOLDEN["user_id"],
            kind=events.EVENT_KIND_LIKE,
            event_time=GOLDEN["event_time"],
        )
        pb = ProtobufSerializer(events.EngagementEvent, registry, {"use.deprecated.format": False})
        (OUT / "python-protobuf.bin").write_bytes(pb(msg, ctx))

        schema = (PROTO / "trendwatch/v1/engagement_event.schema.json").read_text()
        # validate=True (the default): the serializer checks the event against our schema.
        js = JSONSerializer(schema, registry, conf={"validate": True})
        (OUT / "python-json.bin").write_bytes(js(dict(GOLDEN), ctx))

        other_dir = tmp / "producer"
        (other_dir / "producer").mkdir(parents=True)
        (other_dir / "producer/events.proto").write_text(SECOND_MESSAGE_PROTO)
        other = compile_proto(other_dir, "producer/events.proto", tmp / "gen2")
        m2 = other.EngagementEvent(**{**GOLDEN, "kind": 2})
        pb2 = ProtobufSerializer(other.EngagementEvent, registry, {"use.deprecated.format": False})
        (OUT / "python-protobuf-second-message.bin").write_bytes(
            pb2(m2, SerializationContext("other-events", MessageField.VALUE))
        )
    for name in ["python-protobuf.bin", "python-json.bin", "python-protobuf-second-message.bin"]:
        print(name, (OUT / name).read_bytes()[:12].hex(" "), "...")


if __name__ == "__main__":
    main()
