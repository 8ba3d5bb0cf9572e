//! The workload model: who engages with what, when, and in which order it arrives.
//!
//! Every rate below is multiplied by `scale` (the platform's size: 0.5 is a platform with
//! half the traffic on every video, 2 one with twice as much), except the like blips, which
//! stay a handful of likes at every scale because they are the adversarial small-count case.
//!
//! - **Catalogue.** `videos` videos; video `i` (0-based) has Zipf popularity rank `i + 1`
//!   (exponent `zipf`, 1.0 by default) and belongs to creator `i / 5` (ids `v0000042`,
//!   `c000008`). Each video has its own **like share**: likes are 2–12% of its views, drawn
//!   uniformly and deterministically from a hash of the seed and the video's index.
//! - **Background.** `events × scale` engagement events spread over `duration` with a daily
//!   rhythm: the rate follows a 24-hour sinusoid, ±40% around its mean, lowest at 04:00 UTC.
//!   Each event picks its video by Zipf popularity and its kind from the video's mix: 3%
//!   SHARE, 2% COMMENT, the other 95% split into VIEW, LIKE (the video's like share of the
//!   views) and UNLIKE (one ninth of the likes). A video's normal like rate is therefore
//!   steady, up to the slow daily rhythm; in the truth it is `base_likes_per_min`.
//! - **Viral episodes.** Extra traffic on distinct videos drawn by their normal like rate
//!   at scale 1: 60% warm (0.5–5 likes a minute), 25% lukewarm (0.05–0.5), 15% cold (the
//!   rest of the catalogue), never among the popular-steady decoys. The extra like rate
//!   has one of five shapes, drawn uniformly:
//!   - `step`: at full height from onset, held 3–10 min;
//!   - `ramp`: exponential growth from 1% of peak with a time constant (e-folding time) of
//!     1–5 min, so 4.6–23 min to the peak, held 3–8 min;
//!   - `slow_burn`: linear growth from 0 to the peak over 10–40 min, held 2–5 min;
//!   - `double_peak`: two bursts of 1–3 min each (15 s rise, a plateau, 15 s fall), their
//!     starts 3–10 min apart (and at least 30 s between the first's end and the second's
//!     start), the second 0.5–1.5× the first; the higher one is the episode's peak;
//!   - `spike`: 15 s rise, 60–105 s at peak, 15 s fall.
//!
//!   Step, ramp and slow burn decay exponentially after their hold (e-folding time 1 min,
//!   cut at 1% of peak). The **size** is the ratio of the peak extra like rate to the
//!   video's normal like rate (at scale 1), log-uniform in 10–25× for half of the episodes
//!   ("moderate", close to what noise looks like on a warm video) and in 25–150× for the
//!   other half; the peak is `max(ratio × normal, floor) × scale` extra likes per minute
//!   with a floor log-uniform in 10–30, so on cold videos peaks go as low as 10 extra
//!   likes a minute at scale 1 (2.5 at 0.25).
//!   Each extra like brings the video's own number of views per like (1 / like share:
//!   8–50), 0.1 shares and 0.05 comments. Ground truth `start` is the first instant the
//!   extra like rate reaches 10% of the episode's (highest) peak, computed exactly from
//!   the shape, so delays compare across shapes.
//! - **Decoys**, none on an episode video: `popular_steady` (the most popular videos, whose
//!   steady background is all they get), `view_bot_burst` (800–3 000 views a minute × scale
//!   for 5–15 minutes, no likes, on a video of ranks 1 000–50 000 unless
//!   `view_bot_ranks` says otherwise), `cold_blip` (4–8 likes
//!   within one minute on a video of the less popular half of the catalogue, at every
//!   scale).
//! - **Re-watches** (off unless `rewatch_fraction` is set): that fraction of background
//!   views bring 1–6 more views of the video by the same viewer within the minute, so
//!   views come in clumps, far more variable than a Poisson count (likes do not clump).
//! - Episodes and decoys start after the first 20 minutes (engines learn baselines first)
//!   and end before the run does.
//! - **Delivery.** Events are written in arrival order, arrival = event time + delay. Most
//!   delays are 0–500 ms; `disorder_fraction` (6%) of events are delayed 0.5–25 s (out of
//!   order: mobile clients that batch their uploads; the range is cut to lateness − 2 s
//!   when the lateness is shorter than 27 s, so these stay countable); `late_fraction`
//!   (0.25%) are delayed 40 s to 5 min (beyond the allowed lateness of 30 s: a replay must
//!   count them late); `dup_fraction` (1%) are delivered a second time, 0–3 s after the
//!   first copy, with the same id and content.

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
    /// Background events at scale 1 (the run has `events × scale`; episodes and decoys
    /// add their own on top).
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
    /// The consumer's allowed lateness, ms: late events are delayed beyond it, and the
    /// disorder range (0.5–25 s) is cut to stay 2 s inside it.
    pub lateness_ms: i64,
    /// Fraction of events delivered out of order within the lateness.
    pub disorder_fraction: f64,
    /// Fraction of events delivered beyond the lateness.
    pub late_fraction: f64,
    /// Fraction of events delivered twice.
    pub dup_fraction: f64,
    /// Zipf exponent of video popularity.
    pub zipf: f64,
    /// Platform scale: multiplies every rate (background, episode peaks, view bots) but
    /// not the like blips.
    pub scale: f64,
    /// Fraction of background views that start a re-watch: the same viewer watches the
    /// video 1–6 more times within the minute, so a video's views come in clumps, more
    /// variable than a Poisson count (as on real platforms; their likes do not clump).
    pub rewatch_fraction: f64,
    /// Popularity ranks (0 the most popular, end excluded) that view bots pick their
    /// videos from: cold videos by default, whose likes are rare.
    pub view_bot_ranks: (u64, u64),
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
            lateness_ms: 30_000,
            disorder_fraction: 0.06,
            late_fraction: 0.0025,
            dup_fraction: 0.01,
            zipf: 1.0,
            scale: 1.0,
            rewatch_fraction: 0.0,
            view_bot_ranks: (1_000, 50_000),
        }
    }
}

