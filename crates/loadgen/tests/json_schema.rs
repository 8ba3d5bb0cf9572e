//! The JSON Schemas beside `proto/` describe the JSON trendwatch really writes: every event
//! the load generator's JSON writer puts in a `.jsonl` file, and every alert of that
//! workload as the alert outputs write it (`AlertRecord::to_json`, which the counter and
//! the ranker use for `output_format = "json"` and `replay --alerts x.jsonl` uses for
//! files), validate; the forms the contract excludes (prefixed enum names, times as
//! strings, a NaN written as null) do not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonschema::Validator;
use serde_json::{Value, json};
use trendwatch_core::{AlertType, EngineConfig, PartitionState};
use trendwatch_loadgen::LoadgenArgs;
use trendwatch_proto::AlertRecord;
use trendwatch_proto::files::{AlertFileWriter, read_event_file};

fn schema_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../proto/trendwatch/v1")
        .join(name)
}

/// The schema, checked against the draft 2020-12 meta-schema first.
fn validator(name: &str) -> Validator {
    let schema: Value = serde_json::from_slice(&std::fs::read(schema_path(name)).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        panic!("{name} is not a valid draft 2020-12 schema: {e}");
    }
    jsonschema::draft202012::new(&schema).unwrap()
}

fn errors(v: &Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance).map(|e| e.to_string()).collect()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A small workload with episodes (so alerts fire and end), written by the load generator
/// as JSON lines.
fn generated_events(dir: &Path) -> PathBuf {
    let out = dir.join("events.jsonl");
    let args = LoadgenArgs {
        out: out.clone(),
        truth: Some(dir.join("truth.json")),
        videos: 2_000,
        events: 60_000,
        rate: None,
        scale: 1.0,
        duration: Duration::from_secs(40 * 60),
        start: "2026-01-05T00:00:00Z".into(),
        seed: 7,
        episodes: 6,
        decoys: 3,
        lateness: Duration::from_secs(30),
        disorder_fraction: 0.06,
        late_fraction: 0.0025,
        dup_fraction: 0.01,
        zipf: 1.0,
        rewatch_fraction: 0.0,
        view_bot_ranks: "1000:50000".into(),
    };
    trendwatch_loadgen::run(&args).unwrap();
    out
}

