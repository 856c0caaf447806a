// WebSocket framing (RFC 6455, server side) on a raw TCP socket, with client
// frames made by hand: the handshake's answers, frames cut at every byte,
// fragmented messages with a control frame between the fragments, several
// frames in one write, the close code of each protocol error, the message
// bound (refused on the frame header alone), and both closing handshakes
// (the client's, answered with its code; the server's, after the data it
// had queued). Every frame the server sends is parsed and checked byte for
// byte: unmasked, no reserved bits, the exact payload.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import crypto from "node:crypto";
import { startTarget, metric, sleep } from "./lib/target.mjs";
import { startServer } from "./lib/server.mjs";

const external = Boolean(process.env.TRANSPORT_TEST_URL);
const OURS_ONLY = external ? "needs our binary (flags, /metrics)" : false;

// Every wait for the server ends after this: a hang fails the test.
const WAIT_MS = 5000;
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OP = { cont: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa };

let srv;
before(async () => {
  // The heartbeat far away, so no Engine.IO ping comes between the frames a
  // test waits for (the client answers one anyway, see WsClient).
  srv = await startTarget(["--ping-interval", "60000", "--ping-timeout", "60000"]);
});
after(async () => {
  await srv?.stop();
});
afterEach(() => {
  if (srv.ours) assert.equal(srv.proc.exitCode, null, "server process exited");
});

// ------------------------------------------------------------------ frames

// One client frame: masked with a random key unless mask is false; FIN and
// the reserved bits (rsv: 0..7, RSV1 is 4) can be set by hand. The length
// takes the 7-bit, 16-bit or 64-bit form by the payload's size.
function frame(opcode, payload = "", { fin = true, rsv = 0, mask = true } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, "utf8");
  const len = data.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  head[1] = (mask ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127);
  if (ext === 2) head.writeUInt16BE(len, 2);
  if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2);
  if (!mask) return Buffer.concat([head, data]);
  const key = crypto.randomBytes(4);
  key.copy(head, 2 + ext);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = data[i] ^ key[i & 3];
  return Buffer.concat([head, body]);
}

// A close frame's payload: the code (2 bytes, big-endian) and the reason.
function closePayload(code, reason = Buffer.alloc(0)) {
  const c = Buffer.alloc(2);
  c.writeUInt16BE(code);
  return Buffer.concat([c, Buffer.isBuffer(reason) ? reason : Buffer.from(reason, "utf8")]);
}

// Server frames at the front of buf: { frames, rest } (rest: a cut frame).
// A server frame is never masked and has no reserved bits (no extension is
// negotiated); they are kept in the frame for the tests to check.
function parseFrames(buf) {
  const frames = [];
  let pos = 0;
  for (;;) {
    if (buf.length - pos < 2) break;
    const b0 = buf[pos];
    const b1 = buf[pos + 1];
    let len = b1 & 0x7f;
    let h = 2;
    if (len === 126) {
      if (buf.length - pos < 4) break;
      len = buf.readUInt16BE(pos + 2);
      h = 4;
    } else if (len === 127) {
      if (buf.length - pos < 10) break;
      len = Number(buf.readBigUInt64BE(pos + 2));
      h = 10;
    }
    const masked = (b1 & 0x80) !== 0;
    if (masked) h += 4;
    if (buf.length - pos < h + len) break;
    frames.push({
      fin: (b0 & 0x80) !== 0,
      rsv: (b0 >> 4) & 7,
      opcode: b0 & 0x0f,
      masked,
      payload: Buffer.from(buf.subarray(pos + h, pos + h + len)),
    });
    pos += h + len;
  }
  return { frames, rest: buf.subarray(pos) };
}

// ------------------------------------------------------------------ client

function parseHead(text) {
  const [statusLine, ...lines] = text.split("\r\n");
  const headers = {};
  for (const l of lines) {
    const i = l.indexOf(":");
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(statusLine.split(" ")[1]), statusLine, headers };
}

