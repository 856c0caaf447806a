// End-to-end test of the chat page in a real browser: the system's Chromium,
// driven by playwright-core, against the real chat-server binary. Two pages
// log in as two users and talk to each other; screenshots go to
// tests/browser/screenshots/ (and docs/img/chat.png when UPDATE_DOCS_IMG=1).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer } from "../integration/lib/server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const shots = path.join(here, "screenshots");
const chromiumPath = process.env.CHROMIUM_BIN || "/usr/bin/chromium";

let server;
let browser;
let alice;
let bob;

async function openAs(name, viewport = { width: 1200, height: 760 }, base = server.url) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && page.errors.push(m.text()));
  await page.goto(base + "/");
  await page.fill("#login-name", name);
  await page.click("#login-submit");
  await page.waitForSelector("#app:not([hidden])");
  await page.waitForFunction(() => document.querySelector("#conn-state").dataset.state === "connected");
  return page;
}

const texts = (page, sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent));

async function send(page, text) {
  await page.fill("#message-input", text);
  await page.press("#message-input", "Enter");
  // Own message appears at once and is marked acked when the ack arrives.
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages .msg.mine.acked .text")].some((e) => e.textContent === t),
    text,
  );
}

async function waitForMessage(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages .msg:not(.mine) .text")].some((e) => e.textContent === t),
    text,
  );
}

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  server = await startServer(["--replica-id", "replica-a"]);
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
  await browser?.close();
  await server?.stop();
});

test("a refused name is explained on the login screen", async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(server.url + "/");
  await page.fill("#login-name", "x".repeat(40));
  await page.click("#login-submit");
  await page.waitForSelector("#login-error:not([hidden])");
  assert.match(await page.textContent("#login-error"), /INVALID_NAME/);
  assert.equal(await page.isHidden("#app"), true);
  // A valid name then works on the same page.
  await page.fill("#login-name", "Retry");
  await page.click("#login-submit");
  await page.waitForSelector("#app:not([hidden])");
  assert.equal(await page.textContent("#me"), "Retry");
  await ctx.close();
});

test("two users log in and see each other online", async () => {
  alice = await openAs("Alice");
  bob = await openAs("Bob");
  assert.equal(await alice.textContent("#me"), "Alice");
  assert.equal(await bob.textContent("#me"), "Bob");
  // Both in the default room, both listed as online there.
  assert.equal(await alice.textContent("#room-title"), "# general");
  await alice.waitForFunction(() => document.querySelectorAll("#users li").length === 2);
  await bob.waitForFunction(() => document.querySelectorAll("#users li").length === 2);
  assert.deepEqual((await texts(alice, "#users .uname")).sort(), ["Alice", "Bob"]);
  assert.deepEqual((await texts(bob, "#users .uname")).sort(), ["Alice", "Bob"]);
  // Alice saw Bob arrive.
  await alice.waitForFunction(() =>
    [...document.querySelectorAll("#messages .system")].some((e) => e.textContent === "Bob joined"),
  );
  // The page shows the replica it is on, as reported by the server.
  assert.equal(await alice.textContent("#my-replica"), "replica-a");
  assert.match(await alice.textContent("#conn-transport"), /^(websocket|polling)$/);
});

test("messages flow both ways with author, replica badge and ack", async () => {
  await send(alice, "Hi Bob!");
  await waitForMessage(bob, "Hi Bob!");
  await send(bob, "Hello Alice, how are you?");
  await waitForMessage(alice, "Hello Alice, how are you?");

  const atBob = await bob.$eval("#messages .msg:not(.mine)", (li) => ({
    author: li.querySelector(".author").textContent,
    replica: li.querySelector(".replica-badge").textContent,
    time: li.querySelector("time").textContent,
  }));
  assert.equal(atBob.author, "Alice");
  assert.equal(atBob.replica, "replica-a");
  assert.match(atBob.time, /\d{1,2}:\d{2}/);

  // Own message: marked mine, acked with the server's id and replica.
  const own = await alice.$eval("#messages .msg.mine", (li) => ({
    author: li.querySelector(".author").textContent,
    status: li.querySelector(".status").textContent,
    id: li.dataset.id,
    replica: li.querySelector(".replica-badge").textContent,
  }));
  assert.deepEqual({ ...own, id: typeof own.id }, { author: "Alice", status: "✓", id: "string", replica: "replica-a" });
  assert.ok(own.id.length > 0);
  // A sender does not get its own message back: exactly one copy on each side.
  assert.equal((await texts(alice, "#messages .msg .text")).filter((t) => t === "Hi Bob!").length, 1);
  assert.equal((await texts(bob, "#messages .msg .text")).filter((t) => t === "Hi Bob!").length, 1);
});

