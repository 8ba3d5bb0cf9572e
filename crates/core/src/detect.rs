//! The two detectors and the alert lifecycle they share.
//!
//! **Viral velocity** scores, at every closed bucket, net likes over the velocity window
//! against the video's own baseline (an EWMA of that same windowed count):
//! `z = (x - mean) / max(stddev, sqrt(mean), floor)`. The `sqrt(mean)` term is the Poisson
//! noise of a count with that mean, so small counts cannot spike. It fires when z, the
//! absolute count and the growth over the previous window all clear their thresholds and
//! the count is at least the first tier's multiple of the baseline; higher tiers escalate.
//! While a video is anomalous its baseline learns a winsorized count (capped at the firing
//! level), so an episode cannot teach the baseline that it is normal within minutes.
//!
//! **Trending** scores, at every closed coarse slot, the weighted engagement over the
//! trending window: above a tier's score and at least `min_ratio` times the baseline.
//!
//! **Lifecycle**, per detector and video: quiet → active (fires tier k) → escalations →
//! calm for `clear_after` evaluations (hysteresis: calm is judged against lower thresholds
//! than firing) → ENDED → cooldown → quiet. Every alert id is a hash of video, type, tier
//! and episode start, so a re-run emits the same ids.

use crate::config::{COARSE_SLOTS, EngineConfig, FINE_SLOTS};
use crate::event::{Alert, AlertType, EventKind};
use crate::hash::stable_id;
use crate::video::{Baseline, EpisodeState, Phase, VideoState};

/// Window geometry in milliseconds and in bucket/slot counts.
#[derive(Clone, Debug)]
pub(crate) struct Geometry {
    pub(crate) bucket_ms: i64,
    pub(crate) velocity_buckets: i64,
    pub(crate) slot_ms: i64,
    pub(crate) slot_buckets: i64,
    pub(crate) trending_slots: i64,
    pub(crate) lateness_ms: i64,
    pub(crate) idle_timeout_ms: i64,
    pub(crate) dedup_horizon_ms: i64,
    pub(crate) ttl_ms: i64,
    pub(crate) sweep_every_slots: i64,
    pub(crate) velocity_warmup_ms: i64,
    pub(crate) trending_warmup_ms: i64,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Geometry {
    /// Assumes a validated configuration.
    pub(crate) fn new(c: &EngineConfig) -> Self {
        let w = &c.windows;
        let bucket_ms = ms(w.bucket).max(1);
        let slot_ms = ms(w.trending_slot).max(bucket_ms);
        let ttl_ms = ms(c.capacity.video_ttl);
        Self {
            bucket_ms,
            velocity_buckets: (ms(w.velocity_window) / bucket_ms).max(1),
            slot_ms,
            slot_buckets: (slot_ms / bucket_ms).max(1),
            trending_slots: (ms(w.trending_window) / slot_ms).max(1),
            lateness_ms: ms(w.allowed_lateness),
            idle_timeout_ms: ms(w.idle_timeout),
            dedup_horizon_ms: ms(w.dedup_horizon).max(1),
            ttl_ms,
            sweep_every_slots: (ttl_ms / slot_ms / 4).max(1),
            velocity_warmup_ms: ms(c.velocity.warmup),
            trending_warmup_ms: ms(c.trending.warmup),
        }
    }

    /// What a snapshot must agree on to be restored (the ring sizes of this build included).
    pub(crate) fn fingerprint(&self) -> [i64; 8] {
        [
            FINE_SLOTS as i64,
            COARSE_SLOTS as i64,
            self.bucket_ms,
            self.velocity_buckets,
            self.slot_ms,
            self.trending_slots,
            self.lateness_ms,
            self.dedup_horizon_ms,
        ]
    }
}

/// Thresholds of both detectors, precomputed from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct Detectors {
    weights: [i32; 5],
    v_decay: f64,
    v_z_fire: f64,
    v_z_clear: f64,
    v_floor: f64,
    v_min_count: i64,
    v_min_growth: f64,
    v_tiers: Vec<f64>,
    v_clear_after: u8,
    v_cooldown_buckets: i64,
    t_decay: f64,
    t_tiers: Vec<f64>,
    t_min_ratio: f64,
    t_clear_fraction: f64,
    t_clear_after: u8,
    t_cooldown_slots: i64,
    t_watch_score: i64,
}

