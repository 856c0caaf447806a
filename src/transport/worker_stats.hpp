// Per-worker transport counters. Each worker writes only its own block
// (relaxed atomics, one cache line apart), so counting costs no contention.
#pragma once

#include "transport/api.hpp"

#include <atomic>
#include <cstdint>

namespace chat::transport {

struct alignas(64) WorkerStats {
  std::atomic<std::int64_t> connections_open{0}, websocket_open{0}, polling_open{0};
  std::atomic<std::uint64_t> connections_total{0}, upgrades_total{0}, http_requests_total{0},
      bad_requests_total{0}, payload_too_large_total{0}, protocol_errors_total{0},
      ping_timeouts_total{0}, slow_reader_closes_total{0}, dropped_packets_total{0},
      packets_in_total{0}, packets_out_total{0}, bytes_in_total{0}, bytes_out_total{0},
      accept_errors_total{0}, connections_refused_total{0}, ws_writes_total{0},
      write_timeouts_total{0}, close_timeouts_total{0}, binary_packet_aborts_total{0},
      connects_limited_total{0}, invalid_packets_total{0}, sessions_refused_ip_total{0},
      sessions_refused_pending_total{0}, sessions_refused_cap_total{0},
      sessions_refused_memory_total{0}, origin_refused_total{0};

  template <class A, class V>
  static void add(A& a, V v) {
    a.fetch_add(v, std::memory_order_relaxed);
  }
};

}  // namespace chat::transport
