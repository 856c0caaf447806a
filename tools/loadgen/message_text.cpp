// MessageText formatting and a parser that works on the raw packet text
// (no JSON parse on the receive path: the fields are plain ASCII).
#include "message_text.hpp"

#include <charconv>

namespace loadgen {

std::string MessageText::make(std::string_view room, std::uint64_t sender, std::uint64_t seq,
                              std::int64_t due_ns, std::size_t size) {
  std::string s;
  s.reserve(size > 64 ? size : 64);
  s += "lg|";
  s += room;
  s += '|';
  s += std::to_string(sender);
  s += '|';
  s += std::to_string(seq);
  s += '|';
  s += std::to_string(due_ns);
  s += '|';
  if (s.size() < size) s.append(size - s.size(), 'x');
  return s;
}

namespace {
template <class T>
bool take_number(std::string_view& rest, T& out) {
  auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), out);
  if (ec != std::errc{} || p == rest.data() + rest.size() || *p != '|') return false;
  rest.remove_prefix(static_cast<std::size_t>(p - rest.data()) + 1);
  return true;
}
}  // namespace

std::optional<MessageText> MessageText::find_in(std::string_view packet) {
  constexpr std::string_view kKey = "\"message\":\"lg|";
  const auto at = packet.find(kKey);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = packet.substr(at + kKey.size());
  MessageText m;
  const auto bar = rest.find('|');
  if (bar == std::string_view::npos) return std::nullopt;
  m.room = rest.substr(0, bar);
  rest.remove_prefix(bar + 1);
  if (!take_number(rest, m.sender) || !take_number(rest, m.seq) || !take_number(rest, m.due_ns))
    return std::nullopt;
  return m;
}

}  // namespace loadgen
