// Limits over the real binary: bad names, long messages, bad room names, too
// many rooms and message floods are refused with the documented error codes,
// through the ack or `chat error`; the connection stays up and other users
// are not affected.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { TRANSPORTS, connect, request, next, record, login, assertError, settle, wait, closeAll } from "./chat-helpers.mjs";

describe("limits with the default settings", () => {
  let server;
  let url;
  before(async () => {
    server = await startServer(["--replica-id", "limits-1"]);
    url = server.url;
  });
  after(() => server.stop());

  test("user names: too long, empty, control characters, wrong type", async () => {
    const s = await connect(url, TRANSPORTS.websocket);
    assertError(await request(s, "add user", "x".repeat(33)), "INVALID_NAME");
    assertError(await request(s, "add user", ""), "INVALID_NAME");
    assertError(await request(s, "add user", "   "), "INVALID_NAME");
    assertError(await request(s, "add user", "bad\u0001name"), "INVALID_NAME");
    assertError(await request(s, "add user", "new\nline"), "INVALID_NAME");
    assertError(await request(s, "add user", { name: "obj" }), "BAD_REQUEST");
    // Without an ack: `chat error`.
    const ce = next(s, "chat error");
    s.emit("add user", "y".repeat(100));
    const e = await ce;
    assert.equal(e.code, "INVALID_NAME");
    assert.equal(e.event, "add user");
    // The limit is inclusive and counts characters, not bytes.
    const ok = await request(s, "add user", "é".repeat(32));
    assert.equal(ok.ok, true, JSON.stringify(ok));
    assert.equal(ok.username, "é".repeat(32));
    assert.equal(s.connected, true);
    s.close();
  });

  test("messages: too long, empty, wrong type; exactly at the limit is fine", async () => {
    const a = await login(url, "Long", TRANSPORTS.websocket);
    const b = await login(url, "Listener", TRANSPORTS.polling);
    const recB = record(b.socket);
    assertError(await request(a.socket, "new message", "x".repeat(2001)), "MESSAGE_TOO_LONG");
    assertError(await request(a.socket, "new message", { room: "general", message: "😀".repeat(2001) }), "MESSAGE_TOO_LONG");
    assertError(await request(a.socket, "new message", ""), "INVALID_MESSAGE");
    assertError(await request(a.socket, "new message", { room: "general" }), "INVALID_MESSAGE");
    assertError(await request(a.socket, "new message", ["array"]), "INVALID_MESSAGE");
    const ce = next(a.socket, "chat error");
    a.socket.emit("new message", "z".repeat(5000));
    const e = await ce;
    assert.equal(e.code, "MESSAGE_TOO_LONG");
    assert.equal(e.event, "new message");

    const atB = next(b.socket, "new message");
    const max = "😀".repeat(2000);
    const ok = await request(a.socket, "new message", max);
    assert.equal(ok.ok, true);
    assert.equal((await atB).message, max);
    await settle(a.socket, b.socket);
    await wait(100);
    assert.equal(recB.of("new message").length, 1, "refused messages were not delivered");
    closeAll(a.socket, b.socket);
  });

  test("room names: invalid characters, too long, empty", async () => {
    const a = await login(url, "Roomer", TRANSPORTS.default);
    for (const bad of ["bad/room", "a".repeat(41), "", "<script>", "tab\there", "room\u0000"]) {
      assertError(await request(a.socket, "join room", bad), "INVALID_ROOM");
    }
    for (const good of ["a".repeat(40), "Dev-ops_2.0", "with space"]) {
      const r = await request(a.socket, "join room", good);
      assert.equal(r.ok, true, `${good}: ${JSON.stringify(r)}`);
      assert.equal(r.room, good);
    }
    assertError(await request(a.socket, "new message", { room: "nowhere", message: "x" }), "NOT_IN_ROOM");
    a.socket.close();
  });

  test("too many rooms", async () => {
    const a = await login(url, "Greedy", TRANSPORTS.websocket);
    // In general already: 19 more make 20.
    for (let i = 1; i < 20; i++) {
      const r = await request(a.socket, "join room", `room-${i}`);
      assert.equal(r.ok, true, `room-${i}: ${JSON.stringify(r)}`);
    }
    assertError(await request(a.socket, "join room", "one-too-many"), "TOO_MANY_ROOMS");
    // Leaving one makes room for another.
    assert.equal((await request(a.socket, "leave room", "room-1")).ok, true);
    assert.equal((await request(a.socket, "join room", "one-too-many")).ok, true);
    assert.equal(a.socket.connected, true);
    a.socket.close();
  });
});

