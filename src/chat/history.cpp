// History: see history.hpp.
#include "chat/history.hpp"

#include <algorithm>

namespace chat::app {

History::History(std::size_t per_room, std::size_t max_rooms, std::size_t recent,
                 std::uint32_t partitions)
    : per_room_(per_room),
      max_rooms_(std::max<std::size_t>(1, max_rooms)),
      recent_max_(partitions <= 1 || recent == 0
                      ? recent
                      : std::max<std::size_t>(1000, recent / partitions)),
      recent_(std::max<std::uint32_t>(1, partitions)) {}

namespace {
// Insert e into m (ascending positions): at the end in the usual case, in
// place when it arrives out of order; false when its position is held.
bool insert_sorted(std::deque<bus::EnvelopePtr>& m, const bus::EnvelopePtr& e) {
  if (m.empty() || m.back()->position < e->position) {
    m.push_back(e);
    return true;
  }
  auto pos =
      std::lower_bound(m.begin(), m.end(), e->position,
                       [](const bus::EnvelopePtr& x, std::int64_t p) { return x->position < p; });
  if (pos != m.end() && (*pos)->position == e->position) return false;
  m.insert(pos, e);
  return true;
}
}  // namespace

bool History::kept(const bus::Envelope& e) {
  return e.position >= 0 && !e.room.empty() && e.event == "new message";
}

void History::add(const std::vector<bus::EnvelopePtr>& batch) {
  if (per_room_ == 0 && recent_max_ == 0) return;
  bool any = false;
  for (const auto& e : batch) any = any || (e && kept(*e));
  if (!any) return;
  std::lock_guard lock(mu_);
  for (const auto& e : batch)
    if (e && kept(*e)) add_locked(e);
}

void History::add_locked(const bus::EnvelopePtr& e) {
  auto& rec = recent_of(e->partition);
  if (rec.started < 0 || e->position < rec.started) rec.started = e->position;
  if (recent_max_ > 0) {
    insert_sorted(rec.messages, e);
    while (rec.messages.size() > recent_max_) {
      rec.trimmed = std::max(rec.trimmed, rec.messages.front()->position);
      rec.messages.pop_front();
    }
  }
  if (per_room_ == 0) return;
  auto [it, fresh] = rooms_.try_emplace(e->room);
  auto& r = it->second;
  if (fresh) {
    r.lru = lru_.insert(lru_.end(), e->room);
  } else {
    lru_.splice(lru_.end(), lru_, r.lru);
  }
  // Out of order only with the in-process bus under concurrent publishers;
  // one older than all kept in a full room goes again at once below.
  auto& m = r.messages;
  if (!insert_sorted(m, e)) return;
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

bool History::covers(std::int64_t pos, std::uint32_t part, std::int64_t since_ms) const {
  std::lock_guard lock(mu_);
  if (recent_max_ == 0 || pos < 0) return false;
  const auto& rec = recent_of(part);
  if (rec.trimmed > pos) return false;
  if (rec.started >= 0 && rec.started <= pos) return true;
  return since_ms >= 0 && rec.read_since_ms >= 0 && rec.read_since_ms <= since_ms;
}

void History::read_since(std::uint32_t part, std::int64_t ms) {
  std::lock_guard lock(mu_);
  auto& rec = recent_of(part);
  if (ms >= 0 && (rec.read_since_ms < 0 || ms < rec.read_since_ms)) rec.read_since_ms = ms;
}

std::vector<bus::EnvelopePtr> History::since(std::int64_t pos,
                                             const std::vector<std::string>& rooms,
                                             std::int64_t& upto, std::uint32_t part) const {
  std::lock_guard lock(mu_);
  const auto& m = recent_of(part).messages;
  upto = m.empty() ? pos : std::max(pos, m.back()->position);
  std::vector<bus::EnvelopePtr> out;
  auto it =
      std::upper_bound(m.begin(), m.end(), pos,
                       [](std::int64_t p, const bus::EnvelopePtr& x) { return p < x->position; });
  for (; it != m.end(); ++it)
    if (std::find(rooms.begin(), rooms.end(), (*it)->room) != rooms.end()) out.push_back(*it);
  return out;
}

std::int64_t History::newest(std::uint32_t part) const {
  std::lock_guard lock(mu_);
  const auto& m = recent_of(part).messages;
  return m.empty() ? -1 : m.back()->position;
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
