//! The workload model: who engages with what, when, and in which order it arrives.
//!
//! - **Catalogue.** `videos` videos; video `i` (0-based) has Zipf popularity rank `i + 1`
//!   (exponent `zipf`, 1.0 by default) and belongs to creator `i / 5` (ids `v0000042`,
//!   `c000008`).
//! - **Background.** `events` engagement events spread over `duration` with a daily rhythm:
//!   the rate follows a 24-hour sinusoid, ±40% around its mean, lowest at 04:00 UTC. Each
//!   event picks its video by Zipf popularity and its kind from the mix 85% VIEW, 9% LIKE,
//!   1% UNLIKE, 3% SHARE, 2% COMMENT. A video's normal like rate is therefore steady, up to
//!   the slow daily rhythm.
//! - **Viral episodes.** Extra traffic on distinct videos drawn from three popularity bands
//!   (20% ranks 100–1 000, 50% ranks 1 000–20 000, 30% the long tail). The extra like rate has
//!   one of three shapes — `step` (at full height from onset, held 3–10 min, then decaying
//!   over ~4 min), `ramp` (exponential growth from 1% of peak with an e-folding time of
//!   30–90 s, held 3–8 min, then decaying), `spike` (15 s rise, 60–105 s at peak, 15 s fall) —
//!   with a peak of extra likes per minute drawn log-uniformly from 60–1 500, and never less
//!   than 8× the video's normal like rate. Each extra like brings 5–10 extra views, 0.1
//!   shares and 0.05 comments. Ground truth `start` is when the extra like rate first
//!   reaches 10% of the peak (computed from the shape), so delays compare across shapes.
//! - **Decoys**, none on an episode video: `popular_steady` (the most popular videos, whose
//!   steady background is all they get), `view_bot_burst` (200–2 000 views a minute for 2–5
//!   minutes, no likes, on a mid-popularity video), `cold_blip` (3–8 likes within one minute
//!   on a long-tail video).
//! - Episodes and decoys start after the first 20 minutes (engines learn baselines first)
//!   and end before the run does.
//! - **Delivery.** Events are written in arrival order, arrival = event time + delay. Most
//!   delays are 0–500 ms; `disorder_fraction` of events are delayed 0.5 s to lateness − 2 s
//!   (out of order but within the allowed lateness); `late_fraction` are delayed 30 s to
//!   5 min (late: a replay must count them late); `dup_fraction` are delivered a second
//!   time, 0–3 s after the first copy, with the same id and content.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, Zipf};
use trendwatch_core::EventKind;
use trendwatch_proto::EventRecord;

use crate::truth::{Decoy, DecoyClass, Episode, EpisodeShape, GroundTruth, TruthCounts};

/// What to generate. Defaults give the reference workload of the quality report.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Distinct videos in the catalogue.
    pub videos: u64,
    /// Background events (episodes and decoys add their own on top).
    pub events: u64,
    /// Simulated time span, ms.
    pub duration_ms: i64,
    /// Event time of the first instant, ms since the epoch.
    pub start_ms: i64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Viral episodes to inject.
    pub episodes: u32,
    /// Decoys of each class.
    pub decoys_per_class: u32,
    /// The consumer's allowed lateness, ms: disorder stays inside it, late events beyond it.
    pub lateness_ms: i64,
    /// Fraction of events delivered out of order within the lateness.
    pub disorder_fraction: f64,
    /// Fraction of events delivered beyond the lateness.
    pub late_fraction: f64,
    /// Fraction of events delivered twice.
    pub dup_fraction: f64,
    /// Zipf exponent of video popularity.
    pub zipf: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            videos: 100_000,
            events: 1_000_000,
            duration_ms: 2 * 3_600_000,
            start_ms: 1_767_571_200_000, // 2026-01-05T00:00:00Z
            seed: 42,
            episodes: 50,
            decoys_per_class: 50,
            lateness_ms: 10_000,
            disorder_fraction: 0.05,
            late_fraction: 0.002,
            dup_fraction: 0.005,
            zipf: 1.0,
        }
    }
}

