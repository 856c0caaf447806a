// File-descriptor exhaustion: under a 256 open-files limit, 400 held TCP
// connections make accept() fail with EMFILE. The server must stay up, must
// not spin on the failing accept, must count the failures, and must serve
// normally once the flood is gone. Always starts its own server process.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { connected, assertRoundTrip, metric, sleep } from "./lib/target.mjs";
import { startLimitedServer, cpuSeconds, openFds } from "./emfile/limited-server.mjs";

const NOFILE = 256;
const FLOOD = 400;

let srv;
after(async () => {
  await srv?.stop("SIGKILL");
});

test(`server under ${NOFILE} open files survives ${FLOOD} held connections`, async () => {
  srv = await startLimitedServer(NOFILE, ["--conformance", "--threads", "2"]);
  const pid = srv.proc.pid;
  const bystander = await connected(srv.url, { transports: ["websocket"] });
  const flood = [];
  try {
    await assertRoundTrip(bystander, "before flood");

    for (let i = 0; i < FLOOD; i++) {
      const s = net.connect(srv.port, "127.0.0.1");
      s.on("error", () => {}); // resets once the server gets a descriptor back
      flood.push(s);
    }
    // The most descriptors the server held while the flood came in (it may
    // close idle connections after a header timeout, so sample several times).
    let maxFds = 0;
    for (let i = 0; i < 10; i++) {
      await sleep(150);
      if (srv.proc.exitCode !== null) break;
      maxFds = Math.max(maxFds, openFds(pid));
    }
    assert.equal(srv.proc.exitCode, null, `server died during the flood:\n${srv.logs().slice(-2000)}`);
    assert.ok(maxFds >= NOFILE - 10, `server held at most ${maxFds} fds: the flood did not exhaust them`);

    // Not spinning: sample CPU over 2 s while the flood is held.
    const c0 = cpuSeconds(pid);
    const t0 = Date.now();
    await sleep(2000);
    const cpu = (cpuSeconds(pid) - c0) / ((Date.now() - t0) / 1000);
    assert.ok(cpu < 0.5, `server used ${(cpu * 100).toFixed(0)}% of a core while accept() failed`);
    assert.equal(srv.proc.exitCode, null, "server died while the flood was held");

    // A connection established before the flood keeps working.
    await assertRoundTrip(bystander, "during flood");
  } finally {
    for (const s of flood) s.destroy();
  }

  // After the flood: a new client connects and round-trips (the accept loop
  // may back off for a while, so allow a few seconds).
  let fresh = null;
  const t1 = Date.now();
  let lastErr = null;
  while (!fresh && Date.now() - t1 < 8000) {
    try {
      fresh = await connected(srv.url, { transports: ["websocket"] });
    } catch (e) {
      lastErr = e;
      await sleep(200);
    }
  }
  assert.ok(fresh, `no new client could connect after the flood: ${lastErr?.message}`);
  try {
    await assertRoundTrip(fresh, "after flood");
    await assertRoundTrip(bystander, "after flood");
  } finally {
    fresh.close();
    bystander.close();
  }
  const errors = await metric(srv.adminUrl, "chat_transport_accept_errors_total");
  assert.ok(errors > 0, `chat_transport_accept_errors_total is ${errors}`);
  assert.equal(srv.proc.exitCode, null);
});
