// MessageText: the chat message the load generator sends and recognises.
//
//   lg|<room>|<sender>|<seq>|<due_ns>|<padding>
//
// The receiver learns from the text alone who sent it, in which room, its
// place in the sender's sequence and when it was due, so loss, duplication
// and latency need no shared state between sender and receiver.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace loadgen {

struct MessageText {
  std::string_view room;
  std::uint64_t sender = 0;
  std::uint64_t seq = 0;
  std::int64_t due_ns = 0;

  // Build the text, padded with 'x' up to size bytes (never truncated).
  static std::string make(std::string_view room, std::uint64_t sender, std::uint64_t seq,
                          std::int64_t due_ns, std::size_t size);
  // Find and parse the text inside an encoded "new message" packet. nullopt
  // when the packet carries no load generator text. room views into packet.
  static std::optional<MessageText> find_in(std::string_view packet);
};

}  // namespace loadgen
