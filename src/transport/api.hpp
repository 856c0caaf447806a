// Public API of the transport layer (Engine.IO v4 + Socket.IO v5 sessions).
//
// This is the only header the chat application and the endpoints include
// from src/transport. Everything Beast/Asio-socket related stays behind it.
//
// Threading: every Socket lives on one worker (runtime::Workers). All callbacks
// for a socket run on that worker's thread, and all Socket methods must be
// called on that thread (use post(workers.at(socket->worker()), ...) otherwise).
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chat::runtime {
class Workers;
}

namespace chat::transport {

class TlsContext;  // transport/tls.hpp

struct Options {
  std::string path = "/socket.io/";  // Socket.IO endpoint
  std::chrono::milliseconds ping_interval{25000};
  std::chrono::milliseconds ping_timeout{20000};
  std::chrono::milliseconds upgrade_timeout{10000};
  std::chrono::milliseconds connect_timeout{10000};  // Engine.IO open -> Socket.IO CONNECT
  std::size_t max_payload = 1'000'000;               // bytes per polling body / WS message
  std::size_t max_attachments = 10;                  // binary attachments per packet
  std::size_t max_send_queue_bytes = 1 << 20;        // per connection, then slow-reader policy
  std::size_t max_connections = 0;                   // 0 = unlimited (fd limit still applies)
  bool allow_polling = true;
  bool allow_websocket = true;
  std::vector<std::string> cors_origins;  // empty: reflect any Origin; else allow-list
  std::string raw_echo_path;              // conformance only: e.g. "/engine.io/" raw Engine.IO echo
  // Shutdown closes each session at a random moment within this window, so
  // the clients of a replica do not all reconnect elsewhere in the same instant.
  std::chrono::milliseconds drain_jitter{1000};

  // Bounds per connection and per session (docs/transport.md).
  std::chrono::milliseconds write_timeout{30000};  // one socket write (WebSocket and HTTP)
  // A WebSocket that wrote within this window holds what comes next until the
  // window ends, so frames that arrive meanwhile share one write; an idle one
  // writes at once. 0: every turn of the event loop writes what it queued.
  // Only while the worker sends at least write_delay_min_rate frames per
  // second (0: always): a lightly loaded worker writes at once.
  std::chrono::microseconds write_delay{20000};
  double write_delay_min_rate = 20000;
  std::chrono::milliseconds close_timeout{5000};  // graceful WebSocket close, then abort
  std::size_t max_binary_packet = 1'000'000;  // header + attachments of one pending binary packet
  std::chrono::milliseconds binary_timeout{10000};  // header to last attachment
  std::size_t max_connects = 10;                    // Socket.IO CONNECTs per session per window
  std::chrono::milliseconds connect_window{10000};
  // Rate budget per Engine.IO session, shared by its namespace sockets and
  // kept across namespace reconnects (Socket::take_tokens). Invalid packets
  // that do not close the session cost one token each. 0: no limit.
  double session_rate = 20.0;   // tokens per second
  double session_burst = 40.0;  // bucket size
  // Bounds per client IP and per process (docs/transport.md). 0 = no limit.
  std::size_t max_sessions_per_ip = 2000;           // Engine.IO sessions of one client address
  std::size_t max_pending_per_ip = 500;             // of those, not yet sent a Socket.IO CONNECT
  std::size_t max_http_connections_per_ip = 2000;   // TCP connections not upgraded, per peer
  std::string trusted_proxies = "127.0.0.0/8,::1";  // peers whose X-Forwarded-* are believed
  bool cors_any = false;                            // any Origin may connect (with credentials)
  std::size_t memory_budget_bytes = 0;  // resident memory beyond which new work is refused
  // Compression (docs/transport.md, "Compression"). permessage-deflate when
  // the client offers it (off by default, as in Node's Socket.IO), without
  // context takeover: a broadcast is compressed once per worker and shared,
  // and a connection holds no zlib state. Polling responses are gzipped when
  // the client accepts it. Only payloads of compress_threshold bytes or more.
  bool ws_deflate = false;
  bool http_compression = true;
  std::size_t compress_threshold = 1024;
  // The main listener's TLS (--tls-cert/--tls-key); null: plain TCP. The
  // admin listener stays plain.
  std::shared_ptr<const TlsContext> tls;
};

// What the client sent when it opened the Engine.IO session.
// What a session keeps of the request that opened it: one per Engine.IO
// session, shared by its sockets. No headers and no query: nothing here
// reads them, and at 100k+ connections each copy costs kilobytes.
struct Handshake {
  std::string remote_address;  // client IP: the peer, or X-Forwarded-For as told by trusted proxies
  std::string transport;       // "polling" or "websocket" at connect time
  std::int64_t issued_ms = 0;
};

enum class SendResult {
  ok,       // queued
  dropped,  // droppable packet not queued because the send queue is over half full
  closed,   // socket gone, or the queue overflowed and the connection was closed (slow reader)
};

// Ack callback handed to an event handler when the client asked for an ack.
// Call at most once, from any thread (it posts to the socket's worker).
using Ack = std::function<void(nlohmann::json args /* array */)>;

class Socket : public std::enable_shared_from_this<Socket> {
 public:
  virtual ~Socket() = default;

