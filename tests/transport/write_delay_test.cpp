// The write delay's load gate (DelayedFlushes::holds): a worker holds busy
// connections' flushes only while it sends at least the configured frames
// per second, judged over periods of at least 100 ms.
#include "transport/ws_connection.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <chrono>

using chat::transport::DelayedFlushes;
using namespace std::chrono_literals;

TEST(WriteDelayGate, HoldsOnlyWhileTheWorkerSendsAtTheRate) {
  boost::asio::io_context ctx;
  DelayedFlushes d(ctx, 1000.0);  // frames per second
  const auto t0 = DelayedFlushes::Clock::now();
  EXPECT_FALSE(d.holds(t0, 0));  // nothing sent yet
  // 150 frames in 150 ms: 1,000/s, at the rate.
  EXPECT_TRUE(d.holds(t0 + 150ms, 150));
  // Within the period the verdict stands, whatever was sent.
  EXPECT_TRUE(d.holds(t0 + 200ms, 150));
  // 20 frames in the next 150 ms: 133/s, under the rate.
  EXPECT_FALSE(d.holds(t0 + 300ms, 170));
  // A long quiet spell, then a burst judged over the whole spell: still quiet.
  EXPECT_FALSE(d.holds(t0 + 10s, 1170));
  // A fast period after it.
  EXPECT_TRUE(d.holds(t0 + 10s + 100ms, 1370));
}

TEST(WriteDelayGate, NoRateMeansAlwaysHold) {
  boost::asio::io_context ctx;
  DelayedFlushes d(ctx, 0.0);
  const auto t0 = DelayedFlushes::Clock::now();
  EXPECT_TRUE(d.holds(t0, 0));
  EXPECT_TRUE(d.holds(t0 + 1s, 0));
}