describe("rate limit", () => {
  let server;
  let url;
  before(async () => {
    server = await startServer(["--replica-id", "rate-1", "--rate", "5", "--burst", "10"]);
    url = server.url;
  });
  after(() => server.stop());

  for (const [transportName, topts] of Object.entries(TRANSPORTS)) {
    test(`a flood is cut off with RATE_LIMITED over ${transportName}; others are unaffected`, async () => {
      const flooder = await login(url, `Flooder-${transportName}`, topts);
      const calm = await login(url, `Calm-${transportName}`, topts);
      const recCalm = record(calm.socket);
      await wait(2500); // both buckets full again after the logins

      const replies = await Promise.all(
        Array.from({ length: 40 }, (_, i) => request(flooder.socket, "new message", `flood ${i}`)),
      );
      const ok = replies.filter((r) => r.ok);
      const limited = replies.filter((r) => !r.ok);
      for (const r of limited) assertError(r, "RATE_LIMITED");
      // A burst of 10 (plus at most a couple refilled meanwhile) gets through.
      assert.ok(ok.length >= 9 && ok.length <= 14, `accepted ${ok.length} of 40`);
      assert.equal(limited.length, 40 - ok.length);

      // Without acks the refusals arrive as `chat error`.
      const errors = [];
      flooder.socket.on("chat error", (e) => errors.push(e));
      for (let i = 0; i < 20; i++) flooder.socket.emit("new message", `no ack ${i}`);
      await settle(calm.socket);
      const deadline = Date.now() + 3000;
      while (errors.length < 15 && Date.now() < deadline) await wait(20);
      assert.ok(errors.length >= 15, `chat errors: ${errors.length}`);
      for (const e of errors) assert.deepEqual({ code: e.code, event: e.event }, { code: "RATE_LIMITED", event: "new message" });

      // The calm user got exactly the accepted messages and can still talk.
      await settle(calm.socket);
      await wait(200);
      const got = recCalm.of("new message").filter((m) => m.userId === flooder.me.userId);
      assert.equal(got.filter((m) => m.message.startsWith("flood ")).length, ok.length);
      const atFlooder = next(flooder.socket, "new message");
      assert.equal((await request(calm.socket, "new message", "I am fine")).ok, true);
      assert.equal((await atFlooder).message, "I am fine");

      // The flooder stays connected and may talk again after a pause.
      assert.equal(flooder.socket.connected, true);
      await wait(1000);
      const again = await request(flooder.socket, "new message", "sorry");
      assert.equal(again.ok, true, JSON.stringify(again));
      closeAll(flooder.socket, calm.socket);
    });
  }
});

describe("limits set by flags", () => {
  let server;
  let url;
  before(async () => {
    server = await startServer([
      "--replica-id", "flags-1",
      "--max-name", "5",
      "--max-message", "10",
      "--max-rooms", "2",
    ]);
    url = server.url;
  });
  after(() => server.stop());

  test("--max-name, --max-message and --max-rooms are enforced", async () => {
    const s = await connect(url, TRANSPORTS.websocket);
    assertError(await request(s, "add user", "sixsix"), "INVALID_NAME");
    assert.equal((await request(s, "add user", "fiver")).ok, true);
    assertError(await request(s, "new message", "x".repeat(11)), "MESSAGE_TOO_LONG");
    assert.equal((await request(s, "new message", "x".repeat(10))).ok, true);
    assert.equal((await request(s, "join room", "second")).ok, true);
    assertError(await request(s, "join room", "third"), "TOO_MANY_ROOMS");
    s.close();
  });
});
