// Bounds per client address (docs/transport.md, "Bounds per client IP and per
// process"): a flood of polling handshakes, sessions that connect, and idle
// TCP connections, each from one address, are refused at their bound while a
// user from another address logs in and chats.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startServer, sleep } from "./lib/server.mjs";
import { metric } from "./lib/target.mjs";
import { rssBytes, SANITIZED, SANITIZER_SLACK, keepAliveLoop, handshakeRequest, sumCounts, chatUser, newUserChats, wsSession } from "./lib/edge.mjs";

const ATTACKER = "127.0.0.2";
let srv;
const open = [];
after(async () => {
  for (const s of open) s.destroy?.() ?? s.terminate?.();
  await srv?.stop("SIGKILL");
});

test("polling handshakes over 8 keep-alive connections: sessions before CONNECT are capped and short-lived", async () => {
  const PENDING = 50;
  srv = await startServer(["--max-pending-per-ip", String(PENDING), "--connect-timeout", "1500", "--threads", "2"]);
  const alice = await chatUser(srv.url, "alice");
  await alice.say();
  const rss0 = rssBytes(srv.proc.pid);
  const before = await metric(srv.adminUrl, "chat_transport_sessions_refused_pending_total");

  const FLOOD_MS = 3000;
  const flood = Promise.all(
    Array.from({ length: 8 }, () =>
      keepAliveLoop(srv.port, handshakeRequest(srv.port), { localAddress: ATTACKER, ms: FLOOD_MS }),
    ),
  );
  await sleep(1000);
  // During: the user chats, a new user logs in, the sessions held stay at the cap.
  await alice.say();
  await newUserChats(srv.url, "bob");
  const openNow = await metric(srv.adminUrl, "chat_transport_connections_open");
  const results = await flood;
  const counts = sumCounts(results);

  assert.equal(srv.proc.exitCode, null, "server died");
  assert.ok(counts[503] > 500, `few refusals: ${JSON.stringify(counts)}`);
  // Every session the attacker got lives at most the connect timeout (1.5 s).
  const maxOpened = PENDING * (FLOOD_MS / 1500 + 2);
  assert.ok((counts[200] ?? 0) <= maxOpened, `${counts[200]} sessions opened > ${maxOpened}`);
  assert.ok(openNow <= PENDING + 2 + 8, `${openNow} sessions open during the flood`);
  const body = results.map((r) => r.bodies[503]).find(Boolean);
  assert.deepEqual(JSON.parse(body), {
    code: 4,
    message: "Too many sessions from this address waiting for their Socket.IO CONNECT",
  });
  const growth = rssBytes(srv.proc.pid) - rss0;
  const bound = (SANITIZED ? 120 : 30) * 2 ** 20 + SANITIZER_SLACK;
  assert.ok(growth < bound, `RSS grew by ${growth >> 20} MB`);
  assert.ok((await metric(srv.adminUrl, "chat_transport_sessions_refused_pending_total")) > before);

  // After: the attacker's sessions expired; the address may open one again.
  await sleep(2000);
  const again = await keepAliveLoop(srv.port, handshakeRequest(srv.port), { localAddress: ATTACKER, ms: 0 });
  assert.equal(again.counts[200], 1, JSON.stringify(again.counts));
  await alice.say();
  await newUserChats(srv.url, "carol");
  alice.close();
  await srv.stop();
});

test("sessions per address: the upgrade over the cap is refused with 503 and a reason", async () => {
  const CAP = 20;
  srv = await startServer(["--max-sessions-per-ip", String(CAP), "--threads", "2"]);
  const alice = await chatUser(srv.url, "alice");
  const before = await metric(srv.adminUrl, "chat_transport_sessions_refused_ip_total");
  for (let i = 0; i < CAP; i++) {
    const s = await wsSession(srv.port, { localAddress: ATTACKER });
    assert.equal(s.status, 101);
    assert.match(s.connectReply, /^40\{"sid"/);
    open.push(s.ws);
  }
  const refused = await wsSession(srv.port, { localAddress: ATTACKER });
  assert.equal(refused.status, 503);
  assert.deepEqual(JSON.parse(refused.body), { code: 4, message: "Too many sessions from this address" });
  const polling = await keepAliveLoop(srv.port, handshakeRequest(srv.port), { localAddress: ATTACKER, ms: 0 });
  assert.equal(polling.counts[503], 1);
  assert.equal((await metric(srv.adminUrl, "chat_transport_sessions_refused_ip_total")) - before, 2);
  await alice.say();
  await newUserChats(srv.url, "bob");
  // One session closes: the address may open one again.
  open.pop().terminate();
  await sleep(300);
  const s = await wsSession(srv.port, { localAddress: ATTACKER });
  assert.equal(s.status, 101);
  open.push(s.ws);
  alice.close();
  await srv.stop();
});

test("HTTP connections per peer: idle connections over the cap are closed at accept", async () => {
  const CAP = 10;
  srv = await startServer(["--max-connections-per-ip", String(CAP), "--trusted-proxies", "none", "--threads", "2"]);
  const alice = await chatUser(srv.url, "alice");
  const before = await metric(srv.adminUrl, "chat_transport_connections_refused_total");
  const connectIdle = () =>
    new Promise((resolve) => {
      const s = net.connect({ port: srv.port, host: "127.0.0.1", localAddress: ATTACKER });
      open.push(s);
      let closed = false;
      s.on("close", () => (closed = true));
      s.on("error", () => {});
      s.on("connect", () => setTimeout(() => resolve({ s, closed: () => closed }), 100));
    });
  const held = [];
  for (let i = 0; i < CAP; i++) held.push(await connectIdle());
  const extra = [];
  for (let i = 0; i < 5; i++) extra.push(await connectIdle());
  await sleep(200);
  assert.equal(held.filter((h) => h.closed()).length, 0, "a connection under the cap was closed");
  assert.equal(extra.filter((h) => h.closed()).length, 5, "connections over the cap stayed open");
  assert.equal((await metric(srv.adminUrl, "chat_transport_connections_refused_total")) - before, 5);
  await alice.say();
  await newUserChats(srv.url, "bob");
  for (const h of held) h.s.destroy();
  await sleep(200);
  const back = await connectIdle();
  assert.equal(back.closed(), false, "the address got no connection after its others closed");
  alice.close();
  await srv.stop();
});
