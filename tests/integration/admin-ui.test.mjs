// The official Socket.IO Admin UI's protocol on /admin (docs/admin.md), with
// the official client, on one replica: login (bcrypt, refused, session
// reuse, a flood of logins answered at once), config, all_sockets, the live
// feed, server_stats, the commands, read-only and production modes, and the
// UI's files at /admin/.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startServer, sleep } from "./lib/server.mjs";

// bcrypt of "changeit" (cost 12): a fixture, not a secret.
const HASH = "$2b$12$wpsgEtq3qxxlFiIH/1WFm.Q5U9h1btBIuSIuUeQ8xDVNdqJvwl.J2";
const servers = [];
const sockets = [];
after(async () => {
  for (const s of sockets) s.close();
  for (const s of servers) await s.stop();
});

async function server(extra = []) {
  const s = await startServer(["--admin-ui", "--admin-ui-password-hash", HASH, ...extra]);
  servers.push(s);
  return s;
}

// An admin client that records every event it gets.
function admin(url, auth, opts = {}) {
  const socket = io(url + "/admin", { forceNew: true, reconnection: false, auth, ...opts });
  sockets.push(socket);
  const got = [];
  socket.onAny((event, ...args) => got.push({ event, args }));
  return { socket, got };
}

function connectResult(socket) {
  return new Promise((resolve) => {
    socket.once("connect", () => resolve({ ok: true }));
    socket.once("connect_error", (e) => resolve({ ok: false, message: e.message }));
  });
}

async function until(what, fn, ms = 8000) {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function within(promise, ms, what) {
  return Promise.race([promise, sleep(ms).then(() => { throw new Error(`no ${what} in ${ms} ms`); })]);
}

const events = (a, name) => a.got.filter((g) => g.event === name);

async function chatUser(url, name) {
  const socket = io(url, { forceNew: true, reconnection: false, transports: ["websocket"] });
  sockets.push(socket);
  await new Promise((r) => socket.once("connect", r));
  const me = await socket.timeout(5000).emitWithAck("add user", name);
  assert.equal(me.ok, true);
  return socket;
}

test("login: bad credentials refused with the UI's message; good ones give a session id that logs in again", async () => {
  const s = await server();
  for (const auth of [{ username: "admin", password: "wrong" }, { username: "root", password: "changeit" },
    { username: "admin" }, { sessionId: "0123456789abcdef" }, {}]) {
    const a = admin(s.url, auth);
    assert.deepEqual(await connectResult(a.socket), { ok: false, message: "invalid credentials" }, JSON.stringify(auth));
  }
  const a = admin(s.url, { username: "admin", password: "changeit" });
  assert.deepEqual(await connectResult(a.socket), { ok: true });
  const session = await until("session", () => events(a, "session")[0]);
  assert.match(session.args[0], /^[0-9a-f]{16}$/);
  // The session comes first, then config.
  assert.equal(a.got[0].event, "session");
  assert.equal(a.got[1].event, "config");
  const again = admin(s.url, { sessionId: session.args[0] });
  assert.deepEqual(await connectResult(again.socket), { ok: true });
  await until("config", () => events(again, "config")[0]);
  assert.equal(events(again, "session").length, 0, "no new session for a session login");
});

test("a flood of logins is answered at once beyond the bound, and chat users are not held up", async () => {
  const s = await server();
  const bob = await chatUser(s.url, "bob");
  const flood = Array.from({ length: 40 }, () => admin(s.url, { username: "admin", password: "wrong" }));
  const t0 = Date.now();
  // Chat goes on while the checker thread hashes.
  const r = await bob.timeout(2000).emitWithAck("new message", "still here");
  assert.equal(r.ok, true);
  assert.ok(Date.now() - t0 < 1000, "a chat message is not held up by logins");
  const results = await Promise.all(flood.map((a) => connectResult(a.socket)));
  assert.ok(results.every((x) => !x.ok));
  const busy = results.filter((x) => x.message === "too many logins: try again later").length;
  assert.ok(busy > 20, `most of the flood refused at once (${busy})`);
  const m = await (await fetch(s.adminUrl + "/metrics")).text();
  assert.match(m, /chat_admin_logins_refused_total\{[^}]*\} 40/);
});

