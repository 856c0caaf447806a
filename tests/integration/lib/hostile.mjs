// Helpers for the hostile-client tests (badinput-hostile-*.test.mjs): start
// the real chat server, read its resident memory from /proc, and keep a
// well-behaved socket.io-client user chatting while an attack runs, timing
// each acknowledged message.
import assert from "node:assert/strict";
import fs from "node:fs";
import { startServer, sleep } from "./server.mjs";
import { login, request, TRANSPORTS } from "../chat-helpers.mjs";

export { sleep };

// The chat server (not the conformance mode), so the bystander can log in
// and chat. Under AddressSanitizer, freed memory waits in a quarantine
// (256 MB by default) before it is reused or returned: keep it small so the
// memory figures show what the server holds, not what ASan delays.
export function startChatServer(args = []) {
  const asan = process.env.ASAN_OPTIONS ? process.env.ASAN_OPTIONS + ":" : "";
  return startServer(["--replica-id", "hostile-1", ...args], {
    env: { ASAN_OPTIONS: asan + "quarantine_size_mb=8:thread_local_quarantine_size_kb=256" },
  });
}

// Resident memory of a process in MiB (VmRSS of /proc/<pid>/status).
export function rssMiB(pid) {
  const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB/m);
  assert.ok(m, "VmRSS missing from /proc/<pid>/status");
  return Number(m[1]) / 1024;
}

// Sample the server's RSS every 50 ms until stop(); peak() is the highest seen.
export function rssSampler(pid) {
  let peak = rssMiB(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssMiB(pid));
    } catch {
      // the process is gone: the test's liveness check reports it
    }
  }, 50);
  timer.unref(); // a failed assertion before stop() must not keep the test alive
  return {
    peak: () => peak,
    stop: () => clearInterval(timer),
  };
}

// A logged-in user that sends a message every `everyMs` and times its ack.
// stop() resolves with { sent, maxMs, medianMs, error }.
export async function chatter(url, name = "bystander", everyMs = 100) {
  const { socket } = await login(url, name, TRANSPORTS.websocket);
  let stopped = false;
  let sent = 0;
  const latencies = [];
  let error = null;
  const loop = (async () => {
    while (!stopped) {
      const t0 = Date.now();
      try {
        const res = await request(socket, "new message", `hello ${sent}`);
        assert.equal(res.ok, true, JSON.stringify(res));
      } catch (e) {
        error = e;
        return;
      }
      latencies.push(Date.now() - t0);
      sent++;
      await sleep(everyMs);
    }
  })();
  return {
    socket,
    async stop() {
      stopped = true;
      await loop;
      const sorted = [...latencies].sort((a, b) => a - b);
      return { sent, maxMs: sorted.at(-1) ?? 0, medianMs: sorted[sorted.length >> 1] ?? 0, error };
    },
    close() {
      socket.close();
    },
  };
}

// Latency a loaded two-core machine (and an ASan build) still calls normal:
// the typical ack, and the worst one (while the attack's bytes are being
// read, a message may wait behind them).
export const NORMAL_MEDIAN_MS = 300;
export const NORMAL_LATENCY_MS = 3000;

// The bystander chatted throughout with normal latency, and a new user can
// still log in and chat after the attack.
export async function assertChatUnaffected(url, stats, minSent = 3) {
  assert.equal(stats.error, null, `bystander failed: ${stats.error?.message}`);
  assert.ok(stats.sent >= minSent, `bystander sent only ${stats.sent} messages`);
  assert.ok(stats.medianMs < NORMAL_MEDIAN_MS, `bystander's median ack took ${stats.medianMs} ms`);
  assert.ok(stats.maxMs < NORMAL_LATENCY_MS, `bystander waited ${stats.maxMs} ms for an ack`);
  const { socket } = await login(url, "after-attack", TRANSPORTS.websocket);
  try {
    const t0 = Date.now();
    const res = await request(socket, "new message", "after the attack");
    assert.equal(res.ok, true, JSON.stringify(res));
    assert.ok(Date.now() - t0 < NORMAL_LATENCY_MS, `ack after the attack took ${Date.now() - t0} ms`);
  } finally {
    socket.close();
  }
}

// Stop the server and require a clean exit (code 0): a crash, or a leak or
// error report from a sanitizer build at shutdown, fails the test.
export async function assertCleanExit(srv) {
  const code = await srv.stop();
  const tail = srv.logs().split("\n").slice(-30).join("\n");
  assert.equal(code, 0, `server exit code ${code} (signal ${srv.proc.signalCode}):\n${tail}`);
}