/// Shares and comments, as fractions of all background events of a video.
const SHARE_FRACTION: f64 = 0.03;
const COMMENT_FRACTION: f64 = 0.02;
/// Unlikes per like.
const UNLIKES_PER_LIKE: f64 = 1.0 / 9.0;
/// Nothing is injected in the first part of the run, so baselines exist.
const QUIET_START_MS: i64 = 20 * 60_000;
const DAY_MS: f64 = 86_400_000.0;
/// Rise and fall of spikes and of the bursts of double peaks.
const EDGE_MS: f64 = 15_000.0;
/// Exponential decay after the hold: e-folding time, and cut at 1% of peak.
const DECAY_TAU_MS: f64 = 60_000.0;
/// Peak extra likes per minute at scale 1 is never below this.
const MIN_PEAK_PER_MIN: f64 = 10.0;
/// Out-of-order deliveries are delayed up to this much (if the lateness allows).
const DISORDER_MAX_MS: i64 = 25_000;
/// Late deliveries are delayed this much.
const LATE_MS: std::ops::Range<i64> = 40_000..300_000;

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

/// SplitMix64: a well-mixed hash of one word.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Video `v`'s likes per view, in [0.02, 0.12), fixed by the seed and the index alone (so
/// it does not depend on the order of random draws).
pub fn like_share(seed: u64, v: u64) -> f64 {
    let u = (mix64(seed ^ mix64(v)) >> 11) as f64 / (1u64 << 53) as f64;
    0.02 + 0.10 * u
}

/// The background mix of a video with like share `s`, by [`EventKind::index`].
fn mix(s: f64) -> [f64; 5] {
    let view = (1.0 - SHARE_FRACTION - COMMENT_FRACTION) / (1.0 + s * (1.0 + UNLIKES_PER_LIKE));
    let like = s * view;
    [
        view,
        like,
        like * UNLIKES_PER_LIKE,
        SHARE_FRACTION,
        COMMENT_FRACTION,
    ]
}

/// The shape parameters of one episode; rates in extra likes per minute, times in ms.
#[derive(Clone, Debug)]
struct ShapeParams {
    /// The (highest) peak.
    peak: f64,
    /// Time at the peak (step, ramp, slow burn, spike).
    hold_ms: f64,
    /// Ramp: e-folding time of the growth.
    tau_ms: f64,
    /// Slow burn: length of the linear growth.
    rise_ms: f64,
    /// Double peak: heights and lengths of the two bursts, and the time between their
    /// starts.
    first: f64,
    second: f64,
    first_ms: f64,
    second_ms: f64,
    gap_ms: f64,
}

impl ShapeParams {
    /// Draws the parameters of `shape` with (highest) peak `peak`.
    fn draw(rng: &mut ChaCha8Rng, shape: EpisodeShape, peak: f64) -> Self {
        let mut p = ShapeParams {
            peak,
            hold_ms: 0.0,
            tau_ms: 0.0,
            rise_ms: 0.0,
            first: 0.0,
            second: 0.0,
            first_ms: 0.0,
            second_ms: 0.0,
            gap_ms: 0.0,
        };
        match shape {
            EpisodeShape::Step => p.hold_ms = rng.random_range(180_000.0..600_000.0),
            EpisodeShape::Ramp => {
                p.tau_ms = rng.random_range(60_000.0..300_000.0);
                p.hold_ms = rng.random_range(180_000.0..480_000.0);
            }
            EpisodeShape::SlowBurn => {
                p.rise_ms = rng.random_range(600_000.0..2_400_000.0);
                p.hold_ms = rng.random_range(120_000.0..300_000.0);
            }
            EpisodeShape::DoublePeak => {
                let ratio: f64 = rng.random_range(0.5..1.5);
                (p.first, p.second) = if ratio <= 1.0 {
                    (peak, peak * ratio)
                } else {
                    (peak / ratio, peak)
                };
                p.first_ms = rng.random_range(60_000.0..180_000.0);
                p.second_ms = rng.random_range(60_000.0..180_000.0);
                let gap: f64 = rng.random_range(180_000.0..600_000.0);
                p.gap_ms = gap.max(p.first_ms + 30_000.0);
            }
            EpisodeShape::Spike => p.hold_ms = rng.random_range(60_000.0..105_000.0),
        }
        p
    }
}

