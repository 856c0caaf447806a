// Connection state recovery across replicas: a replica is SIGKILLed while
// three senders keep a room busy; the official clients it served come back
// by themselves through HAProxy to the other replicas with their pid and last
// offset, are recovered (same socket id, login and rooms, recovered === true)
// and get every message they missed. Every acknowledged message reaches every
// member of the room exactly once, in one order (offsets grow).
// Needs the release chat-server, rabbitmq-server and haproxy.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startCluster, user, ask, metric, waitFor, sleep } from "./lib/cluster.mjs";

let c;
const open = [];

before(async () => {
  c = await startCluster("recovery", { replicas: 3, serverArgs: "--rate 1000 --burst 1000 --room-rate 5000 --room-burst 5000" });
});

after(async () => {
  for (const u of open) u.socket.close();
  if (c) await c.down();
});

test("SIGKILL a replica under traffic: its users are recovered on the others and miss nothing acknowledged", async (t) => {
  // Users through the balancer until every replica has four, WebSocket and polling mixed.
  const users = [];
  const per = new Map();
  for (let i = 0; i < 60 && !c.replicaIds.every((r) => (per.get(r) ?? 0) >= 4); i++) {
    const u = await user(c.lbUrl, `rec${i}`, { transports: i % 2 ? ["polling"] : ["websocket"] });
    u.got = [];
    u.socket.on("new message", (m, offset) => u.got.push({ id: m.id, offset, room: m.room }));
    u.recovered = 0;
    u.socket.on("connect", () => u.socket.recovered && u.recovered++);
    open.push(u);
    users.push(u);
    per.set(u.me.replica, (per.get(u.me.replica) ?? 0) + 1);
  }
  assert.ok(c.replicaIds.every((r) => (per.get(r) ?? 0) >= 4), `spread: ${[...per]}`);
  const victim = users[0].me.replica;
  const victims = users.filter((u) => u.me.replica === victim);
  const ids = new Map(victims.map((u) => [u, u.socket.id]));
  // One sender per replica; each sends one message after the other, acks awaited.
  const senders = c.replicaIds.map((r) => users.find((u) => u.me.replica === r));
  const acked = [];
  let failed = 0;
  let stop = false;
  const loops = senders.map(async (s, k) => {
    for (let i = 0; !stop; i++) {
      try {
        const r = await ask(s.socket, "new message", `s${k}-${i}`, { __ms: 3000 });
        if (r.ok) acked.push({ id: r.id, from: s });
        else failed++;
      } catch {
        failed++; // the sender's replica died with the message in flight: not acknowledged
      }
      await sleep(2);
    }
  });
  await sleep(1500);
  const ackedBefore = acked.length;
  await c.killReplica(victim);
  const killedAt = Date.now();
  await waitFor("the victim's users back", () => victims.every((u) => u.socket.connected && u.recovered >= 1), 20000);
  const backMs = Date.now() - killedAt;
  await sleep(2000);
  stop = true;
  await Promise.all(loops);
  const rate = Math.round(acked.length / ((Date.now() - killedAt) / 1000 + 1.5));

  // Every acknowledged message reaches every member but its sender, once.
  const survivors = users.filter((u) => u.me.replica !== victim || victims.includes(u));
  await waitFor(
    "every acknowledged message at every member",
    () => survivors.every((u) => acked.every((a) => a.from === u || u.got.some((m) => m.id === a.id))),
    20000,
  );
  await sleep(300);
  for (const u of survivors) {
    const seen = new Map();
    for (const m of u.got) seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
    const twice = [...seen].filter(([, n]) => n > 1);
    assert.deepEqual(twice, [], `${u.name} got messages twice`);
    const offs = u.got.map((m) => BigInt(m.offset));
    for (let i = 1; i < offs.length; i++) assert.ok(offs[i] > offs[i - 1], `${u.name}: offsets out of order at ${i}`);
  }
  for (const u of victims) {
    assert.equal(u.socket.recovered, true, `${u.name} not recovered`);
    assert.equal(u.socket.id, ids.get(u), `${u.name} lost its socket id`);
    // Logged in and in the room without a new add user: it can post.
    const r = await ask(u.socket, "new message", "back");
    assert.equal(r.ok, true, JSON.stringify(r));
  }
  let recoveries = 0;
  for (const r of c.replicaIds.filter((r) => r !== victim))
    recoveries += await metric(c.adminUrlOf(r), "chat_recoveries_total");
  assert.ok(recoveries >= victims.length, `recoveries ${recoveries}`);
  t.diagnostic(
    `${acked.length} messages acked (${ackedBefore} before the kill, ~${rate}/s), ${failed} not acknowledged; ` +
      `${victims.length} users of ${victim} recovered within ${backMs} ms`,
  );
});
