// Config: every setting of the server, from flags and matching environment
// variables (flags win). parse_config prints --help / errors and exits.
#pragma once

#include "auth/api_keys.hpp"
#include "auth/identity.hpp"
#include "auth/jwt_verifier.hpp"
#include "chat/limits.hpp"
#include "transport/api.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace chat::server {

struct Config {
  std::string host = "0.0.0.0";
  std::uint16_t port = 3000;
  std::string replica_id;  // default: hostname-pid
  unsigned threads = 0;    // 0: one per core
  std::string amqp_url;    // empty: in-process bus
  std::string amqp_exchange = "chat";
  std::size_t outbox_max = 100000;
  std::size_t amqp_max_message = 16 * 1024 * 1024;  // bytes; larger broker messages are dropped
  std::size_t outbox_max_bytes = 64 * 1024 * 1024;  // chat publishes held for the broker
  unsigned presence_ttl_ms = 5000;  // a replica silent this long is forgotten, with its users
  // History (docs/cluster.md, "History"): the RabbitMQ stream, "off" for
  // per-replica queues only; empty: <exchange>.history.
  std::string history_stream;
  std::string history_max_age = "7D";
  std::uint64_t history_max_bytes = 1ULL << 30;
  unsigned history_backfill_s = 3600;
  unsigned history_partitions = 1;  // streams by room hash (docs/cluster.md, "Partitions")
  std::size_t history = 50;         // messages per room in join replies
  std::size_t history_rooms = 10000;
  unsigned recovery_window_ms = 120000;  // connection state recovery; 0: off
  unsigned leave_grace_ms = 5000;        // a dropped, recoverable user is announced gone after this
  std::size_t recovery_messages = 100000;
  std::string static_root = "web";
  std::string client_dist = "node_modules/socket.io-client/dist";
  std::string log_level = "info";
  std::string transports = "polling,websocket";
  std::string cors_origin;  // comma-separated origins allowed besides the server's own
  bool conformance = false;
  unsigned drain_timeout_ms = 10000;
  transport::Options transport;
  app::Limits limits;
  std::string admin_host = "127.0.0.1";  // operations listener: /metrics, detailed /readyz
  std::uint16_t admin_port = 9464;
  std::size_t memory_budget_mb = 0;  // 0: 90% of the cgroup memory limit, if any
  // Identity (docs/protocol.md, "Tokens"): "none" (any name) or "jwt".
  std::string auth = "none";
  auth::JwtOptions jwt;
  std::shared_ptr<const auth::JwtVerifier> verifier;  // built from jwt with --auth jwt
  auth::RoomPolicy room_policy;                       // --restricted-rooms
  // The publish API (docs/api.md): keys from --api-keys; none: off.
  std::vector<auth::ApiKey> api_keys;
  double api_rate = 20;  // messages per second per key, per replica
  double api_burst = 40;
  std::size_t api_idempotency_keys = 10000;
  // The official Socket.IO Admin UI (docs/admin.md): off by default.
  bool admin_ui = false;
  std::string admin_ui_auth = "basic";  // "basic" (user + bcrypt hash) or "none"
  std::string admin_ui_user = "admin";
  std::string admin_ui_password_hash;         // bcrypt; or read from admin_ui_password_hash_file
  std::string admin_ui_mode = "development";  // or "production": stats only
  bool admin_ui_readonly = false;
  std::string admin_ui_dist = "node_modules/@socket.io/admin-ui/ui/dist";
};

// Parse argv and the environment. Exits the process on --help or bad input.
Config parse_config(int argc, char** argv);

}  // namespace chat::server
