// A WebSocket client written directly on a TCP socket, so a test controls
// reading byte by byte: it can stop reading altogether (a slow reader) while
// it keeps writing frames. Only what the tests need: client frames, masked.
import net from "node:net";
import crypto from "node:crypto";

// One client-to-server frame. The mask key is random per the RFC; masking is
// done on whole 32-bit words to keep large frames cheap.
export function wsFrame(payload, opcode = 0x1) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, "utf8");
  const len = data.length;
  let header;
  if (len < 126) {
    header = Buffer.alloc(2);
    header[1] = 0x80 | len;
  } else if (len < 65536) {
    header = Buffer.alloc(4);
    header[1] = 0x80 | 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  header[0] = 0x80 | opcode;
  const mask = crypto.randomBytes(4);
  const masked = Buffer.alloc(len);
  const m32 = mask.readUInt32LE(0);
  const words = len >>> 2;
  for (let i = 0; i < words; i++) masked.writeUInt32LE((data.readUInt32LE(i * 4) ^ m32) >>> 0, i * 4);
  for (let i = words * 4; i < len; i++) masked[i] = data[i] ^ mask[i & 3];
  return Buffer.concat([header, mask, masked]);
}

// Do the HTTP upgrade by hand; resolve with the socket once the 101 arrived.
// Bytes after the response head stay in `leftover` (not parsed); `head` is
// the response head. headers: extra request headers.
export function rawWsConnect(port, path = "/socket.io/?EIO=4&transport=websocket", headers = {}) {
  return new Promise((resolve, reject) => {
    const key = crypto.randomBytes(16).toString("base64");
    const sock = net.connect(port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("no 101 from the server in 5 s"));
    }, 5000);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      clearTimeout(timer);
      sock.off("data", onData);
      const head = buf.subarray(0, end).toString("latin1");
      if (!/^HTTP\/1\.1 101/.test(head)) {
        sock.destroy();
        reject(new Error(`upgrade refused: ${head.split("\r\n")[0]}`));
        return;
      }
      resolve({ sock, leftover: buf.subarray(end + 4), head });
    };
    sock.on("data", onData);
    sock.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.once("connect", () =>
      sock.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
          Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("") +
          "\r\n",
      ),
    );
  });
}