/// Engagement mix of background traffic, by [`EventKind::index`].
const MIX: [f64; 5] = [0.85, 0.09, 0.01, 0.03, 0.02];
/// Nothing is injected in the first part of the run, so baselines exist.
const QUIET_START_MS: i64 = 20 * 60_000;
const DAY_MS: f64 = 86_400_000.0;

/// An event before delivery: its content and when it reaches the topic.
struct Pending {
    arrival: i64,
    seq: u64,
    record: EventRecord,
}

/// The daily rhythm: multiplier of the mean rate at event time `t` (mean 1 over a day).
fn rhythm(t: i64) -> f64 {
    let phase = (t as f64).rem_euclid(DAY_MS) / DAY_MS; // 0 at midnight UTC
    // Minimum at 04:00 (phase 1/6), maximum twelve hours later.
    1.0 - 0.4 * (2.0 * std::f64::consts::PI * (phase - 1.0 / 6.0 + 0.25)).sin()
}

fn video_id(i: u64) -> String {
    format!("v{i:07}")
}

fn creator_id(i: u64) -> String {
    format!("c{:06}", i / 5)
}

/// The extra like rate (per minute) of an episode `dt` ms after onset.
fn extra_rate(shape: EpisodeShape, p: &ShapeParams, dt: i64) -> f64 {
    if dt < 0 {
        return 0.0;
    }
    let t = dt as f64;
    let decay = |since: f64| p.peak * (-(since) / 60_000.0).exp();
    match shape {
        EpisodeShape::Step => {
            if t < p.hold_ms {
                p.peak
            } else {
                decay(t - p.hold_ms)
            }
        }
        EpisodeShape::Ramp => {
            let rise = p.tau_ms * 100f64.ln();
            if t < rise {
                p.peak * 0.01 * (t / p.tau_ms).exp()
            } else if t < rise + p.hold_ms {
                p.peak
            } else {
                decay(t - rise - p.hold_ms)
            }
        }
        EpisodeShape::Spike => {
            if t < 15_000.0 {
                p.peak * t / 15_000.0
            } else if t < 15_000.0 + p.hold_ms {
                p.peak
            } else {
                (p.peak * (1.0 - (t - 15_000.0 - p.hold_ms) / 15_000.0)).max(0.0)
            }
        }
    }
}

struct ShapeParams {
    peak: f64,
    hold_ms: f64,
    tau_ms: f64,
}

/// Length of an episode's extra traffic, and its 10%-of-peak and peak instants after onset.
fn shape_times(shape: EpisodeShape, p: &ShapeParams) -> (i64, i64, i64) {
    let decay_ms = 60_000.0 * 10f64.ln() * 2.0; // down to 1% of peak
    match shape {
        EpisodeShape::Step => ((p.hold_ms + decay_ms) as i64, 0, 0),
        EpisodeShape::Ramp => {
            let rise = p.tau_ms * 100f64.ln();
            (
                (rise + p.hold_ms + decay_ms) as i64,
                (p.tau_ms * 10f64.ln()) as i64,
                rise as i64,
            )
        }
        EpisodeShape::Spike => ((15_000.0 + p.hold_ms + 15_000.0) as i64, 1_500, 15_000),
    }
}

/// Draws a Poisson count (0 for a zero or negative mean).
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    Poisson::new(mean).map_or(0, |d| d.sample(rng) as u64)
}

fn pick_kind(rng: &mut ChaCha8Rng) -> EventKind {
    let x: f64 = rng.random();
    let mut acc = 0.0;
    for (i, p) in MIX.iter().enumerate() {
        acc += p;
        if x < acc {
            return EventKind::ALL[i];
        }
    }
    EventKind::View
}

