// FirstCopy: which replica's copy of a message came first.
//
// A backend that retries a publish-API request with the same idempotency
// key may reach another replica, which publishes the message again under the
// same id (the id is made from the key) but another origin. Every replica
// reads the history stream in the same order, so each one keeps the copy it
// sees first and drops the others: every member gets the message once. The
// same origin passes again (its own read-back after a local delivery; the
// bus drops its re-publishes by (origin, id) itself). Bounded: the oldest ids
// are forgotten first. Thread-safe; only API ids reach it (rare).
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>

namespace chat::app {

class FirstCopy {
 public:
  explicit FirstCopy(std::size_t max_ids) : max_(max_ids) {}

  // True when id is new here, or its first copy came from origin.
  bool pass(const std::string& id, const std::string& origin) {
    std::lock_guard lk(mu_);
    auto [it, fresh] = first_.try_emplace(id, origin);
    if (!fresh) return it->second == origin;
    order_.push_back(id);
    if (order_.size() > max_) {
      first_.erase(order_.front());
      order_.pop_front();
    }
    return true;
  }

  std::size_t size() {
    std::lock_guard lk(mu_);
    return first_.size();
  }

 private:
  const std::size_t max_;
  std::mutex mu_;
  std::unordered_map<std::string, std::string> first_;  // id -> origin of its first copy
  std::deque<std::string> order_;                       // oldest first
};

}  // namespace chat::app
