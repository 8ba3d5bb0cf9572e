//! Ground truth of a generated workload: what was injected, so a replay can be scored.
//!
//! Written as one JSON object next to the events file. Times are event time in ms.

use serde::{Deserialize, Serialize};

/// The shape of an injected viral episode's extra like traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeShape {
    /// Jumps to its peak rate at onset, holds, then decays.
    Step,
    /// Grows exponentially from a trickle (1% of peak) to its peak, holds, then decays.
    Ramp,
    /// A short burst of one to two minutes.
    Spike,
    /// Grows linearly from nothing to its peak over 10–40 minutes, holds, then decays.
    SlowBurn,
    /// Two short bursts a few minutes apart, the second 0.5–1.5× the first.
    DoublePeak,
}

impl EpisodeShape {
    /// Every shape, in the order the generator draws them from.
    pub const ALL: [EpisodeShape; 5] = [
        EpisodeShape::Step,
        EpisodeShape::Ramp,
        EpisodeShape::SlowBurn,
        EpisodeShape::DoublePeak,
        EpisodeShape::Spike,
    ];

    /// The name used in the truth JSON and in reports (`slow_burn`).
    pub fn as_str(self) -> &'static str {
        match self {
            EpisodeShape::Step => "step",
            EpisodeShape::Ramp => "ramp",
            EpisodeShape::Spike => "spike",
            EpisodeShape::SlowBurn => "slow_burn",
            EpisodeShape::DoublePeak => "double_peak",
        }
    }
}

/// One injected viral episode: a video whose likes climb far above its own normal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The video the episode is on.
    pub video_id: String,
    /// Its creator.
    pub creator_id: String,
    /// Shape of the extra traffic.
    pub shape: EpisodeShape,
    /// When the extra traffic begins (it may still be a trickle).
    pub onset_ms: i64,
    /// When the extra like rate first reaches 10% of its peak: detection delay is measured
    /// from here, so delays are comparable across shapes.
    pub start_ms: i64,
    /// When the extra like rate reaches its (highest) peak.
    pub peak_ms: i64,
    /// Double peaks only: when the second burst begins (the first begins at `onset_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_burst_ms: Option<i64>,
    /// When the extra traffic is over.
    pub end_ms: i64,
    /// Peak extra likes per minute (of a double peak: the higher burst's).
    pub peak_extra_likes_per_min: f64,
    /// The video's normal likes per minute at onset (before the daily rhythm).
    pub base_likes_per_min: f64,
}

/// The kinds of traffic that look a little like virality but are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoyClass {
    /// A very popular video with steady (if large) traffic.
    PopularSteady,
    /// A burst of views from a bot: many views, no likes.
    ViewBotBurst,
    /// A single minute with a few likes on a video that is otherwise cold.
    ColdBlip,
}

/// One decoy: traffic that must not be called viral.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decoy {
    /// The video the decoy is on (never a video with an episode).
    pub video_id: String,
    /// What kind of decoy it is.
    pub class: DecoyClass,
    /// When its distinctive traffic starts.
    pub start_ms: i64,
    /// When it ends.
    pub end_ms: i64,
}

/// Tallies of what the generator wrote, for checking a replay's late/duplicate accounting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthCounts {
    /// Events written, duplicates included.
    pub events_written: u64,
    /// Distinct events (by event_id).
    pub unique_events: u64,
    /// Re-deliveries of an event already written (same event_id, same content).
    pub duplicates: u64,
    /// Events delivered out of order but within the allowed lateness.
    pub out_of_order: u64,
    /// Events delivered later than the allowed lateness (a replay must count them late).
    pub late: u64,
}

fn unit_scale() -> f64 {
    1.0
}

/// Everything a backtest needs to score a replay of the generated events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// The seed the workload was generated from.
    pub seed: u64,
    /// Event time of the first simulated instant.
    pub start_ms: i64,
    /// Event time of the end of the simulation.
    pub end_ms: i64,
    /// Number of distinct videos in the catalogue.
    pub videos: u64,
    /// The allowed lateness the generator assumed when making events late.
    pub allowed_lateness_ms: i64,
    /// The platform scale every rate was multiplied by (1.0 in files written before the
    /// option existed).
    #[serde(default = "unit_scale")]
    pub scale: f64,
    /// Injected viral episodes.
    pub episodes: Vec<Episode>,
    /// Decoys that must not be called viral.
    pub decoys: Vec<Decoy>,
    /// What was written.
    pub counts: TruthCounts,
}
