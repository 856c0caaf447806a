// DedupeWindow: per-origin FIFO of recent ids, idle origins forgotten.
#include "bus/dedupe_window.hpp"

namespace chat::bus {

bool DedupeWindow::first_time(const std::string& origin, const std::string& id,
                              Clock::time_point now) {
  if (per_origin_ == 0) return true;
  // Sweep at most once a minute: cheap, and memory stays bounded by the
  // origins active in the last idle_ttl.
  if (now - last_sweep_ >= std::chrono::minutes(1)) forget_idle(now);
  auto& w = by_origin_[origin];
  w.last_seen = now;
  if (!w.ids.insert(id).second) return false;
  w.order.push_back(id);
  if (w.order.size() > per_origin_) {
    w.ids.erase(w.order.front());
    w.order.pop_front();
  }
  return true;
}

void DedupeWindow::forget_idle(Clock::time_point now) {
  last_sweep_ = now;
  for (auto it = by_origin_.begin(); it != by_origin_.end();) {
    if (now - it->second.last_seen > idle_ttl_)
      it = by_origin_.erase(it);
    else
      ++it;
  }
}

}  // namespace chat::bus