/// What one evaluation saw, for the alert it may emit.
struct Reading {
    count: i64,
    previous: i64,
    mean: f64,
    stddev: f64,
    z: f64,
    ratio: f64,
    window_start: i64,
    window_end: i64,
    window_minutes: f64,
}

impl Detectors {
    pub(crate) fn new(c: &EngineConfig, g: &Geometry) -> Self {
        let half_life_decay = |half_life: std::time::Duration, step_ms: i64| {
            let hl = ms(half_life).max(1) as f64;
            (-(step_ms as f64) / hl * std::f64::consts::LN_2).exp()
        };
        let w = &c.trending.weights;
        let like = w.like as i32;
        let v = &c.velocity;
        let t = &c.trending;
        Self {
            weights: [w.view as i32, like, -like, w.share as i32, w.comment as i32],
            v_decay: half_life_decay(v.baseline_half_life, g.bucket_ms),
            v_z_fire: v.z_fire,
            v_z_clear: v.z_clear,
            v_floor: v.sigma_floor,
            v_min_count: i64::from(v.min_count),
            v_min_growth: v.min_growth,
            v_tiers: v.tiers.clone(),
            v_clear_after: v.clear_after.min(255) as u8,
            v_cooldown_buckets: (ms(v.cooldown) + g.bucket_ms - 1) / g.bucket_ms,
            t_decay: half_life_decay(t.baseline_half_life, g.slot_ms),
            t_tiers: t.tiers.clone(),
            t_min_ratio: t.min_ratio,
            t_clear_fraction: t.clear_fraction,
            t_clear_after: t.clear_after.min(255) as u8,
            t_cooldown_slots: (ms(t.cooldown) + g.slot_ms - 1) / g.slot_ms,
            t_watch_score: (t.tiers.first().copied().unwrap_or(1.0) * t.clear_fraction).floor()
                as i64,
        }
    }

    /// Signed weight of a kind in the trending score (an unlike subtracts a like).
    pub(crate) fn weight(&self, kind: EventKind) -> i32 {
        self.weights[kind.index()]
    }

    /// How far past the last event the watermark must move for every window to close and
    /// every open episode to end.
    pub(crate) fn drain_span_ms(&self, g: &Geometry) -> i64 {
        let velocity = (2 * g.velocity_buckets + i64::from(self.v_clear_after) + 2) * g.bucket_ms;
        let trending = (g.trending_slots + i64::from(self.t_clear_after) + 2) * g.slot_ms;
        velocity + trending
    }

    /// Whether the likes in the video's ring could make it fire.
    pub(crate) fn velocity_worth_watching(&self, v: &VideoState) -> bool {
        // Positive parts only: unlikes in one bucket must not hide likes in another.
        let ring: i64 = v.likes.iter().map(|&x| i64::from(x.max(0))).sum();
        ring >= self.v_min_count || v.velocity.phase == Phase::Active
    }

    /// Whether the engagement in the video's ring could make it trend.
    pub(crate) fn trending_worth_watching(&self, v: &VideoState) -> bool {
        let ring: i64 = v.score.iter().map(|&x| i64::from(x.max(0))).sum();
        ring >= self.t_watch_score || v.trending.phase == Phase::Active
    }

    fn velocity_denominator(&self, b: &Baseline) -> f64 {
        b.stddev().max(b.mean().sqrt()).max(self.v_floor)
    }

    /// Folds one closed window's count into the velocity baseline. After warm-up the count
    /// is winsorized at the firing level so an anomaly is learned slowly; during warm-up
    /// (see [`warm_decay`]) the baseline learns fast and uncapped.
    fn fold_velocity(&self, b: &mut Baseline, x: i64, warm: bool) {
        if warm {
            let cap = b.mean() + self.v_z_fire * self.velocity_denominator(b);
            b.step((x as f64).min(cap), self.v_decay);
        } else {
            b.step(x as f64, warm_decay(b, self.v_decay));
        }
    }

