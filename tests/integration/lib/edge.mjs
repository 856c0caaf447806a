// Helpers for the edge bound tests (badinput-edge-*): a hostile client on raw
// sockets from a chosen loopback address, the server's memory from /proc, and
// a well-behaved socket.io-client user that logs in and chats.
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import { connect, request } from "../chat-helpers.mjs";

// Resident memory of a process in bytes (VmRSS of /proc/<pid>/status).
export function rssBytes(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB/m);
  assert.ok(m, "VmRSS missing");
  return Number(m[1]) * 1024;
}

// Under a sanitizer build memory figures are several times larger.
export const SANITIZED = /asan|tsan/.test(process.env.CHAT_SERVER_BIN ?? "");
// ASan keeps freed memory in its quarantine (256 MB by default) before reuse:
// growth bounds under it add that much.
export const SANITIZER_SLACK = SANITIZED ? 256 * 2 ** 20 : 0;

// One HTTP/1.1 keep-alive connection from localAddress that sends request
// (a full request text) again as soon as each answer is complete, for ms.
// Resolves with the status counts and the first body seen per status.
// until: a status that ends the loop early (the flood reached what it was for).
export function keepAliveLoop(port, request, { localAddress = "127.0.0.1", ms = 2000, until = 0 } = {}) {
  return new Promise((resolve) => {
    const counts = {};
    const bodies = {};
    const sock = net.connect({ port, host: "127.0.0.1", localAddress });
    let buf = Buffer.alloc(0);
    const end = Date.now() + ms;
    const finish = () => {
      sock.destroy();
      resolve({ counts, bodies });
    };
    sock.on("connect", () => sock.write(request));
    sock.on("error", finish);
    sock.on("close", finish);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const head = buf.indexOf("\r\n\r\n");
        if (head < 0) return;
        const text = buf.subarray(0, head).toString("latin1");
        const len = Number((text.match(/content-length:\s*(\d+)/i) ?? [0, 0])[1]);
        if (buf.length < head + 4 + len) return;
        const status = Number(text.split(" ")[1]);
        counts[status] = (counts[status] ?? 0) + 1;
        bodies[status] ??= buf.subarray(head + 4, head + 4 + len).toString();
        buf = buf.subarray(head + 4 + len);
        if (Date.now() >= end || status === until) return finish();
        sock.write(request);
      }
    });
  });
}

// A polling handshake request text.
export function handshakeRequest(port, headers = {}) {
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  return `GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${extra}\r\n`;
}

// Add up the counts of several loops.
export function sumCounts(results) {
  const out = {};
  for (const r of results) for (const [k, v] of Object.entries(r.counts)) out[k] = (out[k] ?? 0) + v;
  return out;
}

// A chat user that logs in; say() sends a message and resolves once acked.
export async function chatUser(url, name, opts = { transports: ["websocket"] }, extra = {}) {
  const socket = await connect(url, opts, extra);
  const me = await request(socket, "add user", name);
  assert.equal(me.ok, true, `add user ${name}: ${JSON.stringify(me)}`);
  let n = 0;
  return {
    socket,
    me,
    async say(text = `hello ${++n}`) {
      const t0 = Date.now();
      const ack = await request(socket, "new message", text);
      assert.equal(ack.ok, true, `new message: ${JSON.stringify(ack)}`);
      return Date.now() - t0;
    },
    close: () => socket.close(),
  };
}

// A user that logs in and chats once, then leaves: proof that new users get in.
export async function newUserChats(url, name, opts, extra) {
  const u = await chatUser(url, name, opts, extra);
  try {
    await u.say();
  } finally {
    u.close();
  }
}

// Open a WebSocket Engine.IO session from localAddress and connect the "/"
// namespace. Resolves with { ws, status: 101 } or, for a refused upgrade,
// { status, body }.
export async function wsSession(port, { localAddress = "127.0.0.1", connect = true, headers = {} } = {}) {
  const { default: WebSocket } = await import("ws");
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, {
      localAddress,
      headers,
    });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error("WebSocket session: no answer in 5 s"));
    }, 5000);
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, body });
      });
    });
    ws.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    ws.on("message", (data) => {
      const msg = data.toString();
      if (msg === "2") return ws.send("3");
      if (msg.startsWith("0")) {
        if (!connect) {
          clearTimeout(timer);
          return resolve({ ws, status: 101 });
        }
        return ws.send("40");
      }
      if (msg.startsWith("40")) {
        clearTimeout(timer);
        resolve({ ws, status: 101, connectReply: msg });
      } else if (msg.startsWith("44")) {
        clearTimeout(timer);
        resolve({ ws, status: 101, connectReply: msg });
      }
    });
  });
}
