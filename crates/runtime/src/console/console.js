// The trendwatch console: the ranker's live board and alerts, and a video's chart.
//
// Everything it asks is same-origin and bounded:
// - one server-sent-event stream, GET /v1/stream (boards and alerts as they come; reconnected
//   with a growing delay, at most 30 s, when it drops);
// - GET /v1/alerts?limit=50 and ?type=VIRAL_VELOCITY&limit=50 when the stream (re)opens or
//   reports that it lagged;
// - for the sparklines, GET /v1/videos/{id} for the top 10 videos of a board, at most once per
//   board per video and at most 4 at a time (the ranker asks the owning counter);
// - on a video page, GET /v1/videos/{id} and GET /v1/alerts?video_id={id}&limit=100 once,
//   then every 10 s while the page is shown.
// Data goes into the page as text (textContent, SVG attributes), never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const SPARK_VIDEOS = 10;
const SPARK_PARALLEL = 4;
const ALERTS_SHOWN = 200;
const VIDEO_REFRESH_MS = 10000;
const MARK_SLACK_MS = 5 * 60000;

const state = {
  stream: null,
  retryMs: 1000,
  board: null,
  alerts: new Map(), // alert_id -> alert, newest detected_at first when shown
  spark: new Map(), // video_id -> {windowEnd, perMinute: [[minuteStart, likes]...]}
  sparkQueue: [],
  sparkRunning: 0,
  videoTimer: null,
  videoId: null,
};

