// Origin is checked on WebSocket upgrades and polling alike: the server's own
// origin and --cors-origin are allowed, any origin only with --cors-any.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { metric } from "./lib/target.mjs";
import { chatUser, wsSession } from "./lib/edge.mjs";

let srv;
after(() => srv?.stop("SIGKILL"));

const EVIL = "http://evil.example";
const poll = (srv, headers) => fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`, { headers });

test("default: a foreign Origin is refused (WebSocket 403, polling 403), the server's own is allowed", async () => {
  srv = await startServer(["--threads", "2"]);
  const alice = await chatUser(srv.url, "alice");
  const before = await metric(srv.adminUrl, "chat_transport_origin_refused_total");

  const ws = await wsSession(srv.port, { headers: { Origin: EVIL } });
  assert.equal(ws.status, 403);
  assert.deepEqual(JSON.parse(ws.body), { code: 4, message: "Origin not allowed" });
  const p = await poll(srv, { Origin: EVIL });
  assert.equal(p.status, 403);
  assert.equal(p.headers.get("access-control-allow-origin"), null);
  await p.text();
  assert.equal((await metric(srv.adminUrl, "chat_transport_origin_refused_total")) - before, 2);

  const own = `http://127.0.0.1:${srv.port}`;
  const okWs = await wsSession(srv.port, { headers: { Origin: own } });
  assert.equal(okWs.status, 101);
  okWs.ws.terminate();
  const okPoll = await poll(srv, { Origin: own });
  assert.equal(okPoll.status, 200);
  assert.equal(okPoll.headers.get("access-control-allow-origin"), own);
  await okPoll.text();
  // A trusted proxy (loopback by default) may say the page was https on another host name.
  const proxied = await wsSession(srv.port, {
    headers: { Origin: "https://chat.example.com", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "chat.example.com" },
  });
  assert.equal(proxied.status, 101);
  proxied.ws.terminate();
  await alice.say();
  alice.close();
  await srv.stop();
});

test("X-Forwarded-Host from an untrusted peer is ignored", async () => {
  srv = await startServer(["--threads", "2", "--trusted-proxies", "none"]);
  const ws = await wsSession(srv.port, {
    headers: { Origin: "https://chat.example.com", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "chat.example.com" },
  });
  assert.equal(ws.status, 403);
  await srv.stop();
});

test("--cors-origin widens the default; --cors-any allows every origin", async () => {
  srv = await startServer(["--threads", "2", "--cors-origin", "https://app.example.com"]);
  const app = await wsSession(srv.port, { headers: { Origin: "https://app.example.com" } });
  assert.equal(app.status, 101);
  app.ws.terminate();
  assert.equal((await wsSession(srv.port, { headers: { Origin: EVIL } })).status, 403);
  await srv.stop();

  srv = await startServer(["--threads", "2", "--cors-any"]);
  const any = await wsSession(srv.port, { headers: { Origin: EVIL } });
  assert.equal(any.status, 101);
  any.ws.terminate();
  const p = await poll(srv, { Origin: EVIL });
  assert.equal(p.status, 200);
  assert.equal(p.headers.get("access-control-allow-origin"), EVIL);
  await p.text();
  await srv.stop();
});