  virtual const std::string& id() const = 0;   // Socket.IO socket id (the CONNECT reply sid)
  virtual const std::string& nsp() const = 0;  // namespace, e.g. "/"
  virtual unsigned worker() const = 0;         // owning worker index
  virtual const Handshake& handshake() const = 0;
  virtual std::string transport_name() const = 0;  // current: "polling" or "websocket"
  virtual bool connected() const = 0;
  // Connection state recovery (Socket.IO 4.x): the private session id sent
  // in the CONNECT reply (empty when the namespace has no recovery hook), and
  // whether this socket took over an earlier one's id (Namespace::on_recover).
  virtual const std::string& pid() const = 0;
  virtual bool recovered() const = 0;
  // What the namespace's auth hooks attached at CONNECT (AuthResult::data),
  // as Socket.IO's socket.data: e.g. the identity a token proved. Null if none.
  virtual const std::shared_ptr<const void>& data() const = 0;
  // Names the Engine.IO session the socket rides on, the same for all its
  // namespaces (the Admin UI's clientId): derived from the session id, never
  // the session id itself (that is a bearer credential). 12 hex digits.
  virtual std::string client_id() const = 0;

  // Event handlers. args is the JSON array of arguments after the event name;
  // binary attachments appear as nlohmann::json::binary_t values in place.
  // ack is empty when the client did not ask for one.
  using EventHandler = std::function<void(const nlohmann::json& args, Ack ack)>;
  virtual void on(std::string event, EventHandler handler) = 0;
  // Called for events with no specific handler.
  virtual void on_any(
      std::function<void(const std::string& event, const nlohmann::json& args, Ack ack)> h) = 0;
  // Called once when the socket leaves its namespace, for whatever reason
  // ("client namespace disconnect", "transport close", "ping timeout",
  // "server namespace disconnect", "server shutting down", "slow reader", ...).
  virtual void on_disconnect(std::function<void(const std::string& reason)> handler) = 0;

  // Encode and send one event (args is a JSON array; binary_t values become attachments).
  virtual SendResult emit(std::string_view event, nlohmann::json args, bool droppable = false) = 0;
  // Send a packet already encoded by encode_event() for this socket's namespace.
  // The buffer is shared, never copied: one encode per broadcast.
  virtual SendResult send_encoded(const std::shared_ptr<const std::string>& packet,
                                  bool droppable = false) = 0;

  // Take cost tokens from the rate budget of this socket's Engine.IO session
  // (Options::session_rate/session_burst). The budget is shared by every
  // namespace socket of the session and survives namespace reconnects, so a
  // new CONNECT does not get a full bucket. False when the budget is empty.
  virtual bool take_tokens(double cost = 1.0) = 0;

