// Socket.IO v5 codec: packets, namespaces, ack ids and binary attachments.
// Pure functions; decode never throws and reports why a packet is invalid.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace chat::protocol::sio {

enum class Type : int {
  connect = 0,
  disconnect = 1,
  event = 2,
  ack = 3,
  connect_error = 4,
  binary_event = 5,
  binary_ack = 6,
};

struct Packet {
  Type type = Type::event;
  std::string nsp = "/";
  std::optional<std::uint64_t> ack_id;
  std::size_t attachments = 0;  // binary types only
  std::optional<nlohmann::json> data;
};

struct DecodeError {
  std::string reason;
};

struct DecodeLimits {
  std::size_t max_attachments = 10;
  std::size_t max_depth = 64;  // JSON nesting; deeper input is refused before parsing
};

// Decode a Socket.IO packet (the Engine.IO message text without its "4").
std::variant<Packet, DecodeError> decode(std::string_view text, const DecodeLimits& limits = {});

// Encode a packet without binary values (the Engine.IO "4" not included).
std::string encode(const Packet& p);

// Replace binary values (json::binary_t) with {"_placeholder":true,"num":n};
// returns the attachments in order. Empty when the data has no binary.
std::vector<std::string> deconstruct(nlohmann::json& data);
// Put the attachments back in place of their placeholders. False when a
// placeholder is malformed or its number is out of range.
bool reconstruct(nlohmann::json& data, const std::vector<std::string>& attachments);

bool has_binary(const nlohmann::json& data);
bool is_reserved_event(std::string_view name);

// True when the nesting depth of JSON text stays within max_depth (strings honoured).
bool depth_within(std::string_view json_text, std::size_t max_depth);

}  // namespace chat::protocol::sio
