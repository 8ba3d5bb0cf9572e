//! What a query may ask, checked before anything is looked up: pure functions from the
//! raw path segment and query string to a request or a [`Problem`] (a 4xx with a message).
//! Nothing here allocates more than the bounded input it is given.

use std::borrow::Cow;

use trendwatch_core::AlertType;

use super::Problem;

/// The longest video id a query may name, in bytes after percent-decoding: the default
/// of `validation.max_id_bytes`, so every id the counters can track can be asked for.
pub const MAX_VIDEO_ID_BYTES: usize = 256;

/// The longest query string accepted, in bytes (parameters are short numbers and names).
pub const MAX_QUERY_BYTES: usize = 1024;

/// Alerts one `/v1/alerts` answer lists at most (and by default).
pub const MAX_ALERTS_LIMIT: usize = 1000;
/// Alerts listed when `limit` is not given.
pub const DEFAULT_ALERTS_LIMIT: usize = 100;

/// Decodes `%XX` escapes; `Err` names the first malformed one. Borrows when there is none.
pub fn percent_decode(raw: &str) -> Result<Cow<'_, [u8]>, String> {
    let bytes = raw.as_bytes();
    if !bytes.contains(&b'%') {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                let h = std::str::from_utf8(h).ok()?;
                u8::from_str_radix(h, 16).ok()
            });
            match hex {
                Some(b) => out.push(b),
                None => {
                    let end = (i + 3).min(bytes.len());
                    return Err(format!(
                        "malformed percent-encoding {:?} at byte {i}",
                        String::from_utf8_lossy(&bytes[i..end])
                    ));
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(Cow::Owned(out))
}

/// The video id of a `/v1/videos/{video_id}` path segment as sent (still percent-encoded):
/// one segment (a `/` must come encoded, `%2F`), decoded, UTF-8, not empty, at most
/// [`MAX_VIDEO_ID_BYTES`], without control characters (U+0000–U+001F, U+007F–U+009F), and
/// not `.` or `..` (which name a place in a path, not a video, and which clients and
/// proxies resolve before asking). Each refusal is a `bad_video_id` saying which rule.
pub fn video_id(raw: &str) -> Result<String, Problem> {
    // Checked before decoding too, so a huge segment is refused without being copied.
    if raw.len() > 3 * MAX_VIDEO_ID_BYTES {
        return Err(id_too_long(raw.len()));
    }
    if let Some(at) = raw.find('/') {
        return Err(Problem::bad_request(
            "bad_video_id",
            format!(
                "the video id has an unencoded '/' at byte {at}: the path takes one segment, GET /v1/videos/{{video_id}}; send a '/' inside an id as %2F"
            ),
        ));
    }
    let bytes = percent_decode(raw).map_err(|e| Problem::bad_request("bad_video_id", e))?;
    if bytes.is_empty() {
        return Err(Problem::bad_request(
            "bad_video_id",
            "the video id is empty: GET /v1/videos/{video_id}",
        ));
    }
    if bytes.len() > MAX_VIDEO_ID_BYTES {
        return Err(id_too_long(bytes.len()));
    }
    let id = match String::from_utf8(bytes.into_owned()) {
        Ok(id) => id,
        Err(e) => {
            return Err(Problem::bad_request(
                "bad_video_id",
                format!(
                    "the video id is not UTF-8 once percent-decoded (invalid byte at {})",
                    e.utf8_error().valid_up_to()
                ),
            ));
        }
    };
    if let Some((at, c)) = id.char_indices().find(|(_, c)| c.is_control()) {
        return Err(Problem::bad_request(
            "bad_video_id",
            format!(
                "the video id has a control character (U+{:04X}) at byte {at} once percent-decoded; no video id can hold one",
                u32::from(c)
            ),
        ));
    }
    if id == "." || id == ".." {
        return Err(Problem::bad_request(
            "bad_video_id",
            format!("the video id {id:?} is a path segment, not an id a video can have"),
        ));
    }
    Ok(id)
}

fn id_too_long(n: usize) -> Problem {
    Problem::bad_request(
        "bad_video_id",
        format!("the video id has {n} bytes; at most {MAX_VIDEO_ID_BYTES} are accepted"),
    )
}

/// The `name=value` pairs of a query string, decoded, in order. Refuses a query longer
/// than [`MAX_QUERY_BYTES`], malformed escapes, non-UTF-8, and names not in `known`.
pub fn query_pairs<'a>(
    query: Option<&'a str>,
    known: &[&str],
) -> Result<Vec<(String, String)>, Problem> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(Vec::new());
    };
    if query.len() > MAX_QUERY_BYTES {
        return Err(Problem::bad_request(
            "bad_query",
            format!(
                "the query string has {} bytes; at most {MAX_QUERY_BYTES} are accepted",
                query.len()
            ),
        ));
    }
    let text = |raw: &'a str| -> Result<String, Problem> {
        // In a query string '+' is a space (form encoding).
        let spaced = raw.replace('+', " ");
        let bytes = percent_decode(&spaced).map_err(|e| Problem::bad_request("bad_query", e))?;
        String::from_utf8(bytes.into_owned()).map_err(|_| {
            Problem::bad_request("bad_query", "the query string is not UTF-8 once decoded")
        })
    };
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let name = text(name)?;
        if !known.contains(&name.as_str()) {
            return Err(Problem::bad_request(
                "bad_query",
                format!(
                    "unknown query parameter {name:?}; this endpoint takes {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(Problem::bad_request(
                "bad_query",
                format!("query parameter {name:?} is given twice"),
            ));
        }
        pairs.push((name, text(value)?));
    }
    Ok(pairs)
}

