//! The `trendwatch` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn trendwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trendwatch"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/trendwatch.example.toml")
        .display()
        .to_string()
}

#[test]
fn config_check_prints_the_effective_config() {
    let out = trendwatch(&["config", "check", &example()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[engine.velocity]") && text.contains("false_alarms_per_video_day = 0.001"),
        "{text}"
    );
}

#[test]
fn config_check_lists_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[engine.windows]\nvelocity_window = \"65s\"\n[engine.velocity]\nz_clear = -1.0\ntiers = [5.0, 3.0]\n",
    )
    .unwrap();
    let out = trendwatch(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("error: engine."))
            .count(),
        3,
        "{err}"
    );
}

#[test]
fn the_input_format_flag_takes_the_confluent_forms_and_their_allow_list() {
    // Both refusals come before any broker is contacted.
    let out = trendwatch(&["run", "--input-format", "avro"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("use protobuf, json, confluent-protobuf or confluent-json"),
        "{err}"
    );
    // An allow-list in the file with a bare format given on the command line.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ids.toml");
    std::fs::write(
        &cfg,
        "[validation]\nallowed_schema_ids = [5]\n[counter]\ninput_format = \"confluent-protobuf\"\n",
    )
    .unwrap();
    let out = trendwatch(&["config", "check", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("input_format = \"confluent-protobuf\""),
        "{text}"
    );
    let out = trendwatch(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--input-format",
        "protobuf",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("validation.allowed_schema_ids: set, but counter.input_format = \"protobuf\""),
        "{err}"
    );
}

#[test]
fn config_check_asks_librdkafka_about_the_kafka_section() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls.toml");
    std::fs::write(
        &tls,
        "[kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-256\"\n\"sasl.username\" = \"tw\"\n\"sasl.password\" = \"pw\"\n",
    )
    .unwrap();
    let out = trendwatch(&["config", "check", tls.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[kafka]\n\"securty.protocol\" = \"SSL\"\n").unwrap();
    let out = trendwatch(&["config", "check", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("securty.protocol"), "{err}");
}

#[test]
fn generated_workload_replays_with_a_consistent_backtest() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.pb");
    let truth = dir.path().join("truth.json");
    let alerts = dir.path().join("alerts.jsonl");
    let out = trendwatch(&[
        "loadgen",
        "--out",
        events.to_str().unwrap(),
        "--videos",
        "2000",
        "--events",
        "60000",
        "--duration",
        "1h",
        "--episodes",
        "5",
        "--decoys",
        "3",
        "--seed",
        "9",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = trendwatch(&[
        "replay",
        "--input",
        events.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--alerts",
        alerts.to_str().unwrap(),
        "--json",
        "--partitions",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &report["replay"];
    let sum = |v: &Value| {
        v.as_object()
            .unwrap()
            .values()
            .map(|x| x.as_u64().unwrap())
            .sum::<u64>()
    };
    let accounted = sum(&r["counted"])
        + sum(&r["rejected"])
        + r["duplicates"].as_u64().unwrap()
        + r["late"].as_u64().unwrap()
        + r["untracked"].as_u64().unwrap();
    assert_eq!(
        accounted,
        r["events_read"].as_u64().unwrap(),
        "every event is accounted for"
    );
    let t: Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    assert_eq!(r["events_read"], t["counts"]["events_written"]);
    assert!(r["duplicates"].as_u64().unwrap() > 0 && r["late"].as_u64().unwrap() > 0);
    let b = &report["backtest"];
    assert!(b["recall"].as_f64().unwrap() >= 0.6, "{b}");
    assert_eq!(b["decoys"]["cold_blip"]["viral_velocity"], 0);
    // The alerts file holds what the report counts, in the contract's JSON form.
    let lines: Vec<Value> = std::fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, sum(&r["alerts"]));
    assert!(lines.iter().any(|a| a["type"] == "VIRAL_VELOCITY"));
    assert!(
        lines
            .iter()
            .all(|a| a["alert_id"].as_str().unwrap().len() == 32)
    );
}

#[test]
fn a_json_lines_file_written_by_hand_replays() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("hand.jsonl");
    // As a Python script would write it: one object per line, kinds by name, a blank line,
    // a duplicate, a bad line, an unknown kind, and a late event.
    let t0 = 1_767_571_200_000i64;
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!(
            "{{\"event_id\": \"h{i}\", \"video_id\": \"vid-1\", \"creator_id\": \"cr\", \"kind\": \"LIKE\", \"event_time\": {}}}\n",
            t0 + i * 1_000
        ));
    }
    text.push('\n');
    text.push_str(&format!("{{\"event_id\": \"h49\", \"video_id\": \"vid-1\", \"kind\": \"LIKE\", \"event_time\": {}}}\n", t0 + 49_000));
    text.push_str("this is not json\n");
    text.push_str(&format!("{{\"event_id\": \"x1\", \"video_id\": \"vid-2\", \"kind\": \"WATCH\", \"event_time\": {t0}}}\n"));
    text.push_str(&format!("{{\"event_id\": \"x2\", \"video_id\": \"vid-2\", \"kind\": \"VIEW\", \"event_time\": {t0}}}\n"));
    std::fs::write(&input, text).unwrap();
    let out = trendwatch(&["replay", "--input", input.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &r["replay"];
    assert_eq!(r["events_read"], 54);
    assert_eq!(r["counted"]["LIKE"], 50);
    assert_eq!(r["duplicates"], 1);
    assert_eq!(r["rejected"]["undecodable"], 1);
    assert_eq!(r["rejected"]["unknown_kind"], 1);
    assert_eq!(r["late"], 1);
}

/// `replay --partitions 4` places videos by `topics.events_partitioner`, which
/// `--partitioner` overrides: vid-0 and vid-1 share partition 3 under murmur2 (the Java
/// client's hash) but not under CRC-32 (0 and 2), so an old event of vid-1 after ten
/// minutes of vid-0 is behind its partition's watermark only when murmur2 placed them.
#[test]
fn replay_splits_by_the_configured_partitioner_and_the_flag_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("split.jsonl");
    let t0 = 1_767_571_200_000i64;
    let mut text = String::new();
    for i in 0..=60 {
        text.push_str(&format!(
            "{{\"event_id\": \"a{i}\", \"video_id\": \"vid-0\", \"kind\": \"VIEW\", \"event_time\": {}}}\n",
            t0 + i * 10_000
        ));
    }
    text.push_str(&format!(
        "{{\"event_id\": \"b0\", \"video_id\": \"vid-1\", \"kind\": \"VIEW\", \"event_time\": {t0}}}\n"
    ));
    std::fs::write(&input, text).unwrap();
    let input = input.to_str().unwrap();
    let run = |env: Option<&str>, flag: &[&str]| -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trendwatch"));
        c.args(["replay", "--input", input, "--partitions", "4", "--json"])
            .args(flag)
            .env_remove("RUST_LOG")
            .env_remove("TRENDWATCH__TOPICS__EVENTS_PARTITIONER");
        if let Some(p) = env {
            c.env("TRENDWATCH__TOPICS__EVENTS_PARTITIONER", p);
        }
        c.output().unwrap()
    };
    let split = |out: Output| -> (String, u64) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let r = &r["replay"];
        (
            r["partitioner"].as_str().unwrap().to_string(),
            r["late"].as_u64().unwrap(),
        )
    };
    assert_eq!(split(run(None, &[])), ("crc32".to_string(), 0));
    assert_eq!(split(run(Some("murmur2"), &[])), ("murmur2".to_string(), 1));
    let flag = ["--partitioner", "murmur2"];
    assert_eq!(split(run(None, &flag)), ("murmur2".to_string(), 1));
    let flag = ["--partitioner", "crc32"];
    assert_eq!(split(run(Some("murmur2"), &flag)), ("crc32".to_string(), 0));
    // A hash it cannot follow is refused, naming the two it can.
    let out = run(None, &["--partitioner", "fnv1a"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("crc32") && err.contains("murmur2"), "{err}");
}

/// Serves one HTTP answer with `status` on a fresh port and returns the port.
fn one_answer(status: &'static str) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 512];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        write!(s, "HTTP/1.1 {status}\r\nContent-Length: 9\r\n\r\nrestoring").unwrap();
    });
    port
}

#[test]
fn health_exits_zero_only_on_200() {
    let ok = one_answer("200 OK");
    let out = trendwatch(&[
        "health",
        "--addr",
        &format!("127.0.0.1:{ok}"),
        "--path",
        "/readyz",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let busy = one_answer("503 Service Unavailable");
    let out = trendwatch(&[
        "health",
        "--addr",
        &format!("127.0.0.1:{busy}"),
        "--path",
        "/readyz",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("503") && err.contains("restoring"), "{err}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = trendwatch(&["health", "--addr", &closed.to_string()]);
    assert!(!out.status.success());
}
