// Envelope wire format, routing keys and the dedupe window.
#include "bus/bus.hpp"
#include "bus/dedupe_window.hpp"
#include "bus/routing.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

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
  // A room envelope keeps its payload as compact text, no DOM.
  EXPECT_TRUE(back->payload.is_null());
  EXPECT_EQ(back->payload_text, e.payload.dump());
  EXPECT_EQ(payload_json(*back), e.payload);
  EXPECT_EQ(back->ts, e.ts);
  EXPECT_EQ(back->sender, e.sender);
}

TEST(Envelope, ControlAndReservedRoomsAreParsedIntoADom) {
  for (const char* room : {"", "#sessions"}) {
    auto e = sample();
    e.room = room;
    const auto back = parse(serialize(e));
    ASSERT_NE(back, nullptr) << room;
    EXPECT_TRUE(back->payload_text.empty()) << room;
    EXPECT_EQ(back->payload, e.payload) << room;
  }
}

TEST(Envelope, PayloadTextIsCompactValidJsonWhateverTheWireHad) {
  // Spaces, escapes and a duplicate key on the wire: the text is compact
  // and reads back as the same object a DOM parser sees.
  const std::string wire =
      R"({ "v":1, "origin":"o", "id":"o-1", "room":"r", "event":"typing", "ts":5,)"
      R"( "payload" : { "a" : "x\u00e9\n" , "b" : [ 1 , 2.5 , null ], "a": "last" } })";
  const auto e = parse(wire);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->payload_text.find(' '), std::string::npos);
  const auto dom = nlohmann::json::parse(e->payload_text);
  EXPECT_EQ(dom["a"], "last");
  EXPECT_EQ(dom["b"], nlohmann::json::parse("[1,2.5,null]"));
  // Not an object, or a version that is not the integer 1: refused.
  EXPECT_EQ(parse(R"({"v":1,"origin":"o","id":"o-1","room":"r","event":"typing","payload":[1]})"),
            nullptr);
  EXPECT_EQ(parse(R"({"v":1.0,"origin":"o","id":"o-1","room":"r","event":"typing","payload":{}})"),
            nullptr);
  EXPECT_EQ(parse(R"({"v":1,"origin":"o","id":"o-1","room":"r","event":"typing","payload":{},)"
                  R"("ts":9223372036854775808})"),
            nullptr);  // ts beyond int64
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

