// Plan layouts for each scenario.
#include "plan.hpp"

#include <charconv>
#include <stdexcept>

namespace loadgen {

namespace {
ServerAddress parse_url(const std::string& url) {
  std::string_view s = url;
  if (s.rfind("http://", 0) == 0) s.remove_prefix(7);
  if (s.rfind("ws://", 0) == 0) s.remove_prefix(5);
  if (auto slash = s.find('/'); slash != std::string_view::npos) s = s.substr(0, slash);
  const auto colon = s.rfind(':');
  if (colon == std::string_view::npos) throw std::invalid_argument("URL needs a port: " + url);
  ServerAddress a;
  a.host = std::string(s.substr(0, colon));
  if (a.host == "localhost") a.host = "127.0.0.1";
  const auto port = s.substr(colon + 1);
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), a.port);
  if (ec != std::errc{} || p != port.data() + port.size() || a.port == 0)
    throw std::invalid_argument("bad port in URL: " + url);
  return a;
}
}  // namespace

Plan::Plan(const Options& o) {
  if (o.urls.empty()) throw std::invalid_argument("--urls: at least one server");
  for (const auto& u : o.urls) servers_.push_back(parse_url(u));
  if (o.source_addrs == 0 || o.source_addrs > 254)
    throw std::invalid_argument("--source-addrs must be 1..254");
  if (o.room_size < 2) throw std::invalid_argument("--room-size must be at least 2");
  const bool peer = o.target == "peer";
  if (!peer && o.target != "chat") throw std::invalid_argument("--target must be chat or peer");
  const std::string& sc = o.scenario;
  if (sc != "fanout" && sc != "rooms" && sc != "latency" && sc != "idle" && sc != "churn")
    throw std::invalid_argument("unknown scenario: " + sc);
  const bool chatting = sc == "fanout" || sc == "rooms" || sc == "latency";

  const auto n_urls = static_cast<unsigned>(servers_.size());
  const std::string prefix = "lg" + std::to_string(o.tag);
  clients_.resize(o.connections);
  for (unsigned i = 0; i < o.connections; ++i) {
    auto& c = clients_[i];
    c.url = i % n_urls;
    c.source = "127.0.0." + std::to_string(1 + (i / n_urls) % o.source_addrs);
    c.id = (static_cast<std::uint64_t>(o.tag) << 32) | i;
    if (!chatting) continue;
    c.login = true;
    if (sc == "fanout") {
      // Everyone in one room: the default room of our server (shared by every
      // process), the whole server for the peer.
      c.room = peer ? "all" : "general";
      c.sender = i < o.senders;
    } else if (sc == "latency") {
      c.room = peer ? "all" : prefix + "-lat";
      c.join = !peer;
      c.sender = i < o.senders;
    } else {
      // The peer has no rooms: the room is named only in the text, and the
      // receivers count what reaches them from other rooms.
      c.room = prefix + "-r" + std::to_string(i / o.room_size);
      c.join = !peer;
      c.sender = true;
    }
    if (c.sender) {
      c.sender_ordinal = sender_count_++;
      senders_by_room_[c.room].push_back(i);
    }
  }
  if (chatting && sender_count_ == 0) throw std::invalid_argument("no senders: raise --senders");
  if (chatting && o.rate <= 0) throw std::invalid_argument("--rate must be positive");
}

const std::vector<std::size_t>& Plan::senders_in(const std::string& room) const {
  static const std::vector<std::size_t> none;
  const auto it = senders_by_room_.find(room);
  return it == senders_by_room_.end() ? none : it->second;
}

}  // namespace loadgen
