//! The engine's configuration: window sizes, detector thresholds and memory bounds.
//!
//! Every default lives in the `Default` impls here; `validate` reports every cross-field
//! error at once so a user fixes a file in one pass.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How many fine buckets a video keeps (the short-window ring). Fixed so that a tracked
/// video has a fixed, small size; `validate` checks the windows fit.
pub const FINE_SLOTS: usize = 16;
/// How many coarse slots a video keeps (the trending-window ring).
pub const COARSE_SLOTS: usize = 17;
/// How many velocity windows of net likes a video keeps beyond its fine buckets, one small
/// count each: what the scan windows longer than the velocity window read.
pub const LIKE_SLOTS: usize = 8;
/// The longest scan window, in velocity windows. An alert's `previous_count` is the window
/// before the one that fired, so a video must remember twice this many velocity windows:
/// the [`LIKE_SLOTS`] it keeps plus at least the two whole ones its fine buckets still hold
/// (a velocity window is at most half of them), the open one aside.
pub const MAX_LONG_WINDOW: usize = 5;
/// The most alert tiers a detector may configure.
pub const MAX_TIERS: usize = 8;
/// The most scan windows the velocity detector may configure.
pub const MAX_SCAN_WINDOWS: usize = 8;

/// Durations as a list of human strings (`["10s", "1m"]`).
mod humantime_serde_vec {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = v
            .iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect();
        text.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let text: Vec<String> = Vec::deserialize(d)?;
        text.iter()
            .map(|t| humantime::parse_duration(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Everything the pure engine needs to decide.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct EngineConfig {
    /// Windows, watermark and idleness.
    pub windows: WindowConfig,
    /// The viral-velocity detector.
    pub velocity: VelocityConfig,
    /// The per-video trending detector.
    pub trending: TrendingConfig,
    /// Memory bounds.
    pub capacity: CapacityConfig,
}

/// Bucket and window sizes, lateness and idleness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Width of a fine time bucket.
    #[serde(with = "humantime_serde")]
    pub bucket: Duration,
    /// The short sliding window viral velocity is measured on (a multiple of `bucket`).
    #[serde(with = "humantime_serde")]
    pub velocity_window: Duration,
    /// Width of a coarse slot of the trending window (a multiple of `bucket`).
    #[serde(with = "humantime_serde")]
    pub trending_slot: Duration,
    /// The sliding window trending is measured on (a multiple of `trending_slot`).
    #[serde(with = "humantime_serde")]
    pub trending_window: Duration,
    /// Allowed lateness: the watermark trails the newest event time by this much, and events
    /// older than the watermark are late.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// Wall-clock silence after which an idle partition's watermark starts advancing with the
    /// wall clock.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How far behind the newest event time re-delivered event ids are still recognised as
    /// duplicates (at least `allowed_lateness`; anything older is late anyway).
    #[serde(with = "humantime_serde")]
    pub dedup_horizon: Duration,
}

/// Viral velocity: sequential tests of a video's net likes against its own baseline rate.
///
/// Two tests run side by side, both with the false-alarm budget as their knob:
/// a **scan** of several short windows ending at the newest event (exact Poisson tail of
/// the window's count under the baseline), fast on sudden jumps; and a **CUSUM** of the
/// log-likelihood ratio "first tier × baseline" against "baseline", bucket by bucket,
/// which accumulates the evidence of a slow, sustained rise. Both are evaluated as each
/// like arrives, on still-open buckets (counts only grow), so an alert fires as soon as
/// the evidence suffices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VelocityConfig {
    /// Half-life of the EWMA baseline of likes per velocity window.
    #[serde(with = "humantime_serde")]
    pub baseline_half_life: Duration,
    /// The false-alarm budget: expected false alerts per tracked video per day if its likes
    /// follow its baseline (a Poisson process). Sets both tests' thresholds.
    pub false_alarms_per_video_day: f64,
    /// The scan's windows, each ending with the newest bucket, open or not. A **short** one
    /// is a multiple of `engine.windows.bucket`, at most the velocity window, and spans
    /// exactly that many buckets. A **long** one is a multiple of the velocity window, at
    /// most [`MAX_LONG_WINDOW`] of them, and spans that many whole velocity windows of the
    /// bucket clock, the newest one open: `3m` at 10 s buckets and a 1 min velocity window
    /// covers between 2 min 10 s and 3 min. Long windows carry the evidence of slow rises
    /// on quiet videos, and are read only while each velocity window they cover holds
    /// between -127 and 126 net likes (a busier video has the short windows' evidence).
    /// Empty (the default): one and three buckets, the velocity window and three and five
    /// velocity windows (10 s, 30 s, 1 min, 3 min, 5 min), so the set follows the geometry.
    #[serde(with = "humantime_serde_vec")]
    pub scan_windows: Vec<Duration>,
    /// The baseline a video is tested against until its own is higher, in net likes per
    /// minute: a video with little or no history is assumed to get this many, so a handful
    /// of likes on a cold video (a one-minute blip) is not evidence of virality.
    pub prior_likes_per_min: f64,
    /// A like rise is **corroborated** when the video's distinct viewers over its newest
    /// two trending slots (events with the same `user_id` are one viewer; a view without
    /// one, or with an empty one, is a viewer of its own) exceed what its baseline explains by at least this many
    /// per interaction of those slots: likes come with the audience that makes them (one
    /// like per 8–50 views is genuine engagement), a blip of likes alone does not. 0 turns
    /// corroboration off.
    pub corroborating_views_per_like: f64,
    /// Extra views per interaction beyond which the views do not corroborate: a view
    /// bot's burst on a video with a few likes of its own is not their audience.
    pub implausible_views_per_like: f64,
    /// `F`: a corroborated rise is tested at `F` times the false-alarm budget (both tests'
    /// thresholds loosen by `ln F`), so it fires on fewer likes, and only when its viewers
    /// are themselves a chance of at most `1 / F` at the video's baseline; a quiet video
    /// is then corroborated at most that fraction of the time, so the pair keeps about the
    /// budget. 1 turns the relief off.
    pub corroborated_budget_factor: f64,
    /// The prior of the scan for a corroborated rise, in net likes per minute: the prior
    /// above guards against blips, which a corroborated rise is not, so a cold video's
    /// corroborated rise is judged against this lower rate (the CUSUM keeps the prior
    /// above: it carries its state from bucket to bucket).
    pub corroborated_prior_likes_per_min: f64,
    /// z-score below which the episode counts as calming down (hysteresis); z of the net
    /// likes in the velocity window against the baseline.
    pub z_clear: f64,
    /// Smallest denominator of the calm z-score.
    pub sigma_floor: f64,
    /// Ratios to baseline of each tier, ascending. Firing needs the first (the CUSUM tests
    /// for a rise to it); reaching a later one escalates the episode.
    pub tiers: Vec<f64>,
    /// Consecutive calm evaluations (one per bucket) that end an episode.
    pub clear_after: u32,
    /// After an episode ends, the video cannot start a new one for this long.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// For this long after a partition's first event nothing fires: every video is new to
    /// the engine then, and baselines learn as running means.
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
}

/// Trending: weighted engagement over the trending window above threshold and baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrendingConfig {
    /// Weight of each kind in the engagement score (integers keep the score exact).
    pub weights: KindWeights,
    /// Views a slot's score counts per interaction (like net of unlikes, share, comment)
    /// of the same slot; views beyond it score nothing. Genuine engagement brings one like
    /// per 8-50 views; a view bot brings none, so views alone cannot make a video trend.
    pub views_per_interaction: u32,
    /// Scores of each tier, ascending; firing needs the first.
    pub tiers: Vec<f64>,
    /// The score must also be at least this multiple of the video's own baseline.
    pub min_ratio: f64,
    /// Half-life of the EWMA baseline of the windowed score.
    #[serde(with = "humantime_serde")]
    pub baseline_half_life: Duration,
    /// An episode calms when the score drops below this fraction of the first tier.
    pub clear_fraction: f64,
    /// Consecutive calm evaluations (one per trending slot) that end an episode.
    pub clear_after: u32,
    /// After an episode ends, the video cannot start a new one for this long.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// For this long after a partition's first event nothing trends (baselines learn).
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
}

