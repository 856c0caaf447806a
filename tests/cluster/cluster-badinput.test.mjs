// Bad broker input: anyone with publish rights on the exchange can put any
// bytes on the control key or a room key. Each kind of malformed message is
// published to the real exchange of a running cluster; every replica stays
// up and ready, counts exactly what it dropped, and users on two replicas
// keep chatting. (One heartbeat whose "replica" was a number used to take
// down every replica at once.)
// Needs the release chat-server, rabbitmq-server and haproxy.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startCluster, user, ask, metric, metricWith, readyz, waitFor, sleep } from "./lib/cluster.mjs";

let c;
const sockets = [];
before(async () => {
  // The management API takes bodies up to ~10 MB: a lower bound on broker
  // messages lets the test send one over it (the default is 16 MiB).
  // With the Admin UI on, its control messages are checked too.
  c = await startCluster("badinput", {
    replicas: 2,
    serverArgs: "--amqp-max-message 1048576 --admin-ui --admin-ui-auth none",
  });
});
after(async () => {
  for (const s of sockets) s.close();
  if (c) await c.down();
});

let seq = 0;
const envelope = (room, event, payload, extra = {}) =>
  JSON.stringify({ v: 1, origin: "intruder#1", id: `intruder#1-${++seq}`, room, event, payload, ts: 1, sender: "", ...extra });
const control = (event, payload) => ["cluster", envelope("", event, payload)];
const roomEv = (event, payload) => ["room.general", envelope("general", event, payload)];

const hb = { v: 0, replica: "rX", users: 0, connections: 0 };
const delta = { op: "login", v: 1, u: "s1", replica: "rX", n: "eve" };
const snap = { v: 0, replica: "rX", connections: 0, users: [] };
const msg = { id: "m", username: "eve", userId: "s1", message: "hi", room: "general", ts: 1, replica: "rX" };
const member = { username: "eve", userId: "s1", numUsers: 1, room: "general", replica: "rX", ts: 1 };

// [routing key, body, what it counts as]
const bad = [
  // control payloads, one per field and kind
  [...control("presence.heartbeat", { ...hb, replica: 7 }), "presence.heartbeat"],
  [...control("presence.heartbeat", { ...hb, v: "3" }), "presence.heartbeat"],
  [...control("presence.heartbeat", { v: 0, replica: "rX", users: 0 }), "presence.heartbeat"],
  [...control("presence.heartbeat", { ...hb, connections: -5 }), "presence.heartbeat"],
  [...control("presence.delta", { ...delta, n: undefined }), "presence.delta"],
  [...control("presence.delta", { ...delta, v: -1 }), "presence.delta"],
  [...control("presence.delta", { ...delta, u: {} }), "presence.delta"],
  [...control("presence.delta", { ...delta, op: "explode" }), "presence.delta"],
  [...control("presence.delta", { ...delta, op: "join" }), "presence.delta"], // join without a room
  [...control("presence.snapshot", { ...snap, users: "all" }), "presence.snapshot"],
  [...control("presence.snapshot", { ...snap, users: [{ u: 1, n: "x", r: [] }] }), "presence.snapshot"],
  [...control("presence.snapshot", { ...snap, users: [{ u: "s", n: "x", r: [1] }] }), "presence.snapshot"],
  [...control("presence.sync", { target: 5 }), "presence.sync"],
  [...control("presence.sync", {}), "presence.sync"],
  [...control("presence.bye", { replica: [] }), "presence.bye"],
  [...control("presence.teleport", {}), "unknown"],
  // the Admin UI's messages (docs/admin.md)
  [...control("admin.stats", { stats: 5, admins: 0 }), "admin"],
  [...control("admin.stats", { stats: {}, admins: "many" }), "admin"],
  [...control("admin.feed", { events: "all" }), "admin"],
  [...control("admin.feed", { events: [[1, 2]] }), "admin"],
  [...control("admin.fetch", { target: 5, req: 1 }), "admin"],
  [...control("admin.sockets", { target: "x#1", req: 1, sockets: {} }), "admin"],
  [...control("admin.command", { cmd: 5, nsp: "/" }), "admin"],
  [...control("admin.command", { cmd: "emit", nsp: "/", filter: "", event: 7, args: [] }), "admin"],
  [...control("admin.command", { cmd: "_disconnect", nsp: "/", close: "yes" }), "admin"],
  [...control("admin.command", { cmd: "join", nsp: "/", room: ["general"] }), "admin"],
  [...control("admin.command", { cmd: "explode", nsp: "/" }), "admin"],
  [...control("admin.session", { id: 5, expires: 1 }), "admin"],
  [...control("admin.teleport", {}), "admin"],
  // room events
  [...roomEv("new message", { ...msg, message: 5 }), "room"],
  [...roomEv("new message", { ...msg, userId: undefined }), "room"],
  [...roomEv("new message", { ...msg, room: "elsewhere" }), "room"],
  [...roomEv("user joined", { ...member, numUsers: "many" }), "room"],
  [...roomEv("user left", { ...member, ts: "soon" }), "room"],
  [...roomEv("typing", { username: 1, userId: "s1", room: "general" }), "room"],
  [...roomEv("explode", { ...msg }), "room"],
  // not envelopes at all
  ["cluster", "", "envelope"],
  ["cluster", "}{ not json", "envelope"],
  ["room.general", "null", "envelope"],
  ["cluster", "[]", "envelope"],
  ["cluster", '[1,"x",null]', "envelope", 3],
  ["room.general", "[[[[", "envelope"],
  ["cluster", "[".repeat(100000), "envelope"],
  ["cluster", envelope("", "presence.heartbeat", hb, { origin: 42 }), "envelope"],
  ["cluster", envelope("", "presence.heartbeat", "text"), "envelope"],
  ["room.general", envelope("general", "new message", msg, { v: 2 }), "envelope"],
  ["cluster", envelope("", "presence.heartbeat", hb, { ts: "later" }), "envelope"],
  ["cluster", Buffer.from([0, 0xff, 0xfe, 0x7b]), "envelope"],
  ["room.general", `[${envelope("general", "new message", msg)},${" ".repeat(1024 * 1024)}]`, "envelope"], // over the bound
];

