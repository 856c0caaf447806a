// Counters arithmetic and JSON form (one list of fields so they stay in step).
#include "counters.hpp"

#include <vector>

namespace loadgen {

namespace {
template <class F>
void each_field(Counters& c, F f) {
  f("connect_attempts", c.connect_attempts);
  f("connected", c.connected);
  f("ready", c.ready);
  f("connect_errors", c.connect_errors);
  f("disconnects", c.disconnects);
  f("protocol_errors", c.protocol_errors);
  f("chat_errors", c.chat_errors);
  f("sent", c.sent);
  f("delivered", c.delivered);
  f("duplicates", c.duplicates);
  f("reordered", c.reordered);
  f("foreign", c.foreign);
  f("self_echo", c.self_echo);
  f("lost", c.lost);
  f("expected", c.expected);
  f("handshakes", c.handshakes);
  f("bytes_in", c.bytes_in);
  f("bytes_out", c.bytes_out);
}
}  // namespace

void Counters::add(const Counters& o) {
  Counters copy = o;
  std::vector<std::uint64_t> values;
  each_field(copy, [&](const char*, std::uint64_t& v) { values.push_back(v); });
  std::size_t i = 0;
  each_field(*this, [&](const char*, std::uint64_t& v) { v += values[i++]; });
}

nlohmann::json Counters::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  Counters copy = *this;
  each_field(copy, [&](const char* name, std::uint64_t& v) { j[name] = v; });
  return j;
}

Counters Counters::from_json(const nlohmann::json& j) {
  Counters c;
  each_field(c, [&](const char* name, std::uint64_t& v) { v = j.value(name, std::uint64_t{0}); });
  return c;
}

}  // namespace loadgen
