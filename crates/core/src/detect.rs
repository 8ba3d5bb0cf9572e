//! The two detectors and the alert lifecycle they share.
//!
//! **Viral velocity** asks, as each like arrives, whether the video's net likes have left
//! its own baseline rate `λ` (an EWMA of likes per velocity window, never below the prior
//! `prior_likes_per_min` so a cold video is not judged against zero). Two sequential tests
//! share the false-alarm budget `false_alarms_per_video_day` (`B`), half each:
//!
//! - the **scan**: for each scan window of `k` buckets ending with the newest bucket (open
//!   or not), the exact Poisson tail `P(X >= S | k λ)` of its count `S`; it passes when
//!   the tail is at most `α = (B / 2) / (windows × buckets per day)` and `S >= tier₁ k λ`.
//!   That is a generalized likelihood-ratio test over a few change points, fast on jumps.
//!   Its long windows (whole velocity windows of the bucket clock, read from the like
//!   slots a video keeps beyond its fine buckets) carry a slow rise on a quiet video, a
//!   few likes a minute that no single minute shows;
//! - the **CUSUM** of the log-likelihood ratio of "rate `ρ λ`" (ρ = the first tier) against
//!   "rate `λ`", one step per bucket: `C = max(0, C + x ln ρ - (ρ - 1) λ)`. It passes at
//!   `C >= h = ln(2 × buckets per day / B)` (Lorden's bound: the mean time to a false alarm
//!   is at least `e^h` buckets), and accumulates the evidence of a slow, sustained rise that
//!   no short window shows. Each like adds at most `ln ρ`, so it needs `h / ln ρ` likes.
//!
//! A rise that comes with its audience is **corroborated**: when the video's distinct
//! viewers over its newest two trending slots (estimated from a 64-bit sketch per slot, so
//! re-watches do not count) exceed its trending-score baseline (which is above the views
//! it normally gets) by at least `corroborating_views_per_like` per interaction of those
//! slots, its views exceed it by at most `implausible_views_per_like` per interaction (more
//! is a view bot's burst, not the audience of the likes), and that many viewers are
//! themselves a chance of at most 1 in `corroborated_budget_factor` (`F`) at the
//! baseline, both tests run at `F` times the budget and the scan against the lower
//! `corroborated_prior_likes_per_min`. A quiet video's views are that unusual at most a
//! fraction `1/F` of the time, so the pair of tests keeps about the budget; a blip of likes
//! alone, a view bot's views alone or views in clumps are not corroborated.
//!
//! Counts only grow while a bucket is open, so both tests are evaluated at each like on the
//! open buckets (as if they closed now, with their full expected count): the alert fires the
//! moment the evidence suffices, not when the watermark closes the window, and is stamped
//! with the partition's newest event time. Higher tiers (ratios of the scan window's count
//! to its expectation) escalate. While an episode is open the baseline learns a winsorized
//! count, so an episode cannot teach the baseline that it is normal within minutes.
//!
//! **Trending** scores, at every closed coarse slot, the weighted engagement over the
//! trending window: above a tier's score and at least `min_ratio` times the baseline. Views
//! count only in proportion to the interactions that come with them (at most
//! `views_per_interaction` per like, share or comment of the same slot), so views alone
//! cannot make a video trend or reach the global board.
//!
//! **Lifecycle**, per detector and video: quiet → active (fires tier k) → escalations →
//! calm for `clear_after` evaluations (hysteresis: calm is judged against lower thresholds
//! than firing) → ENDED → cooldown → quiet. Every alert id is a hash of video, type, tier
//! and episode start, so a re-run emits the same ids.

