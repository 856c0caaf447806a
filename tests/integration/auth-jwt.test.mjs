// --auth jwt over the real binary with the official client: who a user is
// comes from a signed token (HS256 secret, RS256 PEM key, ES256 JWKS), bad
// tokens get CONNECT_ERROR with a reason, rooms and posting follow the
// claims, and a token that expires during a session ends it unless refreshed.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startServer, serverBin } from "./lib/server.mjs";
import { mintToken } from "./lib/jwt.mjs";
import { connect, request, next, record, wait, closeAll } from "./chat-helpers.mjs";

const SECRET = "a-test-secret-of-more-than-32-bytes-0123456789";
const now = () => Math.floor(Date.now() / 1000);
const hs = (claims, opts = {}) => mintToken({ exp: now() + 600, ...claims }, { key: SECRET, ...opts });
const withToken = (token) => ({ transports: ["websocket"], auth: token === undefined ? {} : { token } });

async function refused(url, token) {
  try {
    const s = await connect(url, withToken(token));
    s.close();
  } catch (err) {
    assert.ok(err.data && err.data.code, `a code in ${JSON.stringify(err.data)}: ${err.message}`);
    return { message: err.message, code: err.data.code };
  }
  throw new Error("connected with a token that should be refused");
}

describe("auth jwt: HS256 secret, rooms and posting by claim", () => {
  let server;
  let url;
  before(async () => {
    server = await startServer(["--replica-id", "auth-1", "--auth", "jwt", "--restricted-rooms", "staff,team-*",
      "--jwt-leeway", "0", "--jwt-issuer", "tests"], { env: { JWT_SECRET: SECRET } });
    url = server.url;
  });
  after(() => server.stop());

  test("no token, a bad signature, alg none, an expired token, missing claims: CONNECT_ERROR with the reason", async () => {
    let r = await refused(url, undefined);
    assert.equal(r.code, "UNAUTHORIZED");
    assert.match(r.message, /token is required/);
    r = await refused(url, mintToken({ sub: "u", exp: now() + 600, iss: "tests" }, { key: "another-secret-of-more-than-32-bytes!!" }));
    assert.match(r.message, /signature does not verify/);
    r = await refused(url, mintToken({ sub: "u", exp: now() + 600, iss: "tests" }, { alg: "none" }));
    assert.match(r.message, /algorithm "none" is not accepted/);
    r = await refused(url, hs({ sub: "u", iss: "tests", exp: now() - 5 }));
    assert.equal(r.code, "TOKEN_EXPIRED");
    r = await refused(url, mintToken({ sub: "u", iss: "tests" }, { key: SECRET }));
    assert.match(r.message, /"exp"/);
    r = await refused(url, hs({ iss: "tests" }));
    assert.match(r.message, /"sub"/);
    r = await refused(url, hs({ sub: "u", iss: "someone else" }));
    assert.match(r.message, /issuer/);
    r = await refused(url, "not.a.token");
    assert.equal(r.code, "UNAUTHORIZED");
    const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
    r = await refused(url, mintToken({ sub: "u", iss: "tests", exp: now() + 600 }, { alg: "RS256", key: privateKey }));
    assert.match(r.message, /algorithm "RS256" is not accepted/);
    const metrics = await (await fetch(`${server.adminUrl}/metrics`)).text();
    assert.match(metrics, /^chat_auth_refused_total\{[^}]*\} [1-9]/m);
  });

  test("the name is the token's, messages carry its subject; restricted rooms need a claim", async () => {
    const ada = await connect(url, withToken(hs({ sub: "user-ada", name: "Ada", iss: "tests", rooms: ["team-*"] })));
    const bob = await connect(url, withToken(hs({ sub: "user-bob", name: "Bob", iss: "tests" })));
    try {
      const me = await request(ada, "add user", "Mallory");
      assert.equal(me.ok, true);
      assert.equal(me.username, "Ada", "the name claim, not what the client asked for");
      assert.equal(me.sub, "user-ada");
      assert.equal((await request(bob, "add user")).username, "Bob");

      const got = next(bob, "new message");
      assert.equal((await request(ada, "new message", "hello")).ok, true);
      const msg = await got;
      assert.equal(msg.username, "Ada");
      assert.equal(msg.sub, "user-ada");

      assert.equal((await request(ada, "join room", "team-red")).ok, true);
      assert.equal((await request(ada, "join room", "open-room")).ok, true, "unrestricted rooms are public");
      let r = await request(ada, "join room", "staff");
      assert.equal(r.ok, false);
      assert.equal(r.error.code, "FORBIDDEN");
      r = await request(bob, "join room", "team-red");
      assert.equal(r.error.code, "FORBIDDEN");
      assert.equal((await request(bob, "join room", "open-room")).ok, true);
    } finally {
      closeAll([ada, bob]);
    }
  });

  test("a post claim limits posting; admin joins and posts anywhere", async () => {
    const reader = await connect(url, withToken(hs({ sub: "r", iss: "tests", post: ["open-*"] })));
    const admin = await connect(url, withToken(hs({ sub: "boss", iss: "tests", admin: true })));
    try {
      await request(reader, "add user");
      await request(admin, "add user");
      const r = await request(reader, "new message", "may I?");
      assert.equal(r.ok, false);
      assert.equal(r.error.code, "FORBIDDEN");
      assert.match(r.error.message, /posting in general/);
      assert.equal((await request(reader, "join room", "open-1")).ok, true);
      assert.equal((await request(reader, "new message", { room: "open-1", message: "yes" })).ok, true);
      assert.equal((await request(admin, "join room", "staff")).ok, true);
      assert.equal((await request(admin, "new message", { room: "staff", message: "hi staff" })).ok, true);
    } finally {
      closeAll([reader, admin]);
    }
  });

  test("a token that expires ends the session (TOKEN_EXPIRED); a refresh of the same subject keeps it", async () => {
    const short = () => hs({ sub: "user-eve", name: "Eve", iss: "tests", exp: now() + 2 });
    const ending = await connect(url, withToken(short()));
    const kept = await connect(url, withToken(short()));
    try {
      await request(ending, "add user");
      await request(kept, "add user");
      const err = await request(kept, "refresh token", hs({ sub: "someone-else", iss: "tests" }));
      assert.equal(err.error.code, "FORBIDDEN");
      const ok = await request(kept, "refresh token", { token: hs({ sub: "user-eve", iss: "tests" }) });
      assert.equal(ok.ok, true);
      assert.deepEqual(ok.left, []);
      assert.ok(ok.exp > now() + 500);
      const rec = record(ending);
      const gone = new Promise((resolve) => ending.once("disconnect", resolve));
      assert.equal(await gone, "io server disconnect");
      assert.equal(rec.of("chat error")[0].code, "TOKEN_EXPIRED");
      await wait(1500);
      assert.equal(kept.connected, true, "the refreshed socket stays");
      assert.equal((await request(kept, "new message", "still here")).ok, true);
    } finally {
      closeAll([ending, kept]);
    }
  });
});

