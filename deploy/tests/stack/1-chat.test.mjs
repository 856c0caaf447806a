// The deployed stack (scripts/deploy-test), as users and operators meet it:
// users on different replicas chat through the balancer over WebSocket and
// over long-polling, the balancer keeps the operations endpoints inside the
// stack, and the RabbitMQ management UI answers with one queue per replica.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import {
  lbUrl,
  mgmtUrl,
  amqpUser,
  amqpPassword,
  containers,
  usersOnReplicas,
  relay,
  waitFor,
} from "./lib.mjs";

const open = [];
after(() => open.forEach((u) => u.close()));

test("three replicas behind the balancer, one task each", async () => {
  const cs = await containers("chat");
  assert.equal(cs.length, 3, JSON.stringify(cs));
  assert.deepEqual(cs.map((c) => c.slot).sort(), [1, 2, 3]);
  assert.ok(cs.every((c) => c.health === "healthy"), JSON.stringify(cs));
});

for (const [label, transports] of [
  ["WebSocket", ["websocket"]],
  ["long-polling", ["polling"]],
]) {
  test(`users on different replicas chat through the balancer (${label})`, async () => {
    const users = await usersOnReplicas(3, { prefix: `${label[0]}`, opts: { transports, upgrade: false } });
    open.push(...users.values());
    const [a, b, c] = [...users.values()];
    assert.equal(new Set([a.replica, b.replica, c.replica]).size, 3);
    for (const u of [a, b, c]) assert.equal(u.socket.io.engine.transport.name, transports[0]);
    // Each one's message reaches the users on the two other replicas.
    for (const [from, ...to] of [
      [a, b, c],
      [b, c, a],
      [c, a, b],
    ]) {
      const text = `${label} from ${from.replica}`;
      await relay(from, to[0], text);
      await waitFor(`${to[1].name} to get it`, () => to[1].got.some((m) => m.message === text), 10000, 50);
      const m = to[0].got.find((x) => x.message === text);
      assert.equal(m.replica, from.replica, "the message names the replica it came from");
    }
  });
}

test("the balancer answers the page and /healthz, and keeps /metrics and /readyz inside the stack", async () => {
  const page = await fetch(`${lbUrl}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i);
  const health = await fetch(`${lbUrl}/healthz`);
  assert.equal(health.status, 200);
  for (const p of ["/metrics", "/readyz", "/METRICS", "/%6Detrics", "/readyz?x=1", "/metrics/"]) {
    const r = await fetch(`${lbUrl}${p}`);
    assert.equal(r.status, 404, `${p} through the balancer answered ${r.status}`);
    const body = await r.text();
    assert.doesNotMatch(body, /chat_|"bus"/, `${p} leaked: ${body.slice(0, 200)}`);
  }
});

test("the RabbitMQ management UI answers, with the stack's user and one consumer queue per replica", async () => {
  const ui = await fetch(`${mgmtUrl}/`);
  assert.equal(ui.status, 200);
  assert.match(await ui.text(), /RabbitMQ Management/);
  const auth = { authorization: `Basic ${Buffer.from(`${amqpUser}:${amqpPassword}`).toString("base64")}` };
  const who = await fetch(`${mgmtUrl}/api/whoami`, { headers: auth });
  assert.equal(who.status, 200);
  assert.equal((await who.json()).name, amqpUser);
  // Neither guest nor a wrong password gets in.
  const guest = await fetch(`${mgmtUrl}/api/whoami`, {
    headers: { authorization: `Basic ${Buffer.from("guest:guest").toString("base64")}` },
  });
  assert.equal(guest.status, 401);
  const exchanges = await (await fetch(`${mgmtUrl}/api/exchanges`, { headers: auth })).json();
  assert.ok(exchanges.some((e) => e.name === "chat" && e.type === "topic"), "no topic exchange chat");
  // One control queue per replica, each with its consumer (exclusive: gone
  // with its connection), and the history stream every replica reads.
  const queues = await waitFor("3 consumed replica queues and the history stream", async () => {
    const qs = await (await fetch(`${mgmtUrl}/api/queues`, { headers: auth })).json();
    const own = qs.filter((q) => q.exclusive && q.consumers > 0);
    return own.length === 3 && qs.some((q) => q.name === "chat.history") && qs;
  });
  const stream = queues.find((q) => q.name === "chat.history");
  assert.equal(stream.type, "stream", JSON.stringify(stream));
  assert.equal(stream.durable, true);
});