fn integer(name: &str, value: &str, what: &str) -> Result<i64, Problem> {
    value.parse::<i64>().map_err(|_| {
        Problem::bad_request(
            "bad_query",
            format!("{name}={value:?} is not an integer ({what})"),
        )
    })
}

/// `GET /v1/leaderboard`: the newest board, or the one of the window ending at `window`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoardQuery {
    /// `window`: end of the window (ms since the epoch, exclusive), as a board's
    /// `window_end`.
    pub window_end: Option<i64>,
}

impl BoardQuery {
    /// Parses the query string.
    pub fn parse(query: Option<&str>) -> Result<Self, Problem> {
        let mut q = Self::default();
        for (name, value) in query_pairs(query, &["window"])? {
            if name == "window" {
                q.window_end = Some(integer(
                    &name,
                    &value,
                    "the window's end, ms since the epoch, as a board's window_end",
                )?);
            }
        }
        Ok(q)
    }
}

/// `GET /v1/alerts`: recent alerts, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertsQuery {
    /// `since`: only alerts detected at or after this event time (ms since the epoch).
    pub since: Option<i64>,
    /// `type`: only alerts of this type (the contract's name, e.g. `VIRAL_VELOCITY`).
    pub alert_type: Option<AlertType>,
    /// `video_id`: only alerts about this video.
    pub video_id: Option<String>,
    /// `limit`: at most this many (1..=[`MAX_ALERTS_LIMIT`], default
    /// [`DEFAULT_ALERTS_LIMIT`]).
    pub limit: usize,
}

impl Default for AlertsQuery {
    fn default() -> Self {
        Self {
            since: None,
            alert_type: None,
            video_id: None,
            limit: DEFAULT_ALERTS_LIMIT,
        }
    }
}

/// Every alert type by its contract name.
pub const ALERT_TYPES: [AlertType; 5] = [
    AlertType::Trending,
    AlertType::TrendingEnded,
    AlertType::ViralVelocity,
    AlertType::ViralVelocityEnded,
    AlertType::RankChanged,
];