  // Leave the namespace (sends DISCONNECT); close=true also closes the Engine.IO connection.
  virtual void disconnect(bool close = false) = 0;
};
using SocketPtr = std::shared_ptr<Socket>;

// Encode a text-only EVENT for namespace nsp ("/" omits the prefix):
//   encode_event("/", "new message", json::array({...})) -> 42["new message",{...}]
// The returned string is the Socket.IO packet including the Engine.IO "4" prefix.
std::shared_ptr<const std::string> encode_event(std::string_view nsp, std::string_view event,
                                                const nlohmann::json& args);
// The same with arguments that are JSON text already (each one a valid JSON
// value, e.g. a payload the bus kept as text): copied as they are.
std::shared_ptr<const std::string> encode_event_text(std::string_view nsp, std::string_view event,
                                                     std::initializer_list<std::string_view> args);

// What a CONNECT middleware says: refuse with the CONNECT_ERROR data
// ({"message": "...", "data": ...}), or accept, optionally attaching data to
// the socket (Socket::data(); a later hook's data replaces an earlier one's).
struct AuthResult {
  std::optional<nlohmann::json> refusal;
  std::shared_ptr<const void> data;
  AuthResult() = default;
  AuthResult(std::nullopt_t) {}                                           // NOLINT: accept
  AuthResult(std::optional<nlohmann::json> r) : refusal(std::move(r)) {}  // NOLINT: refuse or not
  static AuthResult accept(std::shared_ptr<const void> d) {
    AuthResult r;
    r.data = std::move(d);
    return r;
  }
};

class Namespace {
 public:
  virtual ~Namespace() = default;
  // Middleware run on CONNECT, in the order added, on the session's worker.
  using AuthHook = std::function<AuthResult(const Handshake&, const nlohmann::json& auth)>;
  virtual void use(AuthHook hook) = 0;
  // Called on the socket's worker right after the CONNECT reply was queued.
  virtual void on_connection(
      std::function<void(SocketPtr socket, const nlohmann::json& auth)> handler) = 0;
  // Connection state recovery. With a hook the CONNECT reply carries a pid
  // ({"sid", "pid"}) and a client that comes back sends {pid, offset} (both
  // strings) in its CONNECT auth. The hook, run on the session's worker after
  // the auth hooks, returns the socket id to give back (the reply then
  // carries the same pid: the client's socket.recovered is true), or nullopt
  // for a new socket with a new pid.
  using RecoverHook = std::function<std::optional<std::string>(
      const std::string& pid, const std::string& offset, const Handshake&)>;
  virtual void on_recover(RecoverHook hook) = 0;
  // Event handlers of every socket of the namespace: one table, not a set of
  // handlers per socket (at 100k sockets those cost about 1 KB each). Run on
  // the socket's worker; a socket's own Socket::on() handler for the same
  // event, or its on_any(), goes first. Register before the first CONNECT.
  using SocketEventHandler =
      std::function<void(Socket& socket, const nlohmann::json& args, Ack ack)>;
  virtual void on_event(std::string event, SocketEventHandler handler) = 0;
  // For events with no handler at all (neither the socket's nor the table's).
  virtual void on_any_event(std::function<void(Socket& socket, const std::string& event,
                                               const nlohmann::json& args, Ack ack)>
                                handler) = 0;
  // A CONNECT middleware that answers later (a password hash to check, say),
  // run after the use() hooks passed. done must be called exactly once, from
  // any thread; until then the session's other CONNECTs to this namespace
  // are refused as duplicates. One per namespace.
  using AsyncAuthHook = std::function<void(const Handshake&, const nlohmann::json& auth,
                                           std::function<void(AuthResult)> done)>;
  virtual void use_async(AsyncAuthHook hook) = 0;
};

// Sees every Socket.IO socket of every namespace: what the Admin UI shows
// (src/admin). Each call runs on the socket's worker. Installed before listen().
class SocketObserver {
 public:
  virtual ~SocketObserver() = default;
  virtual void connected(const SocketPtr& socket) = 0;
  virtual void disconnected(Socket& socket, const std::string& reason) = 0;
  // The socket's session moved from long-polling to WebSocket.
  virtual void upgraded(Socket& socket) = 0;
  // Whether event_received / event_sent are wanted now (checked per event).
  virtual bool watches_events() const = 0;
  // An event from the client, before its handler runs.
  virtual void event_received(Socket& socket, const std::string& event,
                              const nlohmann::json& args) = 0;
  // An event sent by Socket::emit() (not broadcasts: those are encoded once for many).
  virtual void event_sent(Socket& socket, std::string_view event, const nlohmann::json& args) = 0;
};

// Plain HTTP handled outside the Engine.IO path (static files, health, metrics).
struct HttpRequest {
  std::string method;
  std::string target;                          // path + query as received
  std::string path;                            // without query
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};
struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::shared_ptr<const std::string> body;  // shared so static files are not copied per request
};
// The HttpHandler also receives requests for the client bundle under the
// Engine.IO path, as Node's Socket.IO serves them: <path>socket.io.js,
// socket.io.min.js, socket.io.esm.min.js and their .map files (any request
// under <path> whose file name starts with "socket.io." and has no EIO query).
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;
// A handler that answers later (after the bus confirmed, say). respond must
// be called exactly once, from any thread; until then the connection reads
// nothing more (a pipelined request waits).
using HttpRespond = std::function<void(HttpResponse)>;
using AsyncHttpHandler = std::function<void(HttpRequest req, HttpRespond respond)>;

// The transport's figures on /metrics, each declared once here as
// X(field, type, help), the metric being chat_transport_<field>; Stats, the
// per-worker counters (worker_stats.hpp), their sum and the /metrics lines
// are made from these lists.
// Per worker, signed (summed over workers):
#define CHAT_TRANSPORT_WORKER_GAUGES(X)                 \
  X(connections_open, gauge, "Engine.IO sessions open") \
  X(websocket_open, gauge, "Sessions on WebSocket")     \
  X(polling_open, gauge, "Sessions on long-polling")