test("typing indicator appears and goes away", async () => {
  await bob.type("#message-input", "typing something", { delay: 20 });
  await alice.waitForFunction(() => document.querySelector("#typing").textContent === "Bob is typing…");
  await alice.screenshot({ path: path.join(shots, "typing.png") });
  // Stops after a short quiet period without sending.
  await alice.waitForFunction(() => document.querySelector("#typing").textContent === "", null, { timeout: 8000 });
  await bob.fill("#message-input", "");
});

test("HTML in a message is shown as text, never executed", async () => {
  const evil = "<img src=x onerror=window.pwned=1>";
  await send(bob, evil);
  await waitForMessage(alice, evil);
  await alice.waitForTimeout(300);
  assert.equal(await alice.evaluate(() => window.pwned), undefined);
  assert.equal(await bob.evaluate(() => window.pwned), undefined);
  assert.equal(await alice.$$eval("#messages img", (els) => els.length), 0);
  const shown = await texts(alice, "#messages .msg .text");
  assert.ok(shown.includes(evil), `literal text shown: ${JSON.stringify(shown)}`);
});

test("a name with markup is shown as text too", async () => {
  const mallory = await openAs("<b>Mallory</b>");
  try {
    await alice.waitForFunction(() =>
      [...document.querySelectorAll("#users .uname")].some((e) => e.textContent === "<b>Mallory</b>"),
    );
    assert.equal(await alice.$$eval("#users b, #messages b", (els) => els.length), 0);
  } finally {
    await mallory.context().close();
  }
  await alice.waitForFunction(() => document.querySelectorAll("#users li").length === 2);
});

test("rooms: create, chat only inside, leave", async () => {
  await alice.fill("#join-name", "dev");
  await alice.press("#join-name", "Enter");
  await alice.waitForFunction(() => document.querySelector("#room-title").textContent === "# dev");
  // Bob sees the new room in the room list and joins it from there.
  await bob.waitForSelector('#all-rooms li[data-room="dev"] button', { timeout: 8000 });
  await bob.click('#all-rooms li[data-room="dev"] button');
  await bob.waitForFunction(() => document.querySelector("#room-title").textContent === "# dev");
  await alice.waitForFunction(() => document.querySelectorAll("#users li").length === 2);

  await send(alice, "in dev only");
  await waitForMessage(bob, "in dev only");
  // Not shown in general.
  await bob.click('#joined-rooms li[data-room="general"] .room-name');
  assert.ok(!(await texts(bob, "#messages .msg .text")).includes("in dev only"));
  await bob.click('#joined-rooms li[data-room="dev"] .room-name');

  // Bob leaves; Alice sees him go and the list shrinks.
  await bob.click("#leave-room");
  await bob.waitForFunction(() => !document.querySelector('#joined-rooms li[data-room="dev"]'));
  await alice.waitForFunction(() => document.querySelectorAll("#users li").length === 1);
  await alice.click('#joined-rooms li[data-room="general"] .room-name');
});

test("errors from the server are shown clearly", async () => {
  const tooLong = "x".repeat(2001);
  await alice.fill("#message-input", tooLong);
  await alice.press("#message-input", "Enter");
  await alice.waitForSelector("#messages .msg.mine.failed");
  const status = await alice.textContent("#messages .msg.mine.failed .status");
  assert.match(status, /MESSAGE_TOO_LONG/);
  assert.ok(await alice.$("#messages .msg.mine.failed .retry"));

  await alice.fill("#join-name", "bad/room!");
  await alice.press("#join-name", "Enter");
  await alice.waitForSelector("#toast:not([hidden])");
  assert.match(await alice.textContent("#toast"), /INVALID_ROOM/);
});

