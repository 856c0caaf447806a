// A private local cluster for one test file: scripts/cluster (RabbitMQ node,
// chat-server replicas on 127.0.0.2.., HAProxy with deploy/haproxy.cfg) in
// its own run folder on free ports, plus the failure drills the tests need.
import { execFile } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { io } from "socket.io-client";
import { projectRoot, serverBin, sleep } from "../../integration/lib/server.mjs";

const run = promisify(execFile);
const script = (name) => path.join(projectRoot, "scripts", name);

export function freePort(host = "127.0.0.1") {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A port free on 127.0.0.1 and on every replica address.
async function freeSharedPort(replicas) {
  for (;;) {
    const port = await freePort("127.0.0.2");
    let ok = true;
    for (let i = 1; i <= replicas + 2 && ok; i++) {
      ok = await new Promise((resolve) => {
        const s = net.createServer();
        s.once("error", () => resolve(false));
        s.listen(port, `127.0.0.${i}`, () => s.close(() => resolve(true)));
      });
    }
    if (ok) return port;
  }
}

export async function waitFor(what, fn, timeoutMs = 30000, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
}

export async function readyz(url) {
  try {
    const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
    return r.status;
  } catch {
    return 0;
  }
}

// Value of one Prometheus counter/gauge (first sample) on a replica.
export async function metric(url, name) {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
  const m = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, "m"));
  if (!m) throw new Error(`metric ${name} not found`);
  return Number(m[1]);
}

// Value of one sample whose labels include every `labels` pair, e.g.
// metricWith(url, "chat_bus_bad_payloads_total", { kind: "room" }).
export async function metricWith(url, name, labels) {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
  for (const line of text.split("\n")) {
    const m = line.match(new RegExp(`^${name}\\{([^}]*)\\} ([0-9.e+-]+)$`));
    if (!m) continue;
    const have = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[2]);
  }
  throw new Error(`metric ${name} ${JSON.stringify(labels)} not found`);
}

