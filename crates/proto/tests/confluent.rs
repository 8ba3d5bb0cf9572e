//! Confluent Schema Registry framing: hand-built golden frames (and the frames Confluent's
//! own Python serializer wrote, see `scripts/confluent-fixtures.sh`), each decoded to the
//! golden event or refused with its reason; framed and bare records decode alike.
//!
//! The hand-built fixtures are regenerated with `TW_BLESS=1 cargo test -p
//! trendwatch-proto` — only on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use proptest::prelude::*;
use trendwatch_core::EventKind;
use trendwatch_proto::framing::{self, ConfluentFrame};
use trendwatch_proto::{
    DecodedEvent, EventRecord, InputFormat, Rejection, ValidationConfig, decode_in,
};

const NOW: i64 = 1_767_571_200_000;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The bare golden event, as `contract.rs` pins it.
fn golden_pb() -> Vec<u8> {
    read("event.pb")
}

fn golden_json() -> Vec<u8> {
    read("event.json")
}

fn golden_event() -> EventRecord {
    EventRecord::decode(&golden_pb(), false).unwrap()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Every hand-built frame: its fixture name, bytes, input format and expected outcome
/// (`"ok"`: decodes to the golden event; else the rejection's reason code) with no
/// allow-list.
fn frames() -> Vec<(&'static str, Vec<u8>, InputFormat, &'static str)> {
    let pb = golden_pb();
    let json = golden_json();
    use InputFormat::{ConfluentJson as CJ, ConfluentProtobuf as CP};
    vec![
        // Magic 0, schema id 1, the short form of message indexes [0], the message.
        (
            "pb-index-short.bin",
            cat(&[&[0, 0, 0, 0, 1, 0], &pb]),
            CP,
            "ok",
        ),
        // The same indexes written out: count 1 (zigzag 2), index 0.
        (
            "pb-index-explicit.bin",
            cat(&[&[0, 0, 0, 0, 1, 2, 0], &pb]),
            CP,
            "ok",
        ),
        // Schema id 258 (0x0102): big-endian.
        ("json.bin", cat(&[&[0, 0, 0, 1, 2], &json]), CJ, "ok"),
        // A bare record under a confluent format: refused, not decoded as bare.
        ("pb-bare.bin", pb.clone(), CP, "no_magic_byte"),
        ("json-bare.bin", json.clone(), CJ, "no_magic_byte"),
        // Magic byte 1 (a schema GUID) is not the id framing.
        (
            "pb-magic-1.bin",
            cat(&[&[1, 0, 0, 0, 1, 0], &pb]),
            CP,
            "no_magic_byte",
        ),
        ("empty.bin", Vec::new(), CP, "no_magic_byte"),
        // Magic and three of the four id bytes.
        ("truncated-header.bin", vec![0, 0, 0, 1], CJ, "bad_framing"),
        (
            "truncated-header-pb.bin",
            vec![0, 0, 0, 0, 1],
            CP,
            "bad_framing",
        ),
        // A message-index count varint that never ends within 32 bits.
        (
            "bad-varint.bin",
            cat(&[&[0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x7f], &pb]),
            CP,
            "bad_framing",
        ),
        // Count 3 (zigzag 6), one index, then the end of the record.
        (
            "truncated-indexes.bin",
            vec![0, 0, 0, 0, 1, 6, 0],
            CP,
            "bad_framing",
        ),
        // Count -1 (zigzag 1).
        (
            "negative-count.bin",
            cat(&[&[0, 0, 0, 0, 1, 1, 0], &pb]),
            CP,
            "bad_framing",
        ),
        // Indexes [1]: the second message of the producer's file, not EngagementEvent.
        (
            "pb-index-1.bin",
            cat(&[&[0, 0, 0, 0, 1, 2, 2], &pb]),
            CP,
            "wrong_message_type",
        ),
        // Indexes [0, 0]: a message nested in the first one.
        (
            "pb-index-nested.bin",
            cat(&[&[0, 0, 0, 0, 1, 4, 0, 0], &pb]),
            CP,
            "wrong_message_type",
        ),
    ]
}

fn outcome(r: Result<DecodedEvent<'_>, Rejection>) -> &'static str {
    match r {
        Ok(ev) => {
            assert_eq!(EventRecord::from_decoded(&ev).unwrap(), golden_event());
            "ok"
        }
        Err(r) => r.reason(),
    }
}

#[test]
fn golden_frames_decode_to_the_event_or_their_reason() {
    let cfg = ValidationConfig::default();
    for (name, bytes, format, want) in frames() {
        let path = fixture(&format!("confluent/{name}"));
        if std::env::var_os("TW_BLESS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "confluent/{name} changed: the framing contract is not what it was"
        );
        assert_eq!(outcome(decode_in(&bytes, format, &cfg)), want, "{name}");
    }
}

#[test]
fn rejections_say_what_is_wrong() {
    let cfg = ValidationConfig::default();
    let msg = |name: &str| {
        let (_, bytes, format, _) = frames().into_iter().find(|f| f.0 == name).unwrap();
        decode_in(&bytes, format, &cfg).unwrap_err().to_string()
    };
    let bare = msg("pb-bare.bin");
    assert!(
        bare.contains("starts with 0x0a, not the magic byte 0x00"),
        "{bare}"
    );
    let json = msg("json-bare.bin");
    assert!(json.contains("bare JSON"), "{json}");
    assert!(msg("pb-magic-1.bin").contains("GUID"));
    assert!(msg("empty.bin").contains("empty"));
    assert!(msg("truncated-header.bin").contains("5-byte header"));
    assert!(msg("bad-varint.bin").contains("varint"));
    assert!(msg("truncated-indexes.bin").contains("run past the record"));
    assert!(msg("negative-count.bin").contains("negative"));
    let other = msg("pb-index-1.bin");
    assert!(
        other.contains("[1]") && other.contains("trendwatch.v1.EngagementEvent"),
        "{other}"
    );
    assert!(msg("pb-index-nested.bin").contains("[0, 0]"));
}

#[test]
fn a_bare_counter_refuses_framed_records_as_undecodable() {
    let cfg = ValidationConfig::default();
    for (name, format) in [
        ("confluent/pb-index-short.bin", InputFormat::Protobuf),
        ("confluent/json.bin", InputFormat::Json),
    ] {
        assert_eq!(
            decode_in(&read(name), format, &cfg).unwrap_err().reason(),
            "undecodable",
            "{name}"
        );
    }
}

#[test]
fn the_allow_list_admits_only_its_ids() {
    let short = read("confluent/pb-index-short.bin");
    let json = read("confluent/json.bin");
    let only = |ids: &[u32]| ValidationConfig {
        allowed_schema_ids: ids.to_vec(),
        ..ValidationConfig::default()
    };
    for (bytes, format, id) in [
        (&short, InputFormat::ConfluentProtobuf, 1),
        (&json, InputFormat::ConfluentJson, 258),
    ] {
        assert_eq!(outcome(decode_in(bytes, format, &only(&[]))), "ok");
        assert_eq!(outcome(decode_in(bytes, format, &only(&[7, id]))), "ok");
        let refused = decode_in(bytes, format, &only(&[7])).unwrap_err();
        assert_eq!(refused, Rejection::SchemaIdNotAllowed(id));
        assert_eq!(
            refused.to_string(),
            format!("schema id {id} is not in validation.allowed_schema_ids")
        );
        // The bare formats carry no schema id: the list does not apply to them.
        let bare = if format == InputFormat::ConfluentJson {
            golden_json()
        } else {
            golden_pb()
        };
        assert_eq!(
            outcome(decode_in(&bare, format.encoding(), &only(&[7]))),
            "ok"
        );
    }
}

#[test]
fn the_size_limit_counts_the_framing() {
    let short = read("confluent/pb-index-short.bin");
    let cfg = ValidationConfig {
        max_message_bytes: short.len() - 1,
        ..ValidationConfig::default()
    };
    assert_eq!(
        decode_in(&short, InputFormat::ConfluentProtobuf, &cfg).unwrap_err(),
        Rejection::TooLarge(short.len())
    );
}

#[test]
fn every_framing_reason_is_listed_for_the_metrics() {
    let cfg = ValidationConfig::default();
    let mut seen: Vec<&str> = frames()
        .iter()
        .filter_map(|(_, b, f, _)| decode_in(b, *f, &cfg).err().map(|r| r.reason()))
        .collect();
    let only_2 = ValidationConfig {
        allowed_schema_ids: vec![2],
        ..ValidationConfig::default()
    };
    let short = read("confluent/pb-index-short.bin");
    seen.extend(
        decode_in(&short, InputFormat::ConfluentProtobuf, &only_2)
            .err()
            .map(|r| r.reason()),
    );
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen,
        [
            "bad_framing",
            "no_magic_byte",
            "schema_id_not_allowed",
            "wrong_message_type"
        ]
    );
    for r in seen {
        assert!(Rejection::ALL_REASONS.contains(&r), "{r}");
    }
}

/// The frames Confluent's Python serializer (confluent-kafka, ProtobufSerializer and
/// JSONSerializer against a mock registry) wrote for the golden event, byte for byte the
/// hand-built ones: `scripts/confluent-fixtures.sh` regenerates them.
#[test]
fn confluents_python_serializer_writes_the_frames_we_read() {
    let python_pb = read("confluent/python-protobuf.bin");
    let (_, ours, _, _) = frames().remove(0);
    assert_eq!(python_pb, ours, "ProtobufSerializer's frame");
    let cfg = ValidationConfig::default();
    assert_eq!(
        outcome(decode_in(&python_pb, InputFormat::ConfluentProtobuf, &cfg)),
        "ok"
    );
    // The JSON serializer writes its own JSON text (key order and spacing of Python's
    // json.dumps) after the 5-byte header for schema id 2: compare the decoded event.
    let python_json = read("confluent/python-json.bin");
    assert_eq!(&python_json[..5], &[0, 0, 0, 0, 2]);
    assert_eq!(
        outcome(decode_in(&python_json, InputFormat::ConfluentJson, &cfg)),
        "ok"
    );
    // A producer whose .proto file has EngagementEvent second (message indexes [1]):
    // Confluent writes the explicit form, and we refuse it as another message type.
    let second = read("confluent/python-protobuf-second-message.bin");
    assert_eq!(&second[..7], &[0, 0, 0, 0, 3, 2, 2]);
    assert_eq!(
        decode_in(&second, InputFormat::ConfluentProtobuf, &cfg)
            .unwrap_err()
            .reason(),
        "wrong_message_type"
    );
}

fn arb_event() -> impl Strategy<Value = EventRecord> {
    (
        "[a-z0-9-]{1,20}",
        "[a-z0-9]{1,12}",
        ".{0,12}",
        prop::option::of(".{0,12}"),
        0usize..5,
        946_684_800_000i64..NOW,
    )
        .prop_map(
            |(event_id, video_id, creator_id, user_id, k, event_time)| EventRecord {
                event_id,
                video_id,
                creator_id,
                user_id,
                kind: EventKind::ALL[k],
                event_time,
            },
        )
}

proptest! {
    #[test]
    fn framed_and_bare_records_decode_alike(e in arb_event(), id in 1u32..=i32::MAX as u32, explicit in any::<bool>()) {
        let cfg = ValidationConfig::default();
        let mut pb = Vec::new();
        e.encode_protobuf(&mut pb);
        let indexes: &[u8] = if explicit { &[2, 0] } else { &[0] };
        let framed = cat(&[&[0], &id.to_be_bytes(), indexes, &pb]);
        prop_assert_eq!(
            framing::unframe_confluent_protobuf(&framed, &[id]),
            Ok(ConfluentFrame { schema_id: id, payload: &pb[..] })
        );
        prop_assert_eq!(
            decode_in(&framed, InputFormat::ConfluentProtobuf, &cfg),
            decode_in(&pb, InputFormat::Protobuf, &cfg)
        );
        let json = e.to_json();
        let framed = cat(&[&[0], &id.to_be_bytes(), json.as_bytes()]);
        prop_assert_eq!(
            decode_in(&framed, InputFormat::ConfluentJson, &cfg),
            decode_in(json.as_bytes(), InputFormat::Json, &cfg)
        );
    }

    #[test]
    fn random_bytes_under_confluent_formats_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), ids in prop::collection::vec(any::<u32>(), 0..3)) {
        let cfg = ValidationConfig { allowed_schema_ids: ids, ..ValidationConfig::default() };
        for format in [InputFormat::ConfluentProtobuf, InputFormat::ConfluentJson] {
            if let Ok(ev) = decode_in(&bytes, format, &cfg) {
                let _ = ev.validate(NOW, &cfg);
            }
            // Frames with a valid header, so the index parser sees the random tail.
            let framed = cat(&[&[0, 0, 0, 0, 1], &bytes]);
            let _ = decode_in(&framed, format, &cfg);
        }
    }
}
