//! The axum side of the query API: handlers that parse ([`super::request`]), ask (the
//! counter's loop through its channel, or the ranker's stores) and write JSON. Every
//! answer, good or bad, is JSON with a stable shape; every request is counted by route
//! template and status (never by video).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{counter, gauge, histogram};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::members::{Directory, MemberTable};
use super::proxy::{MAX_PROXIED, ask_counters};
use super::request::{self, AlertsQuery, BoardQuery};
use super::store::event_id;
use super::{
    ALERTS, LEADERBOARD, LiveEvent, LiveKind, MAX_SSE_CLIENTS, MEMBERS, Problem, QUERY_DEADLINE,
    ROUTES, RankerFeed, ResyncReason, STREAM, Serves, StreamStart, VIDEO, VideoAnswer, VideoQuery,
};
use crate::partitioner::partition_for;
use crate::telemetry as m;
use crate::wall_ms;

fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let body: axum::body::Body = body.into();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "message": self.message }).to_string();
        json_response(self.status, body)
    }
}

/// Counts a finished request by route template and status.
fn counted(route: &'static str, response: Response) -> Response {
    counter!(m::API_REQUESTS, "route" => route, "status" => response.status().as_str().to_string())
        .increment(1);
    response
}

/// The routes a service of kind `serves` registers, for the 404 message.
fn routes_of(serves: Serves) -> String {
    ROUTES
        .iter()
        .filter(|r| r.serves == serves || r.serves == Serves::Every)
        .map(|r| format!("{} {}", r.method.to_uppercase(), r.path))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fallbacks every API router shares: a JSON 404 naming the routes, a JSON 405.
fn with_fallbacks(router: Router, serves: Serves) -> Router {
    let listing = routes_of(serves);
    router
        .fallback(move |method: Method, uri: Uri| {
            let listing = listing.clone();
            async move {
                counted(
                    "unmatched",
                    Problem::new(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!(
                            "no endpoint {method} {}; this service serves {listing}",
                            uri.path()
                        ),
                    )
                    .into_response(),
                )
            }
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            let mut r = Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} answers GET only, not {method}", uri.path()),
            )
            .into_response();
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            counted("unmatched", r)
        })
}

/// A video path with more segments (an unencoded `/` inside the id, or after it): served
/// by the video handlers, whose parsing refuses it with a `bad_video_id` saying why,
/// rather than left to the bare 404 of an unknown endpoint. The handlers read the raw path
/// after `/v1/videos/`, so they see the `/`.
const VIDEO_WITH_SLASH: &str = "/v1/videos/{video_id}/{*rest}";
/// The same with nothing after the `/` (a catch-all matches one character at least).
const VIDEO_AND_SLASH: &str = "/v1/videos/{video_id}/";
/// The same with an empty first segment (`/v1/videos//x`: a parameter matches one
/// character at least).
const EMPTY_AND_SLASH: &str = "/v1/videos//{*rest}";

/// What a counter's handlers share.
#[derive(Clone)]
struct CounterApi {
    queries: mpsc::Sender<VideoQuery>,
    directory: Arc<Directory>,
}

/// The counter's API routes: `GET /v1/videos/{video_id}` (queries go to the loop through
/// `queries`) and `GET /v1/members`.
pub fn counter_router(queries: mpsc::Sender<VideoQuery>, directory: Arc<Directory>) -> Router {
    let router = Router::new()
        .route(VIDEO, get(video))
        .route(VIDEO_WITH_SLASH, get(video))
        .route(VIDEO_AND_SLASH, get(video))
        .route(EMPTY_AND_SLASH, get(video))
        // An empty id does not match the template: say so instead of a bare 404.
        .route("/v1/videos", get(empty_video_id))
        .route("/v1/videos/", get(empty_video_id))
        .route(MEMBERS, get(members))
        .with_state(CounterApi { queries, directory });
    with_fallbacks(router, Serves::Counter)
}

async fn empty_video_id() -> Response {
    counted(
        VIDEO,
        Problem::bad_request(
            "bad_video_id",
            "the video id is empty: GET /v1/videos/{video_id}",
        )
        .into_response(),
    )
}

async fn video(State(api): State<CounterApi>, uri: Uri) -> Response {
    let started = Instant::now();
    let response = match video_answer(&api, &uri).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    };
    histogram!(m::API_QUERY_DURATION).record(started.elapsed().as_secs_f64());
    counted(VIDEO, response)
}

