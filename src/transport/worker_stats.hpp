// Per-worker transport counters. Each worker writes only its own block
// (relaxed atomics, one cache line apart), so counting costs no contention.
#pragma once

#include "transport/api.hpp"

#include <atomic>
#include <cstdint>

namespace chat::transport {

struct alignas(64) WorkerStats {
#define CHAT_TRANSPORT_WORKER_GAUGE(field, type, help) std::atomic<std::int64_t> field{0};
#define CHAT_TRANSPORT_WORKER_COUNTER(field, type, help) std::atomic<std::uint64_t> field{0};
  CHAT_TRANSPORT_WORKER_GAUGES(CHAT_TRANSPORT_WORKER_GAUGE)
  CHAT_TRANSPORT_WORKER_COUNTERS(CHAT_TRANSPORT_WORKER_COUNTER)
#undef CHAT_TRANSPORT_WORKER_GAUGE
#undef CHAT_TRANSPORT_WORKER_COUNTER

  template <class A, class V>
  static void add(A& a, V v) {
    a.fetch_add(v, std::memory_order_relaxed);
  }
};

}  // namespace chat::transport
