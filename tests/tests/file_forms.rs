//! The same workload written as length-delimited protobuf and as JSON lines replays to the
//! same alerts and counts, over one or several partitions; a partitioned replay equals the
//! engine run by hand on each partition's share; alert files round-trip in both forms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use trendwatch_cli::partitioner::{Partitioner, partition_for};
use trendwatch_cli::replay::{replay, write_alerts};
use trendwatch_config::Config;
use trendwatch_core::{Alert, PartitionState, Verdict};
use trendwatch_loadgen::{Workload, generate};
use trendwatch_proto::AlertRecord;
use trendwatch_proto::EventRecord;
use trendwatch_proto::files::{EventFileWriter, read_alert_file};

/// The engine by hand: one state per partition of `partitions`, each fed the events
/// `config.topics.events_partitioner` puts on it, in order; its alerts partition by
/// partition and the events counted.
fn by_hand(events: &[EventRecord], config: &Config, partitions: u32) -> (Vec<Alert>, u64) {
    let mut states: Vec<PartitionState> = (0..partitions)
        .map(|_| PartitionState::new(config.engine.clone()).unwrap())
        .collect();
    let mut outs: Vec<Vec<Alert>> = states.iter().map(|_| Vec::new()).collect();
    let mut counted = 0u64;
    for e in events {
        let p = partition_for(
            config.topics.events_partitioner,
            e.video_id.as_bytes(),
            partitions,
        ) as usize;
        if states[p].apply(&e.as_ref(), &mut outs[p]) == Verdict::Counted {
            counted += 1;
        }
    }
    for (s, o) in states.iter_mut().zip(outs.iter_mut()) {
        s.finish(o);
    }
    (outs.into_iter().flatten().collect(), counted)
}

/// `events` written to `path` (its extension picks the form).
fn write_events(path: &std::path::Path, events: &[EventRecord]) {
    let mut w = EventFileWriter::create(path).unwrap();
    for e in events {
        w.write(e).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn a_murmur2_replay_splits_videos_as_the_java_client_places_them() {
    let workload = Workload {
        videos: 2_000,
        events: 30_000,
        duration_ms: 1_800_000,
        episodes: 4,
        decoys_per_class: 2,
        seed: 5,
        ..Workload::default()
    };
    let (events, _truth) = generate(&workload, |_, _| {});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.pb");
    write_events(&path, &events);
    let mut config = Config::default();
    config.topics.events_partitioner = Partitioner::Murmur2;
    let murmur2 = replay(&path, None, 4, &config).unwrap();
    assert_eq!(murmur2.totals.partitioner, "murmur2");
    let (want, counted) = by_hand(&events, &config, 4);
    assert!(!want.is_empty());
    assert_eq!(murmur2.alerts, want);
    assert_eq!(counted, murmur2.totals.counted.values().sum::<u64>());
    // The CRC-32 split is another one: the alerts come out in another partition order.
    let crc32 = replay(&path, None, 4, &Config::default()).unwrap();
    assert_ne!(crc32.alerts, murmur2.alerts);
}

#[test]
fn protobuf_and_json_files_replay_identically_and_match_the_engine() {
    let workload = Workload {
        videos: 3_000,
        events: 80_000,
        duration_ms: 3_600_000,
        episodes: 6,
        decoys_per_class: 3,
        seed: 11,
        ..Workload::default()
    };
    let (events, _truth) = generate(&workload, |_, _| {});
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let mut results = Vec::new();
    for name in ["events.pb", "events.jsonl"] {
        let path = dir.path().join(name);
        write_events(&path, &events);
        results.push(replay(&path, None, 3, &config).unwrap());
    }
    let (pb, json) = (&results[0], &results[1]);
    assert_eq!(pb.alerts, json.alerts);
    assert_eq!(pb.totals.counted, json.totals.counted);
    assert_eq!(
        (pb.totals.late, pb.totals.duplicates),
        (json.totals.late, json.totals.duplicates)
    );
    assert!(!pb.alerts.is_empty());

    // The engine by hand, one state per partition, fed each partition's events in order.
    let (by_hand, counted) = by_hand(&events, &config, 3);
    assert_eq!(by_hand, pb.alerts);
    assert_eq!(counted, pb.totals.counted.values().sum::<u64>());
    assert_eq!(pb.totals.partitioner, "crc32");

    // Alert files in both forms hold the same records.
    for name in ["alerts.pb", "alerts.jsonl"] {
        let path = dir.path().join(name);
        write_alerts(&path, &pb.alerts).unwrap();
        let back = read_alert_file(&path).unwrap();
        assert_eq!(back.len(), pb.alerts.len());
        for (r, a) in back.iter().zip(&pb.alerts) {
            assert_eq!(r, &AlertRecord::from_alert(a, r.emitted_at));
        }
    }
}