    /// Brings the velocity baseline up to bucket `upto` using the counts in the ring (a run
    /// of empty windows at the end is folded in closed form).
    pub(crate) fn catch_up_velocity(
        &self,
        v: &mut VideoState,
        upto: i64,
        started: i64,
        g: &Geometry,
    ) {
        let mut b = v.velocity_baseline;
        let through = i64::from(b.through);
        if through >= upto {
            return;
        }
        // Windows ending after head + n - 1 hold no data; windows before the end of warm-up
        // are folded one by one because warm-up learning is not a plain EWMA.
        let warm_from = (started + g.velocity_warmup_ms).div_euclid(g.bucket_ms);
        let last_stepped = (v.head() + g.velocity_buckets - 1).max(warm_from).min(upto);
        // The window slides one bucket per step: keep its sum instead of re-adding it
        // (integers, so exactly the sum a fresh count would give).
        let n = g.velocity_buckets;
        let mut window = v.likes_window(through, n);
        for k in through + 1..=last_stepped {
            window += v.likes_at(k) - v.likes_at(k - n);
            let warm = (k + 1) * g.bucket_ms - started >= g.velocity_warmup_ms;
            self.fold_velocity(&mut b, window, warm);
        }
        b.zeros(upto - through.max(last_stepped), self.v_decay);
        b.through = index32(upto);
        v.velocity_baseline = b;
    }

    /// Brings the trending baseline up to slot `upto`.
    pub(crate) fn catch_up_trending(
        &self,
        v: &mut VideoState,
        upto: i64,
        started: i64,
        g: &Geometry,
    ) {
        let mut b = v.trending_baseline;
        let through = i64::from(b.through);
        if through >= upto {
            return;
        }
        let head_slot = v.head().div_euclid(g.slot_buckets);
        let warm_from = (started + g.trending_warmup_ms).div_euclid(g.slot_ms);
        let last_stepped = (head_slot + g.trending_slots - 1).max(warm_from).min(upto);
        // Sliding sum, as for velocity.
        let m = g.trending_slots;
        let mut s = v.score_window(through, m, g.slot_buckets);
        for k in through + 1..=last_stepped {
            s += v.score_at(k, g.slot_buckets) - v.score_at(k - m, g.slot_buckets);
            let warm = (k + 1) * g.slot_ms - started >= g.trending_warmup_ms;
            b.step(
                s as f64,
                if warm {
                    self.t_decay
                } else {
                    warm_decay(&b, self.t_decay)
                },
            );
        }
        b.zeros(upto - through.max(last_stepped), self.t_decay);
        b.through = index32(upto);
        v.trending_baseline = b;
    }

