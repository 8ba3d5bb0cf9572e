//! The bounded memories the query API answers from: the ranker's recent boards and recent
//! alerts, and the counter's recent alerts. Each holds at most a fixed number of entries
//! (the oldest go first), so however long a service runs and however many clients ask,
//! they hold the same memory.
//!
//! The ranker's stores keep each entry's JSON already written (`Arc<str>`): the loop writes
//! it once per board or alert, and a request only clones pointers under the read lock, so a
//! slow client never holds the lock the loop writes under for longer than those clones.

use std::collections::VecDeque;
use std::sync::Arc;

use trendwatch_core::{Alert, AlertType};
use trendwatch_proto::{AlertRecord, LeaderboardRecord};

use super::request::AlertsQuery;

/// Boards the ranker keeps for `GET /v1/leaderboard?window=`.
pub const BOARDS_KEPT: usize = 60;
/// Alerts the ranker keeps for `GET /v1/alerts`.
pub const ALERTS_KEPT: usize = 1000;
/// Alerts a counter keeps to show a video's last ones.
pub const COUNTER_ALERTS_KEPT: usize = 1024;
/// Alerts of one video a counter's answer lists at most.
pub const VIDEO_ALERTS_SHOWN: usize = 16;

/// One board, with the JSON it is served as.
#[derive(Clone, Debug)]
pub struct StoredBoard {
    /// End of the board's window (its key).
    pub window_end: i64,
    /// The contract's JSON of the board record.
    pub json: Arc<str>,
}

/// The last [`BOARDS_KEPT`] boards, by window end; a board published again for a window
/// (after a rewind) replaces the one held.
#[derive(Debug, Default)]
pub struct RecentBoards {
    boards: VecDeque<StoredBoard>,
}

impl RecentBoards {
    /// Keeps `record`; returns its stored form (for live subscribers).
    pub fn push(&mut self, record: &LeaderboardRecord) -> StoredBoard {
        let stored = StoredBoard {
            window_end: record.board.window_end,
            json: Arc::from(record.to_json()),
        };
        if let Some(same) = self
            .boards
            .iter_mut()
            .find(|b| b.window_end == stored.window_end)
        {
            *same = stored.clone();
            return stored;
        }
        // Boards come in window order; one out of order is put in its place.
        let at = self
            .boards
            .iter()
            .rposition(|b| b.window_end < stored.window_end)
            .map_or(0, |i| i + 1);
        self.boards.insert(at, stored.clone());
        while self.boards.len() > BOARDS_KEPT {
            self.boards.pop_front();
        }
        stored
    }

    /// The newest board, or the one of the window ending at `window_end`.
    pub fn get(&self, window_end: Option<i64>) -> Option<&StoredBoard> {
        match window_end {
            None => self.boards.back(),
            Some(end) => self.boards.iter().find(|b| b.window_end == end),
        }
    }

    /// The window ends held, oldest first.
    pub fn windows(&self) -> Vec<i64> {
        self.boards.iter().map(|b| b.window_end).collect()
    }

    /// Boards held.
    pub fn len(&self) -> usize {
        self.boards.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.boards.is_empty()
    }
}

/// One alert, with what the filters look at and the JSON it is served as.
#[derive(Clone, Debug)]
pub struct StoredAlert {
    /// Its deterministic id.
    pub alert_id: Arc<str>,
    /// Its video.
    pub video_id: Arc<str>,
    /// Its type.
    pub alert_type: AlertType,
    /// Its event-time decision point.
    pub detected_at: i64,
    /// The contract's JSON of the alert record.
    pub json: Arc<str>,
}

/// The last [`ALERTS_KEPT`] distinct alerts, in the order first seen; an alert seen again
/// (the same `alert_id`, re-sent after a crash or rewind) is kept once.
#[derive(Debug, Default)]
pub struct RecentAlerts {
    alerts: VecDeque<StoredAlert>,
}

impl RecentAlerts {
    /// Keeps `record` unless it is held already; returns it when it is new.
    pub fn push(&mut self, record: &AlertRecord) -> Option<StoredAlert> {
        let a = &record.alert;
        // A linear look over at most ALERTS_KEPT ids: alerts are rare next to events, and
        // a set beside the ring would double what is held for no measurable gain.
        if self.alerts.iter().any(|s| *s.alert_id == *a.alert_id) {
            return None;
        }
        let stored = StoredAlert {
            alert_id: Arc::from(a.alert_id.as_str()),
            video_id: Arc::from(a.video_id.as_str()),
            alert_type: a.alert_type,
            detected_at: a.detected_at,
            json: Arc::from(record.to_json()),
        };
        self.alerts.push_back(stored.clone());
        while self.alerts.len() > ALERTS_KEPT {
            self.alerts.pop_front();
        }
        Some(stored)
    }

    /// The alerts `q` asks for, newest first, at most `q.limit`.
    pub fn select(&self, q: &AlertsQuery) -> Vec<Arc<str>> {
        self.alerts
            .iter()
            .rev()
            .filter(|a| q.since.is_none_or(|s| a.detected_at >= s))
            .filter(|a| q.alert_type.is_none_or(|t| a.alert_type == t))
            .filter(|a| q.video_id.as_deref().is_none_or(|v| *a.video_id == *v))
            .take(q.limit)
            .map(|a| Arc::clone(&a.json))
            .collect()
    }

    /// Alerts held.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }
}