/// Integer weight of each event kind in the trending score. An unlike subtracts a like.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KindWeights {
    /// Weight of a view.
    pub view: u32,
    /// Weight of a like (an unlike subtracts it).
    pub like: u32,
    /// Weight of a share.
    pub share: u32,
    /// Weight of a comment.
    pub comment: u32,
}

/// Memory bounds of one partition's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityConfig {
    /// Most videos tracked at once; beyond it a newcomer is admitted only if its sketched
    /// recent engagement beats a sampled tracked video's.
    pub max_videos: u32,
    /// A video with no events for this long (event time) and no open episode is forgotten.
    #[serde(with = "humantime_serde")]
    pub video_ttl: Duration,
    /// Most event ids remembered for de-duplication (about 16 bytes each). Ids are
    /// forgotten a `dedup_horizon` behind the watermark; this bounds the set when event
    /// times stall (a producer stamping every event alike) or a flood outruns the horizon:
    /// past it the oldest second of ids is forgotten, and a re-delivery of one of them
    /// counts again (`trendwatch_dedup_ids_forgotten_total`).
    pub max_dedup_ids: u32,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            bucket: Duration::from_secs(10),
            velocity_window: Duration::from_secs(60),
            trending_slot: Duration::from_secs(60),
            trending_window: Duration::from_secs(15 * 60),
            allowed_lateness: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            dedup_horizon: Duration::from_secs(60),
        }
    }
}

