// Raw Engine.IO v4 over HTTP long-polling (fetch) and WebSocket (ws): the
// handshake, packet framing, ping/pong, upgrade, error answers and CORS,
// checked byte for byte without the official client in between.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import {
  startTarget,
  eioPath,
  pollingHandshake,
  RawWs,
  rawSocketIo,
  withTimeout,
  deadline,
  sleep,
} from "./lib/target.mjs";

let srv;
before(async () => {
  srv = await startTarget();
});
after(async () => {
  await srv?.stop();
});

const SEP = "\x1e"; // Engine.IO v4 polling payload separator

async function post(url, sid, body) {
  const res = await fetch(eioPath(url, `sid=${sid}`), { method: "POST", body, signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}
async function get(url, sid, signal) {
  const res = await fetch(eioPath(url, `sid=${sid}`), { signal: signal ?? AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text(), type: res.headers.get("content-type") };
}

test("polling handshake: OPEN packet with exactly the expected keys and values", async () => {
  const res = await fetch(eioPath(srv.url));
  assert.equal(res.status, 200);
  const body = await res.text();
  assert.equal(body[0], "0");
  const open = JSON.parse(body.slice(1));
  assert.deepEqual(Object.keys(open).sort(), ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"]);
  assert.equal(typeof open.sid, "string");
  assert.ok(open.sid.length >= 10, `sid too short: ${open.sid}`);
  assert.deepEqual(open.upgrades, ["websocket"]);
  assert.equal(open.pingInterval, 300);
  assert.equal(open.pingTimeout, 200);
  assert.equal(open.maxPayload, 1000000);
  const other = await pollingHandshake(srv.url);
  assert.notEqual(other.sid, open.sid, "every session gets its own sid");
});

test("websocket handshake: OPEN packet with no upgrades", async () => {
  const r = new RawWs(srv.url);
  try {
    await r.opened();
    const msg = await r.next();
    assert.equal(msg[0], "0");
    const open = JSON.parse(msg.slice(1));
    assert.deepEqual(Object.keys(open).sort(), ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"]);
    assert.deepEqual(open.upgrades, []);
    assert.equal(open.pingInterval, 300);
    assert.equal(open.pingTimeout, 200);
  } finally {
    r.close();
  }
});

test("polling session: CONNECT, event, echo, batched payloads", async () => {
  const { sid } = await pollingHandshake(srv.url);
  assert.deepEqual(await post(srv.url, sid, "40"), { status: 200, body: "ok" });
  let got = "";
  // CONNECT reply and the auth event may come in one or two polls
  const d1 = deadline(5000, "CONNECT reply and auth event");
  while (!got.includes('42["auth",{}]')) {
    d1();
    const r = await get(srv.url, sid);
    assert.equal(r.status, 200);
    got += (got ? SEP : "") + r.body;
  }
  const packets = got.split(SEP);
  assert.match(packets[0], /^40\{"sid":"[^"]+"\}$/);
  assert.equal(packets[1], '42["auth",{}]');
  // two packets in one POST body, both answered
  const r1 = await post(srv.url, sid, `42["message","a",1]${SEP}42["message",{"b":[2]}]`);
  assert.equal(r1.status, 200);
  let echoed = [];
  const d2 = deadline(5000, "two message-back packets");
  while (echoed.length < 2) {
    d2();
    const r = await get(srv.url, sid);
    assert.equal(r.status, 200);
    echoed = echoed.concat(r.body.split(SEP).filter((p) => p !== "2"));
  }
  assert.deepEqual(echoed, ['42["message-back","a",1]', '42["message-back",{"b":[2]}]']);
  // binary attachment over polling: base64 "b" packet
  const r2 = await post(
    srv.url,
    sid,
    `451-["message",{"_placeholder":true,"num":0}]${SEP}b${Buffer.from([1, 2, 3]).toString("base64")}`,
  );
  assert.equal(r2.status, 200);
  let bin = [];
  const d3 = deadline(5000, "binary message-back");
  while (bin.length < 2) {
    d3();
    const r = await get(srv.url, sid);
    bin = bin.concat(r.body.split(SEP).filter((p) => p !== "2"));
  }
  assert.deepEqual(bin, ['451-["message-back",{"_placeholder":true,"num":0}]', "bAQID"]);
  await post(srv.url, sid, "1");
});

test("websocket session: event echo, binary frames, ack", async () => {
  const r = await rawSocketIo(srv.url);
  try {
    r.send('42["message","héllo ✓",{"n":[1,2,3]}]');
    assert.equal(await r.next(), '42["message-back","héllo ✓",{"n":[1,2,3]}]');
    r.send('4217["message-with-ack",1,"x"]');
    assert.equal(await r.next(), '4317[1,"x"]');
    r.send('452-["message",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]');
    r.send(Buffer.from([10, 11]));
    r.send(Buffer.from([12]));
    assert.equal(await r.next(), '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
    assert.deepEqual(Buffer.from(await r.next()), Buffer.from([12]));
    assert.deepEqual(Buffer.from(await r.next()), Buffer.from([10, 11]));
  } finally {
    r.close();
  }
});

test("server pings on the interval; a client that never pongs is closed", async () => {
  const silent = new RawWs(srv.url, { autoPong: false });
  try {
    await silent.opened();
    assert.equal((await silent.next())[0], "0");
    const t0 = Date.now();
    assert.equal(await silent.next(2000), "2");
    const firstPing = Date.now() - t0;
    assert.ok(firstPing < 1000, `first ping after ${firstPing} ms (interval 300)`);
    // pingInterval 300 + pingTimeout 200: closed well within 3 s
    await silent.waitClosed(3000);
  } finally {
    silent.close();
  }
});

test("polling to websocket upgrade with probe", async () => {
  const { sid } = await pollingHandshake(srv.url);
  assert.equal((await post(srv.url, sid, "40")).status, 200);
  let first = "";
  const d = deadline(5000, "CONNECT reply and auth event");
  while (!first.includes('42["auth",{}]')) {
    d();
    first += SEP + (await get(srv.url, sid)).body;
  }
  assert.match(first, /40\{"sid":"[^"]+"\}/);
  const ws = new WebSocket(srv.url.replace(/^http/, "ws") + `/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
  const msgs = [];
  const waiters = [];
  ws.on("message", (d, isBin) => {
    const m = isBin ? d : d.toString();
    const w = waiters.shift();
    if (w) w(m);
    else msgs.push(m);
  });
  const nextMsg = (ms = 3000) =>
    msgs.length ? Promise.resolve(msgs.shift()) : withTimeout(new Promise((r) => waiters.push(r)), ms, "ws message");
  try {
    await withTimeout(new Promise((res, rej) => ws.once("open", res).once("error", rej)), 3000, "ws open");
    // a poll is pending while the probe runs; the server ends it with a noop
    const polling = get(srv.url, sid);
    await sleep(50);
    ws.send("2probe");
    assert.equal(await nextMsg(), "3probe");
    const p = await withTimeout(polling, 3000, "pending poll to end");
    assert.equal(p.status, 200);
    // ended by a noop (or by a ping that happened to be due)
    assert.ok(
      p.body.split(SEP).every((x) => x === "6" || x === "2"),
      `pending poll should end with a noop, got ${JSON.stringify(p.body)}`,
    );
    ws.send("5");
    await sleep(50);
    ws.send('42["message","upgraded"]');
    let back = await nextMsg();
    const d4 = deadline(5000, "message-back after upgrade");
    while (back === "2" || back === '42["auth",{}]') {
      d4();
      if (back === "2") ws.send("3");
      back = await nextMsg();
    }
    assert.equal(back, '42["message-back","upgraded"]');
    // the polling transport is gone for this sid
    const after = await get(srv.url, sid);
    assert.equal(after.status, 400);
  } finally {
    ws.terminate();
  }
});

const ERRORS = [
  { name: "EIO=3", query: "EIO=3&transport=polling", code: 5, message: "Unsupported protocol version" },
  { name: "no EIO", query: "transport=polling", code: 5, message: "Unsupported protocol version" },
  { name: "EIO=5", query: "EIO=5&transport=polling", code: 5, message: "Unsupported protocol version" },
  { name: "unknown transport", query: "EIO=4&transport=carrier-pigeon", code: 0, message: "Transport unknown" },
  { name: "no transport", query: "EIO=4", code: 0, message: "Transport unknown" },
  { name: "unknown sid", query: "EIO=4&transport=polling&sid=does-not-exist", code: 1, message: "Session ID unknown" },
];
for (const e of ERRORS) {
  test(`bad request (${e.name}) -> 400 {"code":${e.code},"message":"${e.message}"}`, async () => {
    const res = await fetch(`${srv.url}/socket.io/?${e.query}`);
    assert.equal(res.status, 400);
    assert.match(res.headers.get("content-type") || "", /^application\/json/);
    assert.deepEqual(await res.json(), { code: e.code, message: e.message });
  });
}

test("unknown sid on POST -> 400 Session ID unknown", async () => {
  const res = await fetch(eioPath(srv.url, "sid=nope"), { method: "POST", body: "40" });
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), { code: 1, message: "Session ID unknown" });
});

test("websocket with an unknown sid is refused", async () => {
  const ws = new WebSocket(srv.url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket&sid=nope");
  const status = await withTimeout(
    new Promise((resolve) => {
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode));
      ws.on("open", () => resolve("open"));
      ws.on("error", () => resolve("error"));
    }),
    3000,
    "refusal",
  );
  ws.terminate();
  assert.equal(status, 400);
});

test("CORS: the Origin is echoed with credentials on Engine.IO requests", async () => {
  const origin = "http://client.example:8080";
  const res = await fetch(eioPath(srv.url), { headers: { Origin: origin } });
  assert.equal(res.status, 200);
  await res.text();
  assert.equal(res.headers.get("access-control-allow-origin"), origin);
  assert.equal(res.headers.get("access-control-allow-credentials"), "true");
  // error answers carry the CORS headers too, so a browser can read them
  const bad = await fetch(`${srv.url}/socket.io/?EIO=3&transport=polling`, { headers: { Origin: origin } });
  assert.equal(bad.status, 400);
  assert.equal(bad.headers.get("access-control-allow-origin"), origin);
});

test("CORS: OPTIONS preflight is answered", async () => {
  const origin = "http://client.example:8080";
  const res = await fetch(eioPath(srv.url), {
    method: "OPTIONS",
    headers: {
      Origin: origin,
      "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "content-type",
    },
  });
  assert.ok([200, 204].includes(res.status), `preflight status ${res.status}`);
  assert.equal(res.headers.get("access-control-allow-origin"), origin);
  assert.equal(res.headers.get("access-control-allow-credentials"), "true");
  const methods = (res.headers.get("access-control-allow-methods") || "").toUpperCase();
  assert.ok(methods.includes("POST") && methods.includes("GET"), `allow-methods: ${methods}`);
  const allowHeaders = (res.headers.get("access-control-allow-headers") || "").toLowerCase();
  assert.ok(allowHeaders.includes("content-type"), `allow-headers: ${allowHeaders}`);
});
