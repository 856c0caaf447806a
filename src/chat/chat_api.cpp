// ChatService: messages from backends (the publish API). Checked like a
// user's message, limited per room, published with the bus's confirm.
#include "chat/chat_service_internal.hpp"

namespace chat::app {

using nlohmann::json;
using namespace internal;

std::optional<ChatError> ChatService::check_api_message(const ApiMessage& m) const {
  if (auto err = check_room(m.room, options_.limits)) return err;
  if (auto err = check_message(m.message, options_.limits)) return err;
  if (auto err = check_name(trim(m.username), options_.limits)) return err;
  return std::nullopt;
}

void ChatService::post_api_message(ApiMessage m, std::function<void(ApiOutcome)> done) {
  if (auto err = check_api_message(m)) return done(ApiOutcome{std::move(err), {}, 0});
  if (!room_limiter_.allow(m.room)) {
    room_refusals_.fetch_add(1, std::memory_order_relaxed);
    return done(ApiOutcome{
        ChatError{"RATE_LIMITED", "too many messages in " + m.room + ": slow down"}, {}, 0});
  }
  auto env = make_envelope(m.room, "new message", json{});
  auto& e = *env;  // filled in before it is shared
  if (!m.id.empty()) e.id = std::move(m.id);
  e.payload = json{{"id", e.id},
                   {"username", trim(m.username)},
                   {"userId", "api:" + m.key},
                   {"message", std::move(m.message)},
                   {"room", m.room},
                   {"ts", e.ts},
                   {"replica", options_.replica_id},
                   {"api", m.key}};
  ApiOutcome ok{std::nullopt, e.id, e.ts};
  bus_.publish(
      env, [this, ok = std::move(ok), done = std::move(done)](bus::PublishStatus status) mutable {
        if (status != bus::PublishStatus::ok)
          return done(ApiOutcome{publish_error(status), ok.id, 0});
        api_messages_.fetch_add(1, std::memory_order_relaxed);
        done(std::move(ok));
      });
}

}  // namespace chat::app
