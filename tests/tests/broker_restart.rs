//! The broker itself goes away: the local Apache Kafka (this test binary's own) is killed
//! with SIGKILL mid-stream and started again on the same log dir and ports, or frozen
//! (SIGSTOP) for longer than the idle timeout, while the counter runs and events keep
//! being published. The counter rides it out: once the broker is back, it finishes the
//! stream, and its counts and alerts equal the replay; a partition it could not read was
//! never treated as idle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use trendwatch_runtime::telemetry as m;
use trendwatch_tests::{
    Scenario, assert_same_alerts, assert_same_counts, broker, encode, partition_ends, replay,
    serial, workload,
};

const DONE: Duration = Duration::from_secs(180);

#[test]
fn the_counter_rides_out_a_broker_killed_and_restarted_mid_stream() {
    let _one_at_a_time = serial();
    let s = Scenario::new("broker-restart", 4);
    let records = encode(&workload(23, 90_000));
    let ends = partition_ends(&records, 4);
    let total: i64 = ends.values().sum();
    let reference = replay(&s.config, &records, 4);

    let counter = s.start_counter("counter");
    // About 20 s of publishing, so the outage lands in the middle of the stream.
    let publisher = s.publish_in_background(&records, 5_000.0);
    s.wait_committed_total(total / 3, DONE, &counter);
    let killed_at = s.committed_total();
    let outage = Instant::now();
    broker().kill();
    // The user sees it: /readyz turns not ready while no broker is up.
    counter.wait_for(
        "not ready while the broker is down",
        Duration::from_secs(60),
        |c| c.get("/readyz").is_none(),
    );
    broker().restart();
    let down_for = outage.elapsed();
    counter.wait_for("ready again", DONE, |c| c.get("/readyz").is_some());
    let summary = publisher.join().unwrap();
    assert_eq!(
        summary.acknowledged,
        records.len() as u64,
        "the publisher lost records across the restart: {summary}"
    );
    s.wait_committed(&ends, DONE);
    let metrics = counter.metrics();
    counter.stop();
    assert!(
        killed_at < total,
        "the broker must die mid-stream ({killed_at} of {total})"
    );

    let videos = assert_same_counts(&s.checkpointed_states(), &reference, &ends);
    let (distinct, duplicates) =
        assert_same_alerts(&s.alerts(Duration::from_secs(3)), &reference.alerts);
    eprintln!(
        "broker kill -9 at {killed_at} of {total} committed records, down {:.1} s (restart included); {videos} videos and {distinct} alerts equal the replay ({duplicates} re-sent with the same id); checkpoints failed meanwhile: {}, offset gaps: {}",
        down_for.as_secs_f64(),
        metrics.sum(m::CHECKPOINTS, &[("result", "failed")]),
        metrics.sum(m::OFFSET_GAPS, &[])
    );
}

/// A frozen broker with the session outliving the freeze: the counter keeps its partitions
/// and cannot read them. Their silence is not idleness: had the watermark moved on with
/// the clock for the 19 s past the idle timeout, the backlog published meanwhile would come
/// in behind it and be counted late (lateness 5 s here). The silence is held at 18 s and
/// 36 s, so after the broker answers again a partition may go idle 17 s later at the
/// earliest (the workload's event time runs ~200 times faster than the wall clock: a
/// genuine silence would make backlog late too).
#[test]
fn a_frozen_broker_is_an_outage_not_an_idle_partition() {
    let _one_at_a_time = serial();
    let mut s = Scenario::new("broker-frozen", 4);
    s.config.engine.windows.idle_timeout = Duration::from_secs(18);
    s.config.engine.windows.allowed_lateness = Duration::from_secs(5);
    // The group session outlives the freeze, so the counter keeps its assignment through
    // it (the broker's group.max.session.timeout.ms allows up to 30 min).
    s.config
        .kafka
        .insert("session.timeout.ms".into(), "120000".into());
    s.config
        .kafka
        .insert("heartbeat.interval.ms".into(), "3000".into());
    let records = encode(&workload(31, 90_000));
    let ends = partition_ends(&records, 4);
    let total: i64 = ends.values().sum();
    let reference = replay(&s.config, &records, 4);

    let counter = s.start_counter("counter");
    let publisher = s.publish_in_background(&records, 5_000.0);
    s.wait_committed_total(total / 4, DONE, &counter);
    broker().pause();
    std::thread::sleep(Duration::from_secs(37));
    broker().resume();
    let summary = publisher.join().unwrap();
    assert_eq!(summary.acknowledged, records.len() as u64, "{summary}");
    s.wait_committed(&ends, DONE);
    let metrics = counter.metrics();
    counter.stop();

    let states = s.checkpointed_states();
    let reference = reference.advanced_to(&s.config, &states);
    let videos = assert_same_counts(&states, &reference, &ends);
    let (distinct, duplicates) =
        assert_same_alerts(&s.alerts(Duration::from_secs(3)), &reference.alerts);
    let held = metrics.sum(m::IDLE_HELD, &[]);
    assert!(held > 0.0, "the freeze must have held idle advances");
    eprintln!(
        "broker frozen 37 s (idle timeout 18 s, session 120 s): {videos} videos and {distinct} alerts equal the replay ({duplicates} re-sent); idle advances held {held}, rebalances {}",
        metrics.sum(m::REBALANCES, &[])
    );
}
