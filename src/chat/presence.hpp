// Presence: the cluster-wide directory of logged-in users and their rooms.
//
// Each replica owns the entries of its own users and tells the others about
// every change with a numbered delta on the bus's control key. Every second it
// sends a heartbeat carrying its latest number; a receiver that missed a delta
// (the numbers do not follow) or does not know the replica asks for a
// snapshot. A replica whose heartbeats stop is forgotten after a TTL, and its
// users with it. One mutex guards everything: presence changes on login, join,
// leave and logout, never per delivered message.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace chat::app {

struct UserInfo {
  std::string user_id;
  std::string username;
  std::string replica;  // display id of the serving replica
  std::set<std::string> rooms;
  std::string sub;  // --auth jwt: the token's subject (empty otherwise)
};

// The presence messages as they travel on the control key, decoded. Each
// decode_* checks every field it reads (type, bounds) and returns nullopt for
// anything else, so applying a decoded message cannot throw. Fields a newer
// version adds are ignored.
struct PresenceDelta {
  enum class Op { login, join, leave, logout };
  Op op = Op::login;
  std::uint64_t v = 0;  // the sender's version after this change
  std::string user;     // "u"
  std::string name;     // "n" (login)
  std::string sub;      // "s" (login, --auth jwt; absent otherwise)
  std::string room;     // "r" (join, leave)
  std::string replica;
};
struct PresenceHeartbeat {
  std::uint64_t v = 0;
  std::string replica;
  std::uint64_t users = 0;
  std::uint64_t connections = 0;
};
struct PresenceSnapshot {
  std::uint64_t v = 0;
  std::string replica;
  std::uint64_t connections = 0;
  std::vector<UserInfo> users;  // replica left empty
};
struct PresenceSync {
  std::string target;  // the instance asked for a snapshot
};
struct PresenceBye {
  std::string replica;
};
// Longest user id, user name, room or replica id a presence message may carry.
inline constexpr std::size_t kMaxPresenceField = 1024;

std::optional<PresenceDelta> decode_delta(const nlohmann::json& j);
std::optional<PresenceHeartbeat> decode_heartbeat(const nlohmann::json& j);
std::optional<PresenceSnapshot> decode_snapshot(const nlohmann::json& j);
std::optional<PresenceSync> decode_sync(const nlohmann::json& j);
std::optional<PresenceBye> decode_bye(const nlohmann::json& j);

struct ReplicaSummary {
  std::string instance;
  std::string replica;
  std::size_t users = 0;
  std::uint64_t connections = 0;
  std::int64_t age_ms = 0;  // since its last heartbeat (0 for this replica)
  bool self = false;
};

class Presence {
 public:
  using Clock = std::chrono::steady_clock;

  Presence(std::string self_instance, std::string self_replica);

  // ---- changes of this replica's users; each returns the delta to publish.
  // Call publish_locked-style: the caller publishes while holding lock() so
  // that deltas reach the bus in number order.
  std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mu_); }
  nlohmann::json login(const std::string& user_id, const std::string& username,
                       const std::string& sub = {});
  nlohmann::json join(const std::string& user_id, const std::string& room);
  nlohmann::json leave(const std::string& user_id, const std::string& room);
  nlohmann::json logout(const std::string& user_id);
  // (the four above expect lock() to be held by the caller)

  nlohmann::json heartbeat(std::uint64_t connections);
  nlohmann::json snapshot();
  // The same with lock() held by the caller, who publishes before releasing
  // it: heartbeats and snapshots then reach the bus in version order with
  // the deltas (a receiver that sees a version go back resyncs for nothing).
  nlohmann::json heartbeat_locked(std::uint64_t connections);
  nlohmann::json snapshot_locked();

  // ---- what other replicas said. Return true when a snapshot of that
  // instance should be requested.
  bool apply_delta(const std::string& instance, const PresenceDelta& delta);
  bool apply_heartbeat(const std::string& instance, const PresenceHeartbeat& hb);
  void apply_snapshot(const std::string& instance, const PresenceSnapshot& snap);
  // A replica said goodbye (clean shutdown): forget it now.
  std::vector<UserInfo> remove_replica(const std::string& instance);

  // Forget replicas silent for longer than ttl; returns the users that vanished.
  std::vector<UserInfo> expire(std::chrono::milliseconds ttl, Clock::time_point now = Clock::now());
  // While the bus is down nothing is heard from anyone: do not expire then,
  // and count silence only from the moment it is back.
  void touch_all(Clock::time_point now = Clock::now());

  // ---- queries (cluster-wide)
  std::size_t num_users();
  // True when a replica other than this one lists user_id (a recovered socket).
  bool listed_elsewhere(const std::string& user_id);
  std::size_t room_count(const std::string& room);
  std::vector<UserInfo> room_users(const std::string& room, std::size_t limit);
  std::vector<std::pair<std::string, std::size_t>> rooms();
  std::vector<ReplicaSummary> replicas();
  // The counters and the room index agree with the user entries (tests, fuzzer).
  bool consistent();

 private:
  struct Replica {
    std::string replica;
    std::uint64_t version = 0;
    bool synced = false;
    std::uint64_t connections = 0;
    Clock::time_point last_seen{};
    Clock::time_point last_sync_request{};
    std::unordered_map<std::string, UserInfo> users;
  };

  Replica& self() { return replicas_[self_instance_]; }
  nlohmann::json delta(const char* op, const std::string& user_id);
  void index_add(const std::string& room) { ++room_index_[room]; }
  void index_remove(const std::string& room);
  void drop_users(Replica& r, std::vector<UserInfo>* out);
  bool want_sync(Replica& r, Clock::time_point now);

  std::mutex mu_;
  std::string self_instance_;
  std::string self_replica_;
  std::unordered_map<std::string, Replica> replicas_;
  std::map<std::string, std::size_t> room_index_;  // room -> members cluster-wide
  std::size_t total_users_ = 0;
};

}  // namespace chat::app
