//! The ranker's `GET /v1/videos/{video_id}`: a same-origin answer for its console, asked of
//! a counter.
//!
//! The ranker reads the counters' membership topic ([`super::members::spawn_observer`]),
//! asks the most recently refreshed live counter and follows at most one redirect — the
//! asked counter answers, or redirects (307) to the owner of the video's partition, which
//! answers. So the ranker needs no partitioner and no partition count, and a rebalance
//! costs one hop more, never a wrong answer: the counters stay the only judges of
//! ownership.
//!
//! Bounded: at most [`MAX_PROXIED`] proxied queries at once (one more is a 503), each
//! within [`PROXY_DEADLINE`] end to end (then 504), with an answer of at most
//! [`MAX_PROXIED_BYTES`] (else 502). Only addresses a live member advertises are ever
//! contacted — a redirect elsewhere is refused (502) — so the proxy cannot be pointed at
//! another host.
//!
//! Why a proxy and not the browser following the counter's 307 itself: the counter is
//! another origin (another port, often another host), so the console's `fetch` would need
//! CORS on every counter and a Content-Security-Policy naming every counter's address, and
//! the counters' listeners would have to be reachable from the person's browser. Through
//! the ranker the console is same-origin only, and exposing the console means exposing one
//! listener.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

use super::Problem;

/// Proxied video queries in flight at most; one more is answered 503.
pub const MAX_PROXIED: usize = 16;
/// Longest a proxied video query takes end to end (connects, the redirect, the counter's
/// own wait for its loop) before a 504.
pub const PROXY_DEADLINE: Duration = Duration::from_secs(3);
/// Largest counter answer passed on, in bytes (a video's answer is a few kB).
pub const MAX_PROXIED_BYTES: usize = 1 << 20;
/// Counters asked per query at most: the first one, and the owner it redirects to.
pub const MAX_HOPS: usize = 2;

/// A counter's answer, as passed on to the ranker's client.
#[derive(Debug)]
pub struct CounterReply {
    /// Its status.
    pub status: StatusCode,
    /// Its `Location`, on a redirect.
    pub location: Option<String>,
    /// Its body (JSON).
    pub body: Bytes,
}

/// The counter address and path a counter's redirect points to, when it points to a live
/// member (`live`: their advertised addresses) and to a video path; else the 502 to answer.
pub fn redirect_target(location: &str, live: &[String]) -> Result<(String, String), Problem> {
    let refused = |why: &str| {
        Problem::new(
            StatusCode::BAD_GATEWAY,
            "bad_redirect",
            format!("a counter redirected the query to {location:?}, which {why}; not followed"),
        )
    };
    let rest = location
        .strip_prefix("http://")
        .ok_or_else(|| refused("is not an http:// URL"))?;
    let (address, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return Err(refused("has no path")),
    };
    if !live.iter().any(|a| a == address) {
        return Err(refused("is not the address of a live counter"));
    }
    if !path.starts_with("/v1/videos/") {
        return Err(refused("is not a video query"));
    }
    Ok((address.to_string(), path.to_string()))
}

/// Asks the counters for `path` (`/v1/videos/...`, as the client sent it): the first of
/// `live` (advertised addresses, preferred first), then where it redirects, at most
/// [`MAX_HOPS`] in all, within [`PROXY_DEADLINE`].
pub async fn ask_counters(live: &[String], path: &str) -> Result<CounterReply, Problem> {
    let Some(first) = live.first() else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_counter",
            "no live counter advertises itself on the membership topic (topics.members); are the counters running, with the same counter.group_id and topics as this ranker?",
        ));
    };
    let asked = async {
        let (mut address, mut path) = (first.clone(), path.to_string());
        for hop in 1..=MAX_HOPS {
            let reply = get(&address, &path).await?;
            let redirect = reply.status == StatusCode::TEMPORARY_REDIRECT;
            match (redirect, &reply.location) {
                (true, Some(location)) if hop < MAX_HOPS => {
                    (address, path) = redirect_target(location, live)?;
                }
                (true, _) => {
                    return Err(Problem::new(
                        StatusCode::BAD_GATEWAY,
                        "too_many_redirects",
                        format!(
                            "the video's owner redirected again after {MAX_HOPS} counters were asked (a rebalance in progress?); try again shortly"
                        ),
                    ));
                }
                (false, _) => return Ok(reply),
            }
        }
        unreachable!("the loop returns by its last hop")
    };
    match tokio::time::timeout(PROXY_DEADLINE, asked).await {
        Ok(answer) => answer,
        Err(_) => Err(Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "counter_timeout",
            format!(
                "the counters did not answer within {} s; try again",
                PROXY_DEADLINE.as_secs()
            ),
        )),
    }
}

