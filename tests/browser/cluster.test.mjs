// The page in Chromium on a two-replica cluster behind HAProxy (real
// RabbitMQ): while another user keeps talking, the replica under the page is
// SIGKILLed. The page comes back by itself through the balancer on the other
// replica, recovered (connection state recovery), and shows every
// acknowledged message once, in order, with no gap; a reload then shows the
// room's history. Screenshot: tests/browser/screenshots/recovery.png (and
// docs/img/recovery.png when UPDATE_DOCS_IMG=1).
// Needs the release chat-server, rabbitmq-server, haproxy and chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startCluster, user, waitFor, sleep } from "../cluster/lib/cluster.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const shots = path.join(here, "screenshots");
const chromiumPath = process.env.CHROMIUM_BIN || "/usr/bin/chromium";

let c;
let browser;
const sockets = [];

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  c = await startCluster("browser", { replicas: 2 });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  for (const s of sockets) s.close();
  await browser?.close();
  await c?.down();
});

const others = (page) =>
  page.$$eval("#messages .msg:not(.mine) .text", (els) => els.map((e) => e.textContent));

async function login(page, name) {
  await page.fill("#login-name", name);
  await page.click("#login-submit");
  await page.waitForSelector("#app:not([hidden])");
  await page.waitForFunction(() => document.querySelector("#conn-state").dataset.state === "connected");
}

test("the replica under the page is killed: the page goes on on another one, no gap, nothing twice; a reload shows history", async (t) => {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 760 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(c.lbUrl + "/");
  await login(page, "Dana");
  const under = (await page.textContent("#my-replica")).trim();
  assert.ok(c.replicaIds.includes(under), `page on ${under}`);
  const other = c.replicaIds.find((r) => r !== under);

  // Eve talks from the other replica, one message every 100 ms.
  const eve = await user(c.urlOf(other), "Eve");
  sockets.push(eve.socket);
  const acked = [];
  let stop = false;
  let n = 0;
  const talking = (async () => {
    while (!stop) {
      const text = `live ${n++}`;
      eve.socket.timeout(10000).emitWithAck("new message", text).then((a) => a.ok && acked.push(text), () => {});
      await sleep(100);
    }
  })();
  t.after(() => {
    stop = true;
  });
  await sleep(1500);
  const t0 = Date.now();
  await c.killReplica(under);
  // Back by itself, through HAProxy, on the other replica, recovered.
  await page.waitForFunction(
    (r) => document.querySelector("#my-replica").textContent.trim() === r &&
      document.querySelector("#conn-state").dataset.state === "connected",
    other, { timeout: 30000 },
  );
  const back = Date.now() - t0;
  assert.equal(await page.evaluate(() => window.__chatSocket.recovered), true, "recovered");
  await page.waitForFunction(
    (r) => [...document.querySelectorAll("#messages .system")].some((e) => e.textContent === `Reconnected to ${r}: nothing missed.`),
    other,
  );
  await sleep(500);
  stop = true;
  await talking;
  await waitFor("every acknowledged message on the page", async () => {
    const shown = new Set(await others(page));
    return acked.every((x) => shown.has(x));
  }, 15000);
  const shown = (await others(page)).filter((x) => x.startsWith("live "));
  t.diagnostic(`page back on ${other} ${back} ms after the kill; ${acked.length} acknowledged, ${shown.length} shown`);
  for (const x of acked) assert.equal(shown.filter((y) => y === x).length, 1, `${x} shown once`);
  // In order: the page shows them by offset, which is Eve's sending order.
  const nums = shown.map((x) => Number(x.slice(5)));
  assert.deepEqual(nums, [...nums].sort((a, b) => a - b), "in order");
  // The cluster view forgets the dead replica within a few seconds.
  await page.waitForFunction(() => document.querySelectorAll("#cluster li").length === 1, null, { timeout: 20000 });
  await page.screenshot({ path: path.join(shots, "recovery.png") });
  if (process.env.UPDATE_DOCS_IMG === "1") {
    const docs = path.join(here, "..", "..", "docs", "img");
    fs.mkdirSync(docs, { recursive: true });
    await page.screenshot({ path: path.join(docs, "recovery.png") });
  }

  // A reload is a new page: it logs in again and the room's history fills it.
  await page.reload();
  await login(page, "Dana");
  const last = acked.slice(-20);
  await waitFor("the room's history after a reload", async () => {
    const now = new Set(await others(page));
    return last.every((x) => now.has(x));
  }, 15000);
  const again = await others(page);
  for (const x of last) assert.equal(again.filter((y) => y === x).length, 1, `${x} once after the reload`);
  assert.deepEqual(errors, []);
  await ctx.close();
});
