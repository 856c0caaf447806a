// Hostile clients: binary packets (BINARY_EVENT headers with placeholders)
// whose attachments never all arrive. A pending binary packet holds at most
// --max-binary-packet bytes (header and attachments) for at most
// --binary-timeout-ms; over either the session is closed as a protocol error
// and chat_transport_binary_packet_aborts_total moves. A normal user chats
// with normal latency throughout, and the memory is given back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rawWsConnect, wsFrame } from "./lib/rawtcp.mjs";
import { metric } from "./lib/target.mjs";
import { startChatServer, assertCleanExit, rssMiB, rssSampler, chatter, assertChatUnaffected, sleep } from "./lib/hostile.mjs";

const CONNECTIONS = 50;
const METRIC = "chat_transport_binary_packet_aborts_total";
const CLOSE_FRAME = Buffer.from([0x88, 0x02, 0x03, 0xe8]);

// A BINARY_EVENT announcing `attachments` binary parts, padded to `size` bytes.
function header(attachments, size) {
  const ph = Array.from({ length: attachments }, (_, i) => `{"_placeholder":true,"num":${i}}`).join(",");
  const head = `45${attachments}-["typing",${ph},"`;
  return `${head}${"h".repeat(size - head.length - 2)}"]`;
}

async function openConnected(port, n) {
  const socks = [];
  for (let i = 0; i < n; i += 10) {
    const batch = await Promise.all(Array.from({ length: Math.min(10, n - i) }, () => rawWsConnect(port)));
    for (const { sock } of batch) {
      sock.on("error", () => {});
      // Closed by the server: its close frame (1000) arrived, or the socket ended.
      sock.closedByServer = false;
      let tail = Buffer.alloc(0);
      sock.on("data", (d) => {
        tail = Buffer.concat([tail, d]).subarray(-64);
        if (tail.includes(CLOSE_FRAME)) sock.closedByServer = true;
      });
      sock.on("close", () => (sock.closedByServer = true));
      sock.write(wsFrame("40"));
      socks.push(sock);
    }
  }
  return socks;
}

async function waitFor(pred, ms, what) {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > ms) throw new Error(`timeout after ${ms} ms: ${what}`);
    await sleep(100);
  }
}

test(`${CONNECTIONS} binary packets whose last attachment never comes are dropped at the deadline`, async (t) => {
  const srv = await startChatServer(["--binary-timeout-ms", "1500"]);
  const bystander = await chatter(srv.url);
  const socks = await openConnected(srv.port, CONNECTIONS);
  try {
    const before = await metric(srv.adminUrl, METRIC);
    const rss0 = rssMiB(srv.proc.pid);
    const sampler = rssSampler(srv.proc.pid);
    // Within the byte budget: a 500 kB header announcing two attachments,
    // and one 400 kB attachment. The second never comes.
    const head = wsFrame(header(2, 500_000));
    const part = wsFrame(Buffer.alloc(400_000, 0xb1), 0x2);
    const t0 = Date.now();
    for (const s of socks) s.write(Buffer.concat([head, part]));
    await waitFor(() => socks.every((s) => s.closedByServer), 10000, "the server to close every pending binary packet");
    const took = Date.now() - t0;
    sampler.stop();
    assert.ok(took >= 1000, `closed after ${took} ms, before the 1.5 s deadline`);
    assert.ok(took < 6000, `closed only after ${took} ms, long after the 1.5 s deadline`);
    assert.ok((await metric(srv.adminUrl, METRIC)) - before >= CONNECTIONS, `${METRIC} did not count every dropped packet`);
    await sleep(300);
    const peak = sampler.peak() - rss0;
    const after = rssMiB(srv.proc.pid) - rss0;
    t.diagnostic(`closed after ${took} ms; RSS peak +${peak.toFixed(1)} MiB, +${after.toFixed(1)} MiB after`);
    // Each holds at most 1 MB until the deadline; afterwards nothing.
    assert.ok(peak < CONNECTIONS + 48, `server RSS peaked ${peak.toFixed(1)} MiB above its start`);
    assert.ok(after < 32, `server RSS is ${after.toFixed(1)} MiB above its start after the deadline`);
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

test(`${CONNECTIONS} binary packets over the byte budget are dropped at once`, async (t) => {
  const srv = await startChatServer(); // default deadline: 10 s
  const bystander = await chatter(srv.url);
  const socks = await openConnected(srv.port, CONNECTIONS);
  try {
    const before = await metric(srv.adminUrl, METRIC);
    const rss0 = rssMiB(srv.proc.pid);
    const sampler = rssSampler(srv.proc.pid);
    // Ten announced attachments of 900 kB each: 9 MB per packet, 450 MB in all.
    const head = wsFrame(header(10, 10_000));
    const part = wsFrame(Buffer.alloc(900_000, 0xb2), 0x2);
    const t0 = Date.now();
    for (const s of socks) {
      s.write(head);
      for (let i = 0; i < 9; i++) s.write(part);
    }
    await waitFor(() => socks.every((s) => s.closedByServer), 8000, "the server to close every packet over budget");
    const took = Date.now() - t0;
    assert.ok(took < 6000, `closed after ${took} ms: not at once, but by the 10 s deadline`);
    sampler.stop();
    assert.ok((await metric(srv.adminUrl, METRIC)) - before >= CONNECTIONS, `${METRIC} did not count every dropped packet`);
    await sleep(300);
    const peak = sampler.peak() - rss0;
    const after = rssMiB(srv.proc.pid) - rss0;
    t.diagnostic(`closed after ${took} ms; RSS peak +${peak.toFixed(1)} MiB, +${after.toFixed(1)} MiB after`);
    // At most the budget plus the attachment being read, per connection.
    assert.ok(peak < 2 * CONNECTIONS + 48, `server RSS peaked ${peak.toFixed(1)} MiB above its start`);
    assert.ok(after < 32, `server RSS is ${after.toFixed(1)} MiB above its start after the packets were dropped`);
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
