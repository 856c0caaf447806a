// libFuzzer target: what a replica does with a broker message before it acts
// on it. Any bytes must go through the bus's envelope parser and the chat
// application's checks (chat/inbound) without crashing, throwing or looping;
// what passes must be safe to use: applied to a presence directory that
// stays consistent, payloads that dump (as delivery encodes them), envelopes
// that serialize and parse back to the same thing.
#include "bus/bus.hpp"
#include "chat/inbound.hpp"
#include "chat/presence.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace chat;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::size_t bad = 0;
  const auto envelopes = bus::parse_batch(input, bad);
  check(envelopes.size() + bad >= 1);

  app::Presence presence("self#1", "r0");
  {
    auto lk = presence.lock();  // a local user, so the directory is not empty
    presence.login("local", "me");
    presence.join("local", "general");
  }
  for (const auto& e : envelopes) {
    // A parsed envelope serializes and parses back to the same envelope.
    const auto again = bus::parse(bus::serialize(*e));
    check(again && again->origin == e->origin && again->id == e->id && again->room == e->room &&
          again->event == e->event && bus::payload_json(*again) == bus::payload_json(*e) &&
          again->payload_text.empty() == e->payload_text.empty() && again->ts == e->ts);
    auto in = app::decode_inbound(*e);
    if (!in.ok) continue;
    if (in.kind == app::InboundKind::room) {
      // Room traffic keeps its payload as text, one JSON object that a DOM
      // parser reads as well; delivery copies it into every receiver's frame.
      check(e->payload.is_null() && e->payload_text.size() >= 2 && e->payload_text.front() == '{' &&
            e->payload_text.back() == '}' &&
            nlohmann::json::parse(e->payload_text, nullptr, false).is_object());
      continue;
    }
    if (auto* d = std::get_if<app::PresenceDelta>(&in.control)) {
      presence.apply_delta(e->origin, *d);
    } else if (auto* hb = std::get_if<app::PresenceHeartbeat>(&in.control)) {
      presence.apply_heartbeat(e->origin, *hb);
    } else if (auto* snap = std::get_if<app::PresenceSnapshot>(&in.control)) {
      presence.apply_snapshot(e->origin, *snap);
    } else if (std::holds_alternative<app::PresenceBye>(in.control)) {
      presence.remove_replica(e->origin);
    }
    check(presence.consistent());
  }
  // Queries over whatever was applied, then expiry of every other replica.
  (void)presence.rooms();
  (void)presence.replicas();
  (void)presence.room_users("general", 10);
  presence.expire(std::chrono::milliseconds(0),
                  app::Presence::Clock::now() + std::chrono::hours(1));
  check(presence.consistent());
  check(presence.num_users() == 1 && presence.room_count("general") == 1);
  return 0;
}
