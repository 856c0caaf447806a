// /metrics and the detailed /readyz are served on the operations listener
// (loopback by default), not on the public port; the public port keeps a
// minimal /healthz and /readyz for health checks.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { metric } from "./lib/target.mjs";
import { chatUser } from "./lib/edge.mjs";

let srv;
after(() => srv?.stop("SIGKILL"));

test("public port: no /metrics, /readyz says only ready; operations port: the details", async () => {
  srv = await startServer(["--threads", "2"], { env: { AMQP_URL: "" } });
  assert.match(srv.adminUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  const alice = await chatUser(srv.url, "alice");
  await alice.say();

  const m = await fetch(srv.url + "/metrics");
  assert.equal(m.status, 404);
  await m.text();
  const r = await fetch(srv.url + "/readyz");
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { ready: true });
  assert.equal((await fetch(srv.url + "/healthz")).status, 200);

  const before = await metric(srv.adminUrl, "chat_messages_in_total");
  await alice.say();
  assert.equal((await metric(srv.adminUrl, "chat_messages_in_total")) - before, 1);
  const detail = await (await fetch(srv.adminUrl + "/readyz")).json();
  assert.equal(detail.ready, true);
  // The in-process bus (startServer leaves AMQP_URL out unless asked).
  assert.equal(detail.bus.kind, "inprocess", JSON.stringify(detail));
  assert.equal(detail.bus.ready, true);
  assert.equal((await fetch(srv.adminUrl + "/healthz")).status, 200);
  // No Engine.IO on the operations port.
  const eio = await fetch(srv.adminUrl + "/socket.io/?EIO=4&transport=polling");
  assert.equal(eio.status, 404);
  alice.close();
  await srv.stop();
});
