// A real browser against the deployed stack: Debian's Chromium, driven by
// playwright-core, opens the page through the balancer, logs in and chats
// with a user that the balancer put on another replica.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { lbUrl, user, waitFor, ask, warm } from "./lib.mjs";

const chromiumPath = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
let browser;
const open = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  open.forEach((u) => u.close());
  await browser?.close();
});

test("a browser through the balancer chats with a user on another replica", async () => {
  const page = await (await browser.newContext()).newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${lbUrl}/`);
  await page.fill("#login-name", "Browser");
  await page.click("#login-submit");
  await page.waitForSelector("#app:not([hidden])");
  await page.waitForFunction(() => document.querySelector("#conn-state").dataset.state === "connected");
  const pageReplica = await waitFor("the page to show its replica", async () => {
    const r = (await page.textContent("#my-replica"))?.trim();
    return r && r !== "-" && r;
  });
  // The page upgrades to WebSocket through the balancer (sticky cookie).
  await page.waitForFunction(() => document.querySelector("#conn-transport").textContent === "websocket", null, {
    timeout: 15000,
  });

  // A user on another replica than the page, and one on the page's (to know
  // when both replicas route the room: see warm()).
  let other;
  let beside;
  for (let i = 0; i < 20 && !(other && beside); i++) {
    const u = await user(`Peer${i}`);
    open.push(u);
    if (u.replica !== pageReplica) other ??= u;
    else beside ??= u;
  }
  assert.ok(other && beside, `20 users did not reach the page's replica ${pageReplica} and another one`);
  await warm([other, beside]);

  // Page -> other replica.
  await page.fill("#message-input", "hello from the browser");
  await page.press("#message-input", "Enter");
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#messages .msg.mine.acked .text")].some(
      (e) => e.textContent === "hello from the browser",
    ),
  );
  await waitFor("the peer to get the page's message", () =>
    other.got.some((m) => m.message === "hello from the browser" && m.replica === pageReplica),
  );
  // Other replica -> page.
  const ack = await ask(other.socket, "new message", "hello from another replica");
  assert.equal(ack.ok, true, JSON.stringify(ack));
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#messages .msg:not(.mine) .text")].some(
      (e) => e.textContent === "hello from another replica",
    ),
  );
  assert.deepEqual(errors, []);
});
