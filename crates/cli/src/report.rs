//! The backtest report: one self-contained HTML page an analyst tunes with — the quality
//! table, then a chart of a video's likes for every episode and alert worth looking at.
//!
//! Pure: [`plan`] decides from the scored replay which charts there are, [`LikeSeries`]
//! is fed the accepted events of the charted videos (by whoever reads the file), and
//! [`render`] returns the page as a `String`. Nothing here reads a file or a clock.
//!
//! - **What is charted.** Every truth episode — *missed* (no alert episode of ours detects
//!   it, by [`crate::backtest::match_episodes`]), *late* (detected more than
//!   [`LATE_AFTER_S`] after its start) or *detected* — and every *false alert* (an alert
//!   episode of ours that detects no truth episode). At most `max_charts` charts, in that
//!   order of interest (missed, false, late, detected; by time within each); the page says
//!   how many of each were left out, so a file of 40 000 episodes makes a page of bounded
//!   size, not gigabytes.
//! - **A chart.** Net likes (LIKE − UNLIKE, re-deliveries of an `event_id` once) of the
//!   video per [`BUCKET_MS`] bucket of event time (buckets aligned to the epoch, late
//!   events in the bucket of their event time: the video as it really was, not as the
//!   engine saw it through its lateness), from [`BEFORE_MS`] before the episode's start to
//!   [`AFTER_MS`] after the last of its marks, at most [`MAX_SPAN_MS`] long. Times on the
//!   axis are relative to the episode's start (10% of its peak), or for a false alert to
//!   our alert's `detected_at`. Marks: the start, our first alert of the episode (with its
//!   tier), the Poisson model's alert when it was scored, and our VIRAL_VELOCITY_ENDED; the
//!   truth episode's span from onset to end is shaded.
//! - **Checkable.** Each chart is an `<svg>` carrying `data-video-id`, `data-kind`,
//!   `data-from-ms`, `data-to-ms`, `data-zero-ms` (the axis' zero), `data-plot-left`,
//!   `data-plot-width` and `data-net-likes` (the likes drawn); each mark a
//!   `data-mark` and its time (`data-detected-at` for alerts, `data-at` otherwise) beside
//!   its `x1`, so a test (or a script) can read back where a mark is drawn. Figures of the
//!   quality table carry `data-metric`.
//! - **Self-contained.** Inline CSS and inline SVG, no script, no external reference; every
//!   text from the data (ids, explanations, the input's name) is escaped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use trendwatch_core::{Alert, AlertType, EventKind, EventRef};
use trendwatch_loadgen::truth::{DecoyClass, EpisodeShape, GroundTruth};

use crate::backtest::{self, AlertEpisode, Detection, MATCH_GRACE_MS, Score};
use crate::replay::ReplayTotals;

/// Width of a chart's bucket: the engine's default bucket, so a bar is what one of the
/// detector's buckets held.
pub const BUCKET_MS: i64 = 10_000;

/// An episode detected more than this many seconds after its start is *late*: the p90
/// delay target of issue 12.
pub const LATE_AFTER_S: f64 = 90.0;

/// A chart begins this long before the episode's start.
pub const BEFORE_MS: i64 = 10 * 60_000;

/// A chart ends this long after the last of its marks (or the truth episode's end).
pub const AFTER_MS: i64 = 10 * 60_000;

/// The longest span a chart covers (720 buckets); marks beyond it are named in the
/// chart's sentence instead of drawn.
pub const MAX_SPAN_MS: i64 = 2 * 60 * 60_000;

/// Charts a report holds unless told otherwise (about 10 KB each at most).
pub const DEFAULT_MAX_CHARTS: usize = 100;

/// Why a chart is in the report, in the order charts are kept when they are capped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChartKind {
    /// A truth episode no alert episode of ours detects.
    Missed,
    /// An alert episode of ours that detects no truth episode.
    FalseAlert,
    /// A truth episode detected more than [`LATE_AFTER_S`] after its start.
    Late,
    /// A truth episode detected in time.
    Detected,
}

impl ChartKind {
    /// Every kind, in order of interest.
    pub const ALL: [ChartKind; 4] = [
        ChartKind::Missed,
        ChartKind::FalseAlert,
        ChartKind::Late,
        ChartKind::Detected,
    ];

    /// The name in `data-kind` (`missed`, `false`, `late`, `detected`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChartKind::Missed => "missed",
            ChartKind::FalseAlert => "false",
            ChartKind::Late => "late",
            ChartKind::Detected => "detected",
        }
    }

    fn title(self) -> &'static str {
        match self {
            ChartKind::Missed => "missed episodes",
            ChartKind::FalseAlert => "false alerts",
            ChartKind::Late => "late alerts",
            ChartKind::Detected => "detected episodes",
        }
    }
}

/// Our first VIRAL_VELOCITY alert of an alert episode, as a chart marks it.
#[derive(Clone, Debug, PartialEq)]
pub struct OurAlert {
    /// Event time of the decision.
    pub detected_at: i64,
    /// Its tier (0-based).
    pub tier: u32,
    /// The alert's own sentence.
    pub explanation: String,
}

/// One chart of the report: a video over a span of event time and the marks on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Why it is in the report.
    pub kind: ChartKind,
    /// The video.
    pub video_id: String,
    /// The truth episode charted (index into the truth's episodes); none for a false alert.
    pub episode: Option<usize>,
    /// The instant the time axis counts from: the episode's start, or for a false alert
    /// our alert's `detected_at`.
    pub zero_ms: i64,
    /// First instant shown (a bucket boundary).
    pub from_ms: i64,
    /// End of the span shown (a bucket boundary, exclusive).
    pub to_ms: i64,
    /// Our first alert of the matching alert episode.
    pub ours: Option<OurAlert>,
    /// Our VIRAL_VELOCITY_ENDED of that alert episode.
    pub ended_at: Option<i64>,
    /// The Poisson model's alert: the one detecting the episode, or for a false alert its
    /// earliest on the video inside the span.
    pub poisson_at: Option<i64>,
}

