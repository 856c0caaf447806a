// The Grafana dashboard (deploy/monitoring) queries only series the server
// exports: every metric name in every panel's expression is on /metrics of a
// running replica, histograms with their buckets.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startServer, projectRoot } from "./lib/server.mjs";

const dashboardFile = path.join(projectRoot, "deploy/monitoring/grafana/chat-dashboard.json");
let server;
before(async () => {
  server = await startServer(["--replica-id", "dash-1"]);
});
after(() => server.stop());

test("every series a dashboard panel queries is exported, with the labels it groups by", async () => {
  const dash = JSON.parse(fs.readFileSync(dashboardFile, "utf8"));
  assert.equal(dash.uid, "chat-scaling");
  const text = await (await fetch(`${server.adminUrl}/metrics`)).text();
  const exported = new Map(); // name -> set of label names
  for (const line of text.split("\n")) {
    const m = line.match(/^([a-z_]+)\{([^}]*)\} /);
    if (!m) continue;
    const labels = exported.get(m[1]) ?? new Set();
    for (const l of m[2].matchAll(/(\w+)="/g)) labels.add(l[1]);
    exported.set(m[1], labels);
  }
  const functions = new Set(["sum", "by", "rate", "increase", "max", "min", "histogram_quantile", "le"]);
  let queried = 0;
  assert.ok(dash.panels.length >= 10);
  for (const panel of dash.panels) {
    assert.ok(panel.targets.length > 0, panel.title);
    for (const t of panel.targets) {
      for (const [name] of t.expr.replace(/\{[^}]*\}/g, "").replace(/\[[^\]]*\]/g, "").replace(/by \([^)]*\)/g, "").matchAll(/[a-z_]{4,}/g)) {
        if (functions.has(name)) continue;
        queried++;
        assert.ok(exported.has(name), `${panel.title}: ${name} is not on /metrics`);
        for (const g of t.expr.matchAll(/by \(([^)]*)\)/g))
          for (const label of g[1].split(",").map((s) => s.trim()))
            assert.ok(exported.get(name)?.has(label) || label === "le", `${panel.title}: ${name} has no label ${label}`);
      }
    }
  }
  assert.ok(queried >= 30, `queried ${queried} series`);
  for (const h of ["chat_delivery_latency_seconds", "chat_ack_latency_seconds"])
    assert.ok(exported.has(`${h}_bucket`) && exported.has(`${h}_count`), h);
});
