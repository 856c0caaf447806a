// Three replicas behind HAProxy relaying through RabbitMQ: users on every
// replica chat in one room over WebSocket and long-polling; room traffic
// reaches only replicas with members in the room; a replica killed with
// SIGKILL loses its users to the others and vanishes from presence.
// Needs the release chat-server, rabbitmq-server and haproxy.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import https from "node:https";
import path from "node:path";
import { io } from "socket.io-client";
import { projectRoot } from "../integration/lib/server.mjs";
import { startCluster, user, ask, metric, waitFor, sleep } from "./lib/cluster.mjs";

let c;
const open = [];

const API_KEY = "cluster-api-key-0123456789abcdefghijklmn";

before(async () => {
  // The publish API's keys, the same on every replica.
  const keys = path.join(projectRoot, "run", "cluster-test-api-keys");
  fs.mkdirSync(path.dirname(keys), { recursive: true });
  fs.writeFileSync(keys, `backend ${API_KEY}\n`);
  // The room-routing test sends a few hundred messages from one user.
  // HAProxy also terminates TLS (self-signed certificate); replicas compress.
  c = await startCluster("main", {
    replicas: 3,
    tls: true,
    serverArgs: `--rate 1000 --burst 1000 --api-keys ${keys} --ws-deflate`,
  });
});

after(async () => {
  for (const u of open) u.socket.close();
  if (c) await c.down();
});

// Users through the balancer until every replica has at least `per` of them.
async function spreadUsers(prefix, per, transports) {
  const users = [];
  const byReplica = new Map();
  for (let i = 0; users.length < 40; i++) {
    const opts = { transports: [transports[i % transports.length]] };
    const u = await user(c.lbUrl, `${prefix}${i}`, opts);
    open.push(u);
    users.push(u);
    byReplica.set(u.me.replica, (byReplica.get(u.me.replica) ?? 0) + 1);
    if (c.replicaIds.every((r) => (byReplica.get(r) ?? 0) >= per)) return users;
  }
  throw new Error(`the balancer did not spread 40 users over ${c.replicaIds}: ${[...byReplica]}`);
}

function collect(u) {
  const got = [];
  u.socket.on("new message", (m) => got.push(m));
  return got;
}

test("HAProxy serves every replica and sets a sticky cookie", async () => {
  const seen = new Set();
  // The balancer keeps /readyz inside: users tell which replica serves them.
  await waitFor("three ready replicas behind HAProxy", async () => {
    for (let i = 0; i < 6; i++) {
      // Connected but not logged in (no presence): `cluster info` names the replica.
      const s = io(c.lbUrl, { forceNew: true, reconnection: false, transports: ["websocket"] });
      try {
        await new Promise((resolve, reject) => (s.once("connect", resolve), s.once("connect_error", reject)));
        seen.add((await ask(s, "cluster info")).replica);
      } finally {
        s.close();
      }
    }
    return seen.size === 3;
  });
  const hs = await fetch(`${c.lbUrl}/socket.io/?EIO=4&transport=polling`);
  assert.equal(hs.status, 200);
  assert.match(hs.headers.get("set-cookie") ?? "", /^CHATSRV=/);
  const stats = await fetch(c.statsUrl);
  assert.equal(stats.status, 200, "HAProxy stats page");
});

