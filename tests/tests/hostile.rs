//! Hostile input end to end on the local broker: a corpus of nasty records and floods goes
//! through a running counter, which must stay up, answer every record the way the replay
//! does (counted, de-duplicated, left untracked, or dead-lettered with the right reason),
//! keep its tracked videos under the configured cap, and never write a user id to its log
//! or its alerts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use trendwatch_config::ProcessingGuarantee;
use trendwatch_core::EventKind;
use trendwatch_proto::EventRecord;
use trendwatch_runtime::client::{TopicSpec, ensure_topics};
use trendwatch_runtime::deadletter;
use trendwatch_runtime::telemetry as m;
use trendwatch_tests::{
    RawRecord, Scenario, assert_same_alerts, assert_same_counts, bootstrap, partition_ends, replay,
    serial, workload,
};

const DONE: Duration = Duration::from_secs(120);
/// Tracked videos per partition in this test.
const CAP: u32 = 256;

fn encode(e: &EventRecord) -> RawRecord {
    let mut buf = Vec::new();
    e.encode_protobuf(&mut buf);
    (Some(e.video_id.as_bytes().to_vec()), buf)
}

fn like(id: String, video: String, user: usize, t: i64) -> EventRecord {
    EventRecord {
        event_id: id,
        creator_id: format!("c-{video}"),
        video_id: video,
        user_id: Some(format!("uid-SECRET-{user}")),
        kind: EventKind::Like,
        event_time: t,
    }
}

/// The nasty records: what each one is, and the record.
fn corpus(now: i64) -> Vec<(&'static str, RawRecord)> {
    let key = || Some(b"v-hostile".to_vec());
    let base = |id: &str| like(id.into(), "v-hostile".into(), 0, now - 30_000);
    let mut out = vec![
        (
            "a payload far above the limit",
            (key(), vec![0x5a; 900_000]),
        ),
        // Length-delimited field 1 claiming 2^31 bytes.
        (
            "a length beyond the record",
            (key(), vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x07, 1, 2, 3]),
        ),
        // Field 1 as a varint of eleven bytes.
        (
            "an overlong varint",
            (key(), {
                let mut v = vec![0x08];
                v.extend([0xff; 10]);
                v.push(0x01);
                v
            }),
        ),
        ("wire type 7", (key(), vec![0x0f, 0x00])),
        // Ten thousand nested group starts: a recursive decoder would blow its stack.
        ("deeply nested groups", (key(), vec![0x0b; 10_000])),
        ("a lone end-group tag", (key(), vec![0x0c])),
        ("empty bytes", (key(), Vec::new())),
        (
            "four bytes of garbage",
            (key(), vec![0xde, 0xad, 0xbe, 0xef]),
        ),
    ];
    // Ids that are not UTF-8, at the same length as a valid one.
    let (k, mut bytes) = encode(&base("AAAA"));
    let at = bytes.windows(4).position(|w| w == b"AAAA").unwrap();
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xfd, 0xfc]);
    out.push(("an event id that is not UTF-8", (k, bytes)));
    out.push((
        "an id above the length limit",
        encode(&like("long".into(), "v".repeat(300), 0, now - 30_000)),
    ));
    for (what, t) in [
        ("event time i64::MAX", i64::MAX),
        ("event time i64::MIN", i64::MIN),
        ("event time 0", 0),
        ("event time -1", -1),
    ] {
        out.push((
            what,
            encode(&like(format!("t{t}"), "v-hostile".into(), 0, t)),
        ));
    }
    out
}

