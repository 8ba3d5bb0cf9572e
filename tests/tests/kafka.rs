//! The counter service against the local Apache Kafka (started once for this binary):
//! every scenario compares what the service wrote — alerts, checkpointed per-video counts,
//! dead letters, metrics — with the replay of the same records through the engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prost::Message as _;
use trendwatch_config::GroupProtocol;
use trendwatch_core::{AlertType, EventKind};
use trendwatch_proto::EventRecord;
use trendwatch_runtime::deadletter;
use trendwatch_runtime::telemetry as m;
use trendwatch_tests::{
    Scenario, assert_same_alerts, assert_same_counts, encode, partition_ends, replay, serial,
    trendwatch_bin, workload,
};

const DONE: Duration = Duration::from_secs(120);

#[test]
fn happy_path_counts_alerts_and_metrics_equal_the_replay() {
    let _one_at_a_time = serial();
    let s = Scenario::new("happy", 3);
    let events = workload(7, 60_000);
    let records = encode(&events);
    let ends = partition_ends(&records, 3);
    let reference = replay(&s.config, &records, 3);
    assert!(
        reference
            .alerts
            .iter()
            .any(|a| a.alert_type == AlertType::ViralVelocity),
        "the workload must make the engine fire"
    );

    let counter = s.start_counter("counter");
    s.publish_events(&events, None);
    s.wait_committed(&ends, DONE);
    counter.wait_for("the metrics to catch up", Duration::from_secs(10), |c| {
        c.metrics().sum(m::RECORDS_CONSUMED, &[]) >= records.len() as f64
    });
    let metrics = counter.metrics();
    counter.stop();

    let videos = assert_same_counts(&s.checkpointed_states(), &reference, &ends);
    let alerts = s.alerts(Duration::from_secs(2));
    let (distinct, duplicates) = assert_same_alerts(&alerts, &reference.alerts);
    assert_eq!(duplicates, 0, "an uninterrupted run sends each alert once");
    eprintln!("happy: {videos} videos, {distinct} alerts equal the replay");

    // `alerts tail` shows the same alerts: as NDJSON, and as table lines with a filter.
    let tail = |extra: &[&str]| {
        let out = std::process::Command::new(trendwatch_bin())
            .args(["alerts", "tail", "--config"])
            .arg(s.config_file())
            .args(["--from-beginning", "--idle-exit", "3s"])
            .args(extra)
            .env_remove("TRENDWATCH_BOOTSTRAP_SERVERS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json = tail(&["--json"]);
    let mut tailed: Vec<String> = json
        .lines()
        .map(|l| {
            trendwatch_proto::AlertRecord::decode_json(l.as_bytes())
                .unwrap()
                .alert
                .alert_id
        })
        .collect();
    let mut sent: Vec<String> = alerts.iter().map(|a| a.alert.alert_id.clone()).collect();
    tailed.sort();
    sent.sort();
    assert_eq!(tailed, sent);
    let viral = tail(&["--type", "viral_velocity"]);
    let want = alerts
        .iter()
        .filter(|a| a.alert.alert_type == AlertType::ViralVelocity)
        .count();
    assert_eq!(viral.lines().count(), want);
    assert!(
        viral
            .lines()
            .all(|l| l.contains("VIRAL_VELOCITY ") && l.contains("baseline"))
    );

    // The metrics say what happened.
    assert_eq!(metrics.sum(m::RECORDS_CONSUMED, &[]), records.len() as f64);
    let mut counted = [0u64; 5];
    let (mut late, mut duplicates) = (0, 0);
    for state in reference.states.values() {
        for (i, c) in state.stats().counted.iter().enumerate() {
            counted[i] += c;
        }
        late += state.stats().late;
        duplicates += state.stats().duplicates;
    }
    for kind in EventKind::ALL {
        assert_eq!(
            metrics.sum(m::EVENTS_COUNTED, &[("kind", kind.as_str())]),
            counted[kind.index()] as f64,
            "{kind:?}"
        );
    }
    assert_eq!(metrics.sum(m::EVENTS_LATE, &[]), late as f64);
    assert_eq!(metrics.sum(m::EVENTS_DUPLICATE, &[]), duplicates as f64);
    assert!(
        late > 0 && duplicates > 0,
        "the workload has late and duplicate events"
    );
    assert_eq!(metrics.sum(m::EVENTS_REJECTED, &[]), 0.0);
    for t in [AlertType::ViralVelocity, AlertType::Trending] {
        let want = reference
            .alerts
            .iter()
            .filter(|a| a.alert_type == t)
            .count();
        assert_eq!(
            metrics.sum(m::ALERTS_EMITTED, &[("type", t.as_str())]),
            want as f64,
            "{t:?}"
        );
    }
    assert_eq!(
        metrics.types.get(m::ALERTS_EMITTED).map(String::as_str),
        Some("counter")
    );
    assert_eq!(metrics.sum(m::ASSIGNED_PARTITIONS, &[]), 3.0);
    assert!(metrics.sum(m::CHECKPOINTS, &[("result", "ok")]) >= 3.0);
    assert!(metrics.sum(m::TRACKED_VIDEOS, &[]) >= videos as f64);
    assert!(metrics.sum(&format!("{}_count", m::ALERT_LATENCY), &[]) >= distinct as f64);
    assert!(metrics.sum(&format!("{}_count", m::RESTORE_DURATION), &[]) >= 1.0);
    assert_eq!(metrics.sum(m::READY, &[]), 1.0);
}

#[test]
fn restart_mid_stream_loses_and_doubles_nothing() {
    let _one_at_a_time = serial();
    let s = Scenario::new("restart", 3);
    let events = workload(11, 90_000);
    let records = encode(&events);
    let ends = partition_ends(&records, 3);
    let total: i64 = ends.values().sum();
    let reference = replay(&s.config, &records, 3);

    let first = s.start_counter("first");
    let publisher = s.publish_in_background(&records, 25_000.0);
    s.wait_committed_total(total / 3, DONE, &first);
    let stopped_at = s.committed_total();
    first.stop();
    let second = s.start_counter("second");
    assert_eq!(publisher.join().unwrap().acknowledged, records.len() as u64);
    s.wait_committed(&ends, DONE);
    second.stop();
    assert!(
        stopped_at < total,
        "the first instance must stop mid-stream"
    );

    let videos = assert_same_counts(&s.checkpointed_states(), &reference, &ends);
    let (distinct, duplicates) =
        assert_same_alerts(&s.alerts(Duration::from_secs(2)), &reference.alerts);
    eprintln!(
        "restart at {stopped_at}/{total} records: {videos} videos and {distinct} alerts equal the replay ({duplicates} re-sent with the same id)"
    );
}

/// A second instance joins mid-stream and leaves again; the result is the replay's.
fn join_and_leave(protocol: GroupProtocol) {
    let _one_at_a_time = serial();
    let mut s = Scenario::new(&format!("rebalance-{}", protocol.as_str()), 4);
    s.use_group_protocol(protocol);
    let events = workload(13, 90_000);
    let records = encode(&events);
    let ends = partition_ends(&records, 4);
    let total: i64 = ends.values().sum();
    let reference = replay(&s.config, &records, 4);

    let a = s.start_counter("a");
    let publisher = s.publish_in_background(&records, 15_000.0);
    s.wait_committed_total(total / 5, DONE, &a);
    let b = s.start_counter("b");
    b.wait_for("b to own partitions", Duration::from_secs(60), |b| {
        b.metrics().sum(m::ASSIGNED_PARTITIONS, &[]) >= 1.0
    });
    let joined_at = s.committed_total();
    s.wait_committed_total(joined_at + total / 5, DONE, &b);
    let a_while_shared = a.metrics().sum(m::ASSIGNED_PARTITIONS, &[]);
    let b_processed = b.metrics().sum(m::RECORDS_CONSUMED, &[]);
    b.stop();
    let left_at = s.committed_total();
    let summary = publisher.join().unwrap();
    assert_eq!(summary.acknowledged, records.len() as u64);
    s.wait_committed(&ends, DONE);
    let a_metrics = a.metrics();
    a.stop();
    assert!(
        b_processed > 0.0,
        "b must have processed records while it was a member"
    );
    assert!(
        (1.0..4.0).contains(&a_while_shared),
        "a owned {a_while_shared} of 4 partitions while b was a member"
    );
    let assigns = a_metrics.sum(m::REBALANCES, &[("kind", "assign")]);
    let revokes = a_metrics.sum(m::REBALANCES, &[("kind", "revoke")]);
    match protocol {
        // Eager: b's arrival and departure each take everything away from a and give it
        // back.
        GroupProtocol::Classic => assert!(assigns >= 3.0, "a saw {assigns} assignments"),
        // Incremental: a gives up only what moves to b and gets it back when b leaves.
        GroupProtocol::Consumer => {
            assert!(
                assigns >= 2.0 && revokes >= 1.0,
                "a saw {assigns} assignments, {revokes} revokes"
            )
        }
    }

    let videos = assert_same_counts(&s.checkpointed_states(), &reference, &ends);
    let (distinct, duplicates) =
        assert_same_alerts(&s.alerts(Duration::from_secs(2)), &reference.alerts);
    eprintln!(
        "rebalance ({}): b joined at {joined_at}, left at {left_at} of {total} records, processed {b_processed}; a saw {assigns} assignments and {revokes} revokes; {videos} videos and {distinct} alerts equal the replay ({duplicates} re-sent); offset gaps healed by a: {}",
        protocol.as_str(),
        a_metrics.sum(m::OFFSET_GAPS, &[])
    );
}

#[test]
fn a_second_instance_joins_and_leaves_without_changing_the_result() {
    join_and_leave(GroupProtocol::Classic);
}

#[test]
fn under_the_consumer_group_protocol_a_second_instance_joins_and_leaves_incrementally() {
    join_and_leave(GroupProtocol::Consumer);
}

/// Static membership: a member killed and restarted with the same `group.instance.id`
/// within the session timeout gets its partitions back, and the other member notices
/// nothing (no revoke, no new assignment, its partitions never change).
#[test]
fn a_static_member_restarted_gets_its_partitions_back_without_a_rebalance() {
    let _one_at_a_time = serial();
    let mut s = Scenario::new("static", 4);
    // The restart (process start, restore) must fit in the session.
    s.config
        .kafka
        .insert("session.timeout.ms".into(), "30000".into());
    s.config
        .kafka
        .insert("heartbeat.interval.ms".into(), "1000".into());
    let events = workload(17, 60_000);
    let records = encode(&events);
    let ends = partition_ends(&records, 4);
    let total: i64 = ends.values().sum();
    let reference = replay(&s.config, &records, 4);
    let start = |label: &str, instance: &str| {
        s.start_counter_with(
            label,
            &[("TRENDWATCH__COUNTER__GROUP_INSTANCE_ID", instance)],
        )
    };
    let a = start("a-1", "counter-a");
    let b = start("b", "counter-b");
    let both =
        |c: &trendwatch_tests::CounterProcess| c.metrics().sum(m::ASSIGNED_PARTITIONS, &[]) == 2.0;
    a.wait_for("a to own 2 partitions", Duration::from_secs(60), both);
    b.wait_for("b to own 2 partitions", Duration::from_secs(60), both);
    let publisher = s.publish_in_background(&records, 10_000.0);
    s.wait_committed_total(total / 4, DONE, &a);
    let before = b.metrics();
    let b_rebalances = |m: &trendwatch_tests::Metrics| {
        (
            m.sum(m::REBALANCES, &[("kind", "assign")]),
            m.sum(m::REBALANCES, &[("kind", "revoke")]),
        )
    };
    let killed_at = s.committed_total();
    a.kill();
    let a = start("a-2", "counter-a");
    a.wait_for(
        "the restarted a to own its 2 partitions",
        Duration::from_secs(60),
        both,
    );
    // b keeps its two partitions all along.
    let deadline = Instant::now() + DONE;
    while s.committed_total() < total {
        let m = b.metrics();
        assert_eq!(
            m.sum(m::ASSIGNED_PARTITIONS, &[]),
            2.0,
            "b's assignment changed while a restarted; log:\n{}",
            b.log_text()
        );
        assert_eq!(b_rebalances(&m), b_rebalances(&before), "b saw a rebalance");
        assert!(
            Instant::now() < deadline,
            "no progress after the restart; log:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(publisher.join().unwrap().acknowledged, records.len() as u64);
    s.wait_committed(&ends, DONE);
    let after = b.metrics();
    assert_eq!(
        b_rebalances(&after),
        b_rebalances(&before),
        "b saw a rebalance"
    );
    a.stop();
    b.stop();
    let videos = assert_same_counts(&s.checkpointed_states(), &reference, &ends);
    let (distinct, duplicates) =
        assert_same_alerts(&s.alerts(Duration::from_secs(2)), &reference.alerts);
    eprintln!(
        "static membership: a killed at {killed_at} of {total} and restarted with its id; b kept its 2 partitions with no revoke or assignment ({:?} before and after); {videos} videos and {distinct} alerts equal the replay ({duplicates} re-sent)",
        b_rebalances(&after)
    );
}

fn event(id: &str, video: &str, kind: EventKind, t: i64) -> EventRecord {
    EventRecord {
        event_id: id.into(),
        video_id: video.into(),
        creator_id: format!("c-{video}"),
        user_id: Some("u1".into()),
        kind,
        event_time: t,
    }
}

fn pb(e: &trendwatch_proto::pb::EngagementEvent) -> Vec<u8> {
    e.encode_to_vec()
}

#[test]
fn bad_input_goes_to_the_dead_letter_topic_and_good_input_is_counted() {
    let _one_at_a_time = serial();
    let mut s = Scenario::new("badinput", 2);
    // Late events go to a topic of their own when one is configured (the counter creates it).
    s.config.topics.late = format!("late-{}", s.config.topics.events);
    let now = trendwatch_runtime::wall_ms();
    let good_event = |i: usize| {
        event(
            &format!("e{i}"),
            &format!("v{}", i % 7),
            EventKind::Like,
            now - 60_000 + i as i64,
        )
    };
    let base = good_event(0).to_pb();
    // (key, value, the reason it must be refused for, if any)
    type Sent = (Option<Vec<u8>>, Vec<u8>, Option<&'static str>);
    let mut records: Vec<Sent> = Vec::new();
    let mut good = 0;
    for i in 0..200 {
        let e = good_event(i);
        let mut buf = Vec::new();
        e.encode_protobuf(&mut buf);
        records.push((Some(e.video_id.into_bytes()), buf, None));
        good += 1;
        match i % 20 {
            3 => records.push((
                Some(b"vx".to_vec()),
                vec![0xff, 0xff, 0xff, 0x07, 0x01],
                Some("undecodable"),
            )),
            7 => records.push((
                Some(b"vx".to_vec()),
                pb(&trendwatch_proto::pb::EngagementEvent {
                    event_id: String::new(),
                    ..base.clone()
                }),
                Some("missing_event_id"),
            )),
            9 => records.push((
                Some(b"vx".to_vec()),
                pb(&trendwatch_proto::pb::EngagementEvent {
                    video_id: String::new(),
                    event_id: format!("m{i}"),
                    ..base.clone()
                }),
                Some("missing_video_id"),
            )),
            11 => records.push((
                Some(b"vx".to_vec()),
                pb(&trendwatch_proto::pb::EngagementEvent {
                    kind: 42,
                    event_id: format!("k{i}"),
                    ..base.clone()
                }),
                Some("unknown_kind"),
            )),
            13 => records.push((
                Some(b"vx".to_vec()),
                pb(&trendwatch_proto::pb::EngagementEvent {
                    event_time: now + 86_400_000,
                    event_id: format!("f{i}"),
                    ..base.clone()
                }),
                Some("time_in_future"),
            )),
            15 => records.push((
                Some(b"vx".to_vec()),
                pb(&trendwatch_proto::pb::EngagementEvent {
                    event_time: 1_000,
                    event_id: format!("o{i}"),
                    ..base.clone()
                }),
                Some("time_before_min"),
            )),
            17 => records.push((Some(b"vx".to_vec()), vec![b'x'; 70_000], Some("too_large"))),
            _ => {}
        }
    }
    // Valid, but an hour behind the watermark: late, not rejected.
    for i in 0..3 {
        let e = event(&format!("late{i}"), "v1", EventKind::Like, now - 3_600_000);
        let mut buf = Vec::new();
        e.encode_protobuf(&mut buf);
        records.push((Some(e.video_id.into_bytes()), buf, None));
    }
    let raw: Vec<(Option<Vec<u8>>, Vec<u8>)> = records
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    let ends = partition_ends(&raw, 2);
    let reference = replay(&s.config, &raw, 2);
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, _, reason) in &records {
        if let Some(r) = reason {
            *expected.entry(r).or_default() += 1;
        }
    }
    assert_eq!(
        reference.rejected, expected,
        "the reference agrees on the reasons"
    );

    let counter = s.start_counter("counter");
    s.publish_raw(&raw, None);
    s.wait_committed(&ends, DONE);
    counter.wait_for("the metrics", Duration::from_secs(10), |c| {
        c.metrics().sum(m::RECORDS_CONSUMED, &[]) >= raw.len() as f64
    });
    let metrics = counter.metrics();
    counter.stop();

    let rejected: u64 = expected.values().sum();
    let dlq = s.read_topic(
        &s.config.topics.dlq,
        Some(rejected as usize),
        Duration::from_secs(5),
    );
    assert_eq!(dlq.len() as u64, rejected);
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for d in &dlq {
        let reason = d.header(deadletter::REASON).unwrap();
        *seen.entry(reason.clone()).or_default() += 1;
        assert_eq!(
            d.header(deadletter::SOURCE_TOPIC).as_deref(),
            Some(s.config.topics.events.as_str())
        );
        let p: i32 = d
            .header(deadletter::SOURCE_PARTITION)
            .unwrap()
            .parse()
            .unwrap();
        let offset: usize = d
            .header(deadletter::SOURCE_OFFSET)
            .unwrap()
            .parse()
            .unwrap();
        // The original key and bytes, found where the headers say they came from.
        let originals: Vec<&Sent> = records
            .iter()
            .filter(|(k, _, _)| {
                trendwatch_cli::partitioner::partition_for(
                    trendwatch_cli::partitioner::Partitioner::Crc32,
                    k.as_deref().unwrap_or_default(),
                    2,
                ) as i32
                    == p
            })
            .collect();
        let (key, bytes, why) = originals[offset];
        assert_eq!(&d.payload, bytes);
        assert_eq!(&d.key, key);
        assert_eq!(why.map(str::to_string), Some(reason));
        assert!(!d.header(deadletter::ERROR).unwrap().is_empty());
    }
    let seen: BTreeMap<&str, u64> = seen.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(seen, expected);
    for (reason, n) in &expected {
        assert_eq!(
            metrics.sum(m::EVENTS_REJECTED, &[("reason", reason)]),
            *n as f64,
            "{reason}"
        );
        assert_eq!(
            metrics.sum(m::DLQ_RECORDS, &[("reason", reason)]),
            *n as f64,
            "{reason}"
        );
    }
    assert_eq!(metrics.sum(m::EVENTS_COUNTED, &[]), good as f64);
    assert_eq!(metrics.sum(m::EVENTS_LATE, &[]), 3.0);
    assert_eq!(metrics.sum(m::LATE_RECORDS, &[]), 3.0);
    let late = s.read_topic(&s.config.topics.late, Some(3), Duration::from_secs(5));
    assert_eq!(late.len(), 3);
    for l in &late {
        assert_eq!(l.header(deadletter::REASON).as_deref(), Some("late"));
        assert_eq!(l.key.as_deref(), Some(b"v1".as_slice()));
    }
    assert_same_counts(&s.checkpointed_states(), &reference, &ends);
}

/// Records framed as Confluent's `ProtobufSerializer` writes them (magic byte 0, the schema
/// id big-endian, the message indexes `[0]` — short form `00` or explicit `02 00` — then
/// the protobuf) are counted by a counter whose `input_format` is `confluent-protobuf`;
/// framing it cannot take goes to the DLQ with its own reason.
#[test]
fn confluent_framed_records_are_counted_and_bad_frames_dead_lettered() {
    let _one_at_a_time = serial();
    let mut s = Scenario::new("confluent", 2);
    s.config.counter.input_format = trendwatch_proto::InputFormat::ConfluentProtobuf;
    s.config.validation.allowed_schema_ids = vec![7];
    let now = trendwatch_runtime::wall_ms();
    let frame = |id: u32, indexes: &[u8], body: &[u8]| {
        let mut f = vec![0u8];
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(indexes);
        f.extend_from_slice(body);
        f
    };
    type Sent = (Option<Vec<u8>>, Vec<u8>, Option<&'static str>);
    let mut records: Vec<Sent> = Vec::new();
    let mut good = 0u64;
    for i in 0..300 {
        let e = event(
            &format!("e{i}"),
            &format!("v{}", i % 5),
            EventKind::Like,
            now - 60_000 + i as i64,
        );
        let mut body = Vec::new();
        e.encode_protobuf(&mut body);
        let key = Some(e.video_id.clone().into_bytes());
        let indexes: &[u8] = if i % 2 == 0 { &[0x00] } else { &[0x02, 0x00] };
        records.push((key.clone(), frame(7, indexes, &body), None));
        good += 1;
        match i % 30 {
            4 => records.push((key, body, Some("no_magic_byte"))),
            9 => records.push((key, frame(8, &[0x00], &body), Some("schema_id_not_allowed"))),
            14 => records.push((
                key,
                frame(7, &[0x02, 0x02], &body),
                Some("wrong_message_type"),
            )),
            19 => records.push((key, vec![0x00, 0x00, 0x07], Some("bad_framing"))),
            _ => {}
        }
    }
    let raw: Vec<(Option<Vec<u8>>, Vec<u8>)> = records
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, _, reason) in &records {
        if let Some(r) = reason {
            *expected.entry(r).or_default() += 1;
        }
    }
    let ends = partition_ends(&raw, 2);
    let reference = replay(&s.config, &raw, 2);
    assert_eq!(
        reference.rejected, expected,
        "the reference agrees on the reasons"
    );

    let counter = s.start_counter("counter");
    s.publish_raw(&raw, None);
    s.wait_committed(&ends, DONE);
    counter.wait_for("the metrics", Duration::from_secs(10), |c| {
        c.metrics().sum(m::RECORDS_CONSUMED, &[]) >= raw.len() as f64
    });
    let metrics = counter.metrics();
    counter.stop();

    assert_eq!(metrics.sum(m::EVENTS_COUNTED, &[]), good as f64);
    let rejected: u64 = expected.values().sum();
    let dlq = s.read_topic(
        &s.config.topics.dlq,
        Some(rejected as usize),
        Duration::from_secs(5),
    );
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for d in &dlq {
        *seen
            .entry(d.header(deadletter::REASON).unwrap_or_default())
            .or_default() += 1;
        // The original bytes, framing included.
        assert!(records.iter().any(|(_, v, _)| *v == d.payload));
    }
    let seen: BTreeMap<&str, u64> = seen.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(seen, expected);
    for (reason, n) in &expected {
        assert_eq!(
            metrics.sum(m::DLQ_RECORDS, &[("reason", reason)]),
            *n as f64,
            "{reason}"
        );
    }
    assert_same_counts(&s.checkpointed_states(), &reference, &ends);
}

#[test]
fn an_idle_partition_still_ends_its_episodes() {
    let _one_at_a_time = serial();
    let mut s = Scenario::new("idle", 1);
    let w = &mut s.config.engine;
    w.windows.bucket = Duration::from_secs(1);
    w.windows.velocity_window = Duration::from_secs(5);
    w.windows.trending_slot = Duration::from_secs(5);
    w.windows.trending_window = Duration::from_secs(30);
    w.windows.allowed_lateness = Duration::from_secs(1);
    w.windows.dedup_horizon = Duration::from_secs(2);
    w.windows.idle_timeout = Duration::from_secs(2);
    w.velocity.baseline_half_life = Duration::from_secs(30);
    // Short scan windows only: this test is about episodes ending, not about detection.
    w.velocity.scan_windows = [1, 2, 5].map(Duration::from_secs).to_vec();
    w.velocity.warmup = Duration::from_secs(20);
    w.velocity.cooldown = Duration::from_secs(5);
    w.velocity.clear_after = 2;
    w.trending.warmup = Duration::from_secs(60);
    w.trending.baseline_half_life = Duration::from_secs(60);
    w.trending.cooldown = Duration::from_secs(10);
    s.config.validate().unwrap();

    // A minute of one like per second, then ten seconds of thirty per second; then silence.
    let t0 = trendwatch_runtime::wall_ms() - 120_000;
    let mut events = Vec::new();
    for sec in 0..60 {
        events.push(event(
            &format!("b{sec}"),
            "hot",
            EventKind::Like,
            t0 + sec * 1000,
        ));
    }
    for sec in 60..70 {
        for j in 0..30 {
            events.push(event(
                &format!("s{sec}-{j}"),
                "hot",
                EventKind::Like,
                t0 + sec * 1000 + j * 30,
            ));
        }
    }
    let records = encode(&events);
    let reference = replay(&s.config, &records, 1);
    assert!(
        reference
            .alerts
            .iter()
            .any(|a| a.alert_type == AlertType::ViralVelocity),
        "{:#?}",
        reference.alerts
    );
    assert!(
        !reference
            .alerts
            .iter()
            .any(|a| a.alert_type == AlertType::ViralVelocityEnded)
    );

    let counter = s.start_counter("counter");
    s.publish_raw(&records, None);
    let published = Instant::now();
    counter.wait_for("VIRAL_VELOCITY_ENDED", Duration::from_secs(60), |c| {
        c.metrics()
            .sum(m::ALERTS_EMITTED, &[("type", "VIRAL_VELOCITY_ENDED")])
            >= 1.0
    });
    let took = published.elapsed();
    counter.stop();
    let alerts = s.alerts(Duration::from_secs(2));
    let fired = alerts
        .iter()
        .find(|a| a.alert.alert_type == AlertType::ViralVelocity)
        .unwrap();
    let ended = alerts
        .iter()
        .find(|a| a.alert.alert_type == AlertType::ViralVelocityEnded)
        .unwrap();
    assert_eq!(ended.alert.episode_start, fired.alert.episode_start);
    assert!(ended.alert.detected_at > fired.alert.detected_at);
    eprintln!("idle: the episode ended {took:?} after the last event was published");
}

/// The partitions whose lag an instance reports.
fn lag_partitions(c: &trendwatch_tests::CounterProcess) -> Vec<String> {
    let mut got: Vec<String> = c
        .metrics()
        .samples
        .get(m::CONSUMER_LAG)
        .map(|v| {
            v.iter()
                .filter_map(|(labels, _)| labels.get("partition").cloned())
                .collect()
        })
        .unwrap_or_default();
    got.sort();
    got
}

#[test]
fn gauges_leave_with_their_partition_and_a_member_without_any_says_so() {
    let _one_at_a_time = serial();
    let s = Scenario::new("owners", 2);
    let records = encode(&workload(41, 4_000));
    s.publish_raw(&records, None);
    let a = s.start_counter("a");
    a.wait_for("both partitions' lag", DONE, |c| {
        lag_partitions(c).len() == 2
    });
    assert_eq!(a.metrics().sum(m::UNASSIGNED_SECONDS, &[]), 0.0);
    // A second member takes one partition: the first stops reporting it (not a 0 that
    // would say "caught up" for a partition it no longer reads).
    let b = s.start_counter("b");
    b.wait_for("a partition of its own", DONE, |c| {
        c.metrics().sum(m::ASSIGNED_PARTITIONS, &[]) == 1.0
    });
    let moved = Instant::now();
    a.wait_for("the moved partition's gauges to leave", DONE, |c| {
        lag_partitions(c).len() == 1
    });
    let left_after = moved.elapsed();
    assert_ne!(
        lag_partitions(&a),
        lag_partitions(&b),
        "each reports its own"
    );
    // A third member on two partitions: one of the three gets none, and says for how long.
    let c = s.start_counter("c");
    let members = [&a, &b, &c];
    let spare_of = || {
        members.iter().position(|p| {
            let m = p.metrics();
            m.sum(m::UNASSIGNED_SECONDS, &[]) > 5.0 && m.sum(m::ASSIGNED_PARTITIONS, &[]) == 0.0
        })
    };
    let deadline = Instant::now() + DONE;
    let spare = loop {
        if let Some(i) = spare_of() {
            break members[i];
        }
        assert!(
            Instant::now() < deadline,
            "no member says it has been without partitions; c:\n{}",
            c.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    spare.wait_for("its gauges of partitions it had to leave", DONE, |p| {
        lag_partitions(p).is_empty()
    });
    assert_eq!(spare.metrics().sum(m::EVENTS_PARTITIONS, &[]), 2.0);
    eprintln!(
        "owners: a revoked partition's gauges left {:.1} s after it moved; member {} without partitions reports {:.0} s",
        left_after.as_secs_f64(),
        spare.label,
        spare.metrics().sum(m::UNASSIGNED_SECONDS, &[])
    );
    c.stop();
    b.stop();
    a.stop();
}

/// A member frozen past its session (6 s) while a second one takes its partitions over: when
/// it thaws, its assignment is lost — it must release the partitions without checkpointing
/// them over the new owner's, rejoin, and the run end as the replay.
#[test]
fn a_member_frozen_past_its_session_rejoins_without_shadowing_the_new_owner() {
    let _one_at_a_time = serial();
    let s = Scenario::new("zombie", 4);
    let records = encode(&workload(43, 90_000));
    let ends = partition_ends(&records, 4);
    let total: i64 = ends.values().sum();
    let reference = replay(&s.config, &records, 4);
    let a = s.start_counter("a");
    let b = s.start_counter("b");
    let owns = |n: f64| {
        move |c: &trendwatch_tests::CounterProcess| {
            c.metrics().sum(m::ASSIGNED_PARTITIONS, &[]) == n
        }
    };
    a.wait_for("a to own 2 partitions", DONE, owns(2.0));
    b.wait_for("b to own 2 partitions", DONE, owns(2.0));
    let publisher = s.publish_in_background(&records, 5_000.0);
    s.wait_committed_total(total / 4, DONE, &a);
    a.pause();
    b.wait_for("b to take every partition over", DONE, owns(4.0));
    // Let b work on them (and checkpoint) before a thaws.
    std::thread::sleep(Duration::from_secs(3));
    a.resume();
    a.wait_for("a to notice its assignment was lost", DONE, |c| {
        c.metrics().sum(m::REBALANCES, &[("kind", "lost")]) >= 1.0
    });
    let summary = publisher.join().unwrap();
    assert_eq!(summary.acknowledged, records.len() as u64, "{summary}");
    s.wait_committed(&ends, DONE);
    let log = a.log_text();
    b.stop();
    a.stop();
    assert!(
        log.contains("assignment lost: releasing without a checkpoint"),
        "a must say it released a lost assignment:\n{log}"
    );
    let states = s.checkpointed_states();
    let reference = reference.advanced_to(&s.config, &states);
    let videos = assert_same_counts(&states, &reference, &ends);
    let (distinct, duplicates) =
        assert_same_alerts(&s.alerts(Duration::from_secs(2)), &reference.alerts);
    eprintln!(
        "zombie: a frozen past its session, b took over, a thawed and released its lost assignment; {videos} videos and {distinct} alerts ({duplicates} re-sent) equal the replay"
    );
}

/// A group with committed offsets whose checkpoints are gone (the state topic recreated or
/// emptied, or another deployment's) must not start empty at the committed offset as if
/// nothing came before: the counter stops and names the partition. The documented way
/// out, `counter.on_missing_checkpoint = "start-empty"`, goes on from the committed
/// offsets with an empty state, counted in a metric.
#[test]
fn committed_offsets_without_a_checkpoint_stop_the_counter_until_told_to_start_empty() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let _one_at_a_time = serial();
    let s = Scenario::new("missing", 2);
    let records = encode(&workload(5, 6_000));
    let ends = partition_ends(&records, 2);
    s.publish_raw(&records, None);
    // The group committed offsets, but no checkpoint of it exists on the state topic.
    let committed = BTreeMap::from([(0, 100_i64), (1, 200_i64)]);
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", s.bootstrap())
        .set("group.id", &s.config.counter.group_id)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &committed {
        assert!(ends[p] > *o, "partition {p} holds only {} records", ends[p]);
        tpl.add_partition_offset(&s.config.topics.events, *p, Offset::Offset(*o))
            .unwrap();
    }
    group.assign(&tpl).unwrap();
    group.commit(&tpl, CommitMode::Sync).unwrap();
    drop(group);

    let (status, log) = s.start_counter("refuses").wait_exit(DONE);
    assert!(!status.success(), "the counter must stop; log:\n{log}");
    assert!(
        log.contains("holds no checkpoint of it") && log.contains("on_missing_checkpoint"),
        "the error must say what is missing and the way out; log:\n{log}"
    );

    let counter = s.start_counter_with(
        "starts-empty",
        &[("TRENDWATCH__COUNTER__ON_MISSING_CHECKPOINT", "start-empty")],
    );
    s.wait_checkpointed(&ends, DONE, &counter);
    let missing = counter.metrics().sum(m::CHECKPOINTS_MISSING, &[]);
    counter.stop();
    assert_eq!(missing, 2.0, "both partitions counted as missing");
    // Counted from the committed offsets on: every record after them, none before.
    for (p, (_, state)) in s.checkpointed_states() {
        let st = state.stats();
        let seen = st.counted.iter().sum::<u64>() + st.duplicates + st.late + st.untracked;
        assert_eq!(
            seen as i64,
            ends[&p] - committed[&p],
            "partition {p}: records processed after the committed offset"
        );
    }
}