test("config, all_sockets, the feed, server_stats and the commands", async () => {
  const s = await server();
  const bob = await chatUser(s.url, "bob");
  const a = admin(s.url, { username: "admin", password: "changeit" });
  assert.deepEqual(await connectResult(a.socket), { ok: true });
  const config = await until("config", () => events(a, "config")[0]);
  assert.deepEqual(config.args[0].supportedFeatures,
    ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS", "ALL_EVENTS"]);
  const all = await until("all_sockets", () => events(a, "all_sockets")[0]);
  const listed = all.args[0].find((x) => x.id === bob.id);
  assert.ok(listed, "bob is listed");
  assert.equal(listed.nsp, "/");
  assert.equal(listed.transport, "websocket");
  assert.match(listed.clientId, /^[0-9a-f]{12}$/);
  assert.deepEqual(listed.rooms, [bob.id, "general"]);
  assert.equal(listed.data.username, "bob");
  assert.equal(typeof listed.handshake.issued, "number");
  assert.deepEqual(listed.handshake.headers, {});
  assert.ok(all.args[0].some((x) => x.nsp === "/admin" && x.id === a.socket.id), "the admin socket too");

  const stats = await until("server_stats", () => events(a, "server_stats")[0], 5000);
  const st = stats.args[0];
  assert.equal(typeof st.serverId, "string");
  assert.equal(typeof st.uptime, "number");
  assert.ok(st.clientsCount >= 2);
  assert.deepEqual(st.namespaces.map((n) => n.name), ["/", "/admin"]);
  assert.ok(Array.isArray(st.aggregatedEvents));

  // The live feed: a new user, its events, its rooms.
  const eve = await chatUser(s.url, "eve");
  await until("socket_connected", () => events(a, "socket_connected").find((e) => e.args[0].id === eve.id));
  await eve.timeout(5000).emitWithAck("join room", "lobby");
  await until("room_joined lobby", () =>
    events(a, "room_joined").find((e) => e.args[1] === "lobby" && e.args[2] === eve.id));
  const rec = await until("event_received", () =>
    events(a, "event_received").find((e) => e.args[1] === eve.id && e.args[2][0] === "join room"));
  assert.deepEqual(rec.args[2], ["join room", "lobby"]);
  assert.match(rec.args[3], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  await until("socket_updated data", () =>
    events(a, "socket_updated").find((e) => e.args[0].id === eve.id && e.args[0].data?.username === "eve"));

  // Commands: emit to a room, make bob join and leave, disconnect eve.
  const gotPing = new Promise((r) => bob.once("from-admin", (...args) => r(args)));
  a.socket.emit("emit", "/", bob.id, "from-admin", { x: 1 }, "two");
  assert.deepEqual(await within(gotPing, 5000, "emit from the admin"), [{ x: 1 }, "two"]);
  a.socket.emit("join", "/", "lobby", bob.id);
  await until("bob joined lobby", () =>
    events(a, "room_joined").find((e) => e.args[1] === "lobby" && e.args[2] === bob.id));
  a.socket.emit("leave", "/", "lobby", bob.id);
  await until("bob left lobby", () =>
    events(a, "room_left").find((e) => e.args[1] === "lobby" && e.args[2] === bob.id));
  const eveId = eve.id;  // the client forgets it once disconnected
  const gone = new Promise((r) => eve.once("disconnect", r));
  a.socket.emit("_disconnect", "/", false, "lobby");  // by room: eve is the only one left there
  assert.equal(await within(gone, 5000, "disconnect"), "io server disconnect");
  const d = await until("socket_disconnected", () =>
    events(a, "socket_disconnected").find((e) => e.args[1] === eveId));
  assert.equal(d.args[2], "server namespace disconnect");
  await until("room_left of eve's rooms", () =>
    events(a, "room_left").filter((e) => e.args[2] === eveId).length >= 3);
  assert.equal(bob.connected, true, "bob was not in the filter");
});

test("read-only: no commands; production: stats only", async () => {
  const ro = await server(["--admin-ui-readonly"]);
  const bob = await chatUser(ro.url, "bob");
  const a = admin(ro.url, { username: "admin", password: "changeit" });
  await connectResult(a.socket);
  const config = await until("config", () => events(a, "config")[0]);
  assert.deepEqual(config.args[0].supportedFeatures, ["AGGREGATED_EVENTS", "ALL_EVENTS"]);
  a.socket.emit("_disconnect", "/", true);
  await sleep(500);
  assert.equal(bob.connected, true, "read-only ignores commands");

  const prod = await server(["--admin-ui-mode", "production", "--admin-ui-auth", "none"]);
  const p = admin(prod.url, {});
  assert.deepEqual(await connectResult(p.socket), { ok: true });
  const pc = await until("config", () => events(p, "config")[0]);
  assert.deepEqual(pc.args[0].supportedFeatures,
    ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS"]);
  const carol = await chatUser(prod.url, "carol");
  await until("server_stats", () => events(p, "server_stats")[0], 5000);
  await sleep(300);
  assert.deepEqual([...new Set(p.got.map((g) => g.event))].sort(), ["config", "server_stats"]);
  // Commands work in production mode too.
  const gone = new Promise((r) => carol.once("disconnect", r));
  p.socket.emit("_disconnect", "/", false, carol.id);
  assert.equal(await within(gone, 5000, "disconnect"), "io server disconnect");
});

test("the UI's files at /admin/; /admin redirects; without --admin-ui neither the files nor the namespace", async () => {
  const s = await server();
  const r = await fetch(s.url + "/admin", { redirect: "manual" });
  assert.equal(r.status, 301);
  assert.equal(r.headers.get("location"), "/admin/");
  const page = await fetch(s.url + "/admin/");
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /text\/html/);
  assert.match(await page.text(), /js\/app\.[0-9a-f]+\.js/);

  const plain = await startServer([]);
  servers.push(plain);
  assert.equal((await fetch(plain.url + "/admin/")).status, 404);
  const a = admin(plain.url, {});
  assert.deepEqual(await connectResult(a.socket), { ok: false, message: "Invalid namespace" });
});

test("--admin-ui without a usable password hash does not start", async () => {
  for (const args of [["--admin-ui"], ["--admin-ui", "--admin-ui-password-hash", "changeit"]]) {
    await assert.rejects(startServer(args), /exited early \(code 2/);
  }
});