test("users on three replicas chat in one room (WebSocket and polling): all see all, in order, once", async () => {
  const users = await spreadUsers("u", 2, ["websocket", "polling"]);
  const got = new Map(users.map((u) => [u.name, collect(u)]));
  // Presence is cluster-wide: everybody counts everybody.
  await waitFor("numUsers to reach every user", async () => {
    const info = await ask(users[0].socket, "list users", "general");
    return info.ok && users.every((u) => info.users.some((x) => x.userId === u.me.userId));
  }, 15000);
  const perSender = 15;
  await Promise.all(
    users.map(async (u) => {
      for (let i = 0; i < perSender; i++) {
        const ack = await ask(u.socket, "new message", `${u.name}:${i}`);
        assert.equal(ack.ok, true, JSON.stringify(ack));
        assert.equal(ack.replica, u.me.replica, "a polling request changed replica");
      }
    }),
  );
  const expected = (users.length - 1) * perSender;
  await waitFor("every message at every user", () => users.every((u) => got.get(u.name).length >= expected), 20000);
  await sleep(500); // anything extra (a duplicate) would arrive now
  for (const u of users) {
    const msgs = got.get(u.name);
    assert.equal(msgs.length, expected, `${u.name} (${u.me.replica}) got ${msgs.length}, want ${expected}`);
    const bySender = new Map();
    for (const m of msgs) {
      const [sender, n] = m.message.split(":");
      assert.notEqual(sender, u.name, "the sender's own socket got its message");
      (bySender.get(sender) ?? bySender.set(sender, []).get(sender)).push(Number(n));
    }
    for (const [sender, ns] of bySender)
      assert.deepEqual(ns, [...Array(perSender).keys()], `${u.name} saw ${sender}'s messages out of order or twice`);
  }
  const replicasOfSenders = new Set(users.map((u) => u.me.replica));
  assert.equal(replicasOfSenders.size, 3);
});

test("history: a replica with no member in a room delivers none of its traffic and answers a join with its last messages", async () => {
  // Two users on one replica share a room nobody else is in.
  const users = await spreadUsers("rt", 2, ["websocket"]);
  const home = users[0].me.replica;
  const pair = users.filter((u) => u.me.replica === home).slice(0, 2);
  assert.equal(pair.length, 2);
  for (const u of pair) assert.equal((await ask(u.socket, "join room", "quiet.room")).ok, true);
  const others = c.replicaIds.filter((r) => r !== home);
  await sleep(300);
  const before = {};
  for (const r of c.replicaIds) before[r] = await metric(c.adminUrlOf(r), "chat_deliveries_total");
  const got = collect(pair[1]);
  const n = 200;
  for (let i = 0; i < n; i++) {
    const ack = await ask(pair[0].socket, "new message", { room: "quiet.room", message: `q${i}` });
    assert.equal(ack.ok, true, JSON.stringify(ack));
  }
  await waitFor("the room member to get every message", () => got.filter((m) => m.room === "quiet.room").length === n);
  await sleep(300);
  // The other replicas read the stream (that is where their history comes
  // from) but deliver nothing of a room they have no member in.
  for (const r of others) {
    const d = (await metric(c.adminUrlOf(r), "chat_deliveries_total")) - before[r];
    assert.equal(d, 0, `replica ${r} without members delivered ${d} packets`);
  }
  // Joining there shows the room's last 50 messages, at the positions the member saw.
  const seen = got.filter((m) => m.room === "quiet.room");
  for (const m of seen) assert.match(m.offset, /^[0-9]+$/);
  for (let i = 1; i < seen.length; i++) assert.ok(BigInt(seen[i].offset) > BigInt(seen[i - 1].offset), "offsets grow");
  const newcomer = users.find((u) => u.me.replica === others[0]);
  assert.ok(newcomer, `no user on ${others[0]}`);
  const j = await ask(newcomer.socket, "join room", "quiet.room");
  assert.equal(j.ok, true, JSON.stringify(j));
  assert.deepEqual(
    j.history.map((m) => [m.message, m.offset]),
    seen.slice(-50).map((m) => [m.message, m.offset]),
  );
  assert.equal((await ask(newcomer.socket, "leave room", "quiet.room")).ok, true);
});

