// Heartbeats: the Engine.IO heartbeat timing of every session of one worker,
// without a timer per session.
//
// A session waits either the ping interval (until its next ping) or the ping
// timeout (for the pong). Both are the same for every session, so the due
// times of each kind grow in the order the waits begin: two FIFOs and one
// timer per worker, O(1) per heartbeat. A session holds a slot here from its
// first wait until it closes (a weak pointer and a generation, 24 bytes in
// one vector); a wait is an entry of 16 bytes (slot, generation, due time)
// instead of an asio timer and its pending wait (about 220 bytes). A new
// wait, or the slot's release, bumps the slot's generation, so an entry that
// is no longer the session's wait is skipped when due. Nothing a closed
// session leaves behind pins its memory. Runs on its worker's thread only.
//
// The timer fires on ticks (50 ms apart, or a tenth of the shorter of
// interval and timeout when that is less) and handles every wait due before
// the next tick: waits end up to a tick early, never late (a ping a little
// early is harmless, and a timeout of 20 s ends at 19.95 s at worst), and a
// worker with 20,000 sessions wakes 20 times a second for their pings
// instead of 800 (the pongs come back together too). On a virtual machine a
// wake-up costs more than the ping it sends.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

namespace chat::transport {

class EngineSession;

class Heartbeats {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Kind : std::uint8_t { interval, timeout };
  static constexpr std::uint32_t kNoSlot = UINT32_MAX;

  Heartbeats(boost::asio::io_context& ctx, Clock::duration interval, Clock::duration timeout)
      : timer_(ctx), interval_(interval), timeout_(timeout), tick_(tick_for(interval, timeout)) {}

  // The timer's granularity for these durations (at least 1 ms).
  static Clock::duration tick_for(Clock::duration interval, Clock::duration timeout);
  // The last tick at or before t: a wait due at t ends then.
  Clock::time_point tick_of(Clock::time_point t) const;

  std::uint32_t acquire(std::weak_ptr<EngineSession> s);
  void release(std::uint32_t slot);
  // After the interval (or the timeout), call on_heartbeat() of the slot's
  // session if it is alive and this is still its latest wait.
  void wait(Kind kind, std::uint32_t slot);

  std::size_t slots_in_use() const noexcept { return slots_.size() - free_.size(); }

 private:
  struct Slot {
    std::weak_ptr<EngineSession> session;
    std::uint32_t generation = 0;
  };
  struct Entry {
    Clock::time_point due;
    std::uint32_t slot;
    std::uint32_t generation;
  };
  void arm();
  void on_timer();

  boost::asio::steady_timer timer_;
  Clock::duration interval_;
  Clock::duration timeout_;
  Clock::duration tick_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::deque<Entry> due_[2];  // by Kind
  Clock::time_point armed_for_{};
  bool armed_ = false;
};

}  // namespace chat::transport