function $(id) {
  return document.getElementById(id);
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function videoLink(id) {
  const a = el("a", "video", id);
  a.href = "#/video/" + encodeURIComponent(id);
  return a;
}

function utc(ms) {
  if (typeof ms !== "number") return "";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function clock(ms) {
  if (typeof ms !== "number") return "";
  return new Date(ms).toISOString().slice(11, 19);
}

function ago(ms) {
  const s = Math.max(0, Math.round((ms || 0) / 1000));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " days";
}

function setStatus(kind, text) {
  const s = $("status");
  s.dataset.state = kind;
  s.textContent = text;
}

// ---- The live stream ----------------------------------------------------------------------

function connect() {
  if (state.stream) state.stream.close();
  const es = new EventSource("/v1/stream");
  state.stream = es;
  es.onopen = () => {
    state.retryMs = 1000;
    setStatus("live", "live");
    loadAlerts();
  };
  es.addEventListener("board", (e) => onBoard(JSON.parse(e.data)));
  es.addEventListener("alert", (e) => addAlerts([JSON.parse(e.data)]));
  // The browser reconnects with the last event's id and the ranker sends what was missed;
  // when it cannot (it restarted, or this page fell too far behind) it sends "resync":
  // reload the board and the alerts over REST.
  es.addEventListener("resync", () => {
    loadBoard();
    loadAlerts();
  });
  es.onerror = () => {
    // The browser retries by itself while the stream is CONNECTING; a refused stream
    // (a 503 when the ranker serves its maximum of clients) is CLOSED: retry later.
    if (es.readyState === EventSource.CLOSED) {
      setStatus("down", "disconnected, retrying in " + Math.round(state.retryMs / 1000) + " s");
      setTimeout(connect, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, 30000);
    } else {
      setStatus("connecting", "reconnecting…");
    }
  };
}

async function getJson(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await r.json();
  } catch (_) {
    body = null;
  }
  return { status: r.status, body };
}

// The newest board, as the stream would have sent it.
async function loadBoard() {
  try {
    const { status, body } = await getJson("/v1/leaderboard");
    if (status === 200 && body) onBoard(body);
  } catch (_) {
    // As for the alerts: the stream's state says whether the ranker is reachable.
  }
}

// The newest 50 alerts of every type, and the newest 50 viral-velocity alerts, which the
// rank changes and ENDED alerts of a busy board would otherwise push out of the feed.
async function loadAlerts() {
  for (const path of ["/v1/alerts?limit=50", "/v1/alerts?type=VIRAL_VELOCITY&limit=50"]) {
    try {
      const { status, body } = await getJson(path);
      if (status === 200 && body && Array.isArray(body.alerts)) addAlerts(body.alerts);
    } catch (_) {
      // The stream's own state says whether the ranker is reachable.
    }
  }
}

// ---- The board ----------------------------------------------------------------------------

function onBoard(board) {
  state.board = board;
  renderBoard();
  queueSparklines(board);
}

function change(entry) {
  if (!entry.previous_rank) return ["new", "change-new", "new on the board"];
  const d = entry.previous_rank - entry.rank;
  if (d > 0) return ["▲ " + d, "change-up", "up from " + entry.previous_rank];
  if (d < 0) return ["▼ " + -d, "change-down", "down from " + entry.previous_rank];
  return ["–", "change-same", "unchanged"];
}

function renderBoard() {
  const board = state.board;
  const body = $("board").tBodies[0];
  body.replaceChildren();
  const entries = (board && board.entries) || [];
  $("board-empty").hidden = entries.length > 0;
  if (board) {
    $("board-window").textContent =
      "window " + utc(board.window_start) + " – " + clock(board.window_end) +
      " · " + entries.length + " of top " + board.top_k;
  }
  for (const e of entries) {
    const tr = el("tr");
    tr.dataset.videoId = e.video_id;
    tr.appendChild(el("td", "num rank", e.rank));
    const [text, cls, title] = change(e);
    const c = el("td", cls, text);
    c.title = title;
    tr.appendChild(c);
    const v = el("td");
    v.appendChild(videoLink(e.video_id));
    tr.appendChild(v);
    tr.appendChild(el("td", "creator", e.creator_id));
    tr.appendChild(el("td", "num", e.score));
    const s = el("td");
    const spark = state.spark.get(e.video_id);
    if (spark) s.appendChild(sparkline(spark.perMinute));
    s.appendChild(el("span", "lpm", (e.likes_per_min || 0).toFixed(1)));
    tr.appendChild(s);
    body.appendChild(tr);
  }
}

// Net likes per minute from a video's per-bucket likes.
function perMinute(buckets) {
  const m = new Map();
  for (const b of buckets || []) {
    const minute = Math.floor(b.start / 60000) * 60000;
    m.set(minute, (m.get(minute) || 0) + b.likes);
  }
  return [...m.entries()].sort((a, b) => a[0] - b[0]);
}

function sparkline(series) {
  const w = 90, h = 22;
  const svg = svgEl("svg", { class: "spark", width: w, height: h, viewBox: `0 0 ${w} ${h}` });
  if (series.length === 0) return svg;
  const max = Math.max(1, ...series.map((p) => p[1]));
  const n = Math.max(1, series.length - 1);
  const pts = series.map((p, i) => {
    const x = series.length === 1 ? w / 2 : (i / n) * (w - 2) + 1;
    const y = h - 1 - (Math.max(0, p[1]) / max) * (h - 2);
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  svg.appendChild(svgEl("polyline", { points: pts.join(" ") }));
  const title = svgEl("title");
  title.textContent = "net likes per minute, last " + series.length + " min";
  svg.appendChild(title);
  return svg;
}

function queueSparklines(board) {
  // Replaces what is still waiting: only the newest board's top videos matter.
  state.sparkQueue = (board.entries || [])
    .slice(0, SPARK_VIDEOS)
    .map((e) => e.video_id)
    .filter((id) => {
      const s = state.spark.get(id);
      return !s || s.windowEnd !== board.window_end;
    })
    .map((id) => [id, board.window_end]);
  pumpSparklines();
}

function pumpSparklines() {
  while (state.sparkRunning < SPARK_PARALLEL && state.sparkQueue.length > 0) {
    const [id, windowEnd] = state.sparkQueue.shift();
    state.sparkRunning += 1;
    getJson("/v1/videos/" + encodeURIComponent(id))
      .then(({ status, body }) => {
        if (status === 200 && body && body.video) {
          state.spark.set(id, { windowEnd, perMinute: perMinute(body.video.velocity.buckets) });
        } else {
          // Not tracked (expired) or unreachable: do not ask again for this board.
          state.spark.set(id, { windowEnd, perMinute: [] });
        }
      })
      .catch(() => state.spark.set(id, { windowEnd, perMinute: [] }))
      .finally(() => {
        state.sparkRunning -= 1;
        if (state.board) renderBoard();
        pumpSparklines();
      });
  }
  // Bounded memory: only videos of the current board keep a sparkline.
  if (state.board && state.spark.size > 4 * SPARK_VIDEOS) {
    const keep = new Set((state.board.entries || []).map((e) => e.video_id));
    for (const id of [...state.spark.keys()]) if (!keep.has(id)) state.spark.delete(id);
  }
}

// ---- Alerts -------------------------------------------------------------------------------

function addAlerts(list) {
  for (const a of list) if (a && a.alert_id) state.alerts.set(a.alert_id, a);
  const sorted = [...state.alerts.values()].sort(
    (a, b) => b.detected_at - a.detected_at || (a.alert_id < b.alert_id ? -1 : 1),
  );
  for (const a of sorted.slice(ALERTS_SHOWN)) state.alerts.delete(a.alert_id);
  renderAlerts($("alerts"), sorted.slice(0, ALERTS_SHOWN), true);
  $("alerts-empty").hidden = sorted.length > 0;
}

function alertItem(a, withVideo) {
  const li = el("li", "alert");
  li.dataset.alertId = a.alert_id;
  li.dataset.videoId = a.video_id;
  li.dataset.type = a.type;
  const head = el("div", "alert-head");
  head.appendChild(el("span", "type type-" + a.type, a.type));
  if (withVideo) head.appendChild(videoLink(a.video_id));
  if (a.tier !== undefined) head.appendChild(el("span", "when", "tier " + a.tier));
  if (a.rank) head.appendChild(el("span", "when", "rank " + a.rank));
  head.appendChild(el("span", "when", utc(a.detected_at)));
  li.appendChild(head);
  li.appendChild(el("p", "sentence", a.explanation || ""));
  return li;
}

function renderAlerts(list, alerts, withVideo) {
  list.replaceChildren(...alerts.map((a) => alertItem(a, withVideo)));
}

// ---- The video page -----------------------------------------------------------------------

// The video's alerts: the counter's last ones (emitted by the process that owns the video
// now) and the ranker's, read from the alert topic (so those emitted before a rebalance
// moved the video are there too), once per id, newest first.
function videoAlerts(counterAlerts, rankerAnswer) {
  const byId = new Map();
  const ranker = (rankerAnswer && rankerAnswer.status === 200 && rankerAnswer.body && rankerAnswer.body.alerts) || [];
  for (const a of [...(counterAlerts || []), ...ranker]) if (a && a.alert_id) byId.set(a.alert_id, a);
  return [...byId.values()].sort((a, b) => b.detected_at - a.detected_at);
}

async function loadVideo(id) {
  const enc = encodeURIComponent(id);
  const [answer, listed] = await Promise.all([
    getJson("/v1/videos/" + enc).catch((e) => ({
      status: 0,
      body: { message: "the ranker did not answer: " + e },
    })),
    getJson("/v1/alerts?video_id=" + enc + "&limit=100").catch(() => null),
  ]);
  if (state.videoId !== id) return; // Left the page meanwhile.
  const err = $("video-error");
  const { status, body } = answer;
  if (status !== 200 || !body || !body.video) {
    err.hidden = false;
    err.textContent =
      "No chart (" + (status || "no answer") + "): " + ((body && body.message) || "unexpected answer");
    return;
  }
  err.hidden = true;
  const v = body.video;
  const vel = v.velocity;
  $("video-facts").textContent =
    "creator " + v.creator_id +
    " · " + v.events + " events counted" +
    " · CUSUM " + vel.cusum.toFixed(2) + " of " + vel.cusum_threshold.toFixed(2) +
    " · velocity episode " + vel.episode.phase +
    " · as of watermark " + utc(body.watermark) +
    " (" + ago(body.staleness_ms) + " ago)" +
    " · served by " + body.served_by;
  const alerts = videoAlerts(body.last_alerts, listed);
  $("video-chart").replaceChildren(chart(v, alerts));
  renderAlerts($("video-alerts"), alerts, false);
}

function showVideo(id) {
  state.videoId = id;
  $("board-view").hidden = true;
  $("video-view").hidden = false;
  $("video-title").textContent = "Video " + id;
  $("video-facts").textContent = "loading…";
  $("video-chart").replaceChildren();
  $("video-alerts").replaceChildren();
  clearInterval(state.videoTimer);
  loadVideo(id);
  state.videoTimer = setInterval(() => loadVideo(id), VIDEO_REFRESH_MS);
}

function showBoard() {
  state.videoId = null;
  clearInterval(state.videoTimer);
  $("video-view").hidden = true;
  $("board-view").hidden = false;
}

// Likes per bucket as bars, the baseline and each tier's firing level per bucket as lines,
// and a vertical mark at each alert's and ENDED alert's decision time.
function chart(v, alerts) {
  const vel = v.velocity;
  const W = 960, H = 340, L = 54, R = 16, T = 22, B = 40;
  const bucket = vel.bucket_ms;
  const perWindow = Math.max(1, Math.round((vel.window_end - vel.window_start) / bucket));
  const baseline = vel.expected / perWindow;
  const level = vel.tiers.length > 0 ? (vel.tiers[0] * vel.expected) / perWindow : 0;
  // A rise its views corroborate is tested against a lower prior: its baseline and first
  // tier's level, drawn dashed when they differ (a corroborated alert's sentence names them).
  const corrBaseline = (vel.corroborated_expected ?? vel.expected) / perWindow;
  const corrLevel = vel.tiers.length > 0 ? vel.tiers[0] * corrBaseline : 0;
  const corrDiffers = corrBaseline < baseline;
  const buckets = vel.buckets || [];
  const marks = alerts
    .filter((a) => a.type === "VIRAL_VELOCITY" || a.type === "VIRAL_VELOCITY_ENDED")
    .map((a) => ({ at: a.detected_at, ended: a.type.endsWith("_ENDED"), tier: a.tier }));
  // The time axis spans the kept buckets, widened to the marks and the watermark only when
  // they are near (within MARK_SLACK_MS): an old alert would squeeze the bars to a sliver.
  const times = buckets.map((b) => b.start).concat(buckets.map((b) => b.start + bucket));
  const lo = Math.min(...times), hi = Math.max(...times);
  const near = (t) => times.length === 0 || (t >= lo - MARK_SLACK_MS && t <= hi + MARK_SLACK_MS);
  const far = marks.filter((m) => !near(m.at));
  const shown = marks.filter((m) => near(m.at));
  for (const m of shown) times.push(m.at);
  if (typeof v.watermark === "number" && near(v.watermark)) times.push(v.watermark);
  if (times.length === 0) times.push(v.watermark || 0);
  const x0 = Math.min(...times), x1 = Math.max(...times, x0 + bucket);
  const yMax = Math.max(1, level, baseline, ...buckets.map((b) => b.likes)) * 1.1;
  const x = (t) => L + ((t - x0) / (x1 - x0)) * (W - L - R);
  const y = (n) => T + (1 - Math.max(0, n) / yMax) * (H - T - B);

  const svg = svgEl("svg", {
    width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", id: "likes-chart",
    "data-video-id": v.video_id, "data-bars": buckets.length, "data-marks": shown.length,
  });
  const title = svgEl("title");
  title.textContent = "Net likes per " + bucket / 1000 + " s bucket of " + v.video_id;
  svg.appendChild(title);
  // Grid and y axis.
  for (let i = 0; i <= 4; i++) {
    const n = (yMax / 4) * i;
    svg.appendChild(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: y(n), y2: y(n) }));
    const t = svgEl("text", { x: L - 6, y: y(n) + 4, "text-anchor": "end" });
    t.textContent = n >= 10 ? Math.round(n) : n.toFixed(1);
    svg.appendChild(t);
  }
  svg.appendChild(svgEl("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  svg.appendChild(svgEl("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  // X labels: five times along the axis.
  for (let i = 0; i <= 4; i++) {
    const t = x0 + ((x1 - x0) / 4) * i;
    const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
    const lab = svgEl("text", { x: x(t), y: H - B + 16, "text-anchor": anchor });
    lab.textContent = clock(t);
    svg.appendChild(lab);
  }
  const yl = svgEl("text", { x: 8, y: T - 8 });
  yl.textContent = "likes / bucket (UTC)";
  svg.appendChild(yl);
  // Bars: the closed buckets, and the ones the watermark has not closed yet lighter.
  const bw = Math.max(1, x(x0 + bucket) - x(x0) - 1);
  for (const b of buckets) {
    const open = typeof v.watermark === "number" && b.start + bucket > v.watermark;
    const r = svgEl("rect", {
      class: open ? "bar bar-open" : "bar", x: x(b.start), y: y(b.likes), width: bw,
      height: Math.max(0, y(0) - y(b.likes)), "data-start": b.start, "data-likes": b.likes,
    });
    const tip = svgEl("title");
    tip.textContent = clock(b.start) + ": " + b.likes + " likes";
    r.appendChild(tip);
    svg.appendChild(r);
  }
  svg.appendChild(svgEl("line", { class: "baseline", x1: L, x2: W - R, y1: y(baseline), y2: y(baseline) }));
  if (corrDiffers) {
    svg.appendChild(svgEl("line", { class: "corr-baseline", x1: L, x2: W - R, y1: y(corrBaseline), y2: y(corrBaseline) }));
    svg.appendChild(svgEl("line", { class: "corr-level", x1: L, x2: W - R, y1: y(corrLevel), y2: y(corrLevel) }));
    const t = svgEl("text", { x: L + 6, y: y(corrLevel) - 4, class: "corr-label" });
    t.textContent =
      "tier 0 level if its views corroborate (×" + vel.tiers[0] + " of " +
      (corrBaseline * perWindow).toFixed(2) + " likes/window)" +
      (vel.corroborated ? ": they do now" : "");
    svg.appendChild(t);
  }
  // Each tier's level that fits the chart (the first always does: it sets the scale).
  vel.tiers.forEach((multiple, tier) => {
    const at = (multiple * vel.expected) / perWindow;
    if (tier > 0 && at > yMax) return;
    svg.appendChild(svgEl("line", { class: "level", x1: L, x2: W - R, y1: y(at), y2: y(at) }));
    const t = svgEl("text", { x: W - R - 4, y: y(at) - 4, "text-anchor": "end" });
    t.textContent = "tier " + tier + " level (×" + multiple + " baseline)";
    svg.appendChild(t);
  });
  if (far.length > 0) {
    const t = svgEl("text", { x: L + 6, y: H - 6, class: "far" });
    t.textContent =
      far.length + " alert mark(s) outside the kept buckets: " +
      far.map((m) => (m.ended ? "ENDED " : "ALERT ") + utc(m.at)).join(", ");
    svg.appendChild(t);
  }
  if (typeof v.watermark === "number" && v.watermark >= x0 && v.watermark <= x1) {
    svg.appendChild(svgEl("line", { class: "watermark", x1: x(v.watermark), x2: x(v.watermark), y1: T, y2: H - B }));
  }
  shown.forEach((m, i) => {
    const g = svgEl("g", { class: m.ended ? "mark mark-ended" : "mark mark-alert", "data-at": m.at });
    g.appendChild(svgEl("line", { x1: x(m.at), x2: x(m.at), y1: T, y2: H - B }));
    const t = svgEl("text", { x: x(m.at) + 4, y: T + 12 + (i % 3) * 13 });
    t.textContent = m.ended ? "ENDED" : "ALERT tier " + m.tier;
    g.appendChild(t);
    svg.appendChild(g);
  });
  return svg;
}

// ---- Routing ------------------------------------------------------------------------------

function route() {
  const m = location.hash.match(/^#\/video\/(.+)$/);
  if (m) {
    let id;
    try {
      id = decodeURIComponent(m[1]);
    } catch (_) {
      id = m[1];
    }
    showVideo(id);
  } else {
    showBoard();
  }
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  connect();
  route();
});
