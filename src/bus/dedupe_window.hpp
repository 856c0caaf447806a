// DedupeWindow: remembers the last N envelope ids per origin.
//
// The publisher re-publishes what the broker had not confirmed when its
// connection died (at-least-once), so a receiver can see an envelope twice;
// this window drops the second copy. Used by one thread (the consumer).
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace chat::bus {

class DedupeWindow {
 public:
  explicit DedupeWindow(std::size_t per_origin) : per_origin_(per_origin) {}

  // True the first time (origin, id) is seen within the window.
  bool first_time(const std::string& origin, const std::string& id);

  std::size_t origins() const { return by_origin_.size(); }

 private:
  struct Window {
    std::unordered_set<std::string> ids;
    std::deque<std::string> order;  // oldest first, for eviction
  };
  std::size_t per_origin_;
  std::unordered_map<std::string, Window> by_origin_;
};

}  // namespace chat::bus