async fn video_answer(api: &CounterApi, uri: &Uri) -> Result<Response, Problem> {
    // The raw (still percent-encoded) segment: decoding is ours, with our messages, and a
    // redirect repeats it exactly.
    let raw = uri.path().strip_prefix("/v1/videos/").unwrap_or_default();
    let video_id = request::video_id(raw)?;
    request::query_pairs(uri.query(), &[])?;
    let ownership = &api.directory.ownership;
    let partitions = ownership.events_partitions().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the events topic's partition count is not known yet; try again in a second",
        )
    })?;
    let partition =
        partition_for(api.directory.partitioner, video_id.as_bytes(), partitions) as i32;
    if ownership.owns(partition) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let query = VideoQuery {
            video_id: video_id.clone(),
            partition,
            reply,
        };
        if api.queries.try_send(query).is_err() {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "{} video queries are already waiting for this counter's loop; try again shortly",
                    super::QUERY_QUEUE
                ),
            ));
        }
        let answered = tokio::time::timeout(QUERY_DEADLINE, answer).await;
        match answered {
            Ok(Ok(VideoAnswer::Found {
                view,
                alerts,
                freshness,
            })) => {
                let now = wall_ms();
                let open: Vec<&str> = [
                    ("viral_velocity", view.velocity.episode.is_open()),
                    ("trending", view.trending.episode.is_open()),
                ]
                .into_iter()
                .filter_map(|(name, open)| open.then_some(name))
                .collect();
                let body = json!({
                    "video_id": video_id,
                    "partition": partition,
                    "served_by": api.directory.address,
                    "as_of": now,
                    "watermark": view.watermark,
                    "staleness_ms": now.saturating_sub(view.watermark),
                    "lag_records": freshness.lag_records,
                    "caught_up": freshness.caught_up,
                    "open_episodes": open,
                    "video": view,
                    "last_alerts": alerts,
                });
                return Ok(json_response(StatusCode::OK, body.to_string()));
            }
            Ok(Ok(VideoAnswer::Untracked { freshness })) => {
                let now = wall_ms();
                let body = json!({
                    "error": "not_tracked",
                    "message": format!(
                        "partition {partition} (owned here) does not track video {video_id:?}: no event of it was counted, it expired after engine.capacity.video_ttl without events, or it was not admitted under engine.capacity.max_videos"
                    ),
                    "video_id": video_id,
                    "partition": partition,
                    "served_by": api.directory.address,
                    "as_of": now,
                    "watermark": freshness.watermark,
                    "staleness_ms": freshness.watermark.map(|w| now.saturating_sub(w)),
                    "lag_records": freshness.lag_records,
                    "caught_up": freshness.caught_up,
                });
                return Ok(json_response(StatusCode::NOT_FOUND, body.to_string()));
            }
            // Revoked between the look and the loop's answer: where does it live now?
            Ok(Ok(VideoAnswer::NotOwned)) => {}
            Ok(Err(_)) | Err(_) => {
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    format!(
                        "the counter's loop did not answer within {} s (restoring partitions or a long checkpoint?); try again",
                        QUERY_DEADLINE.as_secs()
                    ),
                ));
            }
        }
    }
    match api.directory.owner_of(partition, wall_ms()) {
        Some(owner) => {
            let location = format!("http://{}/v1/videos/{raw}", owner.address);
            let body = json!({
                "video_id": video_id,
                "partition": partition,
                "owner": owner.address,
                "owner_member": owner.member,
                "owner_updated_at": owner.updated_at,
                "location": location,
            });
            let mut r = json_response(StatusCode::TEMPORARY_REDIRECT, body.to_string());
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
        None => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_owner",
            format!(
                "partition {partition} of the events topic is not owned here and no live counter advertises it (a rebalance in progress, or its owner stopped); try again shortly"
            ),
        )),
    }
}

async fn members(State(api): State<CounterApi>, uri: Uri) -> Response {
    if let Err(p) = request::query_pairs(uri.query(), &[]) {
        return counted(MEMBERS, p.into_response());
    }
    let now = wall_ms();
    let live = api
        .directory
        .table
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .live(now);
    let members: Vec<_> = live.into_values().collect();
    let body = json!({
        "as_of": now,
        "self": {
            "key": api.directory.key,
            "address": api.directory.address,
            "partitions": api.directory.ownership.partitions(),
        },
        "events_partitions": api.directory.ownership.events_partitions(),
        "events_partitioner": api.directory.partitioner.as_str(),
        "members": members,
    });
    counted(MEMBERS, json_response(StatusCode::OK, body.to_string()))
}

