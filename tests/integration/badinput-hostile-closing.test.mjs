// Hostile clients against the ways a connection ends or waits:
// - a WebSocket peer that stops reading, so the server's graceful close
//   (queued frames, then the close frame) can never finish: it is abandoned
//   after --close-timeout-ms and the socket dropped;
// - a polling connection that parks a GET and pipelines a large request
//   behind it: while a GET is parked the connection reads only a small
//   request, so the connection (and its session) is closed instead of
//   holding the body.
// A normal user chats with normal latency throughout.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { rawWsConnect, wsFrame } from "./lib/rawtcp.mjs";
import { metric, eioPath, pollingHandshake } from "./lib/target.mjs";
import { startChatServer, assertCleanExit, rssMiB, chatter, assertChatUnaffected, sleep } from "./lib/hostile.mjs";

async function waitFor(pred, ms, what) {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > ms) throw new Error(`timeout after ${ms} ms: ${what}`);
    await sleep(100);
  }
}

test("a graceful WebSocket close to a peer that does not read is abandoned at --close-timeout-ms", async (t) => {
  // Only the close deadline can end this: a large send bound, a long write deadline.
  const srv = await startChatServer([
    "--close-timeout-ms", "1000", "--write-timeout-ms", "60000", "--max-send-queue", "200000000",
  ]);
  const bystander = await chatter(srv.url);
  const sock = (await rawWsConnect(srv.port)).sock;
  try {
    const METRIC = "chat_transport_close_timeouts_total";
    const before = await metric(srv.adminUrl, METRIC);
    let closed = false;
    sock.on("close", () => (closed = true));
    sock.on("error", () => {});
    sock.pause();
    // 16 MB of pings: their pongs fill the kernel buffers and wait behind them.
    const ping = Buffer.concat(Array.from({ length: 1000 }, () => wsFrame(Buffer.alloc(125, 0x70), 0x9)));
    for (let i = 0; i < 120; i++) sock.write(ping);
    await sleep(1000);
    // An invalid packet: the server closes the session gracefully, which
    // needs the peer to read everything queued first.
    sock.write(wsFrame("x-not-a-packet"));
    const t0 = Date.now();
    await waitFor(async () => (await metric(srv.adminUrl, METRIC)) > before, 8000, `${METRIC} to move`);
    const took = Date.now() - t0;
    t.diagnostic(`close abandoned after ${took} ms`);
    assert.ok(took < 6000, `the close waited ${took} ms`);
    // The socket really is gone: reading again ends the stream.
    sock.on("data", () => {});
    sock.resume();
    await waitFor(() => closed, 5000, "the server to drop the socket");
    assert.equal(srv.proc.exitCode, null, "server process exited");
    await sleep(1000);
    await assertChatUnaffected(srv.url, await bystander.stop());
    bystander.close();
    await assertCleanExit(srv);
  } finally {
    sock.destroy();
    bystander.close();
    await srv.stop();
  }
});

// Park a GET on a raw connection and pipeline a POST with a body behind it.
function parkAndPipeline(port, sid, bodyBytes) {
  return new Promise((resolve) => {
    const path = `/socket.io/?EIO=4&transport=polling&sid=${sid}`;
    const sock = net.connect(port, "127.0.0.1", async () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      await sleep(100); // the GET is parked now
      sock.write(
        `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\n` +
          `Content-Length: ${bodyBytes}\r\n\r\n`,
      );
      sock.write("4" + "b".repeat(bodyBytes - 1));
    });
    sock.on("data", () => {});
    sock.on("error", () => {});
    sock.on("close", () => resolve(sock));
    sock.t = Date.now();
  });
}

test("a parked GET with a large request pipelined behind it: connection and session closed, nothing kept", async (t) => {
  const srv = await startChatServer();
  const bystander = await chatter(srv.url);
  try {
    const METRIC = "chat_transport_payload_too_large_total";
    const before = await metric(srv.adminUrl, METRIC);
    const rss0 = rssMiB(srv.proc.pid);
    const N = 50;
    const sids = [];
    for (let i = 0; i < N; i++) sids.push((await pollingHandshake(srv.url)).sid);
    const t0 = Date.now();
    // The GET is answered by the heartbeat only after 25 s: closing sooner
    // is the server refusing the pipelined body.
    const closing = Promise.all(sids.map((sid) => parkAndPipeline(srv.port, sid, 900_000)));
    const timeout = sleep(5000).then(() => "timeout");
    const result = await Promise.race([closing, timeout]);
    assert.notEqual(result, "timeout", "connections with a pipelined body behind a parked GET stayed open");
    const took = Date.now() - t0;
    const growth = rssMiB(srv.proc.pid) - rss0;
    t.diagnostic(`${N} connections closed after ${took} ms, RSS +${growth.toFixed(1)} MiB`);
    assert.ok((await metric(srv.adminUrl, METRIC)) - before >= N, `${METRIC} did not count every refused body`);
    assert.ok(growth < 32, `server RSS is ${growth.toFixed(1)} MiB above its start`);
    // The sessions ended with their connections.
    const res = await fetch(eioPath(srv.url, `sid=${sids[0]}`));
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { code: 1, message: "Session ID unknown" });
    assert.equal(srv.proc.exitCode, null, "server process exited");
    await sleep(1000);
    await assertChatUnaffected(srv.url, await bystander.stop());
    bystander.close();
    await assertCleanExit(srv);
  } finally {
    bystander.close();
    await srv.stop();
  }
});
