// dashboard_browser.js URL OUTDIR — drive GET /dashboard of a running server
// in headless chromium (Debian's, through playwright-core; test_dashboard.py
// runs it): the page loads, its canvases show non-empty plots, and after
// traffic (sent from here) the page's data and heatmap change. Writes
// OUTDIR/dashboard.png. Exit 0 ok, 1 a failed check, 77 the browser cannot
// start here (message says why).
"use strict";
const path = require("path");
const [url, outdir, pwdir] = process.argv.slice(2);
let chromium;
try {
  ({ chromium } = require(path.join(pwdir, "playwright-core")));
} catch (e) {
  console.error("SKIP: playwright-core is not installed (scripts/setup.sh installs it): " + e.message);
  process.exit(77);
}

function fail(msg) { console.error("FAIL: " + msg); process.exitCode = 1; }

// Pixels of a canvas that are not blank (transparent or white), and a hash.
const inkOf = (id) => {
  const c = document.getElementById(id), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let ink = 0, h = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] && !(d[i] > 250 && d[i + 1] > 250 && d[i + 2] > 250)) ink++;
    h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2] + d[i + 3]) >>> 0;
  }
  return { ink, h };
};

async function traffic(n) {
  const base = new URL(url).origin;
  await Promise.all([...Array(n)].map((_, i) => fetch(base + "/v1/completions", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: [0, 100 + i, 200 + 3 * i, 7], max_tokens: 24, temperature: 0, ignore_eos: true }),
  }).then((r) => r.text())));
}

(async () => {
  let browser;
  try {
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
                                      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  } catch (e) {
    console.error("SKIP: chromium cannot start here: " + String(e.message).split("\n")[0]);
    process.exit(77);
  }
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const external = [];
    page.on("request", (r) => { if (!r.url().startsWith(new URL(url).origin)) external.push(r.url()); });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const resp = await page.goto(url);
    if (!resp || resp.status() !== 200) fail("GET /dashboard -> " + (resp && resp.status()));
    await page.waitForFunction(() => Number(document.body.dataset.polls || 0) >= 2, null, { timeout: 20000 });
    const before = {};
    for (const id of ["heat", "ranks", "imb", "tps"]) before[id] = await page.evaluate(inkOf, id);
    if (before.heat.ink < 100) fail("the heatmap is empty: " + JSON.stringify(before.heat));
    if (before.ranks.ink < 50) fail("the rank load bars are empty: " + JSON.stringify(before.ranks));
    if (before.imb.ink < 20) fail("the imbalance plot is empty");
    const tok0 = Number(await page.evaluate(() => document.body.dataset.outputTokens));
    const steps0 = Number(await page.evaluate(() => document.body.dataset.windowSteps));
    await traffic(8);
    await page.waitForFunction((t) => Number(document.body.dataset.outputTokens) > t, tok0, { timeout: 30000 });
    await page.waitForFunction((s) => Number(document.body.dataset.windowSteps) > s, steps0, { timeout: 30000 });
    await page.waitForTimeout(1500); // one more poll: the tokens/s line has two points
    const after = {};
    for (const id of ["heat", "ranks", "tps"]) after[id] = await page.evaluate(inkOf, id);
    if (after.heat.h === before.heat.h) fail("the heatmap did not change after traffic");
    if (after.tps.ink < 20) fail("the tokens/s plot is empty after traffic");
    const status = await page.textContent("#status");
    if (!/^live/.test(status)) fail("status line: " + status);
    if (external.length) fail("the page fetched external assets: " + external.join(", "));
    if (errors.length) fail("page errors: " + errors.join("; "));
    await page.screenshot({ path: path.join(outdir, "dashboard.png"), fullPage: true });
    console.log(JSON.stringify({ before, after, status, tokens: [tok0, Number(await page.evaluate(
      () => document.body.dataset.outputTokens))] }));
  } catch (e) {
    fail(String(e && e.stack || e));
  } finally {
    await browser.close();
  }
})();
