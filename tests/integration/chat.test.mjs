// Chat events end to end over the real binary with the official
// socket.io-client, once per transport (websocket only, polling only, and the
// default polling-then-upgrade): login, presence, messages with acks,
// typing, the demo-compatible flow and disconnects.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import {
  TRANSPORTS,
  connect,
  request,
  next,
  record,
  login,
  sortedKeys,
  assertError,
  settle,
  wait,
  closeAll,
} from "./chat-helpers.mjs";

const REPLICA = "chat-test-1";

for (const [transportName, topts] of Object.entries(TRANSPORTS)) {
  describe(`chat over ${transportName}`, () => {
    let server;
    let url;
    before(async () => {
      server = await startServer(["--replica-id", REPLICA]);
      url = server.url;
    });
    after(async () => {
      const code = await server.stop();
      assert.equal(code, 0, `server exit code\n${server.logs().slice(-2000)}`);
    });

    test("add user: ack, login event and user joined with exact fields", async () => {
      const alice = await connect(url, topts);
      const aliceLogin = next(alice, "login");
      const ack = await request(alice, "add user", "  Alice  ");
      assert.deepEqual(sortedKeys(ack), ["history", "numUsers", "ok", "replica", "room", "userId", "username"]);
      assert.deepEqual(ack.history, [], "a new server has no history");
      assert.equal(ack.ok, true);
      assert.equal(ack.username, "Alice", "name is trimmed");
      assert.equal(ack.numUsers, 1);
      assert.equal(ack.replica, REPLICA);
      assert.equal(ack.room, "general");
      assert.equal(typeof ack.userId, "string");
      assert.ok(ack.userId.length > 0);
      const { ok: _ok, history: _history, ...loginExpected } = ack;
      assert.deepEqual(await aliceLogin, loginExpected);

      const bob = await connect(url, topts);
      const joined = next(alice, "user joined");
      const bobAck = await request(bob, "add user", "Bob");
      assert.equal(bobAck.numUsers, 2);
      assert.notEqual(bobAck.userId, ack.userId);
      const j = await joined;
      assert.deepEqual(sortedKeys(j), ["numUsers", "replica", "room", "ts", "userId", "username"]);
      assert.deepEqual(
        { ...j, ts: 0 },
        { username: "Bob", userId: bobAck.userId, numUsers: 2, room: "general", replica: REPLICA, ts: 0 },
      );
      assert.ok(Math.abs(j.ts - Date.now()) < 10000, `ts ${j.ts} is server time in ms`);

      // Bob leaves by disconnecting: Alice is told, with the new count.
      const left = next(alice, "user left");
      bob.close();
      const l = await left;
      assert.deepEqual(sortedKeys(l), ["numUsers", "replica", "room", "ts", "userId", "username"]);
      assert.deepEqual(
        { ...l, ts: 0 },
        { username: "Bob", userId: bobAck.userId, numUsers: 1, room: "general", replica: REPLICA, ts: 0 },
      );
      alice.close();
      await wait(100);
    });

    test("add user twice is refused, the first login stays", async () => {
      const { socket, me } = await login(url, "Carol", topts);
      assertError(await request(socket, "add user", "Carol2"), "ALREADY_LOGGED_IN");
      const users = await request(socket, "list users", "general");
      assert.deepEqual(
        users.users.filter((u) => u.userId === me.userId),
        [{ userId: me.userId, username: "Carol", replica: REPLICA }],
      );
      socket.close();
    });

    test("chat events before add user fail with NOT_LOGGED_IN", async () => {
      const s = await connect(url, topts);
      const rec = record(s);
      assertError(await request(s, "new message", "hi"), "NOT_LOGGED_IN");
      assertError(await request(s, "join room", "dev"), "NOT_LOGGED_IN");
      // Without an ack the error arrives as `chat error`.
      const err = next(s, "chat error");
      s.emit("new message", "hi");
      assert.deepEqual(await err, {
        code: "NOT_LOGGED_IN",
        message: (await err).message,
        event: "new message",
      });
      assert.equal(typeof (await err).message, "string");
      assert.equal(s.connected, true);
      assert.equal(rec.of("new message").length, 0);
      s.close();
    });

    test("new message: ack with id/ts/replica, delivered to others, not to the sender", async () => {
      const a = await login(url, "Ann", topts);
      const b = await login(url, "Ben", topts);
      const c = await login(url, "Cid", topts);
      const recA = record(a.socket);
      const atB = next(b.socket, "new message");
      const atC = next(c.socket, "new message");
      const before = Date.now();
      const ack = await request(a.socket, "new message", { room: "general", message: "héllo ✓ 😀 <b>x</b>" });
      assert.deepEqual(sortedKeys(ack), ["id", "ok", "replica", "room", "ts"]);
      assert.equal(ack.ok, true);
      assert.equal(ack.room, "general");
      assert.equal(ack.replica, REPLICA);
      assert.equal(typeof ack.id, "string");
      assert.ok(ack.id.length > 0);
      assert.ok(Number.isInteger(ack.ts) && ack.ts >= before - 5000 && ack.ts <= Date.now() + 5000);
      const expected = {
        id: ack.id,
        username: "Ann",
        userId: a.me.userId,
        message: "héllo ✓ 😀 <b>x</b>",
        room: "general",
        ts: ack.ts,
        replica: REPLICA,
      };
      // Every receiver sees the message at the same position in the room's history.
      const gotB = await atB;
      const gotC = await atC;
      assert.match(gotB.offset, /^[0-9]+$/);
      assert.deepEqual(gotB, { ...expected, offset: gotB.offset });
      assert.deepEqual(gotC, gotB);

      // A plain string goes to the default room too; ids are unique.
      const atB2 = next(b.socket, "new message");
      const ack2 = await request(a.socket, "new message", "second");
      assert.equal(ack2.ok, true);
      assert.notEqual(ack2.id, ack.id);
      assert.ok(ack2.ts >= ack.ts);
      assert.equal((await atB2).message, "second");

      await settle(a.socket, b.socket, c.socket);
      await wait(200);
      assert.equal(recA.of("new message").length, 0, "the sender does not get its own message");
      closeAll(a.socket, b.socket, c.socket);
    });

    test("messages from one sender arrive in order", async () => {
      const a = await login(url, "Orderly", topts);
      const b = await login(url, "Reader", topts);
      const got = [];
      b.socket.on("new message", (m) => m.userId === a.me.userId && got.push(m.message));
      const acks = await Promise.all(
        Array.from({ length: 30 }, (_, i) => request(a.socket, "new message", `m${i}`)),
      );
      assert.ok(acks.every((r) => r.ok));
      const deadline = Date.now() + 5000;
      while (got.length < 30 && Date.now() < deadline) await wait(20);
      assert.deepEqual(
        got,
        Array.from({ length: 30 }, (_, i) => `m${i}`),
      );
      closeAll(a.socket, b.socket);
    });

    test("typing and stop typing reach the others, not the typer", async () => {
      const a = await login(url, "Tia", topts);
      const b = await login(url, "Tom", topts);
      const recA = record(a.socket);
      const t = next(b.socket, "typing");
      a.socket.emit("typing");
      assert.deepEqual(await t, { username: "Tia", userId: a.me.userId, room: "general" });
      const st = next(b.socket, "stop typing");
      a.socket.emit("stop typing", { room: "general" });
      assert.deepEqual(await st, { username: "Tia", userId: a.me.userId, room: "general" });
      await settle(a.socket, b.socket);
      await wait(150);
      assert.equal(recA.of("typing").length + recA.of("stop typing").length, 0);
      closeAll(a.socket, b.socket);
    });

    test("demo-compatible flow: no acks, string messages", async () => {
      // What the official Socket.IO chat demo does, event for event.
      const a = await connect(url, topts);
      const b = await connect(url, topts);
      const loginA = next(a, "login");
      a.emit("add user", "demoA");
      const la = await loginA;
      assert.equal(la.username, "demoA");
      assert.equal(typeof la.numUsers, "number");
      const joined = next(a, "user joined", (p) => p.username === "demoB");
      const loginB = next(b, "login");
      b.emit("add user", "demoB");
      const lb = await loginB;
      assert.equal(lb.numUsers, la.numUsers + 1);
      assert.equal((await joined).numUsers, lb.numUsers);

      const msg = next(b, "new message");
      a.emit("new message", "hello from the demo");
      const m = await msg;
      assert.equal(m.username, "demoA");
      assert.equal(m.message, "hello from the demo");

      const typing = next(b, "typing");
      a.emit("typing");
      assert.equal((await typing).username, "demoA");
      const stop = next(b, "stop typing");
      a.emit("stop typing");
      assert.equal((await stop).username, "demoA");

      const left = next(b, "user left");
      a.close();
      const l = await left;
      assert.equal(l.username, "demoA");
      assert.equal(l.numUsers, lb.numUsers - 1);
      b.close();
    });

    test("cluster info describes this replica", async () => {
      const a = await login(url, "Clu", topts);
      // Only Clu is logged in now: the earlier tests closed their sockets, and
      // their logouts are processed shortly after the close.
      let info;
      const deadline = Date.now() + 5000;
      do {
        info = await request(a.socket, "cluster info");
        // Connection counts may lag by a presence heartbeat.
        if (info.replicas?.[0]?.users === 1 && info.replicas[0].connections >= 1) break;
        await wait(100);
      } while (Date.now() < deadline);
      assert.equal(info.ok, true);
      assert.equal(info.replica, REPLICA);
      assert.equal(info.replicas.length, 1);
      const r = info.replicas[0];
      assert.equal(r.id, REPLICA);
      assert.equal(r.users, 1);
      assert.ok(r.connections >= 1);
      assert.equal(typeof r.ageMs, "number");
      a.socket.close();
    });

    test("wrong argument types get clear errors, the connection stays", async () => {
      const a = await login(url, "Typo", topts);
      assertError(await request(a.socket, "new message", 42), "INVALID_MESSAGE");
      assertError(await request(a.socket, "join room", { name: "x" }), "BAD_REQUEST");
      assertError(await request(a.socket, "add user", 7), "ALREADY_LOGGED_IN");
      const ok = await request(a.socket, "new message", "still here");
      assert.equal(ok.ok, true);
      assert.equal(a.socket.connected, true);
      a.socket.close();
    });
  });
}
