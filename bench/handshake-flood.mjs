// Polling handshakes over 8 keep-alive connections from one address for 10 s
// against one server with default bounds; prints the answers by status, the
// server's resident memory before and at its peak, and the sessions open.
//   node bench/handshake-flood.mjs      (CHAT_SERVER_BIN or build/release)
import { startServer } from "../tests/integration/lib/server.mjs";
import { metric } from "../tests/integration/lib/target.mjs";
import { rssBytes, keepAliveLoop, handshakeRequest, sumCounts } from "../tests/integration/lib/edge.mjs";
const srv = await startServer(["--threads", "2"]);
const rss0 = rssBytes(srv.proc.pid);
let peak = 0;
const t = setInterval(() => (peak = Math.max(peak, rssBytes(srv.proc.pid))), 50);
const r = await Promise.all(Array.from({ length: 8 }, () => keepAliveLoop(srv.port, handshakeRequest(srv.port), { localAddress: "127.0.0.2", ms: 10000 })));
clearInterval(t);
console.log(JSON.stringify({ counts: sumCounts(r), rss0MB: rss0 >> 20, peakMB: peak >> 20, open: await metric(srv.adminUrl, "chat_transport_connections_open") }));
await srv.stop("SIGKILL");