TEST(Dedupe, CounterIdsAreKeptAsNumbersWithTheSameWindow) {
  EXPECT_EQ(DedupeWindow::counter_of("r1#ab", "r1#ab-42"), 42u);
  EXPECT_EQ(DedupeWindow::counter_of("r1#ab", "r1#ab-0"), 0u);
  EXPECT_FALSE(DedupeWindow::counter_of("r1#ab", "r1#ab-042"));  // not the same id as -42
  EXPECT_FALSE(DedupeWindow::counter_of("r1#ab", "r1#ab-"));
  EXPECT_FALSE(DedupeWindow::counter_of("r1#ab", "r1#ab-4x"));
  EXPECT_FALSE(DedupeWindow::counter_of("r1#ab", "r1#ac-4"));
  EXPECT_FALSE(DedupeWindow::counter_of("r1#ab", "r1#ab+4"));
  EXPECT_FALSE(DedupeWindow::counter_of("r1#ab", "r1#ab-12345678901234567890"));  // 20 digits
  DedupeWindow w(3);
  EXPECT_TRUE(w.first_time("o", "o-1"));
  EXPECT_FALSE(w.first_time("o", "o-1"));
  EXPECT_TRUE(w.first_time("o", "o-01"));  // another id, kept as a string
  EXPECT_FALSE(w.first_time("o", "o-01"));
  EXPECT_TRUE(w.first_time("p", "o-1"));  // another origin: a string id there
  EXPECT_TRUE(w.first_time("o", "o-2"));
  EXPECT_TRUE(w.first_time("o", "o-3"));
  EXPECT_FALSE(w.first_time("o", "o-1"));  // still among the last 3
  EXPECT_TRUE(w.first_time("o", "o-4"));   // evicts o-1
  EXPECT_TRUE(w.first_time("o", "o-1"));
  EXPECT_FALSE(w.first_time("o", "o-4"));
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
// Everything the broker can carry that is not an envelope of ours: dropped,
// counted, never thrown.
TEST(Envelope, ParseRejectsEveryMalformedFieldWithoutThrowing) {
  const nlohmann::json good = nlohmann::json::parse(serialize(sample()));
  const std::vector<std::pair<const char*, nlohmann::json>> bad_values = {
      {"v", "1"},
      {"v", 1.0},
      {"v", 4294967297ULL},
      {"v", -1},
      {"v", nullptr},
      {"origin", 7},
      {"origin", ""},
      {"origin", nullptr},
      {"id", true},
      {"id", nlohmann::json::array()},
      {"room", 1},
      {"room", nullptr},
      {"event", ""},
      {"event", 3},
      {"sender", 1},
      {"payload", "text"},
      {"payload", 3},
      {"payload", nullptr},
      {"payload", {1, 2}},
      {"ts", 1.5},
      {"ts", "now"},
      {"ts", 18446744073709551615ULL},
      {"origin", std::string(kMaxOriginBytes + 1, 'o')},
      {"id", std::string(kMaxIdBytes + 1, 'i')},
      {"room", std::string(kMaxRoomBytes + 1, 'r')},
      {"event", std::string(kMaxEventBytes + 1, 'e')}};
  for (const auto& [key, value] : bad_values) {
    auto j = good;
    j[key] = value;
    EnvelopePtr e;
    EXPECT_NO_THROW(e = parse(j.dump())) << key << "=" << value.dump();
    EXPECT_EQ(e, nullptr) << key << "=" << value.dump();
    std::size_t bad = 0;
    EXPECT_TRUE(parse_batch("[" + j.dump() + "]", bad).empty());
    EXPECT_EQ(bad, 1u);
  }
  // At the bounds they pass.
  auto j = good;
  j["origin"] = std::string(kMaxOriginBytes, 'o');
  j["room"] = std::string(kMaxRoomBytes, 'r');
  EXPECT_NE(parse(j.dump()), nullptr);
  // Unknown fields are a newer version's business.
  j["later"] = {{"x", 1}};
  EXPECT_NE(parse(j.dump()), nullptr);
}

TEST(Envelope, HugeDeepEmptyAndGarbageBodiesAreCountedBad) {
  const auto good = serialize(sample());
  const std::vector<std::string> bodies = {
      "",
      " ",
      "null",
      "\"text\"",
      "42",
      "{}",
      "[[]]",
      "[null,true,1,\"x\",{}]",
      std::string(1, '\0'),
      "\xff\xfe{",
      std::string(100000, '['),                                 // deep, unterminated
      std::string(40, '[') + std::string(40, ']'),              // deep, valid JSON
      good.substr(0, good.size() / 2),                          // truncated
      "[" + good + "," + std::string(kMaxBodyBytes, ' ') + "]"  // over the size bound
  };
  for (const auto& body : bodies) {
    std::size_t bad = 0;
    std::vector<EnvelopePtr> got;
    EXPECT_NO_THROW(got = parse_batch(body, bad)) << body.substr(0, 40);
    EXPECT_TRUE(got.empty()) << body.substr(0, 40);
    EXPECT_GE(bad, 1u) << body.substr(0, 40);
  }
  // Array items that are not envelopes are counted one by one.
  std::size_t bad = 0;
  EXPECT_EQ(parse_batch("[null,true,1,\"x\",{}," + good + "]", bad).size(), 1u);
  EXPECT_EQ(bad, 5u);
  // A payload nesting deeper than the bound is refused before parsing.
  auto deep = sample();
  deep.payload = nlohmann::json::object();
  auto* at = &deep.payload;
  for (std::size_t i = 0; i < kMaxNesting; ++i) at = &((*at)["x"] = nlohmann::json::object());
  EXPECT_EQ(parse(serialize(deep)), nullptr);
  // More envelopes in one message than any sender joins.
  std::vector<std::string> many(kMaxJoined + 1, good);
  std::vector<const std::string*> refs;
  for (const auto& b : many) refs.push_back(&b);
  bad = 0;
  EXPECT_TRUE(parse_batch(join_batch(refs), bad).empty());
  EXPECT_EQ(bad, kMaxJoined + 1);
}

TEST(Envelope, NestingScanIgnoresBracketsInStrings) {
  EXPECT_FALSE(nesting_exceeds("{\"a\":\"[[[[[[\"}", 2));
  EXPECT_FALSE(nesting_exceeds("{\"a\":\"\\\"[[[[\"}", 2));  // escaped quote inside
  EXPECT_TRUE(nesting_exceeds("{\"a\":[[1]]}", 2));
  EXPECT_FALSE(nesting_exceeds("{\"a\":[[1]]}", 3));
  EXPECT_FALSE(nesting_exceeds("[][][][]", 1));
}

}  // namespace
}  // namespace chat::bus