test("cluster view lists this replica", async () => {
  // Refreshed every few seconds; Mallory's visit may still be counted at first.
  await alice.waitForFunction(
    () => document.querySelector("#cluster li.mine .users")?.textContent === "2 users",
    null,
    { timeout: 8000 },
  );
  const row = await alice.$eval("#cluster li.mine", (li) => ({
    id: li.querySelector(".replica-badge").textContent,
    users: li.querySelector(".users").textContent,
  }));
  assert.equal(row.id, "replica-a");
  assert.equal(row.users, "2 users");
});

test("after a server-side disconnect the page logs in again and rejoins its rooms", async () => {
  await bob.fill("#join-name", "ops");
  await bob.press("#join-name", "Enter");
  await bob.waitForFunction(() => document.querySelector("#room-title").textContent === "# ops");
  // Drop the connection under the page; the client reconnects by itself.
  await bob.evaluate(() => {
    window.__reconnected = false;
    const s = window.__chatSocket;
    s.io.engine.close();
  });
  await bob.waitForFunction(() => document.querySelector("#conn-state").dataset.state === "connected");
  await bob.waitForFunction(() =>
    [...document.querySelectorAll("#messages .system")].some((e) => e.textContent.startsWith("Reconnected")),
  );
  // Still in both rooms on the server: a message to ops from Alice reaches Bob.
  await alice.fill("#join-name", "ops");
  await alice.press("#join-name", "Enter");
  await alice.waitForFunction(() => document.querySelector("#room-title").textContent === "# ops");
  await alice.waitForFunction(() =>
    [...document.querySelectorAll("#users .uname")].some((e) => e.textContent === "Bob"),
  );
  await send(alice, "are you back?");
  await waitForMessage(bob, "are you back?");
});

test("a new page shows the room's history; a reconnect adds nothing twice", async () => {
  await alice.click('#joined-rooms li[data-room="general"] .room-name');
  const carol = await openAs("Carol");
  // What Alice and Bob said in general before Carol came, in order, once each.
  await carol.waitForFunction(() =>
    [...document.querySelectorAll("#messages .msg .text")].some((e) => e.textContent === "Hello Alice, how are you?"),
  );
  const shown = await texts(carol, "#messages .msg .text");
  const hi = shown.indexOf("Hi Bob!");
  const hello = shown.indexOf("Hello Alice, how are you?");
  assert.ok(hi >= 0 && hello > hi, JSON.stringify(shown));
  assert.equal(shown.filter((t) => t === "Hi Bob!").length, 1);
  // The history arrives in the login reply, again after every reconnect: shown once.
  await carol.evaluate(() => window.__chatSocket.io.engine.close());
  await carol.waitForFunction(() =>
    [...document.querySelectorAll("#messages .system")].some((e) => e.textContent.startsWith("Reconnected")),
  );
  await send(alice, "after carol's reconnect");
  await waitForMessage(carol, "after carol's reconnect");
  const again = await texts(carol, "#messages .msg .text");
  for (const t of ["Hi Bob!", "Hello Alice, how are you?", "after carol's reconnect"])
    assert.equal(again.filter((x) => x === t).length, 1, `${t}: ${JSON.stringify(again)}`);
  assert.deepEqual(carol.errors, []);
  await carol.context().close();
});

