// Time until the users of a killed replica are recovered on the others.
// Three replicas behind HAProxy on one RabbitMQ (scripts/cluster), USERS
// official clients (socket.io-client, WebSocket and polling alternating) in
// one room, SENDERS of them sending RATE messages/s in all; then one replica
// is SIGKILLed. For each of its users: the time from the kill to its
// `connect` with `recovered === true`, and whether it missed or doubled an
// acknowledged message. Repeated ROUNDS times (a fresh cluster each).
//   node bench/recovery.mjs        (CHAT_SERVER_BIN or build/release)
//   USERS=150 SENDERS=6 RATE=300 ROUNDS=3 node bench/recovery.mjs
import { startCluster, user, sleep, waitFor } from "../tests/cluster/lib/cluster.mjs";

const USERS = Number(process.env.USERS ?? 150);
const SENDERS = Number(process.env.SENDERS ?? 6);
const RATE = Number(process.env.RATE ?? 300);
const ROUNDS = Number(process.env.ROUNDS ?? 3);

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};

const times = [];
const rounds = [];
for (let round = 0; round < ROUNDS; round++) {
  const c = await startCluster(`bench-recovery-${round}`, { replicas: 3, serverArgs: "--rate 1000 --burst 1000" });
  const users = [];
  try {
    for (let i = 0; i < USERS; i++) {
      const u = await user(c.lbUrl, `u${i}`, { transports: [i % 2 ? "polling" : "websocket"] });
      u.got = new Map();
      u.socket.on("new message", (m) => u.got.set(m.message, (u.got.get(m.message) ?? 0) + 1));
      users.push(u);
    }
    // Senders on the replicas that live; the victim is the replica of users[0].
    const victim = users[0].me.replica;
    const senders = users.filter((u) => u.me.replica !== victim).slice(0, SENDERS);
    const victims = users.filter((u) => u.me.replica === victim);
    const acked = [];
    let stop = false;
    let n = 0;
    const sending = (async () => {
      const gap = 1000 / RATE;
      const t0 = Date.now();
      while (!stop) {
        const s = senders[n % senders.length];
        const text = `m${n++}`;
        s.socket.timeout(30000).emitWithAck("new message", text).then((a) => a.ok && acked.push({ text, from: s.name }), () => {});
        const ahead = t0 + n * gap - Date.now();
        if (ahead > 0) await sleep(ahead);
      }
    })();
    await sleep(2000);
    const back = new Map();
    const killedAt = Date.now();
    for (const v of victims)
      v.socket.once("connect", () => back.set(v.name, { ms: Date.now() - killedAt, recovered: v.socket.recovered }));
    await c.killReplica(victim);
    await waitFor("every victim back", () => back.size === victims.length, 60000);
    await sleep(2000);
    stop = true;
    await sending;
    await sleep(2000);
    const missed = acked.filter((a) => users.some((u) => u.name !== a.from && !u.got.has(a.text))).length;
    const twice = acked.filter((a) => users.some((u) => (u.got.get(a.text) ?? 0) > 1)).length;
    const ms = [...back.values()].map((b) => b.ms);
    const notRecovered = [...back.values()].filter((b) => !b.recovered).length;
    times.push(...ms);
    const r = { round, victims: victims.length, acked: acked.length, missed, twice, notRecovered,
      p50: pct(ms, 50), p99: pct(ms, 99), max: Math.max(...ms) };
    rounds.push(r);
    console.log(JSON.stringify(r));
  } finally {
    for (const u of users) u.socket.close();
    await c.down();
  }
}
console.log(JSON.stringify({ users: USERS, rate: RATE, rounds: ROUNDS, victims: times.length,
  p50: pct(times, 50), p90: pct(times, 90), p99: pct(times, 99), max: Math.max(...times),
  missed: rounds.reduce((a, r) => a + r.missed, 0), twice: rounds.reduce((a, r) => a + r.twice, 0),
  notRecovered: rounds.reduce((a, r) => a + r.notRecovered, 0) }));
