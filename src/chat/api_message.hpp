// A message from a backend through the publish API (src/endpoints), as the
// chat application takes it (ChatService::post_api_message).
#pragma once

#include "chat/validation.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace chat::app {

struct ApiMessage {
  std::string room;
  std::string message;
  std::string username;  // the sender's display name
  std::string key;       // the API key's name: userId "api:<key>", payload field "api"
  // With an idempotency key: the id made from it (kApiIdPrefix...), the same
  // for every retry on any replica. Empty: a new id.
  std::string id;
};

struct ApiOutcome {
  std::optional<ChatError> error;  // nullopt: stored (and delivered)
  std::string id;
  std::int64_t ts = 0;
};

// Ids of messages posted with an idempotency key start with this.
inline constexpr const char* kApiIdPrefix = "api-";

}  // namespace chat::app
