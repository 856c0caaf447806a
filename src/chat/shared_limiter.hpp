// Token buckets shared by every worker, one per key (a client address, a
// room). Sharded by key, one short lock per check; a bucket that has been
// idle long enough to be full again is forgotten, so the table holds only
// keys active in the last burst/rate seconds.
#pragma once

#include "chat/rate_limiter.hpp"

#include <array>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

namespace chat::app {

class SharedLimiter {
 public:
  using Clock = RateLimiter::Clock;

  SharedLimiter(double rate_per_second, double burst) : rate_(rate_per_second), burst_(burst) {}

  // Take one token of key's bucket; false when it is empty. rate 0: always true.
  bool allow(const std::string& key, Clock::time_point now = Clock::now()) {
    if (rate_ <= 0) return true;
    auto& shard = shards_[std::hash<std::string>{}(key) % shards_.size()];
    std::lock_guard lk(shard.mu);
    if (++shard.ops % 4096 == 0) prune(shard, now);
    auto it = shard.buckets.find(key);
    if (it == shard.buckets.end())
      it = shard.buckets.emplace(key, Entry{RateLimiter(rate_, burst_, now), now}).first;
    it->second.last = now;
    return it->second.bucket.allow(now);
  }

  // Keys with a bucket now (for tests and metrics).
  std::size_t size() {
    std::size_t n = 0;
    for (auto& s : shards_) {
      std::lock_guard lk(s.mu);
      n += s.buckets.size();
    }
    return n;
  }

 private:
  struct Entry {
    RateLimiter bucket;
    Clock::time_point last;
  };
  struct alignas(64) Shard {
    std::mutex mu;
    std::unordered_map<std::string, Entry> buckets;
    std::uint64_t ops = 0;
  };

  void prune(Shard& shard, Clock::time_point now) {
    const auto refill = std::chrono::duration<double>(burst_ / rate_);
    for (auto it = shard.buckets.begin(); it != shard.buckets.end();)
      it = now - it->second.last > refill ? shard.buckets.erase(it) : std::next(it);
  }

  double rate_;
  double burst_;
  std::array<Shard, 16> shards_;
};

}  // namespace chat::app
