//! Engine throughput on one core over a Zipf stream (events already decoded), and memory
//! per tracked video. The decode-inclusive figure is in `crates/cli/benches/pipeline.rs`.
//!
//! `cargo bench -p trendwatch-core --bench engine`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use trendwatch_core::{EngineConfig, EventKind, EventRef, PartitionState};

const T0: i64 = 1_767_571_200_000;

struct Owned {
    id: String,
    video: String,
    creator: String,
    kind: EventKind,
    t: i64,
    user: String,
}

/// `n` events over `videos` Zipf(1.0)-popular videos, `per_ms` events per millisecond
/// of event time.
fn stream_at(n: usize, videos: u64, per_ms: i64) -> Vec<Owned> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let zipf = Zipf::new(videos as f64, 1.0).unwrap();
    // Viewers from a stream of their own, so the videos and kinds are those of a stream
    // without them.
    let mut users = ChaCha8Rng::seed_from_u64(11);
    (0..n)
        .map(|i| {
            let v = zipf.sample(&mut rng) as u64;
            let kind = match rng.random_range(0..100) {
                0..=84 => EventKind::View,
                85..=93 => EventKind::Like,
                94 => EventKind::Unlike,
                95..=97 => EventKind::Share,
                _ => EventKind::Comment,
            };
            Owned {
                id: format!("e{i:012}"),
                video: format!("v{v:07}"),
                creator: format!("c{:06}", v / 5),
                kind,
                t: T0 + (i as i64) / per_ms,
                user: format!("u{:08}", users.random_range(0..10_000_000)),
            }
        })
        .collect()
}

/// `n` events over `videos` Zipf(1.0)-popular videos, 100k events per second of event time.
fn stream(n: usize, videos: u64) -> Vec<Owned> {
    stream_at(n, videos, 100)
}

fn feed(state: &mut PartitionState, events: &[Owned]) -> usize {
    let mut alerts = Vec::new();
    for e in events {
        state.apply(
            &EventRef {
                event_id: &e.id,
                video_id: &e.video,
                creator_id: &e.creator,
                kind: e.kind,
                event_time: e.t,
                user_id: Some(&e.user),
            },
            &mut alerts,
        );
    }
    alerts.len()
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_apply");
    group.sample_size(10);
    // The stream spans 20 s of event time, inside the default warm-up: the first two rows
    // count and learn but never test. The `_warm` rows test every like from the first
    // event (no warm-up), the detectors' cost included.
    let warm = {
        let mut c = EngineConfig::default();
        c.velocity.warmup = std::time::Duration::ZERO;
        c.trending.warmup = std::time::Duration::ZERO;
        c
    };
    for (label, videos, config) in [
        ("zipf_10k_videos", 10_000u64, EngineConfig::default()),
        ("zipf_1m_videos", 1_000_000, EngineConfig::default()),
        ("zipf_10k_videos_warm", 10_000u64, warm.clone()),
        ("zipf_1m_videos_warm", 1_000_000, warm),
    ] {
        let events = stream(2_000_000, videos);
        group.throughput(Throughput::Elements(events.len() as u64));
        group.bench_function(label, |b| {
            b.iter_batched(
                || PartitionState::new(config.clone()).unwrap(),
                |mut state| feed(&mut state, &events),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// The cost of proposing candidates to the ranker at every closed trending slot: a slow
/// partition (1 000 events per second of event time, so a slot closes every 60 000
/// events) with many tracked videos is the worst case, since each close looks at every
/// tracked video.
fn candidates(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_candidates");
    group.sample_size(10);
    let events = stream_at(2_000_000, 1_000_000, 1);
    group.throughput(Throughput::Elements(events.len() as u64));
    for (label, k) in [
        ("zipf_1m_videos_1k_per_s_off", 0),
        ("zipf_1m_videos_1k_per_s_k15", 15),
    ] {
        group.bench_function(label, |b| {
            b.iter_batched(
                || {
                    let mut s = PartitionState::new(EngineConfig::default()).unwrap();
                    s.propose_candidates(k);
                    s
                },
                |mut state| feed(&mut state, &events),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Bytes per tracked video: 1M distinct videos, one event each, measured both by the
/// state's own accounting and by the growth of the process's resident set.
fn memory_per_video(_: &mut Criterion) {
    let n = 1_000_000usize;
    let events: Vec<Owned> = (0..n)
        .map(|i| Owned {
            id: format!("e{i:012}"),
            video: format!("v{i:07}"),
            creator: format!("c{:06}", i / 5),
            kind: EventKind::Like,
            t: T0 + i as i64,
            user: format!("u{i:08}"),
        })
        .collect();
    let before = rss_bytes();
    let mut state = PartitionState::new(EngineConfig::default()).unwrap();
    feed(&mut state, &events);
    let after = rss_bytes();
    let tracked = state.tracked_videos();
    let dedup = state.dedup_entries();
    println!(
        "memory: {tracked} tracked videos; accounted {} B/video (incl. {dedup} dedup ids); RSS growth {} B/video",
        state.memory_bytes() / tracked,
        after.saturating_sub(before) / tracked,
    );
}

criterion_group!(benches, throughput, candidates, memory_per_video);
criterion_main!(benches);
