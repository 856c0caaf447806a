// A stand-in for Docker's embedded DNS (127.0.0.11 in every swarm container):
// answers A queries for one name ("tasks.chat") with the addresses of the
// live tasks, which a test changes as it starts and stops replicas. AAAA
// gets an empty answer (swarm overlays are IPv4), other names NXDOMAIN.
import dgram from "node:dgram";

const TYPE_A = 1;
const CLASS_IN = 1;

// Read a DNS name starting at off; return [lowercased name, offset after it].
function readName(buf, off) {
  const labels = [];
  for (;;) {
    const len = buf[off];
    if (len === undefined) throw new Error("truncated name");
    if (len === 0) return [labels.join(".").toLowerCase(), off + 1];
    if ((len & 0xc0) !== 0) throw new Error("compressed name in a question");
    labels.push(buf.toString("latin1", off + 1, off + 1 + len));
    off += 1 + len;
  }
}

function answer(query, name, addresses) {
  const [qname, end] = readName(query, 12);
  const qtype = query.readUInt16BE(end);
  const question = query.subarray(12, end + 4);
  const known = qname === name;
  const records = known && qtype === TYPE_A ? addresses : [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0); // same id
  // QR=1, opcode 0, AA=1, RD copied, RA=1; RCODE 3 (NXDOMAIN) for other names.
  header.writeUInt16BE(0x8400 | (query[2] & 0x01) << 8 | 0x80 | (known ? 0 : 3), 2);
  header.writeUInt16BE(1, 4); // one question
  header.writeUInt16BE(records.length, 6);
  const rrs = records.map((ip) => {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
    rr.writeUInt16BE(TYPE_A, 2);
    rr.writeUInt16BE(CLASS_IN, 4);
    rr.writeUInt32BE(0, 6); // TTL 0: like Docker, always ask again
    rr.writeUInt16BE(4, 10);
    ip.split(".").forEach((o, i) => rr.writeUInt8(Number(o), 12 + i));
    return rr;
  });
  return Buffer.concat([header, question, ...rrs]);
}

// Resolve with { port, set(addresses), queries(), close() }.
export function startSwarmDns(name, addresses = []) {
  let current = [...addresses];
  let count = 0;
  const sock = dgram.createSocket("udp4");
  sock.on("message", (msg, rinfo) => {
    count++;
    let reply;
    try {
      reply = answer(msg, name.toLowerCase(), current);
    } catch {
      return; // not a query we understand: a resolver times out and retries
    }
    sock.send(reply, rinfo.port, rinfo.address);
  });
  return new Promise((resolve, reject) => {
    sock.once("error", reject);
    sock.bind(0, "127.0.0.1", () => {
      resolve({
        port: sock.address().port,
        set: (list) => {
          current = [...list];
        },
        queries: () => count,
        close: () => new Promise((r) => sock.close(r)),
      });
    });
  });
}
