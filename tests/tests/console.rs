//! The web console end to end in headless Chromium (Debian's `chromium`, driven by
//! `tests/browser/console.js` through `scripts/browser.sh`): two counters and a ranker on
//! the local Apache Kafka, a workload that makes boards and viral-velocity alerts; the
//! console must show the board (with sparklines, which the ranker proxies from the
//! counters), the alert the replay of the same records predicts, and that video's chart
//! with its bars and alert mark; then, the rest of the episode published, the ENDED mark.
//! A second test restarts the ranker under an open console (`tests/browser/resync.js`): the
//! page must resynchronise. A third screenshots a backtest report's chart.
//!
//! Screenshots go to a temporary directory, or to `docs/img/` (the README shows them) when
//! `TRENDWATCH_SCREENSHOTS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use trendwatch_core::AlertType;
use trendwatch_tests::{
    CounterProcess, Scenario, encode, partition_ends, replay, root, serial, trendwatch_bin,
    workload,
};

const DONE: Duration = Duration::from_secs(180);

/// Where the screenshots go, and the directory to delete afterwards if it is a temporary one.
fn screenshot_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    if std::env::var("TRENDWATCH_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let dir = root().join("docs/img");
        std::fs::create_dir_all(&dir).unwrap();
        (dir, None)
    } else {
        let tmp = tempfile::tempdir().unwrap();
        (tmp.path().to_path_buf(), Some(tmp))
    }
}

/// Runs `scripts/browser.sh SCRIPT ARGS`: its one JSON line, asserted `ok`.
fn browser(script: &str, args: &[&str]) -> Value {
    let started = Instant::now();
    let out = Command::new(root().join("scripts/browser.sh"))
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let json = passed(script, &out, "");
    eprintln!(
        "console: {script} passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    json
}

/// The last JSON line a browser script printed, asserted `ok` and its exit status a
/// success; `context` is added to the failure message.
fn passed(script: &str, out: &std::process::Output, context: &str) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{script}: no JSON line\nstdout: {stdout}\nstderr: {stderr}"));
    assert!(
        out.status.success() && json["ok"] == true,
        "{script} failed ({}): {json:#}\nstderr: {stderr}{context}",
        out.status
    );
    json
}

/// A PNG of at least `min_width` × `min_height` pixels.
fn assert_png(path: &Path, min_width: u32, min_height: u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is no PNG",
        path.display()
    );
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert!(
        width >= min_width && height >= min_height,
        "{}: {width}×{height}",
        path.display()
    );
}

