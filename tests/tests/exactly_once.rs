//! Exactly-once mode on librdkafka's mock cluster (the local broker has no transactions):
//! the counter runs with a transactional producer while transactions fail and the process
//! is killed, and its checkpointed counts and alerts are compared with the replay.
//!
//! What the mock cluster cannot show: it accepts the transaction protocol but keeps no
//! transaction state — EndTxn only checks the producer id and epoch, fetches report no
//! aborted transactions and a last stable offset equal to the high watermark, and
//! TxnOffsetCommit stores nothing (librdkafka 2.12.1, `rdkafka_mock_handlers.c`). Records
//! of aborted transactions stay visible to a `read_committed` reader there, so this test
//! checks what must hold on any broker — exact counts, every alert, re-sent alerts equal
//! to the first copy — and that the aborts and the fencing really happened; "each alert
//! seen once" needs a broker with transactions (docs/GUARANTEES.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use trendwatch_config::ProcessingGuarantee;
use trendwatch_runtime::telemetry as m;
use trendwatch_tests::{
    CounterProcess, Scenario, assert_fits_mock, assert_same_alerts, assert_same_counts, encode,
    flat_workload, partition_ends, replay, serial,
};

const DONE: Duration = Duration::from_secs(120);

fn wait_consumed(c: &CounterProcess, at_least: f64) {
    c.wait_for("progress", DONE, |c| {
        c.metrics().sum(m::RECORDS_CONSUMED, &[]) >= at_least
    });
}

#[test]
fn exactly_once_mode_survives_failed_transactions_fencing_and_kills() {
    let _one_at_a_time = serial();
    let partitions = 16;
    let (mut s, mut mock) = Scenario::on_mock("eos", partitions, 1);
    s.config.counter.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    // One stable id for every life of the instance, as a deployment would configure it.
    s.config.counter.transactional_id = format!("tx-{}", s.config.counter.group_id);
    s.config.counter.checkpoint_interval = Duration::from_secs(2);
    let records = encode(&flat_workload(1, 120_000));
    assert_fits_mock(&records, partitions);
    let ends = partition_ends(&records, partitions);
    let total: i64 = ends.values().sum();
    let reference = replay(&s.config, &records, partitions);

    let first = s.start_counter("life-1");
    let publisher = s.publish_in_background(&records, 6_000.0);
    wait_consumed(&first, total as f64 / 5.0);
    // An abortable failure: the transaction is aborted and every partition goes back to
    // its last committed checkpoint.
    mock.command("errors EndTxn UNKNOWN_PRODUCER_ID 1");
    first.wait_for("an aborted transaction", DONE, |c| {
        c.metrics().sum(m::TRANSACTIONS, &[("result", "aborted")]) >= 1.0
    });
    let consumed = first.metrics().sum(m::RECORDS_CONSUMED, &[]);
    wait_consumed(&first, consumed + total as f64 / 10.0);
    first.kill();

    let second = s.start_counter("life-2");
    wait_consumed(&second, total as f64 / 10.0);
    // A fatal one: the producer is fenced, a new one takes over from the checkpoints.
    mock.command("errors EndTxn PRODUCER_FENCED 1");
    second.wait_for("a fenced producer replaced", DONE, |c| {
        c.metrics().sum(m::TRANSACTIONS, &[("result", "fenced")]) >= 1.0
    });
    assert_eq!(publisher.join().unwrap().acknowledged, records.len() as u64);
    // The mock keeps no committed offsets: completion is read from the checkpoints.
    s.wait_checkpointed(&ends, DONE, &second);
    let metrics = second.metrics();
    second.stop();

    let videos = assert_same_counts(&s.checkpointed_states(), &reference, &ends);
    let (distinct, duplicates) =
        assert_same_alerts(&s.alerts(Duration::from_secs(3)), &reference.alerts);
    assert!(metrics.sum(m::TRANSACTIONS, &[("result", "committed")]) >= 1.0);
    eprintln!(
        "exactly-once on the mock cluster: 1 abort, 1 fencing, 1 kill over {total} records; {videos} videos and {distinct} alerts equal the replay ({duplicates} copies visible on the mock, which does not hide aborted records)"
    );
}