describe("auth jwt: a refresh that narrows the rooms", () => {
  let server;
  before(async () => {
    server = await startServer(["--replica-id", "auth-3", "--auth", "jwt", "--restricted-rooms", "team-*"],
      { env: { JWT_SECRET: SECRET } });
  });
  after(() => server.stop());

  test("restricted rooms the new token does not name are left at once; the others stay", async () => {
    const ann = await connect(server.url, withToken(hs({ sub: "ann", rooms: ["team-*"] })));
    const bob = await connect(server.url, withToken(hs({ sub: "bob", rooms: ["team-red"] })));
    try {
      for (const s of [ann, bob]) assert.equal((await request(s, "add user")).ok, true);
      for (const r of ["team-red", "team-blue", "lobby"]) assert.equal((await request(ann, "join room", r)).ok, true);
      assert.equal((await request(bob, "join room", "team-red")).ok, true);
      const leaving = next(bob, "user left", (m) => m.room === "team-red");
      const res = await request(ann, "refresh token", hs({ sub: "ann", rooms: ["team-blue"] }));
      assert.equal(res.ok, true);
      assert.deepEqual(res.left, ["team-red"]);
      assert.equal((await leaving).userId, ann.id);
      assert.equal((await request(ann, "new message", { room: "team-red", message: "x" })).error.code, "NOT_IN_ROOM");
      assert.equal((await request(ann, "new message", { room: "team-blue", message: "x" })).ok, true);
      assert.equal((await request(ann, "new message", { room: "lobby", message: "x" })).ok, true);
      const rec = record(ann);
      assert.equal((await request(bob, "new message", { room: "team-red", message: "not for ann" })).ok, true);
      await wait(300);
      assert.deepEqual(rec.of("new message"), [], "no traffic of a room left");
      assert.equal((await request(ann, "join room", "team-red")).error.code, "FORBIDDEN");
    } finally {
      closeAll([ann, bob]);
    }
  });

  test("members are listed with their subject, and a departure says whose", async () => {
    const cy = await connect(server.url, withToken(hs({ sub: "user-cy", name: "Cy" })));
    const dee = await connect(server.url, withToken(hs({ sub: "user-dee", name: "Dee" })));
    try {
      for (const s of [cy, dee]) assert.equal((await request(s, "add user")).ok, true);
      const list = await request(cy, "list users", "general");
      const subs = Object.fromEntries(list.users.map((u) => [u.username, u.sub]));
      assert.equal(subs.Cy, "user-cy");
      assert.equal(subs.Dee, "user-dee");
      const j = await request(cy, "join room", "lobby2");
      assert.equal(j.users.find((u) => u.username === "Cy").sub, "user-cy");
      const left = next(cy, "user left", (m) => m.username === "Dee");
      dee.close();
      assert.equal((await left).sub, "user-dee");
    } finally {
      closeAll([cy, dee]);
    }
  });
});

