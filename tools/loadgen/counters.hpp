// Counters: plain per-thread event counts (one thread writes, read after join).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>

namespace loadgen {

struct Counters {
  std::uint64_t connect_attempts = 0;
  std::uint64_t connected = 0;       // Socket.IO CONNECT answered
  std::uint64_t ready = 0;           // logged in and in the room
  std::uint64_t connect_errors = 0;  // TCP, WebSocket or Socket.IO refusal
  std::uint64_t disconnects = 0;     // lost while we wanted it open
  std::uint64_t protocol_errors = 0;
  std::uint64_t chat_errors = 0;  // "chat error" events and failed acks
  std::uint64_t sent = 0;
  std::uint64_t delivered = 0;  // fresh messages for a room the receiver is in
  std::uint64_t duplicates = 0;
  std::uint64_t reordered = 0;
  std::uint64_t foreign = 0;     // messages for rooms the receiver is not in
  std::uint64_t self_echo = 0;   // own messages sent back
  std::uint64_t lost = 0;        // computed after the drain
  std::uint64_t expected = 0;    // computed after the drain
  std::uint64_t handshakes = 0;  // churn: full open + CONNECT + close cycles
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;

  void add(const Counters& o);
  std::uint64_t errors() const {
    return connect_errors + disconnects + protocol_errors + chat_errors;
  }
  nlohmann::json to_json() const;
  static Counters from_json(const nlohmann::json& j);
};

}  // namespace loadgen
