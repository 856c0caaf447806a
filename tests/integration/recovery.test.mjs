// Connection state recovery with the official client (Socket.IO 4.x
// connectionStateRecovery protocol) on one replica: a client whose transport
// drops comes back with its socket id, login and rooms, then gets every
// message it missed, in order, once, then live traffic; an unknown pid or a
// client away longer than --recovery-window gets a new socket
// (recovered === false) and the room history fills the gap.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startServer } from "./lib/server.mjs";

let srv;
before(async () => {
  srv = await startServer(["--replica-id", "rec", "--recovery-window", "2000", "--rate", "1000", "--burst", "1000"]);
});
after(async () => srv?.stop());

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ask = (s, ev, ...a) =>
  new Promise((resolve, reject) => s.timeout(5000).emit(ev, ...a, (e, r) => (e ? reject(e) : resolve(r))));

async function client(name, opts = {}) {
  const s = io(srv.url, { forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 300, ...opts });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name}: connect timeout`)), 5000);
    s.once("connect", () => (clearTimeout(t), resolve()));
  });
  const got = [];
  s.on("new message", (m, offset) => got.push({ ...m, arg: offset }));
  const me = await ask(s, "add user", name);
  assert.equal(me.ok, true, JSON.stringify(me));
  return { s, got, me };
}

async function sendAll(sender, room, prefix, n) {
  const ids = [];
  for (let i = 0; i < n; i++) {
    const r = await ask(sender.s, "new message", { room, message: `${prefix}${i}` });
    assert.equal(r.ok, true, JSON.stringify(r));
    ids.push(r.id);
  }
  return ids;
}

const reconnected = (s) => new Promise((resolve) => s.once("connect", resolve));

for (const transport of ["websocket", "polling"]) {
  test(`a dropped ${transport} client recovers its socket, login and rooms, then what it missed, in order, once`, async () => {
    const a = await client(`ann-${transport}`);
    const b = await client(`bob-${transport}`, { transports: [transport] });
    const room = `r-${transport}`;
    for (const u of [a, b]) assert.equal((await ask(u.s, "join room", room)).ok, true);
    const first = await sendAll(a, room, "before", 5);
    while (b.got.length < 5) await sleep(20);
    assert.equal(typeof b.s._pid, "string", "the CONNECT reply carries a pid");
    // The offset travels as the last argument and inside the message, the same.
    for (const m of b.got) assert.equal(m.arg, m.offset);
    const id = b.s.id;

    b.s.io.engine.close(); // the transport drops; the client comes back by itself
    const away = await sendAll(a, room, "away", 20);
    await reconnected(b.s);
    assert.equal(b.s.recovered, true, "recovered");
    assert.equal(b.s.id, id, "same socket id");
    const after = await sendAll(a, room, "after", 5);
    const want = [...first, ...away, ...after];
    const deadline = Date.now() + 5000;
    while (b.got.filter((m) => m.room === room).length < want.length && Date.now() < deadline) await sleep(20);
    await sleep(200);
    const ids = b.got.filter((m) => m.room === room).map((m) => m.id);
    assert.deepEqual(ids, want, "every message once, in order");
    const offs = b.got.map((m) => BigInt(m.offset));
    for (let i = 1; i < offs.length; i++) assert.ok(offs[i] > offs[i - 1]);
    // Still logged in and in the room, without a new "add user".
    const list = await ask(b.s, "list users", room);
    assert.ok(list.users.some((u) => u.username === `bob-${transport}`), JSON.stringify(list));
    assert.equal((await ask(b.s, "new message", { room, message: "i am back" })).ok, true);
    a.s.close();
    b.s.close();
  });
}

test("an unknown pid or offset is a new connection: recovered is false", async () => {
  const s = io(srv.url, { forceNew: true, transports: ["websocket"], auth: { pid: "no-such-pid", offset: "1024" } });
  await new Promise((r) => s.once("connect", r));
  assert.equal(s.recovered, false);
  assert.equal(typeof s._pid, "string");
  assert.notEqual(s._pid, "no-such-pid");
  const r = await ask(s, "new message", "x");
  assert.equal(r.ok, false, "not logged in: a new socket");
  assert.equal(r.error.code, "NOT_LOGGED_IN");
  s.close();
});

test("a client away longer than the window gets recovered === false, and the history fills what it can", async () => {
  const a = await client("amy");
  const b = await client("ben", { transports: ["websocket"], reconnection: false });
  await sendAll(a, "general", "x", 2);
  while (b.got.length < 2) await sleep(20);
  const pid = b.s._pid;
  const offset = b.s._lastOffset;
  assert.ok(pid && offset, "the client holds a pid and an offset");
  b.s.io.engine.close();
  const missed = await sendAll(a, "general", "late", 3);
  // --recovery-window 2000: the record lasts window + alive interval (1 s); wait past it.
  await sleep(4500);
  const s = io(srv.url, { forceNew: true, transports: ["websocket"], auth: { pid, offset } });
  await new Promise((r) => s.once("connect", r));
  assert.equal(s.recovered, false);
  const me = await ask(s, "add user", "ben");
  assert.equal(me.ok, true, JSON.stringify(me));
  const shown = me.history.map((m) => m.id);
  for (const id of missed) assert.ok(shown.includes(id), `history lacks ${id}`);
  a.s.close();
  s.close();
});

test("a client that leaves on purpose cannot be recovered", async () => {
  const a = await client("ada");
  const b = await client("bea", { transports: ["websocket"] });
  await sendAll(a, "general", "y", 1);
  while (b.got.length < 1) await sleep(20);
  const pid = b.s._pid;
  const offset = b.s._lastOffset;
  b.s.disconnect(); // "io client disconnect": the session ends
  await sleep(200);
  const s = io(srv.url, { forceNew: true, transports: ["websocket"], auth: { pid, offset } });
  await new Promise((r) => s.once("connect", r));
  assert.equal(s.recovered, false);
  a.s.close();
  s.close();
});

// A dropped connection may come back within moments and be recovered: its
// departure waits for --leave-grace, so the others see no "user left" for a
// recovery; a client that does not come back is announced gone after it.
test("a drop followed by a recovery is no 'user left'; a client that does not come back is gone after the grace", async () => {
  const grace = 1500;
  const g = await startServer(["--replica-id", "grace", "--recovery-window", "10000", "--leave-grace", String(grace),
    "--rate", "1000", "--burst", "1000"]);
  const opts = { forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 300 };
  const connect = async (name, extra = {}) => {
    const s = io(g.url, { ...opts, ...extra });
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${name}: connect timeout`)), 5000);
      s.once("connect", () => (clearTimeout(t), resolve()));
    });
    assert.equal((await ask(s, "add user", name)).ok, true);
    return s;
  };
  try {
    const watcher = await connect("watcher");
    const left = [];
    watcher.on("user left", (m) => left.push({ name: m.username, at: Date.now() }));
    const names = async () => (await ask(watcher, "list users", "general")).users.map((u) => u.username).sort();
    // A position to recover from (the login event carries the newest one).
    assert.equal((await ask(watcher, "new message", "hello")).ok, true);

    const back = await connect("back");
    back.io.engine.close(); // drops; comes back by itself and is recovered
    await reconnected(back);
    assert.equal(back.recovered, true);
    await sleep(grace + 1500); // past the grace and a presence tick
    assert.deepEqual(left.map((l) => l.name), [], "no user left for a recovered user");
    assert.deepEqual(await names(), ["back", "watcher"]);

    const gone = await connect("gone", { reconnection: false });
    const t0 = Date.now();
    gone.io.engine.close(); // drops and never comes back
    const deadline = Date.now() + grace + 5000;
    while (!left.some((l) => l.name === "gone") && Date.now() < deadline) await sleep(20);
    const l = left.find((x) => x.name === "gone");
    assert.ok(l, "user left for a client that did not come back");
    assert.ok(l.at - t0 >= grace - 100, `announced after ${l.at - t0} ms, before the grace`);
    assert.deepEqual(await names(), ["back", "watcher"]);
    const m = await (await fetch(`${g.adminUrl}/metrics`)).text();
    assert.match(m, /chat_leaves_held_total\{[^}]*\} 2\b/);
    assert.match(m, /chat_leaves_avoided_total\{[^}]*\} 1\b/);
    for (const s of [watcher, back, gone]) s.close();
  } finally {
    await g.stop();
  }
});
