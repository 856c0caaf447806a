// DedupeWindow: remembers the last N envelope ids per origin.
//
// The publisher re-publishes what the broker had not confirmed when its
// connection died (at-least-once), so a receiver can see an envelope twice;
// this window drops the second copy. Re-publishes follow within seconds, so
// an origin silent for longer than idle_ttl (a replica that restarted under a
// new origin, or died) is forgotten. Used by one thread (the consumer).
//
// Ids of the form "<origin>-<counter>" (what replicas publish) are kept as
// numbers: no string copy, a cheap hash and compare per envelope. Any other
// id is kept as it is, in a window of its own of the same size.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
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

  // The counter of an id "<origin>-<decimal>", if it is one.
  static std::optional<std::uint64_t> counter_of(const std::string& origin, const std::string& id);

  std::size_t origins() const { return by_origin_.size(); }

 private:
  template <class T>
  struct Ids {
    std::unordered_set<T> set;
    std::deque<T> order;  // oldest first, for eviction
    // True the first time; keeps at most n.
    bool insert(T id, std::size_t n) {
      if (!set.insert(id).second) return false;
      order.push_back(std::move(id));
      if (order.size() > n) {
        set.erase(order.front());
        order.pop_front();
      }
      return true;
    }
  };
  struct Window {
    Ids<std::uint64_t> counters;
    Ids<std::string> others;
    Clock::time_point last_seen;
  };
  void forget_idle(Clock::time_point now);

  std::size_t per_origin_;
  std::chrono::seconds idle_ttl_;
  std::unordered_map<std::string, Window> by_origin_;
  Clock::time_point last_sweep_{};
};

}  // namespace chat::bus
