//! The client examples of `examples/` (Python, Java, Go) against the local Apache Kafka, run
//! as a user runs them, through `scripts/examples.sh`: per language, fresh topics and group, a
//! counter reading and writing the JSON form with the default detection configuration, the
//! example producer's workload, then the example alert consumer. The consumer must print the
//! VIRAL_VELOCITY alert of the workload's video, that alert must be the counter's own, and
//! the counter must have counted exactly the events the workload is made of, none late.
//!
//! `scripts/test.sh` runs `scripts/examples.sh --install` first, so the virtualenv, the
//! Maven build and the Go build are not done (and timed) inside these tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use trendwatch_cli::partitioner::{Partitioner, partition_for};
use trendwatch_core::{AlertType, EventKind};
use trendwatch_proto::files::Format;
use trendwatch_proto::{AlertRecord, InputFormat};
use trendwatch_runtime::telemetry as m;
use trendwatch_tests::{Scenario, root, serial};

/// Likes in the workload's burst (`--likes`): not the default, so the flag is exercised.
const LIKES: u64 = 40;
/// The workload (examples/README.md): 120 ten-second steps of one view on each of five
/// videos, then `LIKES` likes with four views each.
const EVENTS: u64 = 120 * 5 + LIKES * 5;
/// Of them, the target video's: its 120 views, the likes and their four views each.
const VIDEO_EVENTS: u64 = 120 + LIKES * 5;
/// How long the example consumer waits for its alert (it exits as soon as it has it): the
/// counter has counted every event by then, and fires on the burst's second like.
const ALERT_TIMEOUT_S: u32 = 60;

/// `scripts/examples.sh LANG PROGRAM ARGS...`, waited for.
fn example(lang: &str, program: &str, args: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(root().join("scripts/examples.sh"))
        .args([lang, program])
        .args(args)
        .output()
        .expect("running scripts/examples.sh");
    eprintln!(
        "[{lang}] {program}: {} after {:.1} s; stderr:\n{}",
        out.status,
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn smoke(lang: &str) {
    let _one_at_a_time = serial();
    let mut s = Scenario::new(&format!("examples-{lang}"), 3);
    s.config.counter.input_format = InputFormat::Json;
    s.config.counter.output_format = Format::Json;
    // Every example producer places keys by murmur2 (Java's and franz-go's default; the
    // Python one sets librdkafka's murmur2_random), so the counter looks for a video there.
    s.config.topics.events_partitioner = Partitioner::Murmur2;
    let video = format!("v-example-{lang}");
    let bootstrap = s.bootstrap().to_string();
    let counter = s.start_counter(lang);

    let likes = LIKES.to_string();
    let produced = example(
        lang,
        "produce",
        &[
            "--bootstrap",
            &bootstrap,
            "--topic",
            &s.config.topics.events,
            "--video",
            &video,
            "--likes",
            &likes,
        ],
    );
    assert!(
        produced.status.success(),
        "[{lang}] the example producer failed"
    );

    // The counter counted the workload exactly: every event, none late, rejected or
    // duplicated (each language's producer is idempotent and its ids unique).
    counter.wait_for(
        "the counter to count the workload",
        Duration::from_secs(60),
        |c| c.metrics().sum(m::RECORDS_CONSUMED, &[]) >= EVENTS as f64,
    );
    let metrics = counter.metrics();
    let sum = |name: &str, labels: &[(&str, &str)]| metrics.sum(name, labels);
    let counted = |k: EventKind| sum(m::EVENTS_COUNTED, &[("kind", k.as_str())]);
    let report = format!(
        "[{lang}] consumed {}, counted {} likes and {} views, late {}, rejected {}, duplicate {}",
        sum(m::RECORDS_CONSUMED, &[]),
        counted(EventKind::Like),
        counted(EventKind::View),
        sum(m::EVENTS_LATE, &[]),
        sum(m::EVENTS_REJECTED, &[]),
        sum(m::EVENTS_DUPLICATE, &[])
    );
    assert_eq!(sum(m::RECORDS_CONSUMED, &[]), EVENTS as f64, "{report}");
    assert_eq!(counted(EventKind::Like), LIKES as f64, "{report}");
    assert_eq!(
        counted(EventKind::View),
        (EVENTS - LIKES) as f64,
        "{report}"
    );
    assert_eq!(sum(m::EVENTS_LATE, &[]), 0.0, "{report}");
    assert_eq!(sum(m::EVENTS_REJECTED, &[]), 0.0, "{report}");
    assert_eq!(sum(m::EVENTS_DUPLICATE, &[]), 0.0, "{report}");
    // Asked for the video, the counter answers from the partition the producer put it on
    // (with CRC-32 it would look on another for the Python example's id).
    let path = format!("/v1/videos/{video}");
    let answer = counter.get(&path).unwrap_or_else(|| {
        panic!(
            "[{lang}] GET {path} was not answered 200; counter log:\n{}",
            counter.log_text()
        )
    });
    let j: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let p = partition_for(Partitioner::Murmur2, video.as_bytes(), 3);
    assert_eq!(j["partition"], p, "[{lang}] {j}");
    assert_eq!(j["video"]["events"], VIDEO_EVENTS, "[{lang}] {j}");

    let timeout = ALERT_TIMEOUT_S.to_string();
    let read = example(
        lang,
        "alerts",
        &[
            "--bootstrap",
            &bootstrap,
            "--topic",
            &s.config.topics.alerts,
            "--video",
            &video,
            "--timeout",
            &timeout,
        ],
    );
    assert!(
        read.status.success(),
        "[{lang}] the example consumer saw no alert; counter log:\n{}",
        counter.log_text()
    );
    // Its stdout is the alert as the counter wrote it, one JSON line.
    let stdout = String::from_utf8(read.stdout).unwrap();
    let line = stdout
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("[{lang}] the consumer printed nothing"));
    let printed = AlertRecord::decode_json(line.as_bytes())
        .unwrap_or_else(|e| panic!("[{lang}] the consumer printed {line:?}, not an alert: {e}"));
    assert_eq!(printed.alert.alert_type, AlertType::ViralVelocity, "{line}");
    assert_eq!(printed.alert.video_id, video, "{line}");
    assert_eq!(printed.alert.creator_id, "creator-example", "{line}");
    counter.stop();

    // The printed alert is the counter's own, and the workload made only its video fire.
    let alerts = s.alerts(Duration::from_secs(2));
    assert!(
        alerts
            .iter()
            .any(|a| a.alert == printed.alert && a.emitted_at == printed.emitted_at),
        "[{lang}] the printed alert is not on the alert topic"
    );
    assert!(
        alerts.iter().all(|a| a.alert.video_id == video),
        "[{lang}] alerts for other videos: {alerts:?}"
    );
    eprintln!(
        "[{lang}] {EVENTS} events counted, {} alerts on the topic; the consumer printed tier {}",
        alerts.len(),
        printed.alert.tier
    );
}

#[test]
fn python_example_produces_events_the_counter_counts_and_reads_back_their_alert() {
    smoke("python");
}

#[test]
fn java_example_produces_events_the_counter_counts_and_reads_back_their_alert() {
    smoke("java");
}

#[test]
fn go_example_produces_events_the_counter_counts_and_reads_back_their_alert() {
    smoke("go");
}
