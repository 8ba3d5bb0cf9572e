//! The replay path on one core: protobuf decode + validation + engine apply, over a Zipf
//! stream of 2M events across 10k and across 1M distinct videos. Encoded messages are held
//! in memory, so file reading is not measured.
//!
//! `cargo bench -p trendwatch --bench pipeline`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use trendwatch_core::{EngineConfig, EventKind, PartitionState};
use trendwatch_proto::{EventRecord, ValidationConfig, decode_event};

const T0: i64 = 1_767_571_200_000;

/// Encoded messages back to back, with their end offsets.
struct Encoded {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

fn stream(n: usize, videos: u64) -> Encoded {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let zipf = Zipf::new(videos as f64, 1.0).unwrap();
    let mut out = Encoded {
        bytes: Vec::with_capacity(n * 64),
        ends: Vec::with_capacity(n),
    };
    for i in 0..n {
        let v = zipf.sample(&mut rng) as u64;
        let kind = match rng.random_range(0..100) {
            0..=84 => EventKind::View,
            85..=93 => EventKind::Like,
            94 => EventKind::Unlike,
            95..=97 => EventKind::Share,
            _ => EventKind::Comment,
        };
        let e = EventRecord {
            event_id: format!("e{i:012}"),
            video_id: format!("v{v:07}"),
            creator_id: format!("c{:06}", v / 5),
            user_id: Some(format!("u{:08}", rng.random_range(0..10_000_000))),
            kind,
            event_time: T0 + (i as i64) / 100,
        };
        e.encode_protobuf(&mut out.bytes);
        out.ends.push(out.bytes.len());
    }
    out
}

fn run(state: &mut PartitionState, enc: &Encoded, cfg: &ValidationConfig) -> usize {
    let mut alerts = Vec::new();
    let mut start = 0;
    let now = T0 + 86_400_000;
    for &end in &enc.ends {
        if let Ok(decoded) = decode_event(&enc.bytes[start..end])
            && let Ok(ev) = decoded.validate(now, cfg)
        {
            state.apply(&ev, &mut alerts);
        }
        start = end;
    }
    alerts.len()
}

fn pipeline(c: &mut Criterion) {
    let cfg = ValidationConfig::default();
    let mut group = c.benchmark_group("decode_validate_apply");
    group.sample_size(10);
    for (label, videos) in [
        ("zipf_10k_videos", 10_000u64),
        ("zipf_1m_videos", 1_000_000),
    ] {
        let enc = stream(2_000_000, videos);
        group.throughput(Throughput::Elements(enc.ends.len() as u64));
        group.bench_function(label, |b| {
            b.iter_batched(
                || PartitionState::new(EngineConfig::default()).unwrap(),
                |mut state| run(&mut state, &enc, &cfg),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    let enc = stream(200_000, 10_000);
    let mut group = c.benchmark_group("decode_only");
    group.throughput(Throughput::Elements(enc.ends.len() as u64));
    group.bench_function("protobuf_event", |b| {
        b.iter(|| {
            let mut start = 0;
            let mut ok = 0;
            for &end in &enc.ends {
                ok += usize::from(decode_event(&enc.bytes[start..end]).is_ok());
                start = end;
            }
            ok
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
