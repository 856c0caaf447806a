// deploy/haproxy.cfg at the edge, with the stack's environment: what a client
// may and may not get through the balancer. The "task" behind it is a small
// HTTP server that answers everything (including /metrics and /readyz) and
// echoes the headers it received, so a refusal can only come from HAProxy and
// the forwarded headers are exactly what a replica would see.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { stopProcess, sleep } from "../../tests/integration/lib/server.mjs";
import { startSwarmDns } from "./lib/swarm-dns.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

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

let dns;
let task;
let lb;
let lbUrl;
let lbOut = "";

before(async () => {
  const taskPort = await freePort("127.0.0.2");
  task = http.createServer((req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ url: req.url, headers: req.headers, replica: "echo" }));
  });
  await new Promise((r) => task.listen(taskPort, "127.0.0.2", r));
  dns = await startSwarmDns("tasks.chat", ["127.0.0.2"]);
  const lbPort = await freePort("127.0.0.1");
  lbUrl = `http://127.0.0.1:${lbPort}`;
  const env = {
    PATH: process.env.PATH,
    LB_PORT: String(lbPort),
    CHAT_DNS: "tasks.chat",
    CHAT_PORT: String(taskPort),
    CHAT_SLOTS: "20",
    DNS_SERVER: `127.0.0.1:${dns.port}`,
    STATS_PORT: String(await freePort("127.0.0.1")),
  };
  lb = spawn("haproxy", ["-db", "-f", path.join(root, "deploy", "haproxy.cfg")], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  lb.stdout.on("data", (d) => (lbOut += d));
  lb.stderr.on("data", (d) => (lbOut += d));
  const deadline = Date.now() + 20000;
  for (;;) {
    try {
      if ((await fetch(`${lbUrl}/echo`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`HAProxy never routed to the task:\n${lbOut}`);
    await sleep(200);
  }
});

after(async () => {
  if (lb) await stopProcess(lb, "SIGTERM");
  await new Promise((r) => (task ? task.close(r) : r()));
  await dns?.close();
});

async function echo(headers = {}) {
  const r = await fetch(`${lbUrl}/echo`, { headers });
  assert.equal(r.status, 200);
  return (await r.json()).headers;
}

test("the replica gets the client's address in X-Forwarded-For", async () => {
  const h = await echo();
  assert.equal(h["x-forwarded-for"], "127.0.0.1");
});

test("an X-Forwarded-For sent by the client does not reach the replica", async () => {
  const h = await echo({ "x-forwarded-for": "203.0.113.7" });
  assert.equal(h["x-forwarded-for"], "127.0.0.1", "a forged address was passed on");
});

test("/metrics and /readyz are refused at the balancer, in any spelling; the rest (the Admin UI too) passes", async () => {
  for (const p of [
    "/metrics",
    "/metrics?x=1",
    "/metrics/",
    "/METRICS",
    "/%6Detrics",
    "/%2Fmetrics",
    "/./metrics",
    "//readyz",
    "/readyz",
    "/readyz?verbose=1",
    "/ReadyZ",
  ]) {
    const r = await fetch(`${lbUrl}${p}`);
    assert.equal(r.status, 404, `${p} answered ${r.status}`);
    assert.doesNotMatch(await r.text(), /echo/, `${p} reached the task`);
  }
  // The Admin UI's page passes: it has its own login (docs/admin.md).
  for (const p of ["/healthz", "/", "/socket.io/?EIO=4&transport=polling", "/app.js", "/admin/"]) {
    const r = await fetch(`${lbUrl}${p}`);
    assert.equal(r.status, 200, `${p} answered ${r.status}`);
    assert.equal((await r.json()).url, p, `${p} did not reach the task unchanged`);
  }
});
