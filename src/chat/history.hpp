// History: the last messages of every room, as this replica read them from
// the bus, for `join room` and `add user` replies (docs/protocol.md, "History").
//
// Every replica reads every room's messages when the bus keeps history (the
// RabbitMQ stream, docs/cluster.md), so any replica can answer for any room,
// also one it has no member in. Bounded: per_room messages per room, max_rooms
// rooms (the room that heard nothing for longest goes first). Thread-safe:
// the bus thread adds a batch under one lock; joins read under the same lock.
#pragma once

#include "bus/bus.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace chat::app {

class History {
 public:
  // recent: messages of all rooms kept in stream order for connection state
  // recovery (since()), 0: none. partitions: the bus's history partitions;
  // positions are ordered within one only, so each keeps its own recent
  // messages (recent / partitions of them, at least 1000).
  History(std::size_t per_room, std::size_t max_rooms, std::size_t recent = 0,
          std::uint32_t partitions = 1);

  // Keep the envelopes that belong in a room's history ("new message" with
  // a position); the rest are ignored. Positions already held are ignored.
  void add(const std::vector<bus::EnvelopePtr>& batch);
  // The room's last n messages, oldest first.
  std::vector<bus::EnvelopePtr> last(const std::string& room, std::size_t n) const;

  // Recovery: true when every message after position pos is still held
  // (nothing newer than pos was trimmed, and this replica read from before it).
  // In partition part (0 without partitions). With since_ms >= 0, also
  // true when this replica has read everything of the partition published
  // since a time at or before since_ms (read_since), nothing after pos trimmed.
  bool covers(std::int64_t pos, std::uint32_t part = 0, std::int64_t since_ms = -1) const;
  // The bus read every message of partition part published after ms.
  void read_since(std::uint32_t part, std::int64_t ms);
  // The held messages after pos in the given rooms (of partition part), in
  // stream order; upto is set to the newest position held there (of any
  // room), so a live delivery at or below it is one the caller already has.
  std::vector<bus::EnvelopePtr> since(std::int64_t pos, const std::vector<std::string>& rooms,
                                      std::int64_t& upto, std::uint32_t part = 0) const;

  // The newest position held in recent (-1: none).
  std::int64_t newest(std::uint32_t part = 0) const;
  std::size_t rooms() const;
  std::size_t messages() const;
  std::size_t per_room() const { return per_room_; }

  static bool kept(const bus::Envelope& e);

 private:
  struct Room {
    std::deque<bus::EnvelopePtr> messages;  // ascending positions
    std::list<std::string>::iterator lru;   // in lru_, most recent message last
  };
  void add_locked(const bus::EnvelopePtr& e);

  const std::size_t per_room_;
  const std::size_t max_rooms_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Room> rooms_;
  std::list<std::string> lru_;
  std::size_t messages_ = 0;
  const std::size_t recent_max_;  // per partition
  struct Recent {
    std::deque<bus::EnvelopePtr> messages;  // ascending positions, all rooms of the partition
    std::int64_t trimmed = -1;              // newest position dropped
    std::int64_t started = -1;              // first position this replica held
    std::int64_t read_since_ms = -1;        // see read_since()
  };
  std::vector<Recent> recent_;  // one per partition
  const Recent& recent_of(std::uint32_t part) const {
    return recent_[std::min<std::size_t>(part, recent_.size() - 1)];
  }
  Recent& recent_of(std::uint32_t part) {
    return recent_[std::min<std::size_t>(part, recent_.size() - 1)];
  }
};

}  // namespace chat::app
