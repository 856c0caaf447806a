// Start the real chat-server binary on a free port and stop it again.
// Used by every integration test. CHAT_SERVER_BIN overrides the binary path.
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const projectRoot = root;
export const serverBin =
  process.env.CHAT_SERVER_BIN || path.join(root, "build", "release", "src", "server", "chat-server");

// Resolve with { url, adminUrl, port, proc, logs(), stop() } once the server logs its port.
export function startServer(args = [], { env = {}, timeoutMs = 15000, cwd = root } = {}) {
  return new Promise((resolve, reject) => {
    const port = args.includes("--port") ? [] : ["--port", "0"];
    // The operations listener on a free port too, unless the test picks one.
    const admin = args.includes("--admin-port") ? [] : ["--admin-port", "0"];
    const proc = spawn(serverBin, ["--host", "127.0.0.1", ...port, ...admin, ...args], {
      cwd,
      // One replica on the in-process bus unless the test asks for a broker
      // (scripts/test exports AMQP_URL for the bus and cluster tests).
      env: { ...process.env, AMQP_URL: "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      proc.kill("SIGKILL");
      reject(new Error(`server did not start in ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onData = (d) => {
      out += d.toString();
      const m = out.match(/listening on (https?):\/\/[^\s:]+:(\d+)/);
      if (m && !settled) {
        settled = true;
        clearTimeout(timer);
        const port = Number(m[2]);
        const a = out.match(/operations on (http:\/\/[^\s]+:\d+)/);
        resolve({
          url: `${m[1]}://127.0.0.1:${port}`,
          // /metrics and the detailed /readyz
          adminUrl: a ? a[1] : null,
          port,
          proc,
          logs: () => out,
          stop: (signal = "SIGTERM") => stopProcess(proc, signal),
        });
      }
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", onData);
    proc.on("exit", (code, sig) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`server exited early (code ${code}, signal ${sig}):\n${out}`));
      }
    });
  });
}

// Send a signal and resolve with the exit code (SIGKILL after 10 s).
export function stopProcess(proc, signal = "SIGTERM") {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode);
    const killer = setTimeout(() => proc.kill("SIGKILL"), 10000);
    proc.once("exit", (code) => {
      clearTimeout(killer);
      resolve(code);
    });
    proc.kill(signal);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
