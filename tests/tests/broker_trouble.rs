//! Broker trouble on librdkafka's mock cluster (two brokers: the events, state and
//! dead-letter topics on broker 1, the alert topic on broker 2): every broker down for
//! 41 seconds, failed fetch and commit requests, and a slow alert topic. The
//! counter must stay up, say it is not ready while it cannot make progress, carry on by
//! itself, keep its memory bounded, and end with the replay's counts and alerts — with the
//! idle rule on, so a watermark moved on while the brokers were away would show as
//! backlog counted late.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use trendwatch_runtime::telemetry as m;
use trendwatch_tests::{
    CounterProcess, Scenario, assert_fits_mock, assert_same_alerts, assert_same_counts, encode,
    flat_workload, partition_ends, replay, serial,
};

const DONE: Duration = Duration::from_secs(180);
/// How long every broker is down.
const OUTAGE: Duration = Duration::from_secs(41);

fn consumed(c: &CounterProcess) -> f64 {
    c.metrics().sum(m::RECORDS_CONSUMED, &[])
}

fn ready(c: &CounterProcess) -> bool {
    c.get("/readyz").is_some()
}

/// Waits until `done` holds, failing with how far publishing got (the events topic's high
/// watermarks) against how far the counter consumed, and the counter's log.
fn wait_progress(
    s: &Scenario,
    c: &CounterProcess,
    what: &str,
    done: impl Fn(&CounterProcess) -> bool,
) {
    let deadline = Instant::now() + DONE;
    while !done(c) {
        if Instant::now() > deadline {
            let published = s.high_watermarks(&s.config.topics.events);
            panic!(
                "[{}] waited {DONE:?} for {what}: the events topic holds {} records ({} of {} partitions answered), the counter consumed {}; log:\n{}",
                c.label,
                published.values().sum::<i64>(),
                published.len(),
                s.partitions,
                consumed(c),
                c.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_counter_rides_out_broker_outages_request_errors_and_a_slow_alert_topic() {
    let _one_at_a_time = serial();
    let partitions = 16;
    let (mut s, mut mock) = Scenario::on_mock("trouble", partitions, 2);
    s.config.counter.ack_timeout = Duration::from_secs(10);
    // The idle rule on, sharply: a partition silent for 20 s moves on, and a watermark
    // moved on during the 41 s outage would leave the first 16 s of the backlog's event
    // time behind it, late (a lateness of 5 s). Silence the counter cannot read through is
    // not idleness: it is held at 20 s and 40 s, so after the brokers return the partition
    // may go idle 19 s later at the earliest. (The workload's event time runs ~37 times
    // faster than the wall clock, so a genuine silence past the idle timeout — the
    // publisher reconnecting after the outage, about 5 s here — would make backlog late
    // too.)
    s.config.engine.windows.idle_timeout = Duration::from_secs(20);
    s.config.engine.windows.allowed_lateness = Duration::from_secs(5);
    s.config
        .kafka
        .insert("reconnect.backoff.max.ms".into(), "1000".into());
    let t = s.config.topics.clone();
    for topic in [&t.events, &t.state, &t.dlq] {
        mock.command(&format!("leader {topic} 1"));
    }
    mock.command(&format!("leader {} 2", t.alerts));
    let records = encode(&flat_workload(29, 120_000));
    // Records the mock deleted would be lost to the test, not to the counter.
    assert_fits_mock(&records, partitions);
    let ends = partition_ends(&records, partitions);
    let total = records.len() as f64;
    let reference = replay(&s.config, &records, partitions);
    // Published in three parts, one after the other (each acknowledged before the next
    // begins, so every partition keeps the replay's order): the first through the outage,
    // the second through the request errors, the third through the slow alert topic. One
    // publisher for the whole stream keeps queueing at its pace through the outage and
    // hands the backlog over when the brokers come back; when the counter had recovered
    // after the publisher's last record, it caught up at once and nothing was left to
    // publish, so the wait for progress through the request errors could never end (the
    // stall this test used to show after the outage).
    let (first, rest) = records.split_at(records.len() * 3 / 5);
    let (second, third) = rest.split_at(rest.len() / 2);

    let counter = s.start_counter("counter");
    counter.wait_for("readiness", DONE, ready);
    let publisher = s.publish_in_background(first, 5_000.0);
    wait_progress(&s, &counter, "a fifth of the stream", |c| {
        consumed(c) >= total / 5.0
    });

    // 1. Every broker down for 41 s: not ready, but alive; ready again by itself after.
    //    The publisher goes on queueing its part meanwhile.
    mock.command("down 1");
    mock.command("down 2");
    let down_at = Instant::now();
    counter.wait_for("not ready while the brokers are down", DONE, |c| !ready(c));
    let noticed = down_at.elapsed();
    std::thread::sleep(OUTAGE.saturating_sub(down_at.elapsed()));
    assert!(
        counter.get("/healthz").is_some(),
        "the process must stay up while the brokers are down"
    );
    let before = consumed(&counter);
    mock.command("up 1");
    mock.command("up 2");
    let up_at = Instant::now();
    wait_progress(&s, &counter, "progress after the outage", |c| {
        consumed(c) > before
    });
    counter.wait_for("ready again", DONE, ready);
    let recovered = up_at.elapsed();
    assert_eq!(publisher.join().unwrap().acknowledged, first.len() as u64);

    // 2. Failed fetches and commits while the second part arrives: a tenth of the stream
    //    (of the fifth still to come) must be consumed through them. (Not produce errors:
    //    the mock fails the next produce requests of any client, and with the publisher
    //    busy they land on it rather than on the counter.)
    mock.command("errors Fetch NOT_LEADER_FOR_PARTITION 10");
    mock.command("errors OffsetCommit COORDINATOR_NOT_AVAILABLE 5");
    let before = consumed(&counter);
    let publisher = s.publish_in_background(second, 5_000.0);
    wait_progress(&s, &counter, "progress through request errors", |c| {
        consumed(c) >= before + total / 10.0
    });
    assert_eq!(publisher.join().unwrap().acknowledged, second.len() as u64);

    // 3. A slow alert topic while the third part arrives: every answer of broker 2 takes
    //    400 ms for ten seconds.
    mock.command("rtt 2 400");
    let slow_at = Instant::now();
    let publisher = s.publish_in_background(third, 5_000.0);
    std::thread::sleep(Duration::from_secs(10).saturating_sub(slow_at.elapsed()));
    mock.command("rtt 2 0");
    assert_eq!(publisher.join().unwrap().acknowledged, third.len() as u64);

    s.wait_checkpointed(&ends, DONE, &counter);
    let metrics = counter.metrics();
    let peak = counter.peak_rss_bytes().unwrap_or(0);
    counter.stop();

    assert_eq!(
        metrics.sum(m::OFFSETS_SKIPPED, &[]),
        0.0,
        "no input may be skipped"
    );
    // After its last record each partition went idle and moved on: so does the reference.
    let states = s.checkpointed_states();
    let reference = reference.advanced_to(&s.config, &states);
    let videos = assert_same_counts(&states, &reference, &ends);
    let (distinct, duplicates) =
        assert_same_alerts(&s.alerts(Duration::from_secs(3)), &reference.alerts);
    assert!(
        metrics.sum(m::IDLE_HELD, &[]) > 0.0,
        "the outage should have held idle advances of silent partitions"
    );
    // Bounded: the state is a few thousand videos; librdkafka's queues are capped. A leak
    // or unbounded buffering through a 41 s outage would show here.
    assert!(
        peak < 512 * 1024 * 1024,
        "peak RSS {peak} bytes is not bounded"
    );
    eprintln!(
        "broker trouble: not ready {:.1} s after the brokers went down, progress again {:.1} s after they came back; {videos} videos and {distinct} alerts ({duplicates} re-sent) equal the replay over {total} records; checkpoints failed {} times, commit failures {}, delivery failures {}; peak RSS {:.1} MiB",
        noticed.as_secs_f64(),
        recovered.as_secs_f64(),
        metrics.sum(m::CHECKPOINTS, &[("result", "failed")]),
        metrics.sum(m::COMMIT_FAILURES, &[]),
        metrics.sum(m::DELIVERY_FAILURES, &[]),
        peak as f64 / (1024.0 * 1024.0)
    );
}
