// Helpers for the tests against the deployed stack (scripts/deploy-test): the
// stack's addresses come from the environment, docker commands go to the
// engine in DOCKER_HOST, users are the official socket.io-client through the
// balancer.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { io } from "socket.io-client";
import { waitFor as pollUntil } from "../../../tests/cluster/lib/cluster.mjs";

const run = promisify(execFile);

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests with scripts/deploy-test`);
  return v;
}

export const stack = need("DEPLOY_STACK");
export const lbUrl = need("DEPLOY_LB_URL");
export const mgmtUrl = need("DEPLOY_MGMT_URL");
export const amqpUser = need("DEPLOY_AMQP_USER");
export const amqpPassword = need("DEPLOY_AMQP_PASSWORD");
export const chatService = `${stack}_chat`;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function docker(...args) {
  const { stdout } = await run("docker", args, { timeout: 600000, maxBuffer: 16 << 20 });
  return stdout.trim();
}

// The cluster tests' poll loop, with the stack's longer defaults.
export const waitFor = (what, fn, timeoutMs = 60000, everyMs = 500) => pollUntil(what, fn, timeoutMs, everyMs);

// Running containers of one service: [{id, slot, health}] (health: healthy,
// starting, unhealthy or none).
export async function containers(service) {
  const out = await docker(
    "ps",
    "--filter",
    `label=com.docker.swarm.service.name=${stack}_${service}`,
    "--format",
    '{{.ID}} {{.Label "com.docker.swarm.task.name"}} {{.Status}}',
  );
  return out
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [id, task] = line.split(" ");
      const health = /\(healthy\)/.test(line)
        ? "healthy"
        : /health: starting/.test(line)
          ? "starting"
          : /unhealthy/.test(line)
            ? "unhealthy"
            : "none";
      return { id, slot: Number(task.split(".")[1]), health };
    });
}

// Wait until the service runs exactly n containers, all healthy.
export async function waitHealthy(service, n, timeoutMs = 180000) {
  return waitFor(
    `${n} healthy ${service} task(s)`,
    async () => {
      const cs = await containers(service);
      return cs.length === n && cs.every((c) => c.health === "healthy" || c.health === "none") && cs;
    },
    timeoutMs,
    1000,
  );
}

// Ids of the service's tasks that swarm wants running.
export async function runningTaskIds(service) {
  const out = await docker("service", "ps", "-q", "--filter", "desired-state=running", `${stack}_${service}`);
  return out.split("\n").filter(Boolean).sort();
}

// Emit with an ack; reject after ms.
export function ask(socket, event, arg, ms = 10000) {
  return arg === undefined
    ? socket.timeout(ms).emitWithAck(event)
    : socket.timeout(ms).emitWithAck(event, arg);
}

// A logged-in user through the balancer. opts go to io() (transports, ...).
// With withCredentials, engine.io-client keeps the balancer's sticky cookie in
// Node, as a browser does.
export async function user(name, opts = {}) {
  const socket = io(lbUrl, {
    forceNew: true,
    reconnection: false,
    withCredentials: true,
    timeout: 8000,
    ...opts,
  });
  const got = [];
  socket.on("new message", (m) => got.push(m));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: connect timeout`)), 15000);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("connect_error", (e) => {
      clearTimeout(timer);
      reject(new Error(`${name}: ${e.message}`));
    });
  });
  const me = await ask(socket, "add user", name);
  if (!me.ok) throw new Error(`add user ${name}: ${JSON.stringify(me)}`);
  return { socket, me, name, got, replica: me.replica, close: () => socket.close() };
}

// Users until `count` distinct replicas have one (or `want` replica ids are
// all covered); the balancer spreads new connections by least connections.
// HAProxy learns the tasks from Swarm's DNS (re-resolved every 2 s), so a
// task that just became healthy may not take users yet: keep trying, with a
// pause between rounds, for up to `withinMs`. Returns a Map replica -> user;
// extra users are closed.
export async function usersOnReplicas(
  count,
  { prefix = "u", opts = {}, want = null, maxUsers = 200, withinMs = 30000 } = {},
) {
  const byReplica = new Map();
  const done = () => (want ? want.every((r) => byReplica.has(r)) : byReplica.size >= count);
  const deadline = Date.now() + withinMs;
  let i = 0;
  while (!done() && i < maxUsers && Date.now() < deadline) {
    const extra = [];
    for (let k = 0; k < 3 * count && !done() && i < maxUsers; k++, i++) {
      const u = await user(`${prefix}${i}`, opts);
      if (byReplica.has(u.replica)) extra.push(u);
      else byReplica.set(u.replica, u);
    }
    for (const u of extra) u.close();
    if (!done()) await sleep(500);
  }
  if (!done()) {
    for (const u of byReplica.values()) u.close();
    throw new Error(`${i} users in ${withinMs / 1000} s reached only replicas ${[...byReplica.keys()]}`);
  }
  await warm([...byReplica.values()]);
  return byReplica;
}

// A replica binds a room's routing key on the broker shortly after its first
// member there joins (bindings are applied in batches, docs/cluster.md), so a
// message sent at once can miss that replica. Wait until every user's
// messages reach every other one, then the tests measure delivery.
export async function warm(users, ms = 30000) {
  for (const from of users) {
    let n = 0;
    await waitFor(
      `${from.name}'s messages to reach ${users.length - 1} users`,
      async () => {
        const text = `warm-up ${from.name} ${n++}`;
        const ack = await ask(from.socket, "new message", text, 5000);
        if (!ack.ok) return false;
        const others = users.filter((u) => u !== from);
        return waitFor("", () => others.every((u) => u.got.some((m) => m.id === ack.id)), 1500, 50).catch(
          () => false,
        );
      },
      ms,
      200,
    );
  }
}

// from sends text; resolves with the ack once `to` received it.
export async function relay(from, to, text, ms = 10000) {
  const ack = await ask(from.socket, "new message", text);
  if (!ack.ok) throw new Error(`${from.name}: new message refused: ${JSON.stringify(ack)}`);
  await waitFor(`${to.name} to get "${text}"`, () => to.got.some((m) => m.message === text && m.id === ack.id), ms, 50);
  return ack;
}
