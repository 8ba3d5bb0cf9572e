//! Scoring a replay against ground truth.
//!
//! The scorer judges **alert episodes** `(video, start, detected_at)`, whoever made them:
//! the engine, or the Poisson yardstick of [`crate::poisson`].
//!
//! - The engine's alert episode is a distinct `(video_id, episode_start)` of non-ENDED
//!   VIRAL_VELOCITY alerts (escalations of one episode count once). Its detection time is
//!   the earliest `detected_at` among them.
//! - A truth episode is **detected** by an alert episode on its video whose detection time
//!   lies in `[onset_ms, end_ms + 5 min]`; its **delay** is that time minus `start_ms` (the
//!   instant its extra like rate reached 10% of peak), in seconds, signed (negative: caught
//!   before the 10% mark). The earliest matching alert episode counts.
//! - **Precision** = alert episodes matching some truth episode / all alert episodes.
//!   **Recall** = detected truth episodes / truth episodes.
//! - Percentiles are nearest-rank.
//! - Decoys: alert episodes on a decoy's video, by class (VIRAL_VELOCITY must be zero),
//!   and TRENDING alerts on them, reported separately (a popular video may trend).
//! - **TRENDING precision** = TRENDING alerts on episode videos / all TRENDING alerts,
//!   counted by alert (not by video), of the counters' own alerts only (`rank` 0; the
//!   ranker's board alerts carry a rank); TRENDING_ENDED is not a TRENDING alert. 1.0 when
//!   there is none. Its companion figure: TRENDING alerts on view-bot decoys (views only,
//!   not one like), which must be zero.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use trendwatch_core::{Alert, AlertType};
use trendwatch_loadgen::truth::{DecoyClass, EpisodeShape, GroundTruth};

/// How long after an episode's end an alert still counts as detecting it.
pub const MATCH_GRACE_MS: i64 = 5 * 60_000;

/// Detection figures of a group of episodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Detection {
    /// Truth episodes.
    pub episodes: u64,
    /// Of which detected.
    pub detected: u64,
    /// Median delay, seconds.
    pub median_delay_s: Option<f64>,
    /// 90th-percentile delay, seconds.
    pub p90_delay_s: Option<f64>,
    /// Largest delay, seconds.
    pub max_delay_s: Option<f64>,
    /// Every delay, seconds, ascending (so reports can pool runs exactly).
    pub delays_s: Vec<f64>,
}

/// Alerts on one decoy class.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DecoyAlerts {
    /// Decoys of this class.
    pub decoys: u64,
    /// VIRAL_VELOCITY alert episodes on them (must be 0).
    pub viral_velocity: u64,
    /// TRENDING alerts on them.
    pub trending: u64,
}

/// One alert episode of a detector: a video, when the episode began by the detector's
/// account, and the event time at which it was decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertEpisode {
    /// The video.
    pub video_id: String,
    /// Start of the episode as the detector sees it (identifies it with its video).
    pub start_ms: i64,
    /// Event time of the decision.
    pub detected_at: i64,
}

/// The engine's alert episodes: distinct `(video_id, episode_start)` of non-ENDED
/// VIRAL_VELOCITY alerts, each at its earliest `detected_at`.
pub fn viral_episodes(alerts: &[Alert]) -> Vec<AlertEpisode> {
    let mut episodes: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    for a in alerts
        .iter()
        .filter(|a| a.alert_type == AlertType::ViralVelocity)
    {
        let e = episodes
            .entry((&a.video_id, a.episode_start))
            .or_insert(a.detected_at);
        *e = (*e).min(a.detected_at);
    }
    episodes
        .into_iter()
        .map(|((video, start), at)| AlertEpisode {
            video_id: video.to_string(),
            start_ms: start,
            detected_at: at,
        })
        .collect()
}

