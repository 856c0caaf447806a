// Rooms: which of this replica's sockets are in which room, and broadcast
// to them; the part Socket.IO's adapter plays on one server.
//
// Membership lives with the workers: a socket's rooms are kept on its own
// worker's thread, so a broadcast walks them without a lock and touches no
// other worker's data. Which workers have a member of a room is shared (one
// lock per join, leave and delivered batch), so a broadcast is posted only
// to the workers that have one; the room's first member and its last on
// this replica are told to the owner (the chat application binds and
// unbinds the room on the bus), in order, under that lock.
//
// Member is the owner's per-socket record: what a broadcast may look at to
// skip one member (its skip predicate); the socket it is sent to is given
// at join.
#pragma once

#include "transport/api.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace chat::transport {

// What one broadcast did, for the owner's counters.
struct BroadcastResult {
  std::uint64_t sent = 0;
  std::uint64_t dropped = 0;  // droppable and the socket was slow
  std::uint64_t closed = 0;   // the socket was closed or overflowed
};

template <class Member>
class Rooms {
 public:
  using Hook = std::function<void(const std::string& room)>;
  // first: a room got its first member on this replica; last: it lost its last.
  Rooms(unsigned workers, Hook first, Hook last)
      : local_(workers), workers_(workers), first_(std::move(first)), last_(std::move(last)) {}
  Rooms(const Rooms&) = delete;
  Rooms& operator=(const Rooms&) = delete;

  // On socket's worker. The member and the socket stay valid until leave().
  void join(Member& m, Socket& socket, const std::string& room) {
    const unsigned w = socket.worker();
    local_[w].rooms[room].push_back(Entry{&m, &socket});
    std::lock_guard lk(mu_);
    auto& r = bound_[room];
    if (r.on.empty()) r.on.resize(workers_);  // sized once: every index below is a worker
    r.on[w] = true;
    if (++r.members == 1 && first_) first_(room);
  }

  // On socket's worker; a member not in the room is ignored.
  void leave(const Member& m, const Socket& socket, const std::string& room) {
    const unsigned w = socket.worker();
    auto& rooms = local_[w].rooms;
    const auto it = rooms.find(room);
    if (it == rooms.end()) return;
    auto& v = it->second;
    const auto pos =
        std::find_if(v.begin(), v.end(), [&](const Entry& e) { return e.member == &m; });
    if (pos == v.end()) return;
    *pos = v.back();
    v.pop_back();
    const bool worker_left = v.empty();  // the worker's last member of the room
    if (worker_left) rooms.erase(it);
    std::lock_guard lk(mu_);
    if (auto b = bound_.find(room); b != bound_.end()) {
      if (worker_left) b->second.on[w] = false;
      if (--b->second.members == 0) {
        bound_.erase(b);
        if (last_) last_(room);
      }
    }
  }

  // Any thread, one lock for the batch: drops the items whose room
  // (room_of(item)) has no member here, and marks in `to` (one flag per
  // worker) the workers with a member of a room kept. A member who joins
  // after this finds the item wherever the owner keeps it for joins.
  template <class T, class RoomOf>
  void route(std::vector<T>& items, RoomOf&& room_of, std::vector<bool>& to) const {
    to.assign(workers_, false);
    std::lock_guard lk(mu_);
    std::erase_if(items, [&](const T& item) {
      const auto it = bound_.find(room_of(item));
      if (it == bound_.end()) return true;
      for (std::size_t w = 0; w < to.size(); ++w)
        if (it->second.on[w]) to[w] = true;
      return false;
    });
  }

  // On worker w: the packet (encoded once, shared by every receiver) to
  // every member of room on w but the socket `except` (by id; empty: none)
  // and those skip(member) refuses.
  template <class Skip>
  BroadcastResult broadcast(unsigned w, const std::string& room,
                            const std::shared_ptr<const std::string>& packet, bool droppable,
                            std::string_view except, Skip&& skip) const {
    BroadcastResult r;
    const auto& rooms = local_[w].rooms;
    const auto it = rooms.find(room);
    if (it == rooms.end()) return r;
    for (const Entry& e : it->second) {
      if (!except.empty() && e.socket->id() == except) continue;
      if (skip(*e.member)) continue;
      switch (e.socket->send_encoded(packet, droppable)) {
        case SendResult::ok:
          ++r.sent;
          break;
        case SendResult::dropped:
          ++r.dropped;
          break;
        case SendResult::closed:
          ++r.closed;
          break;
      }
    }
    return r;
  }

  // Rooms with a member here; any thread.
  std::size_t size() const {
    std::lock_guard lk(mu_);
    return bound_.size();
  }

 private:
  struct Entry {
    Member* member;
    Socket* socket;
  };
  // One worker's rooms: touched on that worker's thread only.
  struct alignas(64) Local {
    std::unordered_map<std::string, std::vector<Entry>> rooms;
  };
  struct Bound {
    std::size_t members = 0;
    std::vector<bool> on;  // per worker
  };
  std::vector<Local> local_;
  const unsigned workers_;
  const Hook first_, last_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bound> bound_;
};

}  // namespace chat::transport
