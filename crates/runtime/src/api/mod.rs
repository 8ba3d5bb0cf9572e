//! The query API: HTTP/JSON under `/v1/` on each service's existing listener (the one of
//! `/metrics`), described by `docs/openapi.yaml`.
//!
//! - On a counter, `GET /v1/videos/{video_id}` answers with the video's [`VideoView`] as of
//!   its partition's watermark, its last alerts, and how stale the answer is; a counter that
//!   does not own the video's partition redirects (307) to the one that does, found through
//!   the membership topic ([`members`]). `GET /v1/members` shows that map.
//! - On the ranker, `GET /v1/leaderboard`, `GET /v1/alerts` and `GET /v1/stream` (server-
//!   sent events) answer from its bounded stores ([`store`]); `GET /v1/videos/{video_id}`
//!   is asked of the counters the membership topic lists ([`proxy`]), so its web console
//!   ([`crate::console`]) needs no other origin.
//!
//! ## Never blocking a consumer loop
//!
//! A counter's engine state belongs to its consumer loop. A video query is a message on a
//! bounded channel ([`QUERY_QUEUE`] deep; full: 503) that the loop drains without waiting
//! ([`QueryInbox::answer_pending`], at most [`QUERIES_PER_ITERATION`] per iteration); each
//! answer is one hash lookup, a copy of one video's fixed-size state and a scan of the last
//! alerts, sent back on a oneshot. The handler waits at most [`QUERY_DEADLINE`] for it
//! (then 503). The ranker's loop writes each board and alert once into stores behind a lock
//! that requests hold only to clone pointers, and into a broadcast channel whose send never
//! waits (a lagging SSE client skips events and is told to `resync`).
//!
//! ## Resuming a live stream
//!
//! Every event of `GET /v1/stream` has the id `<run>-<n>`: the wall time the ranker process
//! started (ms) and the event's number in that run. The last [`store::LIVE_EVENTS_KEPT`]
//! events (at most [`store::LIVE_BYTES_KEPT`] bytes) stay in a [`store::LiveRing`]; a
//! client reconnecting with `Last-Event-ID` (a browser's `EventSource` sends it by itself)
//! gets every event after it again, then live ones. An id of another run, or one whose
//! successors have left the ring, gets one `resync` event instead: the client reloads the
//! board and alerts over REST.
//!
//! Every request is parsed by [`request`] (pure) first: bad input is a 4xx with a JSON
//! [`Problem`] saying what is wrong.

mod follow;
pub(crate) mod http;
pub mod members;
pub mod proxy;
pub mod request;
pub mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use trendwatch_config::Config;
use trendwatch_core::VideoView;
use trendwatch_proto::{AlertRecord, LeaderboardRecord};

pub use follow::follow_alerts;
pub use http::{counter_router, ranker_router};
use members::{Directory, Ownership, member_identity};
pub use store::{LiveEvent, LiveKind, ResyncReason};
use store::{LiveRing, RecentAlerts, RecentBoards, Resume};

/// The counter loop's half of its query API: the inbox it answers and the directory whose
/// ownership it keeps current.
#[derive(Debug)]
pub struct CounterEnd {
    /// Queries waiting for the loop.
    pub inbox: QueryInbox,
    /// The membership (and the loop's ownership in it).
    pub directory: Arc<Directory>,
}

/// The address a counter advertises: `counter.advertised_http`, else the listener's bound
/// address — with the host name in place of a wildcard IP, which nobody can connect to.
pub fn advertised_address(config: &Config, bound: SocketAddr) -> String {
    if !config.counter.advertised_http.is_empty() {
        return config.counter.advertised_http.clone();
    }
    if bound.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        tracing::warn!(%bound, host, "the listener binds a wildcard address and counter.advertised_http is empty: advertising the host name");
        return format!("{host}:{}", bound.port());
    }
    bound.to_string()
}

