// Rooms over the real binary: join, leave, list rooms, list users, and that
// room traffic (messages, typing, presence) reaches only the room's members.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { TRANSPORTS, request, next, record, login, sortedKeys, assertError, settle, wait, closeAll } from "./chat-helpers.mjs";

const REPLICA = "rooms-1";

for (const [transportName, topts] of Object.entries(TRANSPORTS)) {
  describe(`rooms over ${transportName}`, () => {
    let server;
    let url;
    before(async () => {
      server = await startServer(["--replica-id", REPLICA]);
      url = server.url;
    });
    after(() => server.stop());

    test("join room: ack lists members, members are told, messages stay in the room", async () => {
      const a = await login(url, "Ada", topts);
      const b = await login(url, "Bea", topts);
      const c = await login(url, "Cy", topts); // stays only in general
      const recC = record(c.socket);

      const j1 = await request(a.socket, "join room", "dev");
      assert.deepEqual(sortedKeys(j1), ["history", "ok", "room", "users"]);
      assert.deepEqual(j1.history, [], "nothing was said in dev yet");
      assert.equal(j1.ok, true);
      assert.equal(j1.room, "dev");
      assert.deepEqual(j1.users, [{ userId: a.me.userId, username: "Ada", replica: REPLICA }]);

      const joined = next(a.socket, "user joined", (p) => p.room === "dev");
      const j2 = await request(b.socket, "join room", "dev");
      assert.equal(j2.ok, true);
      const byId = (x, y) => (x.userId < y.userId ? -1 : 1);
      assert.deepEqual(
        [...j2.users].sort(byId),
        [
          { userId: a.me.userId, username: "Ada", replica: REPLICA },
          { userId: b.me.userId, username: "Bea", replica: REPLICA },
        ].sort(byId),
      );
      const uj = await joined;
      assert.deepEqual(
        { ...uj, ts: 0 },
        { username: "Bea", userId: b.me.userId, numUsers: 3, room: "dev", replica: REPLICA, ts: 0 },
      );

      // Joining a room twice is harmless.
      const again = await request(b.socket, "join room", "dev");
      assert.equal(again.ok, true);
      assert.equal(again.users.length, 2);

      // A message to dev reaches Bea only.
      const atB = next(b.socket, "new message");
      const ack = await request(a.socket, "new message", { room: "dev", message: "dev only" });
      assert.equal(ack.ok, true);
      assert.equal(ack.room, "dev");
      const m = await atB;
      assert.equal(m.room, "dev");
      assert.equal(m.message, "dev only");
      assert.equal(m.id, ack.id);

      // Typing in dev: also only Bea.
      const tB = next(b.socket, "typing");
      a.socket.emit("typing", { room: "dev" });
      assert.deepEqual(await tB, { username: "Ada", userId: a.me.userId, room: "dev" });

      // list users per room.
      const lu = await request(c.socket, "list users", "dev");
      assert.equal(lu.ok, true);
      assert.equal(lu.room, "dev");
      assert.deepEqual(lu.users.map((u) => u.username).sort(), ["Ada", "Bea"]);
      const lg = await request(c.socket, "list users");
      assert.equal(lg.room, "general", "default room when none is given");
      assert.deepEqual(lg.users.map((u) => u.username).sort(), ["Ada", "Bea", "Cy"]);

      // list rooms is cluster-wide with member counts.
      const lr = await request(c.socket, "list rooms");
      assert.deepEqual(sortedKeys(lr), ["ok", "rooms", "total"]);
      const rooms = Object.fromEntries(lr.rooms.map((r) => [r.name, r.members]));
      assert.equal(rooms.general, 3);
      assert.equal(rooms.dev, 2);
      for (const r of lr.rooms) assert.deepEqual(sortedKeys(r), ["members", "name"]);

      await settle(a.socket, b.socket, c.socket);
      await wait(200);
      assert.deepEqual(
        recC.events.filter((e) => e.args[0]?.room === "dev"),
        [],
        "Cy is not in dev and hears nothing from it",
      );
      closeAll(a.socket, b.socket, c.socket);
    });

    test("leave room: ack, members are told, no more messages from it", async () => {
      const a = await login(url, "Lea", topts);
      const b = await login(url, "Leo", topts);
      assert.equal((await request(a.socket, "join room", "ops")).ok, true);
      assert.equal((await request(b.socket, "join room", "ops")).ok, true);

      const left = next(a.socket, "user left", (p) => p.room === "ops");
      const res = await request(b.socket, "leave room", "ops");
      assert.deepEqual(res, { ok: true, room: "ops" });
      const ul = await left;
      assert.deepEqual(sortedKeys(ul), ["numUsers", "replica", "room", "ts", "userId", "username"]);
      assert.equal(ul.username, "Leo");
      assert.equal(ul.userId, b.me.userId);

      const recB = record(b.socket);
      assert.equal((await request(a.socket, "new message", { room: "ops", message: "after Leo left" })).ok, true);
      // Leo can no longer post there either.
      assertError(await request(b.socket, "new message", { room: "ops", message: "x" }), "NOT_IN_ROOM");
      assertError(await request(b.socket, "leave room", "ops"), "NOT_IN_ROOM");
      await settle(a.socket, b.socket);
      await wait(200);
      assert.deepEqual(recB.of("new message"), []);

      const lu = await request(a.socket, "list users", "ops");
      assert.deepEqual(lu.users.map((u) => u.username), ["Lea"]);
      closeAll(a.socket, b.socket);
    });

    test("leaving the default room keeps the login; rejoining works", async () => {
      const a = await login(url, "Gil", topts);
      const b = await login(url, "Gus", topts);
      assert.deepEqual(await request(a.socket, "leave room", "general"), { ok: true, room: "general" });
      const recA = record(a.socket);
      // Messages to general no longer reach Gil, and Gil cannot post there.
      assert.equal((await request(b.socket, "new message", "hello general")).ok, true);
      assertError(await request(a.socket, "new message", "hi"), "NOT_IN_ROOM");
      // Typing without an ack: the error comes as `chat error`.
      const ce = next(a.socket, "chat error");
      a.socket.emit("typing");
      const e = await ce;
      assert.equal(e.code, "NOT_IN_ROOM");
      assert.equal(e.event, "typing");
      await settle(a.socket, b.socket);
      await wait(150);
      assert.deepEqual(recA.of("new message"), []);
      // Still logged in: may join rooms, and rejoin general.
      // The same name again is answered like the first login (a client that
      // logs in on every connect, after a recovery); another name is refused.
      const again = await request(a.socket, "add user", "Gil");
      assert.equal(again.ok, true, JSON.stringify(again));
      assert.equal(again.userId, a.me.userId);
      assertError(await request(a.socket, "add user", "Gil2"), "ALREADY_LOGGED_IN");
      const rj = await request(a.socket, "join room", "general");
      assert.equal(rj.ok, true);
      assert.ok(rj.users.some((u) => u.userId === a.me.userId));
      const atA = next(a.socket, "new message");
      await request(b.socket, "new message", "welcome back");
      assert.equal((await atA).message, "welcome back");
      closeAll(a.socket, b.socket);
    });

    test("disconnect announces user left in every room of the user", async () => {
      const a = await login(url, "Multi", topts);
      const b = await login(url, "Watcher", topts);
      for (const r of ["r1", "r2"]) {
        assert.equal((await request(a.socket, "join room", r)).ok, true);
        assert.equal((await request(b.socket, "join room", r)).ok, true);
      }
      const rooms = new Set();
      const gotAll = new Promise((resolve) =>
        b.socket.on("user left", (p) => {
          if (p.userId !== a.me.userId) return;
          rooms.add(p.room);
          if (rooms.size === 3) resolve();
        }),
      );
      a.socket.close();
      await Promise.race([gotAll, wait(5000)]);
      assert.deepEqual([...rooms].sort(), ["general", "r1", "r2"]);
      const lr = await request(b.socket, "list rooms");
      const members = Object.fromEntries(lr.rooms.map((r) => [r.name, r.members]));
      assert.equal(members.r1, 1);
      assert.equal(members.r2, 1);
      b.socket.close();
    });
  });
}
