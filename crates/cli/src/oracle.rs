//! The physical limit of detection, as a yardstick: a detector told in advance which
//! videos go viral and when (the ground truth), that decides at the `k`-th like of the
//! video at or after the episode's start (10% of its peak), in event time, with perfect
//! ordering and no duplicates. No real detector can be faster on the same events without
//! guessing: before `k` likes, nothing distinguishes the episode from its video's normal.
//! With `k` = 4 this is the "fires on its first 3–4 likes" limit the brief quotes.

use std::collections::{HashMap, HashSet};

use trendwatch_core::{EventKind, EventRef};
use trendwatch_loadgen::GroundTruth;

use crate::backtest::AlertEpisode;

/// Likes the oracle waits for after an episode's start.
pub const ORACLE_LIKES: usize = 4;

/// Likes a detector of like counts alone needs before it can tell an episode from the
/// largest like blip the workload families hold (8 likes within a minute on a cold video):
/// the oracle at this like is the limit of any detector that never fires on a blip and
/// looks at likes only.
pub const BLIP_SAFE_LIKES: usize = 9;

/// The oracle over one replay: fed every accepted event, it keeps the like times of the
/// truth's episode videos only.
pub struct OracleBaseline {
    likes_needed: usize,
    seen: HashSet<String>,
    likes: HashMap<String, Vec<i64>>,
}

impl OracleBaseline {
    /// An oracle for the episodes of `truth`, deciding at the `likes_needed`-th like.
    pub fn new(truth: &GroundTruth, likes_needed: usize) -> Self {
        Self {
            likes_needed: likes_needed.max(1),
            seen: HashSet::new(),
            likes: truth
                .episodes
                .iter()
                .map(|e| (e.video_id.clone(), Vec::new()))
                .collect(),
        }
    }

    /// Takes one accepted event (any order; re-deliveries of an `event_id` are ignored).
    pub fn observe(&mut self, e: &EventRef<'_>) {
        if e.kind != EventKind::Like {
            return;
        }
        let Some(times) = self.likes.get_mut(e.video_id) else {
            return;
        };
        if self.seen.insert(e.event_id.to_owned()) {
            times.push(e.event_time);
        }
    }

    /// One alert episode per truth episode that got `likes_needed` likes from its start on.
    pub fn alert_episodes(mut self, truth: &GroundTruth) -> Vec<AlertEpisode> {
        let k = self.likes_needed;
        self.alert_episodes_at(truth, k)
    }

    /// The same decided at the `k`-th like instead (one oracle, several limits).
    pub fn alert_episodes_at(&mut self, truth: &GroundTruth, k: usize) -> Vec<AlertEpisode> {
        let k = k.max(1);
        for times in self.likes.values_mut() {
            times.sort_unstable();
        }
        truth
            .episodes
            .iter()
            .filter_map(|ep| {
                let times = self.likes.get(&ep.video_id)?;
                let from = times.partition_point(|&t| t < ep.start_ms);
                let at = *times.get(from + k - 1)?;
                Some(AlertEpisode {
                    video_id: ep.video_id.clone(),
                    start_ms: ep.start_ms,
                    detected_at: at,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trendwatch_loadgen::truth::{Episode, EpisodeShape};

    #[test]
    fn decides_at_the_fourth_like_from_the_start() {
        let truth = GroundTruth {
            seed: 1,
            start_ms: 0,
            end_ms: 200_000,
            videos: 1,
            allowed_lateness_ms: 30_000,
            scale: 1.0,
            episodes: vec![Episode {
                video_id: "v".into(),
                creator_id: "c".into(),
                shape: EpisodeShape::Step,
                onset_ms: 1_000,
                start_ms: 1_000,
                peak_ms: 1_000,
                second_burst_ms: None,
                end_ms: 100_000,
                peak_extra_likes_per_min: 10.0,
                base_likes_per_min: 1.0,
            }],
            decoys: Vec::new(),
            counts: Default::default(),
        };
        let mut o = OracleBaseline::new(&truth, 4);
        let times = [500, 2_000, 3_000, 3_000, 9_000, 7_000, 20_000];
        for (i, t) in times.iter().enumerate() {
            // The fourth event is a re-delivery of the third: not a like of its own.
            let id = if i == 3 {
                "e2".to_string()
            } else {
                format!("e{i}")
            };
            o.observe(&EventRef {
                event_id: &id,
                video_id: "v",
                creator_id: "c",
                kind: EventKind::Like,
                event_time: *t,
                user_id: None,
            });
        }
        // Likes from the start: 2 000, 3 000, 7 000, 9 000, 20 000 (500 is before it).
        assert_eq!(o.alert_episodes_at(&truth, 5)[0].detected_at, 20_000);
        assert!(o.alert_episodes_at(&truth, 6).is_empty());
        let eps = o.alert_episodes(&truth);
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].detected_at, 9_000);
    }
}