const kinds = ["presence.heartbeat", "presence.delta", "presence.snapshot", "presence.sync", "presence.bye", "unknown", "room"];

async function counters(url) {
  const out = {
    envelope: await metric(url, "chat_bus_bad_envelopes_total"),
    admin: await metric(url, "chat_admin_bad_envelopes_total"),
  };
  for (const k of kinds) out[k] = await metricWith(url, "chat_bus_bad_payloads_total", { kind: k });
  out.exceptions = (await metric(url, "chat_exceptions_total")) + (await metric(url, "chat_bus_exceptions_total"));
  return out;
}

function pidOf(r) {
  return Number(fs.readFileSync(path.join(c.dir, `${r}.pid`), "utf8"));
}
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("every kind of malformed broker message is counted and dropped; replicas stay up and keep chatting", async () => {
  const [u1, u2] = [c.urlOf("r1"), c.urlOf("r2")];
  const alice = await user(u1, "alice", { transports: ["websocket"] });
  const bob = await user(u2, "bob", { transports: ["websocket"] });
  sockets.push(alice.socket, bob.socket);
  await waitFor("presence to list both users", async () => {
    const l = await ask(alice.socket, "list users", "general");
    return l.ok && l.users.length === 2;
  }, 15000);
  const before = { r1: await counters(c.adminUrlOf("r1")), r2: await counters(c.adminUrlOf("r2")) };
  const pids = { r1: pidOf("r1"), r2: pidOf("r2") };

  const expected = Object.fromEntries([...kinds, "envelope", "admin"].map((k) => [k, 0]));
  for (const [key, body, kind, n = 1] of bad) {
    assert.equal(await c.publishRaw(key, body), true, `not routed: ${key}`);
    expected[kind] += n;
  }

  // Both replicas consume every one of them (both bind the control key and
  // have members in general), and count each exactly once, under its kind.
  for (const r of ["r1", "r2"]) {
    const url = c.adminUrlOf(r);
    let now;
    await waitFor(`${r} to count every bad message`, async () => {
      now = await counters(url);
      return now.envelope - before[r].envelope >= expected.envelope;
    }, 30000).catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(now)} vs ${JSON.stringify(before[r])}`);
    });
    await sleep(300);
    now = await counters(url);
    for (const k of Object.keys(expected))
      assert.equal(now[k] - before[r][k], expected[k], `${r} ${k}: ${JSON.stringify(now)}`);
    assert.equal(now.exceptions, before[r].exceptions, `${r}: a last-resort handler caught something`);
    assert.equal(alive(pids[r]), true, `${r} died`);
    assert.equal(await readyz(url), 200, `${r} not ready`);
  }
  // The balancer keeps /readyz inside; /healthz answers only through a ready replica.
  assert.equal((await fetch(`${c.lbUrl}/healthz`)).status, 200, "HAProxy has no ready replica");

  // Nobody invented: no user, no replica from the garbage.
  const info = await ask(alice.socket, "cluster info");
  assert.deepEqual(info.replicas.map((r) => r.id).sort(), ["r1", "r2"], JSON.stringify(info));
  assert.equal(info.numUsers, 2);

  // Chat still flows both ways between the two replicas.
  const got = { alice: [], bob: [] };
  alice.socket.on("new message", (m) => got.alice.push(m.message));
  bob.socket.on("new message", (m) => got.bob.push(m.message));
  assert.equal((await ask(alice.socket, "new message", "from r1")).ok, true);
  assert.equal((await ask(bob.socket, "new message", "from r2")).ok, true);
  await waitFor("messages across replicas", () => got.bob.includes("from r1") && got.alice.includes("from r2"), 10000);
  // A user logging in now is seen by the other replica.
  const carol = await user(c.lbUrl, "carol", { transports: ["websocket"] });
  sockets.push(carol.socket);
  await waitFor("carol in presence on both replicas", async () => {
    const [a, b] = [await ask(alice.socket, "list users", "general"), await ask(bob.socket, "list users", "general")];
    return a.users.length === 3 && b.users.length === 3;
  }, 15000);
});

test("a message the broker refuses is dropped after a few tries, its sender gets REJECTED, the rest flows", async () => {
  const [u1, u2] = [c.urlOf("r1"), c.urlOf("r2")];
  const dave = await user(u1, "dave", { transports: ["websocket"] });
  const erin = await user(u2, "erin", { transports: ["websocket"] });
  sockets.push(dave.socket, erin.socket);
  for (const u of [dave, erin]) assert.equal((await ask(u.socket, "join room", "open")).ok, true);
  assert.equal((await ask(dave.socket, "join room", "closed")).ok, true);
  // The broker refuses writes to room.closed on the cluster's exchange (topic
  // permissions): its publisher channel is closed each time one is sent.
  await c.publishRaw("cluster", "{}"); // learns the management port
  const perms = `${c.mgmt}/api/topic-permissions/%2F/guest`;
  const auth = { authorization: `Basic ${Buffer.from("guest:guest").toString("base64")}` };
  const put = await fetch(perms, {
    method: "PUT",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({ exchange: "chat", write: "^(?!room\\.closed$).*", read: ".*" }),
  });
  assert.ok(put.status === 201 || put.status === 204, `topic permission: HTTP ${put.status}`);
  try {
    // Topic permissions are read when a channel opens: make r1 open a new one.
    const reconnects = await metric(c.adminUrlOf("r1"), "chat_bus_reconnects_total");
    // The management API lists connections from its statistics, which lag.
    const r1conns = await waitFor("r1's two broker connections in the management API", async () => {
      const conns = await (await fetch(`${c.mgmt}/api/connections`, { headers: auth })).json();
      const mine = conns.filter((x) => (x.client_properties?.connection_name ?? "").startsWith("r1#"));
      return mine.length === 2 && mine;
    }, 20000, 500);
    for (const x of r1conns)
      await fetch(`${c.mgmt}/api/connections/${encodeURIComponent(x.name)}`, { method: "DELETE", headers: auth });
    await waitFor("r1 to reconnect and be ready", async () =>
      (await metric(c.adminUrlOf("r1"), "chat_bus_reconnects_total")) >= reconnects + 2 && (await readyz(u1)) === 200, 30000);
    const rejectedBefore = await metric(c.adminUrlOf("r1"), "chat_bus_rejected_total");
    const got = [];
    erin.socket.on("new message", (m) => got.push(m.message));
    const acks = await Promise.all([
      ask(dave.socket, "new message", { room: "open", message: "one" }),
      ask(dave.socket, "new message", { room: "closed", message: "poison" }, { __ms: 20000 }),
      ask(dave.socket, "new message", { room: "open", message: "two" }),
    ]);
    assert.equal(acks[0].ok, true, JSON.stringify(acks[0]));
    assert.equal(acks[1].ok, false, JSON.stringify(acks[1]));
    assert.equal(acks[1].error.code, "REJECTED", JSON.stringify(acks[1]));
    assert.equal(acks[2].ok, true, JSON.stringify(acks[2]));
    await waitFor("erin to get both open messages", () => got.includes("one") && got.includes("two"), 10000);
    assert.deepEqual(got.filter((m) => m === "one" || m === "two"), ["one", "two"]);
    assert.equal((await metric(c.adminUrlOf("r1"), "chat_bus_rejected_total")) - rejectedBefore, 1);
    assert.equal(await readyz(u1), 200);
    // And later messages still flow.
    assert.equal((await ask(dave.socket, "new message", { room: "open", message: "three" })).ok, true);
    await waitFor("erin to get the next one", () => got.includes("three"), 10000);
  } finally {
    await fetch(perms, { method: "DELETE", headers: auth });
  }
});