/// The charts of a report and what the cap left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportPlan {
    /// The charts kept, in order of interest.
    pub charts: Vec<Chart>,
    /// Charts left out by the cap, by kind (kinds with none left out are absent).
    pub left_out: BTreeMap<ChartKind, u64>,
    /// Whether the Poisson model was scored (so a chart without its mark means "none").
    pub poisson_scored: bool,
}

impl ReportPlan {
    /// All charts left out.
    pub fn left_out_total(&self) -> u64 {
        self.left_out.values().sum()
    }
}

fn align_down(t: i64) -> i64 {
    t.div_euclid(BUCKET_MS) * BUCKET_MS
}

fn align_up(t: i64) -> i64 {
    align_down(t + BUCKET_MS - 1)
}

/// The span shown around `zero`: from `BEFORE_MS` before it to `AFTER_MS` after `last`,
/// at most `MAX_SPAN_MS`, on bucket boundaries.
fn span(zero: i64, last: i64) -> (i64, i64) {
    let from = align_down(zero - BEFORE_MS);
    let to = align_up(last.max(zero) + AFTER_MS).min(from + MAX_SPAN_MS);
    (from, to)
}

/// A chart not yet built: which kind, when (to order it) and of what.
enum Candidate {
    Truth(usize),
    False(usize),
}

/// Decides the report's charts from the engine's `alerts`, the `truth` they were scored
/// against and, when it was scored, the Poisson model's alert `poisson` episodes: every
/// missed, false, late and detected one, at most `max_charts`, by [`ChartKind`] order
/// then time.
pub fn plan(
    truth: &GroundTruth,
    alerts: &[Alert],
    poisson: Option<&[AlertEpisode]>,
    max_charts: usize,
) -> ReportPlan {
    let ours = backtest::viral_episodes(alerts);
    let matching = backtest::match_episodes(&ours, truth);
    let poisson_matching = poisson.map(|p| backtest::match_episodes(p, truth));

    let mut candidates: Vec<(ChartKind, i64, Candidate)> = Vec::new();
    for (i, ep) in truth.episodes.iter().enumerate() {
        let kind = match matching.detections[i] {
            None => ChartKind::Missed,
            Some(j) if (ours[j].detected_at - ep.start_ms) as f64 / 1_000.0 > LATE_AFTER_S => {
                ChartKind::Late
            }
            Some(_) => ChartKind::Detected,
        };
        candidates.push((kind, ep.start_ms, Candidate::Truth(i)));
    }
    for (j, e) in ours.iter().enumerate() {
        if !matching.matched[j] {
            candidates.push((ChartKind::FalseAlert, e.detected_at, Candidate::False(j)));
        }
    }
    // Stable: equal kinds and times keep truth order, then the alert episodes' order.
    candidates.sort_by_key(|(kind, at, _)| (*kind, *at));
    let mut left_out: BTreeMap<ChartKind, u64> = BTreeMap::new();
    for (kind, _, _) in candidates.iter().skip(max_charts) {
        *left_out.entry(*kind).or_default() += 1;
    }
    candidates.truncate(max_charts);

    // Per alert episode of ours (video, episode start): its first alert and its ENDED.
    let mut firsts: HashMap<(&str, i64), &Alert> = HashMap::new();
    let mut ends: HashMap<(&str, i64), i64> = HashMap::new();
    for a in alerts {
        let key = (a.video_id.as_str(), a.episode_start);
        match a.alert_type {
            AlertType::ViralVelocity => {
                let first = firsts.entry(key).or_insert(a);
                if a.detected_at < first.detected_at {
                    *first = a;
                }
            }
            AlertType::ViralVelocityEnded => {
                let end = ends.entry(key).or_insert(a.detected_at);
                *end = (*end).min(a.detected_at);
            }
            _ => {}
        }
    }
    let first_alert = |video: &str, start: i64| {
        firsts.get(&(video, start)).map(|a| OurAlert {
            detected_at: a.detected_at,
            tier: a.tier,
            explanation: a.explanation.clone(),
        })
    };
    let ended = |video: &str, start: i64| ends.get(&(video, start)).copied();
    let charts = candidates
        .into_iter()
        .map(|(kind, _, candidate)| match candidate {
            Candidate::Truth(i) => {
                let ep = &truth.episodes[i];
                let detecting = matching.detections[i].map(|j| &ours[j]);
                let ours_alert = detecting.and_then(|e| first_alert(&e.video_id, e.start_ms));
                let ended_at = detecting.and_then(|e| ended(&e.video_id, e.start_ms));
                let poisson_at = match (poisson, &poisson_matching) {
                    (Some(p), Some(m)) => m.detections[i].map(|j| p[j].detected_at),
                    _ => None,
                };
                let last = [
                    Some(ep.end_ms),
                    ours_alert.as_ref().map(|a| a.detected_at),
                    ended_at,
                    poisson_at,
                ]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(ep.start_ms);
                let (from_ms, to_ms) = span(ep.start_ms, last);
                Chart {
                    kind,
                    video_id: ep.video_id.clone(),
                    episode: Some(i),
                    zero_ms: ep.start_ms,
                    from_ms,
                    to_ms,
                    ours: ours_alert,
                    ended_at,
                    poisson_at,
                }
            }
            Candidate::False(j) => {
                let e = &ours[j];
                let ours_alert = first_alert(&e.video_id, e.start_ms);
                let ended_at = ended(&e.video_id, e.start_ms);
                let (from_ms, to_ms) = span(e.detected_at, ended_at.unwrap_or(e.detected_at));
                let poisson_at = poisson.and_then(|p| {
                    p.iter()
                        .filter(|q| {
                            q.video_id == e.video_id
                                && q.detected_at >= from_ms
                                && q.detected_at < to_ms
                        })
                        .map(|q| q.detected_at)
                        .min()
                });
                Chart {
                    kind,
                    video_id: e.video_id.clone(),
                    episode: None,
                    zero_ms: e.detected_at,
                    from_ms,
                    to_ms,
                    ours: ours_alert,
                    ended_at,
                    poisson_at,
                }
            }
        })
        .collect();
    ReportPlan {
        charts,
        left_out,
        poisson_scored: poisson.is_some(),
    }
}

