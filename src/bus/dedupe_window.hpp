// DedupeWindow: remembers the last N envelope ids per origin.
//
// The publisher re-publishes what the broker had not confirmed when its
// connection died (at-least-once), so a receiver can see an envelope twice;
// this window drops the second copy. Re-publishes follow within seconds, so
// an origin silent for longer than idle_ttl (a replica that restarted under a
// new origin, or died) is forgotten. Used by one thread (the consumer).
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace chat::bus {

class DedupeWindow {
 public:
  using Clock = std::chrono::steady_clock;

  explicit DedupeWindow(std::size_t per_origin,
                        std::chrono::seconds idle_ttl = std::chrono::minutes(10))
      : per_origin_(per_origin), idle_ttl_(idle_ttl) {}

  // True the first time (origin, id) is seen within the window.
  bool first_time(const std::string& origin, const std::string& id,
                  Clock::time_point now = Clock::now());

  std::size_t origins() const { return by_origin_.size(); }

 private:
  struct Window {
    std::unordered_set<std::string> ids;
    std::deque<std::string> order;  // oldest first, for eviction
    Clock::time_point last_seen;
  };
  void forget_idle(Clock::time_point now);

  std::size_t per_origin_;
  std::chrono::seconds idle_ttl_;
  std::unordered_map<std::string, Window> by_origin_;
  Clock::time_point last_sweep_{};
};

}  // namespace chat::bus
