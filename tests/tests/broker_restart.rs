//! The broker itself dies: the local Apache Kafka (this test binary's own) is killed with
//! SIGKILL mid-stream and started again on the same log dir and ports while the counter
//! runs and events keep being published. The counter rides it out: once the broker is
//! back, it finishes the stream, and its counts and alerts equal the replay.
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
    let deadline = Instant::now() + DONE;
    while s.committed_total() < total / 3 {
        assert!(
            Instant::now() < deadline,
            "no progress; log:\n{}",
            counter.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