/// Net likes per bucket of the charted videos, inside their charts' spans only: memory
/// bounded by the charts, whatever the size of the file.
#[derive(Debug, Default)]
pub struct LikeSeries {
    spans: HashMap<String, Vec<(i64, i64)>>,
    buckets: HashMap<String, BTreeMap<i64, i64>>,
    seen: HashSet<String>,
}

impl LikeSeries {
    /// An empty series for the charts of `plan`.
    pub fn for_plan(plan: &ReportPlan) -> Self {
        let mut spans: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
        for c in &plan.charts {
            spans
                .entry(c.video_id.clone())
                .or_default()
                .push((c.from_ms, c.to_ms));
        }
        Self {
            spans,
            ..Self::default()
        }
    }

    /// Takes one accepted event (any order; re-deliveries of an `event_id` count once).
    pub fn observe(&mut self, e: &EventRef<'_>) {
        let delta = match e.kind {
            EventKind::Like => 1,
            EventKind::Unlike => -1,
            _ => return,
        };
        let Some(spans) = self.spans.get(e.video_id) else {
            return;
        };
        if !spans
            .iter()
            .any(|&(from, to)| e.event_time >= from && e.event_time < to)
        {
            return;
        }
        if !self.seen.insert(e.event_id.to_owned()) {
            return;
        }
        let series = match self.buckets.get_mut(e.video_id) {
            Some(s) => s,
            None => self.buckets.entry(e.video_id.to_owned()).or_default(),
        };
        *series.entry(align_down(e.event_time)).or_default() += delta;
    }