/// The counter's last [`COUNTER_ALERTS_KEPT`] distinct alerts with when they were emitted,
/// owned by its loop (never shared): a video query lists its video's from here.
#[derive(Debug, Default)]
pub struct CounterAlerts {
    alerts: VecDeque<(Alert, i64)>,
}

impl CounterAlerts {
    /// Keeps `alert`, emitted at wall time `emitted_at`, unless the same id is held.
    pub fn push(&mut self, alert: &Alert, emitted_at: i64) {
        if self
            .alerts
            .iter()
            .any(|(a, _)| a.alert_id == alert.alert_id)
        {
            return;
        }
        self.alerts.push_back((alert.clone(), emitted_at));
        while self.alerts.len() > COUNTER_ALERTS_KEPT {
            self.alerts.pop_front();
        }
    }

    /// The newest alerts of `video_id` (at most [`VIDEO_ALERTS_SHOWN`]), newest first.
    pub fn of_video(&self, video_id: &str) -> Vec<AlertRecord> {
        self.alerts
            .iter()
            .rev()
            .filter(|(a, _)| a.video_id == video_id)
            .take(VIDEO_ALERTS_SHOWN)
            .map(|(a, at)| AlertRecord::from_alert(a, *at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trendwatch_core::Board;

    fn board(end: i64) -> LeaderboardRecord {
        LeaderboardRecord {
            scope: "global".into(),
            board: Board {
                window_start: end - 60_000,
                window_end: end,
                top_k: 10,
                partitions: 1,
                left_out: Vec::new(),
                entries: Vec::new(),
            },
            emitted_at: 0,
        }
    }

    fn alert(id: &str, video: &str, t: AlertType, at: i64) -> AlertRecord {
        AlertRecord {
            alert: Alert {
                alert_id: id.into(),
                video_id: video.into(),
                creator_id: "c".into(),
                alert_type: t,
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
                episode_start: 0,
                detected_at: at,
                explanation: String::new(),
                rank: 0,
                previous_rank: 0,
            },
            emitted_at: 0,
        }
    }

    #[test]
    fn boards_stay_bounded_ordered_and_unique_per_window() {
        let mut b = RecentBoards::default();
        assert!(b.get(None).is_none());
        for w in 1..=100 {
            b.push(&board(w * 1000));
        }
        assert_eq!(b.len(), BOARDS_KEPT);
        assert_eq!(b.get(None).unwrap().window_end, 100_000);
        assert_eq!(b.windows().first(), Some(&41_000));
        assert!(b.get(Some(40_000)).is_none(), "older than the ring");
        assert_eq!(b.get(Some(50_000)).unwrap().window_end, 50_000);
        // The same window again replaces; an older one goes in its place.
        b.push(&board(100_000));
        assert_eq!(b.len(), BOARDS_KEPT);
        b.push(&board(99_500));
        assert_eq!(b.get(None).unwrap().window_end, 100_000);
        let w = b.windows();
        assert!(w.windows(2).all(|p| p[0] < p[1]), "{w:?}");
        let json: serde_json::Value = serde_json::from_str(&b.get(None).unwrap().json).unwrap();
        assert_eq!(json["window_end"], 100_000);
        assert_eq!(json["scope"], "global");
    }

    #[test]
    fn alerts_stay_bounded_distinct_and_filtered() {
        let mut r = RecentAlerts::default();
        for i in 0..1500 {
            let t = if i % 3 == 0 {
                AlertType::ViralVelocity
            } else {
                AlertType::Trending
            };
            assert!(
                r.push(&alert(&format!("a{i}"), &format!("v{}", i % 7), t, i))
                    .is_some()
            );
        }
        assert!(
            r.push(&alert("a1499", "v1", AlertType::Trending, 1499))
                .is_none()
        );
        assert_eq!(r.len(), ALERTS_KEPT);
        let all = r.select(&AlertsQuery {
            limit: MAX,
            ..AlertsQuery::default()
        });
        assert_eq!(all.len(), ALERTS_KEPT);
        assert!(all[0].contains("\"a1499\""), "newest first");
        let q = AlertsQuery {
            since: Some(1400),
            alert_type: Some(AlertType::ViralVelocity),
            video_id: None,
            limit: MAX,
        };
        let some = r.select(&q);
        assert_eq!(some.len(), (1400..1500).filter(|i| i % 3 == 0).count());
        assert!(some.iter().all(|j| j.contains("VIRAL_VELOCITY")));
        let q = AlertsQuery {
            video_id: Some("v3".into()),
            limit: 5,
            ..AlertsQuery::default()
        };
        assert_eq!(r.select(&q).len(), 5);
    }

    const MAX: usize = super::super::request::MAX_ALERTS_LIMIT;

    #[test]
    fn a_counter_keeps_its_last_alerts_per_video() {
        let mut c = CounterAlerts::default();
        for i in 0..2000 {
            let a = alert(
                &format!("a{i}"),
                &format!("v{}", i % 2),
                AlertType::Trending,
                i,
            );
            c.push(&a.alert, i);
            c.push(&a.alert, i + 1);
        }
        let shown = c.of_video("v1");
        assert_eq!(shown.len(), VIDEO_ALERTS_SHOWN);
        assert_eq!(shown[0].alert.alert_id, "a1999");
        assert_eq!(shown[0].emitted_at, 1999, "the first emission is kept");
        assert!(c.of_video("v9").is_empty());
        assert_eq!(c.alerts.len(), COUNTER_ALERTS_KEPT);
    }
}
