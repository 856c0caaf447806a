// Bad input at the Engine.IO level (HTTP long-polling and WebSocket): each
// case gets its answer, and afterwards a client connected before it still
// round-trips and a new client can connect.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import {
  startTarget,
  connected,
  eioPath,
  pollingHandshake,
  RawWs,
  assertOthersUnaffected,
  withTimeout,
  sleep,
} from "./lib/target.mjs";

let srv;
let bystander;
before(async () => {
  srv = await startTarget();
  bystander = await connected(srv.url, { transports: ["websocket"] });
});
after(async () => {
  bystander?.close();
  await srv?.stop();
});
afterEach(async () => {
  if (srv.ours) assert.equal(srv.proc.exitCode, null, "server process exited");
  await assertOthersUnaffected(srv.url, bystander);
});

const MAX_PAYLOAD = 1000000;

test("malformed polling packet closes the session", async () => {
  const { sid } = await pollingHandshake(srv.url);
  await fetch(eioPath(srv.url, `sid=${sid}`), { method: "POST", body: "x-not-a-packet" })
    .then((r) => r.text())
    .catch(() => {});
  const res = await fetch(eioPath(srv.url, `sid=${sid}`));
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), { code: 1, message: "Session ID unknown" });
});

test("malformed websocket packet closes the connection", async () => {
  const r = new RawWs(srv.url);
  try {
    await r.opened();
    assert.equal((await r.next())[0], "0");
    r.send("x-not-a-packet");
    await r.waitClosed(3000);
  } finally {
    r.close();
  }
});

test("oversize POST body (> maxPayload) -> 413", async () => {
  const { sid } = await pollingHandshake(srv.url);
  const body = "4" + "a".repeat(MAX_PAYLOAD + 10);
  const res = await fetch(eioPath(srv.url, `sid=${sid}`), { method: "POST", body });
  assert.equal(res.status, 413);
  await res.text().catch(() => {});
});

test("oversize POST body announced by Content-Length is refused (413 or close) without waiting for it", async () => {
  const { sid } = await pollingHandshake(srv.url);
  const u = new URL(eioPath(srv.url, `sid=${sid}`));
  // announce 50 MB, send nothing: the server must answer from the header alone
  const status = await withTimeout(
    new Promise((resolve, reject) => {
      const sock = net.connect(Number(u.port), "127.0.0.1", () => {
        sock.write(
          `POST ${u.pathname}${u.search} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 50000000\r\n\r\n`,
        );
      });
      let buf = "";
      sock.on("data", (d) => {
        buf += d.toString("latin1");
        const m = buf.match(/^HTTP\/1\.1 (\d{3})/);
        if (m) {
          resolve(Number(m[1]));
          sock.destroy();
        }
      });
      sock.on("error", () => {}); // a reset is a close too
      sock.on("close", () => {
        const m = buf.match(/^HTTP\/1\.1 (\d{3})/);
        resolve(m ? Number(m[1]) : "closed without answer");
      });
    }),
    5000,
    "answer to an announced oversize body",
  );
  assert.ok(status === 413 || status === "closed without answer", `got ${status}`);
});

test("oversize websocket message -> the socket closes", async () => {
  const r = new RawWs(srv.url);
  try {
    await r.opened();
    assert.equal((await r.next())[0], "0");
    r.send("4" + "a".repeat(MAX_PAYLOAD + 10));
    await r.waitClosed(5000);
  } finally {
    r.close();
  }
});

test("oversize binary websocket message -> the socket closes", async () => {
  const r = new RawWs(srv.url);
  try {
    await r.opened();
    assert.equal((await r.next())[0], "0");
    r.send(Buffer.alloc(MAX_PAYLOAD + 10, 1));
    await r.waitClosed(5000);
  } finally {
    r.close();
  }
});

test("two concurrent GETs on one session -> 400 for the second, the first gets a close packet", async () => {
  // A long heartbeat, so that no ping can answer the parked GET meanwhile.
  const quiet = await startTarget(["--ping-interval", "20000", "--ping-timeout", "20000"]);
  try {
    await overlappingGets(quiet.url);
  } finally {
    await quiet.stop();
  }
});

async function overlappingGets(base) {
  // The raw Engine.IO endpoint of --conformance: no Socket.IO connect
  // timeout that would close the session (and answer the GET) by itself.
  const url = `${base}/engine.io`;
  const eioPath = (u, q) => `${u}/?EIO=4&transport=polling&${q}`;
  const hs = await fetch(`${url}/?EIO=4&transport=polling`);
  assert.equal(hs.status, 200);
  const { sid } = JSON.parse((await hs.text()).slice(1));
  let firstDone = false;
  const first = fetch(eioPath(url, `sid=${sid}`)).then(async (r) => {
    firstDone = true;
    return { status: r.status, body: await r.text() };
  });
  await sleep(100); // let the first poll reach the server and wait there
  assert.equal(firstDone, false, "the first GET was answered before the second was sent");
  const second = await fetch(eioPath(url, `sid=${sid}`));
  assert.equal(second.status, 400);
  await second.text();
  // The overlap ends the session: the parked GET is answered at once with a
  // close packet (not left to hang until the client gives up), well before
  // the next ping would have answered it.
  const answer = await withTimeout(first, 2000, "answer to the first GET after the overlap");
  assert.deepEqual(answer, { status: 200, body: "1" });
  const after = await fetch(eioPath(url, `sid=${sid}`));
  assert.equal(after.status, 400);
  assert.deepEqual(await after.json(), { code: 1, message: "Session ID unknown" });
}

test("garbage HTTP request line gets 400 or a close, not a hang", async () => {
  const res = await withTimeout(
    new Promise((resolve) => {
      const sock = net.connect(srv.port, "127.0.0.1", () => sock.write("\x00\x01\x02 garbage \xff\r\n\r\n"));
      let buf = "";
      sock.on("data", (d) => (buf += d.toString("latin1")));
      sock.on("error", () => {});
      sock.on("close", () => resolve(buf));
    }),
    5000,
    "server to answer or close a garbage request",
  );
  assert.ok(res === "" || /^HTTP\/1\.[01] 400/.test(res), `got ${JSON.stringify(res.slice(0, 80))}`);
});

test("websocket upgrade request without Sec-WebSocket-Key is refused", async () => {
  const answer = await withTimeout(
    new Promise((resolve) => {
      const sock = net.connect(srv.port, "127.0.0.1", () =>
        sock.write(
          "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ),
      );
      let buf = "";
      sock.on("data", (d) => {
        buf += d.toString("latin1");
        if (buf.includes("\r\n\r\n")) sock.destroy();
      });
      sock.on("error", () => {});
      sock.on("close", () => resolve(buf));
    }),
    5000,
    "answer to a broken upgrade",
  );
  assert.ok(!/^HTTP\/1\.1 101/.test(answer), `must not switch protocols: ${answer.slice(0, 40)}`);
});