describe("auth jwt: RS256 with a PEM key, ES256 with a JWKS", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "chat-jwt-"));
  const rsa = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  const pem = path.join(dir, "rsa.pem");
  const jwks = path.join(dir, "jwks.json");
  writeFileSync(pem, rsa.publicKey.export({ type: "spki", format: "pem" }));
  writeFileSync(jwks, JSON.stringify({ keys: [
    { ...ec.publicKey.export({ format: "jwk" }), kid: "ec-1", use: "sig" },
    { ...rsa.publicKey.export({ format: "jwk" }), kid: "rsa-1" },
  ] }));
  const claims = () => ({ sub: "user-kim", name: "Kim", exp: now() + 600 });
  let servers = [];
  after(() => Promise.all(servers.map((s) => s.stop())));

  test("RS256 against --jwt-public-key; HS256 signed with that key's PEM is refused", async () => {
    const s = await startServer(["--auth", "jwt", "--jwt-public-key", pem]);
    servers.push(s);
    const sock = await connect(s.url, withToken(mintToken(claims(), { alg: "RS256", key: rsa.privateKey })));
    assert.equal((await request(sock, "add user")).username, "Kim");
    sock.close();
    // The classic confusion: the public key used as an HMAC secret.
    const forged = mintToken(claims(), { alg: "HS256", key: rsa.publicKey.export({ type: "spki", format: "pem" }) });
    const r = await refused(s.url, forged);
    assert.match(r.message, /algorithm "HS256" is not accepted/);
  });

  test("ES256 and RS256 against --jwt-jwks, the key picked by kid", async () => {
    const s = await startServer(["--auth", "jwt", "--jwt-jwks", jwks]);
    servers.push(s);
    const a = await connect(s.url, withToken(mintToken(claims(), { alg: "ES256", key: ec.privateKey, kid: "ec-1" })));
    const b = await connect(s.url, withToken(mintToken(claims(), { alg: "RS256", key: rsa.privateKey, kid: "rsa-1" })));
    assert.equal((await request(a, "add user")).sub, "user-kim");
    assert.equal((await request(b, "add user")).sub, "user-kim");
    closeAll([a, b]);
    const r = await refused(s.url, mintToken(claims(), { alg: "ES256", key: ec.privateKey, kid: "unknown" }));
    assert.match(r.message, /kid "unknown"/);
    const wrong = await refused(s.url, mintToken(claims(), { alg: "RS256", key: rsa.privateKey, kid: "ec-1" }));
    assert.match(wrong.message, /algorithm "RS256" is not accepted/);
  });

  test("bad start-up settings: a clear error and exit status 2", () => {
    for (const [args, env, want] of [
      [["--auth", "jwt"], {}, /exactly one of/],
      [["--auth", "jwt"], { JWT_SECRET: "short" }, /at least 32 bytes/],
      [["--auth", "jwt", "--jwt-public-key", jwks], {}, /not a PEM public key/],
      [["--auth", "jwt", "--restricted-rooms", "gen*"], { JWT_SECRET: SECRET }, /must stay public/],
      [["--jwt-public-key", pem], {}, /need --auth jwt/],
    ]) {
      const r = spawnSync(serverBin, ["--port", "0", ...args], { env: { ...process.env, JWT_SECRET: "", ...env }, encoding: "utf8", timeout: 10000 });
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, want);
    }
  });
});
