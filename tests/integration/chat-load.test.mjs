// Many clients at once against the real binary: 200 users in one room (a mix
// of WebSocket and polling), several of them talking at once; every message
// must reach every other member exactly once, and none may echo to its sender.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { TRANSPORTS, connect, request, wait, closeAll } from "./chat-helpers.mjs";

const CLIENTS = Number(process.env.CHAT_LOAD_CLIENTS || 200);
const SENDERS = 20;
const PER_SENDER = 5;

let server;
let url;
before(async () => {
  // Room for the test clients whatever the default connection cap is.
  server = await startServer(["--replica-id", "load-1", "--max-connections", "2000"]);
  url = server.url;
});
after(() => server.stop());

test(`${CLIENTS} clients in one room: every message delivered exactly once to each`, { timeout: 120000 }, async () => {
  const sockets = [];
  const users = [];
  try {
    // Connect in batches; every fifth client uses long-polling.
    for (let i = 0; i < CLIENTS; i += 20) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(20, CLIENTS - i) }, (_, k) =>
          connect(url, (i + k) % 5 === 0 ? TRANSPORTS.polling : TRANSPORTS.websocket),
        ),
      );
      sockets.push(...batch);
    }
    const received = sockets.map(() => new Map()); // per client: message id -> count
    sockets.forEach((s, i) =>
      s.on("new message", (m) => received[i].set(m.id, (received[i].get(m.id) || 0) + 1)),
    );
    for (let i = 0; i < CLIENTS; i += 50) {
      const acks = await Promise.all(sockets.slice(i, i + 50).map((s, k) => request(s, "add user", `load${i + k}`)));
      for (const a of acks) assert.equal(a.ok, true, JSON.stringify(a));
      users.push(...acks);
    }
    const members = await request(sockets[0], "list users", "general");
    assert.equal(members.users.length, CLIENTS);

    // SENDERS users send PER_SENDER messages each, all at the same time.
    const sent = new Map(); // id -> sender index
    await Promise.all(
      Array.from({ length: SENDERS }, async (_, si) => {
        const idx = si * Math.floor(CLIENTS / SENDERS);
        for (let n = 0; n < PER_SENDER; n++) {
          const ack = await request(sockets[idx], "new message", `from ${idx} #${n}`);
          assert.equal(ack.ok, true, JSON.stringify(ack));
          sent.set(ack.id, idx);
        }
      }),
    );
    assert.equal(sent.size, SENDERS * PER_SENDER, "ids are unique");

    // Wait until every client has what it should have (or time runs out).
    const expectedCount = (i) => [...sent.values()].filter((s) => s !== i).length;
    const deadline = Date.now() + 30000;
    const done = () => received.every((r, i) => r.size >= expectedCount(i));
    while (!done() && Date.now() < deadline) await wait(100);
    await wait(300); // late duplicates would show now

    let missing = 0;
    let duplicates = 0;
    let echoes = 0;
    received.forEach((r, i) => {
      for (const [id, from] of sent) {
        const c = r.get(id) || 0;
        if (from === i) echoes += c;
        else if (c === 0) missing++;
        else if (c > 1) duplicates += c - 1;
      }
      for (const id of r.keys()) assert.ok(sent.has(id), `unknown message id ${id}`);
    });
    const total = CLIENTS * SENDERS * PER_SENDER - SENDERS * PER_SENDER;
    assert.deepEqual({ missing, duplicates, echoes }, { missing: 0, duplicates: 0, echoes: 0 }, `of ${total} deliveries`);
    assert.ok(sockets.every((s) => s.connected), "every client is still connected");
  } finally {
    closeAll(sockets);
  }
});
