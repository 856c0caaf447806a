// Command-line and environment configuration; see config.hpp.
#include "server/config.hpp"

#include "admin/password.hpp"

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "transport/net_policy.hpp"
#include "transport/tls.hpp"

namespace chat::server {

namespace {
std::string default_replica_id() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  return std::string(host[0] ? host : "replica") + "-" + std::to_string(getpid());
}

// The memory limit of this process's cgroup (v2, then v1); 0 when none.
std::size_t cgroup_memory_limit() {
  for (const char* path :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream f(path);
    std::string v;
    if (!(f >> v) || v == "max") continue;
    try {
      const auto n = std::stoull(v);
      if (n > 0 && n < (std::uint64_t{1} << 60)) return static_cast<std::size_t>(n);
    } catch (const std::exception&) {
    }
  }
  return 0;
}
}  // namespace

Config parse_config(int argc, char** argv) {
  Config c;
  CLI::App cli{"chat-server: a horizontally scalable Socket.IO chat server"};
  cli.get_formatter()->column_width(36);
  std::uint64_t ping_interval = 25000, ping_timeout = 20000, upgrade_timeout = 10000,
                connect_timeout = 10000;
  std::uint64_t write_timeout = 30000, close_timeout = 5000, binary_timeout = 10000,
                connect_window = 10000, write_delay = 20000;

  cli.add_option("--host", c.host, "Address to listen on")->envname("HOST")->capture_default_str();
  cli.add_option("--port", c.port, "TCP port (0 picks a free one)")
      ->envname("PORT")
      ->capture_default_str();
  cli.add_option("--replica-id", c.replica_id,
                 "Replica name shown to users (default: hostname-pid)")
      ->envname("REPLICA_ID");
  cli.add_option("--threads", c.threads, "I/O threads (0: one per core)")
      ->envname("THREADS")
      ->capture_default_str();
  cli.add_option("--amqp-url", c.amqp_url,
                 "RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672, or the URLs of a RabbitMQ "
                 "cluster's nodes separated by commas (failover) (empty: in-process bus)")
      ->envname("AMQP_URL");
  cli.add_option("--amqp-exchange", c.amqp_exchange, "RabbitMQ exchange (topic, durable)")
      ->envname("AMQP_EXCHANGE")
      ->capture_default_str();
  cli.add_option("--outbox-max", c.outbox_max, "Messages held while the broker is unreachable")
      ->envname("OUTBOX_MAX")
      ->capture_default_str();
  cli.add_option("--presence-ttl", c.presence_ttl_ms,
                 "A replica not heard from for this long (ms) is forgotten with its users; "
                 "heartbeats go every second")
      ->envname("PRESENCE_TTL")
      ->check(CLI::Range(2000u, 600000u))
      ->capture_default_str();
  cli.add_option("--outbox-max-bytes", c.outbox_max_bytes,
                 "Bytes of messages held for the broker (queued and unconfirmed); more are refused")
      ->envname("OUTBOX_MAX_BYTES")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 40))
      ->capture_default_str();
  cli.add_option("--history-stream", c.history_stream,
                 "RabbitMQ stream that stores every room message and that replicas read room "
                 "traffic from (default: <exchange>.history; off: no stream, per-replica queues)")
      ->envname("HISTORY_STREAM");
  cli.add_option("--history-max-age", c.history_max_age,
                 "How long the stream keeps messages (RabbitMQ x-max-age: 7D, 12h, 30m ...)")
      ->envname("HISTORY_MAX_AGE")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            if (v.size() < 2 || v.find_first_not_of("0123456789") != v.size() - 1 ||
                std::string_view("YMDhms").find(v.back()) == std::string_view::npos)
              return "expected a number and one of Y M D h m s, e.g. 7D";
            return {};
          },
          "AGE"))
      ->capture_default_str();
  cli.add_option("--history-max-bytes", c.history_max_bytes,
                 "Bytes the stream keeps at most (RabbitMQ x-max-length-bytes)")
      ->envname("HISTORY_MAX_BYTES")
      ->check(CLI::Range(std::uint64_t{1} << 20, std::uint64_t{1} << 50))
      ->capture_default_str();
  cli.add_option("--history-backfill", c.history_backfill_s,
                 "Seconds of the stream a starting replica reads back to fill its history")
      ->envname("HISTORY_BACKFILL")
      ->check(CLI::Range(0u, 31u * 24 * 3600))
      ->capture_default_str();
  cli.add_option("--history-partitions", c.history_partitions,
                 "Streams the history is split into by room hash; a replica reads only those of "
                 "its rooms (1: one stream read by all; the same on every replica)")
      ->envname("HISTORY_PARTITIONS")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  cli.add_option("--history", c.history,
                 "Last messages of a room sent with `join room` and `add user` replies (0: none)")
      ->envname("HISTORY")
      ->check(CLI::Range(std::size_t{0}, std::size_t{500}))
      ->capture_default_str();
  cli.add_option("--history-rooms", c.history_rooms,
                 "Rooms whose last messages a replica keeps in memory (the quietest go first)")
      ->envname("HISTORY_ROOMS")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000}))
      ->capture_default_str();
  cli.add_option("--recovery-window", c.recovery_window_ms,
                 "Connection state recovery: a client that comes back within this many ms (to "
                 "any replica) gets its socket id, rooms and login back and every message it "
                 "missed (Socket.IO maxDisconnectionDuration; 0: off)")
      ->envname("RECOVERY_WINDOW")
      ->check(CLI::Range(0u, 24u * 3600 * 1000))
      ->capture_default_str();
  cli.add_option("--leave-grace", c.leave_grace_ms,
                 "With recovery: a logged-in user whose connection dropped (not a ping timeout, "
                 "not a disconnect on purpose) is announced as gone (user left, presence) only "
                 "after this many ms, and not at all when it is back by then on any replica")
      ->envname("LEAVE_GRACE")
      ->check(CLI::Range(0u, 60000u))
      ->capture_default_str();
  cli.add_option("--recovery-messages", c.recovery_messages,
                 "Newest messages of all rooms a replica keeps in memory for recovery; a client "
                 "that missed more gets recovered=false and the room history")
      ->envname("RECOVERY_MESSAGES")
      ->check(CLI::Range(std::size_t{1000}, std::size_t{100'000'000}))
      ->capture_default_str();
  cli.add_option("--amqp-max-message", c.amqp_max_message,
                 "Largest broker message read, bytes (larger ones are counted and dropped)")
      ->envname("AMQP_MAX_MESSAGE")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 30))
      ->capture_default_str();
  cli.add_option("--static-root", c.static_root, "Folder with the web page")
      ->envname("STATIC_ROOT")
      ->capture_default_str();
  cli.add_option("--client-dist", c.client_dist, "Folder with the socket.io-client dist bundle")
      ->envname("CLIENT_DIST")
      ->capture_default_str();
  cli.add_option("--log-level", c.log_level, "trace, debug, info, warn, error")
      ->envname("LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  cli.add_option("--transports", c.transports, "Allowed transports: polling,websocket")
      ->envname("TRANSPORTS")
      ->capture_default_str();
  cli.add_option("--cors-origin", c.cors_origin,
                 "Comma-separated origins allowed besides the server's own, e.g. "
                 "https://chat.example.com")
      ->envname("CORS_ORIGIN");
  cli.add_flag("--cors-any", c.transport.cors_any,
               "Let a page from any origin use the server, with credentials (unsafe on the "
               "internet; tests and protocol suites)")
      ->envname("CORS_ANY");
  cli.add_option("--trusted-proxies", c.transport.trusted_proxies,
                 "Addresses/CIDR blocks whose X-Forwarded-For/-Proto/-Host are believed "
                 "(\"none\": no proxy)")
      ->envname("TRUSTED_PROXIES")
      ->capture_default_str();
  cli.add_option("--max-sessions-per-ip", c.transport.max_sessions_per_ip,
                 "Engine.IO sessions of one client address (0: no limit)")
      ->envname("MAX_SESSIONS_PER_IP")
      ->capture_default_str();
  cli.add_option("--max-pending-per-ip", c.transport.max_pending_per_ip,
                 "Sessions of one client address not yet connected to a namespace (0: no limit)")
      ->envname("MAX_PENDING_PER_IP")
      ->capture_default_str();
  cli.add_option("--max-connections-per-ip", c.transport.max_http_connections_per_ip,
                 "HTTP connections of one peer address, trusted proxies excepted (0: no limit)")
      ->envname("MAX_CONNECTIONS_PER_IP")
      ->capture_default_str();
  cli.add_flag("--ws-deflate", c.transport.ws_deflate,
               "permessage-deflate on WebSockets when the client offers it (no context "
               "takeover: a broadcast is compressed once per thread, no zlib state per connection)")
      ->envname("WS_DEFLATE");
  cli.add_option("--http-compression", c.transport.http_compression,
                 "gzip long-polling responses when the client accepts it")
      ->envname("HTTP_COMPRESSION")
      ->capture_default_str();
  cli.add_option("--compress-threshold", c.transport.compress_threshold,
                 "Smallest payload compressed, bytes (WebSocket messages and polling responses)")
      ->envname("COMPRESS_THRESHOLD")
      ->capture_default_str();
  cli.add_option("--memory-budget-mb", c.memory_budget_mb,
                 "Resident memory beyond which new sessions get 503 and CONNECTs an error "
                 "(0: 90% of the cgroup memory limit, none without one)")
      ->envname("MEMORY_BUDGET_MB")
      ->capture_default_str();
  std::string tls_cert, tls_key;
  cli.add_option("--tls-cert", tls_cert,
                 "PEM certificate (chain, leaf first) for HTTPS/WSS on --port; with --tls-key. "
                 "The admin listener stays plain")
      ->envname("TLS_CERT");
  cli.add_option("--tls-key", tls_key, "PEM private key of --tls-cert")->envname("TLS_KEY");
  cli.add_option("--admin-host", c.admin_host,
                 "Address of the operations listener (/metrics, detailed /readyz)")
      ->envname("ADMIN_HOST")
      ->capture_default_str();
  cli.add_option("--admin-port", c.admin_port,
                 "Port of the operations listener (0 picks a free one)")
      ->envname("ADMIN_PORT")
      ->capture_default_str();
  auto* ping_interval_opt =
      cli.add_option("--ping-interval", ping_interval, "Engine.IO ping interval, ms")
          ->envname("PING_INTERVAL")
          ->capture_default_str();
  auto* ping_timeout_opt =
      cli.add_option("--ping-timeout", ping_timeout, "Engine.IO ping timeout, ms")
          ->envname("PING_TIMEOUT")
          ->capture_default_str();
  cli.add_option("--upgrade-timeout", upgrade_timeout, "Polling to WebSocket upgrade timeout, ms")
      ->envname("UPGRADE_TIMEOUT")
      ->capture_default_str();
  cli.add_option("--connect-timeout", connect_timeout, "Time allowed for the Socket.IO CONNECT, ms")
      ->envname("CONNECT_TIMEOUT")
      ->capture_default_str();
  cli.add_option("--max-payload", c.transport.max_payload, "Largest message / polling body, bytes")
      ->envname("MAX_PAYLOAD")
      ->capture_default_str();
  cli.add_option("--max-send-queue", c.transport.max_send_queue_bytes,
                 "Per-connection send queue, bytes; a slow reader over it is disconnected")
      ->envname("MAX_SEND_QUEUE")
      ->capture_default_str();
  cli.add_option("--max-connections", c.transport.max_connections,
                 "Engine.IO sessions held at once; a handshake over it gets 503 (0: no limit)")
      ->envname("MAX_CONNECTIONS")
      ->capture_default_str();
  cli.add_option("--max-attachments", c.transport.max_attachments, "Binary attachments per packet")
      ->envname("MAX_ATTACHMENTS")
      ->capture_default_str();
  cli.add_option("--write-timeout-ms", write_timeout,
                 "Longest socket write before the peer is disconnected, ms")
      ->envname("WRITE_TIMEOUT_MS")
      ->capture_default_str();
  cli.add_option("--write-delay-us", write_delay,
                 "A WebSocket that wrote within this many microseconds holds its next frames "
                 "until then, so frames arriving meanwhile share one write (fewer system calls "
                 "under load; an idle connection writes at once); 0: off")
      ->envname("WRITE_DELAY_US")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cli.add_option("--write-delay-min-rate", c.transport.write_delay_min_rate,
                 "The write delay applies only while an I/O thread sends at least this many "
                 "frames per second (judged every 100 ms); below, every frame is written at "
                 "once. 0: always")
      ->envname("WRITE_DELAY_MIN_RATE")
      ->check(CLI::Range(0.0, 1e9))
      ->capture_default_str();
  cli.add_option("--close-timeout-ms", close_timeout,
                 "Longest graceful WebSocket close before the socket is dropped, ms")
      ->envname("CLOSE_TIMEOUT_MS")
      ->capture_default_str();
  cli.add_option("--max-binary-packet", c.transport.max_binary_packet,
                 "Bytes of one binary packet (header and attachments) held while it arrives")
      ->envname("MAX_BINARY_PACKET")
      ->capture_default_str();
  cli.add_option("--binary-timeout-ms", binary_timeout,
                 "Time for the attachments of a binary packet to arrive, ms")
      ->envname("BINARY_TIMEOUT_MS")
      ->capture_default_str();
  cli.add_option("--max-connects", c.transport.max_connects,
                 "Socket.IO CONNECTs per session per --connect-window-ms")
      ->envname("MAX_CONNECTS")
      ->capture_default_str();
  cli.add_option("--connect-window-ms", connect_window, "Window of --max-connects, ms")
      ->envname("CONNECT_WINDOW_MS")
      ->capture_default_str();
  cli.add_option("--max-name", c.limits.max_name, "Longest user name, characters")
      ->envname("MAX_NAME")
      ->capture_default_str();
  cli.add_option("--max-message", c.limits.max_message, "Longest message, characters")
      ->envname("MAX_MESSAGE")
      ->capture_default_str();
  cli.add_option("--max-rooms", c.limits.max_rooms_per_user, "Rooms one user may be in")
      ->envname("MAX_ROOMS")
      ->capture_default_str();
  cli.add_option("--rate", c.limits.rate_per_second,
                 "Chat events per user per second (0: no limit)")
      ->envname("RATE")
      ->capture_default_str();
  cli.add_option("--burst", c.limits.burst, "Burst of chat events per user")
      ->envname("BURST")
      ->capture_default_str();
  cli.add_option("--ip-rate", c.limits.ip_rate_per_second,
                 "Chat events and CONNECTs per client address per second (0: no limit)")
      ->envname("IP_RATE")
      ->capture_default_str();
  cli.add_option("--ip-burst", c.limits.ip_burst, "Burst of chat events per client address")
      ->envname("IP_BURST")
      ->capture_default_str();
  cli.add_option("--room-rate", c.limits.room_rate_per_second,
                 "Messages per room per second on this replica (0: no limit)")
      ->envname("ROOM_RATE")
      ->capture_default_str();
  cli.add_option("--room-burst", c.limits.room_burst, "Burst of messages per room")
      ->envname("ROOM_BURST")
      ->capture_default_str();
  cli.add_option("--max-list-rooms", c.limits.max_list_rooms,
                 "Rooms returned by \"list rooms\" (the largest first)")
      ->envname("MAX_LIST_ROOMS")
      ->capture_default_str();
  cli.add_option("--default-room", c.limits.default_room, "Room every user joins at login")
      ->envname("DEFAULT_ROOM")
      ->capture_default_str();
  cli.add_option("--drain-timeout", c.drain_timeout_ms, "Longest graceful shutdown, ms")
      ->envname("DRAIN_TIMEOUT")
      ->capture_default_str();
  unsigned drain_jitter = 1000;
  cli.add_option("--drain-jitter", drain_jitter,
                 "Window over which a shutdown closes its sessions (ms), so their clients do not "
                 "all reconnect elsewhere at once")
      ->envname("DRAIN_JITTER")
      ->capture_default_str();
  cli.add_option("--auth", c.auth,
                 "Who users are: none (any name, the open demo) or jwt (a signed token in the "
                 "CONNECT auth: {auth: {token}})")
      ->envname("AUTH")
      ->check(CLI::IsMember({"none", "jwt"}))
      ->capture_default_str();
  cli.add_option("--jwt-secret", c.jwt.secret,
                 "HS256/384/512 secret, 32 bytes or more (prefer JWT_SECRET or --jwt-secret-file: "
                 "flags show in ps)")
      ->envname("JWT_SECRET");
  std::string secret_file;
  cli.add_option("--jwt-secret-file", secret_file, "File holding the HS256 secret")
      ->envname("JWT_SECRET_FILE");
  cli.add_option("--jwt-public-key", c.jwt.public_key_file,
                 "PEM public key file for RS256/384/512 or ES256/384/512 tokens")
      ->envname("JWT_PUBLIC_KEY");
  cli.add_option("--jwt-jwks", c.jwt.jwks_file,
                 "JWKS file ({\"keys\": [...]}, RSA or EC) whose key is picked by the token's kid")
      ->envname("JWT_JWKS");
  cli.add_option("--jwt-issuer", c.jwt.issuer, "Required \"iss\" of tokens (empty: any)")
      ->envname("JWT_ISSUER");
  cli.add_option("--jwt-audience", c.jwt.audience, "Required \"aud\" of tokens (empty: any)")
      ->envname("JWT_AUDIENCE");
  unsigned jwt_leeway = 30;
  cli.add_option("--jwt-leeway", jwt_leeway, "Clock skew allowed for exp and nbf, seconds")
      ->envname("JWT_LEEWAY")
      ->capture_default_str();
  std::string restricted_rooms;
  cli.add_option("--restricted-rooms", restricted_rooms,
                 "Rooms only a token's \"rooms\" claim (or admin) lets users join: patterns, "
                 "comma-separated, '*' for any run of characters (--auth jwt)")
      ->envname("RESTRICTED_ROOMS");
  std::string api_keys_file;
  cli.add_option("--api-keys", api_keys_file,
                 "File of API keys for the publish API (POST /api/rooms/{room}/messages): lines "
                 "\"<name> <secret>|sha256:<hex> [rooms=<patterns>] [rate=N] [burst=N]\"; "
                 "unset: the API is off")
      ->envname("API_KEYS_FILE");
  cli.add_option("--api-rate", c.api_rate,
                 "Publish API: messages per second per key on each replica (a key's rate= "
                 "overrides; 0: no limit)")
      ->envname("API_RATE")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cli.add_option("--api-burst", c.api_burst,
                 "Publish API: burst per key (a key's burst= overrides)")
      ->envname("API_BURST")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cli.add_option(
         "--api-idempotency-keys", c.api_idempotency_keys,
         "Publish API: answers to Idempotency-Key requests kept (24 h at most), per replica")
      ->envname("API_IDEMPOTENCY_KEYS")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cli.add_flag("--admin-ui", c.admin_ui,
               "Serve the official Socket.IO Admin UI at /admin/ and its namespace /admin, for "
               "the whole cluster")
      ->envname("ADMIN_UI");
  cli.add_option("--admin-ui-auth", c.admin_ui_auth,
                 "Admin UI login: basic (--admin-ui-user and a bcrypt password hash) or none "
                 "(anyone who reaches /admin: local work only)")
      ->envname("ADMIN_UI_AUTH")
      ->check(CLI::IsMember({"basic", "none"}))
      ->capture_default_str();
  cli.add_option("--admin-ui-user", c.admin_ui_user, "Admin UI user name")
      ->envname("ADMIN_UI_USER")
      ->capture_default_str();
  cli.add_option("--admin-ui-password-hash", c.admin_ui_password_hash,
                 "Admin UI password, bcrypt-hashed ($2a$/$2b$/$2y$, e.g. from htpasswd -nbBC 10)")
      ->envname("ADMIN_UI_PASSWORD_HASH");
  std::string admin_hash_file;
  cli.add_option("--admin-ui-password-hash-file", admin_hash_file,
                 "File holding the bcrypt hash (a swarm secret, say)")
      ->envname("ADMIN_UI_PASSWORD_HASH_FILE");
  cli.add_option("--admin-ui-mode", c.admin_ui_mode,
                 "development: the sockets, rooms and live events of every replica; production: "
                 "server stats only")
      ->envname("ADMIN_UI_MODE")
      ->check(CLI::IsMember({"development", "production"}))
      ->capture_default_str();
  cli.add_flag("--admin-ui-readonly", c.admin_ui_readonly,
               "Admin UI without commands (emit, join, leave, disconnect)")
      ->envname("ADMIN_UI_READONLY");
  cli.add_option("--admin-ui-dist", c.admin_ui_dist,
                 "Folder with the Admin UI's files (@socket.io/admin-ui ui/dist)")
      ->envname("ADMIN_UI_DIST")
      ->capture_default_str();
  cli.add_flag(
         "--conformance", c.conformance,
         "Protocol test mode for the public Engine.IO/Socket.IO suites (raw echo on /engine.io/, "
         "ping 300/200 ms, namespace /custom)")
      ->envname("CONFORMANCE");

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(cli.exit(e));
  }

  c.transport.ping_interval = std::chrono::milliseconds(ping_interval);
  c.transport.ping_timeout = std::chrono::milliseconds(ping_timeout);
  c.transport.upgrade_timeout = std::chrono::milliseconds(upgrade_timeout);
  c.transport.connect_timeout = std::chrono::milliseconds(connect_timeout);
  c.transport.drain_jitter = std::chrono::milliseconds(drain_jitter);
  c.transport.write_timeout = std::chrono::milliseconds(write_timeout);
  c.transport.write_delay = std::chrono::microseconds(write_delay);
  c.transport.close_timeout = std::chrono::milliseconds(close_timeout);
  c.transport.binary_timeout = std::chrono::milliseconds(binary_timeout);
  c.transport.connect_window = std::chrono::milliseconds(connect_window);
  // The chat rate limit is a budget per Engine.IO session, kept by the transport.
  c.transport.session_rate = c.limits.rate_per_second;
  c.transport.session_burst = c.limits.burst;
  if (c.replica_id.empty()) c.replica_id = default_replica_id();

  c.transport.allow_polling = c.transport.allow_websocket = false;
  std::stringstream ts(c.transports);
  for (std::string t; std::getline(ts, t, ',');) {
    if (t == "polling")
      c.transport.allow_polling = true;
    else if (t == "websocket")
      c.transport.allow_websocket = true;
    else if (!t.empty()) {
      std::cerr << "chat-server: unknown transport \"" << t << "\" (use polling,websocket)\n";
      std::exit(2);
    }
  }
  if (!c.transport.allow_polling && !c.transport.allow_websocket) {
    std::cerr << "chat-server: --transports allows nothing\n";
    std::exit(2);
  }
  if (drain_jitter >= c.drain_timeout_ms) {
    std::cerr << "chat-server: --drain-jitter must be shorter than --drain-timeout\n";
    std::exit(2);
  }
  std::stringstream os(c.cors_origin);
  for (std::string o; std::getline(os, o, ',');)
    if (!o.empty()) c.transport.cors_origins.push_back(o);

  try {
    (void)transport::TrustedProxies::parse(c.transport.trusted_proxies);
  } catch (const std::invalid_argument& e) {
    std::cerr << "chat-server: --trusted-proxies: " << e.what() << "\n";
    std::exit(2);
  }
  for (const auto& o : c.transport.cors_origins) {
    if (!transport::normalize_origin(o)) {
      std::cerr << "chat-server: --cors-origin: \"" << o
                << "\" is not an origin (scheme://host[:port])\n";
      std::exit(2);
    }
  }
  for (auto& o : c.transport.cors_origins) o = *transport::normalize_origin(o);
  if (c.memory_budget_mb > 0)
    c.transport.memory_budget_bytes = c.memory_budget_mb << 20;
  else if (const auto limit = cgroup_memory_limit())
    c.transport.memory_budget_bytes = limit / 10 * 9;

  if (tls_cert.empty() != tls_key.empty()) {
    std::cerr << "chat-server: --tls-cert and --tls-key go together\n";
    std::exit(2);
  }
  if (!tls_cert.empty()) {
    try {
      c.transport.tls = std::make_shared<const transport::TlsContext>(tls_cert, tls_key);
    } catch (const std::exception& e) {
      std::cerr << "chat-server: " << e.what() << "\n";
      std::exit(2);
    }
  }

  if (!secret_file.empty()) {
    std::ifstream f(secret_file, std::ios::binary);
    std::stringstream s;
    if (!f || !(s << f.rdbuf())) {
      std::cerr << "chat-server: --jwt-secret-file: cannot read " << secret_file << "\n";
      std::exit(2);
    }
    c.jwt.secret = s.str();
    while (!c.jwt.secret.empty() && (c.jwt.secret.back() == '\n' || c.jwt.secret.back() == '\r'))
      c.jwt.secret.pop_back();
  }
  c.jwt.leeway = std::chrono::seconds(jwt_leeway);
  std::vector<std::string> patterns;
  std::stringstream rs(restricted_rooms);
  for (std::string p; std::getline(rs, p, ',');)
    if (!p.empty()) patterns.push_back(p);
  c.room_policy = auth::RoomPolicy(patterns);
  if (c.auth == "jwt") {
    if (c.room_policy.restricted(c.limits.default_room)) {
      std::cerr << "chat-server: --restricted-rooms: the default room \"" << c.limits.default_room
                << "\" must stay public (every user joins it at login)\n";
      std::exit(2);
    }
    try {
      c.verifier = std::make_shared<const auth::JwtVerifier>(c.jwt);
    } catch (const std::invalid_argument& e) {
      std::cerr << "chat-server: " << e.what() << "\n";
      std::exit(2);
    }
  } else if (!c.jwt.secret.empty() || !c.jwt.public_key_file.empty() || !c.jwt.jwks_file.empty() ||
             !patterns.empty()) {
    std::cerr << "chat-server: --jwt-* and --restricted-rooms need --auth jwt\n";
    std::exit(2);
  }

  if (!api_keys_file.empty()) {
    try {
      c.api_keys = auth::load_api_keys(api_keys_file);
    } catch (const std::invalid_argument& e) {
      std::cerr << "chat-server: --api-keys: " << e.what() << "\n";
      std::exit(2);
    }
  }

  if (!admin_hash_file.empty()) {
    std::ifstream in(admin_hash_file);
    if (!in || !std::getline(in, c.admin_ui_password_hash)) {
      std::cerr << "chat-server: --admin-ui-password-hash-file: cannot read " << admin_hash_file
                << "\n";
      std::exit(2);
    }
    while (!c.admin_ui_password_hash.empty() &&
           std::isspace(static_cast<unsigned char>(c.admin_ui_password_hash.back())))
      c.admin_ui_password_hash.pop_back();
  }
  if (c.admin_ui && c.admin_ui_auth == "basic" &&
      !admin::PasswordChecker::valid_hash(c.admin_ui_password_hash)) {
    std::cerr << "chat-server: --admin-ui with --admin-ui-auth basic needs "
                 "--admin-ui-password-hash (bcrypt: $2a$/$2b$/$2y$, 60 characters)\n";
    std::exit(2);
  }

  if (c.conformance) {
    // The suites' timings, unless the heartbeat was set explicitly.
    if (ping_interval_opt->count() == 0) c.transport.ping_interval = std::chrono::milliseconds(300);
    if (ping_timeout_opt->count() == 0) c.transport.ping_timeout = std::chrono::milliseconds(200);
    c.transport.connect_timeout = std::chrono::milliseconds(1000);
    c.transport.max_payload = 1000000;
    c.transport.raw_echo_path = "/engine.io/";
    c.transport.cors_any = true;  // the suites' clients come from anywhere
  }
  return c;
}

}  // namespace chat::server