/// What the ranker's handlers share.
#[derive(Clone)]
struct RankerApi {
    feed: Arc<RankerFeed>,
    sse_slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    /// The counters' membership, when the ranker reads it (`topics.members` set).
    members: Option<Arc<RwLock<MemberTable>>>,
    proxy_slots: Arc<Semaphore>,
}

/// The ranker's API routes, answering from `feed`, its video proxy (asking the counters
/// `members` lists; absent: a 503 saying why) and the console; SSE streams end when
/// `shutdown` is cancelled (so the listener's graceful shutdown is not held open by them).
pub fn ranker_router(
    feed: Arc<RankerFeed>,
    members: Option<Arc<RwLock<MemberTable>>>,
    shutdown: CancellationToken,
) -> Router {
    let router = Router::new()
        .route(LEADERBOARD, get(leaderboard))
        .route(ALERTS, get(alerts))
        .route(STREAM, get(stream))
        .route(VIDEO, get(proxied_video))
        .route(VIDEO_WITH_SLASH, get(proxied_video))
        .route(VIDEO_AND_SLASH, get(proxied_video))
        .route(EMPTY_AND_SLASH, get(proxied_video))
        .route("/v1/videos", get(empty_video_id))
        .route("/v1/videos/", get(empty_video_id))
        .with_state(RankerApi {
            feed,
            sse_slots: Arc::new(Semaphore::new(MAX_SSE_CLIENTS)),
            shutdown,
            members,
            proxy_slots: Arc::new(Semaphore::new(MAX_PROXIED)),
        })
        .merge(crate::console::router());
    with_fallbacks(router, Serves::Ranker)
}

async fn proxied_video(State(api): State<RankerApi>, uri: Uri) -> Response {
    let started = Instant::now();
    let response = match proxied_video_answer(&api, &uri).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    };
    histogram!(m::API_PROXY_DURATION).record(started.elapsed().as_secs_f64());
    counted(VIDEO, response)
}

async fn proxied_video_answer(api: &RankerApi, uri: &Uri) -> Result<Response, Problem> {
    let raw = uri.path().strip_prefix("/v1/videos/").unwrap_or_default();
    request::video_id(raw)?;
    request::query_pairs(uri.query(), &[])?;
    let Some(members) = &api.members else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_membership",
            "topics.members is empty: this ranker does not know where the counters are, so it cannot ask them for a video (ask a counter directly)",
        ));
    };
    let Ok(_slot) = api.proxy_slots.try_acquire() else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "{MAX_PROXIED} video queries are already on their way to the counters; try again shortly"
            ),
        ));
    };
    let live = members
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .addresses(wall_ms());
    let reply = ask_counters(&live, &format!("/v1/videos/{raw}")).await?;
    Ok(json_response(reply.status, reply.body))
}

async fn leaderboard(State(api): State<RankerApi>, uri: Uri) -> Response {
    let q = match BoardQuery::parse(uri.query()) {
        Ok(q) => q,
        Err(p) => return counted(LEADERBOARD, p.into_response()),
    };
    let (board, windows) = api.feed.board_json(q.window_end);
    let response = match (board, q.window_end) {
        (Some(json), _) => json_response(StatusCode::OK, json.to_string()),
        (None, None) => Problem::new(
            StatusCode::NOT_FOUND,
            "no_board",
            "no board has been published since this ranker started (is it the active one, and do the counters propose candidates?)",
        )
        .into_response(),
        (None, Some(end)) => Problem::new(
            StatusCode::NOT_FOUND,
            "no_such_window",
            format!(
                "no board for the window ending at {end} among the {} kept ({}); ask for one of those ends",
                windows.len(),
                match (windows.first(), windows.last()) {
                    (Some(a), Some(b)) => format!("{a} to {b}"),
                    _ => "none yet".into(),
                }
            ),
        )
        .into_response(),
    };
    counted(LEADERBOARD, response)
}

