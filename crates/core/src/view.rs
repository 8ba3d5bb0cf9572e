//! [`VideoView`]: a read-only picture of one tracked video as its partition sees it now —
//! the windows, the baselines brought up to the watermark, the velocity CUSUM and each
//! detector's episode. It is what the counters' query API answers with; building it changes
//! nothing in the state (the baselines are caught up on a copy).

use serde::Serialize;

use crate::video::{EpisodeState, Phase};

/// One tracked video, as of its partition's watermark.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VideoView {
    /// The video.
    pub video_id: String,
    /// Its creator.
    pub creator_id: String,
    /// Event time of the first event the partition counted for it (since it was last
    /// admitted: an expired or evicted video starts again).
    pub first_seen: i64,
    /// Events counted for it (all kinds, saturating) since then.
    pub events: u32,
    /// The partition's watermark: everything below is final, the view is as of it.
    pub watermark: i64,
    /// The viral-velocity detector's view.
    pub velocity: VelocityView,
    /// The trending detector's view.
    pub trending: TrendingView,
}

/// Net likes of one fine bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BucketLikes {
    /// Start of the bucket (event time, inclusive).
    pub start: i64,
    /// Likes net of unlikes counted in it.
    pub likes: i64,
}

/// The velocity detector's side of a video.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VelocityView {
    /// Length of a bucket, ms.
    pub bucket_ms: i64,
    /// The velocity window ending with the last closed bucket: start (inclusive)...
    pub window_start: i64,
    /// ... and end (exclusive); at most the watermark.
    pub window_end: i64,
    /// Net likes in that window.
    pub likes: i64,
    /// Net likes in buckets after it that the watermark has not closed yet (the detector
    /// already tests them at every like).
    pub open_likes: i64,
    /// Net likes per bucket, oldest first, for every bucket the video still keeps (the
    /// newest ones up to the one of its newest event).
    pub buckets: Vec<BucketLikes>,
    /// The baseline: EWMA of net likes per window, brought up to the last closed bucket.
    pub baseline: f64,
    /// Its EW standard deviation.
    pub baseline_stddev: f64,
    /// Net likes per window the tests expect (the baseline, never below the prior).
    pub expected: f64,
    /// The tiers, as multiples of `expected`.
    pub tiers: Vec<f64>,
    /// The CUSUM statistic through the last closed bucket (0: no evidence of a rise).
    pub cusum: f64,
    /// The CUSUM's threshold (without a corroborating audience, which lowers it).
    pub cusum_threshold: f64,
    /// Net likes per window the scan expects of a rise its audience corroborates (the baseline,
    /// never below the lower corroborated prior): the level a corroborated alert's sentence
    /// names.
    pub corroborated_expected: f64,
    /// The CUSUM's threshold for a rise its audience corroborates.
    pub corroborated_cusum_threshold: f64,
    /// Whether the video's audience corroborates a like rise now (over its newest two trending
    /// slots): its likes are then tested against the corroborated level.
    pub corroborated: bool,
    /// Start of the bucket where the CUSUM's current run began (its change-point estimate),
    /// while the statistic is above 0.
    pub cusum_since: Option<i64>,
    /// The velocity episode.
    pub episode: EpisodeView,
}

/// The trending detector's side of a video.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrendingView {
    /// Length of a trending slot, ms.
    pub slot_ms: i64,
    /// The trending window ending with the last closed slot: start (inclusive)...
    pub window_start: i64,
    /// ... and end (exclusive).
    pub window_end: i64,
    /// Weighted engagement score in that window (views capped per interaction).
    pub score: i64,
    /// The same over the window one slot earlier.
    pub previous_score: i64,
    /// The baseline: EWMA of the window score, brought up to the last closed slot.
    pub baseline: f64,
    /// The tiers, in score.
    pub tiers: Vec<f64>,
    /// The multiple of the baseline the score must also reach.
    pub min_ratio: f64,
    /// The trending episode.
    pub episode: EpisodeView,
}

/// Where a detector's episode stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodePhase {
    /// No episode; the detector may fire.
    Quiet,
    /// An episode is open.
    Active,
    /// An episode ended; no new one before `cooldown_until`.
    Cooldown,
}

/// One detector's episode for a video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EpisodeView {
    /// Quiet, active or cooling down.
    pub phase: EpisodePhase,
    /// The highest tier (0-based) reached by the open or last episode; absent when quiet.
    pub tier: Option<u32>,
    /// The episode's start (as its alerts' `episode_start`); absent when quiet.
    pub started_at: Option<i64>,
    /// The event time from which a new episode may start; present while cooling down.
    pub cooldown_until: Option<i64>,
}

impl EpisodeView {
    /// The view of `ep`, whose indices count units of `unit_ms` (buckets or slots).
    pub(crate) fn of(ep: &EpisodeState, unit_ms: i64) -> Self {
        let phase = match ep.phase {
            Phase::Quiet => EpisodePhase::Quiet,
            Phase::Active => EpisodePhase::Active,
            Phase::Cooldown => EpisodePhase::Cooldown,
        };
        let quiet = phase == EpisodePhase::Quiet;
        Self {
            phase,
            tier: (!quiet).then_some(u32::from(ep.tier)),
            // As `Decision::episode_start`: the end of the unit whose window fired.
            started_at: (!quiet).then_some((i64::from(ep.start) + 1) * unit_ms),
            cooldown_until: (phase == EpisodePhase::Cooldown)
                .then_some(i64::from(ep.cooldown_until) * unit_ms),
        }
    }

    /// Whether an episode is open.
    pub fn is_open(&self) -> bool {
        self.phase == EpisodePhase::Active
    }
}
