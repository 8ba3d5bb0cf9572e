// Launches Debian's Chromium (never a browser Playwright downloads) and collects what the
// page reports as wrong: uncaught errors, console errors, failed requests, CSP violations.
"use strict";
const { chromium } = require("playwright-core");

async function launch() {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  return chromium.launch({
    executablePath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

// A page whose problems are gathered into `problems`.
async function watchedPage(browser, problems, viewport) {
  const page = await browser.newPage({ viewport: viewport || { width: 1400, height: 860 } });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    // An HTTP error status is an answer the page handles (a video no longer tracked is a
    // 404, a busy proxy a 503): Chromium logs it, but it is no fault of the page. Anything
    // else — a script error, a request the Content-Security-Policy refused — is.
    if (m.text().startsWith("Failed to load resource: the server responded with a status of")) return;
    problems.push("console error: " + m.text());
  });
  page.on("requestfailed", (r) => {
    // An EventSource closed by navigation or by the end of the test is not a failure.
    if (!r.url().endsWith("/v1/stream")) problems.push("request failed: " + r.url() + " " + (r.failure() || {}).errorText);
  });
  return page;
}

// Parses `--name value` pairs.
function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || argv[i + 1] === undefined) throw new Error("usage: --name value ...; got " + argv.join(" "));
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}

// Runs `body` and prints one JSON line: its result with ok: true, or ok: false and why.
async function main(body) {
  const problems = [];
  let browser;
  let result = {};
  let code = 0;
  try {
    browser = await launch();
    result = await body(browser, problems, args(process.argv.slice(2)));
    if (problems.length > 0) throw new Error(problems.join("; "));
    result.ok = true;
  } catch (e) {
    result.ok = false;
    result.error = String((e && e.stack) || e);
    result.problems = problems;
    code = 1;
  } finally {
    if (browser) await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(code);
}

module.exports = { launch, watchedPage, args, main };
