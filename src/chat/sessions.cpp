// Sessions: see sessions.hpp.
#include "chat/sessions.hpp"

#include "auth/identity.hpp"

#include <algorithm>

namespace chat::app {

using nlohmann::json;

namespace {
constexpr std::size_t kMaxIdBytes = 64;
constexpr std::size_t kMaxNameBytes = 256;
constexpr std::size_t kMaxRoomBytes = 256;
constexpr std::size_t kMaxRooms = 256;

const std::string* str(const json& o, const char* key, std::size_t max) {
  auto it = o.find(key);
  if (it == o.end() || !it->is_string()) return nullptr;
  const auto& s = it->get_ref<const std::string&>();
  return s.size() <= max ? &s : nullptr;
}
}  // namespace

Sessions::Sessions(std::chrono::milliseconds window, std::chrono::milliseconds alive_interval,
                   std::size_t max_entries)
    : window_ms_(window.count()),
      alive_ms_(alive_interval.count()),
      max_entries_(std::max<std::size_t>(1, max_entries)) {}

json Sessions::record_payload(const SessionRecord& r) {
  json out{{"pid", r.pid},
           {"sid", r.sid},
           {"username", r.username},
           {"loggedIn", r.logged_in},
           {"rooms", r.rooms}};
  if (!r.subject.empty()) out["sub"] = r.subject;
  if (!r.joined_at.empty()) {
    json at = json::object();
    for (const auto& [room, pos] : r.joined_at) at[room] = pos;
    out["joinedAt"] = std::move(at);
  }
  return out;
}

void Sessions::unlink(const SessionRecord& r) {
  auto range = by_seen_.equal_range(r.seen_ms);
  for (auto it = range.first; it != range.second; ++it)
    if (it->second == r.pid) {
      by_seen_.erase(it);
      return;
    }
}

void Sessions::touch(SessionRecord& r, std::int64_t ts) {
  if (ts <= r.seen_ms) return;
  unlink(r);
  r.seen_ms = ts;
  by_seen_.emplace(ts, r.pid);
}

bool Sessions::apply(const std::string& event, const json& payload, std::int64_t ts) {
  if (!payload.is_object()) return false;
  if (event == kSessionAliveEvent) {
    auto it = payload.find("pids");
    if (it == payload.end() || !it->is_array() || it->size() > kMaxAlivePids) return false;
    std::lock_guard lock(mu_);
    for (const auto& p : *it) {
      if (!p.is_string()) return false;
      auto r = by_pid_.find(p.get_ref<const std::string&>());
      if (r != by_pid_.end()) touch(r->second, ts);
    }
    return true;
  }
  const auto* pid = str(payload, "pid", kMaxIdBytes);
  if (!pid || pid->empty()) return false;
  if (event == kSessionEndEvent) {
    std::lock_guard lock(mu_);
    if (auto r = by_pid_.find(*pid); r != by_pid_.end()) {
      unlink(r->second);
      by_pid_.erase(r);
    }
    return true;
  }
  if (event != kSessionEvent) return false;
  const auto* sid = str(payload, "sid", kMaxIdBytes);
  const auto* name = str(payload, "username", kMaxNameBytes);
  auto li = payload.find("loggedIn");
  auto rooms = payload.find("rooms");
  if (!sid || sid->empty() || !name || li == payload.end() || !li->is_boolean() ||
      rooms == payload.end() || !rooms->is_array() || rooms->size() > kMaxRooms)
    return false;
  SessionRecord rec;
  rec.pid = *pid;
  rec.sid = *sid;
  rec.username = *name;
  if (payload.contains("sub")) {
    const auto* sub = str(payload, "sub", auth::kMaxSubjectBytes);
    if (!sub) return false;
    rec.subject = *sub;
  }
  rec.logged_in = li->get<bool>();
  for (const auto& room : *rooms) {
    if (!room.is_string() || room.get_ref<const std::string&>().empty() ||
        room.get_ref<const std::string&>().size() > kMaxRoomBytes)
      return false;
    rec.rooms.push_back(room.get<std::string>());
  }
  if (auto at = payload.find("joinedAt"); at != payload.end()) {
    if (!at->is_object() || at->size() > kMaxRooms) return false;
    for (const auto& [room, pos] : at->items()) {
      if (room.size() > kMaxRoomBytes || !pos.is_number_integer()) return false;
      rec.joined_at.emplace_back(room, pos.get<std::int64_t>());
    }
  }
  std::lock_guard lock(mu_);
  auto it = by_pid_.find(rec.pid);
  // Records arrive in stream order, the same on every replica: the last one
  // read is the socket's state, whatever the clocks of the replicas that
  // wrote them say (seen_ms only moves forward).
  std::int64_t seen = ts;
  if (it != by_pid_.end()) {
    seen = std::max(seen, it->second.seen_ms);
    unlink(it->second);
    it->second = std::move(rec);
  } else {
    it = by_pid_.emplace(rec.pid, std::move(rec)).first;
  }
  it->second.seen_ms = seen;
  by_seen_.emplace(seen, it->second.pid);
  while (by_pid_.size() > max_entries_ && !by_seen_.empty()) {
    by_pid_.erase(by_seen_.begin()->second);
    by_seen_.erase(by_seen_.begin());
  }
  return true;
}

bool Sessions::expired(const SessionRecord& r, std::int64_t now_ms) const {
  return now_ms - r.seen_ms > window_ms_ + alive_ms_;
}

std::optional<SessionRecord> Sessions::find(const std::string& pid, std::int64_t now_ms) const {
  std::lock_guard lock(mu_);
  auto it = by_pid_.find(pid);
  if (it == by_pid_.end() || expired(it->second, now_ms)) return std::nullopt;
  return it->second;
}

void Sessions::sweep(std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  while (!by_seen_.empty() && now_ms - by_seen_.begin()->first > window_ms_ + alive_ms_) {
    by_pid_.erase(by_seen_.begin()->second);
    by_seen_.erase(by_seen_.begin());
  }
}

std::size_t Sessions::size() const {
  std::lock_guard lock(mu_);
  return by_pid_.size();
}

}  // namespace chat::app
