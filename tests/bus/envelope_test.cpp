// Envelope wire format, routing keys and the dedupe window.
#include "bus/bus.hpp"
#include "bus/dedupe_window.hpp"
#include "bus/routing.hpp"

#include <gtest/gtest.h>

namespace chat::bus {
namespace {

Envelope sample() {
  Envelope e;
  e.origin = "r1#abc";
  e.id = "r1#abc-42";
  e.room = "dev.ops";
  e.event = "new message";
  e.payload = {{"message", "hé \"quoted\" \n"}, {"n", 3}};
  e.ts = 1700000000123;
  e.sender = "sock1";
  return e;
}

TEST(Envelope, RoundTrip) {
  const auto e = sample();
  const auto back = parse(serialize(e));
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(back->origin, e.origin);
  EXPECT_EQ(back->id, e.id);
  EXPECT_EQ(back->room, e.room);
  EXPECT_EQ(back->event, e.event);
  EXPECT_EQ(back->payload, e.payload);
  EXPECT_EQ(back->ts, e.ts);
  EXPECT_EQ(back->sender, e.sender);
}

TEST(Envelope, ControlEnvelopeHasEmptyRoom) {
  auto e = sample();
  e.room.clear();
  e.sender.clear();
  const auto back = parse(serialize(e));
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(back->room, "");
  EXPECT_EQ(back->sender, "");
}

TEST(Envelope, InvalidUtf8IsReplacedNotThrown) {
  auto e = sample();
  e.payload = {{"message", std::string("bad \xff\xfe bytes")}};
  std::string wire;
  EXPECT_NO_THROW(wire = serialize(e));
  EXPECT_NE(parse(wire), nullptr);
}

TEST(Envelope, ParseRejectsBadInput) {
  EXPECT_EQ(parse(""), nullptr);
  EXPECT_EQ(parse("not json"), nullptr);
  EXPECT_EQ(parse("[1,2]"), nullptr);
  EXPECT_EQ(parse("{\"v\":1,\"origin\":\"a\""), nullptr);  // truncated
  const nlohmann::json good = nlohmann::json::parse(serialize(sample()));
  EXPECT_NE(parse(good.dump()), nullptr);
  for (const char* key : {"v", "origin", "id", "room", "event", "payload"}) {
    auto j = good;
    j.erase(key);
    EXPECT_EQ(parse(j.dump()), nullptr) << "missing " << key;
  }
  auto j = good;
  j["v"] = 2;
  EXPECT_EQ(parse(j.dump()), nullptr) << "unknown version";
  j = good;
  j["origin"] = 5;
  EXPECT_EQ(parse(j.dump()), nullptr) << "origin not a string";
  j = good;
  j["ts"] = "soon";
  EXPECT_EQ(parse(j.dump()), nullptr) << "ts not a number";
  j = good;
  j["id"] = "";
  EXPECT_EQ(parse(j.dump()), nullptr) << "empty id";
}

TEST(Routing, KeysAreOneLiteralWord) {
  EXPECT_EQ(routing_key(""), "cluster");
  EXPECT_EQ(routing_key("general"), "room.general");
  EXPECT_EQ(routing_key("dev-ops_1"), "room.dev-ops_1");
  EXPECT_EQ(routing_key("a.b"), "room.a%2Eb");
  EXPECT_EQ(routing_key("*"), "room.%2A");
  EXPECT_EQ(routing_key("#"), "room.%23");
  EXPECT_EQ(routing_key("my room"), "room.my%20room");
  EXPECT_NE(routing_key("a.b"), routing_key("a%2Eb"));  // '%' itself is encoded
}

TEST(Dedupe, DropsRepeatsWithinTheWindowPerOrigin) {
  DedupeWindow w(3);
  EXPECT_TRUE(w.first_time("a", "1"));
  EXPECT_FALSE(w.first_time("a", "1"));
  EXPECT_TRUE(w.first_time("b", "1"));  // other origin, same id
  EXPECT_TRUE(w.first_time("a", "2"));
  EXPECT_TRUE(w.first_time("a", "3"));
  EXPECT_TRUE(w.first_time("a", "4"));  // evicts "1"
  EXPECT_TRUE(w.first_time("a", "1"));
  EXPECT_FALSE(w.first_time("a", "4"));
  EXPECT_EQ(w.origins(), 2u);
}

TEST(Dedupe, ForgetsOriginsIdleLongerThanTheTtl) {
  using namespace std::chrono_literals;
  DedupeWindow w(10, std::chrono::seconds(600));
  const auto t0 = DedupeWindow::Clock::now();
  EXPECT_TRUE(w.first_time("old", "1", t0));
  EXPECT_TRUE(w.first_time("live", "1", t0));
  EXPECT_TRUE(w.first_time("live", "2", t0 + 500s));
  // 11 minutes on: "old" was silent for longer than the ttl, "live" was not.
  EXPECT_TRUE(w.first_time("live", "3", t0 + 660s));
  EXPECT_EQ(w.origins(), 1u);
  EXPECT_FALSE(w.first_time("live", "2", t0 + 661s));  // still remembered
}

TEST(Envelope, BatchRoundTripKeepsOrder) {
  std::vector<std::string> bodies;
  for (int i = 0; i < 3; ++i) {
    auto e = sample();
    e.id = "id" + std::to_string(i);
    bodies.push_back(serialize(e));
  }
  std::vector<const std::string*> refs;
  for (const auto& b : bodies) refs.push_back(&b);
  std::size_t bad = 0;
  const auto got = parse_batch(join_batch(refs), bad);
  EXPECT_EQ(bad, 0u);
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got[i]->id, "id" + std::to_string(i));
}

TEST(Envelope, BatchAcceptsOneObjectAndCountsBadItems) {
  std::size_t bad = 0;
  auto got = parse_batch(serialize(sample()), bad);
  EXPECT_EQ(got.size(), 1u);
  EXPECT_EQ(bad, 0u);
  // Good items survive their bad neighbours; each bad one is counted.
  got = parse_batch("[" + serialize(sample()) + ",{\"v\":1},7]", bad);
  EXPECT_EQ(got.size(), 1u);
  EXPECT_EQ(bad, 2u);
  bad = 0;
  EXPECT_TRUE(parse_batch("[]", bad).empty());
  EXPECT_EQ(bad, 1u);
  bad = 0;
  EXPECT_TRUE(parse_batch("not json", bad).empty());
  EXPECT_EQ(bad, 1u);
}
}  // namespace
}  // namespace chat::bus
