// Heartbeats; see heartbeats.hpp.
#include "transport/heartbeats.hpp"

#include "transport/engine_session.hpp"

#include <algorithm>

namespace chat::transport {

Heartbeats::Clock::duration Heartbeats::tick_for(Clock::duration interval,
                                                 Clock::duration timeout) {
  const Clock::duration shortest = std::min(interval, timeout) / 10;
  return std::clamp<Clock::duration>(shortest, std::chrono::milliseconds(1),
                                     std::chrono::milliseconds(50));
}

Heartbeats::Clock::time_point Heartbeats::tick_of(Clock::time_point t) const {
  return Clock::time_point((t.time_since_epoch() / tick_) * tick_);
}

std::uint32_t Heartbeats::acquire(std::weak_ptr<EngineSession> s) {
  std::uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  slots_[slot].session = std::move(s);
  return slot;
}

void Heartbeats::release(std::uint32_t slot) {
  if (slot >= slots_.size()) return;
  auto& s = slots_[slot];
  s.session.reset();
  ++s.generation;  // its waiting entries no longer count
  free_.push_back(slot);
}

void Heartbeats::wait(Kind kind, std::uint32_t slot) {
  if (slot >= slots_.size()) return;
  const auto generation = ++slots_[slot].generation;  // the wait before no longer counts
  const auto due = Clock::now() + (kind == Kind::interval ? interval_ : timeout_);
  due_[static_cast<int>(kind)].push_back(Entry{due, slot, generation});
  // A timeout added now may be due before the tick the timer waits for.
  if (!armed_ || tick_of(due) < armed_for_) arm();
}

void Heartbeats::arm() {
  const auto& a = due_[0];
  const auto& b = due_[1];
  if (a.empty() && b.empty()) {
    armed_ = false;
    return;
  }
  const auto next = tick_of(a.empty()   ? b.front().due
                            : b.empty() ? a.front().due
                                        : std::min(a.front().due, b.front().due));
  armed_ = true;
  armed_for_ = next;
  timer_.expires_at(next);  // cancels the wait armed before, if any
  timer_.async_wait([this, next](const boost::system::error_code& ec) {
    // Aborted by a re-arm (or the worker stopping): the newer wait decides.
    if (ec || !armed_ || armed_for_ != next) return;
    on_timer();
  });
}

void Heartbeats::on_timer() {
  // Everything due before the next tick (the timer may fire a little late).
  const auto end = std::max(tick_of(Clock::now()), armed_for_) + tick_;
  for (auto& q : due_) {
    // Popped before the call: a session's on_heartbeat adds its next wait
    // (due an interval or a timeout from now: ten ticks or more later).
    while (!q.empty() && q.front().due < end) {
      const auto e = q.front();
      q.pop_front();
      if (slots_[e.slot].generation != e.generation) continue;  // given up since
      if (auto s = slots_[e.slot].session.lock()) s->on_heartbeat();
    }
  }
  arm();
}

}  // namespace chat::transport
