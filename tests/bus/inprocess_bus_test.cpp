// InProcessBus: every publish comes back once through the delivery handler.
#include "bus/inprocess_bus.hpp"
#include "bus/factory.hpp"

#include <gtest/gtest.h>

namespace chat::bus {
namespace {

EnvelopePtr make(std::string room, std::string id) {
  auto e = std::make_shared<Envelope>();
  e->origin = "solo";
  e->id = std::move(id);
  e->room = std::move(room);
  e->event = "new message";
  e->payload = {{"message", "hi"}};
  return e;
}

TEST(InProcessBus, FactoryPicksItWithoutUrl) {
  auto bus = make_bus(BusConfig{});
  EXPECT_EQ(bus->status().kind, "inprocess");
  EXPECT_NE(dynamic_cast<InProcessBus*>(bus.get()), nullptr);
}

TEST(InProcessBus, DeliversOnceAndConfirms) {
  InProcessBus bus;
  std::vector<EnvelopePtr> got;
  std::vector<bool> states;
  bus.start([&](std::vector<EnvelopePtr> b) { got.insert(got.end(), b.begin(), b.end()); },
            [&](bool r) { states.push_back(r); });
  EXPECT_EQ(states, std::vector<bool>{true});
  EXPECT_TRUE(bus.status().ready);
  int confirms = 0;
  bus.publish(make("general", "1"),
              [&](PublishStatus st) { confirms += st == PublishStatus::ok ? 1 : 100; });
  bus.publish(make("", "2"), {});
  bus.bind_room("general");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]->id, "1");
  EXPECT_EQ(got[1]->room, "");
  EXPECT_EQ(confirms, 1);
  const auto s = bus.status();
  EXPECT_EQ(s.published, 2u);
  EXPECT_EQ(s.confirmed, 2u);
  EXPECT_EQ(s.bound_rooms, 1u);
  bus.unbind_room("general");
  EXPECT_EQ(bus.status().bound_rooms, 0u);
}

TEST(InProcessBus, AfterStopPublishIsRefused) {
  InProcessBus bus;
  int delivered = 0;
  bus.start([&](std::vector<EnvelopePtr> b) { delivered += static_cast<int>(b.size()); }, {});
  bus.stop();
  bool confirmed = true;
  bus.publish(make("general", "1"), [&](PublishStatus st) { confirmed = st == PublishStatus::ok; });
  EXPECT_FALSE(confirmed);
  EXPECT_EQ(delivered, 0);
  EXPECT_FALSE(bus.status().ready);
}

}  // namespace
}  // namespace chat::bus