#[test]
fn what_trendwatch_writes_validates_against_the_schemas() {
    let events_schema = validator("engagement_event.schema.json");
    let alerts_schema = validator("alert.schema.json");
    let dir = tempfile::tempdir().unwrap();
    let events_path = generated_events(dir.path());

    let events = lines(&events_path);
    assert!(events.len() > 50_000, "{} events", events.len());
    let mut kinds = BTreeSet::new();
    for (i, e) in events.iter().enumerate() {
        let errs = errors(&events_schema, e);
        assert!(errs.is_empty(), "event line {}: {e}: {errs:?}", i + 1);
        kinds.insert(e["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(kinds.len(), 5, "every kind is exercised: {kinds:?}");

    // The alerts of that workload, through the engine, written as the outputs write them.
    let mut state = PartitionState::new(EngineConfig::default()).unwrap();
    let mut alerts = Vec::new();
    for e in read_event_file(&events_path).unwrap() {
        state.apply(&e.as_ref(), &mut alerts);
    }
    state.finish(&mut alerts);
    let alerts_path = dir.path().join("alerts.jsonl");
    let mut w = AlertFileWriter::create(&alerts_path).unwrap();
    for a in &alerts {
        w.write(&AlertRecord::from_alert(a, 1_767_600_000_000))
            .unwrap();
    }
    // The ranker's kind of alert, with the rank fields the detectors leave out.
    let mut ranked = alerts[0].clone();
    ranked.alert_type = AlertType::RankChanged;
    ranked.rank = 3;
    ranked.previous_rank = 9;
    w.write(&AlertRecord::from_alert(&ranked, 1_767_600_000_000))
        .unwrap();
    w.finish().unwrap();
    let written = lines(&alerts_path);
    let mut types = BTreeSet::new();
    for (i, a) in written.iter().enumerate() {
        let errs = errors(&alerts_schema, a);
        assert!(errs.is_empty(), "alert line {}: {a}: {errs:?}", i + 1);
        types.insert(a["type"].as_str().unwrap().to_string());
    }
    for t in ["VIRAL_VELOCITY", "VIRAL_VELOCITY_ENDED", "RANK_CHANGED"] {
        assert!(types.contains(t), "{t} not exercised: {types:?}");
    }
    // The golden alert of the protobuf contract tests too.
    let golden: Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/tests/fixtures/alert.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(errors(&alerts_schema, &golden), Vec::<String>::new());
}

/// `base` with `key` set to `value` (or removed, for `Value::Null` on a `remove` key).
fn with(base: &Value, key: &str, value: Option<Value>) -> Value {
    let mut v = base.clone();
    let obj = v.as_object_mut().unwrap();
    match value {
        Some(x) => {
            obj.insert(key.into(), x);
        }
        None => {
            obj.remove(key);
        }
    }
    v
}

#[test]
fn forms_outside_the_contract_fail_validation() {
    let events_schema = validator("engagement_event.schema.json");
    let alerts_schema = validator("alert.schema.json");
    let event = json!({
        "event_id": "e1", "video_id": "v42", "creator_id": "c7",
        "kind": "LIKE", "event_time": 1_767_571_234_567_i64
    });
    assert!(events_schema.is_valid(&event));
    // user_id is optional; unknown keys stay allowed (fields are added the protobuf way).
    assert!(events_schema.is_valid(&with(&event, "user_id", Some(json!("u1")))));
    assert!(events_schema.is_valid(&with(&event, "referrer", Some(json!("feed")))));
    for (what, bad) in [
        (
            "a prefixed enum name",
            with(&event, "kind", Some(json!("EVENT_KIND_LIKE"))),
        ),
        ("an enum number", with(&event, "kind", Some(json!(2)))),
        (
            "a string time",
            with(&event, "event_time", Some(json!("1767571234567"))),
        ),
        (
            "a fractional time",
            with(&event, "event_time", Some(json!(1767571234.567))),
        ),
        ("no video_id", with(&event, "video_id", None)),
        (
            "an empty event_id",
            with(&event, "event_id", Some(json!(""))),
        ),
        ("a null user_id", with(&event, "user_id", Some(Value::Null))),
    ] {
        assert!(!events_schema.is_valid(&bad), "{what} passed: {bad}");
    }

    let alert: Value = serde_json::from_str(
        &AlertRecord::from_alert(&sample_alert(), 1_767_571_250_321).to_json(),
    )
    .unwrap();
    assert_eq!(errors(&alerts_schema, &alert), Vec::<String>::new());
    for (what, bad) in [
        (
            "a prefixed enum name",
            with(&alert, "type", Some(json!("ALERT_TYPE_TRENDING"))),
        ),
        (
            "a string time",
            with(&alert, "detected_at", Some(json!("1767571250000"))),
        ),
        // serde_json writes a NaN or infinite f64 as null.
        ("a NaN score", with(&alert, "z_score", Some(Value::Null))),
        ("a negative tier", with(&alert, "tier", Some(json!(-1)))),
        ("no emitted_at", with(&alert, "emitted_at", None)),
    ] {
        assert!(!alerts_schema.is_valid(&bad), "{what} passed: {bad}");
    }
}

fn sample_alert() -> trendwatch_core::Alert {
    trendwatch_core::Alert {
        alert_id: "0123456789abcdef0123456789abcdef".into(),
        video_id: "v0000042".into(),
        creator_id: "c000007".into(),
        alert_type: AlertType::Trending,
        tier: 0,
        window_start: 1_767_570_340_000,
        window_end: 1_767_571_240_000,
        count: 900,
        previous_count: 120,
        rate_per_min: 60.0,
        baseline: 110.5,
        baseline_stddev: 20.25,
        z_score: 38.9,
        ratio: 8.1,
        threshold: 500.0,
        first_seen: 1_767_560_000_000,
        episode_start: 1_767_571_240_000,
        detected_at: 1_767_571_250_000,
        explanation: "900 engagement points in 15 min vs a baseline of 110".into(),
        rank: 0,
        previous_rank: 0,
    }
}