/// A backtest's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Score {
    /// Matched alert episodes / alert episodes.
    pub precision: f64,
    /// Detected episodes / episodes.
    pub recall: f64,
    /// Distinct VIRAL_VELOCITY alert episodes.
    pub alert_episodes: u64,
    /// Of which matched a truth episode.
    pub matched_alert_episodes: u64,
    /// All episodes.
    pub overall: Detection,
    /// By shape (`step`, `ramp`, `slow_burn`, `double_peak`, `spike`).
    pub by_shape: BTreeMap<String, Detection>,
    /// By decoy class (`popular_steady`, `view_bot_burst`, `cold_blip`).
    pub decoys: BTreeMap<String, DecoyAlerts>,
    /// Distinct videos with a TRENDING alert.
    pub trending_videos: u64,
    /// Of which episode videos.
    pub trending_episode_videos: u64,
    /// The counters' TRENDING alerts (`rank` 0).
    pub trending_alerts: u64,
    /// Of which on episode videos.
    pub trending_alerts_on_episode_videos: u64,
    /// `trending_alerts_on_episode_videos / trending_alerts` (1.0 without any).
    pub trending_precision: f64,
    /// The counters' TRENDING alerts on view-bot decoys (must be 0).
    pub trending_on_view_bots: u64,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn detection(mut delays: Vec<f64>, episodes: u64) -> Detection {
    delays.sort_by(f64::total_cmp);
    Detection {
        episodes,
        detected: delays.len() as u64,
        median_delay_s: percentile(&delays, 0.5),
        p90_delay_s: percentile(&delays, 0.9),
        max_delay_s: delays.last().copied(),
        delays_s: delays,
    }
}

fn shape_name(s: EpisodeShape) -> &'static str {
    s.as_str()
}

fn class_name(c: DecoyClass) -> &'static str {
    match c {
        DecoyClass::PopularSteady => "popular_steady",
        DecoyClass::ViewBotBurst => "view_bot_burst",
        DecoyClass::ColdBlip => "cold_blip",
    }
}

/// Scores the engine's `alerts` against `truth`.
pub fn score(alerts: &[Alert], truth: &GroundTruth) -> Score {
    score_episodes(&viral_episodes(alerts), alerts, truth)
}

/// How a detector's alert episodes meet the truth, by the rules of this module: what the
/// scorer counts and what the backtest report draws, from one definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matching {
    /// Per truth episode, in the truth's order: the index (into the alert episodes given)
    /// of the earliest alert episode that detects it, if any.
    pub detections: Vec<Option<usize>>,
    /// Per alert episode, in the order given: whether it detects some truth episode.
    pub matched: Vec<bool>,
}

/// Matches alert `episodes` (distinct by `(video_id, start_ms)`) against `truth`: an alert
/// episode detects a truth episode on its video when its detection time lies in
/// `[onset_ms, end_ms + MATCH_GRACE_MS]`.
pub fn match_episodes(episodes: &[AlertEpisode], truth: &GroundTruth) -> Matching {
    let mut by_video: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in episodes.iter().enumerate() {
        by_video.entry(e.video_id.as_str()).or_default().push(i);
    }
    for indices in by_video.values_mut() {
        indices.sort_by_key(|&i| episodes[i].detected_at);
    }
    let mut matched = vec![false; episodes.len()];
    let detections = truth
        .episodes
        .iter()
        .map(|ep| {
            let in_range = |i: &usize| {
                let t = episodes[*i].detected_at;
                t >= ep.onset_ms && t <= ep.end_ms + MATCH_GRACE_MS
            };
            let indices = by_video.get(ep.video_id.as_str())?;
            for &i in indices.iter().filter(|i| in_range(i)) {
                matched[i] = true;
            }
            // Sorted by detection time: the first in range is the earliest.
            indices.iter().copied().find(|i| in_range(i))
        })
        .collect();
    Matching {
        detections,
        matched,
    }
}

