//! `trendwatch replay --report`: the backtest report as an analyst opens it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn trendwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trendwatch"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small workload (8 episodes, 3 decoys of each class) in `dir`: events and truth.
fn workload(dir: &Path) -> (PathBuf, PathBuf) {
    let events = dir.join("events.pb");
    let truth = dir.join("truth.json");
    ok(&trendwatch(&[
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
        "8",
        "--decoys",
        "3",
        "--seed",
        "9",
    ]));
    (events, truth)
}

/// A replay with --truth --baseline poisson --json --alerts --report and `extra` flags:
/// its JSON, its alerts and the report's text.
fn replay(dir: &Path, extra: &[&str]) -> (Value, Vec<Value>, String) {
    let (events, truth) = workload(dir);
    let alerts = dir.join("alerts.jsonl");
    let report = dir.join("report.html");
    let mut args = vec![
        "replay",
        "--input",
        events.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--baseline",
        "poisson",
        "--partitions",
        "2",
        "--json",
        "--alerts",
        alerts.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = trendwatch(&args);
    ok(&out);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let alerts = std::fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(report.exists(), "the report file is written");
    (json, alerts, std::fs::read_to_string(&report).unwrap())
}

fn truth_of(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("truth.json")).unwrap()).unwrap()
}

/// The value of attribute `name` in `tag` (the text of one start tag).
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(&tag[from..from + len])
}

fn num(tag: &str, name: &str) -> f64 {
    attr(tag, name)
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        .parse()
        .unwrap()
}

/// Every start tag `<name …>` in `html`, as text.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name} ");
    html.match_indices(&open)
        .map(|(i, _)| {
            let end = html[i..].find('>').unwrap();
            &html[i..i + end]
        })
        .collect()
}

/// One chart: its `<svg>` start tag and its marks' `<line>` tags.
struct Chart<'a> {
    svg: &'a str,
    marks: Vec<&'a str>,
}

impl Chart<'_> {
    fn mark(&self, kind: &str) -> Option<&str> {
        self.marks
            .iter()
            .copied()
            .find(|m| attr(m, "data-mark") == Some(kind))
    }

    /// Where the chart's axes put event time `t`.
    fn x_of(&self, t: f64) -> f64 {
        let (from, to) = (num(self.svg, "data-from-ms"), num(self.svg, "data-to-ms"));
        num(self.svg, "data-plot-left")
            + (t - from) * num(self.svg, "data-plot-width") / (to - from)
    }
}

fn charts(html: &str) -> Vec<Chart<'_>> {
    html.split("<svg ")
        .skip(1)
        .map(|part| {
            let body = &part[..part.find("</svg>").expect("every svg is closed")];
            let svg = &part[..part.find('>').unwrap()];
            Chart {
                svg,
                marks: tags(body, "line")
                    .into_iter()
                    .filter(|l| attr(l, "data-mark").is_some())
                    .collect(),
            }
        })
        .collect()
}

/// The quality table's figures by `data-metric`.
fn metrics(html: &str) -> HashMap<String, String> {
    html.match_indices("<td data-metric=\"")
        .map(|(i, _)| {
            let cell = &html[i..];
            let name = attr(cell, "data-metric").unwrap().to_string();
            let text = &cell[cell.find('>').unwrap() + 1..cell.find("</td>").unwrap()];
            (name, text.to_string())
        })
        .collect()
}

fn seconds(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_string(), |s| format!("{s:.1} s"))
}

/// The earliest VIRAL_VELOCITY alert on the episode's video decided from its onset to
/// 5 min after its end: the alert that detects it, computed here from the alerts file.
fn detecting_alert<'a>(alerts: &'a [Value], episode: &Value) -> Option<&'a Value> {
    let (onset, end) = (
        episode["onset_ms"].as_i64().unwrap(),
        episode["end_ms"].as_i64().unwrap() + 300_000,
    );
    alerts
        .iter()
        .filter(|a| a["type"] == "VIRAL_VELOCITY" && a["video_id"] == episode["video_id"])
        .filter(|a| (onset..=end).contains(&a["detected_at"].as_i64().unwrap()))
        .min_by_key(|a| a["detected_at"].as_i64().unwrap())
}

