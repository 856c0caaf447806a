// The session cap (--max-connections) is answered at the handshake with 503;
// TCP is not refused for it, so /healthz and /readyz answer at the cap.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, sleep } from "./lib/server.mjs";
import { metric } from "./lib/target.mjs";
import { keepAliveLoop, handshakeRequest, chatUser, newUserChats, wsSession } from "./lib/edge.mjs";

let srv;
const held = [];
after(async () => {
  for (const w of held) w.terminate();
  await srv?.stop("SIGKILL");
});

test("at --max-connections sessions: handshakes get 503, health checks 200, users in get to chat", async () => {
  const CAP = 6;
  srv = await startServer(["--max-connections", String(CAP), "--threads", "2"]);
  const alice = await chatUser(srv.url, "alice");
  for (let i = 1; i < CAP; i++) {
    const s = await wsSession(srv.port, { localAddress: "127.0.0.2" });
    assert.equal(s.status, 101);
    held.push(s.ws);
  }
  assert.equal(await metric(srv.adminUrl, "chat_transport_connections_open"), CAP);
  const before = await metric(srv.adminUrl, "chat_transport_sessions_refused_cap_total");

  const ws = await wsSession(srv.port, { localAddress: "127.0.0.3" });
  assert.equal(ws.status, 503);
  assert.deepEqual(JSON.parse(ws.body), { code: 4, message: "Server at its session limit" });
  const polling = await keepAliveLoop(srv.port, handshakeRequest(srv.port), { localAddress: "127.0.0.3", ms: 0 });
  assert.equal(polling.counts[503], 1);
  // Health checks on fresh connections, as HAProxy and Docker make them.
  for (let i = 0; i < 20; i++) {
    for (const p of ["/healthz", "/readyz"]) {
      const r = await fetch(srv.url + p, { headers: { connection: "close" } });
      assert.equal(r.status, 200, `${p} at the cap`);
      await r.text();
    }
  }
  assert.deepEqual(await (await fetch(srv.url + "/readyz")).json(), { ready: true });
  assert.equal((await metric(srv.adminUrl, "chat_transport_sessions_refused_cap_total")) - before, 2);
  // The user who is in chats.
  await alice.say();

  // Below the cap again, new users get in.
  held.pop().terminate();
  await sleep(300);
  await newUserChats(srv.url, "bob");
  await alice.say();
  alice.close();
  assert.equal(srv.proc.exitCode, null);
});