test("publish API: one Idempotency-Key retried on every replica is delivered once to members everywhere and kept once", async () => {
  const users = await spreadUsers("pa", 1, ["websocket"]);
  for (const u of users) assert.equal((await ask(u.socket, "join room", "api.room")).ok, true);
  const got = users.map((u) => collect(u));
  const dupes = {};
  for (const r of c.replicaIds) dupes[r] = await metric(c.adminUrlOf(r), "chat_api_duplicates_total");
  const key = `retry-${Date.now()}`;
  const send = (url) =>
    fetch(`${url}/api/rooms/api.room/messages`, {
      method: "POST",
      headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json", "Idempotency-Key": key },
      body: JSON.stringify({ message: "backup finished", username: "ops bot" }),
    });
  // The backend's first try and its retries, each reaching another replica
  // (the balancer may send a retry anywhere), then one more through it.
  const answers = [];
  for (const url of [...c.replicaIds.map((r) => c.urlOf(r)), c.lbUrl]) {
    const res = await send(url);
    assert.equal(res.status, 200, await res.clone().text());
    answers.push(await res.json());
  }
  const id = answers[0].id;
  assert.match(id, /^api-[0-9a-f]{32}$/);
  assert.ok(answers.every((a) => a.id === id), `one id for every try: ${JSON.stringify(answers)}`);
  await waitFor("every member to get the message", () =>
    got.every((g) => g.some((m) => m.id === id)));
  await sleep(1000);
  for (const [i, g] of got.entries())
    assert.equal(g.filter((m) => m.id === id).length, 1, `${users[i].name} on ${users[i].me.replica}: once`);
  // Each replica read three copies (one per replica that posted) and kept the first.
  for (const r of c.replicaIds) {
    const d = (await metric(c.adminUrlOf(r), "chat_api_duplicates_total")) - dupes[r];
    assert.equal(d, 2, `replica ${r} dropped ${d} copies`);
  }
  // A join anywhere shows it once.
  for (const u of users.slice(0, 3)) {
    assert.equal((await ask(u.socket, "leave room", "api.room")).ok, true);
    const j = await ask(u.socket, "join room", "api.room");
    assert.equal(j.history.filter((m) => m.id === id).length, 1, JSON.stringify(j.history));
    assert.equal((await ask(u.socket, "leave room", "api.room")).ok, true);
  }
});

// A GET through the TLS front with the test's CA; resolves { status, body }.
function tlsGet(p, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = https.get(`${c.tlsUrl}${p}`, { ca: c.tlsCa, headers }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("error", reject);
  });
}

test("TLS at HAProxy: the official client over wss (compressed) and https polling chats with a plain user; the replicas see https", async () => {
  const tls = { ca: c.tlsCa, withCredentials: true };
  // Not trusting the certificate: no connection.
  const untrusted = io(c.tlsUrl, { forceNew: true, reconnection: false, transports: ["websocket"] });
  await new Promise((resolve, reject) => {
    untrusted.once("connect", () => reject(new Error("connected without trusting the certificate")));
    untrusted.once("connect_error", () => resolve());
  });
  untrusted.close();

  const a = await user(c.tlsUrl, "wss-ann", { ...tls, transports: ["websocket"] });
  const b = await user(c.tlsUrl, "https-ben", { ...tls, transports: ["polling"] });
  const p = await user(c.lbUrl, "plain-pat", { transports: ["websocket"] });
  open.push(a, b, p);
  assert.equal(a.socket.io.engine.transport.name, "websocket");
  assert.equal(a.socket.io.engine.transport.ws.extensions, "permessage-deflate", "compression over wss");
  for (const u of [a, b, p]) assert.equal((await ask(u.socket, "join room", "tls.room")).ok, true);
  const got = [b, p].map((u) => collect(u));
  const big = "over tls and compressed ".repeat(80);
  assert.equal((await ask(a.socket, "new message", { room: "tls.room", message: big })).ok, true);
  await waitFor("the https and plain users to get the wss user's message", () =>
    got.every((g) => g.some((m) => m.message === big)));
  const back = collect(a);
  assert.equal((await ask(b.socket, "new message", { room: "tls.room", message: "from polling over https" })).ok, true);
  await waitFor("the wss user to get the https user's message", () => back.some((m) => m.message === "from polling over https"));

  // The balancer tells the replicas the scheme: a page served over https may
  // open a session, the same page claiming http may not (Origin check).
  const origin = `https://127.0.0.1:${c.tlsPort}`;
  const ok = await tlsGet("/socket.io/?EIO=4&transport=polling", { Origin: origin });
  assert.equal(ok.status, 200, ok.body);
  const wrong = await tlsGet("/socket.io/?EIO=4&transport=polling", { Origin: `http://127.0.0.1:${c.tlsPort}` });
  assert.equal(wrong.status, 403);
  assert.equal((await tlsGet("/healthz")).status, 200);
  assert.equal((await tlsGet("/metrics")).status, 404, "operations endpoints refused over TLS too");
});

