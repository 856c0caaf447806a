// Compression over the real binary: permessage-deflate with the official
// client (Node's ws underneath) when --ws-deflate is on, none when it is off;
// compressed frames that are bombs or garbage close only their own
// connection; long-polling responses gzipped when the client accepts it.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import zlib from "node:zlib";
import { startServer } from "./lib/server.mjs";
import { rawWsConnect, wsFrame } from "./lib/rawtcp.mjs";
import { login, request, next, settle, closeAll } from "./chat-helpers.mjs";

const ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const OFFER = { "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits" };

async function metric(server, name) {
  const text = await (await fetch(`${server.adminUrl}/metrics`)).text();
  const m = text.match(new RegExp(`^${name}\\{[^}]*\\} (\\d+)$`, "m"));
  assert.ok(m, `${name} on /metrics`);
  return Number(m[1]);
}

// What a raw client reads until the server closes: the close frame's code.
function closeCode(sock, leftover) {
  return new Promise((resolve, reject) => {
    let buf = leftover;
    const timer = setTimeout(() => reject(new Error("no close frame in 5 s")), 5000);
    const scan = () => {
      let pos = 0;
      while (buf.length - pos >= 2) {
        const op = buf[pos] & 0x0f;
        let len = buf[pos + 1] & 0x7f;
        let h = 2;
        if (len === 126) {
          if (buf.length - pos < 4) return;
          len = buf.readUInt16BE(pos + 2);
          h = 4;
        } else if (len === 127) {
          if (buf.length - pos < 10) return;
          len = Number(buf.readBigUInt64BE(pos + 2));
          h = 10;
        }
        if (buf.length - pos < h + len) return;
        if (op === 0x8) {
          clearTimeout(timer);
          resolve(len >= 2 ? buf.readUInt16BE(pos + h) : 1005);
          return;
        }
        pos += h + len;
      }
    };
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      scan();
    });
    sock.on("close", () => {
      clearTimeout(timer);
      reject(new Error("closed without a close frame"));
    });
    scan();
  });
}

