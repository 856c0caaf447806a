// Graceful shutdown: on SIGTERM every connected client (WebSocket, polling,
// other namespaces) gets a server disconnect, and the process exits 0 within
// a few seconds. Always starts its own server process.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { connected, once, assertRoundTrip } from "./lib/target.mjs";

test("SIGTERM: clients get 'io server disconnect', the process exits 0", async () => {
  const srv = await startServer(["--conformance"]);
  const clients = [];
  try {
    clients.push(await connected(srv.url, { transports: ["websocket"] }));
    clients.push(await connected(srv.url, { transports: ["polling"] }));
    clients.push(await connected(srv.url, {})); // polling, then upgrade
    clients.push(await connected(srv.url, { transports: ["websocket"], nsp: "/custom" }));
    for (const c of clients.slice(0, 3)) await assertRoundTrip(c, "before shutdown");

    const reasons = clients.map((c) => once(c, "disconnect", 5000, "disconnect").then(([r]) => r));
    const exited = new Promise((resolve) => srv.proc.once("exit", (code, signal) => resolve({ code, signal })));
    const t0 = Date.now();
    srv.proc.kill("SIGTERM");

    assert.deepEqual(await Promise.all(reasons), [
      "io server disconnect",
      "io server disconnect",
      "io server disconnect",
      "io server disconnect",
    ]);
    const timeout = new Promise((resolve) => setTimeout(() => resolve("still running"), 5000).unref());
    const result = await Promise.race([exited, timeout]);
    assert.deepEqual(result, { code: 0, signal: null }, `exit after SIGTERM (${Date.now() - t0} ms)`);
    assert.ok(Date.now() - t0 < 5000);
    // nothing listens any more
    await assert.rejects(fetch(srv.url + "/healthz"));
  } finally {
    for (const c of clients) c.close();
    await srv.stop("SIGKILL");
  }
});
