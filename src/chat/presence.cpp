// Presence directory; see presence.hpp for the protocol between replicas.
#include "chat/presence.hpp"

#include <algorithm>

namespace chat::app {

using nlohmann::json;

namespace {
constexpr auto kSyncRetry = std::chrono::seconds(2);

std::int64_t ms_between(Presence::Clock::time_point a, Presence::Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}
}  // namespace

Presence::Presence(std::string self_instance, std::string self_replica)
    : self_instance_(std::move(self_instance)), self_replica_(std::move(self_replica)) {
  auto& me = replicas_[self_instance_];
  me.replica = self_replica_;
  me.synced = true;
  me.last_seen = Clock::now();
}

json Presence::delta(const char* op, const std::string& user_id) {
  auto& me = self();
  ++me.version;
  return json{{"op", op}, {"v", me.version}, {"u", user_id}, {"replica", self_replica_}};
}

void Presence::index_remove(const std::string& room) {
  auto it = room_index_.find(room);
  if (it == room_index_.end()) return;
  if (--it->second == 0) room_index_.erase(it);
}

json Presence::login(const std::string& user_id, const std::string& username) {
  auto& me = self();
  auto [it, fresh] = me.users.try_emplace(user_id);
  if (fresh) ++total_users_;
  it->second.user_id = user_id;
  it->second.username = username;
  it->second.replica = self_replica_;
  auto d = delta("login", user_id);
  d["n"] = username;
  return d;
}

json Presence::join(const std::string& user_id, const std::string& room) {
  auto& me = self();
  auto it = me.users.find(user_id);
  if (it != me.users.end() && it->second.rooms.insert(room).second) index_add(room);
  auto d = delta("join", user_id);
  d["r"] = room;
  return d;
}

json Presence::leave(const std::string& user_id, const std::string& room) {
  auto& me = self();
  auto it = me.users.find(user_id);
  if (it != me.users.end() && it->second.rooms.erase(room) > 0) index_remove(room);
  auto d = delta("leave", user_id);
  d["r"] = room;
  return d;
}

json Presence::logout(const std::string& user_id) {
  auto& me = self();
  auto it = me.users.find(user_id);
  if (it != me.users.end()) {
    for (const auto& room : it->second.rooms) index_remove(room);
    me.users.erase(it);
    --total_users_;
  }
  return delta("logout", user_id);
}

json Presence::heartbeat(std::uint64_t connections) {
  std::lock_guard lk(mu_);
  auto& me = self();
  me.connections = connections;
  me.last_seen = Clock::now();
  return json{{"v", me.version},
              {"replica", self_replica_},
              {"users", me.users.size()},
              {"connections", connections}};
}

json Presence::snapshot() {
  std::lock_guard lk(mu_);
  auto& me = self();
  json users = json::array();
  for (const auto& [id, u] : me.users)
    users.push_back(json{{"u", id}, {"n", u.username}, {"r", u.rooms}});
  return json{{"v", me.version},
              {"replica", self_replica_},
              {"connections", me.connections},
              {"users", std::move(users)}};
}

bool Presence::want_sync(Replica& r, Clock::time_point now) {
  if (now - r.last_sync_request < kSyncRetry) return false;
  r.last_sync_request = now;
  return true;
}

bool Presence::apply_delta(const std::string& instance, const json& d) {
  if (instance == self_instance_ || !d.is_object()) return false;
  std::lock_guard lk(mu_);
  const auto now = Clock::now();
  auto& r = replicas_[instance];
  r.last_seen = now;
  if (r.replica.empty()) r.replica = d.value("replica", std::string{});
  const auto v = d.value("v", std::uint64_t{0});
  if (!r.synced || v != r.version + 1) {
    r.synced = false;
    return want_sync(r, now);
  }
  r.version = v;
  const auto op = d.value("op", std::string{});
  const auto user_id = d.value("u", std::string{});
  if (op == "login") {
    auto [it, fresh] = r.users.try_emplace(user_id);
    if (fresh) ++total_users_;
    it->second.user_id = user_id;
    it->second.username = d.value("n", std::string{});
    it->second.replica = r.replica;
  } else if (op == "join" || op == "leave") {
    auto it = r.users.find(user_id);
    const auto room = d.value("r", std::string{});
    if (it != r.users.end()) {
      if (op == "join" && it->second.rooms.insert(room).second) index_add(room);
      if (op == "leave" && it->second.rooms.erase(room) > 0) index_remove(room);
    }
  } else if (op == "logout") {
    auto it = r.users.find(user_id);
    if (it != r.users.end()) {
      for (const auto& room : it->second.rooms) index_remove(room);
      r.users.erase(it);
      --total_users_;
    }
  }
  return false;
}

bool Presence::apply_heartbeat(const std::string& instance, const json& hb) {
  if (instance == self_instance_ || !hb.is_object()) return false;
  std::lock_guard lk(mu_);
  const auto now = Clock::now();
  auto& r = replicas_[instance];
  r.last_seen = now;
  r.replica = hb.value("replica", r.replica);
  r.connections = hb.value("connections", std::uint64_t{0});
  if (!r.synced || hb.value("v", std::uint64_t{0}) != r.version) {
    r.synced = false;
    return want_sync(r, now);
  }
  return false;
}

void Presence::drop_users(Replica& r, std::vector<UserInfo>* out) {
  for (auto& [id, u] : r.users) {
    for (const auto& room : u.rooms) index_remove(room);
    --total_users_;
    if (out) out->push_back(std::move(u));
  }
  r.users.clear();
}

void Presence::apply_snapshot(const std::string& instance, const json& snap) {
  if (instance == self_instance_ || !snap.is_object()) return;
  std::lock_guard lk(mu_);
  auto& r = replicas_[instance];
  drop_users(r, nullptr);
  r.replica = snap.value("replica", r.replica);
  r.version = snap.value("v", std::uint64_t{0});
  r.connections = snap.value("connections", std::uint64_t{0});
  r.synced = true;
  r.last_seen = Clock::now();
  const auto it = snap.find("users");
  if (it == snap.end() || !it->is_array()) return;
  for (const auto& u : *it) {
    if (!u.is_object()) continue;
    UserInfo info;
    info.user_id = u.value("u", std::string{});
    info.username = u.value("n", std::string{});
    info.replica = r.replica;
    if (auto rooms = u.find("r"); rooms != u.end() && rooms->is_array())
      for (const auto& room : *rooms)
        if (room.is_string()) info.rooms.insert(room.get<std::string>());
    for (const auto& room : info.rooms) index_add(room);
    if (r.users.emplace(info.user_id, std::move(info)).second) ++total_users_;
  }
}

std::vector<UserInfo> Presence::remove_replica(const std::string& instance) {
  std::vector<UserInfo> gone;
  if (instance == self_instance_) return gone;
  std::lock_guard lk(mu_);
  auto it = replicas_.find(instance);
  if (it == replicas_.end()) return gone;
  drop_users(it->second, &gone);
  replicas_.erase(it);
  return gone;
}

std::vector<UserInfo> Presence::expire(std::chrono::milliseconds ttl, Clock::time_point now) {
  std::vector<UserInfo> gone;
  std::lock_guard lk(mu_);
  for (auto it = replicas_.begin(); it != replicas_.end();) {
    if (it->first != self_instance_ && now - it->second.last_seen > ttl) {
      drop_users(it->second, &gone);
      it = replicas_.erase(it);
    } else {
      ++it;
    }
  }
  return gone;
}

void Presence::touch_all(Clock::time_point now) {
  std::lock_guard lk(mu_);
  for (auto& [id, r] : replicas_) r.last_seen = now;
}

std::size_t Presence::num_users() {
  std::lock_guard lk(mu_);
  return total_users_;
}

std::size_t Presence::room_count(const std::string& room) {
  std::lock_guard lk(mu_);
  auto it = room_index_.find(room);
  return it == room_index_.end() ? 0 : it->second;
}

std::vector<UserInfo> Presence::room_users(const std::string& room, std::size_t limit) {
  std::vector<UserInfo> out;
  std::lock_guard lk(mu_);
  for (const auto& [inst, r] : replicas_)
    for (const auto& [id, u] : r.users)
      if (u.rooms.count(room)) {
        if (out.size() >= limit) return out;
        out.push_back(UserInfo{u.user_id, u.username, u.replica, {}});
      }
  return out;
}

std::vector<std::pair<std::string, std::size_t>> Presence::rooms() {
  std::lock_guard lk(mu_);
  return {room_index_.begin(), room_index_.end()};
}

std::vector<ReplicaSummary> Presence::replicas() {
  std::vector<ReplicaSummary> out;
  std::lock_guard lk(mu_);
  const auto now = Clock::now();
  for (const auto& [inst, r] : replicas_) {
    const bool me = inst == self_instance_;
    out.push_back(ReplicaSummary{inst, r.replica, r.users.size(), r.connections,
                                 me ? 0 : ms_between(r.last_seen, now), me});
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.replica < b.replica; });
  return out;
}

}  // namespace chat::app