/// Stops the connection's task however the request ends (a timeout drops the future).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One `GET path` to the counter at `address`, on its own connection.
async fn get(address: &str, path: &str) -> Result<CounterReply, Problem> {
    let unreachable = |e: &dyn std::fmt::Display| {
        Problem::new(
            StatusCode::BAD_GATEWAY,
            "counter_unreachable",
            format!("asking the counter at {address}: {e}"),
        )
    };
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let host = HeaderValue::from_str(address).map_err(|e| unreachable(&e))?;
    let request = Request::get(path)
        .header(header::HOST, host)
        .header(header::ACCEPT, "application/json")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(&e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(&e))?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_PROXIED_BYTES)
        .collect()
        .await
        .map_err(|e| {
            unreachable(&format!(
                "its answer (at most {MAX_PROXIED_BYTES} bytes): {e}"
            ))
        })?
        .to_bytes();
    Ok(CounterReply {
        status: parts.status,
        location: parts
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_redirects_to_live_counters_and_video_paths_are_followed() {
        let live = vec!["10.0.0.1:9464".to_string(), "10.0.0.2:9464".to_string()];
        assert_eq!(
            redirect_target("http://10.0.0.2:9464/v1/videos/v%201", &live).unwrap(),
            ("10.0.0.2:9464".to_string(), "/v1/videos/v%201".to_string())
        );
        for (location, why) in [
            (
                "http://evil:80/v1/videos/v1",
                "not the address of a live counter",
            ),
            ("https://10.0.0.2:9464/v1/videos/v1", "not an http:// URL"),
            ("http://10.0.0.2:9464/metrics", "not a video query"),
            ("http://10.0.0.2:9464", "has no path"),
        ] {
            let p = redirect_target(location, &live).unwrap_err();
            assert_eq!(p.status, StatusCode::BAD_GATEWAY, "{location}");
            assert!(p.message.contains(why), "{location}: {}", p.message);
        }
    }

    #[tokio::test]
    async fn no_counter_is_a_503_and_a_dead_one_a_502() {
        let none = ask_counters(&[], "/v1/videos/v1").await.unwrap_err();
        assert_eq!(none.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(none.error, "no_counter");
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead = ask_counters(&[format!("127.0.0.1:{port}")], "/v1/videos/v1")
            .await
            .unwrap_err();
        assert_eq!(dead.status, StatusCode::BAD_GATEWAY, "{dead:?}");
        assert_eq!(dead.error, "counter_unreachable");
    }

    #[tokio::test]
    async fn a_redirect_is_followed_once_and_a_second_one_refused() {
        use axum::Router;
        use axum::response::IntoResponse;
        use axum::routing::get;
        async fn serve(router: Router) -> String {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = l.local_addr().unwrap().to_string();
            tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
            a
        }
        let owner = serve(Router::new().route(
            "/v1/videos/{id}",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], "{\"ok\":1}") }),
        ))
        .await;
        let to = format!("http://{owner}/v1/videos/v1");
        let other = serve(Router::new().route(
            "/v1/videos/{id}",
            get(move || {
                let to = to.clone();
                async move {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(header::LOCATION, to)],
                        "{}",
                    )
                        .into_response()
                }
            }),
        ))
        .await;
        let live = vec![other.clone(), owner.clone()];
        let r = ask_counters(&live, "/v1/videos/v1").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"{\"ok\":1}");
        // The owner itself redirecting again (to the other) is one hop too many.
        let back = format!("http://{other}/v1/videos/v1");
        let looping = serve(Router::new().route(
            "/v1/videos/{id}",
            get(move || {
                let back = back.clone();
                async move {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [(header::LOCATION, back)],
                        "{}",
                    )
                        .into_response()
                }
            }),
        ))
        .await;
        let live = vec![looping, other];
        let e = ask_counters(&live, "/v1/videos/v1").await.unwrap_err();
        assert_eq!(e.error, "too_many_redirects", "{e:?}");
    }
}
