//! The wire contract: golden bytes, decoder agreement with prost, hostile bytes, files.
//!
//! Golden fixtures are regenerated with `TW_BLESS=1 cargo test -p trendwatch-proto` —
//! only on purpose, when the contract changes compatibly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use proptest::prelude::*;
use prost::Message;
use trendwatch_core::{Alert, AlertType, Board, BoardEntry, EventKind};
use trendwatch_proto::files::{
    AlertFileWriter, EventFileWriter, Format, RecordReader, read_alert_file, read_event_file,
};
use trendwatch_proto::{
    AlertRecord, EventRecord, LeaderboardRecord, Rejection, ValidationConfig, decode_event,
    decode_event_json, decode_in, pb,
};

const NOW: i64 = 1_767_571_200_000;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn golden_event() -> EventRecord {
    EventRecord {
        event_id: "e-0001".into(),
        video_id: "v0000042".into(),
        creator_id: "c000007".into(),
        user_id: Some("u123".into()),
        kind: EventKind::Like,
        event_time: 1_767_571_234_567,
    }
}

fn golden_alert() -> AlertRecord {
    AlertRecord::from_alert(
        &Alert {
            alert_id: "0123456789abcdef0123456789abcdef".into(),
            video_id: "v0000042".into(),
            creator_id: "c000007".into(),
            alert_type: AlertType::ViralVelocity,
            tier: 1,
            window_start: 1_767_571_180_000,
            window_end: 1_767_571_240_000,
            count: 412,
            previous_count: 37,
            rate_per_min: 412.0,
            baseline: 3.25,
            baseline_stddev: 1.5,
            z_score: 226.75,
            ratio: 126.8,
            threshold: 20.0,
            first_seen: 1_767_560_000_000,
            episode_start: 1_767_571_240_000,
            detected_at: 1_767_571_250_000,
            explanation: "412 net likes in 1 min vs a baseline of 3.2".into(),
            rank: 0,
            previous_rank: 0,
        },
        1_767_571_250_321,
    )
}

fn check_golden(name: &str, bytes: &[u8]) {
    let path = fixture(name);
    if std::env::var_os("TW_BLESS").is_some() {
        std::fs::write(&path, bytes).unwrap();
    }
    let want = std::fs::read(&path).unwrap();
    assert_eq!(
        bytes,
        &want[..],
        "{name} changed: the wire contract is not what it was"
    );
}

#[test]
fn golden_event_bytes() {
    let e = golden_event();
    let mut pb_bytes = Vec::new();
    e.encode_protobuf(&mut pb_bytes);
    check_golden("event.pb", &pb_bytes);
    check_golden("event.json", e.to_json().as_bytes());
    let pb_fixture = std::fs::read(fixture("event.pb")).unwrap();
    assert_eq!(EventRecord::decode(&pb_fixture, false).unwrap(), e);
    let json_fixture = std::fs::read(fixture("event.json")).unwrap();
    assert_eq!(EventRecord::decode(&json_fixture, true).unwrap(), e);
}

#[test]
fn golden_alert_bytes() {
    let a = golden_alert();
    let mut pb_bytes = Vec::new();
    a.encode_protobuf(&mut pb_bytes);
    check_golden("alert.pb", &pb_bytes);
    check_golden("alert.json", a.to_json().as_bytes());
    assert_eq!(
        AlertRecord::decode_protobuf(&std::fs::read(fixture("alert.pb")).unwrap()).unwrap(),
        a
    );
    assert_eq!(
        AlertRecord::decode_json(&std::fs::read(fixture("alert.json")).unwrap()).unwrap(),
        a
    );
}

fn golden_board() -> LeaderboardRecord {
    let entry = |rank: u32, video: &str, score: i64, previous_rank: u32| BoardEntry {
        rank,
        video_id: video.into(),
        creator_id: format!("c-{video}"),
        score,
        previous_score: score - 100,
        likes_per_min: 42.5,
        previous_rank,
    };
    LeaderboardRecord {
        scope: "global".into(),
        board: Board {
            window_start: 1_767_570_300_000,
            window_end: 1_767_571_200_000,
            top_k: 3,
            partitions: 6,
            left_out: vec![4],
            entries: vec![entry(1, "v9", 5_000, 2), entry(2, "v3", 4_200, 0)],
        },
        emitted_at: 1_767_571_201_234,
    }
}

#[test]
fn golden_leaderboard_bytes() {
    let b = golden_board();
    let mut pb_bytes = Vec::new();
    b.encode_protobuf(&mut pb_bytes);
    check_golden("leaderboard.pb", &pb_bytes);
    check_golden("leaderboard.json", b.to_json().as_bytes());
    let pb_fixture = std::fs::read(fixture("leaderboard.pb")).unwrap();
    assert_eq!(LeaderboardRecord::decode_any(&pb_fixture).unwrap(), b);
    let json_fixture = std::fs::read(fixture("leaderboard.json")).unwrap();
    assert_eq!(LeaderboardRecord::decode_any(&json_fixture).unwrap(), b);
    // prost agrees with the hand-written conversions.
    let m = pb::Leaderboard::decode(pb_fixture.as_slice()).unwrap();
    assert_eq!(
        (m.entries.len(), m.left_out, m.scope.as_str()),
        (2, vec![4], "global")
    );
}

