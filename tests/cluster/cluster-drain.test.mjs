// Rolling restart behind HAProxy with plain official clients: every replica in
// turn gets SIGTERM, drains and starts again. The clients run no application
// code for it (default socket.io-client reconnection, no handler): each one
// whose replica drains sees its transport close, comes back by itself through
// the balancer, and serves requests again on a live replica.
// Needs the release chat-server, rabbitmq-server and haproxy.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startCluster, ask, waitFor } from "./lib/cluster.mjs";

let c;
const clients = [];

before(async () => {
  c = await startCluster("drain", { replicas: 3 });
});

after(async () => {
  for (const s of clients) s.close();
  if (c) await c.down();
});

// The replica a socket is on, from the server itself.
async function replicaOf(s) {
  const info = await ask(s, "cluster info");
  assert.equal(info.ok, true, JSON.stringify(info));
  return info.replica;
}

test("rolling restart: plain official clients come back by themselves", async () => {
  const transports = [["websocket"], ["polling"], ["polling", "websocket"]];
  const on = new Map(); // replica -> sockets
  for (let i = 0; i < 30 && !c.replicaIds.every((r) => (on.get(r)?.length ?? 0) >= 2); i++) {
    // withCredentials keeps HAProxy's sticky cookie, which polling needs.
    const s = io(c.lbUrl, { forceNew: true, withCredentials: true, transports: transports[i % 3] });
    clients.push(s);
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("connect timeout")), 10000);
      s.once("connect", () => (clearTimeout(t), resolve()));
    });
    const r = await replicaOf(s);
    on.set(r, [...(on.get(r) ?? []), s]);
  }
  assert.ok(c.replicaIds.every((r) => (on.get(r)?.length ?? 0) >= 2), `spread: ${[...on].map(([r, l]) => `${r}:${l.length}`)}`);

  const reasons = new Map();
  for (const s of clients) s.on("disconnect", (r) => reasons.set(s, [...(reasons.get(s) ?? []), r]));

  for (const id of c.replicaIds) {
    const moved = on.get(id) ?? [];
    const back = moved.map(
      (s) =>
        new Promise((resolve) => {
          s.once("disconnect", () => s.once("connect", resolve));
        }),
    );
    await c.stopReplica(id);
    await Promise.race([
      Promise.all(back),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`clients of ${id} not back within 20 s`)), 20000)),
    ]);
    for (const s of moved) assert.notEqual(await replicaOf(s), id, "back on the drained replica");
    await c.startReplica(id);
    await waitFor(`${id} ready`, async () => (await fetch(c.urlOf(id) + "/readyz")).status === 200, 20000);
    // Later rolls move whoever is on the next replica now.
    on.clear();
    for (const s of clients) {
      const r = await replicaOf(s);
      on.set(r, [...(on.get(r) ?? []), s]);
    }
  }

  // Everyone is connected and served; nobody was told "io server disconnect".
  for (const s of clients) assert.equal(s.connected, true);
  const all = [...reasons.values()].flat();
  assert.ok(all.length >= 6, `disconnects seen: ${all.length}`);
  for (const r of all) assert.match(r, /^transport (close|error)$/);
  // And they chat: log in and exchange a message across replicas.
  const a = clients[0];
  const b = clients.find((s) => s !== a);
  assert.equal((await ask(a, "add user", "roll-a")).ok, true);
  assert.equal((await ask(b, "add user", "roll-b")).ok, true);
  const got = new Promise((resolve) => b.on("new message", (m) => m.message === "after the roll" && resolve(m)));
  assert.equal((await ask(a, "new message", "after the roll")).ok, true);
  await Promise.race([got, new Promise((_, rej) => setTimeout(() => rej(new Error("message not delivered")), 10000))]);
});
