// Slow reader: a WebSocket client that stops reading while it makes the
// server send it a lot (it asks for large `message-back` echoes). The bounded
// per-connection send queue must close it, the slow-reader counter must move,
// and a normal client must be served throughout.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startTarget, connected, messageBack, metric, assertOthersUnaffected, sleep } from "./lib/target.mjs";
import { rawWsConnect, wsFrame } from "./lib/rawtcp.mjs";

let srv;
let bystander;
before(async () => {
  // A long heartbeat: this client's pongs queue behind megabytes of its own
  // frames, and on a slow build (sanitizers) a 300 ms ping would close it
  // before the send queue does.
  srv = await startTarget(["--ping-interval", "20000", "--ping-timeout", "20000"]);
  bystander = await connected(srv.url, { transports: ["websocket"] });
});
after(async () => {
  bystander?.close();
  await srv?.stop();
});

const METRIC = "chat_transport_slow_reader_closes_total";

test("a client that never reads is closed by the bounded send queue; others are unaffected", async () => {
  const before = await metric(srv.adminUrl, METRIC);
  const { sock } = await rawWsConnect(srv.port);
  // Stop reading now: once Node's small buffer is full it stops reading the
  // TCP stream, so the kernel buffers fill and the server's queue grows.
  sock.pause();
  let serverClosed = false;
  sock.on("close", () => (serverClosed = true));
  sock.on("error", () => {});
  sock.write(wsFrame("40"));

  // Keep answering pings blindly (without reading) so only the send queue,
  // not the heartbeat, can be the reason for the close.
  const pong = wsFrame("3");
  const ponger = setInterval(() => !sock.destroyed && sock.write(pong), 100);

  // 30 MB of echoes requested: far beyond kernel buffers plus a 1 MiB queue.
  const big = "x".repeat(500000);
  const frame = wsFrame(`42["message","${big}"]`);
  for (let i = 0; i < 60; i++) sock.write(frame);

  // Meanwhile a normal client keeps round-tripping.
  let bystanderOk = 0;
  let bystanderErr = null;
  let stop = false;
  const bystanderLoop = (async () => {
    while (!stop) {
      try {
        const [back] = await messageBack(bystander, [`rt-${bystanderOk}`], 3000);
        assert.equal(back, `rt-${bystanderOk}`);
        bystanderOk++;
      } catch (e) {
        bystanderErr = e;
        return;
      }
      await sleep(50);
    }
  })();

  try {
    const t0 = Date.now();
    let count = before;
    while (Date.now() - t0 < 15000) {
      count = await metric(srv.adminUrl, METRIC);
      if (count > before) break;
      await sleep(200);
    }
    assert.ok(count > before, `${METRIC} stayed at ${count} for 15 s: slow reader not closed`);
    // The server really closed it: once we read again, the stream ends
    // instead of delivering all 30 MB of echoes.
    let received = 0;
    sock.on("data", (d) => (received += d.length));
    sock.resume();
    const t1 = Date.now();
    while (!serverClosed && Date.now() - t1 < 10000) await sleep(50);
    assert.ok(serverClosed, "the server kept the slow reader's connection open");
    assert.ok(received < 60 * 500000, `received ${received} bytes: the whole backlog was delivered`);
  } finally {
    stop = true;
    clearInterval(ponger);
    await bystanderLoop;
    sock.destroy();
  }
  assert.equal(bystanderErr, null, `bystander failed: ${bystanderErr?.message}`);
  assert.ok(bystanderOk >= 3, `bystander did only ${bystanderOk} round trips`);
  if (srv.ours) assert.equal(srv.proc.exitCode, null, "server process exited");
  await assertOthersUnaffected(srv.url, bystander);
});
