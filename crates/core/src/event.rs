//! The engine's view of an engagement event and of the alerts it decides on.

use serde::{Deserialize, Serialize};

/// What a user did to a video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    /// The video was watched.
    View,
    /// The video was liked.
    Like,
    /// An earlier like was taken back; subtracts from the video's likes.
    Unlike,
    /// The video was shared.
    Share,
    /// Somebody commented on the video.
    Comment,
}

impl EventKind {
    /// Every kind, in the order of [`EventKind::index`].
    pub const ALL: [EventKind; 5] = [
        EventKind::View,
        EventKind::Like,
        EventKind::Unlike,
        EventKind::Share,
        EventKind::Comment,
    ];

    /// A dense index 0..5, stable across versions (used for per-kind arrays and metrics).
    pub fn index(self) -> usize {
        match self {
            EventKind::View => 0,
            EventKind::Like => 1,
            EventKind::Unlike => 2,
            EventKind::Share => 3,
            EventKind::Comment => 4,
        }
    }

    /// The contract's name of the kind (`"LIKE"`), as used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::View => "VIEW",
            EventKind::Like => "LIKE",
            EventKind::Unlike => "UNLIKE",
            EventKind::Share => "SHARE",
            EventKind::Comment => "COMMENT",
        }
    }
}

/// A validated event, borrowing its ids from the caller's buffer so the hot path does not
/// allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Unique per event; re-deliveries of the same id are dropped within the dedup horizon.
    pub event_id: &'a str,
    /// The video engaged with.
    pub video_id: &'a str,
    /// The video's creator.
    pub creator_id: &'a str,
    /// What happened.
    pub kind: EventKind,
    /// Event time, milliseconds since the Unix epoch.
    pub event_time: i64,
    /// Who engaged, if known. The engine keeps nothing of it but a bit of its hash in a
    /// view's slot, to tell many viewers from a few watching again (see
    /// `engine.velocity.corroborating_views_per_like`); without it (or with an empty one)
    /// each view counts as another viewer.
    pub user_id: Option<&'a str>,
}

/// The kind of decision an alert announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertType {
    /// Weighted engagement over the trending window is above threshold and above baseline.
    Trending,
    /// The trending episode is over.
    TrendingEnded,
    /// Likes over the short window jumped far above the video's own baseline.
    ViralVelocity,
    /// The viral-velocity episode is over.
    ViralVelocityEnded,
    /// A video on the global board climbed (the ranker's alert; `rank` and
    /// `previous_rank` say from where to where).
    RankChanged,
}

impl AlertType {
    /// The contract's name of the type (`"VIRAL_VELOCITY"`).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::Trending => "TRENDING",
            AlertType::TrendingEnded => "TRENDING_ENDED",
            AlertType::ViralVelocity => "VIRAL_VELOCITY",
            AlertType::ViralVelocityEnded => "VIRAL_VELOCITY_ENDED",
            AlertType::RankChanged => "RANK_CHANGED",
        }
    }

    /// True for the `*_ENDED` types.
    pub fn is_end(self) -> bool {
        matches!(
            self,
            AlertType::TrendingEnded | AlertType::ViralVelocityEnded
        )
    }
}

/// A decision of the engine, complete enough to explain itself without other data.
///
/// All times are event time in milliseconds since the epoch; the wall-clock `emitted_at`
/// of the contract is added by whoever hands the alert to an output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic id: a hash of video, type, tier and episode start.
    pub alert_id: String,
    /// The video the alert is about.
    pub video_id: String,
    /// The video's creator.
    pub creator_id: String,
    /// What the alert announces (`"type"` in the contract's JSON form).
    #[serde(rename = "type")]
    pub alert_type: AlertType,
    /// 0-based tier; a higher tier is an escalation of the same episode.
    pub tier: u32,
    /// Start of the window the decision was computed on (inclusive).
    pub window_start: i64,
    /// End of that window (exclusive).
    pub window_end: i64,
    /// Net likes (viral velocity) or weighted engagement score (trending) in the window.
    pub count: i64,
    /// The same measure over the preceding window of equal length.
    pub previous_count: i64,
    /// `count` per minute.
    pub rate_per_min: f64,
    /// The video's baseline for `count` (EWMA over past windows).
    pub baseline: f64,
    /// Standard deviation of the baseline (EW variance).
    pub baseline_stddev: f64,
    /// `(count - baseline) / max(stddev, sqrt(baseline), floor)`.
    pub z_score: f64,
    /// `count / max(baseline, 1)`.
    pub ratio: f64,
    /// The threshold of the tier that fired.
    pub threshold: f64,
    /// When the engine first saw this video.
    pub first_seen: i64,
    /// Start of the episode (the end of the window that first fired).
    pub episode_start: i64,
    /// The partition watermark when the decision was made.
    pub detected_at: i64,
    /// One human sentence saying why.
    pub explanation: String,
    /// Global rank (1-based) on the ranker's board; 0 for the partition detectors'
    /// alerts and for TRENDING_ENDED.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rank: u32,
    /// The ranker's RANK_CHANGED: the rank the video climbed from; its TRENDING_ENDED: the
    /// last rank the video held. 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub previous_rank: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