impl Default for VelocityConfig {
    fn default() -> Self {
        Self {
            baseline_half_life: Duration::from_secs(30 * 60),
            false_alarms_per_video_day: 0.001,
            scan_windows: Vec::new(),
            prior_likes_per_min: 1.0,
            corroborating_views_per_like: 4.0,
            implausible_views_per_like: 100.0,
            corroborated_budget_factor: 100_000.0,
            corroborated_prior_likes_per_min: 0.15,
            z_clear: 2.0,
            sigma_floor: 1.0,
            tiers: vec![5.0, 20.0, 100.0],
            clear_after: 6,
            cooldown: Duration::from_secs(10 * 60),
            warmup: Duration::from_secs(15 * 60),
        }
    }
}

impl Default for TrendingConfig {
    fn default() -> Self {
        Self {
            weights: KindWeights::default(),
            views_per_interaction: 50,
            tiers: vec![10_000.0, 50_000.0, 250_000.0],
            min_ratio: 2.0,
            baseline_half_life: Duration::from_secs(3 * 60 * 60),
            clear_fraction: 0.7,
            clear_after: 3,
            cooldown: Duration::from_secs(15 * 60),
            warmup: Duration::from_secs(30 * 60),
        }
    }
}

impl Default for KindWeights {
    fn default() -> Self {
        Self {
            view: 1,
            like: 10,
            share: 20,
            comment: 15,
        }
    }
}

