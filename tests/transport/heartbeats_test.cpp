// Heartbeats' tick: waits end on a tick (at most 50 ms apart, a tenth of
// the shorter of interval and timeout when that is less), early by less
// than a tick and never late.
#include "transport/heartbeats.hpp"

#include <gtest/gtest.h>

#include <chrono>

using chat::transport::Heartbeats;
using namespace std::chrono_literals;

TEST(HeartbeatTick, FiftyMillisecondsOrATenthOfTheShorterWait) {
  EXPECT_EQ(Heartbeats::tick_for(25s, 20s), 50ms);
  EXPECT_EQ(Heartbeats::tick_for(300ms, 200ms), 20ms);
  EXPECT_EQ(Heartbeats::tick_for(5ms, 5ms), 1ms);  // never below a millisecond
}

TEST(HeartbeatTick, ADueTimeMovesToTheLastTickAtOrBeforeIt) {
  boost::asio::io_context ctx;
  Heartbeats h(ctx, 25s, 20s);
  const auto t = Heartbeats::Clock::now();
  for (auto d : {0ms, 1ms, 17ms, 49ms, 50ms, 51ms, 1234ms}) {
    const auto due = t + d;
    const auto at = h.tick_of(due);
    EXPECT_LE(at, due);
    EXPECT_LT(due - at, 50ms);
    EXPECT_EQ(at.time_since_epoch() % 50ms, Heartbeats::Clock::duration::zero());
  }
  // Due times within one tick share it.
  const auto base = h.tick_of(t);
  EXPECT_EQ(h.tick_of(base + 1ms), base);
  EXPECT_EQ(h.tick_of(base + 49ms), base);
  EXPECT_EQ(h.tick_of(base + 50ms), base + 50ms);
}
