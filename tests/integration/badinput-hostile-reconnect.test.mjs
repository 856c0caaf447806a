// Hostile client: namespace reconnects on one WebSocket. 2,000 pipelined
// cycles of CONNECT, "add user", 19 "join room", DISCONNECT (44,000 frames).
// CONNECTs per Engine.IO session are limited (--max-connects per
// --connect-window-ms): over the budget the client gets CONNECT_ERROR, and
// the next one over it closes the session. The chat rate limit is a budget
// of the Engine.IO session, so a new CONNECT does not refill it; invalid
// packets that do not close the session cost tokens from the same budget.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rawWsConnect, wsFrame } from "./lib/rawtcp.mjs";
import { metric } from "./lib/target.mjs";
import { startChatServer, assertCleanExit, rssMiB, rssSampler, chatter, assertChatUnaffected, sleep } from "./lib/hostile.mjs";
import { record } from "./chat-helpers.mjs";

function cycles(n) {
  const frames = [];
  for (let c = 0; c < n; c++) {
    frames.push(wsFrame("40"));
    frames.push(wsFrame(`42["add user","cycler${c % 100}"]`));
    for (let r = 0; r < 19; r++) frames.push(wsFrame(`42["join room","room-${r}"]`));
    frames.push(wsFrame("41"));
  }
  return Buffer.concat(frames);
}

// Resolve with the text frames the server sent until it closed (close frame
// or end of stream), or after ms.
function collect(sock, ms) {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const texts = [];
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ texts, closed });
    };
    const timer = setTimeout(() => finish(false), ms);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      // Server frames are unmasked: FIN+opcode, length (7, 16 or 64 bits), payload.
      while (buf.length >= 2) {
        const op = buf[0] & 0x0f;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (op === 0x8) return finish(true);
        if (op === 0x1) texts.push(payload.toString("utf8"));
      }
    });
    sock.on("close", () => finish(true));
    sock.on("error", () => {});
  });
}

test("2,000 pipelined namespace reconnect cycles: CONNECT_ERROR over the budget, then the session is closed", async (t) => {
  const srv = await startChatServer();
  const bystander = await chatter(srv.url);
  const seen = record(bystander.socket);
  const sock = (await rawWsConnect(srv.port)).sock;
  try {
    const LIMITED = "chat_transport_connects_limited_total";
    const before = await metric(srv.adminUrl, LIMITED);
    const rss0 = rssMiB(srv.proc.pid);
    const sampler = rssSampler(srv.proc.pid);
    const got = collect(sock, 10000);
    const t0 = Date.now();
    sock.write(cycles(2000));
    const { texts, closed } = await got;
    const took = Date.now() - t0;
    sampler.stop();
    const connects = texts.filter((x) => x.startsWith('40{"sid"')).length;
    const refusals = texts.filter((x) => x.startsWith("44")).length;
    t.diagnostic(`${connects} CONNECTs accepted, ${refusals} refused, closed after ${took} ms, RSS peak +${(sampler.peak() - rss0).toFixed(1)} MiB`);
    assert.ok(closed, "the session is still open after 2,000 reconnect cycles");
    assert.equal(connects, 10, "CONNECTs accepted in the window (--max-connects 10)");
    assert.equal(refusals, 1, "one CONNECT_ERROR before the close");
    assert.match(texts.find((x) => x.startsWith("44")), /^44\{"message":"[^"]+"\}$/);
    assert.ok((await metric(srv.adminUrl, LIMITED)) - before >= 1, `${LIMITED} did not move`);
    assert.ok(sampler.peak() - rss0 < 64, `server RSS peaked ${(sampler.peak() - rss0).toFixed(1)} MiB above its start`);
    // The bystander in "general" saw a handful of joins, not thousands.
    const joined = seen.of("user joined").length;
    assert.ok(joined <= 10, `bystander got ${joined} "user joined" from one client`);
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

test("CONNECT over the budget: CONNECT_ERROR once, the next one closes the session", async () => {
  const srv = await startChatServer(["--max-connects", "5"]);
  const sock = (await rawWsConnect(srv.port)).sock;
  try {
    const LIMITED = "chat_transport_connects_limited_total";
    const before = await metric(srv.adminUrl, LIMITED);
    const got = collect(sock, 10000);
    sock.write(Buffer.concat(Array.from({ length: 50 }, (_, i) => wsFrame(i % 2 ? "41" : "40"))));
    const { texts, closed } = await got;
    assert.ok(closed, "the session is still open after 25 CONNECTs");
    assert.equal(texts.filter((x) => x.startsWith('40{"sid"')).length, 5);
    assert.equal(texts.filter((x) => x.startsWith("44")).length, 1);
    assert.equal((await metric(srv.adminUrl, LIMITED)) - before, 2);
    await assertCleanExit(srv);
  } finally {
    sock.destroy();
    await srv.stop();
  }
});

test("a namespace reconnect does not refill the chat rate budget of the session", async (t) => {
  // Enough CONNECTs allowed that only the rate budget holds the client back.
  const srv = await startChatServer(["--max-connects", "1000"]);
  const bystander = await chatter(srv.url);
  const sock = (await rawWsConnect(srv.port)).sock;
  try {
    const LIMITED = "chat_rate_limited_total";
    const before = await metric(srv.adminUrl, LIMITED);
    const got = collect(sock, 3000);
    sock.write(cycles(200)); // 4,000 chat events
    await got;
    const limited = (await metric(srv.adminUrl, LIMITED)) - before;
    t.diagnostic(`${limited} of 4,000 chat events refused by the rate limit`);
    // One bucket per namespace socket would admit all of them (20 per
    // CONNECT, 40 a bucket); one per session admits 40 plus 20 a second.
    assert.ok(limited > 3000, `only ${limited} of 4,000 events were rate limited`);
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

test("invalid packets that keep the session open cost tokens: a flood of them closes it", async (t) => {
  const srv = await startChatServer();
  const bystander = await chatter(srv.url);
  const sock = (await rawWsConnect(srv.port)).sock;
  try {
    const INVALID = "chat_transport_invalid_packets_total";
    const ERRORS = "chat_transport_protocol_errors_total";
    const before = await metric(srv.adminUrl, INVALID);
    const errors0 = await metric(srv.adminUrl, ERRORS);
    const got = collect(sock, 10000);
    // ACKs the server never asked for, and DISCONNECTs of namespaces never joined.
    const flood = [wsFrame("40")];
    for (let i = 0; i < 5000; i++) flood.push(wsFrame(`43${i}[]`), wsFrame("41/nowhere,"));
    sock.write(Buffer.concat(flood));
    const { closed } = await got;
    const invalid = (await metric(srv.adminUrl, INVALID)) - before;
    t.diagnostic(`${invalid} invalid packets counted before the close`);
    assert.ok(closed, "the session survived 10,000 invalid packets");
    assert.ok(invalid >= 40 && invalid < 200, `${INVALID} moved by ${invalid}`);
    assert.ok((await metric(srv.adminUrl, ERRORS)) > errors0, `${ERRORS} did not move`);
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
