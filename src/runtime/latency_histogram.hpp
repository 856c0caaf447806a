// A latency histogram for /metrics: fixed buckets in milliseconds, counts
// kept as relaxed atomics. Observed once per message (not per delivery), so
// one shared counter per observation costs nothing on the hot path.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace chat::runtime {

class LatencyHistogram {
 public:
  // Upper bounds in ms; a last bucket (+Inf) holds the rest.
  static constexpr std::array<std::int64_t, 13> kBoundsMs = {1,   2,   5,    10,   25,   50,   100,
                                                             250, 500, 1000, 2500, 5000, 10000};

  struct Snapshot {
    std::array<std::uint64_t, kBoundsMs.size() + 1> buckets{};  // not cumulative
    std::uint64_t count = 0;
    std::uint64_t sum_us = 0;
  };

  void observe_ms(double ms) {
    if (ms < 0) ms = 0;  // clocks of two machines: a message may seem to come from the future
    std::size_t i = 0;
    while (i < kBoundsMs.size() && ms > static_cast<double>(kBoundsMs[i])) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(static_cast<std::uint64_t>(ms * 1000), std::memory_order_relaxed);
  }

  Snapshot snapshot() const {
    Snapshot s;
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
      s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
      s.count += s.buckets[i];
    }
    s.sum_us = sum_us_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  std::array<std::atomic<std::uint64_t>, kBoundsMs.size() + 1> buckets_{};
  std::atomic<std::uint64_t> sum_us_{0};
};

}  // namespace chat::runtime
