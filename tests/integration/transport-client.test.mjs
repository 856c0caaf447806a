// The official socket.io-client against the server in conformance mode:
// every transport mode, events, acks, binary attachments, namespaces, auth,
// many clients at once and heartbeats.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Manager } from "socket.io-client";
import {
  startTarget,
  client,
  connected,
  messageBack,
  withAck,
  once,
  toBuffer,
  assertRoundTrip,
  sleep,
} from "./lib/target.mjs";

let srv;
before(async () => {
  srv = await startTarget();
});
after(async () => {
  await srv?.stop();
});

const MODES = [
  { name: "websocket only", opts: { transports: ["websocket"] }, final: "websocket" },
  { name: "polling only", opts: { transports: ["polling"] }, final: "polling" },
  { name: "default (polling, then upgrade)", opts: {}, final: "websocket" },
];

const TEXT_ARGS = [
  "plain",
  "",
  0,
  -17,
  3.25,
  1e21,
  true,
  false,
  null,
  [1, [2, [3, []]]],
  { deep: { er: { est: ["a", { b: "c" }] } }, empty: {}, n: -0.5 },
  "unicode: héllo wörld ✓ 中文 😀 \u0000\u001f \" \\ / \n\t",
  "x".repeat(10000),
];

for (const mode of MODES) {
  describe(`socket.io-client, ${mode.name}`, () => {
    let s;
    before(async () => {
      s = client(srv.url, mode.opts);
      await once(s, "connect", 8000);
      if (mode.final === "websocket" && s.io.engine.transport.name !== "websocket") {
        await once(s.io.engine, "upgrade", 8000, "upgrade to websocket");
      }
    });
    after(() => s?.close());

    test("ends on the expected transport", async () => {
      // give a default client time to (wrongly) change transport again
      await sleep(100);
      assert.equal(s.io.engine.transport.name, mode.final);
      assert.equal(s.connected, true);
      assert.match(s.id, /^\S+$/);
    });

    test("message -> message-back with identical args", async () => {
      const got = await messageBack(s, TEXT_ARGS);
      assert.deepEqual(got, TEXT_ARGS);
    });

    test("each arg type alone round trips", async () => {
      for (const a of TEXT_ARGS) {
        const got = await messageBack(s, [a]);
        assert.deepEqual(got, [a]);
      }
      assert.deepEqual(await messageBack(s, []), []);
    });

    test("message-with-ack -> ack with the same args", async () => {
      const args = ["ack me", 7, { k: ["v", 1.5] }, "ünï ✓"];
      assert.deepEqual(await withAck(s, args), args);
      // several outstanding acks are matched to the right callbacks
      const many = await Promise.all(Array.from({ length: 20 }, (_, i) => withAck(s, [i, `n${i}`])));
      many.forEach((res, i) => assert.deepEqual(res, [i, `n${i}`]));
    });

    test("binary attachments round trip (several, nested)", async () => {
      const a = Buffer.from([0, 1, 2, 253, 254, 255]);
      const b = new Uint8Array([9, 8, 7]);
      const c = Buffer.alloc(100000, 0xab);
      const d = Buffer.alloc(0);
      const got = await messageBack(s, [a, "between", { inner: b, list: [c, 5] }, d]);
      assert.equal(got.length, 4);
      assert.deepEqual(toBuffer(got[0]), a);
      assert.equal(got[1], "between");
      assert.deepEqual(toBuffer(got[2].inner), Buffer.from(b));
      assert.deepEqual(toBuffer(got[2].list[0]), c);
      assert.equal(got[2].list[1], 5);
      assert.deepEqual(toBuffer(got[3]), d);
    });

    test("binary in an ack", async () => {
      const bin = Buffer.from("binary ✓ ack", "utf8");
      const res = await withAck(s, ["t", bin, { b: Buffer.from([1, 2]) }]);
      assert.equal(res[0], "t");
      assert.deepEqual(toBuffer(res[1]), bin);
      assert.deepEqual(toBuffer(res[2].b), Buffer.from([1, 2]));
    });

    test("namespace /custom connects and echoes auth", async () => {
      const c = client(srv.url, { ...mode.opts, nsp: "/custom", auth: { token: "t-123", n: 5 } });
      try {
        const [auth] = await once(c, "auth", 8000);
        assert.deepEqual(auth, { token: "t-123", n: 5 });
        assert.equal(c.connected, true);
      } finally {
        c.close();
      }
    });
  });
}

test("auth payload is echoed by the auth event on /", async () => {
  const auth = { user: "ann", list: [1, 2], nested: { ok: true }, text: "ü ✓" };
  const c = client(srv.url, { transports: ["websocket"], auth });
  try {
    const [got] = await once(c, "auth", 8000);
    assert.deepEqual(got, auth);
  } finally {
    c.close();
  }
});

for (const transports of [["websocket"], ["polling"]]) {
  test(`unknown namespace -> connect_error "Invalid namespace" (${transports[0]}); the connection and other namespaces are unaffected`, async () => {
    const m = new Manager(srv.url, { forceNew: true, reconnection: false, transports });
    const main = m.socket("/");
    const bad = m.socket("/nope");
    let custom = null;
    try {
      const [err] = await once(bad, "connect_error", 8000);
      assert.equal(err.message, "Invalid namespace");
      assert.equal(bad.connected, false);
      if (!main.connected) await once(main, "connect", 8000);
      await assertRoundTrip(main, "after invalid namespace");
      // the same Engine.IO connection still accepts a valid namespace
      custom = m.socket("/custom");
      await once(custom, "connect", 8000);
      assert.equal(custom.connected, true);
      assert.equal(main.connected, true);
      await assertRoundTrip(main, "after /custom");
    } finally {
      custom?.close();
      main.close();
      bad.close();
    }
  });
}

test("300 concurrent clients each round-trip", async () => {
  const N = 300;
  const sockets = [];
  try {
    const results = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const s = await connected(srv.url, { transports: ["websocket"] });
        sockets.push(s);
        const [back] = await messageBack(s, [{ i, who: `client-${i}` }], 15000);
        return back;
      }),
    );
    results.forEach((r, i) => assert.deepEqual(r, { i, who: `client-${i}` }));
    assert.equal(new Set(sockets.map((s) => s.id)).size, N, "socket ids are unique");
  } finally {
    for (const s of sockets) s.close();
  }
});

test("heartbeat keeps an idle client connected for many ping intervals", async () => {
  const s = await connected(srv.url, { transports: ["websocket"] });
  let pings = 0;
  let disconnectReason = null;
  s.io.on("ping", () => pings++);
  s.on("disconnect", (r) => (disconnectReason = r));
  try {
    await sleep(2500); // pingInterval is 300 ms: about 8 intervals
    assert.equal(disconnectReason, null);
    assert.equal(s.connected, true);
    assert.ok(pings >= 5, `expected >= 5 pings in 2.5 s, got ${pings}`);
    await assertRoundTrip(s, "after idle");
  } finally {
    s.close();
  }
});

test("polling client idle across several ping intervals stays connected", async () => {
  const s = await connected(srv.url, { transports: ["polling"] });
  let disconnectReason = null;
  s.on("disconnect", (r) => (disconnectReason = r));
  try {
    await sleep(1500);
    assert.equal(disconnectReason, null);
    assert.equal(s.connected, true);
    await assertRoundTrip(s, "after idle polling");
  } finally {
    s.close();
  }
});
