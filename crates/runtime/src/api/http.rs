//! The axum side of the query API: handlers that parse ([`super::request`]), ask (the
//! counter's loop through its channel, or the ranker's stores) and write JSON. Every
//! answer, good or bad, is JSON with a stable shape; every request is counted by route
//! template and status (never by video).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{counter, gauge, histogram};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::members::Directory;
use super::request::{self, AlertsQuery, BoardQuery};
use super::{
    ALERTS, LEADERBOARD, LiveEvent, MAX_SSE_CLIENTS, MEMBERS, Problem, QUERY_DEADLINE, ROUTES,
    RankerFeed, STREAM, Serves, VIDEO, VideoAnswer, VideoQuery,
};
use crate::partitioner::partition_for;
use crate::telemetry as m;
use crate::wall_ms;

fn json_response(status: StatusCode, body: String) -> Response {
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
    let partition = partition_for(video_id.as_bytes(), partitions) as i32;
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
}

/// The ranker's API routes, answering from `feed`; SSE streams end when `shutdown` is
/// cancelled (so the listener's graceful shutdown is not held open by them).
pub fn ranker_router(feed: Arc<RankerFeed>, shutdown: CancellationToken) -> Router {
    let router = Router::new()
        .route(LEADERBOARD, get(leaderboard))
        .route(ALERTS, get(alerts))
        .route(STREAM, get(stream))
        .with_state(RankerApi {
            feed,
            sse_slots: Arc::new(Semaphore::new(MAX_SSE_CLIENTS)),
            shutdown,
        });
    with_fallbacks(router, Serves::Ranker)
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

async fn stream(State(api): State<RankerApi>, uri: Uri) -> Response {
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
    let rx = api.feed.subscribe();
    // The newest board first, so a client has a board at once rather than at the next
    // window.
    let first = api.feed.board_json(None).0.map(LiveEvent::Board);
    let state = (rx, first, slot, api.shutdown.clone());
    let events = futures::stream::unfold(state, |(mut rx, mut first, slot, shutdown)| async move {
        let event = match first.take() {
            Some(e) => sse_event(&e),
            None => tokio::select! {
                () = shutdown.cancelled() => return None,
                next = rx.recv() => match next {
                    Ok(e) => sse_event(&e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Event::default().event("lagged").data(n.to_string())
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            },
        };
        Some((Ok::<_, Infallible>(event), (rx, first, slot, shutdown)))
    });
    counted(
        STREAM,
        Sse::new(events)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
    )
}

fn sse_event(e: &LiveEvent) -> Event {
    match e {
        LiveEvent::Board(json) => Event::default().event("board").data(&**json),
        LiveEvent::Alert(json) => Event::default().event("alert").data(&**json),
    }
}