    /// Scores `v` on the velocity window ending with closed bucket `bucket`, runs the
    /// lifecycle, folds the window into the baseline. Returns whether to keep watching.
    // The arguments are the video, the clock and where results go; bundling them would
    // only move the same list into a struct built once per call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn score_velocity(
        &self,
        v: &mut VideoState,
        creator: &str,
        bucket: i64,
        clock: (i64, i64),
        g: &Geometry,
        out: &mut Vec<Alert>,
        tallies: &mut [u64; 4],
    ) -> bool {
        let (started, watermark) = clock;
        self.catch_up_velocity(v, bucket - 1, started, g);
        let n = g.velocity_buckets;
        let b = v.velocity_baseline;
        let count = v.likes_window(bucket, n);
        let previous = v.likes_window(bucket - n, n);
        let denom = self.velocity_denominator(&b);
        let r = Reading {
            count,
            previous,
            mean: b.mean(),
            stddev: b.stddev(),
            z: (count as f64 - b.mean()) / denom,
            ratio: count as f64 / b.mean().max(1.0),
            window_start: (bucket - n + 1) * g.bucket_ms,
            window_end: (bucket + 1) * g.bucket_ms,
            window_minutes: (n * g.bucket_ms) as f64 / 60_000.0,
        };
        let growth = count as f64 / previous.max(1) as f64;
        let tier = self.v_tiers.iter().rposition(|&t| r.ratio >= t);
        let warm = r.window_end - started >= g.velocity_warmup_ms;
        let fires = warm
            && count >= self.v_min_count
            && r.z >= self.v_z_fire
            && growth >= self.v_min_growth;
        let escalates = r.z >= self.v_z_fire;
        let calm = r.z < self.v_z_clear;
        let decision = lifecycle(
            &mut v.velocity,
            bucket,
            self.v_cooldown_buckets,
            self.v_clear_after,
            fires.then_some(tier).flatten(),
            escalates.then_some(tier).flatten(),
            calm,
        );
        if let Some((alert_type, t)) = decision {
            let threshold = self.v_tiers[usize::from(t)];
            let explanation = if alert_type.is_end() {
                format!(
                    "viral-velocity episode over: {count} net likes in the last {:.0} min, back within {:.1} sd of the baseline {:.1} for {} evaluations",
                    r.window_minutes, self.v_z_clear, r.mean, self.v_clear_after
                )
            } else {
                format!(
                    "{count} net likes in {:.0} min vs a baseline of {:.1} (z={:.1}, {:.1}x baseline >= tier {} at {}x), up {:.1}x on the previous {:.0} min ({previous})",
                    r.window_minutes, r.mean, r.z, r.ratio, t, threshold, growth, r.window_minutes
                )
            };
            let episode_start = (i64::from(v.velocity.start) + 1) * g.bucket_ms;
            let d = Decision {
                alert_type,
                tier: t,
                threshold,
                episode_start,
                watermark,
                explanation,
            };
            push_alert(out, tallies, v, creator, d, &r);
        }
        self.fold_velocity(&mut v.velocity_baseline, count, warm);
        v.velocity_baseline.through = index32(bucket);
        self.velocity_worth_watching(v)
    }

    /// Scores `v` on the trending window ending with closed slot `slot`, runs the
    /// lifecycle, folds the window into the baseline. Returns whether to keep watching.
    // The arguments are the video, the clock and where results go; bundling them would
    // only move the same list into a struct built once per call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn score_trending(
        &self,
        v: &mut VideoState,
        creator: &str,
        slot: i64,
        clock: (i64, i64),
        g: &Geometry,
        out: &mut Vec<Alert>,
        tallies: &mut [u64; 4],
    ) -> bool {
        let (started, watermark) = clock;
        self.catch_up_trending(v, slot - 1, started, g);
        let m = g.trending_slots;
        let b = v.trending_baseline;
        let count = v.score_window(slot, m, g.slot_buckets);
        let previous = v.score_window(slot - 1, m, g.slot_buckets);
        let stddev = b.stddev();
        let r = Reading {
            count,
            previous,
            mean: b.mean(),
            stddev,
            z: (count as f64 - b.mean()) / stddev.max(b.mean().sqrt()).max(1.0),
            ratio: count as f64 / b.mean().max(1.0),
            window_start: (slot - m + 1) * g.slot_ms,
            window_end: (slot + 1) * g.slot_ms,
            window_minutes: (m * g.slot_ms) as f64 / 60_000.0,
        };
        let tier = self.t_tiers.iter().rposition(|&t| count as f64 >= t);
        let warm = r.window_end - started >= g.trending_warmup_ms;
        let above_baseline = warm && r.ratio >= self.t_min_ratio;
        let first = self.t_tiers.first().copied().unwrap_or(1.0);
        let calm = (count as f64) < first * self.t_clear_fraction
            || r.ratio < 1.0 + (self.t_min_ratio - 1.0) * self.t_clear_fraction;
        let decision = lifecycle(
            &mut v.trending,
            slot,
            self.t_cooldown_slots,
            self.t_clear_after,
            above_baseline.then_some(tier).flatten(),
            above_baseline.then_some(tier).flatten(),
            calm,
        );
        if let Some((alert_type, t)) = decision {
            let threshold = self.t_tiers[usize::from(t)];
            let explanation = if alert_type.is_end() {
                format!(
                    "trending episode over: engagement score {count} over {:.0} min fell below {:.0} or near the baseline {:.0}",
                    r.window_minutes,
                    first * self.t_clear_fraction,
                    r.mean
                )
            } else {
                format!(
                    "engagement score {count} over {:.0} min >= tier {t} at {threshold:.0}, {:.1}x the baseline {:.0} (needs {:.1}x)",
                    r.window_minutes, r.ratio, r.mean, self.t_min_ratio
                )
            };
            let trending_type = match alert_type {
                AlertType::ViralVelocity => AlertType::Trending,
                _ => AlertType::TrendingEnded,
            };
            let episode_start = (i64::from(v.trending.start) + 1) * g.slot_ms;
            let d = Decision {
                alert_type: trending_type,
                tier: t,
                threshold,
                episode_start,
                watermark,
                explanation,
            };
            push_alert(out, tallies, v, creator, d, &r);
        }
        let decay = if warm {
            self.t_decay
        } else {
            warm_decay(&v.trending_baseline, self.t_decay)
        };
        v.trending_baseline.step(count as f64, decay);
        v.trending_baseline.through = index32(slot);
        self.trending_worth_watching(v)
    }
}