#[test]
fn hostile_input_is_answered_record_by_record_and_memory_stays_capped() {
    let _one_at_a_time = serial();
    let partitions = 2;
    let mut s = Scenario::new("hostile", partitions);
    s.config.engine.capacity.max_videos = CAP;
    let now = trendwatch_runtime::wall_ms();

    let mut records: Vec<RawRecord> = Vec::new();
    // A workload with viral episodes, so alerts come out and can be checked for user ids.
    records.extend(trendwatch_tests::encode(&workload(5, 20_000)));
    let corpus = corpus(now);
    records.extend(corpus.iter().map(|(_, r)| r.clone()));
    // A flood of re-sent copies of one event.
    let copy = encode(&like("dup".into(), "v-dup".into(), 7, now - 20_000));
    records.extend(std::iter::repeat_n(copy, 2_000));
    // A flood of distinct videos, far more than the cap.
    for i in 0..20_000 {
        records.push(encode(&like(
            format!("flood-{i}"),
            format!("v-flood-{i}"),
            i,
            now - 15_000 + (i % 1_000) as i64,
        )));
    }

    // As big as the events topic takes (the broker's default limit is 1 048 588 bytes),
    // published by a producer allowed 1 MiB: its dead letter, with headers, is bigger than
    // the counter's producer may send (librdkafka's default 1 000 000), so it must be cut
    // to fit — sent whole it would be refused, and its partition rewound, forever.
    const HUGE: usize = 1_040_000;
    let huge: RawRecord = (Some(b"v-hostile".to_vec()), vec![0x5b; HUGE]);
    records.push(huge.clone());
    let ends = partition_ends(&records, partitions);
    let reference = replay(&s.config, &records, partitions);
    let rejected: u64 = reference.rejected.values().sum();
    // Every corpus record is refused; which reason is the replay's to say, and the service
    // must agree with it.
    assert_eq!(
        rejected,
        corpus.len() as u64 + 1,
        "{:?}",
        reference.rejected
    );

    let counter = s.start_counter("counter");
    s.publish_raw(&records[..records.len() - 1], None);
    // (Only the publisher is allowed the bigger record; the counter started without it.)
    s.config
        .kafka
        .insert("message.max.bytes".into(), "1048576".into());
    s.publish_raw(std::slice::from_ref(&huge), None);
    s.config.kafka.remove("message.max.bytes");
    s.wait_committed(&ends, DONE);
    counter.wait_for("the metrics", Duration::from_secs(10), |c| {
        c.metrics().sum(m::RECORDS_CONSUMED, &[]) >= records.len() as f64
    });
    let metrics = counter.metrics();
    let log = counter.log_text();
    let peak = counter.peak_rss_bytes().unwrap_or(0);
    counter.stop();

    for (reason, n) in &reference.rejected {
        assert_eq!(
            metrics.sum(m::EVENTS_REJECTED, &[("reason", reason)]),
            *n as f64,
            "{reason}"
        );
    }
    let dlq = s.read_topic(
        &s.config.topics.dlq,
        Some(rejected as usize),
        Duration::from_secs(5),
    );
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for d in &dlq {
        *reasons
            .entry(d.header(deadletter::REASON).unwrap())
            .or_default() += 1;
    }
    let want: BTreeMap<String, u64> = reference
        .rejected
        .iter()
        .map(|(r, n)| (r.to_string(), *n))
        .collect();
    assert_eq!(reasons, want, "dead letters by reason");
    assert!(
        dlq.iter().any(|d| d.payload.len() == 900_000),
        "the oversized record is dead-lettered whole"
    );
    let cut: Vec<_> = dlq
        .iter()
        .filter(|d| d.header(deadletter::TRUNCATED).is_some())
        .collect();
    assert_eq!(cut.len(), 1, "exactly the huge record is cut to fit");
    let note = cut[0].header(deadletter::TRUNCATED).unwrap();
    assert!(
        note.starts_with(&format!("value {HUGE} bytes, kept ")),
        "{note}"
    );
    assert!(
        cut[0].payload.len() < HUGE
            && cut[0].payload.len() > 990_000
            && huge.1.starts_with(&cut[0].payload),
        "the dead letter keeps the first {} of {HUGE} bytes",
        cut[0].payload.len()
    );
    assert_eq!(
        metrics.sum(m::PARTITION_REWINDS, &[]),
        0.0,
        "no partition may be rewound for a dead letter that cannot be sent"
    );

    // Counts, duplicates, untracked and evicted tallies equal the replay; the cap held.
    let states = s.checkpointed_states();
    let videos = assert_same_counts(&states, &reference, &ends);
    for (p, (_, state)) in &states {
        assert!(
            state.tracked_videos() <= CAP as usize,
            "partition {p} tracks {} videos over the cap {CAP}",
            state.tracked_videos()
        );
    }
    assert!(metrics.sum(m::TRACKED_VIDEOS, &[]) <= f64::from(CAP) * f64::from(partitions));
    assert_eq!(
        metrics.sum(m::EVENTS_DUPLICATE, &[]),
        reference
            .states
            .values()
            .map(|s| s.stats().duplicates as f64)
            .sum::<f64>()
    );
    let alerts = s.alerts(Duration::from_secs(2));
    let (distinct, _) = assert_same_alerts(&alerts, &reference.alerts);
    assert!(distinct > 0, "the episodes must alert");

    // User ids are personal data: never logged, never in an alert.
    assert!(!log.contains("SECRET"), "a user id reached the log:\n{log}");
    let raw_alerts = s.read_topic(&s.config.topics.alerts, None, Duration::from_secs(2));
    assert!(
        raw_alerts
            .iter()
            .all(|a| !String::from_utf8_lossy(&a.payload).contains("SECRET")),
        "a user id reached an alert"
    );
    eprintln!(
        "hostile: {} records ({} corpus, 2 000 copies of one event, 20 000 distinct videos against a cap of {CAP}): {videos} videos tracked at the end, {rejected} dead letters {:?}, {distinct} alerts; peak RSS {:.1} MiB",
        records.len(),
        corpus.len(),
        reference.rejected,
        peak as f64 / (1024.0 * 1024.0)
    );
}