/// Scores a detector's alert `episodes` against `truth`; the TRENDING figures come from
/// `alerts` (pass none for a detector without a trending verdict). Episodes given twice
/// (same video and start) count once, at the earlier detection.
pub fn score_episodes(episodes: &[AlertEpisode], alerts: &[Alert], truth: &GroundTruth) -> Score {
    let mut distinct: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    for e in episodes {
        let at = distinct
            .entry((e.video_id.as_str(), e.start_ms))
            .or_insert(e.detected_at);
        *at = (*at).min(e.detected_at);
    }
    let episodes: Vec<AlertEpisode> = distinct
        .into_iter()
        .map(|((video, start), at)| AlertEpisode {
            video_id: video.to_string(),
            start_ms: start,
            detected_at: at,
        })
        .collect();
    let matching = match_episodes(&episodes, truth);
    let mut alert_episodes_on: HashMap<&str, u64> = HashMap::new();
    for e in &episodes {
        *alert_episodes_on.entry(e.video_id.as_str()).or_default() += 1;
    }

    let mut all_delays = Vec::new();
    let mut shape_delays: BTreeMap<&'static str, (Vec<f64>, u64)> = BTreeMap::new();
    for (ep, hit) in truth.episodes.iter().zip(&matching.detections) {
        let entry = shape_delays.entry(shape_name(ep.shape)).or_default();
        entry.1 += 1;
        if let Some(&i) = hit.as_ref() {
            let delay = (episodes[i].detected_at - ep.start_ms) as f64 / 1_000.0;
            all_delays.push(delay);
            entry.0.push(delay);
        }
    }

    let trending_alerts: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.alert_type == AlertType::Trending && a.rank == 0)
        .collect();
    let mut decoys: BTreeMap<String, DecoyAlerts> = BTreeMap::new();
    let mut trending_on_view_bots = 0;
    for d in &truth.decoys {
        let entry = decoys.entry(class_name(d.class).to_string()).or_default();
        entry.decoys += 1;
        entry.viral_velocity += alert_episodes_on
            .get(d.video_id.as_str())
            .copied()
            .unwrap_or(0);
        let on_it = trending_alerts
            .iter()
            .filter(|a| a.video_id == d.video_id)
            .count() as u64;
        entry.trending += on_it;
        if d.class == DecoyClass::ViewBotBurst {
            trending_on_view_bots += on_it;
        }
    }

    let trending: BTreeSet<&str> = trending_alerts
        .iter()
        .map(|a| a.video_id.as_str())
        .collect();
    let episode_videos: BTreeSet<&str> =
        truth.episodes.iter().map(|e| e.video_id.as_str()).collect();
    let trending_alerts_on_episode_videos = trending_alerts
        .iter()
        .filter(|a| episode_videos.contains(a.video_id.as_str()))
        .count() as u64;

    let n_alert = episodes.len() as u64;
    let n_matched = matching.matched.iter().filter(|&&m| m).count() as u64;
    let overall = detection(all_delays, truth.episodes.len() as u64);
    Score {
        precision: if n_alert == 0 {
            1.0
        } else {
            n_matched as f64 / n_alert as f64
        },
        recall: if overall.episodes == 0 {
            1.0
        } else {
            overall.detected as f64 / overall.episodes as f64
        },
        alert_episodes: n_alert,
        matched_alert_episodes: n_matched,
        by_shape: shape_delays
            .into_iter()
            .map(|(k, (d, n))| (k.to_string(), detection(d, n)))
            .collect(),
        overall,
        decoys,
        trending_videos: trending.len() as u64,
        trending_episode_videos: trending.intersection(&episode_videos).count() as u64,
        trending_alerts: trending_alerts.len() as u64,
        trending_alerts_on_episode_videos,
        trending_precision: if trending_alerts.is_empty() {
            1.0
        } else {
            trending_alerts_on_episode_videos as f64 / trending_alerts.len() as f64
        },
        trending_on_view_bots,
    }
}

#[cfg(test)]
mod tests {
    use trendwatch_loadgen::truth::{Decoy, Episode, TruthCounts};

    use super::*;

    fn alert(video: &str, ty: AlertType, start: i64, at: i64) -> Alert {
        Alert {
            alert_id: format!("{video}-{start}-{at}"),
            video_id: video.into(),
            creator_id: "c".into(),
            alert_type: ty,
            tier: 0,
            window_start: 0,
            window_end: 0,
            count: 0,
            previous_count: 0,
            rate_per_min: 0.0,
            baseline: 0.0,
            baseline_stddev: 0.0,
            z_score: 0.0,
            ratio: 0.0,
            threshold: 0.0,
            first_seen: 0,
            episode_start: start,
            detected_at: at,
            explanation: String::new(),
            rank: 0,
            previous_rank: 0,
        }
    }

    fn episode(video: &str, shape: EpisodeShape, start: i64) -> Episode {
        Episode {
            video_id: video.into(),
            creator_id: "c".into(),
            shape,
            onset_ms: start - 5_000,
            start_ms: start,
            peak_ms: start + 10_000,
            second_burst_ms: None,
            end_ms: start + 600_000,
            peak_extra_likes_per_min: 100.0,
            base_likes_per_min: 1.0,
        }
    }

