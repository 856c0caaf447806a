// What a replica accepts from the bus: every envelope the bus hands over is
// classified and checked here before the chat application acts on it.
//
// The bus has checked the envelope itself (bus/bus.hpp: parse); this checks
// its payload against what this version of the chat application publishes:
// room events by event name (docs/protocol.md, "Server to client"), control
// messages by their presence.* type. Required fields must be there with their
// type; fields a newer version adds are passed on (room events) or ignored
// (control). Pure functions of the envelope: no state, no broker, never throw
// for any input (fuzz/inbound_fuzzer.cpp).
#pragma once

#include "bus/bus.hpp"
#include "chat/presence.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <variant>

namespace chat::app {

// The control event names (routing key "cluster", envelope room "").
inline constexpr const char* kPresenceDelta = "presence.delta";
inline constexpr const char* kPresenceHeartbeat = "presence.heartbeat";
inline constexpr const char* kPresenceSync = "presence.sync";
inline constexpr const char* kPresenceSnapshot = "presence.snapshot";
inline constexpr const char* kPresenceBye = "presence.bye";

// What an envelope is; used as the label of chat_bus_bad_payloads_total.
enum class InboundKind { room, delta, heartbeat, snapshot, sync, bye, unknown_control };
inline constexpr std::size_t kInboundKinds = 7;
const char* inbound_kind_name(InboundKind kind);

struct Inbound {
  InboundKind kind = InboundKind::room;
  bool ok = false;  // false: drop it and count it under kind
  // The decoded control message (monostate for room events and bad input).
  std::variant<std::monostate, PresenceDelta, PresenceHeartbeat, PresenceSnapshot, PresenceSync,
               PresenceBye>
      control;
};

Inbound decode_inbound(const bus::Envelope& e);

// A room event's payload has every field its event carries, with its type,
// and names the envelope's room.
bool valid_room_event(const bus::Envelope& e);

// Per-kind counters of dropped envelopes (relaxed atomics, any thread).
struct InboundCounters {
  std::array<std::atomic<std::uint64_t>, kInboundKinds> bad{};
  void count(InboundKind kind) {
    bad[static_cast<std::size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace chat::app
