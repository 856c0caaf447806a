// TLS on the server itself (--tls-cert / --tls-key): a self-signed
// certificate made with the openssl CLI, the official socket.io-client over
// https (WebSocket only, and polling then the upgrade), chat messages both
// ways; plain HTTP (and garbage) on the TLS port is dropped and the server
// goes on serving TLS; the admin listener stays plain; a missing or
// mismatched key is a start-up error naming the file.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { startServer, serverBin } from "./lib/server.mjs";
import { connect, request, next, login, closeAll } from "./chat-helpers.mjs";

function makeCert(dir, name) {
  const cert = path.join(dir, `${name}-cert.pem`);
  const key = path.join(dir, `${name}-key.pem`);
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
    { stdio: "ignore" },
  );
  return { cert, key };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "chat-tls-"));
const pair = makeCert(dir, "a");
const other = makeCert(dir, "b");
const ca = fs.readFileSync(pair.cert);
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function httpsGet(url, opts = {}) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, ...opts }, (res) => {
      let body = "";
      const alpn = res.socket.alpnProtocol;
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, body, alpn }));
    });
    req.setTimeout(5000, () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

// Send bytes on a plain TCP connection; resolve with what came back once the
// server closed it (or reject if it does not within ms).
function plainExchange(port, bytes, ms = 15000) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("the server did not close a plain connection"));
    }, ms);
    s.on("connect", () => s.write(bytes));
    s.on("data", (d) => (got = Buffer.concat([got, d])));
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

describe("server TLS", () => {
  let server;
  let url;
  before(async () => {
    // Several workers, so that upgrades move the connection (and its TLS
    // session) to the polling session's worker.
    server = await startServer(["--tls-cert", pair.cert, "--tls-key", pair.key, "--threads", "4"]);
    url = server.url;
    assert.match(url, /^https:/);
  });
  after(async () => {
    const code = await server.stop();
    assert.equal(code, 0, `server exit code\n${server.logs().slice(-2000)}`);
  });

  test("Engine.IO handshake over https with the certificate as CA, ALPN http/1.1", async () => {
    const r = await httpsGet(`${url.replace("127.0.0.1", "localhost")}/socket.io/?EIO=4&transport=polling`, {
      ALPNProtocols: ["http/1.1"],
    });
    assert.equal(r.status, 200);
    assert.match(r.body, /^0\{"/);
    assert.equal(r.alpn, "http/1.1");
  });

  test("the Origin check takes the server's own origin as https://", async () => {
    const hs = `${url}/socket.io/?EIO=4&transport=polling`;
    const own = await httpsGet(hs, { headers: { Origin: `https://127.0.0.1:${server.port}` }, rejectUnauthorized: false });
    assert.equal(own.status, 200);
    const plain = await httpsGet(hs, { headers: { Origin: `http://127.0.0.1:${server.port}` }, rejectUnauthorized: false });
    assert.equal(plain.status, 403);
  });

  test("TLS 1.1 is refused, TLS 1.2 is taken", async () => {
    const attempt = (minVersion, maxVersion) =>
      new Promise((resolve) => {
        const s = tls.connect({ port: server.port, host: "127.0.0.1", ca, servername: "localhost", minVersion, maxVersion });
        s.on("secureConnect", () => {
          const v = s.getProtocol();
          s.destroy();
          resolve(v);
        });
        s.on("error", () => resolve(null));
      });
    assert.equal(await attempt("TLSv1.2", "TLSv1.2"), "TLSv1.2");
    assert.equal(await attempt("TLSv1", "TLSv1.1"), null);
  });

  for (const [name, opts, final] of [
    ["websocket only", { transports: ["websocket"] }, "websocket"],
    ["polling, then upgrade", {}, "websocket"],
    ["polling only", { transports: ["polling"] }, "polling"],
  ]) {
    test(`chat over wss/https: ${name}`, async () => {
      const topts = { ...opts, rejectUnauthorized: false };
      const a = await login(url, `Ann-${final}-${name.length}`, topts);
      const b = await login(url, `Ben-${final}-${name.length}`, topts);
      try {
        if (final === "websocket" && a.socket.io.engine.transport.name !== "websocket") {
          await new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error("no upgrade")), 8000);
            a.socket.io.engine.once("upgrade", () => {
              clearTimeout(t);
              resolve();
            });
          });
        }
        assert.equal(a.socket.io.engine.transport.name, final);
        // Both ways, then a burst that leaves in batches of several TLS records.
        const atB = next(b.socket, "new message");
        const ack = await request(a.socket, "new message", { room: "general", message: "hello over TLS" });
        assert.equal(ack.ok, true);
        assert.equal((await atB).message, "hello over TLS");
        const burst = Array.from({ length: 20 }, (_, i) => `${i} ${"é".repeat(1900)}`);
        const got = [];
        const all = new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`got ${got.length} of ${burst.length}`)), 8000);
          a.socket.on("new message", (m) => {
            got.push(m.message);
            if (got.length === burst.length) {
              clearTimeout(t);
              resolve();
            }
          });
        });
        const acks = await Promise.all(burst.map((m) => request(b.socket, "new message", { room: "general", message: m })));
        for (const k of acks) assert.equal(k.ok, true, JSON.stringify(k));
        await all;
        assert.deepEqual(got, burst);
      } finally {
        closeAll([a.socket, b.socket]);
      }
    });
  }

  test("plain HTTP and garbage on the TLS port are dropped; TLS goes on", async () => {
    const answer = await plainExchange(
      server.port,
      "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert.ok(!answer.toString("latin1").includes("HTTP/1.1 200"), "no plaintext answer");
    await plainExchange(server.port, Buffer.alloc(70000, 0x16));
    // A client that connects and never sends a ClientHello is not a crash either.
    const idle = net.connect(server.port, "127.0.0.1");
    idle.on("error", () => {});
    const r = await httpsGet(`${url}/socket.io/?EIO=4&transport=polling`, { rejectUnauthorized: false });
    assert.equal(r.status, 200);
    const s = await connect(url, { transports: ["websocket"], rejectUnauthorized: false });
    s.close();
    idle.destroy();
    assert.equal(server.proc.exitCode, null, "the server still runs");
  });

  test("a client that never sends a ClientHello is closed by the first-request deadline", async () => {
    const started = Date.now();
    await new Promise((resolve, reject) => {
      const s = net.connect(server.port, "127.0.0.1");
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error("still open after 15 s"));
      }, 15000);
      s.on("error", () => {});
      s.on("close", () => {
        clearTimeout(t);
        resolve();
      });
    });
    assert.ok(Date.now() - started >= 9000, "not before the deadline");
  });

  test("the admin listener stays plain HTTP", async () => {
    const r = await fetch(`${server.adminUrl}/healthz`);
    assert.equal(r.status, 200);
  });
});