/// During a partition's warm-up every video is new to the engine, so a baseline learns as a
/// running mean (weight `1/(obs+1)`) until the EWMA weight is the larger: a popular video
/// seen from the first minute gets a true baseline instead of looking viral against zero.
fn warm_decay(b: &Baseline, decay: f64) -> f64 {
    let running = 1.0 - 1.0 / (f64::from(b.obs) + 1.0);
    running.min(decay)
}

/// One lifecycle step at evaluation index `at`. `fire` is the tier a quiet video would fire
/// at, `escalate` the tier an active one has reached, `calm` whether this evaluation is calm.
/// Returns the alert to emit, typed as velocity (the caller maps it for trending).
#[allow(clippy::too_many_arguments)]
fn lifecycle(
    ep: &mut EpisodeState,
    at: i64,
    cooldown: i64,
    clear_after: u8,
    fire: Option<usize>,
    escalate: Option<usize>,
    calm: bool,
) -> Option<(AlertType, u8)> {
    if ep.phase == Phase::Cooldown && at >= i64::from(ep.cooldown_until) {
        ep.phase = Phase::Quiet;
    }
    match ep.phase {
        Phase::Quiet => {
            let tier = fire? as u8;
            *ep = EpisodeState {
                phase: Phase::Active,
                tier,
                calm: 0,
                start: index32(at),
                cooldown_until: 0,
            };
            Some((AlertType::ViralVelocity, tier))
        }
        Phase::Active => {
            if let Some(t) = escalate {
                let t = t as u8;
                if t > ep.tier {
                    ep.tier = t;
                    ep.calm = 0;
                    return Some((AlertType::ViralVelocity, t));
                }
            }
            ep.calm = if calm { ep.calm.saturating_add(1) } else { 0 };
            if ep.calm >= clear_after {
                ep.phase = Phase::Cooldown;
                ep.cooldown_until = index32(at + cooldown);
                ep.calm = 0;
                return Some((AlertType::ViralVelocityEnded, ep.tier));
            }
            None
        }
        Phase::Cooldown => None,
    }
}

/// Stores an index (bucket or slot) in the 32 bits a video keeps. Indices of validated
/// event times always fit; anything else saturates rather than wrapping.
pub(crate) fn index32(i: i64) -> u32 {
    u32::try_from(i.max(0)).unwrap_or(u32::MAX)
}

/// A lifecycle decision ready to become an alert.
struct Decision {
    alert_type: AlertType,
    tier: u8,
    threshold: f64,
    episode_start: i64,
    watermark: i64,
    explanation: String,
}

fn push_alert(
    out: &mut Vec<Alert>,
    tallies: &mut [u64; 4],
    v: &VideoState,
    creator: &str,
    d: Decision,
    r: &Reading,
) {
    let Decision {
        alert_type,
        tier,
        threshold,
        episode_start,
        watermark,
        explanation,
    } = d;
    let alert_id = stable_id(&[
        v.video_id.as_bytes(),
        alert_type.as_str().as_bytes(),
        &[tier],
        &episode_start.to_le_bytes(),
    ]);
    tallies[alert_type as usize] += 1;
    out.push(Alert {
        alert_id,
        video_id: v.video_id.to_string(),
        creator_id: creator.to_string(),
        alert_type,
        tier: u32::from(tier),
        window_start: r.window_start,
        window_end: r.window_end,
        count: r.count,
        previous_count: r.previous,
        rate_per_min: r.count as f64 / r.window_minutes,
        baseline: r.mean,
        baseline_stddev: r.stddev,
        z_score: r.z,
        ratio: r.ratio,
        threshold,
        first_seen: v.first_seen,
        episode_start,
        detected_at: watermark,
        explanation,
        rank: 0,
        previous_rank: 0,
    });
}
