// Who a user is, as a verified token says (--auth jwt), and which rooms that
// lets them join and post in. Pure: no transport, no chat state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chat::auth {

// The claims of a verified token (docs/protocol.md, "Tokens").
struct Identity {
  std::string subject;             // "sub": the user id
  std::string name;                // "name": the display name ("sub" when absent)
  std::int64_t expires_ms = 0;     // "exp", in milliseconds since the epoch
  std::vector<std::string> rooms;  // "rooms": patterns of restricted rooms that may be joined
  std::optional<std::vector<std::string>> post;  // "post": patterns to post in (absent: anywhere)
  bool admin = false;                            // "admin": join and post anywhere
};

// Bounds on what a token may carry (a token is signed by the operator's
// backend, but its size is still the client's to choose).
inline constexpr std::size_t kMaxTokenBytes = 8192;
inline constexpr std::size_t kMaxSubjectBytes = 256;
inline constexpr std::size_t kMaxPatterns = 256;
inline constexpr std::size_t kMaxPatternBytes = 1024;

// True when room matches pattern: '*' stands for any run of characters
// (none included), every other character for itself.
bool pattern_matches(std::string_view pattern, std::string_view room);
bool any_matches(const std::vector<std::string>& patterns, std::string_view room);

// Which rooms need a claim: those matching one of the restricted patterns
// (--restricted-rooms). Every other room is public.
class RoomPolicy {
 public:
  RoomPolicy() = default;
  explicit RoomPolicy(std::vector<std::string> restricted) : restricted_(std::move(restricted)) {}
  bool restricted(std::string_view room) const { return any_matches(restricted_, room); }
  // A public room, or a restricted one the token names (or an admin).
  bool may_join(const Identity& id, std::string_view room) const {
    return id.admin || !restricted(room) || any_matches(id.rooms, room);
  }
  // Members may post unless the token lists where they may (admins anywhere).
  bool may_post(const Identity& id, std::string_view room) const {
    return id.admin || !id.post || any_matches(*id.post, room);
  }

 private:
  std::vector<std::string> restricted_;
};

}  // namespace chat::auth
