// The memory budget (--memory-budget-mb): once resident memory is over it,
// handshakes get 503 and Socket.IO CONNECTs a CONNECT_ERROR; users already in
// keep chatting, and new work is taken again once memory is back under it.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, sleep } from "./lib/server.mjs";
import { metric, withTimeout } from "./lib/target.mjs";
import { rssBytes, SANITIZED, keepAliveLoop, handshakeRequest, sumCounts, chatUser, wsSession } from "./lib/edge.mjs";

let srv;
after(() => srv?.stop("SIGKILL"));

const MB = 2 ** 20;
const NO_IP_BOUNDS = ["--max-pending-per-ip", "0", "--max-sessions-per-ip", "0", "--threads", "2"];
// Under AddressSanitizer freed memory waits in a quarantine (256 MB by
// default) before it goes back: keep it small, so RSS falls once the
// sessions are gone, as it does in a release build.
const asan = process.env.ASAN_OPTIONS ? process.env.ASAN_OPTIONS + ":" : "";
const env = { ASAN_OPTIONS: asan + "quarantine_size_mb=8:thread_local_quarantine_size_kb=256" };

test("over the memory budget: new sessions 503, CONNECT refused, users in chat on; under it again: new users in", async () => {
  // The idle size of this build, to set a budget a little above it.
  srv = await startServer(NO_IP_BOUNDS, { env });
  const warm = await chatUser(srv.url, "warm");
  await warm.say();
  warm.close();
  const idle = rssBytes(srv.proc.pid);
  await srv.stop();
  // Above the idle size by what some thousands of sessions take; under
  // AddressSanitizer more (its allocator gives freed memory back slowly, and
  // RSS must fall under the budget again at the end). The flood below must
  // cross it within the sessions' connect timeout.
  const budgetMb = Math.ceil(idle / MB) + (SANITIZED ? 48 : 12);
  const connectTimeoutMs = SANITIZED ? 8000 : 4000;
  const floodMs = SANITIZED ? 6000 : 3000;

  srv = await startServer([...NO_IP_BOUNDS, "--memory-budget-mb", String(budgetMb), "--connect-timeout", String(connectTimeoutMs)], { env });
  const alice = await chatUser(srv.url, "alice");
  await alice.say();
  // A session opened before the flood, that sends its CONNECT during it.
  const late = await wsSession(srv.port, { localAddress: "127.0.0.3", connect: false });
  assert.equal(late.status, 101);

  // Sessions that never CONNECT, as fast as 8 connections allow, until refused
  // (each connection stops at its first 503; at most floodMs).
  let peak = 0;
  // unref: a failed assertion below must not leave the test process running.
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(srv.proc.pid))), 20);
  sampler.unref();
  const results = await Promise.all(
    Array.from({ length: 8 }, () =>
      keepAliveLoop(srv.port, handshakeRequest(srv.port), { localAddress: "127.0.0.2", ms: floodMs, until: 503 }),
    ),
  );
  const counts = sumCounts(results);
  assert.ok(counts[503] > 0, `never over the budget of ${budgetMb} MB: ${JSON.stringify(counts)}`);
  const body = results.map((r) => r.bodies[503]).find(Boolean);
  assert.deepEqual(JSON.parse(body), { code: 4, message: "Server over its memory budget" });
  assert.equal(await metric(srv.adminUrl, "chat_process_memory_over_budget"), 1);
  assert.ok((await metric(srv.adminUrl, "chat_transport_sessions_refused_memory_total")) > 0);

  // CONNECT over the budget: CONNECT_ERROR with the reason.
  const reply = new Promise((resolve) => late.ws.on("message", (d) => d.toString().startsWith("44") && resolve(d.toString())));
  late.ws.send("40");
  const err = JSON.parse((await withTimeout(reply, 5000, "CONNECT_ERROR")).slice(2));
  assert.equal(err.message, "server over its memory budget: try again later");
  assert.ok((await metric(srv.adminUrl, "chat_transport_connects_refused_memory_total")) >= 1);
  late.ws.terminate();

  // The user who is in chats during the flood's aftermath.
  await alice.say();
  clearInterval(sampler);
  const slack = (SANITIZED ? 96 : 32) * MB;
  assert.ok(peak < budgetMb * MB + slack, `peak ${peak >> 20} MB over budget ${budgetMb} MB + slack`);

  // The sessions expire (the connect timeout); freed memory goes back; new users get in.
  let back = false;
  for (let i = 0; i < 150 && !back; i++) {
    await sleep(100);
    back = (await metric(srv.adminUrl, "chat_process_memory_over_budget")) === 0;
  }
  assert.ok(back, `still over the budget: RSS ${rssBytes(srv.proc.pid) >> 20} MB, budget ${budgetMb} MB`);
  const bob = await chatUser(srv.url, "bob");
  await bob.say();
  await alice.say();
  bob.close();
  alice.close();
  assert.equal(srv.proc.exitCode, null);
});
