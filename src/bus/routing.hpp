// Routing keys of the chat exchange.
//
// Room traffic goes to "room.<encoded room>", control traffic (room "") to
// "cluster". Room names may contain '.', which a topic exchange treats as a
// word separator, and future limits might allow '*' or '#': everything but
// [A-Za-z0-9_-] is percent-encoded so a room name is always one literal word.
#pragma once

#include <string>
#include <string_view>

namespace chat::bus {

inline constexpr std::string_view kControlKey = "cluster";

std::string routing_key(std::string_view room);

}  // namespace chat::bus
