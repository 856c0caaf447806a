// Signed tokens for the --auth jwt tests and scripts/mint-token, with Node's
// crypto only: HS256/384/512, RS256/384/512, ES256/384/512 (ES signatures
// as JWS wants them, r || s).
import crypto from "node:crypto";

const b64url = (buf) => Buffer.from(buf).toString("base64url");
const HASH = { 256: "sha256", 384: "sha384", 512: "sha512" };

export function mintToken(claims, { alg = "HS256", key, kid, header = {} } = {}) {
  const head = { alg, typ: "JWT", ...(kid ? { kid } : {}), ...header };
  const input = `${b64url(JSON.stringify(head))}.${b64url(JSON.stringify(claims))}`;
  const bits = alg.slice(2);
  let sig;
  if (alg === "none") sig = Buffer.alloc(0);
  else if (alg.startsWith("HS")) sig = crypto.createHmac(HASH[bits], key).update(input).digest();
  else if (alg.startsWith("RS")) sig = crypto.sign(HASH[bits], Buffer.from(input), key);
  else if (alg.startsWith("ES"))
    sig = crypto.sign(HASH[bits], Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
  else throw new Error(`unknown alg ${alg}`);
  return `${input}.${b64url(sig)}`;
}
