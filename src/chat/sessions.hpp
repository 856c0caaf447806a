// Sessions: what connection state recovery needs to give a socket back on
// any replica (docs/protocol.md, "Connection state recovery").
//
// Each replica writes a record of its sockets to the cluster when their
// state changes (login, join, leave) and a list of the pids still connected
// every alive interval, on the bus's history stream (room kSessionsRoom), so
// the record is there before the replica that wrote it can die. Every
// replica reads every record. A record is recoverable while its socket is
// connected or was last seen less than window + alive interval ago; a clean
// client disconnect ends it. Thread-safe (one lock); bounded by max entries
// (the oldest seen go first).
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace chat::app {

// The reserved room of session records: not a valid room name for users ('#').
inline constexpr const char* kSessionsRoom = "#sessions";
inline constexpr const char* kSessionEvent = "session";             // one socket's state
inline constexpr const char* kSessionEndEvent = "session.end";      // {pid}: left on purpose
inline constexpr const char* kSessionAliveEvent = "session.alive";  // {pids: [...]}
inline constexpr std::size_t kMaxAlivePids = 500;                   // pids in one alive envelope

struct SessionRecord {
  std::string pid;
  std::string sid;  // the socket id (also the user id)
  std::string username;
  std::string subject;  // --auth jwt: the token's "sub" (a recovery needs a token of the same)
  bool logged_in = false;
  std::vector<std::string> rooms;
  // With history partitions: where each room was joined (the position in its
  // partition then), for a client whose last offset predates the join.
  std::vector<std::pair<std::string, std::int64_t>> joined_at;
  std::int64_t seen_ms = 0;  // last record or alive list naming it (publisher clock)
};

class Sessions {
 public:
  Sessions(std::chrono::milliseconds window, std::chrono::milliseconds alive_interval,
           std::size_t max_entries);

  // Apply one envelope of kSessionsRoom; false when its payload is malformed.
  bool apply(const std::string& event, const nlohmann::json& payload, std::int64_t ts);
  // A record still within its recovery window at now_ms.
  std::optional<SessionRecord> find(const std::string& pid, std::int64_t now_ms) const;
  // Forget records past their window.
  void sweep(std::int64_t now_ms);
  std::size_t size() const;

  static nlohmann::json record_payload(const SessionRecord& r);

 private:
  bool expired(const SessionRecord& r, std::int64_t now_ms) const;
  void touch(SessionRecord& r, std::int64_t ts);
  void unlink(const SessionRecord& r);  // from by_seen_

  const std::int64_t window_ms_;
  const std::int64_t alive_ms_;
  const std::size_t max_entries_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, SessionRecord> by_pid_;
  std::multimap<std::int64_t, std::string> by_seen_;  // seen_ms -> pid, for bounds
};

}  // namespace chat::app