// A message as a permessage-deflate sender makes it: raw deflate, the final
// empty block's 00 00 ff ff taken off.
const deflated = (text) => {
  const z = zlib.deflateRawSync(Buffer.from(text), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return z.subarray(0, z.length - 4);
};

// A long-polling session by hand, logged in as name: { url, post }.
async function pollingUser(server, name) {
  const base = `${server.url}/socket.io/?EIO=4&transport=polling`;
  const open = JSON.parse((await (await fetch(base)).text()).slice(1));
  const url = `${base}&sid=${open.sid}`;
  const post = (body) => fetch(url, { method: "POST", body, headers: { "Content-Type": "text/plain" } });
  assert.equal(await (await post("40")).text(), "ok");
  await (await fetch(url)).text(); // the CONNECT reply
  assert.equal(await (await post(`420["add user",${JSON.stringify(name)}]`)).text(), "ok");
  await (await fetch(url)).text(); // login and its ack
  return { url, post };
}

describe("--ws-deflate", () => {
  let server;
  before(async () => {
    server = await startServer(["--replica-id", "zip-1", "--ws-deflate", "--max-message", "4000"]);
  });
  after(() => server.stop());

  test("the official client negotiates it; large messages go compressed both ways and arrive whole, small ones plain", async () => {
    const ws = { transports: ["websocket"] };
    const a = await login(server.url, "ann", ws);
    const b = await login(server.url, "ben", ws);
    try {
      for (const u of [a, b]) assert.equal(u.socket.io.engine.transport.ws.extensions, "permessage-deflate");
      assert.ok((await metric(server, "chat_transport_deflate_sessions_total")) >= 2);
      const big = "the quick brown fox jumps over the lazy dog ".repeat(70); // 3080 bytes: the client compresses it
      const before0 = await metric(server, "chat_transport_compressed_frames_total");
      let got = next(b.socket, "new message");
      assert.equal((await request(a.socket, "new message", big)).ok, true);
      assert.equal((await got).message, big);
      const after1 = await metric(server, "chat_transport_compressed_frames_total");
      assert.ok(after1 > before0, "the server sent the large message compressed");
      got = next(b.socket, "new message");
      assert.equal((await request(a.socket, "new message", "short")).ok, true);
      assert.equal((await got).message, "short");
      await settle(a.socket, b.socket);
      assert.equal(await metric(server, "chat_transport_compressed_frames_total"), after1, "a short message goes plain");
    } finally {
      closeAll(a.socket, b.socket);
    }
  });

  test("the server answers an offer with no context takeover, and no offer with no extension", async () => {
    const { sock, head } = await rawWsConnect(server.port, undefined, OFFER);
    sock.destroy();
    assert.match(head, new RegExp(`\\r\\nSec-WebSocket-Extensions: ${ANSWER}(\\r\\n|$)`, "i"));
    const plain = await rawWsConnect(server.port);
    plain.sock.destroy();
    assert.doesNotMatch(plain.head, /Sec-WebSocket-Extensions/i);
    const odd = await rawWsConnect(server.port, undefined, { "Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=9" });
    odd.sock.destroy();
    assert.doesNotMatch(odd.head, /Sec-WebSocket-Extensions/i, "a smaller server window is declined");
  });

  test("a compressed bomb closes its connection with 1009, garbage with 1007; others chat on", async () => {
    const a = await login(server.url, "cat", { transports: ["websocket"] });
    const b = await login(server.url, "dan", { transports: ["polling"] });
    try {
      // 20 MB of one letter compress to about 20 KB: over the 1 MB message bound once inflated.
      const bomb = await rawWsConnect(server.port, undefined, OFFER);
      const bombClosed = closeCode(bomb.sock, bomb.leftover);
      bomb.sock.write(wsFrame(deflated("4" + "a".repeat(20 * 1024 * 1024)), 0x41));
      assert.equal(await bombClosed, 1009);
      const junk = await rawWsConnect(server.port, undefined, OFFER);
      const junkClosed = closeCode(junk.sock, junk.leftover);
      junk.sock.write(wsFrame(Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x02]), 0x41));
      assert.equal(await junkClosed, 1007);
      // Compressed without negotiating: a protocol error.
      const rogue = await rawWsConnect(server.port);
      const rogueClosed = closeCode(rogue.sock, rogue.leftover);
      rogue.sock.write(wsFrame(deflated("4hello"), 0x41));
      assert.equal(await rogueClosed, 1002);
      const got = next(b.socket, "new message");
      assert.equal((await request(a.socket, "new message", "still here")).ok, true);
      assert.equal((await got).message, "still here");
    } finally {
      closeAll(a.socket, b.socket);
    }
  });

  test("long-polling: a large response is gzipped for a client that accepts it, not for one that does not", async () => {
    const { url, post } = await pollingUser(server, "eve");
    const a = await login(server.url, "fay", { transports: ["websocket"] });
    try {
      const big = "compress me please ".repeat(100);
      assert.equal((await request(a.socket, "new message", big)).ok, true);
      const res = await fetch(url, { headers: { "Accept-Encoding": "gzip" } });
      assert.equal(res.headers.get("content-encoding"), "gzip");
      assert.match(res.headers.get("vary") ?? "", /Accept-Encoding/i);
      assert.ok((await res.text()).includes(big), "the body inflates to the packets");
      assert.equal((await request(a.socket, "new message", big)).ok, true);
      const plain = await fetch(url, { headers: { "Accept-Encoding": "identity" } });
      assert.equal(plain.headers.get("content-encoding"), null);
      assert.ok((await plain.text()).includes(big));
      assert.ok((await metric(server, "chat_transport_compressed_responses_total")) >= 1);
    } finally {
      closeAll(a.socket);
      await post("1").catch(() => {});
    }
  });
});

describe("compression off", () => {
  let server;
  before(async () => {
    server = await startServer(["--replica-id", "zip-0", "--http-compression", "false"]);
  });
  after(() => server.stop());

  test("without --ws-deflate the official client gets no extension, and a compressed frame is a protocol error", async () => {
    const a = await login(server.url, "gus", { transports: ["websocket"] });
    try {
      assert.equal(a.socket.io.engine.transport.ws.extensions, "");
    } finally {
      closeAll(a.socket);
    }
    const raw = await rawWsConnect(server.port, undefined, OFFER);
    assert.doesNotMatch(raw.head, /Sec-WebSocket-Extensions/i);
    const closed = closeCode(raw.sock, raw.leftover);
    raw.sock.write(wsFrame(deflated("4hello"), 0x41));
    assert.equal(await closed, 1002);
  });

  test("--http-compression false: polling responses go plain", async () => {
    const { url, post } = await pollingUser(server, "hal");
    const a = await login(server.url, "ivy", { transports: ["websocket"] });
    try {
      const big = "compress me please ".repeat(100);
      assert.equal((await request(a.socket, "new message", big)).ok, true);
      const res = await fetch(url, { headers: { "Accept-Encoding": "gzip" } });
      assert.ok((await res.text()).includes(big));
      assert.equal(res.headers.get("content-encoding"), null);
    } finally {
      closeAll(a.socket);
      await post("1").catch(() => {});
    }
  });
});