use crate::config::{COARSE_SLOTS, EngineConfig, FINE_SLOTS, LIKE_SLOTS, MAX_LONG_WINDOW};
use crate::event::{Alert, AlertType, EventKind};
use crate::hash::stable_id;
use crate::video::{
    Baseline, CAPPED_SLOTS, EpisodeState, Phase, VideoState, ViewerSketch, capped_index,
};

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
    pub(crate) fn fingerprint(&self) -> [i64; 9] {
        [
            FINE_SLOTS as i64,
            COARSE_SLOTS as i64,
            LIKE_SLOTS as i64,
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
    /// Scan windows, ascending.
    v_scan: Vec<ScanWindow>,
    /// The thresholds of an uncorroborated rise (the budget itself) and of a corroborated
    /// one (the budget times `corroborated_budget_factor`).
    v_plain: Level,
    v_corroborated: Level,
    /// Extra distinct viewers per interaction that corroborate a like rise (0: never),
    /// and extra views per interaction beyond which they do not.
    v_views_per_like: f64,
    v_implausible_views_per_like: f64,
    /// `ln (1 / F)`: how unlikely at the baseline the viewers must be.
    v_ln_views_alpha: f64,
    /// Per scan window, the lesser of the two levels' least counts: the first check.
    v_scan_least: Vec<i64>,
    /// The most like slots a scan window spans (0 without long windows).
    v_long_slots: usize,
    /// `ln ρ` and `ρ - 1` of the CUSUM (ρ = the first tier).
    v_ln_rho: f64,
    v_rho_less_one: f64,
    v_z_clear: f64,
    v_floor: f64,
    v_tiers: Vec<f64>,
    v_clear_after: u8,
    v_cooldown_buckets: i64,
    /// `ln k!` for small `k`.
    ln_factorial: Vec<f64>,
    t_decay: f64,
    t_tiers: Vec<f64>,
    t_min_ratio: f64,
    t_clear_fraction: f64,
    t_clear_after: u8,
    t_cooldown_slots: i64,
    t_watch_score: i64,
    t_views_per_interaction: i64,
}

/// Both velocity tests' thresholds at one false-alarm budget, and the scan's prior.
#[derive(Clone, Debug)]
struct Level {
    /// The budget, in false alerts per video per day.
    budget: f64,
    /// The scan's prior, in net likes per velocity window.
    prior: f64,
    /// `ln α` of one scan-window test.
    ln_alpha: f64,
    /// Per scan window, the least count that can pass at the smallest expectation the
    /// prior allows: a cheap first check before any tail is computed.
    scan_min: Vec<i64>,
    /// The CUSUM's threshold `h`.
    cusum_h: f64,
}

/// Views that corroborate a like rise, over the video's newest two trending slots.
#[derive(Clone, Copy, Debug)]
struct Corroboration {
    views: i64,
    /// Distinct viewers, estimated from the slots' sketches.
    viewers: f64,
    /// `ln P(viewers >= this many)` at the expectation (on the sketches' sample).
    ln_tail: f64,
    /// Views the video's baseline explains over the same slots (its trending score per
    /// slot, which counts every view it normally gets and more).
    expected: f64,
    interactions: i64,
}

/// One window of the scan test.
#[derive(Clone, Copy, Debug)]
struct ScanWindow {
    /// The buckets it spans: exactly (a short window) or at most (a long one).
    buckets: i64,
    /// The whole velocity windows (like slots) a long window spans, the newest open; 0
    /// for a short window.
    slots: usize,
}

impl ScanWindow {
    /// The buckets it spans when the newest bucket is `now`.
    fn span(&self, now: i64, g: &Geometry) -> i64 {
        if self.slots == 0 {
            self.buckets
        } else {
            let n = g.velocity_buckets;
            now - (now.div_euclid(n) - self.slots as i64 + 1) * n + 1
        }
    }

    /// The fewest buckets it can span.
    fn shortest(&self, g: &Geometry) -> i64 {
        if self.slots == 0 {
            self.buckets
        } else {
            (self.slots as i64 - 1) * g.velocity_buckets + 1
        }
    }
}

/// The scan window that passed with the highest tier, as it was read.
#[derive(Clone, Copy, Debug)]
struct ScanHit {
    /// Which of the configured windows.
    window: usize,
    /// The buckets it spanned and the net likes in them.
    buckets: i64,
    count: i64,
    /// `ln P(X >= count)` at the baseline.
    ln_tail: f64,
}

/// Net likes in the `slots` newest like slots (`recent` newest first, as
/// [`VideoState::recent_slot_likes`] gives them), if each is known.
fn long_count(recent: &[Option<i64>], slots: usize) -> Option<i64> {
    recent.get(..slots)?.iter().copied().sum()
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

/// The count at which the winsorized velocity baseline stops learning, in standard
/// deviations above its mean: an anomaly is learned slowly.
const WINSOR_Z: f64 = 6.0;
/// The views a trending slot of a video is expected to get at least, history or not.
const MIN_VIEWS_PER_SLOT: f64 = 1.0;
/// `ln k!` is tabulated below this; Stirling's series beyond (error below 1e-12).
const LN_FACTORIAL_TABLE: usize = 256;

/// What the velocity tests found at one like.
struct Evidence {
    /// The tier to fire or escalate at.
    tier: usize,
    /// The scan window that passed with the highest tier.
    scan: Option<ScanHit>,
    /// The CUSUM, if it passed, and the bucket where its run began.
    cusum: Option<(f64, i64)>,
    /// The views that loosened the thresholds, if they did.
    corroboration: Option<Corroboration>,
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
        let mut ln_factorial = Vec::with_capacity(LN_FACTORIAL_TABLE);
        let mut acc = 0.0f64;
        ln_factorial.push(0.0);
        for k in 1..LN_FACTORIAL_TABLE {
            acc += (k as f64).ln();
            ln_factorial.push(acc);
        }
        let v_scan: Vec<ScanWindow> = v
            .effective_scan_windows(&c.windows)
            .iter()
            .map(|d| {
                let buckets = (ms(*d) / g.bucket_ms).max(1);
                let slots = if buckets > g.velocity_buckets {
                    usize::try_from(buckets / g.velocity_buckets)
                        .unwrap_or(MAX_LONG_WINDOW)
                        .min(MAX_LONG_WINDOW)
                } else {
                    0
                };
                ScanWindow { buckets, slots }
            })
            .collect();
        let v_long_slots = v_scan.iter().map(|w| w.slots).max().unwrap_or(0);
        let buckets_per_day = (86_400_000 / g.bucket_ms).max(1) as f64;
        let budget = v.false_alarms_per_video_day.clamp(1e-300, 1.0);
        let window_of =
            |per_min: f64| per_min * (g.velocity_buckets * g.bucket_ms) as f64 / 60_000.0;
        let level = |budget: f64, prior: f64| Level {
            budget,
            prior,
            ln_alpha: (budget / 2.0 / (v_scan.len().max(1) as f64 * buckets_per_day)).ln(),
            scan_min: Vec::new(),
            cusum_h: (2.0 * buckets_per_day / budget).ln(),
        };
        let v_plain = level(budget, window_of(v.prior_likes_per_min));
        // The looser level is only ever used a fraction 1/F of a quiet video's time, so it
        // may exceed one false alert a day on its own; it stays below one per bucket (a
        // probability per test, and a CUSUM threshold above ln 2).
        let factor = v.corroborated_budget_factor.max(1.0);
        let v_corroborated = level(
            (budget * factor).min(buckets_per_day),
            window_of(v.corroborated_prior_likes_per_min),
        );
        let rho = v.tiers.first().copied().unwrap_or(2.0).max(1.0 + 1e-9);
        let mut d = Self {
            weights: [w.view as i32, like, -like, w.share as i32, w.comment as i32],
            v_decay: half_life_decay(v.baseline_half_life, g.bucket_ms),
            v_scan,
            v_plain,
            v_corroborated,
            v_views_per_like: v.corroborating_views_per_like,
            v_implausible_views_per_like: v.implausible_views_per_like,
            v_ln_views_alpha: -factor.ln(),
            v_scan_least: Vec::new(),
            v_long_slots,
            v_ln_rho: rho.ln(),
            v_rho_less_one: rho - 1.0,
            v_z_clear: v.z_clear,
            v_floor: v.sigma_floor,
            v_tiers: v.tiers.clone(),
            v_clear_after: v.clear_after.min(255) as u8,
            v_cooldown_buckets: (ms(v.cooldown) + g.bucket_ms - 1) / g.bucket_ms,
            ln_factorial,
            t_decay: half_life_decay(t.baseline_half_life, g.slot_ms),
            t_tiers: t.tiers.clone(),
            t_min_ratio: t.min_ratio,
            t_clear_fraction: t.clear_fraction,
            t_clear_after: t.clear_after.min(255) as u8,
            t_cooldown_slots: (ms(t.cooldown) + g.slot_ms - 1) / g.slot_ms,
            t_watch_score: (t.tiers.first().copied().unwrap_or(1.0) * t.clear_fraction).floor()
                as i64,
            t_views_per_interaction: i64::from(t.views_per_interaction),
        };
        let least = |l: &Level| -> Vec<i64> {
            let per_bucket = l.prior / g.velocity_buckets as f64;
            d.v_scan
                .iter()
                .map(|w| {
                    let e = w.shortest(g) as f64 * per_bucket;
                    (1..=1_000_000i64)
                        .find(|&s| d.ln_poisson_tail(s, e) <= l.ln_alpha)
                        .unwrap_or(i64::MAX)
                })
                .collect()
        };
        let plain = least(&d.v_plain);
        let corroborated = least(&d.v_corroborated);
        d.v_scan_least = plain
            .iter()
            .zip(&corroborated)
            .map(|(a, b)| *a.min(b))
            .collect();
        d.v_plain.scan_min = plain;
        d.v_corroborated.scan_min = corroborated;
        d
    }

    /// Signed weight of a kind in the trending score (an unlike subtracts a like).
    pub(crate) fn weight(&self, kind: EventKind) -> i32 {
        self.weights[kind.index()]
    }

    /// Views a slot's score may count for `interactions` interactions of that slot.
    pub(crate) fn view_allowance(&self, interactions: i32) -> i64 {
        self.t_views_per_interaction * i64::from(interactions.max(0))
    }

    /// How far past the last event the watermark must move for every window to close and
    /// every open episode to end.
    pub(crate) fn drain_span_ms(&self, g: &Geometry) -> i64 {
        let velocity = (2 * g.velocity_buckets + i64::from(self.v_clear_after) + 2) * g.bucket_ms;
        let trending = (g.trending_slots + i64::from(self.t_clear_after) + 2) * g.slot_ms;
        velocity + trending
    }

    /// Whether the video must be scored at bucket closes: only an open episode needs it
    /// (to end); firing happens at likes.
    pub(crate) fn velocity_worth_watching(&self, v: &VideoState) -> bool {
        v.velocity.phase == Phase::Active
    }

    /// Whether the engagement in the video's ring could make it trend.
    pub(crate) fn trending_worth_watching(&self, v: &VideoState) -> bool {
        let ring: i64 = v.score.iter().map(|&x| i64::from(x.max(0))).sum();
        ring >= self.t_watch_score || v.trending.phase == Phase::Active
    }

    /// What the velocity detector compares a video with now, for a read-only view: the
    /// expected net likes per velocity window (the baseline, never below the prior), the
    /// CUSUM's threshold without corroboration, and the tiers as multiples of the expectation.
    pub(crate) fn velocity_yardsticks(&self, b: &Baseline, g: &Geometry) -> (f64, f64, &[f64]) {
        (
            self.expected_per_bucket(b, g) * g.velocity_buckets as f64,
            self.v_plain.cusum_h,
            &self.v_tiers,
        )
    }

    /// The same yardsticks (expected net likes per window and the CUSUM's threshold) for a
    /// rise its views corroborate, and whether the video's views corroborate one at bucket
    /// `now`.
    pub(crate) fn corroborated_yardsticks(
        &self,
        v: &VideoState,
        now: i64,
        g: &Geometry,
    ) -> (f64, f64, bool) {
        let b = &v.velocity_baseline;
        (
            self.scan_per_bucket(b, &self.v_corroborated, g) * g.velocity_buckets as f64,
            self.v_corroborated.cusum_h,
            self.corroboration(v, now, g).is_some(),
        )
    }

    /// The trending detector's tiers (weighted score over the window) and the multiple of
    /// its own baseline a video's score must also reach.
    pub(crate) fn trending_yardsticks(&self) -> (&[f64], f64) {
        (&self.t_tiers, self.t_min_ratio)
    }

    fn velocity_denominator(&self, b: &Baseline) -> f64 {
        b.stddev().max(b.mean().sqrt()).max(self.v_floor)
    }

    /// The baseline's expected net likes per bucket, never below the prior: the CUSUM's
    /// expectation, and the scan's without corroboration.
    fn expected_per_bucket(&self, b: &Baseline, g: &Geometry) -> f64 {
        self.scan_per_bucket(b, &self.v_plain, g)
    }

    /// The same against a level's scan prior.
    fn scan_per_bucket(&self, b: &Baseline, l: &Level, g: &Geometry) -> f64 {
        b.mean().max(l.prior) / g.velocity_buckets as f64
    }

    /// The thresholds for a rise with or without corroborating views.
    fn level(&self, corroboration: Option<&Corroboration>) -> &Level {
        if corroboration.is_some() {
            &self.v_corroborated
        } else {
            &self.v_plain
        }
    }

    /// `ln k!`.
    fn ln_factorial(&self, k: i64) -> f64 {
        match usize::try_from(k) {
            Ok(i) if i < self.ln_factorial.len() => self.ln_factorial[i],
            _ => {
                let x = k as f64;
                x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x)
                    - 1.0 / (360.0 * x * x * x)
            }
        }
    }

    /// `ln P(X >= s)` for X Poisson with mean `e`, exact (the series of the upper tail,
    /// summed until its terms no longer matter). 0 (certainty) for `s <= e`, where no rise
    /// is in question.
    pub(crate) fn ln_poisson_tail(&self, s: i64, e: f64) -> f64 {
        if s <= 0 || (s as f64) <= e {
            return 0.0;
        }
        if e <= 0.0 {
            return f64::NEG_INFINITY;
        }
        let ln_pmf = -e + s as f64 * e.ln() - self.ln_factorial(s);
        // Tail / pmf(s) = 1 + e/(s+1) + e^2/((s+1)(s+2)) + ...; the ratio of terms falls
        // below e/s < 1, so the sum converges geometrically.
        let mut sum = 1.0f64;
        let mut term = 1.0f64;
        let mut j = s as f64;
        for _ in 0..10_000 {
            j += 1.0;
            term *= e / j;
            sum += term;
            if term < 1e-15 * sum {
                break;
            }
        }
        (ln_pmf + sum.ln()).min(0.0)
    }

    /// One CUSUM step over a bucket with `x` net likes, against `per_bucket` expected.
    fn cusum_step(&self, c: &mut f64, since: &mut i64, bucket: i64, x: i64, per_bucket: f64) {
        let step = x as f64 * self.v_ln_rho - self.v_rho_less_one * per_bucket;
        if *c <= 0.0 {
            *since = bucket;
        }
        *c = (*c + step).max(0.0);
    }

    /// Folds closed bucket `k` (velocity window count `window`) into the CUSUM and the
    /// baseline. After warm-up the count is winsorized; during warm-up (see
    /// [`warm_decay`]) the baseline learns fast and uncapped and the CUSUM stays at 0.
    fn fold_bucket(&self, v: &mut VideoState, k: i64, window: i64, warm: bool, g: &Geometry) {
        if warm {
            // An episode's own likes are no evidence of the next one: the CUSUM restarts
            // from 0 once the video may fire again.
            if v.velocity.may_fire_at(k) {
                let per_bucket = self.expected_per_bucket(&v.velocity_baseline, g);
                let mut c = f64::from(v.cusum);
                let mut since = i64::from(v.cusum_since);
                self.cusum_step(&mut c, &mut since, k, v.likes_at(k), per_bucket);
                v.cusum = c as f32;
                v.cusum_since = index32(since);
            } else {
                v.cusum = 0.0;
            }
            let b = &mut v.velocity_baseline;
            let cap = b.mean() + WINSOR_Z * self.velocity_denominator(b);
            b.step((window as f64).min(cap), self.v_decay);
        } else {
            v.cusum = 0.0;
            let b = &mut v.velocity_baseline;
            b.step(window as f64, warm_decay(b.obs, self.v_decay));
        }
    }

    /// Folds `n` closed buckets without likes into the CUSUM, in closed form: each
    /// subtracts `(ρ - 1) λ_i`, with `λ_i` the baseline decaying by the EWMA factor until it
    /// meets the prior.
    fn cusum_zeros(&self, v: &mut VideoState, n: i64, g: &Geometry) {
        if n <= 0 || v.cusum <= 0.0 {
            return;
        }
        let mean = v.velocity_baseline.mean();
        let r = self.v_decay;
        let prior = self.v_plain.prior;
        let above = if mean > prior && r < 1.0 {
            // Steps i = 0.. with mean r^i above the prior.
            let j = ((prior / mean).ln() / r.ln()).ceil();
            (j.max(0.0) as i64).min(n)
        } else {
            0
        };
        let decayed = mean * (1.0 - r.powi(above.min(i64::from(i32::MAX)) as i32)) / (1.0 - r);
        let total = if above > 0 { decayed } else { 0.0 } + (n - above) as f64 * prior;
        let drift = self.v_rho_less_one * total / g.velocity_buckets as f64;
        v.cusum = (f64::from(v.cusum) - drift).max(0.0) as f32;
    }

    /// Brings the velocity baseline and CUSUM up to bucket `upto` using the counts in the
    /// ring (a run of empty buckets at the end is folded in closed form).
    pub(crate) fn catch_up_velocity(
        &self,
        v: &mut VideoState,
        upto: i64,
        started: i64,
        g: &Geometry,
    ) {
        let through = i64::from(v.velocity_baseline.through);
        if through >= upto {
            return;
        }
        // Buckets after head + n - 1 hold no data in any window; buckets before the end of
        // warm-up are folded one by one because warm-up learning is not a plain EWMA.
        let warm_from = (started + g.velocity_warmup_ms).div_euclid(g.bucket_ms);
        let last_stepped = (v.head() + g.velocity_buckets - 1).max(warm_from).min(upto);
        // The window slides one bucket per step: keep its sum instead of re-adding it
        // (integers, so exactly the sum a fresh count would give).
        let n = g.velocity_buckets;
        let mut window = v.likes_window(through, n);
        for k in through + 1..=last_stepped {
            window += v.likes_at(k) - v.likes_at(k - n);
            let warm = (k + 1) * g.bucket_ms - started >= g.velocity_warmup_ms;
            self.fold_bucket(v, k, window, warm, g);
        }
        // Past the last stepped bucket every bucket and every window is empty.
        let zeros = upto - through.max(last_stepped);
        if !v.velocity.may_fire_at(through.max(last_stepped) + 1) {
            v.cusum = 0.0;
        }
        self.cusum_zeros(v, zeros, g);
        v.velocity_baseline.zeros(zeros, self.v_decay);
        v.velocity_baseline.through = index32(upto);
    }

    /// Runs both velocity tests at a like, on the windows ending with `now` (the bucket of
    /// the partition's newest event, possibly still open). The baseline must be caught up
    /// to the last closed bucket.
    fn velocity_evidence(&self, v: &VideoState, now: i64, g: &Geometry) -> Option<Evidence> {
        let per_bucket = self.expected_per_bucket(&v.velocity_baseline, g);
        let first_tier = self.v_tiers.first().copied().unwrap_or(1.0);
        // Whether the views corroborate is asked only once some test could pass at the
        // looser level (whose least counts are the lower): most likes end before that.
        let mut decided: Option<Option<Corroboration>> = None;
        let b = &v.velocity_baseline;
        let least_per_bucket = self
            .scan_per_bucket(b, &self.v_plain, g)
            .min(self.scan_per_bucket(b, &self.v_corroborated, g));
        let mut scan: Option<(usize, ScanHit)> = None;
        // The like slots the long windows read, once a long window is reached.
        let mut recent = None;
        let events = i64::from(v.events);
        for (i, w) in self.v_scan.iter().enumerate() {
            // No window holds more net likes than the video has events: most videos are
            // cold, and this skips their windows unread.
            if events < self.v_scan_least[i] {
                continue;
            }
            let k = w.span(now, g);
            let count = if w.slots == 0 {
                v.likes_window(now, k)
            } else {
                let recent = recent.get_or_insert_with(|| {
                    v.recent_slot_likes(now, g.velocity_buckets, self.v_long_slots)
                });
                match long_count(recent, w.slots) {
                    Some(count) => count,
                    None => continue,
                }
            };
            if count < self.v_scan_least[i]
                || (count as f64) < first_tier * k as f64 * least_per_bucket
            {
                continue;
            }
            let corroboration = decided.get_or_insert_with(|| self.corroboration(v, now, g));
            let level = self.level(corroboration.as_ref());
            let expected = k as f64 * self.scan_per_bucket(b, level, g);
            if count < level.scan_min[i] || (count as f64) < first_tier * expected {
                continue;
            }
            let ln_tail = self.ln_poisson_tail(count, expected);
            if ln_tail > level.ln_alpha {
                continue;
            }
            let ratio = count as f64 / expected;
            let tier = self.v_tiers.iter().rposition(|&t| ratio >= t).unwrap_or(0);
            if scan.is_none_or(|(t, hit)| tier > t || (tier == t && ln_tail < hit.ln_tail)) {
                let hit = ScanHit {
                    window: i,
                    buckets: k,
                    count,
                    ln_tail,
                };
                scan = Some((tier, hit));
            }
        }
        // The CUSUM through the open buckets, as if they closed now.
        let through = i64::from(v.velocity_baseline.through);
        let mut c = f64::from(v.cusum);
        let mut since = i64::from(v.cusum_since);
        let open_likes: i64 = (through + 1..=now).map(|b| v.likes_at(b).max(0)).sum();
        let reach = c + open_likes as f64 * self.v_ln_rho;
        let cusum = if reach >= self.v_corroborated.cusum_h {
            let corroboration = decided.get_or_insert_with(|| self.corroboration(v, now, g));
            let h = self.level(corroboration.as_ref()).cusum_h;
            if reach >= h {
                for b in through + 1..=now {
                    self.cusum_step(&mut c, &mut since, b, v.likes_at(b), per_bucket);
                }
                (c >= h).then_some((c, since))
            } else {
                None
            }
        } else {
            None
        };
        let corroboration = decided.flatten();
        if scan.is_none() && cusum.is_none() {
            return None;
        }
        Some(Evidence {
            tier: scan.map_or(0, |(t, _)| t),
            scan: scan.map(|(_, hit)| hit),
            cusum,
            corroboration,
        })
    }

    /// Whether the video's audience corroborates a like rise at bucket `now`, over the
    /// newest two trending slots (the one of `now` and the one before, as far as the
    /// video's tallies hold them): its distinct viewers exceed what its baseline explains
    /// by at least `corroborating_views_per_like` per interaction of those slots, its
    /// views by at most `implausible_views_per_like` per interaction, and that many viewers
    /// are a chance of at most `1 / F` at the baseline. The expectation is the video's
    /// trending-score baseline over two slots (views and weighted interactions: more than
    /// every view it normally gets), the open slot counted in full: both err towards "not
    /// corroborated".
    fn corroboration(&self, v: &VideoState, now: i64, g: &Geometry) -> Option<Corroboration> {
        if self.v_views_per_like <= 0.0 {
            return None;
        }
        let now_slot = now.div_euclid(g.slot_buckets);
        let head_slot = v.head().div_euclid(g.slot_buckets);
        let slots = (now_slot - 1..=now_slot)
            .filter(|&s| s <= head_slot && s > head_slot - CAPPED_SLOTS as i64)
            .map(capped_index);
        let (mut views, mut interactions) = (0i64, 0i64);
        for i in slots.clone() {
            views += i64::from(v.slot_views[i]);
            interactions += i64::from(v.slot_interactions[i]);
        }
        if interactions <= 0 {
            return None;
        }
        // The score counts each like 10 times and shares and comments more: a score
        // baseline exceeds the views the video normally gets by far more than a daily
        // rhythm can lift them above a 3-hour EWMA (about 30% of the mean at ±40%). A
        // video without history is expected to get a view a slot, so the tail is finite.
        let expected = (2.0 * v.trending_baseline.mean() / g.trending_slots.max(1) as f64)
            .max(2.0 * MIN_VIEWS_PER_SLOT);
        let per_interaction = interactions as f64;
        let least = self.v_views_per_like * per_interaction;
        // Viewers are never more than views: most likes end at the first check, before any
        // sketch is read.
        let extra_views = views as f64 - expected;
        if extra_views < least || extra_views > self.v_implausible_views_per_like * per_interaction
        {
            return None;
        }
        let (mut viewers, mut level) = (0.0f64, 0u8);
        for i in slots {
            // Never more viewers than views (the estimate's error can say so).
            let l = v.slot_viewer_level[i];
            let estimate = ViewerSketch::sampled(v.slot_viewers[i]) * f64::from(l).exp2();
            viewers += estimate.min(f64::from(v.slot_views[i]));
            level = level.max(l);
        }
        if viewers - expected < least {
            return None;
        }
        // The tail on the coarsest sample of the two slots: the sampled viewers of a
        // Poisson audience are Poisson too.
        let p = (-f64::from(level)).exp2();
        let ln_tail = self.ln_poisson_tail((viewers * p).floor() as i64, expected * p);
        (ln_tail <= self.v_ln_views_alpha).then_some(Corroboration {
            views,
            viewers,
            ln_tail,
            expected,
            interactions,
        })
    }

    /// Tests `v` at a like counted while the partition's newest event is in bucket `now`
    /// and fires or escalates the episode when the evidence suffices. Returns whether the
    /// video now has an open episode (and must be scored at bucket closes).
    // The arguments are the video, the clock and where results go; bundling them would
    // only move the same list into a struct built once per call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn velocity_on_like(
        &self,
        v: &mut VideoState,
        creator: &str,
        now: i64,
        clock: (i64, i64),
        g: &Geometry,
        out: &mut Vec<Alert>,
        tallies: &mut [u64; 4],
    ) -> bool {
        let (started, newest) = clock;
        let warm = (now + 1) * g.bucket_ms - started >= g.velocity_warmup_ms;
        if !warm {
            return false;
        }
        let Some(evidence) = self.velocity_evidence(v, now, g) else {
            return v.velocity.phase == Phase::Active;
        };
        let decision = lifecycle(
            &mut v.velocity,
            now,
            self.v_cooldown_buckets,
            self.v_clear_after,
            Some(evidence.tier),
            Some(evidence.tier),
            false,
        );
        if let Some((alert_type, t)) = decision {
            let (r, explanation) = self.explain_velocity(v, now, &evidence, t, g);
            let d = Decision {
                alert_type,
                tier: t,
                threshold: self.v_tiers[usize::from(t)],
                episode_start: (i64::from(v.velocity.start) + 1) * g.bucket_ms,
                watermark: newest,
                explanation,
            };
            push_alert(out, tallies, v, creator, d, &r);
        }
        v.velocity.phase == Phase::Active
    }

    /// The reading an alert carries and its sentence: the scan window that passed (or, for
    /// the CUSUM alone, the velocity window) and why it is beyond chance.
    fn explain_velocity(
        &self,
        v: &VideoState,
        now: i64,
        e: &Evidence,
        tier: u8,
        g: &Geometry,
    ) -> (Reading, String) {
        let thresholds = self.level(e.corroboration.as_ref());
        // The scan's expectation (at its level's prior) or, for the CUSUM alone, the
        // CUSUM's.
        let per_bucket = if e.scan.is_some() {
            self.scan_per_bucket(&v.velocity_baseline, thresholds, g)
        } else {
            self.expected_per_bucket(&v.velocity_baseline, g)
        };
        let (k, count, previous) = match e.scan {
            Some(hit) => {
                let slots = self.v_scan[hit.window].slots;
                let previous = if slots == 0 {
                    v.likes_window(now - hit.buckets, hit.buckets)
                } else {
                    // The same number of whole like slots before it (a video remembers
                    // twice the longest window); a slot out of range counts as none.
                    let recent = v.recent_slot_likes(now, g.velocity_buckets, 2 * slots);
                    recent[slots..2 * slots].iter().flatten().sum()
                };
                (hit.buckets, hit.count, previous)
            }
            None => {
                let k = g.velocity_buckets;
                (k, v.likes_window(now, k), v.likes_window(now - k, k))
            }
        };
        let expected = k as f64 * per_bucket;
        let minutes = (k * g.bucket_ms) as f64 / 60_000.0;
        let lr = if count > 0 && (count as f64) > expected {
            2.0 * (count as f64 * (count as f64 / expected).ln() - (count as f64 - expected))
        } else {
            0.0
        };
        let r = Reading {
            count,
            previous,
            mean: expected,
            stddev: expected.sqrt(),
            z: lr.max(0.0).sqrt(),
            ratio: count as f64 / expected,
            window_start: (now - k + 1) * g.bucket_ms,
            window_end: (now + 1) * g.bucket_ms,
            window_minutes: minutes,
        };
        let per_min = per_bucket * (60_000 / g.bucket_ms) as f64;
        let threshold = self.v_tiers[usize::from(tier)];
        let level = format!(
            "the false-alarm level of {} false alert{} per video per day",
            thresholds.budget,
            if thresholds.budget == 1.0 { "" } else { "s" }
        );
        let mut why = match e.scan {
            Some(ScanHit { ln_tail, .. }) => format!(
                "{count} net likes in the last {} against {} expected from the video's baseline of {per_min:.2}/min ({:.1}x, tier {tier} at {threshold}x): a chance of 1 in {} at the baseline rate, beyond {level} (1 in {} per window tested)",
                span(k * g.bucket_ms),
                amount(expected),
                r.ratio,
                one_in(ln_tail),
                one_in(thresholds.ln_alpha),
            ),
            None => format!(
                "{count} net likes in the last {} against {} expected from the video's baseline of {per_min:.2}/min ({:.1}x)",
                span(k * g.bucket_ms),
                amount(expected),
                r.ratio
            ),
        };
        if let Some((c, since)) = e.cusum {
            let rho = self.v_tiers.first().copied().unwrap_or(1.0);
            why.push_str(&format!(
                "; sustained rise (CUSUM): the likes since {} ago are {} times likelier at {rho}x the baseline than at the baseline, beyond {level} (1 in {})",
                span((now + 1 - since) * g.bucket_ms),
                one_in(-c),
                one_in(-thresholds.cusum_h),
            ));
        }
        if let Some(k) = e.corroboration {
            why.push_str(&format!(
                "; corroborated by its audience: about {:.0} distinct viewers ({} views) in the last {} against {:.0} its baseline explains, at least {} more per like, share or comment ({}) and a chance of 1 in {}, so tested at {} times the budget of {} (a quiet video's audience is that unusual at most that rarely) and against a prior of {:.2} likes/min",
                k.viewers,
                k.views,
                span(2 * g.slot_ms),
                k.expected,
                self.v_views_per_like,
                k.interactions,
                one_in(k.ln_tail),
                thresholds.budget / self.v_plain.budget,
                self.v_plain.budget,
                thresholds.prior * 60_000.0 / (g.velocity_buckets * g.bucket_ms) as f64,
            ));
        }
        (r, why)
    }

    /// Runs the lifecycle of an open velocity episode at the close of `bucket`: a calm
    /// velocity window counts towards its end, and `clear_after` calm closes end it. Folds
    /// the bucket into the baseline. Returns whether to keep watching.
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
        let denom = self.velocity_denominator(&b);
        let r = Reading {
            count,
            previous: v.likes_window(bucket - n, n),
            mean: b.mean(),
            stddev: b.stddev(),
            z: (count as f64 - b.mean()) / denom,
            ratio: count as f64 / b.mean().max(self.v_plain.prior),
            window_start: (bucket - n + 1) * g.bucket_ms,
            window_end: (bucket + 1) * g.bucket_ms,
            window_minutes: (n * g.bucket_ms) as f64 / 60_000.0,
        };
        let warm = r.window_end - started >= g.velocity_warmup_ms;
        let decision = lifecycle(
            &mut v.velocity,
            bucket,
            self.v_cooldown_buckets,
            self.v_clear_after,
            None,
            None,
            r.z < self.v_z_clear,
        );
        if let Some((alert_type, t)) = decision {
            let explanation = format!(
                "viral-velocity episode over: {count} net likes in the last {:.0} min, back within {:.1} sd of the baseline {:.1} for {} evaluations",
                r.window_minutes, self.v_z_clear, r.mean, self.v_clear_after
            );
            let d = Decision {
                alert_type,
                tier: t,
                threshold: self.v_tiers[usize::from(t)],
                episode_start: (i64::from(v.velocity.start) + 1) * g.bucket_ms,
                watermark,
                explanation,
            };
            push_alert(out, tallies, v, creator, d, &r);
        }
        self.fold_bucket(v, bucket, count, warm, g);
        v.velocity_baseline.through = index32(bucket);
        self.velocity_worth_watching(v)
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
                    warm_decay(b.obs, self.t_decay)
                },
            );
        }
        b.zeros(upto - through.max(last_stepped), self.t_decay);
        b.through = index32(upto);
        v.trending_baseline = b;
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
        let r = Reading {
            count,
            previous,
            mean: b.mean(),
            // The trending baseline keeps no variance; z is against Poisson noise.
            stddev: 0.0,
            z: (count as f64 - b.mean()) / b.mean().sqrt().max(1.0),
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
            warm_decay(v.trending_baseline.obs, self.t_decay)
        };
        v.trending_baseline.step(count as f64, decay);
        v.trending_baseline.through = index32(slot);
        self.trending_worth_watching(v)
    }
}

/// During a partition's warm-up every video is new to the engine, so a baseline learns as a
/// running mean (weight `1/(obs+1)`) until the EWMA weight is the larger: a popular video
/// seen from the first minute gets a true baseline instead of looking viral against zero.
fn warm_decay(obs: u32, decay: f64) -> f64 {
    let running = 1.0 - 1.0 / (f64::from(obs) + 1.0);
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

/// "1 in N" for a log-probability, in a form a reader takes in at a glance.
fn one_in(ln_p: f64) -> String {
    let n = (-ln_p).exp();
    if !n.is_finite() || n >= 1e15 {
        format!("e^{:.0}", -ln_p)
    } else if n >= 1e4 {
        format!("{n:.1e}")
    } else {
        format!("{n:.0}")
    }
}

/// An expected count, with the decimals a reader needs to tell it from zero.
fn amount(x: f64) -> String {
    if x < 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1}")
    }
}

/// A span of milliseconds as "30 s" or "4.5 min".
fn span(ms: i64) -> String {
    if ms < 60_000 {
        format!("{} s", ms / 1_000)
    } else if ms % 60_000 == 0 {
        format!("{} min", ms / 60_000)
    } else {
        format!("{:.1} min", ms as f64 / 60_000.0)
    }
}