#[test]
fn output_the_broker_refuses_for_good_stops_the_counter_with_the_reason() {
    refused_for_good(ProcessingGuarantee::AtLeastOnce);
}

/// The same in exactly-once mode: the refused record aborts its transaction, every round
/// the same way.
#[test]
fn in_exactly_once_mode_output_the_broker_refuses_for_good_stops_the_counter_too() {
    refused_for_good(ProcessingGuarantee::ExactlyOnce);
}

/// A dead letter the broker refuses for good (too big for its topic): the counter stops
/// after a few rounds with the reason instead of rewinding the partition forever, and
/// commits nothing past the record.
fn refused_for_good(guarantee: ProcessingGuarantee) {
    let _one_at_a_time = serial();
    // Topics of its own making (a scenario's are created with the counter's defaults).
    let mut s = Scenario::configured_on(bootstrap(), "refused", 1);
    s.config.counter.processing_guarantee = guarantee;
    // A dead-letter topic that takes records of at most 64 KiB, and an undecodable record
    // of 200 KB of noise: its dead letter fits the producer, the broker refuses it, and would again
    // on every rewind.
    ensure_topics(
        &s.config,
        &[TopicSpec {
            name: s.config.topics.dlq.clone(),
            partitions: 1,
            config: vec![("max.message.bytes".into(), "65536".into())],
        }],
    )
    .unwrap();
    let counter = s.start_counter("counter");
    // Bytes that do not compress (the topic's limit applies to the compressed batch).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    s.publish_raw(&[(Some(b"v-big".to_vec()), noise)], None);
    let (status, log) = counter.wait_exit(DONE);
    assert!(
        !status.success(),
        "the counter must fail, not go on: {status}"
    );
    assert!(
        log.contains("refused 3 checkpoint rounds in a row") && log.contains("max.message.bytes"),
        "the counter must say why it stopped:\n{log}"
    );
    // Nothing was committed past the record whose dead letter was never written.
    assert!(s.committed().get(&0).copied().unwrap_or(0) <= 0);
}
