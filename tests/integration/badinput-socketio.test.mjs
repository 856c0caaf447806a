// Invalid Socket.IO packets over raw WebSocket and long-polling sessions: the
// server closes that connection only. A client connected before keeps
// working and new clients can connect.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  startTarget,
  connected,
  eioPath,
  pollingHandshake,
  RawWs,
  rawSocketIo,
  assertOthersUnaffected,
  deadline,
} from "./lib/target.mjs";

let srv;
let bystander;
before(async () => {
  srv = await startTarget();
  bystander = await connected(srv.url, { transports: ["polling"] });
});
after(async () => {
  bystander?.close();
  await srv?.stop();
});
afterEach(async () => {
  if (srv.ours) assert.equal(srv.proc.exitCode, null, "server process exited");
  await assertOthersUnaffected(srv.url, bystander);
});

test("first packet is not CONNECT -> connection closed", async () => {
  const r = new RawWs(srv.url);
  try {
    await r.opened();
    assert.equal((await r.next())[0], "0");
    r.send('42["message","before connect"]');
    await r.waitClosed(3000);
  } finally {
    r.close();
  }
});

// Sent after a valid CONNECT on "/"; each must close the connection.
const INVALID_AFTER_CONNECT = [
  { name: "EVENT with an object payload (42{})", frames: ["42{}"] },
  { name: "EVENT with a string payload", frames: ['42"message"'] },
  { name: "EVENT with an empty array", frames: ["42[]"] },
  { name: "EVENT with a non-string event name", frames: ["42[{}]"] },
  { name: "EVENT with invalid JSON", frames: ['42["message",'] },
  { name: "EVENT named like a reserved event", frames: ['42["disconnect"]'] },
  { name: "ACK with a non-numeric id", frames: ["43abc[]"] },
  { name: "ACK with a non-array payload", frames: ['431{"a":1}'] },
  { name: "unknown packet type 9", frames: ['49["message"]'] },
  { name: "unknown packet type 7", frames: ["47"] },
  { name: "CONNECT with a non-object payload", frames: ['40"auth"'] },
  {
    name: "too many binary attachments (11 > 10)",
    frames: ['4511-["message",{"_placeholder":true,"num":0}]'],
  },
  { name: "binary attachment count 0", frames: ['450-["message"]'] },
  { name: "binary attachment count not a number", frames: ['45x-["message"]'] },
  {
    name: "placeholder index out of range",
    frames: ['451-["message",{"_placeholder":true,"num":5}]', Buffer.from([1])],
  },
  { name: "binary frame with no BINARY_EVENT before it", frames: [Buffer.from([1, 2, 3])] },
];

for (const c of INVALID_AFTER_CONNECT) {
  test(`${c.name} -> that connection is closed`, async () => {
    const r = await rawSocketIo(srv.url);
    try {
      for (const f of c.frames) r.send(f);
      await r.waitClosed(3000);
    } finally {
      r.close();
    }
  });
}

test("invalid packet on one namespace closes the whole connection, not others", async () => {
  const r = await rawSocketIo(srv.url);
  const other = await rawSocketIo(srv.url);
  try {
    r.send("40/custom,");
    assert.match(await r.next(), /^40\/custom,\{"sid":"[^"]+"\}$/);
    assert.equal(await r.next(), '42/custom,["auth",{}]');
    r.send("42/custom,{}");
    await r.waitClosed(3000);
    other.send('42["message","still here"]');
    assert.equal(await other.next(), '42["message-back","still here"]');
  } finally {
    r.close();
    other.close();
  }
});

test("invalid Socket.IO packet over long-polling closes that session", async () => {
  const { sid } = await pollingHandshake(srv.url);
  const p1 = await fetch(eioPath(srv.url, `sid=${sid}`), { method: "POST", body: "40" });
  assert.equal(p1.status, 200);
  await p1.text();
  let got = "";
  const d = deadline(5000, "CONNECT reply and auth event");
  while (!got.includes('42["auth",{}]')) {
    d();
    got += (await (await fetch(eioPath(srv.url, `sid=${sid}`))).text()) + "\x1e";
  }
  await fetch(eioPath(srv.url, `sid=${sid}`), { method: "POST", body: "42{}" })
    .then((r) => r.text())
    .catch(() => {});
  // the session is gone: the next poll is refused (or ends with a CLOSE packet first)
  let res = await fetch(eioPath(srv.url, `sid=${sid}`));
  if (res.status === 200) {
    const body = await res.text();
    assert.ok(body.split("\x1e").includes("1"), `expected a CLOSE packet, got ${JSON.stringify(body)}`);
    res = await fetch(eioPath(srv.url, `sid=${sid}`));
  }
  assert.equal(res.status, 400);
  await res.text();
});

test("EVENT for a namespace the client did not join -> connection closed", async () => {
  const r = await rawSocketIo(srv.url);
  try {
    r.send('42/custom,["message","not joined"]');
    await r.waitClosed(3000);
  } finally {
    r.close();
  }
});
