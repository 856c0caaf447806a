// Start the real chat-server under a low open-files limit (prlimit sets both
// soft and hard limits, so the server cannot raise it back) and wait for its
// "listening" line. prlimit execs the server, so proc.pid is the server's pid.
import { spawn } from "node:child_process";
import fs from "node:fs";
import { serverBin, projectRoot, stopProcess } from "../lib/server.mjs";

export function startLimitedServer(nofile, args = [], { timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      "prlimit",
      [`--nofile=${nofile}:${nofile}`, "--", serverBin, "--host", "127.0.0.1", "--port", "0", "--admin-port", "0", ...args],
      { cwd: projectRoot, stdio: ["ignore", "pipe", "pipe"] },
    );
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
      if (out.length > 1e6) out = out.slice(-500000); // a flood may log a lot
      const m = out.match(/listening on http:\/\/[^\s:]+:(\d+)/);
      if (m && !settled) {
        settled = true;
        clearTimeout(timer);
        const port = Number(m[1]);
        const a = out.match(/operations on (http:\/\/[^\s]+:\d+)/);
        resolve({
          url: `http://127.0.0.1:${port}`,
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
    proc.on("error", (e) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(e);
      }
    });
    proc.on("exit", (code, sig) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`server exited early (code ${code}, signal ${sig}):\n${out}`));
      }
    });
  });
}

// CPU time (user + system) of a process in seconds, from /proc/<pid>/stat.
export function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100; // USER_HZ is 100 on Linux
}

// Open file descriptors of a process.
export function openFds(pid) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}
