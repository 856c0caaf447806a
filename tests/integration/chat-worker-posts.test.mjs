// A room message is handed only to the I/O threads that have a member in
// the room: with two threads and one member, each message is one post, not
// one per thread (chat_delivery_posts_total). With members on both threads
// each thread gets its own copy of the encoded messages, and every member
// each message once, intact and in order.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { TRANSPORTS, request, login, record, wait, closeAll } from "./chat-helpers.mjs";

async function posts(server) {
  const m = await (await fetch(`${server.adminUrl}/metrics`)).text();
  const hit = m.match(/^chat_delivery_posts_total(?:\{[^}]*\})? (\d+)/m);
  assert.ok(hit, "chat_delivery_posts_total is exported");
  return Number(hit[1]);
}

describe("posts to I/O threads", () => {
  let server;
  before(async () => {
    server = await startServer(["--threads", "2"]);
  });
  after(() => server.stop());

  test("a room with members on one thread costs one post per message", async () => {
    const a = await login(server.url, "Ann", TRANSPORTS.websocket);
    const room = `solo-${Date.now()}`;
    const joined = await request(a.socket, "join room", room);
    assert.equal(joined.ok, true, JSON.stringify(joined));
    await wait(200);
    const before = await posts(server);
    const n = 20;
    for (let i = 0; i < n; i++) {
      const ack = await request(a.socket, "new message", { room, message: `m${i}` });
      assert.equal(ack.ok, true, JSON.stringify(ack));
    }
    await wait(200);
    const delta = (await posts(server)) - before;
    // One envelope per publish on the in-process bus: n batches, each to
    // Ann's thread only (every thread would make 2n).
    assert.ok(delta >= n && delta < 1.5 * n, `${delta} posts for ${n} messages`);
    closeAll(a.socket);
  });

  test("members on both threads each get every message once, intact, in order", async () => {
    // Connections go round robin over the threads: four users, two per thread.
    const users = [];
    for (const name of ["Bo", "Cy", "Di", "Ed"]) users.push(await login(server.url, name, TRANSPORTS.websocket));
    const room = `both-${Date.now()}`;
    for (const u of users) assert.equal((await request(u.socket, "join room", room)).ok, true);
    await wait(200);
    const seen = users.map((u) => record(u.socket));
    const before = await posts(server);
    const n = 30;
    const texts = [];
    for (let i = 0; i < n; i++) {
      const text = `m${i} ${"é".repeat(i)}`;
      texts.push(text);
      const ack = await request(users[i % 4].socket, "new message", { room, message: text });
      assert.equal(ack.ok, true, JSON.stringify(ack));
    }
    await wait(300);
    const delta = (await posts(server)) - before;
    assert.ok(delta >= 2 * n, `${delta} posts for ${n} messages to members on two threads`);
    for (let k = 0; k < 4; k++) {
      // Each user gets the messages of the other three, not its own.
      const want = texts.filter((_, i) => i % 4 !== k);
      const got = seen[k].of("new message").filter((m) => m.room === room).map((m) => m.message);
      assert.deepEqual(got, want, `messages of ${users[k].me.username ?? k}`);
    }
    closeAll(...users.map((u) => u.socket));
  });
});
