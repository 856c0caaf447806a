// Chat-level limits (docs/protocol.md): per client address and per room, on
// top of the per-user one; unknown events and CONNECTs cost tokens; control
// characters in messages are refused; "list rooms" is capped.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { metric } from "./lib/target.mjs";
import { connect, request } from "./chat-helpers.mjs";
import { rssBytes, SANITIZED, chatUser } from "./lib/edge.mjs";

let srv;
after(() => srv?.stop("SIGKILL"));

// A client at a given address, as told by a trusted proxy (loopback by default).
const from = (addr) => ({ transports: ["websocket"], extraHeaders: { "X-Forwarded-For": addr } });

test("one address: its sessions share a bucket; unknown events and CONNECTs take tokens", async () => {
  srv = await startServer(["--ip-rate", "2", "--ip-burst", "12", "--rate", "1000", "--burst", "1000"]);
  const rss0 = rssBytes(srv.proc.pid);
  const alice = await chatUser(srv.url, "alice", from("203.0.113.1"));
  const before = await metric(srv.adminUrl, "chat_rate_limited_ip_total");
  // Mallory: two sessions from one address (2 CONNECT tokens), then unknown events.
  const m1 = await connect(srv.url, from("198.51.100.66"));
  const m2 = await connect(srv.url, from("198.51.100.66"));
  const codes = [];
  for (let i = 0; i < 12; i++) {
    const r = await request(i % 2 ? m1 : m2, "no such event", i);
    codes.push(r.error.code);
  }
  // 12 tokens: 2 CONNECTs, then 10 unknown events answered, then refusals.
  assert.deepEqual(codes.slice(0, 10), Array(10).fill("UNKNOWN_EVENT"));
  assert.deepEqual(codes.slice(10), ["RATE_LIMITED", "RATE_LIMITED"]);
  const r = await request(m1, "add user", "mallory");
  assert.equal(r.error.code, "RATE_LIMITED");
  assert.equal(r.error.message, "too many requests from your address: slow down");
  // A third session of the same address: CONNECT_ERROR.
  await assert.rejects(connect(srv.url, from("198.51.100.66")), /too many requests from your address/);
  assert.ok((await metric(srv.adminUrl, "chat_rate_limited_ip_total")) - before >= 4);
  // Another address is not affected.
  await alice.say();
  const bob = await chatUser(srv.url, "bob", from("203.0.113.2"));
  await bob.say();
  assert.ok(rssBytes(srv.proc.pid) - rss0 < (SANITIZED ? 100 : 30) * 2 ** 20);
  for (const s of [m1, m2, alice, bob]) s.close();
  await srv.stop();
});

test("one room: its messages are bounded; other rooms go on; control characters and list rooms", async () => {
  srv = await startServer(["--room-rate", "1", "--room-burst", "5", "--max-list-rooms", "3"]);
  const alice = await chatUser(srv.url, "alice", from("203.0.113.1"));
  const bob = await chatUser(srv.url, "bob", from("203.0.113.2"));
  const before = await metric(srv.adminUrl, "chat_rate_limited_room_total");
  const codes = [];
  for (let i = 0; i < 8; i++) {
    const r = await request(bob.socket, "new message", `flood ${i}`);
    codes.push(r.ok ? "ok" : r.error.code);
  }
  assert.deepEqual(codes.slice(0, 5), Array(5).fill("ok"));
  assert.ok(codes.slice(5).every((c) => c === "RATE_LIMITED"), codes.join());
  assert.ok((await metric(srv.adminUrl, "chat_rate_limited_room_total")) - before >= 3);
  // Alice chats in another room.
  assert.equal((await request(alice.socket, "join room", "quiet")).ok, true);
  assert.equal((await request(alice.socket, "new message", { room: "quiet", message: "hi" })).ok, true);

  // Control characters: line feed and tab pass, others are refused.
  const ok = await request(alice.socket, "new message", { room: "quiet", message: "two\nlines\tok" });
  assert.equal(ok.ok, true);
  for (const bad of ["bell\u0007", "esc\u001b[2J", "nel\u0085", "cr\r"]) {
    const r = await request(alice.socket, "new message", { room: "quiet", message: bad });
    assert.equal(r.error?.code, "INVALID_MESSAGE", JSON.stringify(bad));
  }

  // list rooms: at most 3, the largest first, total tells how many there are.
  for (const room of ["r1", "r2", "r3", "r4"]) assert.equal((await request(bob.socket, "join room", room)).ok, true);
  const list = await request(alice.socket, "list rooms");
  assert.equal(list.ok, true);
  assert.equal(list.rooms.length, 3);
  assert.equal(list.total, 6);
  assert.deepEqual(list.rooms[0], { name: "general", members: 2 });
  alice.close();
  bob.close();
  await srv.stop();
});
