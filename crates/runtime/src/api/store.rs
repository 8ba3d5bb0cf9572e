//! The bounded memories the query API answers from: the ranker's recent boards and recent
//! alerts, the ring of its recent live events that a reconnecting stream resumes from
//! ([`LiveRing`]), and the counter's recent alerts. Each holds at most a fixed number of entries
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

/// Live events the ranker keeps for streams that reconnect (`Last-Event-ID`): about 17
/// minutes of one board a minute and an alert a second; older ones are a `resync`.
pub const LIVE_EVENTS_KEPT: usize = 1024;
/// Bytes of JSON the live ring holds at most (boards of a large `ranking.top_k` are tens of
/// kilobytes each); the oldest events go first when a new one would pass it.
pub const LIVE_BYTES_KEPT: usize = 8 * 1024 * 1024;

/// What a live event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveKind {
    /// A board was published.
    Board,
    /// An alert was seen on the alert topic.
    Alert,
}

impl LiveKind {
    /// Its server-sent-event name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Board => "board",
            Self::Alert => "alert",
        }
    }
}

/// One live event for stream clients: its place in this run's sequence, what it is and its
/// JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveEvent {
    /// 1 for the run's first event, one more for each next one.
    pub seq: u64,
    /// Board or alert.
    pub kind: LiveKind,
    /// The contract's JSON of the record.
    pub json: Arc<str>,
}

/// The id of event `seq` of the run that started at `run` (ms since the epoch), as a
/// stream sends it: `<run>-<seq>`. A restarted ranker starts another run, so an id of the
/// old one is never taken for a place in the new one.
pub fn event_id(run: i64, seq: u64) -> String {
    format!("{run}-{seq}")
}

/// `<run>-<seq>` back into its parts; `None` for anything else.
fn parse_event_id(id: &str) -> Option<(i64, u64)> {
    let (run, seq) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(run) || !digits(seq) {
        return None;
    }
    Some((run.parse().ok()?, seq.parse().ok()?))
}

/// Where a reconnecting stream picks up, given the last event id its client saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Everything after that event is held: these, oldest first (none if it was the
    /// newest).
    After(Vec<LiveEvent>),
    /// What the client missed is not held: it must reload the board and alerts.
    Resync(ResyncReason),
}

/// Why a stream could not resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResyncReason {
    /// The id is of another run of the ranker (it restarted, or another one answers), or
    /// not an id this service sends.
    OtherRun,
    /// The events after it have left the ring.
    TooOld,
    /// The client fell further behind the live events than its buffer holds.
    Lagged,
}

impl ResyncReason {
    /// Its stable code (the `reason` of a `resync` event).
    pub fn code(self) -> &'static str {
        match self {
            Self::OtherRun => "other_run",
            Self::TooOld => "too_old",
            Self::Lagged => "lagged",
        }
    }

    /// What happened, for a person.
    pub fn message(self) -> &'static str {
        match self {
            Self::OtherRun => {
                "the Last-Event-ID is not of this ranker's run (it restarted): reload the board and alerts"
            }
            Self::TooOld => {
                "the events after the Last-Event-ID are no longer held: reload the board and alerts"
            }
            Self::Lagged => {
                "this stream fell behind and skipped events: reload the board and alerts"
            }
        }
    }
}

/// The ranker's most recent live events of this run, at most [`LIVE_EVENTS_KEPT`] and
/// [`LIVE_BYTES_KEPT`] bytes of JSON (the oldest go first), numbered from 1 in the order
/// published: what a stream that reconnects with `Last-Event-ID` is sent again.
#[derive(Debug)]
pub struct LiveRing {
    run: i64,
    newest: u64,
    events: VecDeque<LiveEvent>,
    bytes: usize,
}

impl LiveRing {
    /// An empty ring of the run that started at `run` (ms since the epoch).
    pub fn new(run: i64) -> Self {
        Self {
            run,
            newest: 0,
            events: VecDeque::new(),
            bytes: 0,
        }
    }

    /// The run's start, the first half of its event ids.
    pub fn run(&self) -> i64 {
        self.run
    }

    /// The number of the newest event published (0 before the first).
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// Numbers and keeps the next event, dropping the oldest ones beyond the bounds;
    /// returns it.
    pub fn push(&mut self, kind: LiveKind, json: Arc<str>) -> LiveEvent {
        self.newest += 1;
        let event = LiveEvent {
            seq: self.newest,
            kind,
            json,
        };
        self.bytes += event.json.len();
        self.events.push_back(event.clone());
        while self.events.len() > LIVE_EVENTS_KEPT || self.bytes > LIVE_BYTES_KEPT {
            let Some(old) = self.events.pop_front() else {
                break;
            };
            self.bytes -= old.json.len();
        }
        event
    }

