// A backtest report's chart: opens the report `replay --report` wrote (a local file) and
// saves its first episode chart as report-chart.png into --out. Prints one JSON line; exits
// non-zero when the report has no chart.
//
//   node report.js --file /path/report.html --out DIR
"use strict";
const path = require("node:path");
const { pathToFileURL } = require("node:url");
const { main, watchedPage } = require("./chromium");

main(async (browser, problems, a) => {
  for (const k of ["file", "out"]) if (!a[k]) throw new Error("missing --" + k);
  const page = await watchedPage(browser, problems, { width: 1100, height: 800 });
  await page.goto(pathToFileURL(path.resolve(a.file)).href, { waitUntil: "load" });
  const charts = await page.locator("svg[data-kind]").count();
  if (charts === 0) throw new Error("the report has no chart");
  // A detected episode's chart if there is one (our alert and the Poisson model's beside
  // the episode's start), else the first chart.
  const kinds = await page.locator("svg[data-kind]").evaluateAll((s) => s.map((x) => x.dataset.kind));
  const picked = kinds.includes("detected") ? "detected" : kinds[0];
  const section = page
    .locator("section.chart")
    .filter({ has: page.locator(`svg[data-kind="${picked}"]`) })
    .first();
  const out = path.join(a.out, "report-chart.png");
  await section.screenshot({ path: out });
  return { charts, kinds: [...new Set(kinds)], picked, screenshots: [out] };
});
