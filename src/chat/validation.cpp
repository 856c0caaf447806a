// Validation rules for chat input; see validation.hpp and docs/protocol.md.
#include "chat/validation.hpp"

#include <fmt/format.h>

namespace chat::app {

std::optional<std::size_t> utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    if (c < 0x80)
      len = 1;
    else if ((c & 0xE0) == 0xC0 && c >= 0xC2)
      len = 2;
    else if ((c & 0xF0) == 0xE0)
      len = 3;
    else if ((c & 0xF8) == 0xF0 && c <= 0xF4)
      len = 4;
    else
      return std::nullopt;
    if (i + len > s.size()) return std::nullopt;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return std::nullopt;
    i += len;
    ++n;
  }
  return n;
}

std::string trim(std::string_view s) {
  const auto ws = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return std::string(s);
}

namespace {
bool has_control(std::string_view s) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) return true;
  }
  return false;
}
// Messages may hold line feeds and tabs (multi-line text, pasted code); any
// other C0 control, DEL and the C1 controls (U+0080..U+009F, bytes C2 80..C2 9F
// in UTF-8) are refused: they rewrite terminals and logs that show the text.
bool has_message_control(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F) return true;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9F) return true;
  }
  return false;
}
}  // namespace

std::optional<ChatError> check_name(std::string_view name, const Limits& limits) {
  const auto len = utf8_length(name);
  if (!len) return ChatError{"INVALID_NAME", "name is not valid UTF-8"};
  if (*len == 0) return ChatError{"INVALID_NAME", "name is empty"};
  if (*len > limits.max_name)
    return ChatError{"INVALID_NAME",
                     fmt::format("name is longer than {} characters", limits.max_name)};
  if (has_control(name)) return ChatError{"INVALID_NAME", "name contains control characters"};
  return std::nullopt;
}

std::optional<ChatError> check_room(std::string_view room, const Limits& limits) {
  if (room.empty()) return ChatError{"INVALID_ROOM", "room name is empty"};
  if (room.size() > limits.max_room_name)
    return ChatError{"INVALID_ROOM",
                     fmt::format("room name is longer than {} characters", limits.max_room_name)};
  for (char c : room) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == ' ';
    if (!ok)
      return ChatError{"INVALID_ROOM", "room names use letters, digits, '-', '_', '.' and spaces"};
  }
  if (room.front() == ' ' || room.back() == ' ')
    return ChatError{"INVALID_ROOM", "room name starts or ends with a space"};
  return std::nullopt;
}

std::optional<ChatError> check_message(std::string_view text, const Limits& limits) {
  const auto len = utf8_length(text);
  if (!len) return ChatError{"INVALID_MESSAGE", "message is not valid UTF-8"};
  if (*len == 0) return ChatError{"INVALID_MESSAGE", "message is empty"};
  if (*len > limits.max_message)
    return ChatError{"MESSAGE_TOO_LONG",
                     fmt::format("message is longer than {} characters", limits.max_message)};
  if (has_message_control(text))
    return ChatError{"INVALID_MESSAGE",
                     "message contains control characters (only line feed and tab are allowed)"};
  return std::nullopt;
}

}  // namespace chat::app