    #[test]
    fn precision_recall_delays_and_decoys() {
        let truth = GroundTruth {
            seed: 1,
            start_ms: 0,
            end_ms: 10_000_000,
            videos: 10,
            allowed_lateness_ms: 10_000,
            scale: 1.0,
            episodes: vec![
                episode("a", EpisodeShape::Step, 1_000_000),
                episode("b", EpisodeShape::SlowBurn, 2_000_000),
                episode("c", EpisodeShape::DoublePeak, 3_000_000),
            ],
            decoys: vec![
                Decoy {
                    video_id: "p".into(),
                    class: DecoyClass::PopularSteady,
                    start_ms: 0,
                    end_ms: 1,
                },
                Decoy {
                    video_id: "q".into(),
                    class: DecoyClass::ColdBlip,
                    start_ms: 0,
                    end_ms: 1,
                },
                Decoy {
                    video_id: "bot".into(),
                    class: DecoyClass::ViewBotBurst,
                    start_ms: 0,
                    end_ms: 1,
                },
            ],
            counts: TruthCounts::default(),
        };
        let alerts = vec![
            // a: detected 20 s after start, plus an escalation of the same episode.
            alert("a", AlertType::ViralVelocity, 1_010_000, 1_020_000),
            alert("a", AlertType::ViralVelocity, 1_010_000, 1_050_000),
            alert("a", AlertType::ViralVelocityEnded, 1_010_000, 1_700_000),
            // b: detected 40 s after start.
            alert("b", AlertType::ViralVelocity, 2_030_000, 2_040_000),
            // c: only long after its end: a miss, and a false alert episode.
            alert("c", AlertType::ViralVelocity, 5_000_000, 5_000_000),
            // decoys
            alert("q", AlertType::ViralVelocity, 7, 7),
            alert("p", AlertType::Trending, 8, 8),
            // TRENDING by alert: two on episode video a, one on a view bot; the ranker's
            // board alert (rank 3) and an ENDED are not counted.
            alert("a", AlertType::Trending, 1_000_000, 1_100_000),
            alert("a", AlertType::Trending, 1_000_000, 1_200_000),
            alert("bot", AlertType::Trending, 9, 9),
            Alert {
                rank: 3,
                ..alert("bot", AlertType::Trending, 10, 10)
            },
            alert("bot", AlertType::TrendingEnded, 11, 11),
        ];
        let s = score(&alerts, &truth);
        assert_eq!(s.alert_episodes, 4);
        assert_eq!(s.matched_alert_episodes, 2);
        assert_eq!(s.precision, 0.5);
        assert!((s.recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.overall.median_delay_s, Some(20.0));
        assert_eq!(s.overall.p90_delay_s, Some(40.0));
        assert_eq!(s.by_shape["double_peak"].detected, 0);
        assert_eq!(s.by_shape["slow_burn"].median_delay_s, Some(40.0));
        assert_eq!(s.decoys["cold_blip"].viral_velocity, 1);
        assert_eq!(s.decoys["popular_steady"].viral_velocity, 0);
        assert_eq!(s.decoys["popular_steady"].trending, 1);
        assert_eq!((s.trending_videos, s.trending_episode_videos), (3, 1));
        assert_eq!(s.trending_alerts, 4);
        assert_eq!(s.trending_alerts_on_episode_videos, 2);
        assert_eq!(s.trending_precision, 0.5);
        assert_eq!(s.trending_on_view_bots, 1);
        assert_eq!(s.decoys["view_bot_burst"].trending, 1);

        // The same viral episodes given as a detector's episodes score the same, and
        // without alerts there is no TRENDING verdict to judge.
        let eps = viral_episodes(&alerts);
        assert_eq!(eps.len(), 4);
        let b = score_episodes(&eps, &[], &truth);
        assert_eq!((b.precision, b.recall), (s.precision, s.recall));
        assert_eq!(b.overall, s.overall);
        assert_eq!((b.trending_alerts, b.trending_precision), (0, 1.0));

        // The matching the report draws is the one scored: a and b detected by their
        // earliest alert episode, c missed; the late alert on c and the blip match nothing.
        let m = match_episodes(&eps, &truth);
        let at = |d: Option<usize>| d.map(|i| eps[i].detected_at);
        assert_eq!(
            m.detections.iter().map(|&d| at(d)).collect::<Vec<_>>(),
            vec![Some(1_020_000), Some(2_040_000), None]
        );
        assert_eq!(
            m.matched.iter().filter(|&&x| x).count() as u64,
            s.matched_alert_episodes
        );
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(5.0));
        assert_eq!(percentile(&v, 0.9), Some(9.0));
        assert_eq!(percentile(&[3.0], 0.9), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