/// Generates the workload: events in arrival order and the ground truth. `progress` is
/// called with (done, total) as events are produced.
pub fn generate(
    w: &Workload,
    mut progress: impl FnMut(u64, u64),
) -> (Vec<EventRecord>, GroundTruth) {
    let mut rng = ChaCha8Rng::seed_from_u64(w.seed);
    let videos = w.videos.max(10);
    let end_ms = w.start_ms + w.duration_ms.max(60_000);
    let mut pending: Vec<Pending> = Vec::with_capacity(w.events as usize * 11 / 10);
    let mut seq = 0u64;
    let users = (videos * 10).max(1_000);
    let mut emit =
        |rng: &mut ChaCha8Rng, pending: &mut Vec<Pending>, v: u64, kind: EventKind, t: i64| {
            seq += 1;
            let user: u64 = rng.random_range(0..users);
            pending.push(Pending {
                arrival: 0,
                seq,
                record: EventRecord {
                    event_id: format!("{:08x}-{seq:010}", w.seed as u32),
                    video_id: video_id(v),
                    creator_id: creator_id(v),
                    user_id: Some(format!("u{user:08}")),
                    kind,
                    event_time: t,
                },
            });
        };

    // Zipf normalisation, to know each video's normal rates.
    let h: f64 = (1..=videos).map(|k| (k as f64).powf(-w.zipf)).sum();
    let mean_rate_per_ms = w.events as f64 / (end_ms - w.start_ms) as f64;
    let base_likes_per_min =
        |v: u64| mean_rate_per_ms * 60_000.0 * ((v + 1) as f64).powf(-w.zipf) / h * MIX[1];

    // Background, second by second.
    let zipf = Zipf::new(videos as f64, w.zipf).ok();
    let mut t = w.start_ms;
    while t < end_ms {
        let n = poisson(&mut rng, mean_rate_per_ms * 1_000.0 * rhythm(t));
        for _ in 0..n {
            let v = zipf.as_ref().map_or(0, |z| z.sample(&mut rng) as u64 - 1);
            let at = t + rng.random_range(0..1_000);
            let kind = pick_kind(&mut rng);
            emit(&mut rng, &mut pending, v.min(videos - 1), kind, at);
        }
        t += 1_000;
        progress(pending.len() as u64, w.events);
    }

    // Episode and decoy videos: distinct, from their bands.
    let mut taken = std::collections::HashSet::new();
    let mut draw = |rng: &mut ChaCha8Rng, lo: u64, hi: u64| -> u64 {
        // Clamp the band to the catalogue; if it is used up, take the next free video.
        let lo = lo.min(videos - 1);
        let hi = hi.clamp(lo + 1, videos);
        for _ in 0..1_000 {
            let v = rng.random_range(lo..hi);
            if taken.insert(v) {
                return v;
            }
        }
        let v = (0..videos)
            .map(|k| (lo + k) % videos)
            .find(|v| !taken.contains(v))
            .unwrap_or(lo);
        taken.insert(v);
        v
    };
    let window = |rng: &mut ChaCha8Rng, len: i64| -> i64 {
        let lo = w.start_ms + QUIET_START_MS;
        let hi = (end_ms - len - 60_000).max(lo + 1);
        rng.random_range(lo..hi)
    };
    let popular: Vec<u64> = (0..u64::from(w.decoys_per_class).min(videos / 4))
        .map(|_| draw(&mut rng, 0, u64::from(w.decoys_per_class).min(videos / 4)))
        .collect();

    let mut episodes = Vec::new();
    for _ in 0..w.episodes {
        let band: f64 = rng.random();
        let v = if band < 0.2 {
            draw(&mut rng, 100, 1_000)
        } else if band < 0.7 {
            draw(&mut rng, 1_000, 20_000)
        } else {
            draw(&mut rng, 20_000, videos)
        };
        let shape =
            [EpisodeShape::Step, EpisodeShape::Ramp, EpisodeShape::Spike][rng.random_range(0..3)];
        let base = base_likes_per_min(v);
        let size: f64 = (60f64.ln() + rng.random::<f64>() * (1_500f64.ln() - 60f64.ln())).exp();
        let params = ShapeParams {
            peak: size.max(8.0 * base),
            hold_ms: match shape {
                EpisodeShape::Step => rng.random_range(180_000.0..600_000.0),
                EpisodeShape::Ramp => rng.random_range(180_000.0..480_000.0),
                EpisodeShape::Spike => rng.random_range(60_000.0..105_000.0),
            },
            tau_ms: rng.random_range(30_000.0..90_000.0),
        };
        let (len, to_start, to_peak) = shape_times(shape, &params);
        let onset = window(&mut rng, len);
        let views_per_like = rng.random_range(5.0..10.0);
        for s in (0..len).step_by(1_000) {
            let likes_per_s = extra_rate(shape, &params, s + 500) / 60.0;
            let at = |rng: &mut ChaCha8Rng| onset + s + rng.random_range(0..1_000);
            for (kind, per_like) in [
                (EventKind::Like, 1.0),
                (EventKind::View, views_per_like),
                (EventKind::Share, 0.1),
                (EventKind::Comment, 0.05),
            ] {
                for _ in 0..poisson(&mut rng, likes_per_s * per_like) {
                    let t = at(&mut rng);
                    emit(&mut rng, &mut pending, v, kind, t);
                }
            }
        }
        episodes.push(Episode {
            video_id: video_id(v),
            creator_id: creator_id(v),
            shape,
            onset_ms: onset,
            start_ms: onset + to_start,
            peak_ms: onset + to_peak,
            end_ms: onset + len,
            peak_extra_likes_per_min: params.peak,
            base_likes_per_min: base,
        });
    }

    let mut decoys: Vec<Decoy> = popular
        .iter()
        .map(|&v| Decoy {
            video_id: video_id(v),
            class: DecoyClass::PopularSteady,
            start_ms: w.start_ms,
            end_ms,
        })
        .collect();
    for _ in 0..w.decoys_per_class {
        let v = draw(&mut rng, 1_000, 50_000);
        let len = rng.random_range(120_000..300_000);
        let start = window(&mut rng, len);
        let per_min: f64 = rng.random_range(200.0..2_000.0);
        let n = poisson(&mut rng, per_min * len as f64 / 60_000.0);
        for _ in 0..n {
            let t = start + rng.random_range(0..len);
            emit(&mut rng, &mut pending, v, EventKind::View, t);
        }
        decoys.push(Decoy {
            video_id: video_id(v),
            class: DecoyClass::ViewBotBurst,
            start_ms: start,
            end_ms: start + len,
        });
    }
    for _ in 0..w.decoys_per_class {
        let v = draw(&mut rng, videos / 2, videos);
        let start = window(&mut rng, 60_000);
        let n = rng.random_range(3..=8);
        for _ in 0..n {
            let t = start + rng.random_range(0..60_000);
            emit(&mut rng, &mut pending, v, EventKind::Like, t);
        }
        decoys.push(Decoy {
            video_id: video_id(v),
            class: DecoyClass::ColdBlip,
            start_ms: start,
            end_ms: start + 60_000,
        });
    }

    // Delivery: delays, duplicates, arrival order.
    let mut counts = TruthCounts {
        unique_events: pending.len() as u64,
        ..TruthCounts::default()
    };
    let lateness = w.lateness_ms.max(3_000);
    let mut copies = Vec::new();
    for p in &mut pending {
        let x: f64 = rng.random();
        let delay = if x < w.late_fraction {
            rng.random_range(30_000..300_000)
        } else if x < w.late_fraction + w.disorder_fraction {
            rng.random_range(500..lateness - 2_000)
        } else {
            rng.random_range(0..500)
        };
        p.arrival = p.record.event_time + delay;
        if rng.random::<f64>() < w.dup_fraction {
            seq += 1;
            copies.push(Pending {
                arrival: p.arrival + rng.random_range(0..3_000),
                seq,
                record: p.record.clone(),
            });
        }
    }
    counts.duplicates = copies.len() as u64;
    pending.extend(copies);
    for p in &pending {
        let delay = p.arrival - p.record.event_time;
        if delay > lateness {
            counts.late += 1;
        } else if delay >= 500 {
            counts.out_of_order += 1;
        }
    }
    pending.sort_unstable_by_key(|p| (p.arrival, p.seq));
    counts.events_written = pending.len() as u64;
    progress(counts.events_written, counts.events_written);

    let truth = GroundTruth {
        seed: w.seed,
        start_ms: w.start_ms,
        end_ms,
        videos,
        allowed_lateness_ms: lateness,
        episodes,
        decoys,
        counts,
    };
    (pending.into_iter().map(|p| p.record).collect(), truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> Workload {
        Workload {
            videos: 2_000,
            events: 40_000,
            duration_ms: 3_600_000,
            seed,
            episodes: 6,
            decoys_per_class: 4,
            ..Workload::default()
        }
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let (a, ta) = generate(&small(1), |_, _| {});
        let (b, tb) = generate(&small(1), |_, _| {});
        let (c, _) = generate(&small(2), |_, _| {});
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        assert_ne!(a, c);
    }

    #[test]
    fn truth_counts_match_what_was_written() {
        let w = small(3);
        let (events, truth) = generate(&w, |_, _| {});
        assert_eq!(truth.counts.events_written, events.len() as u64);
        let mut seen = std::collections::HashSet::new();
        let dups = events
            .iter()
            .filter(|e| !seen.insert(e.event_id.clone()))
            .count() as u64;
        assert_eq!(dups, truth.counts.duplicates);
        assert_eq!(seen.len() as u64, truth.counts.unique_events);
        assert!(truth.counts.late > 0 && truth.counts.out_of_order > 0);
        // Arrival order is not event-time order, but late arrivals are rare.
        let mut max = i64::MIN;
        let mut behind = 0;
        for e in &events {
            if e.event_time < max.saturating_sub(w.lateness_ms) {
                behind += 1;
            }
            max = max.max(e.event_time);
        }
        assert!(behind > 0);
        assert!(behind as u64 <= truth.counts.late + truth.counts.duplicates);
    }

    #[test]
    fn episodes_carry_the_traffic_the_truth_claims() {
        let (events, truth) = generate(&small(4), |_, _| {});
        for ep in &truth.episodes {
            assert!(
                ep.onset_ms <= ep.start_ms && ep.start_ms <= ep.peak_ms && ep.peak_ms < ep.end_ms
            );
            // Extra likes in the minute after the peak, against the claimed peak rate.
            let likes = events
                .iter()
                .filter(|e| e.video_id == ep.video_id && e.kind == EventKind::Like)
                .filter(|e| e.event_time >= ep.peak_ms && e.event_time < ep.peak_ms + 60_000)
                .count() as f64;
            let expect = ep.peak_extra_likes_per_min + ep.base_likes_per_min;
            assert!(
                (likes - expect).abs() < 5.0 * expect.sqrt() + 0.25 * expect,
                "{:?}: {likes} likes in the peak minute, expected about {expect}",
                ep.shape
            );
        }
    }

    #[test]
    fn decoys_look_as_described_and_never_share_an_episode_video() {
        let (events, truth) = generate(&small(5), |_, _| {});
        let episode_videos: std::collections::HashSet<_> =
            truth.episodes.iter().map(|e| e.video_id.clone()).collect();
        for d in &truth.decoys {
            assert!(!episode_videos.contains(&d.video_id));
            let in_window = |e: &&EventRecord| {
                e.video_id == d.video_id && e.event_time >= d.start_ms && e.event_time < d.end_ms
            };
            match d.class {
                DecoyClass::ColdBlip => {
                    let likes = events
                        .iter()
                        .filter(in_window)
                        .filter(|e| e.kind == EventKind::Like)
                        .count();
                    assert!((3..=10).contains(&likes), "{likes}");
                }
                DecoyClass::ViewBotBurst => {
                    let views = events
                        .iter()
                        .filter(in_window)
                        .filter(|e| e.kind == EventKind::View)
                        .count();
                    assert!(views >= 200, "{views}");
                }
                DecoyClass::PopularSteady => {}
            }
        }
        assert_eq!(truth.decoys.len(), 12);
    }

    #[test]
    fn start_is_ten_percent_of_peak() {
        let p = ShapeParams {
            peak: 500.0,
            hold_ms: 200_000.0,
            tau_ms: 60_000.0,
        };
        for shape in [EpisodeShape::Step, EpisodeShape::Ramp, EpisodeShape::Spike] {
            let (_, start, peak) = shape_times(shape, &p);
            let r = extra_rate(shape, &p, start);
            assert!(
                r >= 0.099 * p.peak && r <= 0.11 * p.peak || shape == EpisodeShape::Step,
                "{shape:?} {r}"
            );
            assert!((extra_rate(shape, &p, peak + 1) - p.peak).abs() < 1.0);
        }
    }
}
