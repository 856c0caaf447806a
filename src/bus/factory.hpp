// Bus factory: picks the bus implementation from the configuration.
//
// An empty amqp_url gives the in-process bus (one replica); otherwise the
// RabbitMQ bus, which connects in the background (start() never blocks on the
// broker, so a replica serves its local users while the broker is down).
#pragma once

#include "bus/bus.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace chat::bus {

struct BusConfig {
  std::string amqp_url;  // amqp://user:pass@host:port/vhost[,more nodes]; empty = in-process
  std::string exchange = "chat";    // durable topic exchange shared by all replicas
  std::string instance_id;          // unique per process; origin of published envelopes
  std::size_t outbox_max = 100000;  // publishes waiting for the broker before the oldest drop
  int heartbeat_s = 10;             // AMQP heartbeat; library calls block at most half of it
  int rpc_timeout_ms = 5000;        // bound on every synchronous AMQP method
  int reconnect_min_ms = 100;       // first reconnect delay (doubles, with jitter)
  int reconnect_max_ms = 2000;      // cap on the reconnect delay
  // After a reconnect, hold publishes this long (once the own consumer is up)
  // so the other replicas, reconnecting with their own backoff, have their
  // queues and bindings back before the broker routes (and confirms) anything.
  int resume_settle_ms = 2500;
  // Bytes of chat publishes held (outbox and in flight); beyond it a publish
  // is refused at once (PublishStatus::full).
  std::size_t outbox_max_bytes = 64 * 1024 * 1024;
  // Ids remembered per origin; 0: derived from max_inflight so that every
  // possible re-publish is recognised (dedupe_window_for, docs/cluster.md).
  std::size_t dedupe_window = 0;
  std::size_t max_batch = 256;                    // deliveries handed to the app per call
  std::size_t max_inflight = 10000;               // envelopes sent but not yet confirmed
  std::size_t max_message_bytes = kMaxBodyBytes;  // larger broker messages are dropped unread
  // A message the broker refuses (it closes the channel) is sent again alone;
  // after this many refusals on its own it is dropped as poison.
  int max_publish_attempts = 3;

  // History (docs/cluster.md, "History"): every room envelope is also stored
  // in one durable RabbitMQ stream bound to all room keys, so a publisher
  // confirm means "stored", and every replica reads room traffic from that
  // stream: one order and one position for all, resumed from the last
  // position after a reconnect. Off: per-replica queues bound per room.
  bool history = false;
  std::string stream;                           // default: <exchange>.history
  std::string stream_max_age = "7D";            // x-max-age (Y, M, D, h, m, s)
  std::uint64_t stream_max_bytes = 1ULL << 30;  // x-max-length-bytes
  // A replica that starts reads this far back, to fill its history.
  int history_backfill_s = 3600;
  std::uint16_t stream_prefetch = 2000;  // unacknowledged stream deliveries per consumer
  // History partitions (docs/cluster.md, "Partitions"): 1 keeps one stream
  // read by every replica; n > 1 gives streams <stream>.0 .. <stream>.<n-1>
  // (rooms by hash) and <stream>.reserved (session records), and a replica
  // reads only the partitions of its rooms. The same on every replica.
  std::uint32_t history_partitions = 1;
};

// Control traffic (routing key "cluster") has its own queue and in-flight
// bound, so chat traffic can neither delay nor crowd it out.
inline constexpr std::size_t kControlMax = 10000;      // queued
inline constexpr std::size_t kControlInflight = 1024;  // envelopes unconfirmed

// Envelopes a publisher may have to send again after a lost connection, at
// most: max_inflight chat envelopes and kControlInflight control ones, each
// plus one joined message taken whole at its bound.
std::size_t republish_bound(const BusConfig& config);
// The dedupe window a receiver needs: every id it may see again.
std::size_t dedupe_window_for(const BusConfig& config);

std::unique_ptr<Bus> make_bus(const BusConfig& config);

}  // namespace chat::bus
