//! The web console the ranker serves: its live board, the alert feed and a video's chart,
//! as static files compiled into the binary (HTML, CSS and plain JavaScript; no framework,
//! no build step, nothing fetched from another origin).
//!
//! `GET /` and `GET /console/` answer the page; `GET /console/{file}` its other files. The
//! page then asks only the ranker's own API (`/v1/stream`, `/v1/alerts`, `/v1/videos/{id}`,
//! the last proxied to the counters, see [`crate::api::proxy`]); what it asks and how often
//! is written at the top of `console.js` and in `docs/OPERATIONS.md`.
//!
//! Every file is sent with [`CONTENT_SECURITY_POLICY`] (same origin only, no inline script
//! or style), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and
//! `Cache-Control: no-cache` (an upgraded ranker serves its new files at once).

use axum::Router;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::counter;

use crate::telemetry as m;

/// The policy every console file is sent with: scripts, styles, images and requests from
/// the ranker's own origin only; no inline script or style, no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// One file of the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    /// Its path under the ranker's listener.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

/// The page (also answered at `/`).
pub const INDEX: &str = "/console/";

/// Every file of the console.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: INDEX,
        content_type: "text/html; charset=utf-8",
        body: include_str!("index.html"),
    },
    Asset {
        path: "/console/console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("console.js"),
    },
    Asset {
        path: "/console/console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("console.css"),
    },
    Asset {
        path: "/console/icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("icon.svg"),
    },
];

/// The file a request path names: `/`, `/console` and `/console/` are the page.
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = match path {
        "/" | "/console" => INDEX,
        p => p,
    };
    ASSETS.iter().find(|a| a.path == path)
}

/// The console's routes (GET and HEAD).
pub fn router() -> Router {
    Router::new()
        .route("/", get(serve))
        .route("/console", get(serve))
        .route("/console/", get(serve))
        .route("/console/{file}", get(serve))
}

async fn serve(uri: Uri) -> Response {
    let response = match asset(uri.path()) {
        Some(a) => {
            let mut r = (StatusCode::OK, a.body).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            );
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("the console has no file {}; it is at {INDEX}\n", uri.path()),
        )
            .into_response(),
    };
    counter!(m::API_REQUESTS, "route" => "/console", "status" => response.status().as_str().to_string())
        .increment(1);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_resolve() {
        assert_eq!(asset("/").unwrap().path, INDEX);
        assert_eq!(asset("/console").unwrap().path, INDEX);
        assert!(asset("/console/nope.js").is_none());
        assert!(asset("/console/../Cargo.toml").is_none());
        // Every file the page refers to is served.
        let index = asset(INDEX).unwrap().body;
        for needle in ["href=\"/console/", "src=\"/console/"] {
            for (i, _) in index.match_indices(needle) {
                let start = i + needle.len() - "/console/".len();
                let end = start + index[start..].find('"').unwrap();
                assert!(
                    asset(&index[start..end]).is_some(),
                    "{}",
                    &index[start..end]
                );
            }
        }
    }

    #[test]
    fn nothing_comes_from_another_origin_and_data_is_never_markup() {
        for a in ASSETS {
            // The SVG namespace is a name, not a request.
            let text = a.body.replace("http://www.w3.org/2000/svg", "");
            for scheme in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(scheme), "{} mentions {scheme}", a.path);
            }
            // No inline script or style: the policy would refuse them.
            assert!(!text.contains("<style"), "{}", a.path);
            assert!(!text.contains(" style=\""), "{}", a.path);
            assert!(!text.contains("<script>"), "{}", a.path);
        }
        let js = asset("/console/console.js").unwrap().body;
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!js.contains(sink), "console.js uses {sink}");
        }
    }
}
