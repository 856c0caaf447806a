// The write delay (--write-delay-us): a WebSocket that wrote within the
// window holds its next frames until the window ends, so a burst leaves in
// one write; a connection that has been quiet gets its frame at once. Only
// while the worker sends at least --write-delay-min-rate frames per second:
// on a lightly loaded server a burst is not held.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./lib/server.mjs";
import { TRANSPORTS, request, login, wait, closeAll } from "./chat-helpers.mjs";

// Long enough that the held burst cannot be mistaken for scheduling noise.
const DELAY_MS = 400;

async function until(pred, ms) {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await wait(5);
}

// Ann and Bob over WebSocket, Bob recording what reaches him, after Bob's
// last write (Ann's "user joined") is older than the window.
async function quietPair(server) {
  const a = await login(server.url, "Ann", TRANSPORTS.websocket);
  const b = await login(server.url, "Bob", TRANSPORTS.websocket);
  const got = [];
  b.socket.on("new message", (m) => got.push({ text: m.message, at: Date.now() }));
  await wait(DELAY_MS + 300);
  return { a, b, got };
}

// Five messages from Ann at once, acknowledged, then all six messages at Bob in order.
async function burstAfterFirst(a, got) {
  const burst = [0, 1, 2, 3, 4].map((i) => `burst ${i}`);
  const acks = await Promise.all(burst.map((text) => request(a.socket, "new message", text)));
  for (const ack of acks) assert.equal(ack.ok, true, JSON.stringify(ack));
  await until(() => got.length >= 6, 5000);
  assert.deepEqual(
    got.map((g) => g.text),
    ["first", ...burst],
  );
}

describe("write delay", () => {
  let server;
  before(async () => {
    // Min rate 0: the delay applies whatever the load.
    server = await startServer([
      "--write-delay-us",
      String(DELAY_MS * 1000),
      "--write-delay-min-rate",
      "0",
    ]);
  });
  after(() => server.stop());

  test("a quiet connection writes at once; a burst right after waits for the window and comes in one piece, in order", async () => {
    const { a, b, got } = await quietPair(server);

    const t0 = Date.now();
    await request(a.socket, "new message", "first");
    await until(() => got.length >= 1, 3000);
    assert.equal(got.length, 1, "the first message arrived");
    const first = got[0].at - t0;
    assert.ok(first < DELAY_MS / 2, `a quiet connection got its frame after ${first} ms`);

    await burstAfterFirst(a, got);
    const held = got[1].at - got[0].at;
    const spread = got[5].at - got[1].at;
    assert.ok(held >= DELAY_MS * 0.6, `the burst after a write was held ${held} ms`);
    assert.ok(spread < 100, `the burst came together (${spread} ms apart)`);

    closeAll(a.socket, b.socket);
  });
});

describe("write delay on a lightly loaded server", () => {
  let server;
  before(async () => {
    // The default gate (20,000 frames/s per thread): a few messages are far below it.
    server = await startServer(["--write-delay-us", String(DELAY_MS * 1000)]);
  });
  after(() => server.stop());

  test("a burst right after a write is not held", async () => {
    const { a, b, got } = await quietPair(server);

    await request(a.socket, "new message", "first");
    await until(() => got.length >= 1, 3000);
    await burstAfterFirst(a, got);
    const held = got[5].at - got[0].at;
    assert.ok(held < DELAY_MS / 2, `the burst came ${held} ms after the first message`);

    closeAll(a.socket, b.socket);
  });
});
