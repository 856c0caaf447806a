// Graceful shutdown: on SIGTERM every connected client (WebSocket, polling,
// upgraded, other namespaces) sees its transport close, not a Socket.IO server
// disconnect, so the official client reconnects by itself; the process exits
// 0 within a few seconds. Always starts its own server processes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { connected, once, assertRoundTrip } from "./lib/target.mjs";

test("SIGTERM: transports close, official clients come back by themselves, exit 0", async () => {
  const srv = await startServer(["--conformance", "--drain-jitter", "800"]);
  const port = new URL(srv.url).port;
  const clients = [];
  let next;
  try {
    const again = { reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 400 };
    clients.push(await connected(srv.url, { ...again, transports: ["websocket"] }));
    clients.push(await connected(srv.url, { ...again, transports: ["polling"] }));
    clients.push(await connected(srv.url, { ...again })); // polling, then upgrade
    clients.push(await connected(srv.url, { ...again, transports: ["websocket"], nsp: "/custom" }));
    for (const c of clients.slice(0, 3)) await assertRoundTrip(c, "before shutdown");

    const seen = clients.map((c) =>
      once(c, "disconnect", 5000, "disconnect").then(([r]) => ({ r, at: Date.now(), active: c.active })),
    );
    const exited = new Promise((resolve) => srv.proc.once("exit", (code, signal) => resolve({ code, signal })));
    const t0 = Date.now();
    srv.proc.kill("SIGTERM");

    const got = await Promise.all(seen);
    // WebSockets see the close frame. A polling client sees the "1" packet, or,
    // when its pong POST races the close, the 400 for the gone session: both
    // are transport reasons after which the client retries by itself (unlike
    // "io server disconnect", after which it never does).
    const reasons = got.map((g) => g.r);
    assert.equal(reasons[0], "transport close");
    assert.match(reasons[1], /^transport (close|error)$/);
    assert.match(reasons[2], /^transport (close|error)$/);
    assert.equal(reasons[3], "transport close");
    // Still active: the client's own reconnection is running.
    assert.deepEqual(got.map((g) => g.active), [true, true, true, true]);
    const timeout = new Promise((resolve) => setTimeout(() => resolve("still running"), 5000).unref());
    const result = await Promise.race([exited, timeout]);
    assert.deepEqual(result, { code: 0, signal: null }, `exit after SIGTERM (${Date.now() - t0} ms)`);
    await assert.rejects(fetch(srv.url + "/healthz"));

    // A new server on the same port (as another replica behind the balancer
    // would be): every client is back without any application code.
    const back = clients.map((c, i) => once(c, "connect", 15000, `reconnect of client ${i}`));
    next = await startServer(["--conformance", "--port", port]);
    await Promise.all(back);
    for (const c of clients.slice(0, 3)) await assertRoundTrip(c, "after reconnect");
  } finally {
    for (const c of clients) c.close();
    await srv.stop("SIGKILL");
    if (next) await next.stop("SIGKILL");
  }
});

test("SIGTERM spreads the closes over --drain-jitter", async () => {
  const srv = await startServer(["--conformance", "--drain-jitter", "1500"]);
  const clients = [];
  try {
    for (let i = 0; i < 12; i++) clients.push(await connected(srv.url, { transports: ["websocket"], reconnection: false }));
    const at = clients.map((c) => once(c, "disconnect", 6000, "disconnect").then(() => Date.now()));
    srv.proc.kill("SIGTERM");
    const times = await Promise.all(at);
    const spread = Math.max(...times) - Math.min(...times);
    // 12 closes uniform over 1.5 s: all within 50 ms has odds below 1e-12.
    assert.ok(spread > 200, `closes spread over ${spread} ms`);
    assert.ok(spread < 3000, `closes spread over ${spread} ms`);
  } finally {
    for (const c of clients) c.close();
    await srv.stop("SIGKILL");
  }
});
