// The console across a ranker restart: opens the console and waits for its board and the
// live stream, writes --ready FILE, waits until a board arrives over the stream (the test
// publishes more events then), writes --streamed FILE, and waits for --go FILE (the test
// has restarted the ranker by then). The browser reconnects with the last event's id, the
// new ranker cannot resume another run's stream and sends "resync": the page must reload
// the board over REST and show it, live again. Prints one JSON line; exits non-zero on any
// failure.
//
//   node resync.js --url http://127.0.0.1:PORT --ready FILE --streamed FILE --go FILE
"use strict";
const fs = require("node:fs");
const { main, watchedPage } = require("./chromium");

const WAIT = 90000;

async function until(what, test) {
  const deadline = Date.now() + WAIT;
  while (!test()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

main(async (browser, problems, a) => {
  for (const k of ["url", "ready", "streamed", "go"]) if (!a[k]) throw new Error("missing --" + k);
  const page = await watchedPage(browser, problems);
  const boards = []; // when each /v1/leaderboard request was made
  page.on("request", (r) => {
    if (new URL(r.url()).pathname === "/v1/leaderboard") boards.push(Date.now());
  });
  await page.goto(a.url + "/", { waitUntil: "load" });
  await page.waitForSelector("#board tbody tr", { timeout: WAIT });
  await page.waitForFunction(() => document.getElementById("status").dataset.state === "live", null, {
    timeout: WAIT,
  });
  const first = await page.textContent("#board-window");
  fs.writeFileSync(a.ready, "");

  // A board the stream brought (the page asked for none since it loaded).
  const asked = boards.length;
  await page.waitForFunction((w) => document.getElementById("board-window").textContent !== w, first, {
    timeout: WAIT,
  });
  const streamed = await page.textContent("#board-window");
  if (boards.length !== asked) throw new Error("the page asked for the board instead of streaming it");
  const mark = problems.length;
  fs.writeFileSync(a.streamed, "");

  // From here the page asks for the board only when told to resync. The new ranker is up
  // before --go exists, so the page may do so before this script sees --go: count from
  // the streamed board, not from --go.
  const streamedAt = boards.length;
  await until("--go", () => fs.existsSync(a.go));
  await until("the page to ask for the board again after the restart", () => boards.length > streamedAt);
  await page.waitForFunction(() => document.getElementById("status").dataset.state === "live", null, {
    timeout: WAIT,
  });
  await page.waitForSelector("#board tbody tr", { timeout: WAIT });
  const after = await page.evaluate(() => ({
    rows: document.querySelectorAll("#board tbody tr").length,
    window: document.getElementById("board-window").textContent,
    status: document.getElementById("status").dataset.state,
  }));
  // The ranker was stopped on purpose: a request it could not answer while it was down
  // (a sparkline's, say) is the outage, not a fault of the page.
  const down = /ERR_(CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE)/;
  const later = problems.splice(mark);
  const outage = later.filter((p) => down.test(p));
  problems.push(...later.filter((p) => !down.test(p)));
  return {
    first,
    streamed,
    after,
    board_requests: boards.length,
    board_requests_after_restart: boards.length - streamedAt,
    outage_failures: outage,
  };
});
