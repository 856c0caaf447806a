// Routing keys: percent-encoding of room names.
#include "bus/routing.hpp"

#include "bus/bus.hpp"

namespace chat::bus {

std::string routing_key(std::string_view room) {
  if (room.empty()) return std::string(kControlKey);
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string key = "room.";
  key.reserve(key.size() + room.size() * 3);
  for (const unsigned char c : room) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '_' || c == '-';
    if (plain) {
      key.push_back(static_cast<char>(c));
    } else {
      key.push_back('%');
      key.push_back(kHex[c >> 4]);
      key.push_back(kHex[c & 0x0F]);
    }
  }
  return key;
}

std::uint32_t partition_of(std::string_view room, std::uint32_t n) {
  if (n <= 1) return 0;
  if (!room.empty() && room.front() == '#') return n;
  std::uint32_t h = 2166136261u;
  for (const unsigned char c : room) {
    h ^= c;
    h *= 16777619u;
  }
  return h % n;
}

}  // namespace chat::bus