async fn alerts(State(api): State<RankerApi>, uri: Uri) -> Response {
    let q = match AlertsQuery::parse(uri.query()) {
        Ok(q) => q,
        Err(p) => return counted(ALERTS, p.into_response()),
    };
    let selected = api.feed.alerts_json(&q);
    // The alerts are JSON already: the list is assembled, not re-serialised.
    let mut body = String::with_capacity(64 + selected.iter().map(|a| a.len() + 1).sum::<usize>());
    body.push_str(&format!(
        "{{\"as_of\":{},\"count\":{},\"alerts\":[",
        wall_ms(),
        selected.len()
    ));
    for (i, a) in selected.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(a);
    }
    body.push_str("]}");
    counted(ALERTS, json_response(StatusCode::OK, body))
}

/// One SSE client's hold on a slot; gives it back (and updates the gauge) when the stream
/// ends, however it ends.
struct SseSlot {
    _permit: OwnedSemaphorePermit,
    slots: Arc<Semaphore>,
}

impl Drop for SseSlot {
    fn drop(&mut self) {
        // The permit is returned after this body runs: one is still held here.
        let held = MAX_SSE_CLIENTS - self.slots.available_permits() - 1;
        gauge!(m::API_SSE_CLIENTS).set(held as f64);
    }
}

async fn stream(State(api): State<RankerApi>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(p) = request::query_pairs(uri.query(), &[]) {
        return counted(STREAM, p.into_response());
    }
    let Ok(permit) = Arc::clone(&api.sse_slots).try_acquire_owned() else {
        return counted(
            STREAM,
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!("{MAX_SSE_CLIENTS} live streams are open already; try again later"),
            )
            .into_response(),
        );
    };
    gauge!(m::API_SSE_CLIENTS).set((MAX_SSE_CLIENTS - api.sse_slots.available_permits()) as f64);
    let slot = SseSlot {
        _permit: permit,
        slots: Arc::clone(&api.sse_slots),
    };
    // A browser sends no empty id; a header that is not text is no id of ours.
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?"))
        .filter(|v| !v.is_empty());
    let run = api.feed.run();
    let (rx, start) = api.feed.subscribe(last_event_id);
    let mut first: VecDeque<Event> = VecDeque::new();
    match start {
        // The newest board first, so a client has a board at once rather than at the next
        // window; its id is the stream's place now, so a reconnect resumes from here.
        StreamStart::Fresh { newest } => {
            if let Some(board) = api.feed.board_json(None).0 {
                first.push_back(
                    Event::default()
                        .event(LiveKind::Board.name())
                        .id(event_id(run, newest))
                        .data(&*board),
                );
            }
        }
        StreamStart::Resumed(missed) => {
            counter!(m::API_SSE_RESUMES, "outcome" => "resumed").increment(1);
            first.extend(missed.iter().map(|e| sse_event(run, e)));
        }
        StreamStart::Resync { reason, newest } => {
            counter!(m::API_SSE_RESUMES, "outcome" => reason.code()).increment(1);
            first.push_back(resync_event(reason).id(event_id(run, newest)));
        }
    }
    let state = (rx, first, slot, api.shutdown.clone());
    let events = futures::stream::unfold(
        state,
        move |(mut rx, mut first, slot, shutdown)| async move {
            let event = match first.pop_front() {
                Some(e) => e,
                None => tokio::select! {
                    () = shutdown.cancelled() => return None,
                    next = rx.recv() => match next {
                        Ok(e) => sse_event(run, &e),
                        // What it skipped may still be in the ring, but this stream cannot
                        // splice it in: the client reloads.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            counter!(m::API_SSE_RESUMES, "outcome" => ResyncReason::Lagged.code())
                                .increment(1);
                            resync_event(ResyncReason::Lagged)
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                },
            };
            Some((Ok::<_, Infallible>(event), (rx, first, slot, shutdown)))
        },
    );
    counted(
        STREAM,
        Sse::new(events)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
    )
}

fn sse_event(run: i64, e: &LiveEvent) -> Event {
    Event::default()
        .event(e.kind.name())
        .id(event_id(run, e.seq))
        .data(&*e.json)
}

