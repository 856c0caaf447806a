// Shared helpers for the transport and bad-input tests: start the server under
// test in conformance mode (or use TRANSPORT_TEST_URL, an already running
// server such as the Node reference, to check the tests themselves), connect
// socket.io-client sockets, speak raw Engine.IO over HTTP and WebSocket, and
// read /metrics.
import { io } from "socket.io-client";
import WebSocket from "ws";
import assert from "node:assert/strict";
import { startServer, sleep } from "./server.mjs";

export { sleep };

// The server under test. `ours` is false when the tests point at an external
// server: checks that need our binary (metrics, process) cannot run then.
export async function startTarget(extraArgs = [], options = {}) {
  const external = process.env.TRANSPORT_TEST_URL;
  if (external) {
    const url = external.replace(/\/$/, "");
    return { url, adminUrl: url, port: Number(new URL(url).port), ours: false, proc: null, logs: () => "", stop: async () => 0 };
  }
  const s = await startServer(["--conformance", ...extraArgs], options);
  return { ...s, ours: true };
}

// Wait for an event on an EventEmitter-like object, rejecting after ms.
export function once(emitter, event, ms = 5000, what = event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`timeout after ${ms} ms waiting for ${what}`));
    }, ms);
    const on = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    emitter.once(event, on);
  });
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

// A socket.io-client socket that does not reconnect by itself, so a test
// sees every disconnect.
export function client(url, { nsp = "/", ...opts } = {}) {
  return io(url + (nsp === "/" ? "" : nsp), {
    forceNew: true,
    reconnection: false,
    timeout: 5000,
    ...opts,
  });
}

// Resolve with a connected socket or reject with the connect_error.
export async function connected(url, opts = {}) {
  const s = client(url, opts);
  await new Promise((resolve, reject) => {
    // Both listeners go once settled: a reconnecting socket's later
    // connect_error must not close it.
    const done = () => {
      clearTimeout(timer);
      s.off("connect", onConnect);
      s.off("connect_error", onError);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error("connect timeout"));
    }, 8000);
    const onConnect = () => {
      done();
      resolve();
    };
    const onError = (err) => {
      done();
      s.close();
      reject(err);
    };
    s.once("connect", onConnect);
    s.once("connect_error", onError);
  });
  return s;
}

// Emit `message` and resolve with the args of the next `message-back`.
export async function messageBack(socket, args, ms = 5000) {
  const p = once(socket, "message-back", ms, "message-back");
  socket.emit("message", ...args);
  return p;
}

// Emit `message-with-ack` and resolve with the ack arguments.
export function withAck(socket, args, ms = 5000) {
  return withTimeout(
    new Promise((resolve) => socket.emit("message-with-ack", ...args, (...res) => resolve(res))),
    ms,
    "message-with-ack ack",
  );
}

// One full round trip with a distinctive payload.
export async function assertRoundTrip(socket, tag = "ping") {
  const payload = [tag, 42, { nested: { list: [1, "two", null, true] }, u: "héllo ✓ 😀" }];
  const got = await messageBack(socket, payload);
  assert.deepEqual(got, payload);
}

// "The server stays up, others are unaffected": a socket connected before the
// bad input still round-trips, and a new client connects and round-trips.
export async function assertOthersUnaffected(url, bystander) {
  assert.equal(bystander.connected, true, "bystander was disconnected");
  await assertRoundTrip(bystander, "bystander");
  const fresh = await connected(url);
  try {
    await assertRoundTrip(fresh, "fresh");
  } finally {
    fresh.close();
  }
}

// Any binary value as a Buffer (clients decode to Buffer or ArrayBuffer).
export function toBuffer(x) {
  if (Buffer.isBuffer(x)) return x;
  if (x instanceof ArrayBuffer) return Buffer.from(x);
  if (ArrayBuffer.isView(x)) return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  throw new Error(`not binary: ${Object.prototype.toString.call(x)}`);
}

export const eioPath = (url, query = "") =>
  `${url}/socket.io/?EIO=4&transport=polling${query ? "&" + query : ""}`;

// Open an Engine.IO long-polling session; resolve with the parsed OPEN packet.
export async function pollingHandshake(url) {
  const res = await fetch(eioPath(url));
  assert.equal(res.status, 200);
  const body = await res.text();
  assert.equal(body[0], "0", `handshake body: ${body}`);
  return JSON.parse(body.slice(1));
}

// Raw Engine.IO WebSocket client: queues text/binary messages, answers pings
// unless autoPong is false.
export class RawWs {
  constructor(url, { query = "", autoPong = true, headers = {} } = {}) {
    const ws = url.replace(/^http/, "ws") + `/socket.io/?EIO=4&transport=websocket${query ? "&" + query : ""}`;
    this.ws = new WebSocket(ws, { headers });
    this.queue = [];
    this.waiters = [];
    this.closed = false;
    this.closeCode = null;
    this.closedPromise = new Promise((resolve) => {
      this.ws.on("close", (code) => {
        this.closed = true;
        this.closeCode = code;
        resolve(code);
        for (const w of this.waiters.splice(0)) w.reject(new Error(`socket closed (${code})`));
      });
    });
    this.ws.on("error", () => {}); // a close follows; tests look at that
    this.ws.on("message", (data, isBinary) => {
      const msg = isBinary ? data : data.toString();
      if (autoPong && msg === "2") {
        this.ws.send("3");
        return;
      }
      const w = this.waiters.shift();
      if (w) w.resolve(msg);
      else this.queue.push(msg);
    });
  }
  opened(ms = 5000) {
    return withTimeout(
      new Promise((resolve, reject) => {
        this.ws.once("open", resolve);
        this.ws.once("error", reject);
        this.ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      }),
      ms,
      "WebSocket open",
    );
  }
  next(ms = 5000) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closed) return Promise.reject(new Error(`socket closed (${this.closeCode})`));
    return withTimeout(
      new Promise((resolve, reject) => this.waiters.push({ resolve, reject })),
      ms,
      "next WebSocket message",
    );
  }
  send(data) {
    this.ws.send(data);
  }
  close() {
    this.ws.terminate();
  }
  // Resolve with the close code, or reject if the server keeps it open.
  waitClosed(ms = 5000) {
    return withTimeout(this.closedPromise, ms, "server to close the WebSocket");
  }
}

// Open a raw WebSocket session and connect the Socket.IO namespace "/".
export async function rawSocketIo(url, opts = {}) {
  const r = new RawWs(url, opts);
  await r.opened();
  const open = await r.next();
  assert.equal(open[0], "0", `open packet: ${open}`);
  r.send("40");
  const conn = await r.next();
  assert.match(conn, /^40\{"sid":"[^"]+"/);
  const auth = await r.next();
  assert.equal(auth, '42["auth",{}]');
  return r;
}

// Value of a Prometheus counter/gauge (summed over label sets). url is the
// server's operations listener (srv.adminUrl).
export async function metric(url, name) {
  const res = await fetch(url + "/metrics");
  assert.equal(res.status, 200, "/metrics status");
  const text = await res.text();
  let found = false;
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (m && m[1] === name) {
      found = true;
      sum += Number(m[3]);
    }
  }
  assert.ok(found, `metric ${name} missing from /metrics`);
  return sum;
}

// Guard for polling loops: call the returned function each turn; it throws
// once ms have passed, so a server that never sends what a loop waits for
// fails the test instead of hanging the run.
export function deadline(ms, what) {
  const end = Date.now() + ms;
  return () => {
    if (Date.now() > end) throw new Error(`timeout after ${ms} ms: ${what}`);
  };
}
