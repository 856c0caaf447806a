// Helpers for the chat-level integration tests: socket.io-client users of the
// real binary, per transport, with acks that time out instead of hanging, and
// an event recorder that also proves the absence of events.
import assert from "node:assert/strict";
import { io } from "socket.io-client";

// The three ways a browser may connect.
export const TRANSPORTS = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"] },
  default: {},
};

// Connect a socket (no automatic reconnection, so a dropped connection shows).
export function connect(url, transportOpts = {}, extra = {}) {
  const socket = io(url, { forceNew: true, reconnection: false, timeout: 8000, ...transportOpts, ...extra });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("connect timeout")), 10000);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      socket.close();
      reject(err);
    });
  });
}

// Emit with an ack; resolve with the single reply object.
export function request(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(8000).emit(event, ...args, (err, ...res) => {
      if (err) return reject(new Error(`no ack for "${event}" within 8 s`));
      assert.equal(res.length, 1, `"${event}" ack has one argument`);
      resolve(res[0]);
    });
  });
}

// Resolve with the payload of the next `event` on socket (optionally one that
// matches pred), or reject after ms.
export function next(socket, event, pred = () => true, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, on);
      reject(new Error(`timeout after ${ms} ms waiting for "${event}"`));
    }, ms);
    const on = (...args) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      socket.off(event, on);
      // `new message` and `login` carry an offset as a second argument
      // (connection state recovery, docs/protocol.md): the payload is the first.
      const offsetOnly =
        (event === "new message" || event === "login") && args.length === 2 && typeof args[1] === "string";
      resolve(args.length === 1 || offsetOnly ? args[0] : args);
    };
    socket.on(event, on);
  });
}

// Records every event a socket receives, so a test can assert what did NOT arrive.
export function record(socket) {
  const events = [];
  socket.onAny((event, ...args) => events.push({ event, args }));
  return {
    events,
    of: (name) => events.filter((e) => e.event === name).map((e) => e.args[0]),
    clear: () => events.splice(0),
  };
}

// Log a new socket in; resolve with { socket, me } where me is the ack reply.
export async function login(url, name, transportOpts = {}) {
  const socket = await connect(url, transportOpts);
  const me = await request(socket, "add user", name);
  assert.equal(me.ok, true, `add user ${name}: ${JSON.stringify(me)}`);
  return { socket, me };
}

export const sortedKeys = (o) => Object.keys(o).sort();

// An error reply: exactly {ok:false, error:{code, message}} with a readable message.
export function assertError(res, code) {
  assert.deepEqual(sortedKeys(res), ["error", "ok"], JSON.stringify(res));
  assert.equal(res.ok, false);
  assert.deepEqual(sortedKeys(res.error), ["code", "message"]);
  assert.equal(res.error.code, code, JSON.stringify(res));
  assert.equal(typeof res.error.message, "string");
  assert.ok(res.error.message.length > 0);
}

export const wait = (ms) => new Promise((r) => setTimeout(r, ms));

// Round trip to the server: once its ack is back, everything the server sent
// to this socket before has arrived too (one ordered connection).
export async function settle(...sockets) {
  await Promise.all(sockets.map((s) => request(s, "list rooms")));
}

export function closeAll(...sockets) {
  for (const s of sockets.flat()) s?.close();
}