#[test]
fn a_rank_change_alert_round_trips_with_its_ranks() {
    let mut a = golden_alert();
    a.alert.alert_type = AlertType::RankChanged;
    a.alert.rank = 2;
    a.alert.previous_rank = 7;
    let mut bytes = Vec::new();
    a.encode_protobuf(&mut bytes);
    assert_eq!(AlertRecord::decode_protobuf(&bytes).unwrap(), a);
    let json = a.to_json();
    assert!(json.contains(r#""type":"RANK_CHANGED""#), "{json}");
    assert!(json.contains(r#""rank":2"#) && json.contains(r#""previous_rank":7"#));
    assert_eq!(AlertRecord::decode_json(json.as_bytes()).unwrap(), a);
}

#[test]
fn json_written_by_another_tool_decodes() {
    // As a Python script would write it: other key order, extra keys, spaces.
    let line = br#"{"kind": "LIKE", "event_time": 1767571234567, "video_id": "v1", "event_id": "abc", "creator_id": "c9", "extra": [1, 2]}"#;
    let ev = decode_event_json(line).unwrap();
    let r = ev.validate(NOW, &ValidationConfig::default()).unwrap();
    assert_eq!(
        (r.event_id, r.video_id, r.creator_id, r.kind),
        ("abc", "v1", "c9", EventKind::Like)
    );
    let prefixed =
        br#"{"event_id":"a","video_id":"v","kind":"EVENT_KIND_SHARE","event_time":1767571234567}"#;
    let ev = decode_event_json(prefixed).unwrap();
    assert_eq!(
        ev.validate(NOW, &ValidationConfig::default()).unwrap().kind,
        EventKind::Share
    );
    let alert_line = br#"{"alert_id":"x","video_id":"v","creator_id":"c","type":"VIRAL_VELOCITY_ENDED","tier":0,"window_start":1,"window_end":2,"count":3,"previous_count":4,"rate_per_min":1.0,"baseline":1.0,"baseline_stddev":0.0,"z_score":0.5,"ratio":1.0,"threshold":5.0,"first_seen":0,"episode_start":1,"detected_at":2,"emitted_at":3,"explanation":""}"#;
    assert_eq!(
        AlertRecord::decode_json(alert_line)
            .unwrap()
            .alert
            .alert_type,
        AlertType::ViralVelocityEnded
    );
}

#[test]
fn each_rejection_has_its_reason() {
    let cfg = ValidationConfig::default();
    let reason = |json: &str| -> &'static str {
        match decode_in(json.as_bytes(), Format::Json, &cfg) {
            Err(r) => r.reason(),
            Ok(ev) => match ev.validate(NOW, &cfg) {
                Err(r) => r.reason(),
                Ok(_) => "ok",
            },
        }
    };
    assert_eq!(
        reason(r#"{"event_id":"a","video_id":"v","kind":"LIKE","event_time":1767571234567}"#),
        "ok"
    );
    assert_eq!(reason("not json"), "undecodable");
    assert_eq!(
        reason(r#"{"video_id":"v","kind":"LIKE","event_time":1767571234567}"#),
        "missing_event_id"
    );
    assert_eq!(
        reason(r#"{"event_id":"a","kind":"LIKE","event_time":1767571234567}"#),
        "missing_video_id"
    );
    assert_eq!(
        reason(r#"{"event_id":"a","video_id":"v","kind":"WATCH","event_time":1767571234567}"#),
        "unknown_kind"
    );
    assert_eq!(
        reason(r#"{"event_id":"a","video_id":"v","event_time":1767571234567}"#),
        "unknown_kind"
    );
    // The kind as its number, as an escaped name, and what is neither.
    let kind = |k: &str| {
        let line =
            format!(r#"{{"event_id":"a","video_id":"v","kind":{k},"event_time":1767571234567}}"#);
        let r = reason(&line);
        let kind = decode_in(line.as_bytes(), Format::Json, &cfg)
            .ok()
            .and_then(|ev| ev.validate(NOW, &cfg).ok().map(|e| e.kind));
        (r, kind)
    };
    assert_eq!(kind("2"), ("ok", Some(EventKind::Like)));
    assert_eq!(kind(r#""\u004cIKE""#), ("ok", Some(EventKind::Like)));
    assert_eq!(kind("null").0, "unknown_kind");
    assert_eq!(kind("99").0, "unknown_kind");
    assert_eq!(kind("-3").0, "unknown_kind");
    assert_eq!(kind("18446744073709551615").0, "unknown_kind");
    assert_eq!(kind("2.0").0, "undecodable");
    assert_eq!(kind("[2]").0, "undecodable");
    assert_eq!(
        reason(r#"{"event_id":"a","video_id":"v","kind":"LIKE","event_time":5}"#),
        "time_before_min"
    );
    assert_eq!(
        reason(r#"{"event_id":"a","video_id":"v","kind":"LIKE","event_time":9223372036854775807}"#),
        "time_in_future"
    );
    let long = "x".repeat(300);
    assert_eq!(
        reason(&format!(
            r#"{{"event_id":"{long}","video_id":"v","kind":"LIKE","event_time":1767571234567}}"#
        )),
        "id_too_long"
    );
    let huge = format!(
        r#"{{"event_id":"a","video_id":"v","kind":"LIKE","event_time":1767571234567,"pad":"{}"}}"#,
        "y".repeat(70_000)
    );
    assert_eq!(reason(&huge), "too_large");
    // Invalid UTF-8 in a protobuf string field.
    let bad = [0x0a, 0x02, 0xff, 0xfe];
    assert_eq!(
        decode_event(&bad).unwrap_err(),
        Rejection::InvalidUtf8 { field: "event_id" }
    );
    assert_eq!(
        decode_event(&[0x0a, 0x05, b'a']).unwrap_err().reason(),
        "undecodable"
    );
    // The framing reasons (no_magic_byte, bad_framing, schema_id_not_allowed,
    // wrong_message_type) are exercised in tests/confluent.rs.
    assert_eq!(Rejection::ALL_REASONS.len(), 13);
}

#[test]
fn files_round_trip_in_both_forms() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<EventRecord> = (0..100)
        .map(|i| EventRecord {
            event_id: format!("e{i}"),
            video_id: format!("v{}", i % 7),
            creator_id: "c".into(),
            user_id: (i % 2 == 0).then(|| format!("u{i}")),
            kind: EventKind::ALL[i % 5],
            event_time: NOW + i as i64,
        })
        .collect();
    for name in ["e.pb", "e.jsonl"] {
        let path = dir.path().join(name);
        let mut w = EventFileWriter::create(&path).unwrap();
        for e in &events {
            w.write(e).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(read_event_file(&path).unwrap(), events, "{name}");
    }
    for name in ["a.pb", "a.ndjson"] {
        let path = dir.path().join(name);
        let mut w = AlertFileWriter::create(&path).unwrap();
        w.write(&golden_alert()).unwrap();
        w.write(&golden_alert()).unwrap();
        w.finish().unwrap();
        assert_eq!(
            read_alert_file(&path).unwrap(),
            vec![golden_alert(), golden_alert()]
        );
    }
    // A truncated .pb file is an error naming where, not a panic or a silent stop.
    let path = dir.path().join("e.pb");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let err = read_event_file(&path).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    assert!(Format::from_path(std::path::Path::new("x.csv")).is_err());
}

fn arb_event() -> impl Strategy<Value = pb::EngagementEvent> {
    (
        ".{0,20}",
        ".{0,20}",
        ".{0,12}",
        prop::option::of(".{0,12}"),
        -3i32..8,
        any::<i64>(),
    )
        .prop_map(
            |(event_id, video_id, creator_id, user_id, kind, event_time)| pb::EngagementEvent {
                event_id,
                video_id,
                creator_id,
                user_id,
                kind,
                event_time,
            },
        )
}

proptest! {
    #[test]
    fn zero_copy_decoder_agrees_with_prost(m in arb_event(), extra in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut bytes = m.encode_to_vec();
        // An unknown field (number 15, length-delimited) must be skipped.
        bytes.push((15 << 3) | 2);
        bytes.push(extra.len() as u8);
        bytes.extend_from_slice(&extra);
        let ours = decode_event(&bytes).unwrap();
        let theirs = pb::EngagementEvent::decode(&bytes[..]).unwrap();
        prop_assert_eq!(ours.event_id.as_ref(), theirs.event_id.as_str());
        prop_assert_eq!(ours.video_id.as_ref(), theirs.video_id.as_str());
        prop_assert_eq!(ours.creator_id.as_ref(), theirs.creator_id.as_str());
        prop_assert_eq!(ours.user_id.as_deref(), theirs.user_id.as_deref());
        prop_assert_eq!(ours.kind, theirs.kind);
        prop_assert_eq!(ours.event_time, theirs.event_time);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let cfg = ValidationConfig::default();
        if let Ok(ev) = decode_event(&bytes) {
            let _ = ev.validate(NOW, &cfg);
        }
        if let Ok(ev) = decode_event_json(&bytes) {
            let _ = ev.validate(NOW, &cfg);
        }
        for format in [Format::Protobuf, Format::Json] {
            let mut r = RecordReader::new(&bytes[..], format);
            for _ in 0..300 {
                match r.next_record() {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }

    #[test]
    fn json_round_trips(m in arb_event()) {
        if let Some(kind) = trendwatch_proto::event_kind(m.kind) {
            let e = EventRecord {
                event_id: m.event_id, video_id: m.video_id, creator_id: m.creator_id,
                user_id: m.user_id, kind, event_time: m.event_time,
            };
            prop_assert_eq!(EventRecord::decode(e.to_json().as_bytes(), true).unwrap(), e);
        }
    }
}
