// Presence directory; see presence.hpp for the protocol between replicas.
#include "chat/presence.hpp"

#include <algorithm>
#include <utility>

namespace chat::app {

using nlohmann::json;

namespace {
constexpr auto kSyncRetry = std::chrono::seconds(2);

std::int64_t ms_between(Presence::Clock::time_point a, Presence::Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

// Field readers for the decoders: false when the field is missing (and
// required), of another type or over its bound.
bool get_string(const json& j, const char* key, std::string& out, bool required = true,
                bool allow_empty = true) {
  const auto it = j.find(key);
  if (it == j.end()) return !required;
  if (!it->is_string()) return false;
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > kMaxPresenceField || (!allow_empty && s.empty())) return false;
  out = s;
  return true;
}

bool get_count(const json& j, const char* key, std::uint64_t& out) {
  const auto it = j.find(key);
  // Parsed JSON holds non-negative integers as unsigned; built in code they
  // may be signed: accept both, never a negative or a fraction.
  if (it == j.end() || !it->is_number_integer()) return false;
  if (!it->is_number_unsigned() && it->get<std::int64_t>() < 0) return false;
  out = it->get<std::uint64_t>();
  return true;
}
}  // namespace

std::optional<PresenceDelta> decode_delta(const json& j) {
  if (!j.is_object()) return std::nullopt;
  PresenceDelta d;
  std::string op;
  if (!get_string(j, "op", op) || !get_count(j, "v", d.v) ||
      !get_string(j, "u", d.user, true, false) || !get_string(j, "replica", d.replica))
    return std::nullopt;
  if (op == "login") {
    d.op = PresenceDelta::Op::login;
    if (!get_string(j, "n", d.name) || !get_string(j, "s", d.sub, false)) return std::nullopt;
  } else if (op == "join" || op == "leave") {
    d.op = op == "join" ? PresenceDelta::Op::join : PresenceDelta::Op::leave;
    if (!get_string(j, "r", d.room, true, false)) return std::nullopt;
  } else if (op == "logout") {
    d.op = PresenceDelta::Op::logout;
  } else {
    return std::nullopt;
  }
  return d;
}

std::optional<PresenceHeartbeat> decode_heartbeat(const json& j) {
  if (!j.is_object()) return std::nullopt;
  PresenceHeartbeat hb;
  if (!get_count(j, "v", hb.v) || !get_string(j, "replica", hb.replica) ||
      !get_count(j, "users", hb.users) || !get_count(j, "connections", hb.connections))
    return std::nullopt;
  return hb;
}

std::optional<PresenceSnapshot> decode_snapshot(const json& j) {
  if (!j.is_object()) return std::nullopt;
  PresenceSnapshot snap;
  if (!get_count(j, "v", snap.v) || !get_string(j, "replica", snap.replica) ||
      !get_count(j, "connections", snap.connections))
    return std::nullopt;
  const auto users = j.find("users");
  if (users == j.end() || !users->is_array()) return std::nullopt;
  snap.users.reserve(users->size());
  for (const auto& u : *users) {
    if (!u.is_object()) return std::nullopt;
    UserInfo info;
    if (!get_string(u, "u", info.user_id, true, false) || !get_string(u, "n", info.username) ||
        !get_string(u, "s", info.sub, false))
      return std::nullopt;
    const auto rooms = u.find("r");
    if (rooms == u.end() || !rooms->is_array()) return std::nullopt;
    for (const auto& room : *rooms) {
      if (!room.is_string()) return std::nullopt;
      const auto& name = room.get_ref<const std::string&>();
      if (name.empty() || name.size() > kMaxPresenceField) return std::nullopt;
      info.rooms.insert(name);
    }
    snap.users.push_back(std::move(info));
  }
  return snap;
}

std::optional<PresenceSync> decode_sync(const json& j) {
  if (!j.is_object()) return std::nullopt;
  PresenceSync s;
  if (!get_string(j, "target", s.target, true, false)) return std::nullopt;
  return s;
}

std::optional<PresenceBye> decode_bye(const json& j) {
  if (!j.is_object()) return std::nullopt;
  PresenceBye b;
  if (!get_string(j, "replica", b.replica)) return std::nullopt;
  return b;
}

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

json Presence::login(const std::string& user_id, const std::string& username,
                     const std::string& sub) {
  auto& me = self();
  auto [it, fresh] = me.users.try_emplace(user_id);
  if (fresh) ++total_users_;
  it->second.user_id = user_id;
  it->second.username = username;
  it->second.replica = self_replica_;
  it->second.sub = sub;
  auto d = delta("login", user_id);
  d["n"] = username;
  if (!sub.empty()) d["s"] = sub;
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
  return heartbeat_locked(connections);
}

json Presence::heartbeat_locked(std::uint64_t connections) {
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
  return snapshot_locked();
}

json Presence::snapshot_locked() {
  auto& me = self();
  json users = json::array();
  for (const auto& [id, u] : me.users) {
    users.push_back(json{{"u", id}, {"n", u.username}, {"r", u.rooms}});
    if (!u.sub.empty()) users.back()["s"] = u.sub;
  }
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

bool Presence::apply_delta(const std::string& instance, const PresenceDelta& d) {
  if (instance == self_instance_) return false;
  std::lock_guard lk(mu_);
  const auto now = Clock::now();
  auto& r = replicas_[instance];
  r.last_seen = now;
  if (r.replica.empty()) r.replica = d.replica;
  if (!r.synced || d.v != r.version + 1) {
    r.synced = false;
    return want_sync(r, now);
  }
  r.version = d.v;
  using Op = PresenceDelta::Op;
  switch (d.op) {
    case Op::login: {
      auto [it, fresh] = r.users.try_emplace(d.user);
      if (fresh) ++total_users_;
      it->second.user_id = d.user;
      it->second.username = d.name;
      it->second.sub = d.sub;
      it->second.replica = r.replica;
      break;
    }
    case Op::join:
    case Op::leave: {
      auto it = r.users.find(d.user);
      if (it == r.users.end()) break;
      if (d.op == Op::join && it->second.rooms.insert(d.room).second) index_add(d.room);
      if (d.op == Op::leave && it->second.rooms.erase(d.room) > 0) index_remove(d.room);
      break;
    }
    case Op::logout: {
      auto it = r.users.find(d.user);
      if (it != r.users.end()) {
        for (const auto& room : it->second.rooms) index_remove(room);
        r.users.erase(it);
        --total_users_;
      }
      break;
    }
  }
  return false;
}

bool Presence::apply_heartbeat(const std::string& instance, const PresenceHeartbeat& hb) {
  if (instance == self_instance_) return false;
  std::lock_guard lk(mu_);
  const auto now = Clock::now();
  auto& r = replicas_[instance];
  r.last_seen = now;
  r.replica = hb.replica;
  r.connections = hb.connections;
  if (!r.synced || hb.v != r.version) {
    r.synced = false;
    return want_sync(r, now);
  }
  return false;
}

void Presence::drop_users(Replica& r, std::vector<UserInfo>* out) {
  for (auto& [id, u] : r.users) {
    for (const auto& room : u.rooms) index_remove(room);
    --total_users_;
    if (!out) continue;
    // A user recovered on another replica (connection state recovery) is
    // not gone: nobody is told it left.
    bool elsewhere = false;
    for (const auto& [instance, other] : replicas_)
      if (&other != &r && other.users.count(id)) {
        elsewhere = true;
        break;
      }
    if (!elsewhere) out->push_back(std::move(u));
  }
  r.users.clear();
}

void Presence::apply_snapshot(const std::string& instance, const PresenceSnapshot& snap) {
  if (instance == self_instance_) return;
  std::lock_guard lk(mu_);
  auto& r = replicas_[instance];
  drop_users(r, nullptr);
  r.replica = snap.replica;
  r.version = snap.v;
  r.connections = snap.connections;
  r.synced = true;
  r.last_seen = Clock::now();
  for (const auto& u : snap.users) {
    auto [it, fresh] = r.users.try_emplace(u.user_id);
    if (!fresh) continue;  // a repeated entry: the first one counts
    it->second = u;
    it->second.replica = r.replica;
    for (const auto& room : it->second.rooms) index_add(room);
    ++total_users_;
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

bool Presence::listed_elsewhere(const std::string& user_id) {
  std::lock_guard lk(mu_);
  for (const auto& [instance, r] : replicas_)
    if (instance != self_instance_ && r.users.count(user_id)) return true;
  return false;
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
        out.push_back(UserInfo{u.user_id, u.username, u.replica, {}, u.sub});
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

bool Presence::consistent() {
  std::lock_guard lk(mu_);
  std::size_t users = 0;
  std::map<std::string, std::size_t> index;
  for (const auto& [inst, r] : replicas_) {
    users += r.users.size();
    for (const auto& [id, u] : r.users)
      for (const auto& room : u.rooms) ++index[room];
  }
  return users == total_users_ && index == room_index_;
}

}  // namespace chat::app
