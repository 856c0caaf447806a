// History: see history.hpp.
#include "chat/history.hpp"

#include <algorithm>

namespace chat::app {

History::History(std::size_t per_room, std::size_t max_rooms)
    : per_room_(per_room), max_rooms_(std::max<std::size_t>(1, max_rooms)) {}

bool History::kept(const bus::Envelope& e) {
  return e.position >= 0 && !e.room.empty() && e.event == "new message";
}

void History::add(const std::vector<bus::EnvelopePtr>& batch) {
  if (per_room_ == 0) return;
  bool any = false;
  for (const auto& e : batch) any = any || (e && kept(*e));
  if (!any) return;
  std::lock_guard lock(mu_);
  for (const auto& e : batch)
    if (e && kept(*e)) add_locked(e);
}

void History::add_locked(const bus::EnvelopePtr& e) {
  auto [it, fresh] = rooms_.try_emplace(e->room);
  auto& r = it->second;
  if (fresh) {
    r.lru = lru_.insert(lru_.end(), e->room);
  } else {
    lru_.splice(lru_.end(), lru_, r.lru);
  }
  auto& m = r.messages;
  if (m.empty() || m.back()->position < e->position) {
    m.push_back(e);
  } else {
    // Out of order (the in-process bus under concurrent publishers): insert
    // in place unless that position is already held or older than all kept.
    auto pos =
        std::lower_bound(m.begin(), m.end(), e->position,
                         [](const bus::EnvelopePtr& x, std::int64_t p) { return x->position < p; });
    if ((pos != m.end() && (*pos)->position == e->position) ||
        (pos == m.begin() && m.size() >= per_room_))
      return;
    m.insert(pos, e);
  }
  ++messages_;
  if (m.size() > per_room_) {
    m.pop_front();
    --messages_;
  }
  while (rooms_.size() > max_rooms_) {
    auto victim = rooms_.find(lru_.front());
    messages_ -= victim->second.messages.size();
    rooms_.erase(victim);
    lru_.pop_front();
  }
}

std::vector<bus::EnvelopePtr> History::last(const std::string& room, std::size_t n) const {
  std::lock_guard lock(mu_);
  auto it = rooms_.find(room);
  if (it == rooms_.end() || n == 0) return {};
  const auto& m = it->second.messages;
  const auto k = std::min(n, m.size());
  return {m.end() - static_cast<std::ptrdiff_t>(k), m.end()};
}

std::size_t History::rooms() const {
  std::lock_guard lock(mu_);
  return rooms_.size();
}

std::size_t History::messages() const {
  std::lock_guard lock(mu_);
  return messages_;
}

}  // namespace chat::app
