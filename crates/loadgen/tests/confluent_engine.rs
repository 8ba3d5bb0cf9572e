//! Records from Confluent's serializers are counted, not dead-lettered: a generated
//! workload (episodes, decoys, disorder, late events, duplicates) fed to the engine
//! Confluent-framed gives the same counts, tallies and alerts as fed bare, in protobuf and
//! JSON, with and without a schema-id allow-list — the per-record path of the counter and
//! of `replay` (`decode_in`, `validate`, `PartitionState::apply`), without a broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use trendwatch_core::{Alert, EngineConfig, PartitionState, PartitionStats};
use trendwatch_loadgen::{Workload, generate};
use trendwatch_proto::files::Format;
use trendwatch_proto::{EventRecord, InputFormat, ValidationConfig, decode_in};

const SCHEMA_ID: u32 = 100_042;

fn workload() -> Vec<EventRecord> {
    let w = Workload {
        videos: 2_000,
        events: 60_000,
        duration_ms: 40 * 60_000,
        episodes: 6,
        decoys_per_class: 3,
        ..Workload::default()
    };
    generate(&w, |_, _| {}).0
}

/// Each event as a record of `format`; protobuf frames alternate the short (`0x00`) and the
/// explicit (`0x02 0x00`) form of message indexes `[0]`.
fn records(events: &[EventRecord], format: InputFormat) -> Vec<Vec<u8>> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut out = Vec::new();
            if format.is_confluent() {
                out.push(0);
                out.extend_from_slice(&SCHEMA_ID.to_be_bytes());
            }
            match format {
                InputFormat::ConfluentProtobuf if i % 2 == 0 => out.push(0),
                InputFormat::ConfluentProtobuf => out.extend_from_slice(&[2, 0]),
                _ => {}
            }
            match format.encoding() {
                Format::Protobuf => e.encode_protobuf(&mut out),
                Format::Json => out.extend_from_slice(e.to_json().as_bytes()),
            }
            out
        })
        .collect()
}

struct Outcome {
    stats: PartitionStats,
    alerts: Vec<Alert>,
    rejected: BTreeMap<&'static str, u64>,
}

fn run(records: &[Vec<u8>], format: InputFormat, cfg: &ValidationConfig) -> Outcome {
    let now = 1_767_571_200_000 + 86_400_000;
    let mut state = PartitionState::new(EngineConfig::default()).unwrap();
    let mut alerts = Vec::new();
    let mut rejected = BTreeMap::new();
    for r in records {
        let outcome = decode_in(r, format, cfg)
            .and_then(|d| d.validate(now, cfg).map(|ev| state.apply(&ev, &mut alerts)));
        if let Err(rej) = outcome {
            *rejected.entry(rej.reason()).or_default() += 1;
        }
    }
    state.finish(&mut alerts);
    Outcome {
        stats: state.stats().clone(),
        alerts,
        rejected,
    }
}

#[test]
fn framed_records_count_and_alert_exactly_as_bare_ones() {
    let events = workload();
    let any = ValidationConfig::default();
    let listed = ValidationConfig {
        allowed_schema_ids: vec![7, SCHEMA_ID],
        ..ValidationConfig::default()
    };
    let bare = run(
        &records(&events, InputFormat::Protobuf),
        InputFormat::Protobuf,
        &any,
    );
    // The workload is worth comparing: everything counted, episodes fired and ended.
    assert!(bare.rejected.is_empty(), "{:?}", bare.rejected);
    assert!(
        bare.stats.counted.iter().sum::<u64>() > 50_000,
        "{:?}",
        bare.stats
    );
    assert!(
        bare.stats.duplicates > 0 && bare.stats.late > 0,
        "{:?}",
        bare.stats
    );
    assert!(bare.alerts.len() >= 4, "{} alerts", bare.alerts.len());
    for (format, cfg) in [
        (InputFormat::ConfluentProtobuf, &any),
        (InputFormat::ConfluentProtobuf, &listed),
        (InputFormat::Json, &any),
        (InputFormat::ConfluentJson, &any),
        (InputFormat::ConfluentJson, &listed),
    ] {
        let got = run(&records(&events, format), format, cfg);
        let label = format!("{} with {:?}", format.as_str(), cfg.allowed_schema_ids);
        assert!(got.rejected.is_empty(), "{label}: {:?}", got.rejected);
        assert_eq!(got.stats, bare.stats, "{label}");
        assert_eq!(got.alerts, bare.alerts, "{label}");
    }
}

#[test]
fn a_schema_id_outside_the_allow_list_is_refused_record_by_record() {
    let events = &workload()[..5_000];
    let other = ValidationConfig {
        allowed_schema_ids: vec![SCHEMA_ID + 1],
        ..ValidationConfig::default()
    };
    for format in [InputFormat::ConfluentProtobuf, InputFormat::ConfluentJson] {
        let got = run(&records(events, format), format, &other);
        assert_eq!(
            got.rejected,
            BTreeMap::from([("schema_id_not_allowed", events.len() as u64)]),
            "{}",
            format.as_str()
        );
        assert_eq!(got.stats.counted, [0; 5]);
        assert!(got.alerts.is_empty());
    }
    // And bare records under a confluent format are all refused as unframed.
    let bare = records(events, InputFormat::Protobuf);
    let got = run(
        &bare,
        InputFormat::ConfluentProtobuf,
        &ValidationConfig::default(),
    );
    assert_eq!(
        got.rejected,
        BTreeMap::from([("no_magic_byte", events.len() as u64)])
    );
}
