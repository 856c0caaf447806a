// What the files of ChatService share and nobody else sees: the records
// it keeps per socket, per wait and per prepared delivery, and the small
// helpers of its handlers (chat_service.cpp: wiring and the chat events;
// chat_recovery.cpp: connection state recovery and the partition waits;
// chat_delivery.cpp: the bus side, what goes to whom).
#pragma once

#include "chat/chat_service.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace chat::app {

struct ChatService::LocalUser {
  transport::SocketPtr socket;
  std::string user_id;
  std::string username;
  std::set<std::string> rooms;
  bool logged_in = false;
  // --auth jwt: the verified token's claims (a refresh replaces them); null with --auth none.
  std::shared_ptr<const auth::Identity> identity;
  // Recovered: live deliveries at or below these positions (one per history
  // partition; empty: none) were sent with the missed messages (or seen
  // before), so they are not sent again.
  // With history partitions: where each room was joined (session records).
  std::vector<std::pair<std::string, std::int64_t>> joined_at;
  std::vector<std::int64_t> replayed_upto;
  std::int64_t replayed(std::uint32_t part) const {
    return part < replayed_upto.size() ? replayed_upto[part] : -1;
  }
  explicit LocalUser(transport::SocketPtr s) : socket(std::move(s)) {}
};

// Work that needs the partitions of some rooms read up to the present
// (history partitions): it runs on the user's worker once the bus's
// notices for all of them came, or fails at its deadline.
struct ChatService::Waiter {
  std::weak_ptr<LocalUser> user;
  unsigned worker = 0;
  std::set<std::uint32_t> parts;  // still to come
  Synced synced;                  // the notices that came
  std::function<void(LocalUser&, const Synced&)> done;
  std::function<void(LocalUser&)> failed;
  std::int64_t deadline_ms = 0;
};

struct ChatService::Prepared {
  bus::EnvelopePtr env;
  std::shared_ptr<const std::string> packet;
  bool droppable = false;
};

namespace internal {

inline constexpr const char* kDelta = kPresenceDelta;
inline constexpr const char* kHeartbeat = kPresenceHeartbeat;
inline constexpr const char* kSync = kPresenceSync;
inline constexpr const char* kSnapshot = kPresenceSnapshot;
inline constexpr const char* kBye = kPresenceBye;

inline bool droppable_event(const std::string& event) {
  return event == "typing" || event == "stop typing";
}

// What the sender of a message the bus could not take is told.
inline ChatError publish_error(bus::PublishStatus status) {
  switch (status) {
    case bus::PublishStatus::rejected:
      return {"REJECTED", "the message broker refused this message"};
    case bus::PublishStatus::full:
      return {"OVERLOADED",
              "too many messages are waiting for the message broker; try again later"};
    default:
      return {"UNAVAILABLE", "the message could not be stored; try again"};
  }
}

}  // namespace internal

}  // namespace chat::app
