//! The query API end to end on the local Apache Kafka: two counters in one group on a
//! four-partition topic and a ranker. A video's answer is compared with the replay of the
//! same records, a counter that does not own the video redirects to the one that does, and
//! every kind of malformed request gets a 4xx with a message. The ranker's board, alerts
//! and live stream are compared with what its topics hold. A last test checks that
//! `docs/openapi.yaml` describes every route the services register.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use trendwatch_cli::partitioner::{Partitioner, partition_for};
use trendwatch_core::AlertType;
use trendwatch_proto::LeaderboardRecord;
use trendwatch_runtime::api::{ROUTES, Serves};
use trendwatch_tests::{
    CounterProcess, Scenario, encode, offline_boards, partition_ends, partition_ends_by, replay,
    root, serial, workload,
};

const DONE: Duration = Duration::from_secs(180);

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// `method path` against `addr` (host:port), `Connection: close`; bodies of the API are
/// sent with a length, not chunked.
fn http(addr: &str, method: &str, path: &str) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line from {addr}{path}: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

fn get(c: &CounterProcess, path: &str) -> Answer {
    http(&c.metrics, "GET", path)
}

/// Asserts a 4xx with a JSON `{error, message}`; returns the message.
fn refused(a: &Answer, status: u16, what: &str) -> String {
    assert_eq!(a.status, status, "{what}: {a:?}");
    let j = a.json();
    assert!(
        j["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {a:?}"
    );
    let message = j["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.is_empty(), "{what}: {a:?}");
    message
}

/// What a counter's `/v1/members` says: the partitions it owns, and the members it knows
/// of (member → partitions).
type Membership = (Vec<i64>, BTreeMap<String, Vec<i64>>);

fn membership(c: &CounterProcess) -> Option<Membership> {
    let a = get(c, "/v1/members");
    if a.status != 200 {
        return None;
    }
    let j = a.json();
    let ints = |v: &Value| -> Vec<i64> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default()
    };
    let own = ints(&j["self"]["partitions"]);
    let others = j["members"]
        .as_array()?
        .iter()
        .map(|m| {
            (
                m["member"].as_str().unwrap_or_default().to_string(),
                ints(&m["partitions"]),
            )
        })
        .collect();
    Some((own, others))
}

/// Waits until both counters own partitions, together all `partitions` of them, and each
/// lists the other's; returns what each owns.
fn settled(a: &CounterProcess, b: &CounterProcess, partitions: i32) -> (Vec<i64>, Vec<i64>) {
    let deadline = Instant::now() + DONE;
    loop {
        if let (Some((pa, ma)), Some((pb, mb))) = (membership(a), membership(b)) {
            let all: BTreeSet<i64> = pa.iter().chain(&pb).copied().collect();
            let a_sees_b = ma.values().any(|p| *p == pb);
            let b_sees_a = mb.values().any(|p| *p == pa);
            if !pa.is_empty()
                && !pb.is_empty()
                && all.len() == partitions as usize
                && a_sees_b
                && b_sees_a
            {
                return (pa, pb);
            }
        }
        assert!(
            Instant::now() < deadline,
            "membership not settled; a: {:?}, b: {:?}\n{}\n{}",
            membership(a),
            membership(b),
            a.log_text(),
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Reads the ranker's live stream from `addr` until a `board` event arrives after the
/// first one (which is the board held when subscribing, if any); returns its JSON.
fn live_board_after_subscribing(addr: String) -> std::thread::JoinHandle<Option<String>> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).ok()?;
        s.set_read_timeout(Some(DONE)).ok()?;
        write!(
            s,
            "GET /v1/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .ok()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        // Status and headers.
        r.read_line(&mut line).ok()?;
        assert!(line.contains(" 200 "), "stream refused: {line}");
        loop {
            line.clear();
            r.read_line(&mut line).ok()?;
            if line == "\r\n" {
                break;
            }
        }
        // Chunked body: size line, chunk, CRLF. SSE events end with a blank line.
        let mut text = String::new();
        let mut boards = 0;
        let mut held_at_subscription = None;
        loop {
            line.clear();
            r.read_line(&mut line).ok()?;
            let size = usize::from_str_radix(line.trim(), 16).ok()?;
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).ok()?;
            text.push_str(&String::from_utf8_lossy(&chunk[..size]));
            while let Some(end) = text.find("\n\n") {
                let event: String = text.drain(..end + 2).collect();
                let name = event.lines().find_map(|l| l.strip_prefix("event: "));
                let data = event.lines().find_map(|l| l.strip_prefix("data: "));
                if name == Some("board") {
                    boards += 1;
                    let data = data?.to_string();
                    if boards == 1 && held_at_subscription.is_none() {
                        held_at_subscription = Some(data.clone());
                    }
                    if boards >= 2 {
                        return Some(data);
                    }
                }
            }
        }
    })
}