impl Default for CapacityConfig {
    fn default() -> Self {
        Self {
            max_videos: 1_000_000,
            video_ttl: Duration::from_secs(60 * 60),
            max_dedup_ids: 4_000_000,
        }
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn check_tiers(errors: &mut Vec<String>, name: &str, tiers: &[f64]) {
    if tiers.is_empty() || tiers.len() > MAX_TIERS {
        errors.push(format!(
            "{name}: needs 1 to {MAX_TIERS} tiers, has {}",
            tiers.len()
        ));
    }
    if tiers.iter().any(|t| !t.is_finite() || *t <= 0.0) {
        errors.push(format!("{name}: every tier must be a positive number"));
    }
    if tiers.windows(2).any(|w| w[0] >= w[1]) {
        errors.push(format!("{name}: tiers must be strictly ascending"));
    }
}

impl VelocityConfig {
    /// The scan windows in force: the configured ones, or (none configured) one, two and
    /// three buckets and the velocity window, ascending and without repeats.
    pub fn effective_scan_windows(&self, windows: &WindowConfig) -> Vec<Duration> {
        if !self.scan_windows.is_empty() {
            return self.scan_windows.clone();
        }
        let mut all: Vec<Duration> = [1, 3]
            .map(|k| windows.bucket * k)
            .into_iter()
            .filter(|d| *d <= windows.velocity_window)
            .chain([1, 3, 5].map(|k| windows.velocity_window * k))
            .collect();
        all.dedup();
        all
    }
}

impl EngineConfig {
    /// Checks every field and every relation between fields, returning all problems at once
    /// (each message names the offending key).
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let w = &self.windows;
        let bucket = ms(w.bucket);
        if bucket < 1_000 || !bucket.is_multiple_of(1_000) {
            errors.push(format!(
                "engine.windows.bucket: must be a whole number of seconds, at least 1s (is {}ms)",
                bucket
            ));
        }
        for (name, d) in [
            ("engine.windows.velocity_window", w.velocity_window),
            ("engine.windows.trending_slot", w.trending_slot),
        ] {
            if bucket > 0 && (ms(d) == 0 || !ms(d).is_multiple_of(bucket)) {
                errors.push(format!(
                    "{name}: must be a positive multiple of engine.windows.bucket ({}ms), is {}ms",
                    bucket,
                    ms(d)
                ));
            }
        }
        let slot = ms(w.trending_slot);
        if slot > 0 && (ms(w.trending_window) == 0 || !ms(w.trending_window).is_multiple_of(slot)) {
            errors.push(format!(
                "engine.windows.trending_window: must be a positive multiple of engine.windows.trending_slot ({}ms), is {}ms",
                slot,
                ms(w.trending_window)
            ));
        }
        let lateness = ms(w.allowed_lateness);
        if bucket > 0 && ms(w.velocity_window).is_multiple_of(bucket) {
            // The ring must hold the current and previous velocity windows plus every bucket
            // that can still receive events (up to the lateness past the watermark).
            let need = 2 * (ms(w.velocity_window) / bucket) + lateness.div_ceil(bucket) + 1;
            if need > FINE_SLOTS as u128 {
                errors.push(format!(
                    "engine.windows.velocity_window: two velocity windows plus allowed_lateness need {need} buckets, more than the {FINE_SLOTS} a video keeps; use a longer bucket or shorter windows"
                ));
            }
        }
        if slot > 0 && ms(w.trending_window).is_multiple_of(slot) {
            let need = ms(w.trending_window) / slot + lateness.div_ceil(slot) + 1;
            if need > COARSE_SLOTS as u128 {
                errors.push(format!(
                    "engine.windows.trending_window: the window plus allowed_lateness need {need} trending slots, more than the {COARSE_SLOTS} a video keeps; use a longer trending_slot"
                ));
            }
        }
        if w.dedup_horizon < w.allowed_lateness {
            errors.push(
                "engine.windows.dedup_horizon: must be at least engine.windows.allowed_lateness"
                    .to_string(),
            );
        }
        if w.idle_timeout.is_zero() {
            errors.push("engine.windows.idle_timeout: must be positive".to_string());
        }

        let v = &self.velocity;
        if v.baseline_half_life < w.velocity_window {
            errors.push(
                "engine.velocity.baseline_half_life: must be at least the velocity window"
                    .to_string(),
            );
        }
        let budget = v.false_alarms_per_video_day;
        if !(budget.is_finite() && budget > 0.0 && budget <= 1.0) {
            errors.push(
                "engine.velocity.false_alarms_per_video_day: must be above 0 and at most 1"
                    .to_string(),
            );
        }
        if v.scan_windows.len() > MAX_SCAN_WINDOWS {
            errors.push(format!(
                "engine.velocity.scan_windows: at most {MAX_SCAN_WINDOWS} windows, has {}",
                v.scan_windows.len()
            ));
        }
        let velocity = ms(w.velocity_window);
        let fits = |d: &Duration| {
            let d = ms(*d);
            let short = d > 0 && d.is_multiple_of(bucket) && d <= velocity;
            let long = d > 0
                && velocity > 0
                && d.is_multiple_of(velocity)
                && d / velocity <= MAX_LONG_WINDOW as u128;
            short || long
        };
        if bucket > 0 && !v.scan_windows.iter().all(fits) {
            errors.push(format!(
                "engine.velocity.scan_windows: each must be a positive multiple of engine.windows.bucket ({bucket}ms) up to engine.windows.velocity_window, or a multiple of the velocity window ({velocity}ms) up to {MAX_LONG_WINDOW} of them"
            ));
        }
        if v.scan_windows.windows(2).any(|p| p[0] >= p[1]) {
            errors.push("engine.velocity.scan_windows: must be strictly ascending".to_string());
        }
        if !(v.prior_likes_per_min.is_finite() && v.prior_likes_per_min > 0.0) {
            errors.push("engine.velocity.prior_likes_per_min: must be positive".to_string());
        }
        if !(v.corroborating_views_per_like.is_finite() && v.corroborating_views_per_like >= 0.0) {
            errors.push(
                "engine.velocity.corroborating_views_per_like: must be 0 (off) or positive"
                    .to_string(),
            );
        }
        if !(v.implausible_views_per_like.is_finite()
            && v.implausible_views_per_like >= v.corroborating_views_per_like)
        {
            errors.push(
                "engine.velocity.implausible_views_per_like: must be at least corroborating_views_per_like"
                    .to_string(),
            );
        }
        let factor = v.corroborated_budget_factor;
        if !(factor.is_finite() && factor >= 1.0) {
            errors
                .push("engine.velocity.corroborated_budget_factor: must be at least 1".to_string());
        }
        if !(v.corroborated_prior_likes_per_min.is_finite()
            && v.corroborated_prior_likes_per_min > 0.0)
        {
            errors.push(
                "engine.velocity.corroborated_prior_likes_per_min: must be positive".to_string(),
            );
        }
        if !(v.z_clear.is_finite() && v.z_clear > 0.0) {
            errors.push("engine.velocity.z_clear: must be positive".to_string());
        }
        if !(v.sigma_floor.is_finite() && v.sigma_floor > 0.0) {
            errors.push("engine.velocity.sigma_floor: must be positive".to_string());
        }
        check_tiers(&mut errors, "engine.velocity.tiers", &v.tiers);
        if v.tiers.first().is_some_and(|t| *t <= 1.0) {
            errors.push(
                "engine.velocity.tiers: the first tier must be above 1 (a rise over the baseline)"
                    .to_string(),
            );
        }
        if v.clear_after == 0 || v.clear_after > 255 {
            errors.push("engine.velocity.clear_after: must be 1 to 255".to_string());
        }

        let t = &self.trending;
        check_tiers(&mut errors, "engine.trending.tiers", &t.tiers);
        if !(t.min_ratio.is_finite() && t.min_ratio >= 1.0) {
            errors.push("engine.trending.min_ratio: must be at least 1".to_string());
        }
        if t.baseline_half_life < w.trending_window {
            errors.push(
                "engine.trending.baseline_half_life: must be at least the trending window"
                    .to_string(),
            );
        }
        if !(t.clear_fraction > 0.0 && t.clear_fraction < 1.0) {
            errors.push(
                "engine.trending.clear_fraction: must be between 0 and 1 (hysteresis)".to_string(),
            );
        }
        if t.clear_after == 0 || t.clear_after > 255 {
            errors.push("engine.trending.clear_after: must be 1 to 255".to_string());
        }
        if t.views_per_interaction > 1_000_000 {
            errors
                .push("engine.trending.views_per_interaction: must be at most 1000000".to_string());
        }
        let wt = &t.weights;
        if wt.view.max(wt.like).max(wt.share).max(wt.comment) > 1_000_000 {
            errors.push("engine.trending.weights: each weight must be at most 1000000".to_string());
        }
        if wt.view + wt.like + wt.share + wt.comment == 0 {
            errors
                .push("engine.trending.weights: at least one weight must be positive".to_string());
        }

        let c = &self.capacity;
        if c.max_videos < 16 {
            errors.push("engine.capacity.max_videos: must be at least 16".to_string());
        }
        if c.max_dedup_ids < 1_000 {
            errors.push("engine.capacity.max_dedup_ids: must be at least 1000".to_string());
        }
        if c.video_ttl < w.trending_window {
            errors.push(
                "engine.capacity.video_ttl: must be at least the trending window".to_string(),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let mut c = EngineConfig::default();
        c.windows.velocity_window = Duration::from_secs(65);
        c.velocity.z_clear = -1.0;
        c.velocity.tiers = vec![5.0, 3.0];
        c.capacity.max_videos = 1;
        let errors = c.validate().unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with("engine.windows.velocity_window"));
    }

    #[test]
    fn a_bot_bound_below_the_corroborating_rate_is_refused() {
        let mut c = EngineConfig::default();
        c.velocity.implausible_views_per_like = 3.0;
        let errors = c.validate().unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("engine.velocity.implausible_views_per_like")),
            "{errors:#?}"
        );
        c.velocity.implausible_views_per_like = f64::NAN;
        assert!(c.validate().is_err());
        c.velocity.implausible_views_per_like = 4.0;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn windows_that_do_not_fit_the_ring_are_refused() {
        let mut c = EngineConfig::default();
        c.windows.velocity_window = Duration::from_secs(120);
        let errors = c.validate().unwrap_err();
        assert!(errors.iter().any(|e| e.contains("buckets")), "{errors:#?}");
    }

    #[test]
    fn durations_are_human() {
        let c: EngineConfig =
            toml::from_str("[windows]\nbucket = \"5s\"\nvelocity_window = \"30s\"\n").unwrap();
        assert_eq!(c.windows.bucket, Duration::from_secs(5));
        assert!(toml::from_str::<EngineConfig>("[windows]\nbukket = \"5s\"\n").is_err());
    }
}