describe("server TLS start-up errors", () => {
  const run = (args) => spawnSync(serverBin, ["--host", "127.0.0.1", "--port", "0", "--admin-port", "0", ...args], {
    encoding: "utf8",
    timeout: 10000,
    env: { ...process.env, AMQP_URL: "" },
  });

  test("a missing key file: non-zero exit naming the file", () => {
    const missing = path.join(dir, "no-such-key.pem");
    const r = run(["--tls-cert", pair.cert, "--tls-key", missing]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(missing.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  });

  test("a key of another certificate: non-zero exit naming the key", () => {
    const r = run(["--tls-cert", pair.cert, "--tls-key", other.key]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /does not match/);
    assert.ok(r.stderr.includes(other.key), r.stderr);
  });

  test("a certificate that is not PEM, and a cert without a key", () => {
    const bad = path.join(dir, "bad.pem");
    fs.writeFileSync(bad, "not a certificate\n");
    const r = run(["--tls-cert", bad, "--tls-key", pair.key]);
    assert.notEqual(r.status, 0);
    assert.ok(r.stderr.includes(bad), r.stderr);
    const r2 = run(["--tls-cert", pair.cert]);
    assert.notEqual(r2.status, 0);
    assert.match(r2.stderr, /--tls-key/);
  });

  test("TLS_CERT / TLS_KEY environment variables", () => {
    const r = spawnSync(serverBin, ["--help"], { encoding: "utf8" });
    assert.match(r.stdout, /--tls-cert/);
    assert.match(r.stdout, /TLS_CERT/);
    assert.match(r.stdout, /TLS_KEY/);
    const bad = spawnSync(serverBin, ["--host", "127.0.0.1", "--port", "0", "--admin-port", "0"], {
      encoding: "utf8",
      timeout: 10000,
      env: { ...process.env, AMQP_URL: "", TLS_CERT: pair.cert, TLS_KEY: path.join(dir, "absent.pem") },
    });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /absent\.pem/);
  });
});