/// A burst of height `h` and length `len`: 15 s rise, plateau, 15 s fall.
fn burst(h: f64, len: f64, t: f64) -> f64 {
    if t < 0.0 || t >= len {
        0.0
    } else if t < EDGE_MS {
        h * t / EDGE_MS
    } else if t < len - EDGE_MS {
        h
    } else {
        h * (len - t) / EDGE_MS
    }
}

/// The extra like rate (per minute) of an episode `dt` ms after onset.
fn extra_rate(shape: EpisodeShape, p: &ShapeParams, dt: i64) -> f64 {
    if dt < 0 {
        return 0.0;
    }
    let t = dt as f64;
    // Held at the peak from `top` for `hold_ms`, then decaying.
    let held = |top: f64| {
        if t < top + p.hold_ms {
            p.peak
        } else {
            p.peak * (-(t - top - p.hold_ms) / DECAY_TAU_MS).exp()
        }
    };
    match shape {
        EpisodeShape::Step => held(0.0),
        EpisodeShape::Ramp => {
            let rise = p.tau_ms * 100f64.ln();
            if t < rise {
                p.peak * 0.01 * (t / p.tau_ms).exp()
            } else {
                held(rise)
            }
        }
        EpisodeShape::SlowBurn => {
            if t < p.rise_ms {
                p.peak * t / p.rise_ms
            } else {
                held(p.rise_ms)
            }
        }
        EpisodeShape::DoublePeak => {
            burst(p.first, p.first_ms, t) + burst(p.second, p.second_ms, t - p.gap_ms)
        }
        EpisodeShape::Spike => burst(p.peak, p.hold_ms + 2.0 * EDGE_MS, t),
    }
}

/// When an episode's extra traffic is over, after onset (ms).
fn shape_len(shape: EpisodeShape, p: &ShapeParams) -> f64 {
    let decay_ms = DECAY_TAU_MS * 100f64.ln(); // down to 1% of peak
    match shape {
        EpisodeShape::Step => p.hold_ms + decay_ms,
        EpisodeShape::Ramp => p.tau_ms * 100f64.ln() + p.hold_ms + decay_ms,
        EpisodeShape::SlowBurn => p.rise_ms + p.hold_ms + decay_ms,
        EpisodeShape::DoublePeak => p.gap_ms + p.second_ms,
        EpisodeShape::Spike => p.hold_ms + 2.0 * EDGE_MS,
    }
}

/// Length of an episode's extra traffic, and its 10%-of-peak and peak instants after
/// onset, in whole ms: the 10% instant is the first whole ms at which the extra rate is at
/// least 10% of the (highest) peak, the peak instant the first at which it is at the peak.
fn shape_times(shape: EpisodeShape, p: &ShapeParams) -> (i64, i64, i64) {
    let len = shape_len(shape, p).ceil() as i64;
    let (start, peak) = match shape {
        EpisodeShape::Step => (0.0, 0.0),
        // 1% × e^(t/τ) = 10% at t = τ ln 10.
        EpisodeShape::Ramp => (p.tau_ms * 10f64.ln(), p.tau_ms * 100f64.ln()),
        EpisodeShape::SlowBurn => (0.1 * p.rise_ms, p.rise_ms),
        // The second burst is at most 1.5× the first, so 10% of the highest peak is
        // always reached on the first burst's rise.
        EpisodeShape::DoublePeak => (
            EDGE_MS * 0.1 * p.peak / p.first,
            if p.first >= p.second {
                EDGE_MS
            } else {
                p.gap_ms + EDGE_MS
            },
        ),
        EpisodeShape::Spike => (0.1 * EDGE_MS, EDGE_MS),
    };
    // Ceil, then step back over rounding: the first whole ms at or above 10%.
    let mut s = start.ceil() as i64;
    while s > 0 && extra_rate(shape, p, s - 1) >= 0.1 * p.peak {
        s -= 1;
    }
    while extra_rate(shape, p, s) < 0.1 * p.peak && s < len {
        s += 1;
    }
    (len, s, peak.ceil() as i64)
}

