// The publish API over the real binary: a backend posts into rooms with an
// API key (curl-like fetch calls), members get the message through the
// official client, the history keeps it, every refusal is a JSON error with
// its status, and an Idempotency-Key makes a retry harmless.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startServer } from "./lib/server.mjs";
import { login, request, next, record, settle, wait, closeAll } from "./chat-helpers.mjs";

const KEY = "backend-key-0123456789abcdef0123456789";
const NEWS = "news-key-abcdefghijklmnopqrstuvwxyz0123";
const OTHER = "other-key-abcdefghijklmnopqrstuvwxyz012";
const sha = (s) => crypto.createHash("sha256").update(s).digest("hex");

function keysFile() {
  const dir = mkdtempSync(path.join(tmpdir(), "chat-api-"));
  const file = path.join(dir, "keys");
  writeFileSync(file, [
    "# name secret options",
    `backend ${KEY}`,
    `news sha256:${sha(NEWS)} rooms=news-*,general rate=3 burst=3`,
    `other ${OTHER}`,
    "",
  ].join("\n"));
  return file;
}

describe("publish API", () => {
  let server;
  let base;
  before(async () => {
    server = await startServer(["--replica-id", "api-1", "--api-keys", keysFile(), "--api-rate", "1000",
      "--api-burst", "1000"]);
    base = server.url;
  });
  after(() => server.stop());

  const post = (p, body, { key = KEY, headers = {}, raw } = {}) =>
    fetch(`${base}${p}`, {
      method: "POST",
      headers: { ...(key ? { Authorization: `Bearer ${key}` } : {}), "Content-Type": "application/json", ...headers },
      body: raw ?? JSON.stringify(body),
    });
  async function refusal(res, status, code) {
    assert.equal(res.status, status);
    assert.match(res.headers.get("content-type"), /application\/json/);
    const body = await res.json();
    assert.equal(body.ok, false, JSON.stringify(body));
    assert.equal(body.error.code, code, JSON.stringify(body));
    assert.ok(body.error.message.length > 0);
    return body;
  }

  test("a post reaches every member of the room, once, and stays in its history", async () => {
    const a = await login(base, "ann");
    const b = await login(base, "ben");
    try {
      assert.equal((await request(a.socket, "join room", "ops")).ok, true);
      assert.equal((await request(b.socket, "join room", "ops")).ok, true);
      const rb = record(b.socket);
      const got = next(a.socket, "new message", (m) => m.room === "ops");
      const res = await post("/api/rooms/ops/messages", { message: "deploy at 5", username: "Deploy bot" });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.ok, true);
      assert.equal(body.room, "ops");
      assert.equal(body.replica, "api-1");
      assert.equal(typeof body.id, "string");
      const m = await got;
      assert.equal(m.id, body.id);
      assert.equal(m.message, "deploy at 5");
      assert.equal(m.username, "Deploy bot");
      assert.equal(m.userId, "api:backend");
      assert.equal(m.api, "backend");
      assert.equal(m.ts, body.ts);
      await settle(b.socket);
      assert.equal(rb.of("new message").filter((x) => x.id === body.id).length, 1);

      const c = await login(base, "cat");
      try {
        const j = await request(c.socket, "join room", "ops");
        assert.ok(j.history.some((h) => h.id === body.id && h.message === "deploy at 5"), JSON.stringify(j.history));
      } finally {
        closeAll(c.socket);
      }
    } finally {
      closeAll(a.socket, b.socket);
    }
  });

  test("one request to several rooms; the username defaults to the key's name; rooms with spaces in the path", async () => {
    const a = await login(base, "dora");
    try {
      for (const r of ["r one", "r-two"]) assert.equal((await request(a.socket, "join room", r)).ok, true);
      const rec = record(a.socket);
      const res = await post("/api/messages", { rooms: ["r one", "r-two"], message: "to both" });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.deepEqual(body.messages.map((m) => m.room), ["r one", "r-two"]);
      const res2 = await post(`/api/rooms/${encodeURIComponent("r one")}/messages`, { message: "by path" });
      assert.equal(res2.status, 200);
      await wait(200);
      await settle(a.socket);
      const got = rec.of("new message");
      assert.deepEqual(got.map((m) => [m.room, m.message]), [["r one", "to both"], ["r-two", "to both"], ["r one", "by path"]]);
      assert.ok(got.every((m) => m.username === "backend"));
    } finally {
      closeAll(a.socket);
    }
  });

  test("every refusal: a JSON error with its status, and nothing is posted", async () => {
    const a = await login(base, "eve");
    try {
      const rec = record(a.socket);
      let res = await post("/api/rooms/general/messages", { message: "x" }, { key: null });
      await refusal(res, 401, "UNAUTHORIZED");
      assert.match(res.headers.get("www-authenticate"), /^Bearer/);
      await refusal(await post("/api/rooms/general/messages", { message: "x" }, { key: KEY + "x" }), 401, "UNAUTHORIZED");
      await refusal(await post("/api/rooms/general/messages", { message: "x" }, { key: `sha256:${sha(NEWS)}` }), 401, "UNAUTHORIZED");
      await refusal(await post("/api/rooms/general/messages", null, { headers: { "Content-Type": "text/plain" }, raw: "hello" }), 415, "UNSUPPORTED_MEDIA_TYPE");
      await refusal(await post("/api/rooms/general/messages", null, { raw: "{not json" }), 400, "BAD_JSON");
      await refusal(await post("/api/rooms/general/messages", null, { raw: "[".repeat(5000) }), 400, "BAD_JSON");
      await refusal(await post("/api/rooms/general/messages", null, { raw: "x".repeat(70 * 1024) }), 413, "PAYLOAD_TOO_LARGE");
      await refusal(await post("/api/rooms/general/messages", { text: "x" }), 400, "INVALID_MESSAGE");
      await refusal(await post("/api/rooms/general/messages", { message: "" }), 400, "INVALID_MESSAGE");
      await refusal(await post("/api/rooms/general/messages", { message: "x".repeat(5000) }), 400, "MESSAGE_TOO_LONG");
      await refusal(await post("/api/rooms/general/messages", { message: "x", username: 7 }), 400, "INVALID_NAME");
      await refusal(await post("/api/rooms/general/messages", { message: "x", username: "   " }), 400, "INVALID_NAME");
      await refusal(await post("/api/rooms/%23probe/messages", { message: "x" }), 400, "INVALID_ROOM");
      await refusal(await post("/api/rooms/%zz/messages", { message: "x" }), 400, "BAD_REQUEST");
      await refusal(await post("/api/messages", { message: "x" }), 400, "BAD_REQUEST");
      await refusal(await post("/api/messages", { message: "x", rooms: ["a", "a"] }), 400, "BAD_REQUEST");
      await refusal(await post("/api/messages", { message: "x", rooms: Array.from({ length: 101 }, (_, i) => `r${i}`) }), 400, "BAD_REQUEST");
      // One bad room refuses the whole broadcast before any of it is posted.
      await refusal(await post("/api/messages", { message: "x", rooms: ["general", "bad/room"] }), 400, "INVALID_ROOM");
      await refusal(await post("/api/messages", { message: "x", rooms: ["general", "staff"] }, { key: NEWS }), 403, "FORBIDDEN");
      await refusal(await post("/api/rooms/general/messages", { message: "x" }, { headers: { "Idempotency-Key": "" } }), 400, "BAD_REQUEST");
      await refusal(await post("/api/rooms/general/messages", { message: "x" }, { headers: { "Idempotency-Key": "k".repeat(256) } }), 400, "BAD_REQUEST");
      res = await fetch(`${base}/api/rooms/general/messages`, { headers: { Authorization: `Bearer ${KEY}` } });
      await refusal(res, 405, "METHOD_NOT_ALLOWED");
      assert.equal(res.headers.get("allow"), "POST");
      await refusal(await post("/api/rooms/general", { message: "x" }), 404, "NOT_FOUND");
      await wait(200);
      await settle(a.socket);
      assert.deepEqual(rec.of("new message"), [], "nothing refused was posted");
      const metrics = await (await fetch(`${server.adminUrl}/metrics`)).text();
      assert.match(metrics, /^chat_api_requests_total\{[^}]*result="unauthorized"\} 3$/m);
      assert.match(metrics, /^chat_api_requests_total\{[^}]*result="refused"\} [1-9]/m);
    } finally {
      closeAll(a.socket);
    }
  });

  test("a key limited to some rooms posts there, and its rate limit answers 429 with Retry-After", async () => {
    const a = await login(base, "fay");
    try {
      assert.equal((await request(a.socket, "join room", "news-eu")).ok, true);
      const rec = record(a.socket);
      const codes = [];
      for (let i = 0; i < 5; i++) {
        const res = await post("/api/rooms/news-eu/messages", { message: `n${i}` }, { key: NEWS });
        codes.push(res.status);
        if (res.status === 429) {
          const body = await refusal(res, 429, "RATE_LIMITED");
          assert.match(body.error.message, /news/);
          assert.ok(Number(res.headers.get("retry-after")) >= 1);
        }
      }
      assert.deepEqual(codes, [200, 200, 200, 429, 429], "burst 3, then refused");
      await settle(a.socket);
      await wait(100);
      assert.deepEqual(rec.of("new message").map((m) => m.message), ["n0", "n1", "n2"]);
      // A broadcast larger than the burst can never pass.
      await refusal(await post("/api/messages", { message: "x", rooms: ["news-a", "news-b", "news-c", "news-d"] }, { key: NEWS }), 429, "RATE_LIMITED");
    } finally {
      closeAll(a.socket);
    }
  });

  test("Idempotency-Key: a retry gets the first answer and is not delivered again; another body with the key is refused", async () => {
    const a = await login(base, "gus");
    try {
      assert.equal((await request(a.socket, "join room", "orders")).ok, true);
      const rec = record(a.socket);
      const headers = { "Idempotency-Key": `order-${Date.now()}` };
      const first = await post("/api/rooms/orders/messages", { message: "order 17 shipped" }, { headers });
      assert.equal(first.status, 200);
      const one = await first.json();
      assert.match(one.id, /^api-[0-9a-f]{32}$/);
      assert.equal(first.headers.get("idempotent-replayed"), null);
      const again = await post("/api/rooms/orders/messages", { message: "order 17 shipped" }, { headers });
      assert.equal(again.status, 200);
      assert.equal(again.headers.get("idempotent-replayed"), "true");
      assert.deepEqual(await again.json(), one);
      await refusal(await post("/api/rooms/orders/messages", { message: "order 18 shipped" }, { headers }), 422, "IDEMPOTENCY_MISMATCH");
      // The same key string under another API key is another request.
      const other = await post("/api/rooms/general/messages", { message: "order 17 shipped" }, { headers, key: OTHER });
      assert.equal(other.status, 200);
      assert.notEqual((await other.json()).id, one.id);
      await wait(200);
      await settle(a.socket);
      const got = rec.of("new message").filter((m) => m.room === "orders");
      assert.deepEqual(got.map((m) => m.id), [one.id], "delivered once");
      const j = await request(a.socket, "join room", "orders");
      assert.equal(j.history.filter((h) => h.message === "order 17 shipped").length, 1);
      const metrics = await (await fetch(`${server.adminUrl}/metrics`)).text();
      assert.match(metrics, /^chat_api_requests_total\{[^}]*result="replayed"\} 1$/m);
    } finally {
      closeAll(a.socket);
    }
  });
});

