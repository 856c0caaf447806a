// Print ours vs the peer for every scenario of one bench/run result folder,
// and write summary.json plus the .dat files bench/plot draws.
//   node bench/compare.mjs bench/results/latest
import fs from "node:fs";
import path from "node:path";

const dir = process.argv[2] || "bench/results/latest";
const load = (f) => (fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, "utf8")) : null);

const names = [
  ...new Set(
    fs
      .readdirSync(dir)
      .map((f) => f.match(/^(.+)-(ours|peer)\.json$/))
      .filter(Boolean)
      .map((m) => m[1]),
  ),
].sort((a, b) => {
  const ra = Number(a.split("-")[1] || 0);
  const rb = Number(b.split("-")[1] || 0);
  return a.split("-")[0].localeCompare(b.split("-")[0]) || ra - rb;
});

// [label, getter, "lower" | "higher" is better]
const figures = [
  ["clients ready", (r) => r.counters.ready, "higher"],
  ["connects/s", (r) => r.derived.connects_per_s, "higher"],
  ["connect p99 ms", (r) => r.derived.connect_time.p99_ms, "lower"],
  ["messages in/s", (r) => r.derived.messages_in_per_s, "higher"],
  ["deliveries/s", (r) => r.derived.deliveries_per_s, "higher"],
  ["latency p50 ms", (r) => r.derived.latency.p50_ms, "lower"],
  ["latency p90 ms", (r) => r.derived.latency.p90_ms, "lower"],
  ["latency p99 ms", (r) => r.derived.latency.p99_ms, "lower"],
  ["latency p99.9 ms", (r) => r.derived.latency.p999_ms, "lower"],
  ["latency max ms", (r) => r.derived.latency.max_ms, "lower"],
  ["lost", (r) => r.counters.lost, "lower"],
  ["foreign (unwanted)", (r) => r.counters.foreign, "lower"],
  ["errors", (r) => r.counters.connect_errors + r.counters.disconnects + r.counters.protocol_errors + r.counters.chat_errors, "lower"],
  ["handshakes/s", (r) => r.derived.handshakes_per_s, "higher"],
  ["server RSS peak MB", (r) => r.derived.server_rss_peak_mb, "lower"],
  ["server KB/connection", (r) => r.derived.server_kb_per_connection, "lower"],
  ["server CPU % (1 core=100)", (r) => r.derived.server_cpu_pct, "lower"],
];

const relevant = {
  fanout: ["clients ready", "connects/s", "messages in/s", "deliveries/s", "latency p50 ms", "latency p90 ms", "latency p99 ms", "latency p99.9 ms", "latency max ms", "lost", "errors", "server RSS peak MB", "server CPU % (1 core=100)"],
  rooms: ["clients ready", "messages in/s", "deliveries/s", "latency p50 ms", "latency p99 ms", "latency p99.9 ms", "latency max ms", "lost", "foreign (unwanted)", "errors", "server RSS peak MB", "server CPU % (1 core=100)"],
  latency: ["messages in/s", "deliveries/s", "latency p50 ms", "latency p90 ms", "latency p99 ms", "latency p99.9 ms", "latency max ms", "lost", "errors", "server CPU % (1 core=100)"],
  idle: ["clients ready", "connects/s", "connect p99 ms", "errors", "server RSS peak MB", "server KB/connection", "server CPU % (1 core=100)"],
  churn: ["handshakes/s", "connect p99 ms", "errors", "server RSS peak MB", "server CPU % (1 core=100)"],
};

const fmt = (v) =>
  v === undefined || v === null || Number.isNaN(v) ? "-" : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2);

const summary = {};
for (const name of names) {
  const ours = load(path.join(dir, `${name}-ours.json`));
  const peer = load(path.join(dir, `${name}-peer.json`));
  const sc = (ours || peer).scenario;
  console.log(`\n${name} (${sc})`);
  console.log(`  ${"figure".padEnd(26)} ${"ours".padStart(10)} ${"peer".padStart(10)} ${"ours/peer".padStart(10)}`);
  summary[name] = {};
  for (const [label, get, better] of figures) {
    if (!(relevant[sc] || []).includes(label)) continue;
    const a = ours ? get(ours) : undefined;
    const b = peer ? get(peer) : undefined;
    const ratio = a !== undefined && b ? a / b : undefined;
    summary[name][label] = { ours: a, peer: b, ratio, better };
    console.log(`  ${label.padEnd(26)} ${fmt(a).padStart(10)} ${fmt(b).padStart(10)} ${fmt(ratio).padStart(10)}  (${better} is better)`);
  }
  // Percentiles for the latency plot.
  const row = (r, q) => (r ? r.derived.latency[q] : "NaN");
  const qs = [["p50", "p50_ms"], ["p90", "p90_ms"], ["p99", "p99_ms"], ["p99.9", "p999_ms"], ["max", "max_ms"]];
  fs.writeFileSync(
    path.join(dir, `pct-${name}.dat`),
    "# percentile ours_ms peer_ms\n" + qs.map(([l, q]) => `${l} ${row(ours, q)} ${row(peer, q)}`).join("\n") + "\n",
  );
}

// Throughput and latency against offered load, for the scenarios run at
// several rates (latency-<rate>, fanout-<rate>): <scenario>-sweep.dat, and the
// highest rate each side sustained with p99 under the target and nothing lost.
const P99_TARGET_MS = 50;
for (const sc of ["latency", "fanout"]) {
  const sweep = names.filter((n) => new RegExp(`^${sc}-\\d+$`).test(n));
  if (!sweep.length) continue;
  const lines = ["# rate_in offered_deliveries ours_deliveries ours_p50 ours_p99 peer_deliveries peer_p50 peer_p99"];
  const best = { ours: null, peer: null };
  for (const n of sweep) {
    const ours = load(path.join(dir, `${n}-ours.json`));
    const peer = load(path.join(dir, `${n}-peer.json`));
    const any = ours || peer;
    const rate = any.config.rate;
    const offered = rate * (any.config.connections - 1);
    const f = (r) => (r ? `${r.derived.deliveries_per_s} ${r.derived.latency.p50_ms} ${r.derived.latency.p99_ms}` : "NaN NaN NaN");
    lines.push(`${rate} ${offered} ${f(ours)} ${f(peer)}`);
    for (const [who, r] of [["ours", ours], ["peer", peer]]) {
      if (r && r.derived.latency.p99_ms < P99_TARGET_MS && r.counters.lost === 0 &&
          (!best[who] || r.derived.deliveries_per_s > best[who].deliveries_per_s))
        best[who] = { rate_in: rate, deliveries_per_s: r.derived.deliveries_per_s, p99_ms: r.derived.latency.p99_ms };
    }
  }
  fs.writeFileSync(path.join(dir, `${sc}-sweep.dat`), lines.join("\n") + "\n");
  const show = (b) => (b ? `${b.deliveries_per_s} deliveries/s (${b.rate_in} msg/s in, p99 ${fmt(b.p99_ms)} ms)` : "none of the rates tried");
  console.log(`\n${sc}: highest load with p99 < ${P99_TARGET_MS} ms and no loss`);
  console.log(`  ours: ${show(best.ours)}`);
  console.log(`  peer: ${show(best.peer)}`);
  summary[`${sc}-best`] = { p99_target_ms: P99_TARGET_MS, ...best };
}
fs.writeFileSync(path.join(dir, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
console.log(`\nsummary: ${path.join(dir, "summary.json")}`);