#[test]
fn two_counters_redirect_and_the_ranker_serves_its_board_and_alerts() {
    let _one_at_a_time = serial();
    let partitions = 4;
    let s = Scenario::new("api", partitions);
    let records = encode(&workload(11, 60_000));
    let ends = partition_ends(&records, partitions);
    let reference = replay(&s.config, &records, partitions);
    let offline = offline_boards(&s.config, &records, partitions);
    let viral: Vec<_> = reference
        .alerts
        .iter()
        .filter(|a| a.alert_type == AlertType::ViralVelocity)
        .collect();
    assert!(!viral.is_empty(), "the workload must make the engine fire");

    let a = s.start_counter("counter-a");
    let b = s.start_counter("counter-b");
    let ranker = s.start_ranker("ranker");

    // Both own partitions and each knows the other's, before anything is published.
    let (owned_a, owned_b) = settled(&a, &b, partitions);
    eprintln!("api: counter-a owns {owned_a:?}, counter-b owns {owned_b:?}");

    let stream = live_board_after_subscribing(ranker.metrics.clone());
    s.publish_raw(&records, None);
    s.wait_committed(&ends, DONE);

    // The video: one that went viral; its owner and the other counter.
    let video = viral[0].video_id.clone();
    let p = partition_for(Partitioner::Crc32, video.as_bytes(), partitions as u32) as i64;
    let (owner, other) = if owned_a.contains(&p) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let path = format!("/v1/videos/{video}");
    let want = reference.states[&(p as i32)].video_counts(&video).unwrap();

    let answer = get(owner, &path);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.headers["content-type"].starts_with("application/json"));
    let j = answer.json();
    assert_eq!(j["video_id"], video.as_str());
    assert_eq!(j["partition"], p);
    assert_eq!(j["served_by"], owner.metrics.as_str());
    let watermark = j["watermark"]
        .as_i64()
        .expect("the watermark in every answer");
    assert!(j["staleness_ms"].as_i64().is_some() && j["as_of"].as_i64().is_some());
    assert_eq!(j["caught_up"], true, "{j}");
    assert_eq!(j["video"]["watermark"], watermark);
    // Counted exactly as the replay counts it; the watermark is the replay's or, if the
    // partition went idle since, later.
    assert_eq!(j["video"]["events"], want.events, "{j}");
    let replayed = reference.states[&(p as i32)].watermark().unwrap();
    assert!(watermark >= replayed, "{watermark} < {replayed}");
    // Its last alerts include the replay's viral-velocity alerts of it.
    let shown: BTreeSet<&str> = j["last_alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["alert_id"].as_str())
        .collect();
    let of_video: Vec<&str> = viral
        .iter()
        .filter(|a| a.video_id == video)
        .map(|a| a.alert_id.as_str())
        .collect();
    assert!(
        of_video.iter().all(|id| shown.contains(id)),
        "{of_video:?} not all in {shown:?}"
    );
    for key in ["velocity", "trending"] {
        assert!(j["video"][key]["episode"]["phase"].is_string(), "{j}");
    }
    assert!(j["video"]["velocity"]["cusum"].is_number());

    // The other counter redirects to the owner, and following it gives the same answer.
    let moved = get(other, &path);
    assert_eq!(moved.status, 307, "{moved:?}");
    let location = moved.headers["location"].clone();
    assert_eq!(location, format!("http://{}{path}", owner.metrics));
    let mj = moved.json();
    assert_eq!(mj["partition"], p);
    assert_eq!(mj["owner"], owner.metrics.as_str());
    let target = location.strip_prefix("http://").unwrap();
    let (host, rest) = target.split_once('/').unwrap();
    let followed = http(host, "GET", &format!("/{rest}"));
    assert_eq!(followed.status, 200);
    let fj = followed.json();
    assert_eq!(fj["video"]["events"], j["video"]["events"]);
    assert_eq!(fj["video"]["video_id"], j["video"]["video_id"]);
    assert_eq!(fj["served_by"], owner.metrics.as_str());

    // A video never published: its owner says so, with the watermark.
    let unknown = (0..)
        .map(|i| format!("never-published-{i}"))
        .find(|v| {
            owned_a.contains(
                &(partition_for(Partitioner::Crc32, v.as_bytes(), partitions as u32) as i64),
            )
        })
        .unwrap();
    let nf = get(&a, &format!("/v1/videos/{unknown}"));
    let message = refused(&nf, 404, "an untracked video");
    assert!(message.contains("does not track"), "{message}");
    assert!(nf.json()["watermark"].as_i64().is_some());

    // Malformed requests of each kind, on a counter.
    let long = "x".repeat(300);
    for (path, status, needle) in [
        ("/v1/videos/", 400, "empty"),
        ("/v1/videos", 400, "empty"),
        (&format!("/v1/videos/{long}") as &str, 400, "at most 256"),
        ("/v1/videos/ab%zz", 400, "percent-encoding"),
        ("/v1/videos/%FF%FE", 400, "UTF-8"),
        ("/v1/videos/a%00b", 400, "control character"),
        ("/v1/videos/%2E%2E", 400, "\"..\""),
        ("/v1/videos/a/b", 400, "'/'"),
        ("/v1/videos/v1?verbose=1", 400, "unknown query parameter"),
        ("/v1/nope", 404, "no endpoint"),
        ("/v2/videos/v1", 404, "no endpoint"),
    ] {
        let m = refused(&get(&a, path), status, path);
        assert!(m.contains(needle), "{path}: {m}");
    }
    let m = refused(&http(&a.metrics, "POST", &path), 405, "POST on a video");
    assert!(m.contains("GET"), "{m}");
    assert_eq!(
        http(&a.metrics, "DELETE", "/v1/members").status,
        405,
        "wrong method on the members map"
    );

    // The ranker: the newest board is the last one on the leaderboard topic.
    let deadline = Instant::now() + DONE;
    let boards = loop {
        let boards = s.boards(Duration::from_millis(800));
        if boards
            .iter()
            .any(|b| b.board.window_end == offline.closed_through)
        {
            break boards;
        }
        assert!(
            Instant::now() < deadline,
            "no final board\n{}",
            ranker.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let newest = boards.iter().max_by_key(|b| b.board.window_end).unwrap();
    let lb = get(&ranker, "/v1/leaderboard");
    assert_eq!(lb.status, 200, "{lb:?}");
    let served = LeaderboardRecord::decode_json(lb.body.as_bytes()).unwrap();
    assert_eq!(served.board, newest.board);
    assert_eq!(served.scope, "global");
    let earlier = boards
        .iter()
        .map(|b| b.board.window_end)
        .filter(|w| *w < newest.board.window_end)
        .max()
        .unwrap();
    let one = get(&ranker, &format!("/v1/leaderboard?window={earlier}"));
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(
        LeaderboardRecord::decode_json(one.body.as_bytes())
            .unwrap()
            .board
            .window_end,
        earlier
    );
    refused(
        &get(&ranker, "/v1/leaderboard?window=1"),
        404,
        "an unknown window",
    );

    // Its alerts: the viral-velocity alerts the topic holds (distinct ids), newest first.
    let on_topic: BTreeSet<String> = s
        .alerts(Duration::from_secs(2))
        .into_iter()
        .filter(|a| a.alert.alert_type == AlertType::ViralVelocity)
        .map(|a| a.alert.alert_id)
        .collect();
    assert!(on_topic.len() <= 1000, "the ranker keeps 1 000 alerts");
    let deadline = Instant::now() + DONE;
    loop {
        let al = get(&ranker, "/v1/alerts?type=VIRAL_VELOCITY&limit=1000");
        assert_eq!(al.status, 200, "{al:?}");
        let listed: BTreeSet<String> = al.json()["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                assert_eq!(a["type"], "VIRAL_VELOCITY");
                a["alert_id"].as_str().unwrap().to_string()
            })
            .collect();
        if listed == on_topic {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ranker lists {} viral alerts, the topic holds {}",
            listed.len(),
            on_topic.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let since = viral.iter().map(|a| a.detected_at).max().unwrap();
    let recent = get(
        &ranker,
        &format!("/v1/alerts?since={since}&type=VIRAL_VELOCITY"),
    )
    .json();
    assert!(
        recent["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["detected_at"].as_i64().unwrap() >= since)
    );

    // Malformed requests of each kind, on the ranker.
    for (path, status, needle) in [
        ("/v1/alerts?since=abc", 400, "since"),
        ("/v1/alerts?type=NOPE", 400, "not an alert type"),
        ("/v1/alerts?limit=0", 400, "out of range"),
        ("/v1/alerts?colour=red", 400, "unknown query parameter"),
        ("/v1/leaderboard?window=", 400, "window"),
        ("/v1/leaderboard?window=abc", 400, "integer"),
        ("/v1/videos/", 400, "empty"),
        ("/v1/videos/ab%zz", 400, "percent-encoding"),
        ("/v1/videos/%0A", 400, "control character"),
        ("/v1/videos/..", 400, "\"..\""),
        ("/v1/videos/a/b", 400, "'/'"),
        ("/v1/nope", 404, "no endpoint"),
    ] {
        let m = refused(&get(&ranker, path), status, path);
        assert!(m.contains(needle), "{path}: {m}");
    }
    refused(
        &http(&ranker.metrics, "POST", "/v1/alerts"),
        405,
        "POST alerts",
    );

    // The ranker asks the counters for a video (for its console): the owner's answer,
    // whichever counter it asked first; an untracked video is the owner's 404.
    let proxied = get(&ranker, &path);
    assert_eq!(proxied.status, 200, "{proxied:?}");
    let pj = proxied.json();
    assert_eq!(pj["served_by"], owner.metrics.as_str());
    assert_eq!(pj["video"]["events"], j["video"]["events"]);
    let m = refused(
        &get(&ranker, &format!("/v1/videos/{unknown}")),
        404,
        "an untracked video through the ranker",
    );
    assert!(m.contains("does not track"), "{m}");

    // The live stream delivered a board published after the subscription.
    let live = stream.join().unwrap().expect("a board on the live stream");
    let live = LeaderboardRecord::decode_json(live.as_bytes()).unwrap();
    assert!(boards.iter().any(|b| b.board == live.board));

    let metrics = a.metrics();
    assert!(metrics.sum(trendwatch_runtime::telemetry::API_REQUESTS, &[]) >= 10.0);
    eprintln!(
        "api: video {video} (partition {p}) answered by {}, redirected by {}; {} viral alerts listed by the ranker",
        owner.label,
        other.label,
        on_topic.len()
    );
    ranker.stop();
    a.stop();
    b.stop();
}

/// A topic fed by Java (or franz-go) producers: keys placed by murmur2. With
/// `topics.events_partitioner = "murmur2"` a counter looks for each video on the partition
/// those producers put it on, for videos on either member, and both say so on
/// `/v1/members`. The records are produced with librdkafka's `murmur2_random` (what our
/// publish sets for this configuration), and where they landed is checked against the
/// Java client's hash before anything is asked.
#[test]
fn a_murmur2_keyed_topic_is_queried_where_its_producers_put_each_video() {
    let _one_at_a_time = serial();
    let partitions = 4;
    let mut s = Scenario::new("api-murmur2", partitions);
    s.config.topics.events_partitioner = Partitioner::Murmur2;
    let records = encode(&workload(7, 12_000));
    let reference = replay(&s.config, &records, partitions);
    let a = s.start_counter("counter-a");
    let b = s.start_counter("counter-b");
    let (owned_a, owned_b) = settled(&a, &b, partitions);
    for c in [&a, &b] {
        let m = get(c, "/v1/members").json();
        assert_eq!(m["events_partitioner"], "murmur2", "{m}");
    }

    s.publish_raw(&records, None);
    // Every record is where murmur2 puts its key: each partition holds exactly the records
    // the Java client's placement gives it (CRC-32 would give other counts).
    let ends = partition_ends_by(Partitioner::Murmur2, &records, partitions);
    assert_ne!(ends, partition_ends(&records, partitions));
    assert_eq!(s.high_watermarks(&s.config.topics.events), ends);
    s.wait_committed(&ends, DONE);

    // Per partition, its busiest video that CRC-32 would have looked for elsewhere.
    let videos: BTreeSet<&[u8]> = records.iter().filter_map(|(k, _)| k.as_deref()).collect();
    let mut asked = BTreeSet::new();
    for p in 0..partitions {
        let (video, want) = videos
            .iter()
            .filter_map(|k| std::str::from_utf8(k).ok())
            .filter(|v| {
                partition_for(Partitioner::Murmur2, v.as_bytes(), partitions as u32) == p as u32
            })
            .filter(|v| {
                partition_for(Partitioner::Crc32, v.as_bytes(), partitions as u32) != p as u32
            })
            .filter_map(|v| Some((v, reference.states[&p].video_counts(v)?)))
            .max_by_key(|(v, c)| (c.events, std::cmp::Reverse(*v)))
            .unwrap_or_else(|| panic!("no video on partition {p}"));
        let owner = if owned_a.contains(&i64::from(p)) {
            &a
        } else {
            &b
        };
        // Asked of counter-a: its own partitions answered, the others redirected.
        let path = format!("/v1/videos/{video}");
        let mut answer = get(&a, &path);
        if answer.status == 307 {
            let location = answer.headers["location"].clone();
            let target = location.strip_prefix("http://").unwrap();
            let (host, rest) = target.split_once('/').unwrap();
            answer = http(host, "GET", &format!("/{rest}"));
        }
        assert_eq!(answer.status, 200, "{video} (partition {p}): {answer:?}");
        let j = answer.json();
        assert_eq!(j["partition"], p, "{j}");
        assert_eq!(j["served_by"], owner.metrics.as_str(), "{j}");
        assert_eq!(j["video"]["events"], want.events, "{video}: {j}");
        asked.insert(owner.label.clone());
    }
    assert_eq!(
        asked.len(),
        2,
        "videos on both members: {owned_a:?} / {owned_b:?}"
    );
    // A hostile id is refused before any partition is computed.
    let m = refused(&get(&b, "/v1/videos/%2E"), 400, "the id \".\"");
    assert!(m.contains("\".\""), "{m}");
    a.stop();
    b.stop();
}

#[test]
fn the_openapi_document_describes_every_route() {
    let text = std::fs::read_to_string(root().join("docs/openapi.yaml")).unwrap();
    let doc: Value = serde_norway::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().expect("paths");
    for route in ROUTES {
        let ops = paths
            .get(route.path)
            .unwrap_or_else(|| panic!("{} is not in docs/openapi.yaml", route.path));
        let op = &ops[route.method];
        assert!(
            op.is_object(),
            "{} {} is not in docs/openapi.yaml",
            route.method,
            route.path
        );
        assert!(op["responses"].is_object(), "{}: no responses", route.path);
        if route.path.starts_with("/v1/") {
            let tag = match route.serves {
                Serves::Counter => "counter",
                Serves::Ranker => "ranker",
                Serves::Every => "every service",
            };
            assert!(
                op["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x == tag)),
                "{}: tag it {tag:?}",
                route.path
            );
            // Bad requests are described, with the Problem schema.
            assert!(
                op["responses"]["400"].is_object() || route.path == "/v1/members",
                "{}: no 400",
                route.path
            );
        }
    }
    // And nothing is documented that no service serves.
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            assert!(
                ROUTES
                    .iter()
                    .any(|r| r.path == path && r.method == method.as_str()),
                "docs/openapi.yaml documents {method} {path}, which no service registers"
            );
        }
    }
    // Every schema a response refers to exists.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for r in text.match_indices("#/components/schemas/") {
        let name: String = text[r.0 + r.1.len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect();
        assert!(
            schemas.contains_key(&name),
            "schema {name} is referred to but missing"
        );
    }
}