describe("publish API and connection state recovery", () => {
  let server;
  before(async () => {
    server = await startServer(["--replica-id", "api-rec", "--api-keys", keysFile(), "--recovery-window", "10000"]);
  });
  after(() => server.stop());

  test("a member whose connection drops gets, once it is back, the backend's messages it missed", async () => {
    const { io } = await import("socket.io-client");
    const s = io(server.url, { forceNew: true, transports: ["websocket"], reconnectionDelay: 1500, reconnectionDelayMax: 1500 });
    try {
      await new Promise((resolve, reject) => (s.once("connect", resolve), s.once("connect_error", reject)));
      assert.equal((await s.timeout(5000).emitWithAck("add user", "rita")).ok, true);
      assert.equal((await s.timeout(5000).emitWithAck("join room", "alerts")).ok, true);
      const got = [];
      s.on("new message", (m) => got.push(m));
      const post = (message) =>
        fetch(`${server.url}/api/rooms/alerts/messages`, {
          method: "POST",
          headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
          body: JSON.stringify({ message }),
        });
      // One message first: the client resumes from the offset of the last one it got.
      assert.equal((await post("disk at 80%")).status, 200);
      while (got.length < 1) await wait(20);
      const back = new Promise((resolve) => s.once("connect", resolve));
      s.io.engine.close(); // the transport drops; the client comes back by itself in 1.5 s
      await wait(100);
      assert.equal(s.connected, false);
      const res = await post("disk almost full");
      assert.equal(res.status, 200);
      const { id } = await res.json();
      await back;
      assert.equal(s.recovered, true, "connection state recovered");
      await wait(300);
      assert.deepEqual(got.filter((m) => m.id === id).map((m) => m.message), ["disk almost full"]);
    } finally {
      s.close();
    }
  });
});

describe("publish API off", () => {
  let server;
  before(async () => {
    server = await startServer(["--replica-id", "api-off"]);
  });
  after(() => server.stop());

  test("without --api-keys every call answers 404 API_DISABLED", async () => {
    const res = await fetch(`${server.url}/api/rooms/general/messages`, {
      method: "POST",
      headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify({ message: "x" }),
    });
    assert.equal(res.status, 404);
    assert.equal((await res.json()).error.code, "API_DISABLED");
  });

  test("a bad keys file stops the server at start with the line", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "chat-api-"));
    const file = path.join(dir, "keys");
    writeFileSync(file, "short tooshort\n");
    await assert.rejects(startServer(["--api-keys", file], { timeoutMs: 5000 }), /line 1.*shorter than 32/s);
  });
});
