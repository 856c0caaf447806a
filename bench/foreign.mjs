// What a replica pays for a message of a room it has no member in: two
// replicas on one RabbitMQ (scripts/cluster, a fresh broker and history
// stream each run), one user on r1 sends MESSAGES messages of 60 characters
// to a room nobody on r2 is in, INFLIGHT unacknowledged at a time. Reported:
// r2's CPU (user + system, from /proc, its idle CPU subtracted) per message,
// the rate, and what r2 read from the broker. r2 has one user, in the
// default room ("general", another partition than "busy" with 4).
//   node bench/foreign.mjs            (CHAT_SERVER_BIN or build/release)
//   MESSAGES=40000 ROUNDS=3 SERVER_ARGS="--history-stream off" node bench/foreign.mjs
//   SERVER_ARGS="--history-partitions 4" node bench/foreign.mjs
import fs from "node:fs";
import path from "node:path";
import { startCluster, user, sleep, metric } from "../tests/cluster/lib/cluster.mjs";

const MESSAGES = Number(process.env.MESSAGES ?? 40000);
const INFLIGHT = Number(process.env.INFLIGHT ?? 64);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SERVER_ARGS = process.env.SERVER_ARGS ?? "";

const ticks = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks (100/s)
};

const results = [];
for (let round = 0; round < ROUNDS; round++) {
  const c = await startCluster(`bench-foreign-${round}`, {
    replicas: 2,
    serverArgs: `--rate 0 --ip-rate 0 --room-rate 0 --threads 1 ${SERVER_ARGS}`.trim(),
  });
  try {
    const r2 = Number(fs.readFileSync(path.join(c.dir, "r2.pid"), "utf8"));
    const a = await user(c.urlOf("r1"), "loader", { transports: ["websocket"] });
    // r2 has a user of its own, in the default room only (as any replica
    // would): what it reads for "busy" is what a room it does not serve costs.
    const b = await user(c.urlOf("r2"), "bystander", { transports: ["websocket"] });
    const joined = await a.socket.emitWithAck("join room", "busy");
    if (!joined.ok) throw new Error(`join room: ${JSON.stringify(joined)}`);
    await sleep(3000); // r2 settles (start-up read of the stream)
    const i0 = ticks(r2);
    await sleep(3000);
    const idlePerMs = (ticks(r2) - i0) / 3000;
    const consumed0 = (await metric(c.adminUrlOf("r2"), "chat_bus_consumed_total")) ?? 0;
    const t0 = ticks(r2);
    const s0 = Date.now();
    let sent = 0;
    let ok = 0;
    await new Promise((resolve) => {
      let inflight = 0;
      const pump = () => {
        while (inflight < INFLIGHT && sent < MESSAGES) {
          inflight++;
          sent++;
          a.socket
            .timeout(30000)
            .emitWithAck("new message", { room: "busy", message: "x".repeat(60) })
            .then((r) => r.ok && ok++, () => {})
            .finally(() => {
              inflight--;
              if (sent === MESSAGES && inflight === 0) resolve();
              else pump();
            });
        }
      };
      pump();
    });
    const ms = Date.now() - s0;
    await sleep(1000); // r2 reads what is still on its way
    const used = (ticks(r2) - t0) * 10 - idlePerMs * (Date.now() - s0) * 10;
    const consumed = ((await metric(c.adminUrlOf("r2"), "chat_bus_consumed_total")) ?? 0) - consumed0;
    const r = {
      messages: ok,
      rate: Math.round((ok * 1000) / ms),
      r2_us_per_message: Number(((used * 1000) / ok).toFixed(2)),
      r2_broker_messages: consumed,
    };
    console.log(JSON.stringify(r));
    results.push(r);
    a.socket.close();
    b.socket.close();
  } finally {
    await c.down();
  }
}
const us = results.map((r) => r.r2_us_per_message).sort((x, y) => x - y);
console.log(
  JSON.stringify({ rounds: results.length, median_us_per_message: us[Math.floor(us.length / 2)], all: us }),
);