    /// Net likes of `video` in each bucket of `[from_ms, to_ms)` (bucket boundaries).
    pub fn buckets(&self, video: &str, from_ms: i64, to_ms: i64) -> Vec<i64> {
        let series = self.buckets.get(video);
        (0..(to_ms - from_ms).div_euclid(BUCKET_MS))
            .map(|k| {
                series
                    .and_then(|s| s.get(&(from_ms + k * BUCKET_MS)))
                    .copied()
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// Everything the page shows.
pub struct ReportInput<'a> {
    /// The replayed file's name, as given.
    pub input_name: &'a str,
    /// The replay's tallies.
    pub totals: &'a ReplayTotals,
    /// The truth scored against.
    pub truth: &'a GroundTruth,
    /// Our figures.
    pub ours: &'a Score,
    /// The Poisson model's figures, when it was scored.
    pub poisson: Option<&'a Score>,
    /// The charts.
    pub plan: &'a ReportPlan,
    /// The charted videos' likes.
    pub likes: &'a LikeSeries,
}

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;\
color:#1d2330;background:#fff;margin:24px auto;max-width:960px;padding:0 16px}\
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #d8dde6}\
h3{font-size:15px;margin:22px 0 4px}p{margin:6px 0}.muted{color:#5b6475}\
table{border-collapse:collapse;margin:8px 0 16px;font-variant-numeric:tabular-nums}\
th,td{border:1px solid #d8dde6;padding:3px 9px;text-align:right}th{background:#f3f5f9}\
td:first-child,th:first-child{text-align:left}\
section.chart{margin:18px 0 26px}svg{display:block;background:#fbfcfe;border:1px solid #e3e7ee}\
svg text{font:11px system-ui,'DejaVu Sans',sans-serif;fill:#3b4352}\
.likes{fill:#8fb0d9;stroke:#4a78b0;stroke-width:1}.span{fill:#fff2c6}\
.grid{stroke:#e3e7ee}.axis{stroke:#7b8496}\
.m-start{stroke:#2e8b57;stroke-dasharray:4 3}.m-ours{stroke:#d62728;stroke-width:2}\
.m-poisson{stroke:#e08a00;stroke-width:2;stroke-dasharray:6 3}.m-ended{stroke:#6b7280;stroke-dasharray:2 3}\
text.l-start{fill:#2e8b57}text.l-ours{fill:#d62728}text.l-poisson{fill:#b36b00}text.l-ended{fill:#6b7280}\
.kind{display:inline-block;font-size:12px;padding:0 6px;border-radius:3px;color:#fff;margin-right:6px}\
.k-missed{background:#d62728}.k-false{background:#9333ea}.k-late{background:#e08a00}.k-detected{background:#2e8b57}\
blockquote{margin:4px 0;padding:2px 10px;border-left:3px solid #d8dde6;color:#3b4352;font-size:14px}\
ul.legend{list-style:none;padding:0}ul.legend li{display:inline-block;margin-right:16px}\
.sw{display:inline-block;width:22px;height:0;vertical-align:middle;margin-right:5px;border-top:2px solid}\
.sw-start{border-top:2px dashed #2e8b57}.sw-ours{border-color:#d62728}.sw-poisson{border-top:2px dashed #e08a00}\
.sw-ended{border-top:2px dotted #6b7280}.sw-span{height:10px;border:0;background:#fff2c6}\
.sw-likes{height:10px;border:1px solid #4a78b0;background:#8fb0d9}";

// Chart geometry, in SVG user units (the SVG is drawn at this fixed size).
const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 240.0;
const PLOT_LEFT: f64 = 52.0;
const PLOT_RIGHT: f64 = 28.0;
const PLOT_TOP: f64 = 54.0;
const PLOT_BOTTOM: f64 = 30.0;

fn fixed(v: f64, places: usize) -> String {
    format!("{v:.places$}")
}

fn seconds(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |s| format!("{s:.1} s"))
}

/// A table cell holding one figure, named for scripts by `data-metric`.
fn cell(out: &mut String, metric: &str, text: &str) {
    let _ = write!(
        out,
        "<td data-metric=\"{}\">{}</td>",
        escape(metric),
        escape(text)
    );
}

fn delay_cells(out: &mut String, who: &str, group: &str, d: Option<&Detection>) {
    let (detected, median, p90, max) = match d {
        Some(d) => (
            format!("{}/{}", d.detected, d.episodes),
            seconds(d.median_delay_s),
            seconds(d.p90_delay_s),
            seconds(d.max_delay_s),
        ),
        None => ("–".into(), "–".into(), "–".into(), "–".into()),
    };
    cell(out, &format!("{who}.{group}.detected"), &detected);
    cell(out, &format!("{who}.{group}.median_delay_s"), &median);
    cell(out, &format!("{who}.{group}.p90_delay_s"), &p90);
    cell(out, &format!("{who}.{group}.max_delay_s"), &max);
}

fn quality_table(out: &mut String, ours: &Score, poisson: Option<&Score>) {
    out.push_str("<h2 id=\"quality\">Quality</h2>\n<table class=\"quality\">\n<tr><th>detector</th><th>precision</th><th>alert episodes matched</th><th>recall</th></tr>\n");
    let mut row = |who: &str, label: &str, s: &Score| {
        let _ = write!(out, "<tr><td>{}</td>", escape(label));
        cell(out, &format!("{who}.precision"), &fixed(s.precision, 3));
        cell(
            out,
            &format!("{who}.alert_episodes"),
            &format!("{} of {}", s.matched_alert_episodes, s.alert_episodes),
        );
        cell(out, &format!("{who}.recall"), &fixed(s.recall, 3));
        out.push_str("</tr>\n");
    };
    row("ours", "trendwatch", ours);
    if let Some(p) = poisson {
        row("poisson", "Poisson model", p);
    }
    out.push_str("</table>\n");

    out.push_str("<h3>Delay from the episode's start (10% of peak) to the alert's decision</h3>\n<table class=\"delays\">\n<tr><th>shape</th><th>detected</th><th>median</th><th>p90</th><th>max</th>");
    if poisson.is_some() {
        out.push_str("<th>Poisson: detected</th><th>median</th><th>p90</th><th>max</th>");
    }
    out.push_str("</tr>\n");
    let groups = std::iter::once(("overall", &ours.overall))
        .chain(ours.by_shape.iter().map(|(k, d)| (k.as_str(), d)));
    for (group, d) in groups {
        let _ = write!(out, "<tr><td>{}</td>", escape(group));
        delay_cells(out, "ours", group, Some(d));
        if let Some(p) = poisson {
            let pd = if group == "overall" {
                Some(&p.overall)
            } else {
                p.by_shape.get(group)
            };
            delay_cells(out, "poisson", group, pd);
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");

    out.push_str("<h3>Decoys</h3>\n<table class=\"decoys\">\n<tr><th>class</th><th>decoys</th><th>VIRAL_VELOCITY alert episodes</th><th>TRENDING alerts</th>");
    if poisson.is_some() {
        out.push_str("<th>Poisson alert episodes</th>");
    }
    out.push_str("</tr>\n");
    for (class, d) in &ours.decoys {
        let _ = write!(out, "<tr><td>{}</td>", escape(class));
        cell(
            out,
            &format!("decoys.{class}.decoys"),
            &d.decoys.to_string(),
        );
        cell(
            out,
            &format!("ours.decoys.{class}.viral_velocity"),
            &d.viral_velocity.to_string(),
        );
        cell(
            out,
            &format!("ours.decoys.{class}.trending"),
            &d.trending.to_string(),
        );
        if let Some(p) = poisson {
            let n = p.decoys.get(class).map_or(0, |x| x.viral_velocity);
            cell(
                out,
                &format!("poisson.decoys.{class}.viral_velocity"),
                &n.to_string(),
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");

    out.push_str("<h3>TRENDING (the counters' own alerts)</h3>\n<table class=\"trending\">\n<tr><th>alerts</th><th>on episode videos</th><th>precision</th><th>on view-bot decoys</th><th>videos</th><th>of them episode videos</th></tr>\n<tr>");
    cell(
        out,
        "ours.trending_alerts",
        &ours.trending_alerts.to_string(),
    );
    cell(
        out,
        "ours.trending_alerts_on_episode_videos",
        &ours.trending_alerts_on_episode_videos.to_string(),
    );
    cell(
        out,
        "ours.trending_precision",
        &fixed(ours.trending_precision, 3),
    );
    cell(
        out,
        "ours.trending_on_view_bots",
        &ours.trending_on_view_bots.to_string(),
    );
    cell(
        out,
        "ours.trending_videos",
        &ours.trending_videos.to_string(),
    );
    cell(
        out,
        "ours.trending_episode_videos",
        &ours.trending_episode_videos.to_string(),
    );
    out.push_str("</tr>\n</table>\n");
}

/// A relative time for axis labels and marks: "−2 min", "+45.0 s", "+3.6 min", "0".
fn relative(ms: i64) -> String {
    if ms == 0 {
        return "0".into();
    }
    let sign = if ms < 0 { "−" } else { "+" };
    let abs = ms.unsigned_abs();
    if abs.is_multiple_of(60_000) {
        format!("{sign}{} min", abs / 60_000)
    } else if abs < 120_000 {
        format!("{sign}{:.1} s", abs as f64 / 1_000.0)
    } else {
        format!("{sign}{:.1} min", abs as f64 / 60_000.0)
    }
}

/// The step between x ticks: the smallest of a few round spans giving at most 12 ticks.
fn tick_step_ms(span_ms: i64) -> i64 {
    [1, 2, 5, 10, 15, 20, 30, 60]
        .into_iter()
        .map(|m| m * 60_000)
        .find(|step| span_ms / step <= 12)
        .unwrap_or(60 * 60_000)
}

/// The top of the y axis: a round number at or above `max` (at least 1).
fn y_top(max: i64) -> i64 {
    let max = max.max(1);
    let mut unit = 1;
    while unit * 10 < max {
        unit *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|k| k * unit)
        .find(|&v| v >= max)
        .unwrap_or(10 * unit)
}

struct Axes {
    from: i64,
    to: i64,
    plot_width: f64,
    plot_height: f64,
    top: i64,
}

impl Axes {
    fn x(&self, t: i64) -> f64 {
        PLOT_LEFT + (t - self.from) as f64 * self.plot_width / (self.to - self.from) as f64
    }

    fn y(&self, v: i64) -> f64 {
        PLOT_TOP + self.plot_height * (1.0 - v.max(0) as f64 / self.top as f64)
    }
}

fn svg(out: &mut String, chart: &Chart, episode_span: Option<(i64, i64)>, likes: &[i64]) {
    let axes = Axes {
        from: chart.from_ms,
        to: chart.to_ms.max(chart.from_ms + BUCKET_MS),
        plot_width: WIDTH - PLOT_LEFT - PLOT_RIGHT,
        plot_height: HEIGHT - PLOT_TOP - PLOT_BOTTOM,
        top: y_top(likes.iter().copied().max().unwrap_or(0)),
    };
    let _ = writeln!(
        out,
        "<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         data-video-id=\"{}\" data-kind=\"{}\" data-from-ms=\"{}\" data-to-ms=\"{}\" data-zero-ms=\"{}\" \
         data-plot-left=\"{PLOT_LEFT}\" data-plot-width=\"{}\" data-net-likes=\"{}\">",
        escape(&chart.video_id),
        chart.kind.as_str(),
        axes.from,
        axes.to,
        chart.zero_ms,
        axes.plot_width,
        likes.iter().sum::<i64>(),
    );
    let bottom = PLOT_TOP + axes.plot_height;
    let right = PLOT_LEFT + axes.plot_width;
    if let Some((onset, end)) = episode_span {
        let (a, b) = (onset.max(axes.from), end.min(axes.to));
        if a < b {
            let _ = writeln!(
                out,
                "<rect class=\"span\" x=\"{:.2}\" y=\"{PLOT_TOP}\" width=\"{:.2}\" height=\"{:.2}\"><title>truth episode: onset to end</title></rect>",
                axes.x(a),
                axes.x(b) - axes.x(a),
                axes.plot_height
            );
        }
    }
    // Y grid and labels: 0, the top, and half of it when that is a whole number of likes.
    let half = (axes.top % 2 == 0).then_some(axes.top / 2);
    for v in [Some(0), half, Some(axes.top)].into_iter().flatten() {
        let y = axes.y(v);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{PLOT_LEFT}\" x2=\"{right:.2}\" y1=\"{y:.2}\" y2=\"{y:.2}\"/><text x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{v}</text>",
            PLOT_LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"12\" y=\"{:.2}\" transform=\"rotate(-90 12 {:.2})\" text-anchor=\"middle\">likes / {} s</text>",
        PLOT_TOP + axes.plot_height / 2.0,
        PLOT_TOP + axes.plot_height / 2.0,
        BUCKET_MS / 1_000
    );
    // X ticks at round times relative to the zero.
    let step = tick_step_ms(axes.to - axes.from);
    let first = chart.zero_ms + (axes.from - chart.zero_ms).div_euclid(step) * step;
    let mut t = first;
    while t <= axes.to {
        if t >= axes.from {
            let x = axes.x(t);
            let _ = writeln!(
                out,
                "<line class=\"axis\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{bottom:.2}\" y2=\"{:.2}\"/><text x=\"{x:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>",
                bottom + 4.0,
                bottom + 16.0,
                relative(t - chart.zero_ms)
            );
        }
        t += step;
    }
    // The likes: one closed step path (one element, not one per bucket, to keep it small).
    let mut path = format!("M{PLOT_LEFT:.2} {bottom:.2}");
    let mut level = 0;
    for (k, &v) in likes.iter().enumerate() {
        let v = v.max(0);
        if v != level {
            let x = axes.x(axes.from + k as i64 * BUCKET_MS);
            let _ = write!(path, "H{x:.2}V{:.2}", axes.y(v));
            level = v;
        }
    }
    let _ = write!(path, "H{right:.2}V{bottom:.2}Z");
    let _ = writeln!(out, "<path class=\"likes\" d=\"{path}\"/>");
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{PLOT_LEFT}\" x2=\"{right:.2}\" y1=\"{bottom:.2}\" y2=\"{bottom:.2}\"/>"
    );

    // Marks, each with its label on its own row above the plot so they do not collide.
    let mut mark = |class: &str, attr: &str, at: i64, label: String, row: f64| {
        if at < axes.from || at > axes.to {
            return;
        }
        let x = axes.x(at);
        let anchor = if x > right - 120.0 { "end" } else { "start" };
        let dx = if anchor == "end" { -3.0 } else { 3.0 };
        let _ = writeln!(
            out,
            "<line class=\"m-{class}\" data-mark=\"{class}\" {attr}=\"{at}\" x1=\"{x:.2}\" x2=\"{x:.2}\" y1=\"{:.2}\" y2=\"{bottom:.2}\"/><text class=\"l-{class}\" x=\"{:.2}\" y=\"{row:.2}\" text-anchor=\"{anchor}\">{}</text>",
            row - 9.0,
            x + dx,
            escape(&label)
        );
    };
    if chart.episode.is_some() {
        mark(
            "start",
            "data-at",
            chart.zero_ms,
            "start (10% of peak)".into(),
            11.0,
        );
    }
    if let Some(a) = &chart.ours {
        mark(
            "ours",
            "data-detected-at",
            a.detected_at,
            if a.detected_at == chart.zero_ms {
                format!("ours, tier {}", a.tier)
            } else {
                format!(
                    "ours, tier {} ({})",
                    a.tier,
                    relative(a.detected_at - chart.zero_ms)
                )
            },
            23.0,
        );
    }
    if let Some(p) = chart.poisson_at {
        mark(
            "poisson",
            "data-detected-at",
            p,
            format!("Poisson ({})", relative(p - chart.zero_ms)),
            35.0,
        );
    }
    if let Some(e) = chart.ended_at {
        mark(
            "ended",
            "data-at",
            e,
            format!("ENDED ({})", relative(e - chart.zero_ms)),
            47.0,
        );
    }
    out.push_str("</svg>\n");
}

fn shape_words(shape: EpisodeShape) -> &'static str {
    match shape {
        EpisodeShape::Step => "step",
        EpisodeShape::Ramp => "exponential ramp",
        EpisodeShape::Spike => "spike",
        EpisodeShape::SlowBurn => "slow linear burn",
        EpisodeShape::DoublePeak => "double peak",
    }
}

fn decoy_words(class: DecoyClass) -> &'static str {
    match class {
        DecoyClass::PopularSteady => "a steady popular video (decoy)",
        DecoyClass::ViewBotBurst => "a view-bot burst (decoy)",
        DecoyClass::ColdBlip => "a one-minute like blip on a cold video (decoy)",
    }
}

/// "… 23.0 s after the start" or "… (beyond the chart)" when the cap cut the span.
fn when(chart: &Chart, at: i64) -> String {
    let rel = (at - chart.zero_ms) as f64 / 1_000.0;
    let beyond = if at > chart.to_ms {
        " (beyond the chart)"
    } else {
        ""
    };
    format!("{rel:+.1} s{beyond}")
}

fn sentence(out: &mut String, chart: &Chart, truth: &GroundTruth, poisson_scored: bool) {
    let video = escape(&chart.video_id);
    let mut s = String::new();
    match chart.episode.map(|i| &truth.episodes[i]) {
        Some(ep) => {
            let _ = write!(
                s,
                "Video <b>{video}</b>: a {} episode, peak {:.0} extra likes/min over a normal {:.2}/min, from onset {} to end {} (times from its start).",
                shape_words(ep.shape),
                ep.peak_extra_likes_per_min,
                ep.base_likes_per_min,
                relative(ep.onset_ms - ep.start_ms),
                relative(ep.end_ms - ep.start_ms),
            );
            match &chart.ours {
                Some(a) => {
                    let _ = write!(
                        s,
                        " Our alert: tier {}, {}.",
                        a.tier,
                        when(chart, a.detected_at)
                    );
                }
                None if chart.kind == ChartKind::Missed => {
                    let _ = write!(
                        s,
                        " Missed: no VIRAL_VELOCITY alert of ours decided between its onset and {} min after its end.",
                        MATCH_GRACE_MS / 60_000
                    );
                }
                None => {}
            }
        }
        None => {
            let on = truth
                .decoys
                .iter()
                .find(|d| d.video_id == chart.video_id)
                .map(|d| decoy_words(d.class))
                .or_else(|| {
                    truth
                        .episodes
                        .iter()
                        .any(|e| e.video_id == chart.video_id)
                        .then_some("an episode video, away from its episodes")
                })
                .unwrap_or("a video with no injected traffic");
            let _ = write!(
                s,
                "Video <b>{video}</b>, {}: our alert matches no truth episode (times from its decision).",
                escape(on)
            );
            if let Some(a) = &chart.ours {
                let _ = write!(s, " Tier {}.", a.tier);
            }
        }
    }
    if let Some(e) = chart.ended_at {
        let _ = write!(s, " Our ENDED {}.", when(chart, e));
    }
    if poisson_scored {
        match chart.poisson_at {
            Some(p) => {
                let _ = write!(s, " The Poisson model: {}.", when(chart, p));
            }
            None => s.push_str(" The Poisson model: no alert."),
        }
    }
    let _ = writeln!(out, "<p>{s}</p>");
    if let Some(a) = chart.ours.as_ref().filter(|a| !a.explanation.is_empty()) {
        let _ = writeln!(
            out,
            "<blockquote>Our alert said: {}</blockquote>",
            escape(&a.explanation)
        );
    }
}

/// The report page: a complete HTML document, self-contained (no script, no external
/// reference), every text from the data escaped.
pub fn render(r: &ReportInput<'_>) -> String {
    let mut out = String::with_capacity(16_384 + r.plan.charts.len() * 12_288);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>trendwatch backtest report</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<h1>trendwatch backtest report</h1>\n");
    let t = r.totals;
    let counted: u64 = t.counted.values().sum();
    let _ = writeln!(
        out,
        "<p class=\"muted\">{} — {} events read, {} counted, {} duplicates, {} late, over {} partition(s); ground truth of seed {} with {} episodes and {} decoys.</p>",
        escape(r.input_name),
        t.events_read,
        counted,
        t.duplicates,
        t.late,
        t.partitions,
        r.truth.seed,
        r.truth.episodes.len(),
        r.truth.decoys.len()
    );
    quality_table(&mut out, r.ours, r.poisson);

    let plan = r.plan;
    out.push_str("<h2 id=\"charts\">Charts</h2>\n");
    let _ = writeln!(
        out,
        "<p>Net likes of the video per {} s bucket of event time, from {} min before the episode's start to {} min after the last mark. A truth episode is <i>missed</i> when no alert episode of ours is decided between its onset and {} min after its end, <i>late</i> when ours comes more than {:.0} s after its start (the p90 target); a <i>false</i> alert matches no truth episode.</p>",
        BUCKET_MS / 1_000,
        BEFORE_MS / 60_000,
        AFTER_MS / 60_000,
        MATCH_GRACE_MS / 60_000,
        LATE_AFTER_S
    );
    // The legend is drawn in CSS, so every `<svg>` on the page is a chart.
    out.push_str("<ul class=\"legend\"><li><span class=\"sw sw-start\"></span>episode start (10% of peak)</li><li><span class=\"sw sw-ours\"></span>our first alert</li><li><span class=\"sw sw-poisson\"></span>Poisson model</li><li><span class=\"sw sw-ended\"></span>our ENDED</li><li><span class=\"sw sw-span\"></span>truth episode, onset to end</li><li><span class=\"sw sw-likes\"></span>net likes</li></ul>\n");
    let mut shown: BTreeMap<ChartKind, u64> = BTreeMap::new();
    for c in &plan.charts {
        *shown.entry(c.kind).or_default() += 1;
    }
    let summary: Vec<String> = ChartKind::ALL
        .iter()
        .map(|k| {
            let n = shown.get(k).copied().unwrap_or(0);
            let left = plan.left_out.get(k).copied().unwrap_or(0);
            if left > 0 {
                format!("{n} {} ({left} more left out)", k.title())
            } else {
                format!("{n} {}", k.title())
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "<p class=\"summary\" data-charts=\"{}\" data-left-out=\"{}\">{} charts: {}.{}</p>",
        plan.charts.len(),
        plan.left_out_total(),
        plan.charts.len(),
        summary.join(", "),
        if plan.left_out_total() > 0 {
            format!(
                " <b>{} charts were left out</b> to keep the page small (raise <code>--report-charts</code> to see them); missed, false and late ones are kept first.",
                plan.left_out_total()
            )
        } else {
            String::new()
        }
    );

    for (n, c) in plan.charts.iter().enumerate() {
        let episode_span = c
            .episode
            .map(|i| (r.truth.episodes[i].onset_ms, r.truth.episodes[i].end_ms));
        let likes = r.likes.buckets(&c.video_id, c.from_ms, c.to_ms);
        let shape = c.episode.map_or("", |i| r.truth.episodes[i].shape.as_str());
        let _ = writeln!(
            out,
            "<section class=\"chart\" id=\"chart-{}\">\n<h3><span class=\"kind k-{}\">{}</span>{} {}</h3>",
            n + 1,
            c.kind.as_str(),
            c.kind.as_str(),
            escape(&c.video_id),
            escape(shape)
        );
        sentence(&mut out, c, r.truth, plan.poisson_scored);
        svg(&mut out, c, episode_span, &likes);
        out.push_str("</section>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use trendwatch_loadgen::truth::{Episode, TruthCounts};

    use super::*;

    fn alert(video: &str, ty: AlertType, start: i64, at: i64, tier: u32) -> Alert {
        Alert {
            alert_id: format!("{video}-{start}-{at}"),
            video_id: video.into(),
            creator_id: "c".into(),
            alert_type: ty,
            tier,
            window_start: 0,
            window_end: 0,
            count: 0,
            previous_count: 0,
            rate_per_min: 0.0,
            baseline: 0.0,
            baseline_stddev: 0.0,
            z_score: 0.0,
            ratio: 0.0,
            threshold: 0.0,
            first_seen: 0,
            episode_start: start,
            detected_at: at,
            explanation: format!("fired on {video} <because>"),
            rank: 0,
            previous_rank: 0,
        }
    }

    fn truth(episodes: &[(&str, i64)]) -> GroundTruth {
        GroundTruth {
            seed: 1,
            start_ms: 0,
            end_ms: 100_000_000,
            videos: 10,
            allowed_lateness_ms: 30_000,
            scale: 1.0,
            episodes: episodes
                .iter()
                .map(|&(v, start)| Episode {
                    video_id: v.into(),
                    creator_id: "c".into(),
                    shape: EpisodeShape::Step,
                    onset_ms: start,
                    start_ms: start,
                    peak_ms: start,
                    second_burst_ms: None,
                    end_ms: start + 300_000,
                    peak_extra_likes_per_min: 50.0,
                    base_likes_per_min: 1.0,
                })
                .collect(),
            decoys: Vec::new(),
            counts: TruthCounts::default(),
        }
    }

    #[test]
    fn kinds_order_and_cap() {
        let t = truth(&[
            ("on-time", 10_000_000),
            ("late", 20_000_000),
            ("missed", 30_000_000),
        ]);
        let alerts = vec![
            alert(
                "on-time",
                AlertType::ViralVelocity,
                10_010_000,
                10_020_000,
                0,
            ),
            alert(
                "on-time",
                AlertType::ViralVelocity,
                10_010_000,
                10_040_000,
                1,
            ),
            alert(
                "on-time",
                AlertType::ViralVelocityEnded,
                10_010_000,
                10_500_000,
                1,
            ),
            alert("late", AlertType::ViralVelocity, 20_100_000, 20_091_000, 2),
            alert("noise", AlertType::ViralVelocity, 5_000_000, 5_000_000, 0),
        ];
        let poisson = vec![AlertEpisode {
            video_id: "on-time".into(),
            start_ms: 9_960_000,
            detected_at: 10_020_000,
        }];
        let p = plan(&t, &alerts, Some(&poisson), 10);
        let kinds: Vec<(ChartKind, &str)> = p
            .charts
            .iter()
            .map(|c| (c.kind, c.video_id.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (ChartKind::Missed, "missed"),
                (ChartKind::FalseAlert, "noise"),
                (ChartKind::Late, "late"),
                (ChartKind::Detected, "on-time"),
            ]
        );
        let on_time = &p.charts[3];
        // The first alert of the episode, not its escalation; its ENDED; Poisson's.
        assert_eq!(on_time.ours.as_ref().map(|a| a.tier), Some(0));
        assert_eq!(
            on_time.ours.as_ref().map(|a| a.detected_at),
            Some(10_020_000)
        );
        assert_eq!(on_time.ended_at, Some(10_500_000));
        assert_eq!(on_time.poisson_at, Some(10_020_000));
        assert_eq!(on_time.from_ms, 10_000_000 - BEFORE_MS);
        assert_eq!(on_time.to_ms, 10_500_000 + AFTER_MS);
        assert!(p.charts[0].ours.is_none() && p.charts[0].poisson_at.is_none());

        // Capped at two: the missed and the false alert stay, the rest is counted.
        let capped = plan(&t, &alerts, None, 2);
        assert_eq!(capped.charts.len(), 2);
        assert_eq!(capped.left_out_total(), 2);
        assert_eq!(capped.left_out.get(&ChartKind::Late), Some(&1));
        assert!(!capped.poisson_scored);
    }

    #[test]
    fn likes_are_net_per_bucket_deduplicated_and_only_inside_spans() {
        let t = truth(&[("v", 1_000_000)]);
        let p = plan(&t, &[], None, 10);
        let c = &p.charts[0];
        let mut s = LikeSeries::for_plan(&p);
        let ev = |id: &'static str, video: &'static str, kind, at| EventRef {
            event_id: id,
            video_id: video,
            creator_id: "c",
            kind,
            event_time: at,
            user_id: None,
        };
        s.observe(&ev("a", "v", EventKind::Like, 1_000_001));
        s.observe(&ev("a", "v", EventKind::Like, 1_000_001)); // re-delivery
        s.observe(&ev("b", "v", EventKind::Like, 1_009_999));
        s.observe(&ev("c", "v", EventKind::Unlike, 1_005_000));
        s.observe(&ev("d", "v", EventKind::View, 1_005_000));
        s.observe(&ev("e", "v", EventKind::Like, 1_010_000));
        s.observe(&ev("f", "other", EventKind::Like, 1_010_000));
        s.observe(&ev("g", "v", EventKind::Like, c.to_ms)); // past the span
        let b = s.buckets("v", c.from_ms, c.to_ms);
        assert_eq!(b.len() as i64, (c.to_ms - c.from_ms) / BUCKET_MS);
        let at = |t: i64| b[((t - c.from_ms) / BUCKET_MS) as usize];
        assert_eq!((at(1_000_000), at(1_010_000)), (1, 1));
        assert_eq!(b.iter().sum::<i64>(), 2);
        assert!(
            s.buckets("other", c.from_ms, c.to_ms)
                .iter()
                .all(|&v| v == 0)
        );
        assert!(!s.seen.contains("f") && !s.seen.contains("g"));
    }

    #[test]
    fn text_from_the_data_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let t = truth(&[("<v&1>", 1_000_000)]);
        let alerts = vec![alert(
            "<v&1>",
            AlertType::ViralVelocity,
            1_000_000,
            1_020_000,
            0,
        )];
        let ours = backtest::score(&alerts, &t);
        let p = plan(&t, &alerts, None, 10);
        let html = render(&ReportInput {
            input_name: "in<put>.pb",
            totals: &ReplayTotals::default(),
            truth: &t,
            ours: &ours,
            poisson: None,
            plan: &p,
            likes: &LikeSeries::for_plan(&p),
        });
        assert!(!html.contains("<v&1>") && !html.contains("<because>"));
        assert!(html.contains("&lt;v&amp;1&gt;") && html.contains("in&lt;put&gt;.pb"));
        assert!(html.contains("&lt;because&gt;"));
    }

    #[test]
    fn round_axes() {
        assert_eq!(
            (y_top(0), y_top(1), y_top(7), y_top(13), y_top(260)),
            (1, 1, 10, 20, 500)
        );
        assert_eq!(tick_step_ms(20 * 60_000), 2 * 60_000);
        assert_eq!(tick_step_ms(120 * 60_000), 10 * 60_000);
        assert_eq!(relative(-600_000), "−10 min");
        assert_eq!(relative(23_500), "+23.5 s");
        assert_eq!(relative(218_300), "+3.6 min");
    }
}
