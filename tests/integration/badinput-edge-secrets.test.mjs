// No secret in a log line: the broker password never appears in the log,
// whether the URL is malformed (the server refuses to start) or the broker
// cannot be reached (the server runs and retries).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { serverBin, projectRoot, startServer, sleep } from "./lib/server.mjs";
import { chatUser } from "./lib/edge.mjs";

const SECRET = "s3cr3t-Pa55word";

test("a malformed AMQP_URL is reported without its password", async () => {
  const proc = spawn(serverBin, ["--host", "127.0.0.1", "--port", "0", "--admin-port", "0"], {
    cwd: projectRoot,
    env: { ...process.env, AMQP_URL: `amqp://guest:${SECRET}@127.0.0.1:notaport/vh` },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout.on("data", (d) => (out += d));
  proc.stderr.on("data", (d) => (out += d));
  const code = await new Promise((resolve) => proc.on("exit", resolve));
  assert.equal(code, 1, out);
  assert.match(out, /invalid AMQP URL: amqp:\/\/guest:\*\*\*@127\.0\.0\.1:notaport\/vh/);
  assert.equal(out.includes(SECRET), false, out);
});

test("an unreachable broker is reported without its password", async () => {
  const srv = await startServer(["--log-level", "debug"], {
    env: { AMQP_URL: `amqp://guest:${SECRET}@127.0.0.1:9/vh` },
  });
  try {
    // Wait for the failed connect to be logged (a loaded machine may take a while).
    for (let i = 0; i < 100 && !/127\.0\.0\.1:9\b/.test(srv.logs()); i++) await sleep(100);
    const u = await chatUser(srv.url, "alice");
    u.close();
    assert.match(srv.logs(), /127\.0\.0\.1:9\b/);
    assert.equal(srv.logs().includes(SECRET), false, srv.logs());
  } finally {
    await srv.stop("SIGKILL");
  }
});