/// `GET path` from `addr`: status and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// Waits until `ready` holds for the ranker's answers, or fails with its log.
fn wait_until(ranker: &CounterProcess, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + DONE;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}\n{}", ranker.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_console_shows_the_board_an_alert_and_the_videos_chart() {
    let _one_at_a_time = serial();
    let partitions = 4;
    let s = Scenario::new("console", partitions);
    // The workload up to shortly after its first viral-velocity alert: the video's counter
    // still holds the buckets of its rise (a video keeps only its newest buckets), as it
    // would for a person opening the console while the video takes off.
    let events = workload(11, 60_000);
    let all = replay(&s.config, &encode(&events), partitions).alerts;
    let first = all
        .iter()
        .filter(|a| a.alert_type == AlertType::ViralVelocity)
        .min_by_key(|a| a.detected_at)
        .expect("the workload must make the engine fire")
        .clone();
    // Its episode's end, for the second look.
    let ended = all
        .iter()
        .find(|a| {
            a.alert_type == AlertType::ViralVelocityEnded
                && a.video_id == first.video_id
                && a.episode_start == first.episode_start
        })
        .expect("the episode ends within the workload")
        .clone();
    let cut = events
        .iter()
        .position(|e| e.event_time > first.detected_at + 30_000)
        .unwrap_or(events.len());
    let records = encode(&events[..cut]);
    let ends = partition_ends(&records, partitions);
    let reference = replay(&s.config, &records, partitions);
    let viral: Vec<_> = reference
        .alerts
        .iter()
        .filter(|a| a.alert_type == AlertType::ViralVelocity)
        .collect();
    // The page loads the newest 50 viral-velocity alerts: every one of these.
    assert!(viral.len() <= 50, "{} viral alerts", viral.len());
    let video = first.video_id.clone();
    assert!(
        viral.iter().any(|a| a.alert_id == first.alert_id),
        "the prefix makes the same alert"
    );

    let a = s.start_counter("counter-a");
    let b = s.start_counter("counter-b");
    let ranker = s.start_ranker("ranker");
    s.publish_raw(&records, None);
    s.wait_committed(&ends, DONE);

    // What the page will wait for is there: a board, the alert, and the video through the
    // ranker's proxy (it has read the counters' membership).
    let addr = ranker.metrics.clone();
    wait_until(&ranker, "no board on the ranker", || {
        get(&addr, "/v1/leaderboard").0 == 200
    });
    let alerts = format!("/v1/alerts?type=VIRAL_VELOCITY&video_id={video}");
    wait_until(&ranker, "the ranker lists no alert of the video", || {
        let (status, body) = get(&addr, &alerts);
        status == 200 && body.contains(&format!("\"video_id\":\"{video}\""))
    });
    let proxied = format!("/v1/videos/{video}");
    wait_until(&ranker, "the ranker does not proxy the video", || {
        get(&addr, &proxied).0 == 200
    });
    let (_, body) = get(&addr, &proxied);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["video"]["video_id"], video.as_str());
    let owners = [a.metrics.as_str(), b.metrics.as_str()];
    assert!(
        owners.contains(&answer["served_by"].as_str().unwrap()),
        "{answer}"
    );

    let (dir, _tmp) = screenshot_dir();
    let url = format!("http://{addr}");
    let out = browser(
        "console.js",
        &[
            "--url",
            &url,
            "--video",
            &video,
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    eprintln!("console: {out}");
    // Only same-origin requests are allowed to the page.
    let csp = out["csp"].as_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let board = &out["board"];
    assert!(board["rows"].as_u64().unwrap() >= 1, "{board}");
    assert!(board["sparklines"].as_u64().unwrap() >= 1, "{board}");
    assert!(board["alerts"].as_u64().unwrap() >= 1, "{board}");
    assert_eq!(board["status"], "live", "{board}");
    assert!(
        !board["sentence"].as_str().unwrap().is_empty(),
        "alerts show their sentence: {board}"
    );
    let page = &out["video"];
    assert_eq!(page["chart_video"], video.as_str(), "{page}");
    assert_eq!(
        page["hash"],
        format!("#/video/{video}").as_str(),
        "the alert links to its video"
    );
    assert!(page["bars"].as_u64().unwrap() >= 1, "{page}");
    assert!(page["alert_marks"].as_u64().unwrap() >= 1, "{page}");
    assert_eq!(page["baseline"], 1, "{page}");
    assert!(page["level"].as_u64().unwrap() >= 1, "{page}");
    // The level a corroborated alert's sentence names is drawn when it is the lower one.
    let vel = &answer["video"]["velocity"];
    let lower = vel["corroborated_expected"].as_f64().unwrap() < vel["expected"].as_f64().unwrap();
    assert_eq!(page["corroborated_level"], u64::from(lower), "{page} {vel}");
    assert_eq!(
        page["board_shown"], false,
        "the video page replaces the board: {page}"
    );
    assert!(page["alerts_listed"].as_u64().unwrap() >= 1, "{page}");
    assert_png(&dir.join("console-board.png"), 1000, 500);
    assert_png(&dir.join("console-video.png"), 1000, 500);

    // The rest of the episode, up to shortly after its end: the page shows the ENDED mark
    // beside the alert's.
    let end_cut = events
        .iter()
        .position(|e| e.event_time > ended.detected_at + 30_000)
        .unwrap_or(events.len());
    let rest = encode(&events[cut..end_cut]);
    s.publish_raw(&rest, None);
    let whole = encode(&events[..end_cut]);
    s.wait_committed(&partition_ends(&whole, partitions), DONE);
    let ends_listed = format!("/v1/alerts?type=VIRAL_VELOCITY_ENDED&video_id={video}");
    wait_until(
        &ranker,
        "the ranker lists no ENDED alert of the video",
        || {
            let (status, body) = get(&addr, &ends_listed);
            status == 200 && body.contains(&format!("\"alert_id\":\"{}\"", ended.alert_id))
        },
    );
    let out = browser(
        "console.js",
        &[
            "--url",
            &url,
            "--video",
            &video,
            "--out",
            dir.to_str().unwrap(),
            "--ended",
            "1",
            "--suffix",
            "-ended",
            "--shots",
            "video",
        ],
    );
    eprintln!("console: {out}");
    let page = &out["video"];
    assert!(page["ended_marks"].as_u64().unwrap() >= 1, "{page}");
    assert!(
        page["alert_marks"].as_u64().unwrap() >= 1
            || page["outside"].as_str().unwrap().contains("ALERT"),
        "the alert is marked, or named as older than the buckets held: {page}"
    );
    assert_png(&dir.join("console-video-ended.png"), 1000, 500);

    // The page's requests went through the ranker's proxy to the counters.
    let proxied_requests = ranker.metrics().sum(
        trendwatch_runtime::telemetry::API_REQUESTS,
        &[("route", "/v1/videos/{video_id}"), ("status", "200")],
    );
    assert!(proxied_requests >= 2.0, "{proxied_requests}");
    ranker.stop();
    a.stop();
    b.stop();
}

/// A person keeps the console open while the ranker restarts: the browser reconnects its
/// stream with the last event's id, the new ranker cannot resume another run's stream and
/// says `resync`, and the page reloads the board over REST and is live again. Fails if the
/// page ignores `resync` (it would keep the old run's board until the next window closes,
/// and ask for no board at all).
#[test]
fn the_console_reloads_the_board_when_the_ranker_restarts_under_it() {
    let _one_at_a_time = serial();
    let partitions = 2;
    let s = Scenario::new("console-resync", partitions);
    let events = workload(12, 40_000);
    let (early, late) = events.split_at(events.len() / 2);
    let counter = s.start_counter("counter");
    let ranker = s.start_ranker("ranker");
    let first = encode(early);
    s.publish_raw(&first, None);
    s.wait_committed(&partition_ends(&first, partitions), DONE);
    let addr = ranker.metrics.clone();
    wait_until(&ranker, "no board on the ranker", || {
        get(&addr, "/v1/leaderboard").0 == 200
    });

    let tmp = tempfile::tempdir().unwrap();
    let (ready, streamed, go) = (
        tmp.path().join("ready"),
        tmp.path().join("streamed"),
        tmp.path().join("go"),
    );
    let url = format!("http://{addr}");
    let page = Command::new(root().join("scripts/browser.sh"))
        .arg("resync.js")
        .args(["--url", &url, "--ready"])
        .arg(&ready)
        .arg("--streamed")
        .arg(&streamed)
        .arg("--go")
        .arg(&go)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut page = Some(page);
    let mut wait_for = |file: &Path, what: &str| {
        let deadline = Instant::now() + DONE;
        while !file.exists() {
            let exited = page.as_mut().unwrap().try_wait().unwrap().is_some();
            if exited || Instant::now() > deadline {
                let out = page.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "the page never {what}: {}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(&ready, "showed the live board");
    // More windows close: their boards reach the page over the stream, with ids.
    s.publish_raw(&encode(late), None);
    wait_for(&streamed, "got a board over the stream");

    ranker.stop();
    let ranker = s.start_ranker_at("ranker-again", &addr);
    std::fs::write(&go, b"").unwrap();
    let out = page.take().unwrap().wait_with_output().unwrap();
    let json = passed(
        "resync.js",
        &out,
        &format!("\nranker: {}", ranker.log_text()),
    );
    eprintln!("console: {json}");
    assert!(
        json["board_requests_after_restart"].as_u64().unwrap() >= 1,
        "{json}"
    );
    assert!(json["after"]["rows"].as_u64().unwrap() >= 1, "{json}");
    assert_eq!(json["after"]["status"], "live", "{json}");
    // The new ranker told the page so: the page's stream came back with an id of the
    // other run.
    let resyncs = ranker.metrics().sum(
        trendwatch_runtime::telemetry::API_SSE_RESUMES,
        &[("outcome", "other_run")],
    );
    assert!(resyncs >= 1.0, "{resyncs}\n{}", ranker.log_text());
    ranker.stop();
    counter.stop();
}

#[test]
fn a_backtest_reports_chart_is_screenshotted() {
    let _one_at_a_time = serial();
    let work = tempfile::tempdir().unwrap();
    let events = work.path().join("events.pb");
    let truth = work.path().join("truth.json");
    let report = work.path().join("report.html");
    let run = |args: &[&str]| {
        let out = Command::new(trendwatch_bin())
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "loadgen",
        "--out",
        events.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--videos",
        "2000",
        "--events",
        "60000",
        "--duration",
        "1h",
        "--episodes",
        "8",
        "--decoys",
        "3",
        "--seed",
        "9",
    ]);
    run(&[
        "replay",
        "--input",
        events.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--baseline",
        "poisson",
        "--report",
        report.to_str().unwrap(),
    ]);
    let (dir, _tmp) = screenshot_dir();
    let out = browser(
        "report.js",
        &[
            "--file",
            report.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    eprintln!("console: {out}");
    assert!(out["charts"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(out["picked"], "detected", "{out}");
    assert_png(&dir.join("report-chart.png"), 600, 150);
}
