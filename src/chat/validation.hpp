// Pure validation of user-supplied names, rooms and messages.
// Each check returns nullopt when the input is acceptable, or the error to send back.
#pragma once

#include "chat/limits.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace chat::app {

struct ChatError {
  std::string code;     // machine-readable, e.g. "INVALID_NAME"
  std::string message;  // human text
};

// Number of UTF-8 code points, or nullopt when the bytes are not valid UTF-8.
std::optional<std::size_t> utf8_length(std::string_view s);

// Strip ASCII whitespace at both ends.
std::string trim(std::string_view s);

std::optional<ChatError> check_name(std::string_view trimmed, const Limits& limits);
std::optional<ChatError> check_room(std::string_view room, const Limits& limits);
std::optional<ChatError> check_message(std::string_view text, const Limits& limits);

}  // namespace chat::app