    /// Where a stream whose client last saw `last_event_id` picks up.
    pub fn resume(&self, last_event_id: &str) -> Resume {
        let Some((run, seq)) = parse_event_id(last_event_id) else {
            return Resume::Resync(ResyncReason::OtherRun);
        };
        if run != self.run || seq > self.newest {
            return Resume::Resync(ResyncReason::OtherRun);
        }
        // The events are held in order without gaps, from `oldest` to `newest`.
        let oldest = self.events.front().map_or(self.newest + 1, |e| e.seq);
        if seq + 1 < oldest {
            return Resume::Resync(ResyncReason::TooOld);
        }
        let skip = (seq + 1 - oldest) as usize;
        Resume::After(self.events.iter().skip(skip).cloned().collect())
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes of JSON held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

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

/// Records for the API's tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use trendwatch_core::{Alert, AlertType, Board};
    use trendwatch_proto::{AlertRecord, LeaderboardRecord};

    pub(crate) fn board(end: i64) -> LeaderboardRecord {
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

    pub(crate) fn alert(id: &str, video: &str, t: AlertType, at: i64) -> AlertRecord {
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
}

#[cfg(test)]
mod tests {
    use super::fixtures::{alert, board};
    use super::*;

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

    fn json(n: usize) -> Arc<str> {
        Arc::from("x".repeat(n))
    }

    fn seqs(r: &Resume) -> Vec<u64> {
        match r {
            Resume::After(events) => events.iter().map(|e| e.seq).collect(),
            Resume::Resync(why) => panic!("resync ({why:?}), not a resume"),
        }
    }

    #[test]
    fn the_live_ring_resumes_after_the_last_event_id_of_its_run() {
        let mut r = LiveRing::new(1_767_571_200_000);
        assert_eq!(r.newest(), 0);
        // Before any event: the id of "nothing yet" resumes with nothing.
        assert_eq!(seqs(&r.resume("1767571200000-0")), Vec::<u64>::new());
        for i in 1..=5 {
            let kind = if i % 2 == 0 {
                LiveKind::Board
            } else {
                LiveKind::Alert
            };
            let e = r.push(kind, json(10));
            assert_eq!(e.seq, i);
        }
        assert_eq!(event_id(r.run(), 3), "1767571200000-3");
        let after = r.resume("1767571200000-3");
        assert_eq!(seqs(&after), [4, 5]);
        let Resume::After(events) = after else {
            unreachable!()
        };
        assert_eq!(events[0].kind, LiveKind::Board);
        assert_eq!(seqs(&r.resume("1767571200000-0")), [1, 2, 3, 4, 5]);
        assert_eq!(seqs(&r.resume("1767571200000-5")), Vec::<u64>::new());
    }

    #[test]
    fn the_live_ring_asks_for_a_resync_when_it_cannot_resume() {
        let mut r = LiveRing::new(1000);
        for _ in 0..(LIVE_EVENTS_KEPT + 10) {
            r.push(LiveKind::Alert, json(1));
        }
        assert_eq!(r.len(), LIVE_EVENTS_KEPT);
        // The oldest held is 11: a client that saw 10 misses nothing, one that saw 9 does.
        assert_eq!(seqs(&r.resume("1000-10")).len(), LIVE_EVENTS_KEPT);
        let too_old = Resume::Resync(ResyncReason::TooOld);
        assert_eq!(r.resume("1000-9"), too_old);
        assert_eq!(r.resume("1000-0"), too_old);
        // Another run's ids, ids from the future, and what this service never sends.
        let other = Resume::Resync(ResyncReason::OtherRun);
        for id in [
            "999-20",
            "1001-20",
            "1000-5000",
            "",
            "1000",
            "1000-",
            "-5",
            "1000-+5",
            "1000-5-6",
            "abc-1",
            "1000-99999999999999999999999",
            " 1000-5",
        ] {
            assert_eq!(r.resume(id), other, "{id:?}");
        }
    }

    #[test]
    fn the_live_ring_holds_at_most_its_bytes() {
        let mut r = LiveRing::new(7);
        let big = LIVE_BYTES_KEPT / 4 + 1;
        for _ in 0..4 {
            r.push(LiveKind::Board, json(big));
        }
        // Four would pass the bound: three are held, the first is gone.
        assert_eq!(r.len(), 3);
        assert_eq!(r.bytes(), 3 * big);
        assert_eq!(r.resume("7-0"), Resume::Resync(ResyncReason::TooOld));
        assert_eq!(seqs(&r.resume("7-1")), [2, 3, 4]);
        // One event larger than the bound is not held at all; what came before it is gone
        // too, so nobody resumes across it.
        r.push(LiveKind::Board, json(LIVE_BYTES_KEPT + 1));
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
        assert_eq!(r.resume("7-4"), Resume::Resync(ResyncReason::TooOld));
        assert_eq!(seqs(&r.resume("7-5")), Vec::<u64>::new());
        r.push(LiveKind::Alert, json(3));
        assert_eq!(seqs(&r.resume("7-5")), [6]);
    }

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