/// The event that tells a client to reload the board and alerts over REST.
fn resync_event(reason: ResyncReason) -> Event {
    Event::default()
        .event("resync")
        .data(json!({ "reason": reason.code(), "message": reason.message() }).to_string())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// `GET path` from `addr` on a blocking thread: the raw answer.
    async fn fetch(addr: String, path: &'static str) -> String {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out.to_ascii_lowercase()
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_ranker_serves_its_console_and_says_why_it_cannot_ask_for_a_video() {
        let router = ranker_router(
            Arc::new(RankerFeed::default()),
            None,
            CancellationToken::new(),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(l, router).await.unwrap() });

        let page = fetch(addr.clone(), "/").await;
        assert!(page.starts_with("http/1.1 200"), "{page}");
        assert!(page.contains("content-type: text/html; charset=utf-8"));
        assert!(page.contains("content-security-policy: default-src 'none'; script-src 'self'"));
        assert!(page.contains("x-content-type-options: nosniff"));
        let script = fetch(addr.clone(), "/console/console.js").await;
        assert!(script.contains("content-type: text/javascript"), "{script}");
        let missing = fetch(addr.clone(), "/console/nope.js").await;
        assert!(missing.starts_with("http/1.1 404"), "{missing}");

        // Without the membership topic the ranker cannot find the counters: a 503 that
        // says so (after the request itself is checked).
        let video = fetch(addr.clone(), "/v1/videos/v1").await;
        assert!(video.starts_with("http/1.1 503"), "{video}");
        assert!(video.contains("no_membership"), "{video}");
        let bad = fetch(addr.clone(), "/v1/videos/ab%zz").await;
        assert!(bad.starts_with("http/1.1 400"), "{bad}");
        for hostile in HOSTILE {
            let bad = fetch(addr.clone(), hostile).await;
            assert!(bad.starts_with("http/1.1 400"), "{hostile}: {bad}");
            assert!(bad.contains("\"bad_video_id\""), "{hostile}: {bad}");
        }
    }

    /// Video paths both services refuse with a `bad_video_id` (each rule of
    /// `request::video_id` is unit-tested there; these check the routes reach it).
    const HOSTILE: &[&str] = &[
        "/v1/videos/a/b",
        "/v1/videos/a/",
        "/v1/videos/a/b/c",
        "/v1/videos//b",
        "/v1/videos/..",
        "/v1/videos/%2E",
        "/v1/videos/a%00",
        "/v1/videos/%1B",
    ];

    #[tokio::test]
    async fn a_counter_refuses_hostile_video_ids_before_looking_for_the_video() {
        let directory = Arc::new(Directory::new(
            &trendwatch_config::Config::default(),
            "m",
            "127.0.0.1:1",
            Arc::new(super::super::members::Ownership::default()),
        ));
        let (tx, _inbox) = super::super::query_channel();
        let router = counter_router(tx, directory);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
        for hostile in HOSTILE {
            let bad = fetch(addr.clone(), hostile).await;
            assert!(bad.starts_with("http/1.1 400"), "{hostile}: {bad}");
            assert!(bad.contains("\"bad_video_id\""), "{hostile}: {bad}");
        }
        // An encoded slash is part of an id: it gets as far as the partition count, which
        // this counter (with no loop) does not know yet.
        let legal = fetch(addr.clone(), "/v1/videos/a%2Fb").await;
        assert!(legal.starts_with("http/1.1 503"), "{legal}");
        assert!(legal.contains("\"starting\""), "{legal}");
        let members = fetch(addr, "/v1/members").await;
        assert!(
            members.contains("\"events_partitioner\":\"crc32\""),
            "{members}"
        );
    }

    /// One server-sent event: name, id and data.
    type Sse = (String, String, String);

    /// Opens `/v1/stream` on `addr` (with `Last-Event-ID: last` if given) on a thread of its
    /// own that sends each event (keep-alive comments skipped) as it arrives; the channel
    /// closes when the stream does or nothing came for 10 s.
    fn open_stream(
        addr: String,
        last: Option<String>,
    ) -> tokio::sync::mpsc::UnboundedReceiver<Sse> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
                return;
            };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let resume = last.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
            write!(
                s,
                "GET /v1/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n"
            )
            .unwrap();
            let mut r = std::io::BufReader::new(s);
            let mut line = String::new();
            if r.read_line(&mut line).is_err() || !line.contains(" 200 ") {
                return;
            }
            while line != "\r\n" {
                line.clear();
                if r.read_line(&mut line).is_err() {
                    return;
                }
            }
            // The chunked body: size line, chunk, CRLF; an event ends with a blank line.
            let mut text = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                let Ok(size) = usize::from_str_radix(line.trim(), 16) else {
                    return;
                };
                let mut chunk = vec![0; size + 2];
                if size == 0 || r.read_exact(&mut chunk).is_err() {
                    return;
                }
                text.push_str(&String::from_utf8_lossy(&chunk[..size]));
                while let Some(end) = text.find("\n\n") {
                    let event: String = text.drain(..end + 2).collect();
                    let field = |name: &str| {
                        event
                            .lines()
                            .find_map(|l| l.strip_prefix(name))
                            .unwrap_or_default()
                            .to_string()
                    };
                    if !event.starts_with(':')
                        && tx
                            .send((field("event: "), field("id: "), field("data: ")))
                            .is_err()
                    {
                        return;
                    }
                }
            }
        });
        rx
    }

    /// The next `n` events of a stream (each within 10 s).
    async fn next_events(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Sse>, n: usize) -> Vec<Sse> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(e)) => events.push(e),
                other => panic!("after {events:?}, the stream ended or stalled: {other:?}"),
            }
        }
        events
    }

    /// `n` events of a new stream.
    async fn read_stream(addr: String, last: Option<String>, n: usize) -> Vec<Sse> {
        next_events(&mut open_stream(addr, last), n).await
    }

    #[tokio::test]
    async fn a_stream_resumes_after_its_last_event_id_or_asks_for_a_resync() {
        use super::super::store::fixtures::{alert, board};
        use trendwatch_core::AlertType;
        const RUN: i64 = 1_767_571_200_000;
        let feed = Arc::new(RankerFeed::new(RUN));
        feed.board(&board(60_000));
        feed.alert(&alert("a1", "v1", AlertType::ViralVelocity, 1));
        feed.alert(&alert("a2", "v2", AlertType::Trending, 2));
        let router = ranker_router(Arc::clone(&feed), None, CancellationToken::new());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
        let id = |n: u64| format!("{RUN}-{n}");

        // A new client: the newest board at once, its id the stream's place (event 3).
        let fresh = read_stream(addr.clone(), None, 1).await;
        assert_eq!(fresh[0].0, "board");
        assert_eq!(fresh[0].1, id(3));
        assert!(fresh[0].2.contains("\"window_end\":60000"), "{fresh:?}");

        // Back after event 1: events 2 and 3 again, in order, then the next live one
        // (published once the first two came, so the stream is subscribed by then).
        let mut stream = open_stream(addr.clone(), Some(id(1)));
        let mut resumed = next_events(&mut stream, 2).await;
        feed.alert(&alert("a3", "v3", AlertType::ViralVelocity, 3));
        resumed.extend(next_events(&mut stream, 1).await);
        drop(stream);
        let ids: Vec<&str> = resumed.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(ids, [id(2), id(3), id(4)]);
        assert!(resumed.iter().all(|e| e.0 == "alert"), "{resumed:?}");
        for (e, a) in resumed.iter().zip(["a1", "a2", "a3"]) {
            assert!(e.2.contains(&format!("\"alert_id\":\"{a}\"")), "{e:?}");
        }

        // An id of another run (the ranker restarted): one resync, placed at event 4.
        let other = read_stream(addr.clone(), Some(format!("{}-2", RUN - 5000)), 1).await;
        assert_eq!(
            (other[0].0.as_str(), other[0].1.as_str()),
            ("resync", &*id(4))
        );
        assert!(other[0].2.contains("\"reason\":\"other_run\""), "{other:?}");

        // Older than the ring: a resync too, then live events.
        for i in 0..super::super::store::LIVE_EVENTS_KEPT {
            feed.alert(&alert(&format!("b{i}"), "v", AlertType::Trending, 4));
        }
        let newest = 4 + super::super::store::LIVE_EVENTS_KEPT as u64;
        let mut stream = open_stream(addr.clone(), Some(id(2)));
        let mut old = next_events(&mut stream, 1).await;
        feed.alert(&alert("c", "v", AlertType::Trending, 5));
        old.extend(next_events(&mut stream, 1).await);
        drop(stream);
        assert_eq!(old[0].0, "resync");
        assert_eq!(old[0].1, id(newest));
        assert!(old[0].2.contains("\"reason\":\"too_old\""), "{old:?}");
        assert_eq!(
            (old[1].0.as_str(), old[1].1.as_str()),
            ("alert", &*id(newest + 1))
        );
        // But the oldest held still resumes.
        let kept = read_stream(addr, Some(id(newest - 1)), 2).await;
        let ids: Vec<&str> = kept.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(ids, [id(newest), id(newest + 1)]);
    }
}
