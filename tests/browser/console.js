// The console end to end: opens the ranker's console, waits for the board and for the
// viral-velocity alert of --video in the feed, then opens that video's page from the alert
// and checks its chart has bars and an alert mark (and an ENDED mark with --ended 1). Saves
// console-board<SUFFIX>.png and console-video<SUFFIX>.png into --out. Prints one JSON line;
// exits non-zero on any failure.
//
//   node console.js --url http://127.0.0.1:PORT --video VIDEO_ID --out DIR
//                   [--ended 1] [--suffix S] [--shots board,video]
"use strict";
const path = require("node:path");
const { main, watchedPage } = require("./chromium");

const WAIT = 60000;

main(async (browser, problems, a) => {
  for (const k of ["url", "video", "out"]) if (!a[k]) throw new Error("missing --" + k);
  const page = await watchedPage(browser, problems);
  const response = await page.goto(a.url + "/", { waitUntil: "load" });
  const csp = response.headers()["content-security-policy"] || "";

  // The board: at least one row, and sparklines for its top rows.
  await page.waitForSelector("#board tbody tr", { timeout: WAIT });
  // The alert feed: the alert the test knows of.
  await page.waitForFunction(
    (video) =>
      [...document.querySelectorAll("#alerts li")].some(
        (li) => li.dataset.videoId === video && li.dataset.type === "VIRAL_VELOCITY",
      ),
    a.video,
    { timeout: WAIT },
  );
  await page.waitForSelector("#board .spark polyline", { timeout: WAIT });
  const board = await page.evaluate(() => ({
    rows: document.querySelectorAll("#board tbody tr").length,
    sparklines: document.querySelectorAll("#board .spark polyline").length,
    first: (document.querySelector("#board tbody tr") || {}).dataset?.videoId || null,
    alerts: document.querySelectorAll("#alerts li").length,
    status: document.getElementById("status").dataset.state,
    sentence: [...document.querySelectorAll("#alerts li")]
      .map((li) => li.querySelector(".sentence").textContent)
      .find((t) => t.length > 0) || "",
  }));
  const suffix = a.suffix || "";
  const shots = (a.shots || "board,video").split(",");
  const saved = [];
  if (shots.includes("board")) {
    saved.push(path.join(a.out, "console-board" + suffix + ".png"));
    await page.screenshot({ path: saved[saved.length - 1] });
  }

  // The video page, reached from the alert's link.
  const link = page
    .locator("#alerts li[data-type='VIRAL_VELOCITY']")
    .filter({ has: page.locator(".alert-head a.video", { hasText: a.video }) })
    .first()
    .locator("a.video");
  await link.click();
  // Attached, not visible: a bucket of 0 likes is a bar of no height.
  await page.waitForSelector("#likes-chart rect.bar", { state: "attached", timeout: WAIT });
  // After the episode, its alert may be older than the buckets the counter still holds:
  // then it is named under the chart instead of marked on it.
  const mark = a.ended === "1" ? "g.mark-ended" : "g.mark-alert";
  await page.waitForSelector("#likes-chart " + mark, { state: "attached", timeout: WAIT });
  const video = await page.evaluate(() => {
    const svg = document.getElementById("likes-chart");
    return {
      hash: location.hash,
      chart_video: svg.dataset.videoId,
      bars: svg.querySelectorAll("rect.bar").length,
      alert_marks: svg.querySelectorAll("g.mark-alert").length,
      ended_marks: svg.querySelectorAll("g.mark-ended").length,
      outside: (svg.querySelector("text.far") || {}).textContent || "",
      baseline: svg.querySelectorAll("line.baseline").length,
      level: svg.querySelectorAll("line.level").length,
      corroborated_level: svg.querySelectorAll("line.corr-level").length,
      alerts_listed: document.querySelectorAll("#video-alerts li").length,
      title: document.getElementById("video-title").textContent,
      // The board gives way to the video page (the hidden attribute is not overridden).
      board_shown: getComputedStyle(document.getElementById("board-view")).display !== "none",
    };
  });
  if (shots.includes("video")) {
    saved.push(path.join(a.out, "console-video" + suffix + ".png"));
    await page.screenshot({ path: saved[saved.length - 1], fullPage: true });
  }
  return { csp, board, video, screenshots: saved };
});
