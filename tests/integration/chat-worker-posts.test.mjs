// A room message is handed only to the I/O threads that have a member in
// the room: with two threads and one member, each message is one post, not
// one per thread (chat_delivery_posts_total).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { TRANSPORTS, request, login, wait, closeAll } from "./chat-helpers.mjs";

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
});