// Start a cluster; resolve with its handles. opts: replicas, amqpUrl (external
// broker, may be down), wait (false: do not wait for readiness), serverArgs
// (extra chat-server flags), tls (HAProxy also serves HTTPS/WSS with a
// self-signed certificate made here: c.tlsUrl, c.tlsCa).
export async function startCluster(name, { replicas = 3, amqpUrl = "", wait = true, serverArgs = "", rabbitmqNodes = 1, tls = false } = {}) {
  const dir = path.join(projectRoot, "run", `cluster-test-${name}`);
  // A previous run's saved broker ports may be taken now: start clean.
  fs.rmSync(dir, { recursive: true, force: true });
  const lbPort = await freePort();
  const basePort = await freeSharedPort(replicas);
  const statsPort = await freePort();
  const args = ["up", "--dir", dir, "--replicas", String(replicas), "--port", String(lbPort),
    "--base-port", String(basePort), "--stats-port", String(statsPort)];
  if (amqpUrl) args.push("--amqp-url", amqpUrl);
  if (!wait) args.push("--no-wait");
  if (serverArgs) args.push("--server-args", serverArgs);
  if (rabbitmqNodes > 1) args.push("--rabbitmq-nodes", String(rabbitmqNodes));
  let tlsPort = 0;
  let tlsCa = null;
  if (tls) {
    fs.mkdirSync(dir, { recursive: true });
    const key = path.join(dir, "tls-key.pem");
    const cert = path.join(dir, "tls-cert.pem");
    await run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]);
    tlsCa = fs.readFileSync(cert);
    fs.writeFileSync(path.join(dir, "tls.pem"), Buffer.concat([tlsCa, fs.readFileSync(key)]));
    tlsPort = await freePort();
    args.push("--tls-cert", path.join(dir, "tls.pem"), "--tls-port", String(tlsPort));
  }
  const env = { ...process.env, CHAT_SERVER_BIN: serverBin };
  try {
    await run(script("cluster"), args, { cwd: projectRoot, env, timeout: 120000 });
  } catch (e) {
    await run(script("cluster"), ["down", "--dir", dir], { cwd: projectRoot, env }).catch(() => {});
    throw new Error(`scripts/cluster up failed: ${e.message}\n${e.stdout ?? ""}${e.stderr ?? ""}`);
  }
  const rabbitDir = path.join(dir, "rabbitmq");
  const c = {
    dir,
    lbUrl: `http://127.0.0.1:${lbPort}`,
    tlsUrl: tls ? `https://127.0.0.1:${tlsPort}` : null,
    tlsPort,
    tlsCa,
    statsUrl: `http://127.0.0.1:${statsPort}/`,
    replicaUrl: (i) => `http://127.0.0.${i + 1}:${basePort}`,
    replicaIds: Array.from({ length: replicas }, (_, i) => `r${i + 1}`),
    urlOf: (id) => `http://127.0.0.${Number(id.slice(1)) + 1}:${basePort}`,
    // Operations listener of a replica (/metrics, detailed /readyz): see scripts/cluster.
    adminUrlOf: (id) => `http://127.0.1.${Number(id.slice(1)) + 1}:${basePort}`,
    log: (file) => fs.readFileSync(path.join(dir, file), "utf8"),
    killReplica: (id) => run(script("cluster"), ["kill", id, "--dir", dir], { cwd: projectRoot, env }),
    stopReplica: (id) => run(script("cluster"), ["stop", id, "--dir", dir], { cwd: projectRoot, env, timeout: 60000 }),
    startReplica: (id) => run(script("cluster"), ["start", id, "--dir", dir], { cwd: projectRoot, env }),
    rabbit: (cmd, extra = []) =>
      run(script("rabbitmq"), [cmd, "--dir", rabbitDir, ...extra], { cwd: projectRoot, timeout: 120000 }),
    // Node k (1-based) of a --rabbitmq-nodes cluster.
    rabbitNode: (k, cmd, extra = []) =>
      run(script("rabbitmq"), [cmd, "--dir", k === 1 ? rabbitDir : `${rabbitDir}-${k}`, ...extra], {
        cwd: projectRoot,
        timeout: 120000,
      }),
    rabbitPorts: (k) =>
      Object.fromEntries(
        fs
          .readFileSync(path.join(k === 1 ? rabbitDir : `${rabbitDir}-${k}`, "ports"), "utf8")
          .trim()
          .split("\n")
          .map((l) => l.split("=")),
      ),
    down: () => run(script("cluster"), ["down", "--dir", dir], { cwd: projectRoot, env, timeout: 120000 }),
    // Publish raw bytes to the cluster's exchange through the broker's
    // management API, as any client with publish rights could.
    publishRaw: async (routingKey, body, { exchange = "chat", appId = "intruder" } = {}) => {
      if (!c.mgmt) {
        const { stdout } = await c.rabbit("status");
        const m = stdout.match(/management 127\.0\.0\.1:(\d+)/);
        if (!m) throw new Error(`no management port in: ${stdout}`);
        c.mgmt = `http://127.0.0.1:${m[1]}`;
      }
      // Strings as they are (the API caps request bodies near 20 MB), bytes in base64.
      const binary = Buffer.isBuffer(body);
      const r = await fetch(`${c.mgmt}/api/exchanges/%2F/${encodeURIComponent(exchange)}/publish`, {
        method: "POST",
        headers: { authorization: `Basic ${Buffer.from("guest:guest").toString("base64")}`, "content-type": "application/json" },
        body: JSON.stringify({
          properties: { app_id: appId },
          routing_key: routingKey,
          payload: binary ? body.toString("base64") : body,
          payload_encoding: binary ? "base64" : "string",
        }),
        signal: AbortSignal.timeout(30000),
      });
      if (r.status !== 200) throw new Error(`publish to ${routingKey}: HTTP ${r.status} ${await r.text()}`);
      return (await r.json()).routed;
    },
  };
  return c;
}

// A socket.io-client user through a URL; resolves { socket, me } after add user.
// reconnection on: a user whose replica dies comes back through HAProxy.
export async function user(url, name, opts = {}) {
  const socket = io(url, {
    forceNew: true,
    reconnection: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    withCredentials: true,
    timeout: 8000,
    ...opts,
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: connect timeout`)), 10000);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  const me = await ask(socket, "add user", name);
  if (!me.ok) throw new Error(`add user ${name}: ${JSON.stringify(me)}`);
  return { socket, me, name };
}

// Emit with an ack; reject after ms.
export function ask(socket, event, ...args) {
  const ms = typeof args.at(-1) === "object" && args.at(-1)?.__ms ? args.pop().__ms : 10000;
  return socket.timeout(ms).emitWithAck(event, ...args);
}

export { sleep };
