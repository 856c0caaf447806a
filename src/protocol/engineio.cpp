// Engine.IO v4 codec; see engineio.hpp.
#include "protocol/engineio.hpp"

#include <array>

namespace chat::protocol::eio {

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<signed char, 256> make_reverse() {
  std::array<signed char, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i)
    t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<signed char>(i);
  return t;
}
constexpr auto kReverse = make_reverse();

bool valid_type(char c) {
  return c >= '0' && c <= '6';
}
}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (const auto rest = in.size() - i; rest > 0) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (rest == 2) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  unsigned acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = kReverse[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

std::optional<Packet> decode_text(std::string_view text, bool polling) {
  if (text.empty()) return std::nullopt;
  if (polling && text.front() == 'b') {
    auto bytes = base64_decode(text.substr(1));
    if (!bytes) return std::nullopt;
    return Packet{PacketType::message, std::move(*bytes), true};
  }
  if (!valid_type(text.front())) return std::nullopt;
  return Packet{static_cast<PacketType>(text.front()), std::string(text.substr(1)), false};
}

void append_polling(std::string& out, std::string_view text_packet, bool binary) {
  if (binary) {
    out += 'b';
    out += base64_encode(text_packet);
  } else {
    out += text_packet;
  }
}

std::string encode_polling(const Packet& p) {
  std::string out;
  if (p.binary) {
    append_polling(out, p.data, true);
  } else {
    out += static_cast<char>(p.type);
    out += p.data;
  }
  return out;
}

std::vector<std::string_view> split_payload(std::string_view body) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    const auto pos = body.find(kRecordSeparator, start);
    if (pos == std::string_view::npos) {
      out.push_back(body.substr(start));
      break;
    }
    out.push_back(body.substr(start, pos - start));
    start = pos + 1;
  }
  return out;
}

bool supported_version(std::string_view eio) {
  return eio == "4";
}

}  // namespace chat::protocol::eio
