// Socket.IO v5 codec; see socketio.hpp. Rules follow the reference parser:
// <type>[<attachments>-][<nsp>,][<ack id>][<json>]
#include "protocol/socketio.hpp"

#include <array>

namespace chat::protocol::sio {

using nlohmann::json;

namespace {
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool payload_valid(const Packet& p) {
  const auto& d = p.data;
  switch (p.type) {
    case Type::connect:
      return !d || d->is_object();
    case Type::disconnect:
      return !d;
    case Type::connect_error:
      return d && (d->is_object() || d->is_string());
    case Type::event:
    case Type::binary_event:
      if (!d || !d->is_array() || d->empty()) return false;
      if ((*d)[0].is_number()) return true;
      return (*d)[0].is_string() && !is_reserved_event((*d)[0].get_ref<const std::string&>());
    case Type::ack:
    case Type::binary_ack:
      return d && d->is_array();
  }
  return false;
}

void walk_deconstruct(json& node, std::vector<std::string>& out) {
  if (node.is_binary()) {
    const auto& bin = node.get_binary();
    out.emplace_back(bin.begin(), bin.end());
    node = json{{"_placeholder", true}, {"num", out.size() - 1}};
  } else if (node.is_array() || node.is_object()) {
    for (auto& child : node) walk_deconstruct(child, out);
  }
}

bool walk_reconstruct(json& node, const std::vector<std::string>& att) {
  if (node.is_object()) {
    auto ph = node.find("_placeholder");
    if (ph != node.end() && ph->is_boolean() && ph->get<bool>()) {
      auto num = node.find("num");
      if (num == node.end() || !num->is_number_unsigned()) return false;
      const auto n = num->get<std::uint64_t>();
      if (n >= att.size()) return false;
      node = json::binary(json::binary_t::container_type(att[n].begin(), att[n].end()));
      return true;
    }
  }
  if (node.is_array() || node.is_object())
    for (auto& child : node)
      if (!walk_reconstruct(child, att)) return false;
  return true;
}
}  // namespace

bool is_reserved_event(std::string_view name) {
  static constexpr std::array<std::string_view, 6> kReserved = {
      "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"};
  for (auto r : kReserved)
    if (r == name) return true;
  return false;
}

bool depth_within(std::string_view s, std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

std::variant<Packet, DecodeError> decode(std::string_view s, const DecodeLimits& limits) {
  if (s.empty()) return DecodeError{"empty packet"};
  if (s[0] < '0' || s[0] > '6') return DecodeError{"unknown packet type"};
  Packet p;
  p.type = static_cast<Type>(s[0] - '0');
  std::size_t i = 1;

  if (p.type == Type::binary_event || p.type == Type::binary_ack) {
    const auto start = i;
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i == start || i >= s.size() || s[i] != '-') return DecodeError{"illegal attachments"};
    if (i - start > 6) return DecodeError{"too many attachments"};
    p.attachments = std::stoul(std::string(s.substr(start, i - start)));
    if (p.attachments > limits.max_attachments) return DecodeError{"too many attachments"};
    // Clients only send binary types when there is binary; zero is malformed.
    if (p.attachments == 0) return DecodeError{"no attachments"};
    ++i;  // '-'
  }

  if (i < s.size() && s[i] == '/') {
    const auto comma = s.find(',', i);
    const auto end = comma == std::string_view::npos ? s.size() : comma;
    p.nsp = std::string(s.substr(i, end - i));
    i = comma == std::string_view::npos ? s.size() : comma + 1;
  }

  if (i < s.size() && is_digit(s[i])) {
    const auto start = i;
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i - start > 15) return DecodeError{"ack id too long"};
    p.ack_id = std::stoull(std::string(s.substr(start, i - start)));
  }

  if (i < s.size()) {
    const auto text = s.substr(i);
    if (!depth_within(text, limits.max_depth)) return DecodeError{"payload nested too deeply"};
    auto j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return DecodeError{"invalid payload"};
    p.data = std::move(j);
  }
  if (!payload_valid(p)) return DecodeError{"invalid payload"};
  return p;
}

std::string encode(const Packet& p) {
  std::string out;
  out += static_cast<char>('0' + static_cast<int>(p.type));
  if (p.type == Type::binary_event || p.type == Type::binary_ack) {
    out += std::to_string(p.attachments);
    out += '-';
  }
  if (!p.nsp.empty() && p.nsp != "/") {
    out += p.nsp;
    out += ',';
  }
  if (p.ack_id) out += std::to_string(*p.ack_id);
  if (p.data) out += p.data->dump(-1, ' ', false, json::error_handler_t::replace);
  return out;
}

std::vector<std::string> deconstruct(json& data) {
  std::vector<std::string> out;
  walk_deconstruct(data, out);
  return out;
}

bool reconstruct(json& data, const std::vector<std::string>& attachments) {
  return walk_reconstruct(data, attachments);
}

bool has_binary(const json& data) {
  if (data.is_binary()) return true;
  if (data.is_array() || data.is_object())
    for (const auto& c : data)
      if (has_binary(c)) return true;
  return false;
}

}  // namespace chat::protocol::sio
