// Operating the deployed stack (scripts/deploy-test), in order: a rolling
// update under light traffic, a scale-up to 5, a killed chat task and a
// killed broker. Each time the service must serve again by itself.
//
// What a rolling update guarantees today: every task is replaced one at a
// time (start-first), the service keeps serving, and the users of a stopped
// replica reconnect to a live one and chat on. It does not yet guarantee that
// no acknowledged message is lost to a user who is moving at that moment
// (that needs the cluster to replay what a reconnecting user missed): the
// test counts those and reports them, and asserts delivery once users settle.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import {
  lbUrl,
  chatService,
  docker,
  containers,
  waitHealthy,
  runningTaskIds,
  usersOnReplicas,
  user,
  relay,
  ask,
  warm,
  waitFor,
  sleep,
} from "./lib.mjs";

const open = [];
after(() => open.forEach((u) => u.close()));

// A user that logs in again after every reconnect, as the page does (after
// a recovery that login is answered like the first one).
function steadyUser(name, opts = {}) {
  const socket = io(lbUrl, {
    forceNew: true,
    reconnection: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    withCredentials: true,
    timeout: 5000,
    ...opts,
  });
  const u = { name, socket, got: [], replica: null, ready: false, closed: false, logins: 0, recoveries: 0, replicas: new Set() };
  socket.on("new message", (m) => u.got.push(m));
  // A draining replica closes the transport: the client comes back by itself.
  socket.on("disconnect", () => {
    u.ready = false;
  });
  socket.on("connect", async () => {
    if (socket.recovered) u.recoveries++;
    try {
      const me = await ask(socket, "add user", name, 5000);
      if (me.ok) {
        u.replica = me.replica;
        u.replicas.add(me.replica);
        u.logins++;
        u.ready = true;
      }
    } catch {
      // the connection went away again; the next connect retries
    }
  });
  u.close = () => {
    u.closed = true;
    socket.close();
  };
  open.push(u);
  return u;
}

test("rolling update (docker service update --force) under light traffic: every task replaced, users move and chat on", async (t) => {
  const before = await runningTaskIds("chat");
  assert.equal(before.length, 3);
  const sender = steadyUser("sender", { transports: ["websocket"] });
  const reader = steadyUser("reader");
  await waitFor("both traffic users logged in", () => sender.ready && reader.ready, 20000);

  // About 5 messages a second while the update runs.
  const acked = [];
  let refused = 0;
  let stop = false;
  const traffic = (async () => {
    for (let i = 0; !stop; i++) {
      if (sender.ready) {
        try {
          const ack = await ask(sender.socket, "new message", `tick ${i}`, 5000);
          if (ack.ok) acked.push({ id: ack.id, text: `tick ${i}`, at: Date.now() });
          else refused++;
        } catch {
          refused++;
        }
      }
      await sleep(200);
    }
  })();

  const t0 = Date.now();
  await docker("service", "update", "--force", chatService);
  const updateMs = Date.now() - t0;
  stop = true;
  await traffic;

  // The command returns once the tasks converged; swarm then still watches
  // the last task (update_config.monitor) before it calls the update done.
  const state = await waitFor(
    "the update to complete",
    async () => {
      const s = JSON.parse(await docker("service", "inspect", "-f", "{{json .UpdateStatus}}", chatService));
      if (s?.State !== "updating") return s;
    },
    120000,
    1000,
  );
  assert.equal(state?.State, "completed", `update state ${JSON.stringify(state)}`);
  const afterIds = await runningTaskIds("chat");
  assert.equal(afterIds.length, 3);
  assert.deepEqual(
    afterIds.filter((id) => before.includes(id)),
    [],
    "every task was replaced",
  );
  await waitHealthy("chat", 3);

  // Both traffic users were moved off their stopped replicas and logged in again.
  await waitFor("both traffic users back", () => sender.ready && reader.ready, 30000);
  assert.ok(sender.logins >= 2 || reader.logins >= 2, "nobody reconnected: were tasks really replaced?");

  // After the update: what is sent is delivered.
  await warm([sender, reader]);
  for (let i = 0; i < 5; i++) await relay(sender, reader, `after update ${i}`);

  const received = new Set(reader.got.map((m) => m.id));
  const missed = acked.filter((a) => !received.has(a.id));
  const copies = reader.got.length - received.size;
  t.diagnostic(
    `update took ${Math.round(updateMs / 1000)} s; sender logins ${sender.logins} on ${[...sender.replicas]}, ` +
      `reader logins ${reader.logins} on ${[...reader.replicas]} (recovered ${reader.recoveries} times); ` +
      `${acked.length} messages acked during the update, ${missed.length} of them not delivered to the reader, ` +
      `${copies} delivered twice, ${refused} refused or timed out`,
  );
  // Connection state recovery: a reader moved by the update misses nothing.
  assert.ok(reader.logins < 2 || reader.recoveries >= 1, "the moved reader was not recovered");
  assert.deepEqual(missed, [], "acknowledged messages the reader never got");
  assert.equal(copies, 0, "messages the reader got twice");
  assert.ok(acked.length > 0, "no message was acked during the update");
  sender.close();
  reader.close();
});