// Per worker:
#define CHAT_TRANSPORT_WORKER_COUNTERS(X)                                                          \
  X(connections_total, counter, "Sessions opened")                                                 \
  X(upgrades_total, counter, "Polling to WebSocket upgrades")                                      \
  X(http_requests_total, counter, "HTTP requests")                                                 \
  X(bad_requests_total, counter, "Engine.IO requests refused with 4xx")                            \
  X(payload_too_large_total, counter, "Bodies or messages over max payload")                       \
  X(protocol_errors_total, counter, "Sessions closed for invalid packets")                         \
  X(ping_timeouts_total, counter, "Sessions closed for a missing pong")                            \
  X(slow_reader_closes_total, counter, "Connections closed because their send queue overflowed")   \
  X(dropped_packets_total, counter, "Droppable packets skipped for slow readers")                  \
  X(packets_in_total, counter, "Engine.IO packets received")                                       \
  X(packets_out_total, counter, "Engine.IO packets sent")                                          \
  X(bytes_in_total, counter, "Payload bytes received")                                             \
  X(bytes_out_total, counter, "Payload bytes sent")                                                \
  X(accept_errors_total, counter, "Failed accepts (EMFILE and others); the loop backs off")        \
  X(connections_refused_total, counter, "TCP connections refused: peer at max-connections-per-ip") \
  X(ws_writes_total, counter,                                                                      \
    "Socket writes on WebSockets; each carries every frame queued at the time")                    \
  X(write_timeouts_total, counter, "Connections closed: a write took over write-timeout")          \
  X(close_timeouts_total, counter,                                                                 \
    "WebSockets aborted: the graceful close took over close-timeout")                              \
  X(binary_packet_aborts_total, counter,                                                           \
    "Sessions closed: a binary packet over its byte budget or deadline")                           \
  X(connects_limited_total, counter, "Socket.IO CONNECTs refused over the per-session budget")     \
  X(invalid_packets_total, counter,                                                                \
    "Invalid packets that cost a token of the session's rate budget")                              \
  X(sessions_refused_ip_total, counter,                                                            \
    "Handshakes refused (503): client address at max-sessions-per-ip")                             \
  X(sessions_refused_pending_total, counter,                                                       \
    "Handshakes refused (503): client address at max-pending-per-ip")                              \
  X(sessions_refused_cap_total, counter,                                                           \
    "Handshakes refused (503): server at max-connections sessions")                                \
  X(sessions_refused_memory_total, counter,                                                        \
    "Handshakes refused (503): resident memory over the budget")                                   \
  X(origin_refused_total, counter, "Engine.IO requests refused (403) for their Origin")            \
  X(deflate_sessions_total, counter, "WebSockets that negotiated permessage-deflate")              \
  X(compressed_frames_total, counter, "WebSocket frames sent compressed (permessage-deflate)")     \
  X(compressed_responses_total, counter, "Long-polling responses sent gzipped")
// Of the whole server:
#define CHAT_TRANSPORT_SERVER_COUNTERS(X)   \
  X(connects_refused_memory_total, counter, \
    "Socket.IO CONNECTs refused (CONNECT_ERROR): resident memory over the budget")

struct Stats {
#define CHAT_TRANSPORT_STATS_FIELD(field, type, help) std::uint64_t field = 0;
  CHAT_TRANSPORT_WORKER_GAUGES(CHAT_TRANSPORT_STATS_FIELD)
  CHAT_TRANSPORT_WORKER_COUNTERS(CHAT_TRANSPORT_STATS_FIELD)
  CHAT_TRANSPORT_SERVER_COUNTERS(CHAT_TRANSPORT_STATS_FIELD)
#undef CHAT_TRANSPORT_STATS_FIELD
  std::uint64_t memory_over_budget = 0;  // 1 while resident memory is over the budget
};

class Server {
 public:
  static std::unique_ptr<Server> create(runtime::Workers& workers, Options options);
  virtual ~Server() = default;

  // Register namespaces before listen(). "/" always exists.
  virtual Namespace& of(const std::string& name) = 0;
  virtual void set_http_handler(HttpHandler handler) = 0;
  // Requests of the main listener whose path starts with prefix (e.g.
  // "/api/") go to handler instead of the HttpHandler. Before listen().
  virtual void set_async_http_handler(std::string prefix, AsyncHttpHandler handler) = 0;

  // Bind and start accepting. Returns the bound port (useful with port 0).
  // Throws std::system_error on bind failure (start-up only).
  virtual std::uint16_t listen(const std::string& host, std::uint16_t port) = 0;

  // Graceful shutdown: stop accepting, close every session's transport (no
  // Socket.IO DISCONNECT, so official clients reconnect by themselves), spread
  // over drain_jitter, then call done (from some worker thread).
  virtual void shutdown(std::function<void()> done) = 0;

  virtual Stats stats() const = 0;

  // The operations listener (/metrics, detailed /readyz): plain HTTP only,
  // answered by handler, no Engine.IO. Call before or after listen().
  virtual std::uint16_t listen_admin(const std::string& host, std::uint16_t port,
                                     HttpHandler handler) = 0;

  // Install the observer of every socket (at most one; before listen()).
  virtual void set_observer(std::shared_ptr<SocketObserver> observer) = 0;
};

}  // namespace chat::transport