/// A counter's query API, for a listener bound at `bound`: the routes for the listener and
/// the loop's half.
pub fn counter_api(config: &Config, bound: SocketAddr) -> (Router, CounterEnd) {
    let address = advertised_address(config, bound);
    let directory = Arc::new(Directory::new(
        config,
        &member_identity(config),
        &address,
        Arc::new(Ownership::default()),
    ));
    let (tx, inbox) = query_channel();
    let router = counter_router(tx, Arc::clone(&directory));
    (router, CounterEnd { inbox, directory })
}

/// The ranker's HTTP side: its routes (the API, the video proxy and the console) and the
/// thread reading the counters' membership for the proxy, if `topics.members` is set.
pub struct RankerApi {
    /// The routes for the listener.
    pub router: Router,
    /// The membership reader, stopped by [`MembersObserver::stop`] or when the `shutdown`
    /// given to [`ranker_api`] is cancelled.
    pub members: MembersObserver,
}

/// The ranker's membership reader thread, if it runs one.
pub struct MembersObserver {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: tokio_util::sync::CancellationToken,
}

impl MembersObserver {
    /// Stops the thread and waits for it (at most one poll, 200 ms).
    pub fn stop(self) {
        self.stop.cancel();
        if self.thread.is_some_and(|t| t.join().is_err()) {
            tracing::warn!("the membership observer thread panicked");
        }
    }
}

/// The ranker's HTTP side, answering from `feed`. Fails only if the membership reader
/// cannot be created.
pub fn ranker_api(
    config: &Config,
    feed: Arc<RankerFeed>,
    shutdown: tokio_util::sync::CancellationToken,
) -> crate::Result<RankerApi> {
    let stop = shutdown.child_token();
    let (members, thread) = if config.topics.members.is_empty() {
        (None, None)
    } else {
        let table = Arc::new(RwLock::new(members::observer_table(config)));
        let thread = members::spawn_observer(config, Arc::clone(&table), stop.clone())?;
        (Some(table), Some(thread))
    };
    Ok(RankerApi {
        router: ranker_router(feed, members, shutdown),
        members: MembersObserver { thread, stop },
    })
}

/// Which service serves a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serves {
    /// `trendwatch run`.
    Counter,
    /// `trendwatch rank`.
    Ranker,
    /// Both.
    Every,
}

/// One route of the API: method, path template (the OpenAPI document's spelling, which is
/// also axum's) and the service that serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Who serves it.
    pub serves: Serves,
}

/// A video's state (counter).
pub const VIDEO: &str = "/v1/videos/{video_id}";
/// The membership map (counter).
pub const MEMBERS: &str = "/v1/members";
/// The newest or a recent board (ranker).
pub const LEADERBOARD: &str = "/v1/leaderboard";
/// Recent alerts (ranker).
pub const ALERTS: &str = "/v1/alerts";
/// Live boards and alerts as server-sent events (ranker).
pub const STREAM: &str = "/v1/stream";

/// Every route the services register, in one place: the routers are built from these
/// names and a test checks each is in `docs/openapi.yaml`.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: VIDEO,
        serves: Serves::Counter,
    },
    Route {
        method: "get",
        path: VIDEO,
        serves: Serves::Ranker,
    },
    Route {
        method: "get",
        path: MEMBERS,
        serves: Serves::Counter,
    },
    Route {
        method: "get",
        path: LEADERBOARD,
        serves: Serves::Ranker,
    },
    Route {
        method: "get",
        path: ALERTS,
        serves: Serves::Ranker,
    },
    Route {
        method: "get",
        path: STREAM,
        serves: Serves::Ranker,
    },
    Route {
        method: "get",
        path: "/metrics",
        serves: Serves::Every,
    },
    Route {
        method: "get",
        path: "/healthz",
        serves: Serves::Every,
    },
    Route {
        method: "get",
        path: "/readyz",
        serves: Serves::Every,
    },
];

/// Video queries waiting for a counter's loop at most; one more is answered 503.
pub const QUERY_QUEUE: usize = 64;
/// Video queries a counter's loop answers per iteration at most.
pub const QUERIES_PER_ITERATION: usize = 8;
/// Longest a video query waits for the loop's answer before a 503.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(2);
/// Server-sent-event clients a ranker serves at once; one more is answered 503.
pub const MAX_SSE_CLIENTS: usize = 32;
/// Live events buffered per SSE client; a client further behind skips the oldest.
pub const SSE_BUFFER: usize = 256;

