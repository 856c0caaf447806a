// History partitions (--history-partitions 4): rooms hash over four
// streams and a replica reads only the partitions of its rooms, so the
// traffic of a room it has no member in costs it nothing. A join there is
// answered once the partition is read up to the present, with the room's
// history; a recovered client whose rooms are in a partition its new
// replica did not read gets every message it missed, once, in order.
// Needs the release chat-server, rabbitmq-server and haproxy.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startCluster, user, ask, metric, waitFor, sleep } from "./lib/cluster.mjs";

const PARTS = 4;
let c;
const open = [];

// The server's room hash (FNV-1a of the name's bytes).
function partitionOf(room) {
  let h = 2166136261;
  for (const b of Buffer.from(room)) {
    h ^= b;
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h % PARTS;
}

// A room name whose partition is none of the given ones.
function roomOutside(prefix, taken) {
  for (let i = 0; ; i++) if (!taken.includes(partitionOf(`${prefix}${i}`))) return `${prefix}${i}`;
}

before(async () => {
  c = await startCluster("partitions", {
    replicas: 3,
    serverArgs: `--history-partitions ${PARTS} ${process.env.PARTITION_TEST_ARGS ?? ""} --rate 1000 --burst 1000 --room-rate 5000 --room-burst 5000`,
  });
});

after(async () => {
  for (const u of open) u.socket.close();
  if (c) await c.down();
});

async function direct(replica, name) {
  const u = await user(c.urlOf(replica), name, { transports: ["websocket"] });
  assert.equal(u.me.replica, replica);
  u.got = [];
  u.socket.on("new message", (m, offset) => u.got.push({ ...m, resume: offset }));
  open.push(u);
  return u;
}

const general = partitionOf("general");
// The first test's room, and the second test's (in neither of the others' partitions).
const roomA = roomOutside("part.a.", [general]);
const roomZ = roomOutside("part.z.", [general, partitionOf(roomA)]);

test("a replica reads only its rooms' partitions: another room's traffic costs it nothing; a join there gets the history", async (t) => {
  const room = roomA;
  const px = partitionOf(room);
  const [a1, a2] = [await direct("r1", "pa1"), await direct("r1", "pa2")];
  const onR2 = await direct("r2", "pb1");
  const newcomer = await direct("r3", "pc1");
  for (const u of [a1, a2]) assert.equal((await ask(u.socket, "join room", room)).ok, true);
  await sleep(300);
  const streams = async (r) => metric(c.adminUrlOf(r), "chat_bus_history_streams_read");
  // r2 and r3 read general's partition and the reserved one only.
  assert.equal(await streams("r2"), 2);
  assert.equal(await streams("r3"), 2);
  assert.equal(await streams("r1"), 3);
  const before = {};
  for (const r of c.replicaIds) before[r] = await metric(c.adminUrlOf(r), "chat_bus_consumed_total");
  const n = 300;
  for (let i = 0; i < n; i++) {
    const ack = await ask(a1.socket, "new message", { room, message: `p${i}` });
    assert.equal(ack.ok, true, JSON.stringify(ack));
  }
  await waitFor("the member to get every message", () => a2.got.filter((m) => m.room === room).length === n);
  await sleep(300);
  const consumed = {};
  for (const r of c.replicaIds) consumed[r] = (await metric(c.adminUrlOf(r), "chat_bus_consumed_total")) - before[r];
  // r1 read the room's messages (joined in broker messages under load: at
  // least a few); the others only control traffic and session records, far
  // fewer than the messages sent.
  assert.ok(consumed.r1 >= 10, `r1 consumed ${consumed.r1}`);
  for (const r of ["r2", "r3"]) assert.ok(consumed[r] < n / 10, `${r} consumed ${consumed[r]} broker messages for a room it has no member in`);
  assert.equal(onR2.got.filter((m) => m.room === room).length, 0);
  // Each message's last argument is the replica's cut, naming its own position.
  const seen = a2.got.filter((m) => m.room === room);
  for (const m of seen) {
    assert.match(m.resume, /^[0-9]+:[0-9]+(,[0-9]+:[0-9]+)*$/);
    assert.ok(m.resume.split(",").includes(`${px}:${m.offset}`), `${m.resume} lacks ${px}:${m.offset}`);
  }
  for (let i = 1; i < seen.length; i++) assert.ok(BigInt(seen[i].offset) > BigInt(seen[i - 1].offset), "offsets grow");
  // A replica that did not read the partition answers a join with its last 50 messages.
  const t0 = performance.now();
  const j = await ask(newcomer.socket, "join room", room);
  const joinMs = performance.now() - t0;
  assert.equal(j.ok, true, JSON.stringify(j));
  assert.deepEqual(
    j.history.map((m) => [m.message, m.offset]),
    seen.slice(-50).map((m) => [m.message, m.offset]),
  );
  assert.equal(await streams("r3"), 3);
  // And then delivers the room's traffic live.
  assert.equal((await ask(a1.socket, "new message", { room, message: "after" })).ok, true);
  await waitFor("the newcomer to get the next message", () => newcomer.got.some((m) => m.message === "after"));
  assert.equal(newcomer.got.filter((m) => m.room === room).length, 1);
  // A second room of the same partition: already read, answered at once.
  const sibling = (() => {
    for (let i = 0; ; i++) if (partitionOf(`${room}.s${i}`) === px) return `${room}.s${i}`;
  })();
  const t1 = performance.now();
  assert.equal((await ask(newcomer.socket, "join room", sibling)).ok, true);
  const siblingMs = performance.now() - t1;
  t.diagnostic(
    `consumed during ${n} messages: r1 ${consumed.r1}, r2 ${consumed.r2}, r3 ${consumed.r3}; ` +
      `join on a partition not read ${joinMs.toFixed(1)} ms, on one read ${siblingMs.toFixed(1)} ms`,
  );
  for (const u of [a1, a2, newcomer]) assert.equal((await ask(u.socket, "leave room", room)).ok, true);
  assert.equal((await ask(newcomer.socket, "leave room", sibling)).ok, true);
});

test("SIGKILL a replica: its users, in a room of a partition their new replica did not read, are recovered and miss nothing", async (t) => {
  // Users through the balancer until every replica has three.
  const users = [];
  const per = new Map();
  for (let i = 0; i < 60 && !c.replicaIds.every((r) => (per.get(r) ?? 0) >= 3); i++) {
    const u = await user(c.lbUrl, `prec${i}`, { transports: i % 2 ? ["polling"] : ["websocket"] });
    u.got = [];
    u.socket.on("new message", (m, resume) => u.got.push({ id: m.id, offset: m.offset, room: m.room, resume }));
    u.recovered = 0;
    u.socket.on("connect", () => u.socket.recovered && u.recovered++);
    open.push(u);
    users.push(u);
    per.set(u.me.replica, (per.get(u.me.replica) ?? 0) + 1);
  }
  assert.ok(c.replicaIds.every((r) => (per.get(r) ?? 0) >= 3), `spread: ${[...per]}`);
  const victim = "r1";
  const victims = users.filter((u) => u.me.replica === victim);
  // The room: the victim's users and one sender on r2; r3 has no member in
  // it, and none in any room of its partition.
  const room = roomZ;
  const sender = users.find((u) => u.me.replica === "r2");
  for (const u of [...victims, sender]) assert.equal((await ask(u.socket, "join room", room)).ok, true);
  await sleep(300);
  // r3 reads general's partition, the reserved one and (for a minute after
  // the first test) that test's room's: not this room's.
  const r3Before = await metric(c.adminUrlOf("r3"), "chat_bus_history_streams_read");
  const ids = new Map(victims.map((u) => [u, u.socket.id]));
  const acked = [];
  let failed = 0;
  let stop = false;
  const loop = (async () => {
    for (let i = 0; !stop; i++) {
      try {
        const r = await ask(sender.socket, "new message", { room, message: `z${i}` }, { __ms: 3000 });
        if (r.ok) acked.push(r.id);
        else failed++;
      } catch {
        failed++;
      }
      await sleep(5);
    }
  })();
  await sleep(1000);
  await c.killReplica(victim);
  await waitFor("the victim's users back", () => victims.every((u) => u.socket.connected && u.recovered >= 1), 20000);
  await sleep(1500);
  stop = true;
  await loop;
  const members = [...victims];
  await waitFor(
    "every acknowledged message at every member",
    () => members.every((u) => acked.every((id) => u.got.some((m) => m.id === id))),
    20000,
  );
  await sleep(300);
  for (const u of members) {
    const mine = u.got.filter((m) => m.room === room);
    const twice = mine.length - new Set(mine.map((m) => m.id)).size;
    assert.equal(twice, 0, `${u.name} got ${twice} messages twice`);
    for (let i = 1; i < mine.length; i++) assert.ok(BigInt(mine[i].offset) > BigInt(mine[i - 1].offset), `${u.name}: out of order at ${i}`);
    assert.equal(u.socket.recovered, true, `${u.name} not recovered`);
    assert.equal(u.socket.id, ids.get(u), `${u.name} lost its socket id`);
    const r = await ask(u.socket, "new message", { room, message: "back" });
    assert.equal(r.ok, true, JSON.stringify(r));
  }
  const landed = new Map();
  for (const u of victims) {
    const info = await ask(u.socket, "cluster info");
    landed.set(info.replica, (landed.get(info.replica) ?? 0) + 1);
  }
  // A victim that came back on r3 made it read this room's partition too.
  const r3After = await metric(c.adminUrlOf("r3"), "chat_bus_history_streams_read");
  if (landed.get("r3")) assert.equal(r3After, r3Before + 1);
  t.diagnostic(`${acked.length} acked, ${failed} not; ${victims.length} users of ${victim} recovered, now on ${[...landed]}`);
});