test("screenshots and no page errors", async () => {
  await bob.click('#joined-rooms li[data-room="general"] .room-name');
  await alice.click('#joined-rooms li[data-room="general"] .room-name');
  await send(alice, "Looks good on a phone too ✓ — ünïcödé");
  await waitForMessage(bob, "Looks good on a phone too ✓ — ünïcödé");
  await alice.screenshot({ path: path.join(shots, "alice.png") });
  await bob.screenshot({ path: path.join(shots, "bob.png") });
  if (process.env.UPDATE_DOCS_IMG === "1") {
    const docs = path.join(here, "..", "..", "docs", "img");
    fs.mkdirSync(docs, { recursive: true });
    await bob.screenshot({ path: path.join(docs, "chat.png") });
  }
  const phone = await openAs("Phone", { width: 390, height: 760 });
  const hidden = await phone.locator("#rooms-panel").boundingBox();
  assert.ok(hidden.x + hidden.width <= 0, "rooms drawer starts closed");
  await phone.screenshot({ path: path.join(shots, "phone.png") });
  await phone.click("#toggle-rooms");
  await phone.waitForTimeout(300);
  // The rooms drawer slid in over the chat.
  const box = await phone.locator("#rooms-panel").boundingBox();
  assert.ok(box.x >= 0 && box.x < 50, `rooms drawer at x=${box.x}`);
  await phone.screenshot({ path: path.join(shots, "phone-rooms.png") });
  assert.deepEqual(phone.errors, []);
  await phone.context().close();
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
});

test("--ws-deflate: Chromium negotiates permessage-deflate; large messages travel compressed both ways", async () => {
  const { io } = await import("socket.io-client");
  const zipServer = await startServer(["--replica-id", "replica-zip", "--ws-deflate", "--max-message", "4000"]);
  const metric = async (name) => {
    const text = await (await fetch(`${zipServer.adminUrl}/metrics`)).text();
    return Number(text.match(new RegExp(`^${name}\\{[^}]*\\} (\\d+)$`, "m"))[1]);
  };
  const other = io(zipServer.url, { transports: ["websocket"], forceNew: true, reconnection: false });
  let page;
  try {
    await new Promise((resolve, reject) => (other.once("connect", resolve), other.once("connect_error", reject)));
    assert.equal((await other.timeout(5000).emitWithAck("add user", "node-user")).ok, true);
    page = await openAs("chromium-user", undefined, zipServer.url);
    // The page upgrades to WebSocket; Chromium always offers the extension.
    for (let i = 0; i < 50 && (await metric("chat_transport_deflate_sessions_total")) < 2; i++)
      await page.waitForTimeout(100);
    assert.equal(await metric("chat_transport_deflate_sessions_total"), 2, "the page and the Node client");
    const fromPage = "typed in a real browser, compressed by it ".repeat(40);
    const got = new Promise((resolve) => other.on("new message", (m) => m.message === fromPage && resolve(m)));
    await send(page, fromPage);
    assert.equal((await got).username, "chromium-user", "Chromium's compressed frame inflated here");
    const before = await metric("chat_transport_compressed_frames_total");
    const toPage = "sent to the browser as one compressed frame ".repeat(40);
    assert.equal((await other.timeout(5000).emitWithAck("new message", toPage)).ok, true);
    await waitForMessage(page, toPage);
    assert.ok((await metric("chat_transport_compressed_frames_total")) > before);
    assert.deepEqual(page.errors, []);
  } finally {
    other.close();
    await page?.context().close();
    await zipServer.stop();
  }
});

test("token mode: a page opened with #token= logs in under the token's name; a bad token is explained", async () => {
  const { mintToken } = await import("../integration/lib/jwt.mjs");
  const secret = "a-browser-test-secret-of-more-than-32-bytes";
  const jwtServer = await startServer(["--replica-id", "replica-jwt", "--auth", "jwt"], { env: { JWT_SECRET: secret } });
  const ctx = await browser.newContext();
  try {
    const token = mintToken({ sub: "user-tia", name: "Tia", exp: Math.floor(Date.now() / 1000) + 600 }, { key: secret });
    const page = await ctx.newPage();
    await page.goto(`${jwtServer.url}/#token=${token}`);
    assert.equal(new URL(page.url()).hash, "", "the token leaves the address bar");
    await page.fill("#login-name", "Mallory");
    await page.click("#login-submit");
    await page.waitForSelector("#app:not([hidden])");
    assert.equal(await page.textContent("#me"), "Tia");

    const bad = await ctx.newPage();
    await bad.goto(`${jwtServer.url}/#token=${token.slice(0, -4)}AAAA`);
    await bad.waitForSelector("#login-error:not([hidden])");
    assert.match(await bad.textContent("#login-error"), /UNAUTHORIZED: the token's signature does not verify/);
  } finally {
    await ctx.close();
    await jwtServer.stop();
  }
});