/// A 4xx or 5xx answer: a stable code and a sentence for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`bad_video_id`, `not_tracked`, `busy`, ...).
    pub error: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Problem {
    /// A 400.
    pub fn bad_request(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, message)
    }

    /// Any status.
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
        }
    }
}

/// One video query on its way to the counter's loop.
#[derive(Debug)]
pub struct VideoQuery {
    /// The (decoded) video id.
    pub video_id: String,
    /// The events partition it hashes to.
    pub partition: i32,
    /// Where the answer goes.
    pub reply: oneshot::Sender<VideoAnswer>,
}

/// How caught up a partition is: what makes an answer's staleness visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Freshness {
    /// The partition's watermark (none before its first event).
    pub watermark: Option<i64>,
    /// Records of the partition not yet read (none when the high watermark is unknown).
    pub lag_records: Option<i64>,
    /// Read to the end of the log, or within `counter.ready_max_lag` of it.
    pub caught_up: bool,
}

/// The loop's answer to a [`VideoQuery`].
#[derive(Debug)]
pub enum VideoAnswer {
    /// The video is tracked.
    Found {
        /// Its view.
        view: Box<VideoView>,
        /// Its last alerts emitted by this process, newest first.
        alerts: Vec<AlertRecord>,
        /// The partition's progress.
        freshness: Freshness,
    },
    /// The partition is owned here but does not track the video (never seen, expired, or
    /// not admitted under the cap).
    Untracked {
        /// The partition's progress.
        freshness: Freshness,
    },
    /// The partition is not (or no longer) owned here.
    NotOwned,
}

/// The counter loop's end of the query channel.
#[derive(Debug)]
pub struct QueryInbox {
    rx: mpsc::Receiver<VideoQuery>,
}

/// A bounded query channel: the HTTP side's sender and the loop's inbox.
pub fn query_channel() -> (mpsc::Sender<VideoQuery>, QueryInbox) {
    let (tx, rx) = mpsc::channel(QUERY_QUEUE);
    (tx, QueryInbox { rx })
}

impl QueryInbox {
    /// Whether a query waits (an atomic load: the loop asks this every iteration).
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Answers at most `max` waiting queries with `answer(video_id, partition)`, never
    /// waiting for one; returns how many were answered. Queries whose asker gave up are
    /// dropped unanswered.
    pub fn answer_pending(
        &mut self,
        max: usize,
        mut answer: impl FnMut(&str, i32) -> VideoAnswer,
    ) -> usize {
        let mut n = 0;
        while n < max {
            let Ok(q) = self.rx.try_recv() else { break };
            if q.reply.is_closed() {
                continue;
            }
            let a = answer(&q.video_id, q.partition);
            let _ = q.reply.send(a);
            n += 1;
        }
        n
    }
}

/// What the ranker's loop shares with its HTTP side: the recent boards and alerts, and
/// the live feed of both (numbered, the most recent kept in a [`LiveRing`] so a stream that
/// reconnects resumes where it left off).
#[derive(Debug)]
pub struct RankerFeed {
    boards: RwLock<RecentBoards>,
    alerts: RwLock<RecentAlerts>,
    /// Locked for each event's number, its place in the ring and its broadcast together, so
    /// a subscriber taken under the same lock sees every event exactly once: in the ring
    /// if it came before, on the channel if after.
    ring: Mutex<LiveRing>,
    live: broadcast::Sender<LiveEvent>,
}

/// Where a new stream starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamStart {
    /// No `Last-Event-ID`: live events after `newest` (the number of the newest event when
    /// it subscribed).
    Fresh {
        /// The newest event's number then.
        newest: u64,
    },
    /// Resumed: these events it missed, then live ones.
    Resumed(Vec<LiveEvent>),
    /// It cannot resume: a `resync`, then live events after `newest`.
    Resync {
        /// Why.
        reason: ResyncReason,
        /// The newest event's number then.
        newest: u64,
    },
}