test("SIGKILL a replica: its users reconnect through HAProxy and keep chatting; presence forgets it", async () => {
  const users = await spreadUsers("k", 2, ["websocket", "polling"]);
  const victim = users[0].me.replica;
  const victims = users.filter((u) => u.me.replica === victim);
  const survivors = users.filter((u) => u.me.replica !== victim);
  const infoBefore = await ask(survivors[0].socket, "cluster info");
  assert.ok(infoBefore.replicas.some((r) => r.id === victim), JSON.stringify(infoBefore));

  // Victims log in again when their socket comes back (as the web page does).
  const relogged = victims.map(
    (u) =>
      new Promise((resolve, reject) => {
        u.socket.io.once("reconnect", async () => {
          try {
            resolve(await ask(u.socket, "add user", u.name));
          } catch (e) {
            reject(e);
          }
        });
      }),
  );
  await c.killReplica(victim);
  const again = await Promise.race([
    Promise.all(relogged),
    sleep(20000).then(() => {
      throw new Error("victims did not reconnect within 20 s");
    }),
  ]);
  for (const a of again) {
    assert.equal(a.ok, true, JSON.stringify(a));
    assert.notEqual(a.replica, victim, "reconnected to the dead replica");
  }
  // Presence: the dead replica and its old users are gone within a few seconds.
  await waitFor(`cluster info without ${victim}`, async () => {
    const info = await ask(survivors[0].socket, "cluster info");
    return info.ok && !info.replicas.some((r) => r.id === victim);
  }, 15000);
  // Presence lists exactly the live logged-in sessions: every user of the
  // other replicas (this test's and the earlier tests', all in "general"),
  // and every user of the dead replica, recovered elsewhere under its old
  // socket id (connection state recovery logs them in again), nobody twice.
  for (const u of victims) {
    assert.equal(u.socket.recovered, true, `${u.name} was not recovered`);
    assert.equal(u.socket.id, u.me.userId, `${u.name} lost its socket id`);
  }
  const live = new Set(open.map((u) => u.socket.id));
  const diff = (list) => {
    const listed = new Set(list.users.map((x) => x.userId));
    return {
      missing: [...live].filter((id) => !listed.has(id)),
      extra: [...listed].filter((id) => !live.has(id)),
      onVictim: list.users.filter((x) => x.replica === victim).length,
    };
  };
  // Asked on each surviving replica: each keeps its own directory.
  const askers = c.replicaIds.filter((r) => r !== victim).map((r) => survivors.find((u) => u.me.replica === r));
  assert.equal(askers.filter(Boolean).length, 2, "a survivor on each live replica");
  for (const s of askers) {
    let last;
    await waitFor(`${s.me.replica} to list exactly the ${live.size} live sessions`, async () => {
      last = await ask(s.socket, "list users", "general");
      const d = diff(last);
      // Each replica expires the dead one on its own tick: wait for this one's too.
      return last.ok && d.missing.length === 0 && d.extra.length === 0 && d.onVictim === 0;
    }, 15000).catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(last && diff(last))}`);
    });
    assert.equal(diff(last).onVictim, 0);
    assert.equal(last.count, live.size, "list users count");
    const info = await ask(s.socket, "cluster info");
    assert.equal(info.numUsers, live.size, `numUsers on ${s.me.replica}`);
  }

  // Moved users chat with the rest.
  const got = collect(survivors[0]);
  const ack = await ask(victims[0].socket, "new message", "back from the dead");
  assert.equal(ack.ok, true, JSON.stringify(ack));
  await waitFor("a survivor to get the moved user's message", () => got.some((m) => m.message === "back from the dead"), 10000);
});
