// Hostile clients: many connections that each send one large frame and then
// sit idle. The read buffer that grew for the frame is released after it is
// handled, so idle connections do not keep their largest message; a noop
// packet ("6") with a body is refused as a protocol error (WebSocket and
// polling). A normal user chats with normal latency throughout.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rawWsConnect, wsFrame } from "./lib/rawtcp.mjs";
import { metric, eioPath, pollingHandshake } from "./lib/target.mjs";
import { startChatServer, assertCleanExit, rssMiB, rssSampler, chatter, assertChatUnaffected, sleep } from "./lib/hostile.mjs";

const CONNECTIONS = 200;
const FRAME = 900_000;

async function waitFor(pred, ms, what) {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > ms) throw new Error(`timeout after ${ms} ms: ${what}`);
    await sleep(100);
  }
}

async function openMany(port, n) {
  const socks = [];
  for (let i = 0; i < n; i += 20) {
    const batch = await Promise.all(Array.from({ length: Math.min(20, n - i) }, () => rawWsConnect(port)));
    for (const { sock } of batch) {
      sock.on("error", () => {});
      sock.on("data", () => {}); // read what the server sends (open packet, pings)
      socks.push(sock);
    }
  }
  return socks;
}

test(`${CONNECTIONS} connections each send one ${FRAME / 1000} kB message, then idle: the read buffers are released`, async (t) => {
  const srv = await startChatServer();
  const bystander = await chatter(srv.url);
  const socks = await openMany(srv.port, CONNECTIONS);
  try {
    const rss0 = rssMiB(srv.proc.pid);
    const bytes0 = await metric(srv.adminUrl, "chat_transport_bytes_in_total");
    // A pong with a large body: valid, read in full, and dropped.
    const frame = wsFrame("3" + "p".repeat(FRAME - 1));
    for (const s of socks) s.write(frame);
    await waitFor(
      async () => (await metric(srv.adminUrl, "chat_transport_bytes_in_total")) - bytes0 >= CONNECTIONS * FRAME,
      20000,
      "the server to read every large frame",
    );
    await sleep(500);
    const growth = rssMiB(srv.proc.pid) - rss0;
    t.diagnostic(`RSS +${growth.toFixed(1)} MiB with ${CONNECTIONS} idle connections after one ${FRAME} B message each`);
    // Held buffers would be 200 x 900 kB = 172 MiB.
    assert.ok(growth < 48, `server RSS is ${growth.toFixed(1)} MiB above its start: read buffers kept`);
    assert.ok(socks.every((s) => !s.destroyed), "a connection that sent a valid message was closed");
    assert.equal(srv.proc.exitCode, null, "server process exited");
    await sleep(500);
    await assertChatUnaffected(srv.url, await bystander.stop());
    bystander.close();
    await assertCleanExit(srv);
  } finally {
    for (const s of socks) s.destroy();
    bystander.close();
    await srv.stop();
  }
});

test(`noop packets with a body are refused: ${CONNECTIONS} WebSockets with a ${FRAME / 1000} kB noop, and polling`, async (t) => {
  const srv = await startChatServer();
  const bystander = await chatter(srv.url);
  const socks = await openMany(srv.port, CONNECTIONS);
  try {
    const METRIC = "chat_transport_protocol_errors_total";
    const before = await metric(srv.adminUrl, METRIC);
    const rss0 = rssMiB(srv.proc.pid);
    const sampler = rssSampler(srv.proc.pid);
    let closed = 0;
    for (const s of socks) s.on("close", () => closed++);
    const frame = wsFrame("6" + "n".repeat(FRAME - 1));
    for (const s of socks) s.write(frame);
    await waitFor(async () => closed === CONNECTIONS, 20000, `the server to close all ${CONNECTIONS} noop senders (${closed} closed)`);
    sampler.stop();
    assert.ok((await metric(srv.adminUrl, METRIC)) - before >= CONNECTIONS, `${METRIC} did not count every noop with a body`);
    await sleep(500);
    const growth = rssMiB(srv.proc.pid) - rss0;
    // The frames are read in full before they are refused (each within
    // --max-payload); afterwards nothing of them may stay.
    t.diagnostic(
      `RSS peak +${(sampler.peak() - rss0).toFixed(1)} MiB while ${CONNECTIONS} noops of ${FRAME} B were refused, +${growth.toFixed(1)} MiB after`,
    );
    assert.ok(growth < 48, `server RSS is ${growth.toFixed(1)} MiB above its start after the noops`);

    // Polling: the body gets 400, the session is gone. An empty noop is fine.
    const { sid } = await pollingHandshake(srv.url);
    const ok = await fetch(eioPath(srv.url, `sid=${sid}`), { method: "POST", body: "6" });
    assert.equal(ok.status, 200);
    await ok.text();
    const bad = await fetch(eioPath(srv.url, `sid=${sid}`), { method: "POST", body: "6" + "n".repeat(1000) });
    assert.equal(bad.status, 400);
    await bad.text();
    const gone = await fetch(eioPath(srv.url, `sid=${sid}`));
    assert.equal(gone.status, 400);
    assert.deepEqual(await gone.json(), { code: 1, message: "Session ID unknown" });

    assert.equal(srv.proc.exitCode, null, "server process exited");
    await sleep(500);
    await assertChatUnaffected(srv.url, await bystander.stop());
    bystander.close();
    await assertCleanExit(srv);
  } finally {
    for (const s of socks) s.destroy();
    bystander.close();
    await srv.stop();
  }
});