impl Default for RankerFeed {
    /// A feed whose run started now.
    fn default() -> Self {
        Self::new(crate::wall_ms())
    }
}

impl RankerFeed {
    /// A feed for the ranker run that started at `run` (ms since the epoch): the first
    /// half of every live event's id.
    pub fn new(run: i64) -> Self {
        Self {
            boards: RwLock::default(),
            alerts: RwLock::default(),
            ring: Mutex::new(LiveRing::new(run)),
            live: broadcast::channel(SSE_BUFFER).0,
        }
    }

    /// The run's start (ms since the epoch).
    pub fn run(&self) -> i64 {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .run()
    }

    /// A board was published: kept and sent to live clients (never waits for them).
    pub fn board(&self, record: &LeaderboardRecord) {
        let stored = self
            .boards
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
        self.send(LiveKind::Board, stored.json);
    }

    /// An alert was seen: kept (once per id) and sent to live clients.
    pub fn alert(&self, record: &AlertRecord) {
        let stored = self
            .alerts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
        if let Some(s) = stored {
            self.send(LiveKind::Alert, s.json);
        }
    }

    fn send(&self, kind: LiveKind, json: Arc<str>) {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let event = ring.push(kind, json);
        // No subscriber is not an error.
        let _ = self.live.send(event);
    }

    /// The JSON of the newest board, or of the one ending at `window_end`, with the window
    /// ends held.
    pub fn board_json(&self, window_end: Option<i64>) -> (Option<Arc<str>>, Vec<i64>) {
        let boards = self.boards.read().unwrap_or_else(PoisonError::into_inner);
        (
            boards.get(window_end).map(|b| Arc::clone(&b.json)),
            boards.windows(),
        )
    }

    /// The JSON of the alerts `q` selects, newest first.
    pub fn alerts_json(&self, q: &request::AlertsQuery) -> Vec<Arc<str>> {
        self.alerts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .select(q)
    }

    /// A live subscription for a client that last saw `last_event_id` (none: a new
    /// client): the events to send first, then the channel of the ones after.
    pub fn subscribe(
        &self,
        last_event_id: Option<&str>,
    ) -> (broadcast::Receiver<LiveEvent>, StreamStart) {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = self.live.subscribe();
        let newest = ring.newest();
        let start = match last_event_id {
            None => StreamStart::Fresh { newest },
            Some(id) => match ring.resume(id) {
                Resume::After(events) => StreamStart::Resumed(events),
                Resume::Resync(reason) => StreamStart::Resync { reason, newest },
            },
        };
        (rx, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_answers_a_bounded_number_without_waiting() {
        let (tx, mut inbox) = query_channel();
        assert!(inbox.is_empty());
        assert_eq!(inbox.answer_pending(8, |_, _| VideoAnswer::NotOwned), 0);
        let mut replies = Vec::new();
        for i in 0..QUERY_QUEUE {
            let (reply, rx) = oneshot::channel();
            tx.try_send(VideoQuery {
                video_id: format!("v{i}"),
                partition: 0,
                reply,
            })
            .unwrap();
            replies.push(rx);
        }
        let (reply, _rx) = oneshot::channel();
        let full = tx.try_send(VideoQuery {
            video_id: "one too many".into(),
            partition: 0,
            reply,
        });
        assert!(full.is_err(), "the queue is bounded");
        // A query whose asker left is skipped.
        drop(replies.remove(0));
        let mut asked = Vec::new();
        let n = inbox.answer_pending(QUERIES_PER_ITERATION, |v, _| {
            asked.push(v.to_string());
            VideoAnswer::NotOwned
        });
        assert_eq!(n, QUERIES_PER_ITERATION);
        assert_eq!(asked.first().map(String::as_str), Some("v1"));
        assert!(matches!(replies[0].try_recv(), Ok(VideoAnswer::NotOwned)));
        assert!(!inbox.is_empty());
    }

    #[test]
    fn every_route_is_under_v1_or_a_health_endpoint() {
        for r in ROUTES {
            assert!(
                r.path.starts_with("/v1/") || r.serves == Serves::Every,
                "{r:?}"
            );
        }
    }
}
