// X-Forwarded-For is believed only from --trusted-proxies; the per-address
// bounds use the address it resolves to.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { metric } from "./lib/target.mjs";
import { keepAliveLoop, handshakeRequest, chatUser, newUserChats } from "./lib/edge.mjs";

let srv;
after(() => srv?.stop("SIGKILL"));

const handshake = async (port, xff) =>
  (await keepAliveLoop(port, handshakeRequest(port, xff ? { "X-Forwarded-For": xff } : {}), { localAddress: "127.0.0.2", ms: 0 }))
    .counts;

test("from an untrusted peer X-Forwarded-For changes nothing: a fresh fake address per handshake still hits the cap", async () => {
  srv = await startServer(["--trusted-proxies", "none", "--max-pending-per-ip", "3", "--threads", "2"]);
  const alice = await chatUser(srv.url, "alice");
  const before = await metric(srv.adminUrl, "chat_transport_sessions_refused_pending_total");
  const got = [];
  for (let i = 0; i < 6; i++) got.push(await handshake(srv.port, `198.51.100.${i + 1}`));
  assert.deepEqual(got.map((c) => Object.keys(c)[0]), ["200", "200", "200", "503", "503", "503"]);
  assert.equal((await metric(srv.adminUrl, "chat_transport_sessions_refused_pending_total")) - before, 3);
  await alice.say();
  await newUserChats(srv.url, "bob");
  alice.close();
  await srv.stop();
});

test("from a trusted proxy the forwarded client address is bounded, not the proxy's", async () => {
  srv = await startServer(["--trusted-proxies", "127.0.0.0/8", "--max-pending-per-ip", "3", "--threads", "2"]);
  const alice = await chatUser(srv.url, "alice");
  // Six clients behind the proxy: all get in.
  for (let i = 0; i < 6; i++) assert.equal((await handshake(srv.port, `198.51.100.${i + 1}`))[200], 1);
  // One client: its fourth session is refused, whatever it wrote on the left.
  const before = await metric(srv.adminUrl, "chat_transport_sessions_refused_pending_total");
  const got = [];
  for (let i = 0; i < 4; i++) got.push(await handshake(srv.port, `6.6.6.${i}, 203.0.113.7`));
  assert.deepEqual(got.map((c) => Object.keys(c)[0]), ["200", "200", "200", "503"]);
  assert.equal((await metric(srv.adminUrl, "chat_transport_sessions_refused_pending_total")) - before, 1);
  await alice.say();
  await newUserChats(srv.url, "bob");
  alice.close();
  await srv.stop();
});
