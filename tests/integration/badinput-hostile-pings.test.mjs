// Hostile client: a WebSocket that never reads and keeps sending WebSocket
// pings. Every ping makes the server queue a pong. Pongs count against the
// connection's send bound together with the send queue, so the connection is
// closed as a slow reader at the bound; and a socket write that makes no
// progress for --write-timeout-ms closes the connection. Meanwhile a normal
// user chats with normal latency, and the server's memory stays bounded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rawWsConnect, wsFrame } from "./lib/rawtcp.mjs";
import { metric } from "./lib/target.mjs";
import { startChatServer, assertCleanExit, rssMiB, rssSampler, chatter, assertChatUnaffected, sleep } from "./lib/hostile.mjs";

// 1,000 pings of 125 bytes each in one buffer (131 kB on the wire).
const PINGS = Buffer.concat(Array.from({ length: 1000 }, () => wsFrame(Buffer.alloc(125, 0x70), 0x9)));

// Write ping batches without reading until the server closes the socket,
// `untilBytes` are written, or `ms` pass. Resolves with the bytes written.
async function pingFlood(sock, untilBytes, ms) {
  let written = 0;
  const t0 = Date.now();
  while (!sock.destroyed && written < untilBytes && Date.now() - t0 < ms) {
    if (!sock.write(PINGS)) {
      await new Promise((resolve) => {
        const done = () => {
          clearTimeout(t);
          sock.off("drain", done);
          sock.off("close", done);
          resolve();
        };
        const t = setTimeout(done, 200);
        sock.once("drain", done);
        sock.once("close", done);
      });
    }
    written += PINGS.length;
  }
  return written;
}

async function waitMetric(url, name, above, ms) {
  const t0 = Date.now();
  let v = await metric(url, name);
  while (v <= above && Date.now() - t0 < ms) {
    await sleep(100);
    v = await metric(url, name);
  }
  return v;
}

// Resume reading and resolve with the bytes received until the server ends
// the connection (or ms pass: then closed is false).
async function drainUntilClosed(sock, ms) {
  let received = 0;
  let closed = sock.destroyed;
  sock.on("data", (d) => (received += d.length));
  sock.on("close", () => (closed = true));
  sock.resume();
  const t0 = Date.now();
  while (!closed && Date.now() - t0 < ms) await sleep(50);
  return { closed, received };
}

test("pings from a client that never reads: closed at the send bound, memory bounded", async (t) => {
  const srv = await startChatServer();
  const bystander = await chatter(srv.url);
  const sock = (await rawWsConnect(srv.port)).sock;
  try {
    const METRIC = "chat_transport_slow_reader_closes_total";
    const before = await metric(srv.adminUrl, METRIC);
    const rss0 = rssMiB(srv.proc.pid);
    const sampler = rssSampler(srv.proc.pid);
    sock.pause();
    sock.on("error", () => {});
    // Up to 200 MB of pings (200 MB of pongs queued without a bound, as
    // before) in at most 8 s; the bound (1 MiB plus kernel buffers) stops it
    // after some 10 MB.
    const flood = pingFlood(sock, 200e6, 8000);
    const after = await waitMetric(srv.adminUrl, METRIC, before, 10000);
    const written = await flood;
    sampler.stop();
    assert.ok(after > before, `${METRIC} stayed at ${after} after ${(written / 1e6).toFixed(0)} MB of pings`);
    const growth = sampler.peak() - rss0;
    t.diagnostic(`${(written / 1e6).toFixed(1)} MB of pings written, RSS peak +${growth.toFixed(1)} MiB`);
    // 1 MiB queue + the batches in flight; under ASan allocations cost more.
    assert.ok(growth < 64, `server RSS grew by ${growth.toFixed(1)} MiB during the ping flood`);
    const { closed, received } = await drainUntilClosed(sock, 10000);
    assert.ok(closed, "the server kept the connection of the client that never read");
    assert.ok(received < written, `received ${received} bytes of pongs for ${written} bytes of pings`);
    assert.equal(srv.proc.exitCode, null, "server process exited");
    await sleep(1000); // the bystander goes on chatting after the attack
    await assertChatUnaffected(srv.url, await bystander.stop());
    bystander.close();
    await assertCleanExit(srv);
  } finally {
    sock.destroy();
    bystander.close();
    await srv.stop();
  }
});

test("a socket write that makes no progress for --write-timeout-ms closes the connection", async (t) => {
  // A send bound large enough that only the write deadline can end this.
  const srv = await startChatServer(["--write-timeout-ms", "1500", "--max-send-queue", "200000000"]);
  const bystander = await chatter(srv.url);
  const sock = (await rawWsConnect(srv.port)).sock;
  try {
    const METRIC = "chat_transport_write_timeouts_total";
    const before = await metric(srv.adminUrl, METRIC);
    const rss0 = rssMiB(srv.proc.pid);
    sock.pause();
    sock.on("error", () => {});
    // 20 MB of pings: more pongs than the kernel buffers hold, so a write
    // stays in flight until the deadline.
    const written = await pingFlood(sock, 20e6, 5000);
    const after = await waitMetric(srv.adminUrl, METRIC, before, 8000);
    assert.ok(after > before, `${METRIC} stayed at ${after}: the stuck write was never given up`);
    const { closed } = await drainUntilClosed(sock, 5000);
    assert.ok(closed, "the server kept the connection after the write deadline");
    assert.ok(written > 0);
    const growth = rssMiB(srv.proc.pid) - rss0;
    t.diagnostic(`${(written / 1e6).toFixed(1)} MB of pings written, RSS +${growth.toFixed(1)} MiB after`);
    assert.ok(growth < 64, `server RSS still ${growth.toFixed(1)} MiB above its start after the close`);
    assert.equal(srv.proc.exitCode, null, "server process exited");
    await sleep(1000); // the bystander goes on chatting after the attack
    await assertChatUnaffected(srv.url, await bystander.stop());
    bystander.close();
    await assertCleanExit(srv);
  } finally {
    sock.destroy();
    bystander.close();
    await srv.stop();
  }
});