impl AlertsQuery {
    /// Parses the query string.
    pub fn parse(query: Option<&str>) -> Result<Self, Problem> {
        let mut q = Self::default();
        for (name, value) in query_pairs(query, &["since", "type", "video_id", "limit"])? {
            match name.as_str() {
                "since" => {
                    q.since = Some(integer(
                        &name,
                        &value,
                        "an event time, ms since the epoch, compared with detected_at",
                    )?)
                }
                "type" => {
                    let t = ALERT_TYPES
                        .iter()
                        .find(|t| t.as_str() == value)
                        .ok_or_else(|| {
                            let names: Vec<&str> = ALERT_TYPES.iter().map(|t| t.as_str()).collect();
                            Problem::bad_request(
                                "bad_query",
                                format!(
                                    "type={value:?} is not an alert type; one of {}",
                                    names.join(", ")
                                ),
                            )
                        })?;
                    q.alert_type = Some(*t);
                }
                "video_id" => {
                    if value.is_empty() || value.len() > MAX_VIDEO_ID_BYTES {
                        return Err(Problem::bad_request(
                            "bad_query",
                            format!("video_id must have 1 to {MAX_VIDEO_ID_BYTES} bytes"),
                        ));
                    }
                    q.video_id = Some(value);
                }
                "limit" => {
                    let n = integer(&name, &value, "how many alerts to list")?;
                    if n < 1 || n > MAX_ALERTS_LIMIT as i64 {
                        return Err(Problem::bad_request(
                            "bad_query",
                            format!("limit={n} is out of range 1..={MAX_ALERTS_LIMIT}"),
                        ));
                    }
                    q.limit = n as usize;
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn refused(r: Result<impl std::fmt::Debug, Problem>) -> Problem {
        let p = r.expect_err("should be refused");
        assert_eq!(p.status, StatusCode::BAD_REQUEST);
        assert!(!p.message.is_empty());
        p
    }

    #[test]
    fn video_ids_are_decoded_and_bounded() {
        assert_eq!(video_id("v123").unwrap(), "v123");
        assert_eq!(video_id("a%2Fb%20c").unwrap(), "a/b c");
        assert_eq!(video_id("%E2%9C%93").unwrap(), "✓");
        assert_eq!(video_id(&"x".repeat(256)).unwrap().len(), 256);
        assert!(refused(video_id("")).message.contains("empty"));
        assert!(
            refused(video_id(&"x".repeat(257)))
                .message
                .contains("257 bytes")
        );
        assert!(
            refused(video_id(&"%41".repeat(300)))
                .message
                .contains("at most 256")
        );
        assert!(
            refused(video_id("ab%zz"))
                .message
                .contains("percent-encoding")
        );
        assert!(
            refused(video_id("ab%4"))
                .message
                .contains("percent-encoding")
        );
        assert!(refused(video_id("%FF%FE")).message.contains("UTF-8"));
    }

    #[test]
    fn hostile_video_ids_are_refused_and_an_encoded_slash_is_not() {
        let bad = |raw: &str, needle: &str| {
            let p = refused(video_id(raw));
            assert_eq!(p.error, "bad_video_id", "{raw}");
            assert!(p.message.contains(needle), "{raw}: {}", p.message);
        };
        // Control characters once decoded: NUL, C0, DEL, C1 (two bytes in UTF-8).
        bad("a%00b", "U+0000) at byte 1");
        bad("%0A", "U+000A");
        bad("v%0D%0Ax", "control character");
        bad("%1B[31m", "U+001B");
        bad("x%7F", "U+007F");
        bad("%C2%85", "U+0085");
        // Path segments, however they are spelled.
        bad(".", "\".\"");
        bad("..", "\"..\"");
        bad("%2E", "\".\"");
        bad("%2e%2E", "\"..\"");
        // An unencoded slash (the router hands the handler everything after /v1/videos/).
        bad("a/b", "unencoded '/' at byte 1");
        bad("a/", "'/'");
        bad("../etc", "'/'");
        // Still ids: an encoded slash, dots inside or around an id, a tab-free space.
        assert_eq!(video_id("a%2Fb").unwrap(), "a/b");
        assert_eq!(video_id("%2F").unwrap(), "/");
        assert_eq!(video_id("%2F..%2F").unwrap(), "/../");
        assert_eq!(video_id("...").unwrap(), "...");
        assert_eq!(video_id(".hidden").unwrap(), ".hidden");
        assert_eq!(video_id("v%20one").unwrap(), "v one");
    }

    #[test]
    fn board_queries() {
        assert_eq!(BoardQuery::parse(None).unwrap(), BoardQuery::default());
        assert_eq!(
            BoardQuery::parse(Some("window=1767571200000"))
                .unwrap()
                .window_end,
            Some(1_767_571_200_000)
        );
        assert!(
            refused(BoardQuery::parse(Some("window=")))
                .message
                .contains("window")
        );
        assert!(
            refused(BoardQuery::parse(Some("window=abc")))
                .message
                .contains("integer")
        );
        assert!(
            refused(BoardQuery::parse(Some("size=3")))
                .message
                .contains("unknown")
        );
        assert!(
            refused(BoardQuery::parse(Some("window=1&window=2")))
                .message
                .contains("twice")
        );
    }

    #[test]
    fn alert_queries() {
        let q =
            AlertsQuery::parse(Some("since=5&type=VIRAL_VELOCITY&limit=7&video_id=a+b")).unwrap();
        assert_eq!(q.since, Some(5));
        assert_eq!(q.alert_type, Some(AlertType::ViralVelocity));
        assert_eq!(q.limit, 7);
        assert_eq!(q.video_id.as_deref(), Some("a b"));
        assert_eq!(
            AlertsQuery::parse(Some("")).unwrap(),
            AlertsQuery::default()
        );
        assert!(
            refused(AlertsQuery::parse(Some("since=abc")))
                .message
                .contains("since")
        );
        assert!(
            refused(AlertsQuery::parse(Some("type=NOPE")))
                .message
                .contains("VIRAL_VELOCITY")
        );
        assert!(
            refused(AlertsQuery::parse(Some("limit=0")))
                .message
                .contains("out of range")
        );
        assert!(
            refused(AlertsQuery::parse(Some("limit=1001")))
                .message
                .contains("out of range")
        );
        assert!(
            refused(AlertsQuery::parse(Some("type=%ZZ")))
                .message
                .contains("percent")
        );
        let long = format!("since={}", "1".repeat(MAX_QUERY_BYTES));
        assert!(
            refused(AlertsQuery::parse(Some(&long)))
                .message
                .contains("bytes")
        );
    }
}
