// Engine.IO v4 codec: packets, long-polling payloads and base64.
// Pure functions over bytes; no I/O, no exceptions on bad input.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace chat::protocol::eio {

enum class PacketType : char {
  open = '0',
  close = '1',
  ping = '2',
  pong = '3',
  message = '4',
  upgrade = '5',
  noop = '6',
};

struct Packet {
  PacketType type = PacketType::message;
  std::string data;     // text after the type character, or raw bytes when binary
  bool binary = false;  // binary message (WebSocket binary frame, or "b<base64>" in polling)
};

// Separator between packets in a polling body.
inline constexpr char kRecordSeparator = '\x1e';

// Decode one text packet: a WebSocket text frame, or one record of a polling
// body. In polling, "b<base64>" is a binary message. nullopt when invalid.
std::optional<Packet> decode_text(std::string_view text, bool polling);

// Encode one packet as a polling record ("b<base64>" for binary).
std::string encode_polling(const Packet& p);
void append_polling(std::string& out, std::string_view text_packet, bool binary);

// Split a polling body into its records (empty records are kept, and invalid).
std::vector<std::string_view> split_payload(std::string_view body);

std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

// Parse the EIO query value; only "4" is supported.
bool supported_version(std::string_view eio);

}  // namespace chat::protocol::eio