test("docker service scale test_chat=5: the new replicas serve users", async () => {
  const before = await containers("chat");
  const oldSlots = before.map((c) => c.slot).sort();
  await docker("service", "scale", `${chatService}=5`);
  const cs = await waitHealthy("chat", 5);
  const newSlots = cs.map((c) => c.slot).filter((s) => !oldSlots.includes(s));
  assert.equal(newSlots.length, 2, `slots before ${oldSlots}, now ${cs.map((c) => c.slot)}`);
  // Replica ids are <node>-<slot>: users reach all five through the balancer.
  const users = await waitFor(
    "users on all 5 replicas",
    () => usersOnReplicas(5, { prefix: "scaled", maxUsers: 30 }),
    60000,
    2000,
  );
  open.push(...users.values());
  const bySlot = new Map([...users.entries()].map(([id, u]) => [Number(id.split("-").at(-1)), u]));
  const fresh = bySlot.get(newSlots[0]);
  const old = bySlot.get(oldSlots[0]);
  assert.ok(fresh && old, `replicas ${[...users.keys()]}`);
  await relay(fresh, old, "from a new replica");
  await relay(old, fresh, "to a new replica");
});

test("docker kill of one chat task: its users move, swarm replaces it, the new task serves", async () => {
  const before = await containers("chat");
  assert.equal(before.length, 5);
  const victim = before[0];
  const users = await usersOnReplicas(2, { prefix: "k", maxUsers: 30 });
  open.push(...users.values());
  // A steady user on the victim's replica.
  let moved;
  for (let i = 0; i < 30 && !moved; i++) {
    const u = steadyUser(`mover${i}`, { transports: ["websocket"] });
    await waitFor(`mover${i} logged in`, () => u.ready, 15000);
    if (Number(u.replica.split("-").at(-1)) === victim.slot) moved = u;
    else u.close();
  }
  assert.ok(moved, `no user reached slot ${victim.slot}`);
  const onVictim = moved.replica;

  await docker("kill", victim.id);
  // The user reconnects through the balancer to a live replica.
  await waitFor("the user to reconnect elsewhere", () => moved.ready && moved.replica !== onVictim, 30000, 100);
  const [peer] = [...users.values()].filter((u) => u.replica !== moved.replica);
  await warm([moved, peer]);
  await relay(moved, peer, "moved and still here");

  // Swarm starts a replacement in the same slot, and it serves users again.
  const now = await waitHealthy("chat", 5, 120000);
  const replacement = now.find((c) => c.slot === victim.slot);
  assert.ok(replacement && replacement.id !== victim.id, "the slot was not refilled by a new task");
  const back = await waitFor(
    "a user on the replacement",
    () => usersOnReplicas(1, { prefix: "back", want: [onVictim], maxUsers: 30 }),
    60000,
    2000,
  );
  open.push(...back.values());
  await relay(back.get(onVictim), peer, "from the replacement");
});

test("docker kill of the broker: swarm restarts it, replicas reconnect, cross-replica chat resumes", async (t) => {
  const [broker] = await containers("rabbitmq");
  assert.ok(broker, "no broker container");
  const chatBefore = (await containers("chat")).map((c) => c.id).sort();
  const users = await usersOnReplicas(2, { prefix: "b", maxUsers: 30 });
  open.push(...users.values());
  const [a, b] = [...users.values()];
  await relay(a, b, "before the broker restart");

  const t0 = Date.now();
  await docker("kill", broker.id);
  const [again] = await waitHealthy("rabbitmq", 1, 180000);
  assert.notEqual(again.id, broker.id, "the broker was not restarted");
  // Cross-replica delivery comes back by itself: keep sending until it arrives.
  await waitFor(
    "cross-replica delivery after the broker restart",
    async () => {
      const text = `after the broker restart ${Date.now()}`;
      const ack = await ask(a.socket, "new message", text, 5000).catch(() => null);
      if (!ack?.ok) return false;
      return waitFor("delivery", () => b.got.some((m) => m.id === ack.id), 5000, 100).catch(() => false);
    },
    180000,
    1000,
  );
  t.diagnostic(`cross-replica delivery back ${Math.round((Date.now() - t0) / 1000)} s after the kill`);
  // The replicas rode through it: no chat task was replaced.
  const chatAfter = await waitHealthy("chat", 5, 120000);
  assert.deepEqual(chatAfter.map((c) => c.id).sort(), chatBefore, "chat tasks were replaced during the broker restart");
  // The users' connections to their replicas stayed up through it.
  assert.equal(a.socket.connected && b.socket.connected, true);
  // New users log in through the balancer again, once the replicas report
  // ready (a replica waits a moment after its broker connection is back
  // before it does; meanwhile the balancer has no replica for new users).
  const late = await waitFor("a new user to log in through the balancer", () => user("late"), 60000, 1000);
  open.push(late);
  assert.ok(late.replica);
});
