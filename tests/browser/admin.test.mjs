// The official Socket.IO Admin UI in Chromium, served at /admin/ through
// HAProxy by a three-replica cluster (real RabbitMQ): it logs in, lists the
// three replicas as healthy servers and the users of all three as sockets,
// and disconnects a user who is on another replica than the UI's own
// socket. Screenshot: tests/browser/screenshots/admin-servers.png (and
// docs/img/admin-servers.png when UPDATE_DOCS_IMG=1).
// Needs the release chat-server, rabbitmq-server, haproxy and chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startCluster, user, waitFor, metric } from "../cluster/lib/cluster.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const shots = path.join(here, "screenshots");
const chromiumPath = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
// bcrypt of "changeit": a test fixture.
const HASH = "$2b$12$wpsgEtq3qxxlFiIH/1WFm.Q5U9h1btBIuSIuUeQ8xDVNdqJvwl.J2";

let c;
let browser;
let hashDir;
const users = [];

before(async () => {
  fs.mkdirSync(shots, { recursive: true });
  hashDir = fs.mkdtempSync(path.join(os.tmpdir(), "admin-ui-"));
  const hashFile = path.join(hashDir, "hash");
  fs.writeFileSync(hashFile, HASH + "\n");
  c = await startCluster("admin", {
    replicas: 3,
    serverArgs: `--admin-ui --admin-ui-password-hash-file ${hashFile}`,
  });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  for (const u of users) u.socket.close();
  await browser?.close();
  await c?.down();
  if (hashDir) fs.rmSync(hashDir, { recursive: true, force: true });
});

test("the Admin UI through the balancer shows the three replicas and their sockets, and disconnects a socket on another replica", async () => {
  // One user straight on each replica.
  for (const id of c.replicaIds) users.push({ id, ...(await user(c.urlOf(id), `user-${id}`)) });

  const ctx = await browser.newContext({ viewport: { width: 1300, height: 800 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(c.lbUrl + "/admin");  // redirected to /admin/
  await page.getByLabel("Server URL").fill(c.lbUrl);
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill("wrong");
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByText("invalid credentials", { exact: false }).first().waitFor({ timeout: 15000 });
  await page.getByLabel("Password").fill("changeit");
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByText("Connected", { exact: false }).first().waitFor({ timeout: 15000 });

  // Servers: r1, r2 and r3, healthy (each sends its stats through the bus).
  await page.goto(c.lbUrl + "/admin/#/servers/");
  await page.waitForFunction(
    (ids) => {
      const rows = [...document.querySelectorAll("main tbody tr")].map((r) => r.textContent);
      return ids.every((id) => rows.some((t) => t.startsWith(id) && t.includes("Healthy")));
    },
    c.replicaIds, { timeout: 20000 },
  );
  await page.screenshot({ path: path.join(shots, "admin-servers.png") });
  if (process.env.UPDATE_DOCS_IMG === "1")
    fs.copyFileSync(path.join(shots, "admin-servers.png"), path.join(here, "../../docs/img/admin-servers.png"));

  // Sockets: the users of every replica.
  await page.goto(c.lbUrl + "/admin/#/sockets/");
  await page.waitForFunction(
    (ids) => ids.every((id) => document.querySelector("main").textContent.includes(id)),
    users.map((u) => u.socket.id), { timeout: 15000 },
  );

  // The replica the UI's socket is on, and a user on another one.
  let mine = null;
  await waitFor("the UI's replica", async () => {
    for (const id of c.replicaIds)
      if ((await metric(c.adminUrlOf(id), "chat_admin_sockets")) > 0) mine = id;
    return mine;
  });
  const target = users.find((u) => u.id !== mine);
  const targetId = target.socket.id;
  const gone = new Promise((r) => target.socket.once("disconnect", r));
  await page.goto(c.lbUrl + `/admin/#/n/%2F/sockets/${targetId}`);
  await page.getByText(targetId).first().waitFor();
  // The client's Status row has the disconnect button (an icon; no text).
  await page.locator("tr", { hasText: "Status" }).first().locator("button").click();
  const why = await Promise.race([gone, new Promise((r) => setTimeout(() => r("no disconnect in 10 s"), 10000))]);
  assert.equal(why, "io server disconnect", `user on ${target.id} disconnected from the UI on ${mine}`);
  // The UI hears of it (socket_disconnected through the bus) and drops the socket.
  await page.goto(c.lbUrl + "/admin/#/sockets/");
  await page.waitForFunction(
    (id) => !document.querySelector("main").textContent.includes(id), targetId, { timeout: 15000 },
  );
  for (const u of users.filter((x) => x !== target)) assert.equal(u.socket.connected, true, `${u.id} untouched`);
  assert.deepEqual(errors, []);
  await ctx.close();
});
