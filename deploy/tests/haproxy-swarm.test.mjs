// deploy/haproxy.cfg with the environment the Swarm stack gives the lb service,
// in front of real chat-server replicas. Swarm's DNS is replaced by a local
// stand-in that lists the "tasks" (replicas on 127.0.0.2, .3, ... sharing one
// port, as tasks share port 3000 on their own addresses), so this exercises
// what swarm relies on: discovery through tasks.chat, following a scale-up
// without a config change, cookie stickiness for long-polling and WebSocket
// upgrades, and moving users off a task that went away.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";
import { serverBin, stopProcess, sleep } from "../../tests/integration/lib/server.mjs";
import { startSwarmDns } from "./lib/swarm-dns.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const haproxyCfg = process.env.HAPROXY_CFG || path.join(root, "deploy", "haproxy.cfg");

// The lb service's environment, exactly as `docker stack config` renders it.
function stackLbEnv() {
  const rendered = execFileSync("docker", ["stack", "config", "-c", "docker-compose.yml"], {
    cwd: root,
    encoding: "utf8",
  });
  const lines = execFileSync("python3", ["deploy/checks/stack_lint.py", "--lb-env"], {
    cwd: root,
    input: rendered,
    encoding: "utf8",
  });
  return Object.fromEntries(
    lines
      .split("\n")
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

function freePort(host) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Start a process and resolve once its output matches ready.
function startProcess(cmd, args, { env, ready, timeoutMs = 15000 }) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${cmd} did not become ready in ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onData = (d) => {
      out += d.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve({ proc, logs: () => out });
      }
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", onData);
    proc.on("exit", (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited early (code ${code}, signal ${sig}):\n${out}`));
    });
  });
}

async function waitFor(what, fn, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

let dns;
let lb;
let lbUrl;
let chatPort;
const tasks = new Map(); // address -> { id, proc }

async function startTask(n) {
  const address = `127.0.0.${n + 1}`;
  const id = `task-${n}`;
  const { proc } = await startProcess(
    serverBin,
    ["--host", address, "--port", String(chatPort), "--admin-port", "0", "--replica-id", id],
    // In-process bus: relaying is the cluster tests' job, balancing is ours.
    { env: { ...process.env, AMQP_URL: "", LOG_LEVEL: "info" }, ready: /listening on http:/ },
  );
  tasks.set(address, { id, proc });
  dns.set([...tasks.keys()]);
}

async function stopTask(address, signal) {
  const t = tasks.get(address);
  tasks.delete(address);
  dns.set([...tasks.keys()]);
  await stopProcess(t.proc, signal);
}

// The replica a fresh (cookie-less) connection through the balancer reaches:
// `cluster info` names it (the balancer keeps /readyz inside the stack).
async function replicaOfNewConnection() {
  const s = io(lbUrl, { forceNew: true, reconnection: false, transports: ["websocket"] });
  try {
    await new Promise((resolve, reject) => {
      s.once("connect", resolve);
      s.once("connect_error", reject);
    });
    return (await s.timeout(5000).emitWithAck("cluster info")).replica;
  } finally {
    s.close();
  }
}

async function replicasSeen(expected) {
  const seen = new Set();
  for (let i = 0; i < expected * 8 && seen.size < expected; i++) seen.add(await replicaOfNewConnection());
  return seen;
}

function connectClient(opts) {
  return new Promise((resolve, reject) => {
    // withCredentials: engine.io-client keeps the balancer's cookie in Node too.
    const s = io(lbUrl, { reconnection: true, reconnectionDelay: 200, withCredentials: true, ...opts });
    const timer = setTimeout(() => reject(new Error("connect timeout")), 10000);
    s.once("connect", () => {
      clearTimeout(timer);
      resolve(s);
    });
  });
}

function addUser(s, name) {
  return s.timeout(5000).emitWithAck("add user", name);
}

before(async () => {
  const stackEnv = stackLbEnv();
  assert.ok(stackEnv.CHAT_DNS, "the stack gives lb no CHAT_DNS");
  const probe = await freePort("127.0.0.2");
  chatPort = probe;
  dns = await startSwarmDns(stackEnv.CHAT_DNS, []);
  for (let n = 1; n <= 3; n++) await startTask(n);
  const lbPort = await freePort("127.0.0.1");
  lbUrl = `http://127.0.0.1:${lbPort}`;
  // Only what cannot be the same on one machine is overridden: where the DNS,
  // the balancer and its stats page listen, and the replicas' shared port.
  const env = {
    PATH: process.env.PATH,
    ...stackEnv,
    DNS_SERVER: `127.0.0.1:${dns.port}`,
    LB_PORT: String(lbPort),
    STATS_PORT: String(await freePort("127.0.0.1")),
    CHAT_PORT: String(chatPort),
  };
  lb = spawn("haproxy", ["-db", "-f", haproxyCfg], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
  let lbOut = "";
  lb.stdout.on("data", (d) => (lbOut += d));
  lb.stderr.on("data", (d) => (lbOut += d));
  await waitFor(
    "HAProxy to route to a replica",
    async () => (await fetch(`${lbUrl}/healthz`)).status === 200,
    20000,
  ).catch((e) => {
    throw new Error(`${e.message}\nHAProxy output:\n${lbOut}`);
  });
});

after(async () => {
  if (lb) await stopProcess(lb, "SIGTERM");
  await Promise.all([...tasks.values()].map((t) => stopProcess(t.proc, "SIGKILL")));
  await dns?.close();
});

test("new connections spread over every task listed by tasks.chat", async () => {
  const seen = await waitFor("all 3 replicas behind the balancer", async () => {
    const s = await replicasSeen(3);
    return s.size === 3 && s;
  });
  assert.deepEqual([...seen].sort(), ["task-1", "task-2", "task-3"]);
});

test("long-polling stays on one replica: handshake, connect and polls share the cookie", async () => {
  const hs = await fetch(`${lbUrl}/socket.io/?EIO=4&transport=polling`);
  assert.equal(hs.status, 200);
  const setCookie = hs.headers.get("set-cookie");
  assert.ok(setCookie, "the balancer set no cookie on the handshake");
  const cookie = setCookie.split(";")[0];
  const body = await hs.text();
  const { sid } = JSON.parse(body.slice(body.indexOf("{")));
  const url = `${lbUrl}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
  const post = await fetch(url, { method: "POST", headers: { cookie }, body: "40" });
  assert.equal(post.status, 200, "Socket.IO CONNECT reached another replica");
  const conn = await fetch(url, { headers: { cookie } });
  assert.equal(conn.status, 200);
  assert.match(await conn.text(), /40\{"sid"/);
  // Many more round trips: every one must reach the replica holding the session.
  for (let i = 0; i < 12; i++) {
    const r = await fetch(url, { method: "POST", headers: { cookie }, body: `42["cluster info"]` });
    assert.equal(r.status, 200, `request ${i} lost the session (status ${r.status})`);
  }
});

test("the official client through the balancer: polling only, and polling upgraded to WebSocket", async () => {
  const polling = await connectClient({ transports: ["polling"] });
  const upgraded = await connectClient({});
  try {
    const a = await addUser(polling, "pollster");
    assert.equal(a.ok, true, JSON.stringify(a));
    for (let i = 0; i < 10; i++) {
      const ack = await polling.timeout(5000).emitWithAck("new message", `poll ${i}`);
      assert.equal(ack.ok, true, JSON.stringify(ack));
      assert.equal(ack.replica, a.replica, "a polling request reached another replica");
    }
    if (upgraded.io.engine.transport.name !== "websocket") {
      await waitFor("the WebSocket upgrade", () => upgraded.io.engine.transport.name === "websocket", 10000);
    }
    const b = await addUser(upgraded, "upgrader");
    assert.equal(b.ok, true, JSON.stringify(b));
  } finally {
    polling.close();
    upgraded.close();
  }
});

test("scaling to 5 tasks needs no config change: the new tasks get traffic", async () => {
  await startTask(4);
  await startTask(5);
  const seen = await waitFor("all 5 replicas behind the balancer", async () => {
    const s = await replicasSeen(5);
    return s.size === 5 && s;
  });
  assert.deepEqual([...seen].sort(), ["task-1", "task-2", "task-3", "task-4", "task-5"]);
});

test("a task that goes away: its polling users reconnect to a live one", async () => {
  const s = await connectClient({ transports: ["polling"] });
  try {
    const first = await addUser(s, "mover");
    assert.equal(first.ok, true);
    const address = [...tasks.entries()].find(([, t]) => t.id === first.replica)?.[0];
    assert.ok(address, `unknown replica ${first.replica}`);
    const reconnected = new Promise((resolve) => s.io.once("reconnect", resolve));
    await stopTask(address, "SIGKILL");
    await Promise.race([
      reconnected,
      sleep(20000).then(() => {
        throw new Error("the client did not reconnect within 20 s");
      }),
    ]);
    const again = await addUser(s, "mover");
    assert.equal(again.ok, true, JSON.stringify(again));
    assert.notEqual(again.replica, first.replica);
  } finally {
    s.close();
  }
});