/// Draws a Poisson count (0 for a zero or negative mean).
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    Poisson::new(mean).map_or(0, |d| d.sample(rng) as u64)
}

fn pick_kind(rng: &mut ChaCha8Rng, mix: &[f64; 5]) -> EventKind {
    let x: f64 = rng.random();
    let mut acc = 0.0;
    for (i, p) in mix.iter().enumerate() {
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
    // What is injected where (videos, shapes, sizes, times) comes from its own stream, so
    // the same seed gives the same episodes and decoys at every scale.
    let mut plan = ChaCha8Rng::seed_from_u64(mix64(w.seed ^ 0x706c_616e));
    let videos = w.videos.max(10);
    let scale = if w.scale > 0.0 { w.scale } else { 1.0 };
    let background = (w.events as f64 * scale) as u64;
    let end_ms = w.start_ms + w.duration_ms.max(60_000);
    let mut pending: Vec<Pending> = Vec::with_capacity(background as usize * 11 / 10);
    let mut seq = 0u64;
    let users = (videos * 10).max(1_000);
    // Returns the viewer it drew, for a re-watch by the same one.
    let mut emit = |rng: &mut ChaCha8Rng,
                    pending: &mut Vec<Pending>,
                    v: u64,
                    kind: EventKind,
                    t: i64,
                    viewer: Option<u64>| {
        seq += 1;
        let user: u64 = viewer.unwrap_or_else(|| rng.random_range(0..users));
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
        user
    };

    // Zipf normalisation, to know each video's normal rates (at this scale).
    let h: f64 = (1..=videos).map(|k| (k as f64).powf(-w.zipf)).sum();
    let mean_rate_per_ms = background as f64 / (end_ms - w.start_ms) as f64;
    let base_likes_per_min = |v: u64| {
        mean_rate_per_ms * 60_000.0 * ((v + 1) as f64).powf(-w.zipf) / h
            * mix(like_share(w.seed, v))[1]
    };

    // Background, second by second.
    let zipf = Zipf::new(videos as f64, w.zipf).ok();
    let mut t = w.start_ms;
    while t < end_ms {
        let n = poisson(&mut rng, mean_rate_per_ms * 1_000.0 * rhythm(t));
        for _ in 0..n {
            let v = zipf
                .as_ref()
                .map_or(0, |z| z.sample(&mut rng) as u64 - 1)
                .min(videos - 1);
            let at = t + rng.random_range(0..1_000);
            let kind = pick_kind(&mut rng, &mix(like_share(w.seed, v)));
            let viewer = emit(&mut rng, &mut pending, v, kind, at, None);
            // Drawn only when re-watches are asked for, so without them every other draw
            // (and the file) stays as it was.
            if kind == EventKind::View
                && w.rewatch_fraction > 0.0
                && rng.random_bool(w.rewatch_fraction.min(1.0))
            {
                for _ in 0..rng.random_range(1..=6) {
                    let again = at + rng.random_range(0..60_000);
                    emit(&mut rng, &mut pending, v, kind, again, Some(viewer));
                }
            }
        }
        t += 1_000;
        progress(pending.len() as u64, background);
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
        .map(|_| draw(&mut plan, 0, u64::from(w.decoys_per_class).min(videos / 4)))
        .collect();

    // Episode videos by their normal like rate at scale 1 (a 7% like share): 60% warm
    // (0.5–5 likes a minute), 25% lukewarm (0.05–0.5), 15% cold (below 0.05, where the peak
    // floor decides). Rank r of a Zipf catalogue gets rate(1) / r^zipf.
    let top_rate = mean_rate_per_ms / scale * 60_000.0 / h * 0.07;
    let rank_of = |rate: f64| -> u64 { ((top_rate / rate).powf(1.0 / w.zipf.max(0.1))) as u64 };
    let first_free = popular.len() as u64;
    let band_of = |lo_rate: f64, hi_rate: f64| -> (u64, u64) {
        let lo = rank_of(hi_rate).max(first_free).min(videos - 1);
        let hi = rank_of(lo_rate).clamp(lo + 1, videos);
        (lo, hi)
    };
    let warm = band_of(0.5, 5.0);
    let lukewarm = band_of(0.05, 0.5);
    let cold = (lukewarm.1.min(videos - 1), videos);
    let mut episodes = Vec::new();
    for _ in 0..w.episodes {
        let band: f64 = plan.random();
        let (lo, hi) = if band < 0.6 {
            warm
        } else if band < 0.85 {
            lukewarm
        } else {
            cold
        };
        let v = draw(&mut plan, lo, hi);
        let shape = EpisodeShape::ALL[plan.random_range(0..EpisodeShape::ALL.len())];
        let base = base_likes_per_min(v);
        // Half moderate (10–25×), half 25–150×, log-uniform within each half.
        let (lo, hi): (f64, f64) = if plan.random::<bool>() {
            (10.0, 25.0)
        } else {
            (25.0, 150.0)
        };
        let ratio = (lo.ln() + plan.random::<f64>() * (hi.ln() - lo.ln())).exp();
        // The floor itself varies (10–30 a minute at scale 1): peaks go as low as 10.
        let floor = MIN_PEAK_PER_MIN * (plan.random::<f64>() * 3f64.ln()).exp();
        let peak = (ratio * base).max(floor * scale);
        let params = ShapeParams::draw(&mut plan, shape, peak);
        let (len, to_start, to_peak) = shape_times(shape, &params);
        let onset = window(&mut plan, len);
        let views_per_like = 1.0 / like_share(w.seed, v);
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
                    emit(&mut rng, &mut pending, v, kind, t, None);
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
            second_burst_ms: (shape == EpisodeShape::DoublePeak)
                .then(|| onset + params.gap_ms.ceil() as i64),
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
        let v = draw(&mut plan, w.view_bot_ranks.0, w.view_bot_ranks.1);
        let len = plan.random_range(300_000..900_000);
        let start = window(&mut plan, len);
        let per_min: f64 = plan.random_range(800.0..3_000.0) * scale;
        let n = poisson(&mut rng, per_min * len as f64 / 60_000.0);
        for _ in 0..n {
            let t = start + rng.random_range(0..len);
            emit(&mut rng, &mut pending, v, EventKind::View, t, None);
        }
        decoys.push(Decoy {
            video_id: video_id(v),
            class: DecoyClass::ViewBotBurst,
            start_ms: start,
            end_ms: start + len,
        });
    }
    for _ in 0..w.decoys_per_class {
        let v = draw(&mut plan, videos / 2, videos);
        let start = window(&mut plan, 60_000);
        // Not scaled: a handful of likes is the small-count case at every scale.
        let n = plan.random_range(4..=8);
        for _ in 0..n {
            let t = start + rng.random_range(0..60_000);
            emit(&mut rng, &mut pending, v, EventKind::Like, t, None);
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
    let disorder_max = DISORDER_MAX_MS.min(lateness - 2_000);
    let late_min = LATE_MS.start.max(lateness + 1_000);
    let mut copies = Vec::new();
    for p in &mut pending {
        let x: f64 = rng.random();
        let delay = if x < w.late_fraction {
            rng.random_range(late_min..LATE_MS.end.max(late_min + 1))
        } else if x < w.late_fraction + w.disorder_fraction {
            rng.random_range(500..=disorder_max)
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
        scale,
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

    /// Likes on `video` with event time in `[from, to)`, each event counted once.
    fn likes(events: &[EventRecord], video: &str, from: i64, to: i64) -> f64 {
        let mut seen = std::collections::HashSet::new();
        events
            .iter()
            .filter(|e| e.video_id == video && e.kind == EventKind::Like)
            .filter(|e| e.event_time >= from && e.event_time < to)
            .filter(|e| seen.insert(e.event_id.clone()))
            .count() as f64
    }

    /// `observed` is a Poisson count of about `expect`: within 5 σ and 20%.
    fn about(observed: f64, expect: f64) -> bool {
        (observed - expect).abs() < 5.0 * expect.sqrt() + 0.2 * expect + 1.0
    }

    /// A workload where every shape occurs several times and peaks are large enough
    /// to check their form (scale 20: at least 200 extra likes a minute).
    fn shapes(seed: u64) -> (Vec<EventRecord>, GroundTruth) {
        generate(
            &Workload {
                videos: 2_000,
                events: 10_000,
                duration_ms: 3 * 3_600_000,
                seed,
                episodes: 40,
                decoys_per_class: 2,
                scale: 20.0,
                ..Workload::default()
            },
            |_, _| {},
        )
    }

    #[test]
    fn episodes_carry_the_traffic_the_truth_claims() {
        let (events, truth) = shapes(4);
        let mut seen_shapes = std::collections::HashSet::new();
        for ep in &truth.episodes {
            seen_shapes.insert(ep.shape);
            let v = ep.video_id.as_str();
            assert!(
                ep.onset_ms <= ep.start_ms && ep.start_ms <= ep.peak_ms && ep.peak_ms < ep.end_ms
            );
            assert!(ep.peak_extra_likes_per_min >= 10.0 * truth.scale);
            let base = ep.base_likes_per_min;
            let peak = ep.peak_extra_likes_per_min;
            // Every shape stays at its peak for at least 30 s after the peak instant.
            let got = likes(&events, v, ep.peak_ms, ep.peak_ms + 30_000);
            let expect = (peak + base) / 2.0;
            assert!(
                about(got, expect),
                "{:?}: {got} likes in the 30 s after the peak, expected about {expect}",
                ep.shape
            );
            // Before the 10% instant the extra rate is below 10% of the peak: the 30 s
            // before it carry at most 5% of a peak minute (plus the background).
            let before = likes(&events, v, ep.start_ms - 30_000, ep.start_ms);
            assert!(
                before <= 0.05 * peak + base / 2.0 + 5.0 * (0.05 * peak + base).sqrt() + 2.0,
                "{:?}: {before} likes in the 30 s before the start (peak {peak}/min)",
                ep.shape
            );
            // Halfway from the 10% instant to the peak, a ramp is at √10 × 10% ≈ 32% of
            // its peak (exponential), a slow burn at 55% (linear).
            let mid = (ep.start_ms + ep.peak_ms) / 2;
            let got = likes(&events, v, mid - 15_000, mid + 15_000);
            match ep.shape {
                EpisodeShape::Ramp => {
                    assert!(
                        about(got, (0.316 * peak + base) / 2.0),
                        "ramp: {got} likes at mid-rise, peak {peak}"
                    );
                    // 1–5 min time constant: (start − onset) = τ ln 10.
                    let tau = (ep.start_ms - ep.onset_ms) as f64 / 10f64.ln();
                    assert!((60_000.0..=300_000.0).contains(&tau), "{tau}");
                }
                EpisodeShape::SlowBurn => {
                    assert!(
                        about(got, (0.55 * peak + base) / 2.0),
                        "slow burn: {got} likes at mid-rise, peak {peak}"
                    );
                    let rise = ep.peak_ms - ep.onset_ms;
                    assert!((600_000..=2_400_000).contains(&rise), "{rise}");
                }
                EpisodeShape::DoublePeak => {
                    // Two bursts, 3–10 min apart, quiet in between, the second 0.5–1.5×
                    // the first.
                    let second = ep.second_burst_ms.unwrap();
                    assert!((180_000..=600_000).contains(&(second - ep.onset_ms)));
                    let quiet = likes(&events, v, second - 30_000, second);
                    assert!(
                        quiet <= base + 5.0 * base.sqrt() + 2.0,
                        "{quiet} between bursts"
                    );
                    let first = likes(&events, v, ep.onset_ms + 15_000, ep.onset_ms + 45_000);
                    let then = likes(&events, v, second + 15_000, second + 45_000);
                    let r = then / first;
                    assert!((0.35..=2.0).contains(&r), "second/first {r}");
                    assert!(about(first.max(then), expect));
                }
                EpisodeShape::Step | EpisodeShape::Spike => {}
            }
            assert!(ep.shape == EpisodeShape::DoublePeak || ep.second_burst_ms.is_none());
        }
        assert_eq!(seen_shapes.len(), 5, "{seen_shapes:?}");
    }

    #[test]
    fn sizes_are_ten_to_150_times_normal_half_moderate_with_a_floor() {
        let mut moderate = 0;
        let mut large = 0;
        for seed in 1..=4 {
            // A flat catalogue of busy videos, so most peaks are above the floor.
            let w = Workload {
                videos: 200,
                events: 300_000,
                duration_ms: 3_600_000,
                episodes: 40,
                decoys_per_class: 2,
                zipf: 0.01,
                seed,
                ..Workload::default()
            };
            let (_, truth) = generate(&w, |_, _| {});
            for ep in &truth.episodes {
                let ratio = ep.peak_extra_likes_per_min / ep.base_likes_per_min;
                if ep.peak_extra_likes_per_min > 10.0 * w.scale + 1e-9 {
                    // Above the floor, the peak is the drawn ratio of the normal rate.
                    assert!((10.0..=150.0).contains(&ratio), "{ratio}");
                    if ratio < 25.0 {
                        moderate += 1;
                    } else {
                        large += 1;
                    }
                } else {
                    assert!(ratio >= 10.0 - 1e-9, "{ratio}");
                }
            }
        }
        assert!(
            moderate >= 3 && large >= 3,
            "{moderate} moderate, {large} large"
        );
    }

    #[test]
    fn like_shares_vary_by_video_between_2_and_12_percent_of_views() {
        let (events, truth) = generate(
            &Workload {
                videos: 200,
                events: 400_000,
                episodes: 0,
                decoys_per_class: 0,
                seed: 9,
                ..Workload::default()
            },
            |_, _| {},
        );
        assert_eq!(truth.episodes.len(), 0);
        let mut shares = Vec::new();
        for v in 0..5u64 {
            let id = video_id(v);
            let of = |k: EventKind| {
                events
                    .iter()
                    .filter(|e| e.video_id == id && e.kind == k)
                    .count() as f64
            };
            let share = of(EventKind::Like) / of(EventKind::View);
            let claimed = like_share(9, v);
            assert!((0.02..0.12).contains(&claimed));
            assert!(
                (share - claimed).abs() < 0.15 * claimed + 0.003,
                "{share} vs {claimed}"
            );
            shares.push(claimed);
        }
        let (lo, hi) = shares
            .iter()
            .fold((1.0f64, 0.0f64), |(l, h), &s| (l.min(s), h.max(s)));
        assert!(hi - lo > 0.01, "like shares barely vary: {shares:?}");
        assert_ne!(like_share(9, 0), like_share(10, 0));
    }

    #[test]
    fn scale_multiplies_traffic_but_not_the_like_blips() {
        let at = |scale: f64| generate(&Workload { scale, ..small(6) }, |_, _| {});
        let (e1, t1) = at(1.0);
        let (e4, t4) = at(4.0);
        assert_eq!(t4.scale, 4.0);
        let r = t4.counts.unique_events as f64 / t1.counts.unique_events as f64;
        assert!((3.6..4.4).contains(&r), "{r}");
        for (a, b) in t1.episodes.iter().zip(&t4.episodes) {
            assert_eq!(a.video_id, b.video_id);
            assert!((b.peak_extra_likes_per_min / a.peak_extra_likes_per_min - 4.0).abs() < 1e-9);
        }
        for (events, truth) in [(&e1, &t1), (&e4, &t4)] {
            for d in truth
                .decoys
                .iter()
                .filter(|d| d.class == DecoyClass::ColdBlip)
            {
                let n = likes(events, &d.video_id, d.start_ms, d.end_ms);
                assert!(
                    (4.0..=9.0).contains(&n),
                    "{n} likes in a blip at {}",
                    truth.scale
                );
            }
        }
        // Old truth files (without a scale) still parse, as scale 1.
        let mut json = serde_json::to_value(&t1).unwrap();
        json.as_object_mut().unwrap().remove("scale");
        let old: GroundTruth = serde_json::from_value(json).unwrap();
        assert_eq!(old.scale, 1.0);
    }

    #[test]
    fn delivery_disorder_is_half_a_second_to_25_s_and_late_is_beyond_30_s() {
        let w = small(7);
        assert_eq!(w.lateness_ms, 30_000);
        let (events, truth) = generate(&w, |_, _| {});
        // Arrival order is file order: for each event, how far behind the newest event
        // time seen before it does it arrive?
        let mut max = i64::MIN;
        let (mut disorder, mut late, mut beyond_25s_within_30s) = (0u64, 0u64, 0u64);
        for e in &events {
            let behind = max.saturating_sub(e.event_time);
            if behind > 30_000 {
                late += 1;
            } else if behind > 26_000 {
                beyond_25s_within_30s += 1;
            } else if behind > 1_000 {
                disorder += 1;
            }
            max = max.max(e.event_time);
        }
        let n = truth.counts.unique_events as f64;
        let late_share = truth.counts.late as f64 / n;
        assert!((0.0015..0.0035).contains(&late_share), "{late_share}");
        let ooo = truth.counts.out_of_order as f64 / n;
        assert!((0.05..0.075).contains(&ooo), "{ooo}");
        let dups = truth.counts.duplicates as f64 / n;
        assert!((0.008..0.012).contains(&dups), "{dups}");
        assert!(disorder > 0 && late > 0);
        assert!(late <= truth.counts.late + truth.counts.duplicates);
        // Nothing delivered 26–30 s behind but the rare very late or duplicated events
        // that happen to fall there.
        assert!(beyond_25s_within_30s < late + truth.counts.duplicates / 10 + 5);
        // A shorter lateness cuts the disorder to stay 2 s inside it.
        let (_, short) = generate(
            &Workload {
                lateness_ms: 10_000,
                ..small(7)
            },
            |_, _| {},
        );
        assert_eq!(short.allowed_lateness_ms, 10_000);
        assert!((short.counts.late as f64 / n) < 0.0035);
        assert!((short.counts.out_of_order as f64 / n) > 0.05);
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
            let minutes = (d.end_ms - d.start_ms) as f64 / 60_000.0;
            match d.class {
                DecoyClass::ColdBlip => {
                    let likes = likes(&events, &d.video_id, d.start_ms, d.end_ms);
                    assert!((4.0..=9.0).contains(&likes), "{likes}");
                    assert_eq!(minutes, 1.0);
                }
                DecoyClass::ViewBotBurst => {
                    assert!((5.0..=15.0).contains(&minutes), "{minutes}");
                    let views = events
                        .iter()
                        .filter(in_window)
                        .filter(|e| e.kind == EventKind::View)
                        .count() as f64;
                    assert!(
                        (700.0..3_300.0).contains(&(views / minutes)),
                        "{views} views in {minutes} min"
                    );
                    // No likes: at most the video's own background trickle.
                    let l = likes(&events, &d.video_id, d.start_ms, d.end_ms);
                    assert!(l <= 3.0, "{l} likes in a view-bot burst");
                }
                DecoyClass::PopularSteady => {}
            }
        }
        assert_eq!(truth.decoys.len(), 12);
    }

    #[test]
    fn start_is_ten_percent_of_peak() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for shape in EpisodeShape::ALL {
            for _ in 0..50 {
                let p = ShapeParams::draw(&mut rng, shape, 500.0);
                let (len, start, peak) = shape_times(shape, &p);
                let r = extra_rate(shape, &p, start);
                assert!(r >= 0.1 * p.peak, "{shape:?} {r} at the start");
                assert!(
                    start == 0 || extra_rate(shape, &p, start - 1) < 0.1 * p.peak,
                    "{shape:?}: 10% reached before the start"
                );
                // Nothing before the start reaches 10% (coarse scan).
                assert!(
                    (0..start)
                        .step_by(250)
                        .all(|t| extra_rate(shape, &p, t) < 0.1 * p.peak)
                );
                // The peak instant is the first at the (highest) peak; nothing is higher.
                assert!(
                    (extra_rate(shape, &p, peak + 1) - p.peak).abs() < 1e-6 * p.peak,
                    "{shape:?}"
                );
                assert!(
                    (0..len)
                        .step_by(250)
                        .all(|t| extra_rate(shape, &p, t) <= p.peak + 1e-9)
                );
                assert!(start <= peak && peak < len);
            }
        }
    }

    /// Per (video, minute) counts of one kind over the background part of the run: their
    /// variance over their mean (1 for a Poisson count), over videos busy enough to tell.
    fn dispersion(events: &[EventRecord], kind: EventKind, w: &Workload) -> f64 {
        let mut counts: std::collections::HashMap<&str, Vec<f64>> = Default::default();
        let minutes = (QUIET_START_MS / 60_000) as usize;
        for e in events.iter().filter(|e| e.kind == kind) {
            let m = ((e.event_time - w.start_ms) / 60_000) as usize;
            if m < minutes {
                counts
                    .entry(&e.video_id)
                    .or_insert_with(|| vec![0.0; minutes])[m] += 1.0;
            }
        }
        let ratios: Vec<f64> = counts
            .values()
            .filter(|c| c.iter().sum::<f64>() >= minutes as f64)
            .map(|c| {
                let mean = c.iter().sum::<f64>() / c.len() as f64;
                let var = c.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (c.len() - 1) as f64;
                var / mean
            })
            .collect();
        assert!(ratios.len() >= 3, "{} busy videos", ratios.len());
        ratios.iter().sum::<f64>() / ratios.len() as f64
    }

    #[test]
    fn rewatches_clump_a_videos_views_by_the_same_viewer_and_leave_its_likes_alone() {
        let plain = small(8);
        let clumped = Workload {
            rewatch_fraction: 0.5,
            ..small(8)
        };
        let (a, _) = generate(&plain, |_, _| {});
        let (b, _) = generate(&clumped, |_, _| {});
        let (va, vb) = (
            dispersion(&a, EventKind::View, &plain),
            dispersion(&b, EventKind::View, &clumped),
        );
        assert!(va < 1.3, "views without re-watches: variance/mean {va}");
        assert!(vb > 2.0, "views with re-watches: variance/mean {vb}");
        let lb = dispersion(&b, EventKind::Like, &clumped);
        assert!(lb < 1.3, "likes with re-watches: variance/mean {lb}");
        // A re-watch is the same viewer's, within the minute: background views (before
        // any episode or decoy) whose viewer watched the video in the minute before.
        let repeats = |events: &[EventRecord]| {
            let quiet = plain.start_ms + QUIET_START_MS;
            let mut views: Vec<_> = events
                .iter()
                .filter(|e| e.kind == EventKind::View && e.event_time < quiet)
                .collect();
            views.sort_by_key(|e| (&e.video_id, &e.user_id, e.event_time));
            let again = views
                .windows(2)
                .filter(|p| {
                    (&p[0].video_id, &p[0].user_id) == (&p[1].video_id, &p[1].user_id)
                        && p[1].event_time - p[0].event_time <= 60_000
                })
                .count();
            again as f64 / views.len() as f64
        };
        let (ra, rb) = (repeats(&a), repeats(&b));
        assert!(
            ra < 0.02 && rb > 0.4,
            "re-watched views: {ra} without, {rb} with"
        );
    }

    #[test]
    fn view_bots_pick_their_videos_from_the_ranks_asked() {
        for ranks in [(10, 100), (1_000, 1_500)] {
            let w = Workload {
                view_bot_ranks: ranks,
                decoys_per_class: 8,
                ..small(9)
            };
            let (_, truth) = generate(&w, |_, _| {});
            let bots: Vec<u64> = truth
                .decoys
                .iter()
                .filter(|d| d.class == DecoyClass::ViewBotBurst)
                .map(|d| d.video_id[1..].parse().unwrap())
                .collect();
            assert_eq!(bots.len(), 8);
            assert!(
                bots.iter().all(|r| (ranks.0..ranks.1).contains(r)),
                "{ranks:?}: {bots:?}"
            );
        }
    }
}
