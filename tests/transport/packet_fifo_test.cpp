// PacketFifo: the per-connection queue of outgoing packets.
#include "transport/engine_session.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace chat::transport {
namespace {

OutPacket packet(int n) {
  return OutPacket{std::make_shared<const std::string>(std::to_string(n))};
}

std::vector<std::string> drain(PacketFifo& q) {
  std::vector<std::string> out;
  while (!q.empty()) {
    out.push_back(*q.front().data);
    q.pop_front();
  }
  return out;
}

TEST(PacketFifo, KeepsOrderAcrossCompactionAndRefills) {
  PacketFifo q;
  EXPECT_TRUE(q.empty());
  int next = 0, expect = 0;
  // Push 3, pop 2, over and over: the head moves and the buffer compacts.
  for (int round = 0; round < 500; ++round) {
    for (int i = 0; i < 3; ++i) q.push_back(packet(next++));
    for (int i = 0; i < 2; ++i) {
      ASSERT_FALSE(q.empty());
      EXPECT_EQ(*q.front().data, std::to_string(expect++));
      q.pop_front();
    }
    EXPECT_EQ(q.size(), static_cast<std::size_t>(next - expect));
  }
  std::size_t seen = 0;
  for (auto& p : q) EXPECT_EQ(*p.data, std::to_string(expect + static_cast<int>(seen++)));
  EXPECT_EQ(seen, q.size());
  const auto rest = drain(q);
  ASSERT_EQ(rest.size(), seen);
  EXPECT_EQ(rest.back(), std::to_string(next - 1));
  EXPECT_TRUE(q.empty());
  q.push_back(packet(7));
  EXPECT_EQ(drain(q), std::vector<std::string>{"7"});
}

TEST(PacketFifo, ReleasesWhatItPoppedAtOnce) {
  PacketFifo q;
  auto data = std::make_shared<const std::string>("x");
  q.push_back(OutPacket{data});
  q.push_back(packet(1));
  EXPECT_EQ(data.use_count(), 2);
  q.pop_front();
  EXPECT_EQ(data.use_count(), 1);  // not held until the queue empties
  q.clear();
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace chat::transport