// The HTTP upgrade by hand. A 101 resolves with { status, headers, key,
// ws: a WsClient on the socket }; any other answer with { status, headers,
// body } once the server has ended the connection (it says Connection: close).
function upgrade(port, { key = crypto.randomBytes(16).toString("base64"), version = "13", autoPong = true } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let head = null;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`upgrade: no complete answer in ${WAIT_MS} ms (got ${JSON.stringify(buf.toString("latin1"))})`));
    }, WAIT_MS);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      if (head) return;
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      head = parseHead(buf.subarray(0, end).toString("latin1"));
      buf = buf.subarray(end + 4);
      if (head.status !== 101) return; // the body, then the end of the connection
      clearTimeout(timer);
      sock.off("data", onData);
      sock.off("close", onClose);
      resolve({ ...head, key, ws: new WsClient(sock, buf, { autoPong }) });
    };
    const onClose = () => {
      clearTimeout(timer);
      const got = JSON.stringify(buf.toString("latin1"));
      if (!head) return reject(new Error(`connection closed without an answer: ${got}`));
      resolve({ ...head, body: buf.toString("latin1") });
    };
    sock.on("data", onData);
    sock.on("close", onClose);
    sock.on("error", () => {}); // a reset is a close too: onClose tells
    const lines = [
      `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      `Upgrade: websocket`,
      `Connection: Upgrade`,
      ...(key === null ? [] : [`Sec-WebSocket-Key: ${key}`]),
      `Sec-WebSocket-Version: ${version}`,
    ];
    sock.write(lines.join("\r\n") + "\r\n\r\n");
  });
}

// A WebSocket client on a raw socket: queues the server's frames as they are
// parsed, and knows when the server ended the connection. An Engine.IO ping
// ("2") is answered with "3" and not queued unless autoPong is false.
class WsClient {
  constructor(sock, leftover, { autoPong = true } = {}) {
    this.sock = sock;
    this.autoPong = autoPong;
    this.buf = Buffer.alloc(0);
    this.frames = [];
    this.waiters = [];
    this.ended = null; // "end" (the server's FIN) or "close" (a reset, or our destroy)
    this.endedPromise = new Promise((resolve) => {
      const done = (how) => {
        if (this.ended) return;
        this.ended = how;
        resolve(how);
        for (const w of this.waiters.splice(0)) w.reject(new Error(`connection ended (${how}) before the next frame`));
      };
      sock.on("end", () => done("end"));
      sock.on("close", () => done("close"));
    });
    sock.on("error", () => {}); // "close" follows
    sock.on("data", (d) => this.onData(d));
    if (leftover.length) this.onData(leftover);
  }
  onData(d) {
    this.buf = Buffer.concat([this.buf, d]);
    const { frames, rest } = parseFrames(this.buf);
    this.buf = Buffer.from(rest);
    for (const f of frames) {
      if (this.autoPong && f.opcode === OP.text && f.payload.toString() === "2") {
        this.send(frame(OP.text, "3"));
        continue;
      }
      const w = this.waiters.shift();
      if (w) w.resolve(f);
      else this.frames.push(f);
    }
  }
  // The next server frame (rejects after ms, or if the connection ends first).
  next(ms = WAIT_MS) {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    if (this.ended) return Promise.reject(new Error(`connection ended (${this.ended}) before the next frame`));
    return new Promise((resolve, reject) => {
      const w = {
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no frame from the server in ${ms} ms`));
      }, ms);
      this.waiters.push(w);
    });
  }
  // The next frame, checked as a well-formed server frame of this opcode.
  async nextOf(opcode, ms = WAIT_MS) {
    const f = await this.next(ms);
    assert.equal(f.masked, false, "a server frame must not be masked");
    assert.equal(f.rsv, 0, "reserved bits in a server frame");
    assert.equal(f.fin, true, "a fragmented server frame");
    const payload = JSON.stringify(f.payload.toString("latin1"));
    assert.equal(f.opcode, opcode, `opcode ${f.opcode} (payload ${payload}), expected ${opcode}`);
    return f;
  }
  async nextText(ms) {
    return (await this.nextOf(OP.text, ms)).payload.toString("utf8");
  }
  send(...bufs) {
    this.sock.write(Buffer.concat(bufs));
  }
  // One TCP write per byte, a few ms apart (Nagle off): the server reads the
  // frame in as many pieces, cut at every byte boundary.
  async sendByteByByte(buf, gapMs = 3) {
    for (let i = 0; i < buf.length; i++) {
      this.sock.write(buf.subarray(i, i + 1));
      await sleep(gapMs);
    }
  }
  // Resolves with how the connection ended; rejects if it is still open after ms.
  async waitEnded(ms = WAIT_MS) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the server kept the connection open ${ms} ms`)), ms);
    });
    try {
      return await Promise.race([this.endedPromise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
  // The next frame is a close frame with this code (null: with no payload),
  // nothing follows it, and the server then ends the TCP connection (FIN,
  // not a reset). When the server started the closing handshake (answer),
  // the client answers its close frame with one of its own, as RFC 6455
  // 5.5.1 asks; a close frame that answers the client's, or fails the
  // connection, needs no answer. Resolves with the close frame's reason.
  async expectClose(code, { answer = false } = {}) {
    const f = await this.nextOf(OP.close);
    if (code === null) assert.equal(f.payload.length, 0, `close payload ${f.payload.toString("hex")}, expected none`);
    else {
      assert.ok(f.payload.length >= 2, `close frame without a code (payload ${f.payload.toString("hex")})`);
      assert.equal(f.payload.readUInt16BE(0), code, `close code (reason "${f.payload.subarray(2)}")`);
    }
    if (answer) this.send(frame(OP.close, closePayload(code)));
    assert.equal(await this.waitEnded(), "end", "the connection ended by a reset, not a FIN");
    assert.deepEqual(this.frames, [], "frames after the close frame");
    assert.equal(this.buf.length, 0, "bytes after the close frame");
    return f.payload.subarray(2).toString("utf8");
  }
  destroy() {
    this.sock.destroy();
  }
}

// A WebSocket Engine.IO session: the 101, then the OPEN packet as the first
// frame. Resolves with { ws, open } (open: the OPEN packet's JSON).
async function openSession(port, { autoPong = true } = {}) {
  const res = await upgrade(port, { autoPong });
  assert.equal(res.status, 101, `upgrade answered ${res.statusLine}`);
  const first = await res.ws.nextText();
  assert.match(first, /^0\{/, `first frame: ${first}`);
  return { ws: res.ws, open: JSON.parse(first.slice(1)) };
}

// CONNECT of the main namespace was answered (conformance mode: the CONNECT
// reply, then an "auth" event echoing the empty auth).
async function expectConnected(ws) {
  assert.match(await ws.nextText(), /^40\{"sid":"[^"]+"\}$/);
  assert.equal(await ws.nextText(), '42["auth",{}]');
}

// ------------------------------------------------------------------ handshake

test("handshake: the 101 carries Sec-WebSocket-Accept = base64(SHA-1(key + GUID))", async () => {
  // The RFC's own example (section 1.3), then a random key.
  const sample = await upgrade(srv.port, { key: "dGhlIHNhbXBsZSBub25jZQ==" });
  sample.ws.destroy();
  assert.equal(sample.status, 101);
  assert.equal(sample.headers["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  const res = await upgrade(srv.port);
  try {
    assert.equal(res.status, 101);
    assert.equal(res.headers.upgrade.toLowerCase(), "websocket");
    assert.match(res.headers.connection, /\bupgrade\b/i);
    const expected = crypto.createHash("sha1").update(res.key + GUID).digest("base64");
    assert.equal(res.headers["sec-websocket-accept"], expected);
    // The session starts with the OPEN packet as a text frame.
    const open = await res.ws.nextText();
    assert.match(open, /^0\{/);
    assert.equal(typeof JSON.parse(open.slice(1)).sid, "string");
  } finally {
    res.ws.destroy();
  }
});

test("handshake: Sec-WebSocket-Version 8 gets 426 with Sec-WebSocket-Version: 13", async () => {
  const res = await upgrade(srv.port, { version: "8" });
  assert.equal(res.status, 426, res.statusLine);
  assert.equal(res.headers["sec-websocket-version"], "13");
  assert.equal(res.headers["sec-websocket-accept"], undefined);
});

test("handshake: a bad or missing Sec-WebSocket-Key gets 400", async () => {
  for (const key of ["abc", null]) {
    const res = await upgrade(srv.port, { key });
    assert.equal(res.status, 400, `key ${key}: ${res.statusLine}`);
    assert.equal(res.headers["sec-websocket-accept"], undefined);
  }
});

// ------------------------------------------------------------------ reassembly

test("frames cut at every byte boundary are reassembled (7-, 16- and 64-bit lengths)", async () => {
  const { ws } = await openSession(srv.port);
  try {
    // "40": 8 bytes, one TCP write each.
    await ws.sendByteByByte(frame(OP.text, "40"));
    await expectConnected(ws);
    // A 16-bit length (cut between its two bytes and inside the mask key).
    const mid = "m".repeat(200);
    await ws.sendByteByByte(frame(OP.text, `42["message","${mid}"]`), 1);
    assert.equal(await ws.nextText(), `42["message-back","${mid}"]`);
    // A 64-bit length: the 14-byte header one byte at a time, then the payload.
    const big = "b".repeat(70000);
    const f = frame(OP.text, `42["message","${big}"]`);
    await ws.sendByteByByte(f.subarray(0, 14));
    ws.send(f.subarray(14, 30000));
    await sleep(10);
    ws.send(f.subarray(30000));
    assert.equal(await ws.nextText(), `42["message-back","${big}"]`);
  } finally {
    ws.destroy();
  }
});

test("a fragmented message with a ping between its fragments: pong 'hi', then the message's answer", async () => {
  const { ws } = await openSession(srv.port);
  try {
    ws.send(frame(OP.text, "4", { fin: false }));
    await sleep(20);
    ws.send(frame(OP.ping, "hi"));
    // The ping is answered at once, while the message is still open.
    const pong = await ws.nextOf(OP.pong);
    assert.equal(pong.payload.toString("latin1"), "hi");
    ws.send(frame(OP.cont, "0"));
    await expectConnected(ws);
    // Three fragments, a UTF-8 character cut between two of them: one message.
    const text = Buffer.from('42["message","café"]', "utf8");
    const cut = text.indexOf(0xc3) + 1; // between the two bytes of "é"
    ws.send(frame(OP.text, text.subarray(0, 5), { fin: false }));
    ws.send(frame(OP.cont, text.subarray(5, cut), { fin: false }));
    await sleep(20);
    ws.send(frame(OP.cont, text.subarray(cut)));
    assert.equal(await ws.nextText(), '42["message-back","café"]');
  } finally {
    ws.destroy();
  }
});

test("several frames in one TCP write are all handled, in order", async () => {
  const { ws } = await openSession(srv.port);
  try {
    ws.send(
      frame(OP.ping, "a"),
      frame(OP.text, "40"),
      frame(OP.text, '42["message","one"]'),
      frame(OP.ping, "b"),
      frame(OP.text, '42["message","two"]'),
    );
    const got = [];
    for (let i = 0; i < 6; i++) {
      const f = await ws.next();
      assert.equal(f.masked, false);
      got.push([f.opcode, f.payload.toString()]);
    }
    // The first ping was handled before the CONNECT: its pong comes first.
    assert.deepEqual(got[0], [OP.pong, "a"]);
    // A control frame may go out between data frames; each kind keeps its order.
    assert.deepEqual(
      got.filter(([op]) => op === OP.pong).map(([, p]) => p),
      ["a", "b"],
    );
    const texts = got.filter(([op]) => op === OP.text).map(([, p]) => p);
    assert.equal(texts.length, 4, JSON.stringify(got));
    assert.match(texts[0], /^40\{"sid":"[^"]+"\}$/);
    assert.deepEqual(texts.slice(1), ['42["auth",{}]', '42["message-back","one"]', '42["message-back","two"]']);
  } finally {
    ws.destroy();
  }
});

test("a stream of frames cut at random points: every message and every ping answered, in order", async () => {
  const { ws } = await openSession(srv.port);
  try {
    ws.send(frame(OP.text, "40"));
    await expectConnected(ws);
    // A fixed seed, so a failure comes back the same (xorshift32).
    let seed = 0x2545f491;
    const rand = (n) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    // 60 messages, some over 125 bytes (a 16-bit length); every third one in
    // three fragments with a ping between the first two.
    const parts = [];
    const want = [];
    const pings = [];
    for (let i = 0; i < 60; i++) {
      const text = `42["message",${i},"${"r".repeat(rand(300))}"]`;
      want.push(text.replace('"message"', '"message-back"'));
      if (i % 3 !== 0) {
        parts.push(frame(OP.text, text));
        continue;
      }
      const a = 1 + rand(text.length - 2);
      const b = a + rand(text.length - a);
      pings.push(`p${i}`);
      parts.push(frame(OP.text, text.slice(0, a), { fin: false }), frame(OP.ping, `p${i}`));
      parts.push(frame(OP.cont, text.slice(a, b), { fin: false }), frame(OP.cont, text.slice(b)));
    }
    const stream = Buffer.concat(parts);
    for (let pos = 0; pos < stream.length; ) {
      const n = 1 + rand(97);
      ws.send(stream.subarray(pos, pos + n));
      pos += n;
      await sleep(1);
    }
    const texts = [];
    const pongs = [];
    while (texts.length < want.length || pongs.length < pings.length) {
      const f = await ws.next();
      assert.equal(f.masked, false);
      if (f.opcode === OP.pong) pongs.push(f.payload.toString());
      else if (f.opcode === OP.text) texts.push(f.payload.toString());
      else assert.fail(`unexpected frame: opcode ${f.opcode}, payload ${f.payload.toString("hex")}`);
    }
    assert.deepEqual(pongs, pings);
    assert.deepEqual(texts, want);
  } finally {
    ws.destroy();
  }
});

// ------------------------------------------------------------------ protocol errors

// [what the client sends, its frames, the close code it gets]. Each is sent
// right after the OPEN packet; none of them is processed: the next frame is
// the close frame, then the connection ends.
const PROTOCOL_ERRORS = [
  ["an unmasked client frame", () => frame(OP.text, "40", { mask: false }), 1002],
  ["a frame with RSV1 set (no extension negotiated)", () => frame(OP.text, "40", { rsv: 4 }), 1002],
  ["a frame with the unknown opcode 3", () => frame(3, "40"), 1002],
  ["a text frame that is not UTF-8 (C3 28)", () => frame(OP.text, Buffer.from([0x34, 0xc3, 0x28])), 1007],
  ["a control frame of 126 bytes", () => frame(OP.ping, Buffer.alloc(126, 0x61)), 1002],
  ["a continuation frame with no message started", () => frame(OP.cont, "40"), 1002],
  ["a fragmented control frame (ping with FIN clear)", () => frame(OP.ping, "hi", { fin: false }), 1002],
  [
    "a new text frame inside a fragmented message",
    () => Buffer.concat([frame(OP.text, "4", { fin: false }), frame(OP.text, "0")]),
    1002,
  ],
  ["a close frame of one byte", () => frame(OP.close, Buffer.from([0x03])), 1002],
  ["a close frame with code 1005 (never sent on the wire)", () => frame(OP.close, closePayload(1005)), 1002],
  ["a close reason that is not UTF-8", () => frame(OP.close, closePayload(1000, Buffer.from([0xc3, 0x28]))), 1007],
];

for (const [what, bytes, code] of PROTOCOL_ERRORS) {
  test(`protocol error: ${what} -> close ${code}, then the connection ends`, async () => {
    const { ws } = await openSession(srv.port);
    try {
      ws.send(bytes());
      await ws.expectClose(code);
    } finally {
      ws.destroy();
    }
  });
}

// ------------------------------------------------------------------ message bound

// The metric's value once it reached want, or its last value after ms: the
// counter may be added to just after the close frame went out.
async function metricWhen(url, name, want, ms = 2000) {
  const end = Date.now() + ms;
  let v = await metric(url, name);
  while (v < want && Date.now() < end) {
    await sleep(50);
    v = await metric(url, name);
  }
  return v;
}

const TOO_BIG = "a message over --max-payload: close 1009 on the header alone, counted in /metrics";
test(TOO_BIG, { skip: OURS_ONLY }, async () => {
  // The chat server (conformance mode fixes the bound at 1 MB).
  const small = await startServer(["--max-payload", "1000", "--ping-interval", "60000", "--ping-timeout", "60000"]);
  const METRIC = "chat_transport_payload_too_large_total";
  try {
    const before = await metric(small.adminUrl, METRIC);
    // At the bound: 1000 bytes (an Engine.IO pong with padding) are taken,
    // and the connection stays open (a ping after it is answered).
    {
      const { ws, open } = await openSession(small.port);
      try {
        assert.equal(open.maxPayload, 1000);
        ws.send(frame(OP.text, "3" + "p".repeat(999)), frame(OP.ping, "still open"));
        assert.equal((await ws.nextOf(OP.pong)).payload.toString(), "still open");
      } finally {
        ws.destroy();
      }
    }
    assert.equal(await metric(small.adminUrl, METRIC), before);
    // 1001 bytes announced: only the header (2 + 2 length + 4 mask key bytes)
    // is sent; the close comes without the payload.
    {
      const { ws } = await openSession(small.port);
      try {
        ws.send(frame(OP.text, "4" + "x".repeat(1000)).subarray(0, 8));
        await ws.expectClose(1009);
      } finally {
        ws.destroy();
      }
    }
    assert.equal(await metricWhen(small.adminUrl, METRIC, before + 1), before + 1);
    // Fragments of 600 bytes each: the second takes the message over the
    // bound; refused on its header too.
    {
      const { ws } = await openSession(small.port);
      try {
        ws.send(frame(OP.text, "4" + "y".repeat(599), { fin: false }));
        ws.send(frame(OP.cont, "z".repeat(600)).subarray(0, 8));
        await ws.expectClose(1009);
      } finally {
        ws.destroy();
      }
    }
    assert.equal(await metricWhen(small.adminUrl, METRIC, before + 2), before + 2);
    assert.equal(small.proc.exitCode, null, "server process exited");
  } finally {
    await small.stop();
  }
});

// ------------------------------------------------------------------ closing

test("client close 1001 'bye': answered with a close frame carrying 1001, then the connection ends", async () => {
  const { ws } = await openSession(srv.port);
  try {
    ws.send(frame(OP.text, "40"));
    await expectConnected(ws);
    ws.send(frame(OP.close, closePayload(1001, "bye")));
    await ws.expectClose(1001);
  } finally {
    ws.destroy();
  }
});

test("client close codes: a code a peer may send is echoed, any other gets 1002", async () => {
  // RFC 6455 7.4: 1000-1003 and 1007-1011 (and 1012, registered since),
  // 3000-4999 may be sent; below 1000, 1004-1006, 1015 and the rest of the
  // protocol's range (to 2999) may not.
  const valid = [1000, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 3000, 3999, 4000, 4999];
  const invalid = [0, 999, 1004, 1006, 1015, 1016, 1100, 2000, 2999];
  for (const code of [...valid, ...invalid]) {
    const { ws } = await openSession(srv.port);
    try {
      ws.send(frame(OP.close, closePayload(code, "x")));
      const expected = valid.includes(code) ? code : 1002;
      await ws.expectClose(expected).catch((e) => {
        throw new Error(`client close ${code}: ${e.message}`);
      });
    } finally {
      ws.destroy();
    }
  }
});

test("client close without a code: answered with a close frame without a code", async () => {
  const { ws } = await openSession(srv.port);
  try {
    ws.send(frame(OP.close));
    await ws.expectClose(null);
  } finally {
    ws.destroy();
  }
});

test("server close (the client's Engine.IO close packet): the queued answer, close 1000, the end", async () => {
  const { ws } = await openSession(srv.port);
  try {
    ws.send(frame(OP.text, "40"));
    await expectConnected(ws);
    // In one write: an event whose answer the server queues, then "1".
    ws.send(frame(OP.text, '42["message","last"]'), frame(OP.text, "1"));
    assert.equal(await ws.nextText(), '42["message-back","last"]');
    await ws.expectClose(1000, { answer: true });
  } finally {
    ws.destroy();
  }
});

test("server close (ping timeout): the Engine.IO ping, then close 1000, then the end", async () => {
  // The conformance heartbeat: ping after 300 ms, closed 200 ms later.
  const quick = await startTarget();
  try {
    const { ws, open } = await openSession(quick.port, { autoPong: false });
    try {
      const t0 = Date.now();
      assert.equal(await ws.nextText(), "2");
      await ws.expectClose(1000, { answer: true });
      const took = Date.now() - t0;
      assert.ok(took >= open.pingTimeout - 50, `closed ${took} ms after the ping (pingTimeout ${open.pingTimeout})`);
    } finally {
      ws.destroy();
    }
  } finally {
    await quick.stop();
  }
});