#[test]
fn the_report_holds_the_replays_figures_and_a_chart_per_episode_with_our_alert_where_it_was_decided()
 {
    let dir = tempfile::tempdir().unwrap();
    let (json, alerts, html) = replay(dir.path(), &[]);
    let truth = truth_of(dir.path());

    // One self-contained HTML document.
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..80]);
    assert_eq!(html.matches("<html").count(), 1);
    assert!(html.trim_end().ends_with("</html>"));
    for outside in ["http://", "https://", "<script", "<link", " src=", "url("] {
        assert!(!html.contains(outside), "the page refers to {outside}");
    }

    // The quality table says what the JSON says.
    let m = metrics(&html);
    let (ours, poisson) = (&json["backtest"], &json["baseline"]);
    for (who, s) in [("ours", ours), ("poisson", poisson)] {
        assert_eq!(
            m[&format!("{who}.precision")],
            format!("{:.3}", s["precision"].as_f64().unwrap())
        );
        assert_eq!(
            m[&format!("{who}.recall")],
            format!("{:.3}", s["recall"].as_f64().unwrap())
        );
        assert_eq!(
            m[&format!("{who}.alert_episodes")],
            format!("{} of {}", s["matched_alert_episodes"], s["alert_episodes"])
        );
        for (group, d) in std::iter::once(("overall", &s["overall"])).chain(
            s["by_shape"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_str(), v)),
        ) {
            assert_eq!(
                m[&format!("{who}.{group}.detected")],
                format!("{}/{}", d["detected"], d["episodes"])
            );
            for f in ["median_delay_s", "p90_delay_s", "max_delay_s"] {
                assert_eq!(
                    m[&format!("{who}.{group}.{f}")],
                    seconds(&d[f]),
                    "{who} {group} {f}"
                );
            }
        }
    }
    assert_eq!(
        m["ours.trending_precision"],
        format!("{:.3}", ours["trending_precision"].as_f64().unwrap())
    );
    for (class, d) in ours["decoys"].as_object().unwrap() {
        assert_eq!(
            m[&format!("ours.decoys.{class}.viral_velocity")],
            d["viral_velocity"].to_string()
        );
        assert_eq!(
            m[&format!("ours.decoys.{class}.trending")],
            d["trending"].to_string()
        );
    }

    // One chart per truth episode and per false alert episode, each of its video.
    let charts = charts(&html);
    let episodes = truth["episodes"].as_array().unwrap();
    let false_alerts =
        ours["alert_episodes"].as_u64().unwrap() - ours["matched_alert_episodes"].as_u64().unwrap();
    assert_eq!(charts.len() as u64, episodes.len() as u64 + false_alerts);
    assert_eq!(json["report"]["charts"].as_u64(), Some(charts.len() as u64));
    let mut charted: BTreeMap<&str, usize> = BTreeMap::new();
    for c in charts
        .iter()
        .filter(|c| attr(c.svg, "data-kind") != Some("false"))
    {
        *charted
            .entry(attr(c.svg, "data-video-id").unwrap())
            .or_default() += 1;
    }
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for e in episodes {
        *expected.entry(e["video_id"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(charted, expected);

    // Our mark is the alert that detected the episode, drawn where it was decided; the
    // start mark at the episode's start; each delay one the backtest counted.
    let delays: Vec<f64> = ours["overall"]["delays_s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    let mut marked = 0;
    for c in charts
        .iter()
        .filter(|c| attr(c.svg, "data-kind") != Some("false"))
    {
        let start = num(c.svg, "data-zero-ms");
        let episode = episodes
            .iter()
            .find(|e| {
                e["video_id"].as_str() == attr(c.svg, "data-video-id")
                    && e["start_ms"].as_f64() == Some(start)
            })
            .expect("a chart of a truth episode counts from its start");
        let s = c.mark("start").expect("the start is marked");
        assert_eq!(num(s, "data-at"), start);
        assert!((num(s, "x1") - c.x_of(start)).abs() < 0.01);
        let Some(mark) = c.mark("ours") else {
            assert_eq!(attr(c.svg, "data-kind"), Some("missed"));
            assert!(detecting_alert(&alerts, episode).is_none());
            continue;
        };
        marked += 1;
        let at = num(mark, "data-detected-at");
        let alert = detecting_alert(&alerts, episode).expect("an alert detected it");
        assert_eq!(at, alert["detected_at"].as_f64().unwrap());
        assert!(
            (num(mark, "x1") - c.x_of(at)).abs() < 0.01,
            "mark at x {} for {at} on {}",
            num(mark, "x1"),
            c.svg
        );
        let delay = (at - start) / 1_000.0;
        assert!(
            delays.iter().any(|d| (d - delay).abs() < 1e-9),
            "{delay} in {delays:?}"
        );
        let kind = if delay > 90.0 { "late" } else { "detected" };
        assert_eq!(attr(c.svg, "data-kind"), Some(kind));
    }
    assert_eq!(marked, ours["overall"]["detected"].as_u64().unwrap());
    assert!(marked > 0);
    // The Poisson model's alerts are marked on the charts of the episodes it detected.
    let poisson_marks = charts
        .iter()
        .filter(|c| c.mark("poisson").is_some())
        .count();
    assert!(poisson_marks as u64 >= poisson["overall"]["detected"].as_u64().unwrap());
    // The charts hold the videos' likes (a chart of an episode without likes shows nothing).
    assert!(charts.iter().all(|c| num(c.svg, "data-net-likes") > 0.0));
}

#[test]
fn a_missed_episode_is_charted_without_our_mark() {
    let dir = tempfile::tempdir().unwrap();
    // A detector deaf to anything below 1000 times a video's baseline misses them all.
    let config = dir.path().join("deaf.toml");
    std::fs::write(&config, "[engine.velocity]\ntiers = [1000.0]\n").unwrap();
    let (json, _, html) = replay(dir.path(), &["--config", config.to_str().unwrap()]);
    let b = &json["backtest"];
    let missed =
        b["overall"]["episodes"].as_u64().unwrap() - b["overall"]["detected"].as_u64().unwrap();
    assert!(missed > 0, "the deaf detector misses: {b}");
    let charts = charts(&html);
    let missed_charts: Vec<&Chart> = charts
        .iter()
        .filter(|c| attr(c.svg, "data-kind") == Some("missed"))
        .collect();
    assert_eq!(missed_charts.len() as u64, missed);
    for c in &missed_charts {
        assert!(c.mark("ours").is_none(), "{}", c.svg);
        assert!(c.mark("ended").is_none(), "{}", c.svg);
        assert!(c.mark("start").is_some());
    }
    // What the Poisson model caught is still marked on them.
    assert_eq!(
        missed_charts
            .iter()
            .filter(|c| c.mark("poisson").is_some())
            .count() as u64,
        json["baseline"]["overall"]["detected"].as_u64().unwrap()
    );
    assert!(html.contains("Missed: no VIRAL_VELOCITY alert of ours"));
}

#[test]
fn the_chart_cap_is_honoured_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let (json, _, html) = replay(dir.path(), &["--report-charts", "3"]);
    let b = &json["backtest"];
    let episodes = b["overall"]["episodes"].as_u64().unwrap();
    let false_alerts =
        b["alert_episodes"].as_u64().unwrap() - b["matched_alert_episodes"].as_u64().unwrap();
    let total = episodes + false_alerts;
    assert!(total > 3);
    let charts = charts(&html);
    assert_eq!(charts.len(), 3);
    assert_eq!(json["report"]["left_out"].as_u64(), Some(total - 3));
    assert!(
        html.contains(&format!("{} charts were left out", total - 3)),
        "the page says what it left out"
    );
    assert!(html.contains(&format!("data-left-out=\"{}\"", total - 3)));

    // The most interesting are kept: missed, false, late, then detected.
    let delays = b["overall"]["delays_s"].as_array().unwrap();
    let late = delays.iter().filter(|d| d.as_f64().unwrap() > 90.0).count();
    let missed = (episodes - b["overall"]["detected"].as_u64().unwrap()) as usize;
    let mut expected = Vec::new();
    expected.extend(std::iter::repeat_n("missed", missed));
    expected.extend(std::iter::repeat_n("false", false_alerts as usize));
    expected.extend(std::iter::repeat_n("late", late));
    expected.extend(std::iter::repeat_n("detected", total as usize));
    expected.truncate(3);
    let kinds: Vec<&str> = charts
        .iter()
        .map(|c| attr(c.svg, "data-kind").unwrap())
        .collect();
    assert_eq!(kinds, expected);
}

#[test]
fn a_report_without_truth_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (events, _) = workload(dir.path());
    let report = dir.path().join("report.html");
    let out = trendwatch(&[
        "replay",
        "--input",
        events.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--report needs --truth"), "{err}");
    assert!(!report.exists());
}
