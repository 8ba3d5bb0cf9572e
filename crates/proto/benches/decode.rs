//! The per-record decode step of the counter: `decode_in` over 200k events held in memory,
//! for each input format (no validation, no engine).
//!
//! `cargo bench -p trendwatch-proto --bench decode`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trendwatch_core::EventKind;
use trendwatch_proto::{EventRecord, InputFormat, ValidationConfig, decode_in};

const T0: i64 = 1_767_571_200_000;

/// Encoded messages back to back, with their end offsets.
struct Encoded {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

fn event(i: usize) -> EventRecord {
    EventRecord {
        event_id: format!("e{i:012}"),
        video_id: format!("v{:07}", (i * 7_919) % 10_000),
        creator_id: format!("c{:06}", (i * 7_919) % 2_000),
        user_id: Some(format!("u{:08}", (i * 104_729) % 10_000_000)),
        kind: EventKind::ALL[i % 5],
        event_time: T0 + i as i64 / 100,
    }
}

fn stream(n: usize, encode: impl Fn(&EventRecord, &mut Vec<u8>)) -> Encoded {
    let mut out = Encoded {
        bytes: Vec::with_capacity(n * 80),
        ends: Vec::with_capacity(n),
    };
    for i in 0..n {
        encode(&event(i), &mut out.bytes);
        out.ends.push(out.bytes.len());
    }
    out
}

fn decode_all(enc: &Encoded, format: InputFormat, cfg: &ValidationConfig) -> usize {
    let mut start = 0;
    let mut ok = 0;
    for &end in &enc.ends {
        ok += usize::from(decode_in(&enc.bytes[start..end], format, cfg).is_ok());
        start = end;
    }
    ok
}

fn decode(c: &mut Criterion) {
    let cfg = ValidationConfig::default();
    let n = 200_000;
    let mut group = c.benchmark_group("decode_in");
    group.throughput(Throughput::Elements(n as u64));
    let pb = stream(n, |e, b| e.encode_protobuf(b));
    group.bench_function("protobuf", |b| {
        b.iter(|| assert_eq!(decode_all(&pb, InputFormat::Protobuf, &cfg), n))
    });
    // Confluent framing as its serializers write it: magic, schema id, indexes [0] as 0x00.
    let framed_pb = stream(n, |e, b| {
        b.extend_from_slice(&[0, 0, 0, 0, 42, 0]);
        e.encode_protobuf(b)
    });
    let listed = ValidationConfig {
        allowed_schema_ids: vec![7, 42],
        ..ValidationConfig::default()
    };
    group.bench_function("confluent_protobuf", |b| {
        b.iter(|| {
            assert_eq!(
                decode_all(&framed_pb, InputFormat::ConfluentProtobuf, &cfg),
                n
            )
        })
    });
    group.bench_function("confluent_protobuf_allow_list", |b| {
        b.iter(|| {
            assert_eq!(
                decode_all(&framed_pb, InputFormat::ConfluentProtobuf, &listed),
                n
            )
        })
    });
    let json = stream(n, |e, b| b.extend_from_slice(e.to_json().as_bytes()));
    group.bench_function("json", |b| {
        b.iter(|| assert_eq!(decode_all(&json, InputFormat::Json, &cfg), n))
    });
    let framed_json = stream(n, |e, b| {
        b.extend_from_slice(&[0, 0, 0, 0, 42]);
        b.extend_from_slice(e.to_json().as_bytes())
    });
    group.bench_function("confluent_json", |b| {
        b.iter(|| {
            assert_eq!(
                decode_all(&framed_json, InputFormat::ConfluentJson, &cfg),
                n
            )
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
