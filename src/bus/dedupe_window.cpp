// DedupeWindow: per-origin FIFO of recent ids, idle origins forgotten.
#include "bus/dedupe_window.hpp"

#include <algorithm>

namespace chat::bus {

bool DedupeWindow::first_time(const std::string& origin, const std::string& id,
                              Clock::time_point now) {
  if (per_origin_ == 0) return true;
  // Sweep at most once a minute: cheap, and memory stays bounded by the
  // origins active in the last idle_ttl.
  if (now - last_sweep_ >= std::chrono::minutes(1)) forget_idle(now);
  auto& w = by_origin_[origin];
  w.last_seen = now;
  if (auto n = counter_of(origin, id)) return w.counters.insert(*n, per_origin_);
  return w.others.insert(id, per_origin_);
}

std::optional<std::uint64_t> DedupeWindow::counter_of(const std::string& origin,
                                                      const std::string& id) {
  const auto digits = id.size() - std::min(id.size(), origin.size() + 1);
  // At most 19 digits (fits in 64 bits), no leading zero: one number, one id.
  if (digits == 0 || digits > 19 || id.compare(0, origin.size(), origin) != 0 ||
      id[origin.size()] != '-' || (id[origin.size() + 1] == '0' && digits > 1))
    return std::nullopt;
  std::uint64_t n = 0;
  for (std::size_t i = origin.size() + 1; i < id.size(); ++i) {
    const char c = id[i];
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
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
