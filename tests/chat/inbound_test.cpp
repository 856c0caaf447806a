// Unit tests for the checks of bus input (chat/inbound.hpp) and the presence
// decoders: every field of every kind, wrong types, missing, out of bounds.
#include "chat/inbound.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

using namespace chat::app;
using chat::bus::Envelope;
using nlohmann::json;

namespace {

Envelope control(const char* event, json payload) {
  Envelope e;
  e.origin = "r9#1";
  e.id = "r9#1-1";
  e.event = event;
  e.payload = std::move(payload);
  return e;
}

Envelope room_event(const char* event, json payload) {
  Envelope e = control(event, std::move(payload));
  e.room = "general";
  return e;
}

// A room event as the bus hands it over: its payload as text, no DOM.
Envelope room_text_event(const char* event, const json& payload) {
  Envelope e = room_event(event, nullptr);
  e.payload_text = payload.dump();
  return e;
}

// The payloads this version publishes (chat_service.cpp, presence.cpp).
json good_payload(const std::string& event) {
  if (event == kPresenceDelta)
    return {{"op", "login"}, {"v", 1}, {"u", "s1"}, {"replica", "r9"}, {"n", "ann"}};
  if (event == kPresenceHeartbeat)
    return {{"v", 3}, {"replica", "r9"}, {"users", 2}, {"connections", 5}};
  if (event == kPresenceSnapshot)
    return {{"v", 3},
            {"replica", "r9"},
            {"connections", 5},
            {"users", json::array({json{{"u", "s1"}, {"n", "ann"}, {"r", {"general", "dev"}}}})}};
  if (event == kPresenceSync) return {{"target", "r1#2"}};
  if (event == kPresenceBye) return {{"replica", "r9"}};
  if (event == "new message")
    return {{"id", "r9#1-1"},    {"username", "ann"}, {"userId", "s1"}, {"message", "hi"},
            {"room", "general"}, {"ts", 17},          {"replica", "r9"}};
  if (event == "typing" || event == "stop typing")
    return {{"username", "ann"}, {"userId", "s1"}, {"room", "general"}};
  return {{"username", "ann"}, {"userId", "s1"},  {"numUsers", 3},
          {"room", "general"}, {"replica", "r9"}, {"ts", 17}};  // user joined / left
}

const std::vector<std::pair<const char*, InboundKind>> kControl = {
    {kPresenceDelta, InboundKind::delta},
    {kPresenceHeartbeat, InboundKind::heartbeat},
    {kPresenceSnapshot, InboundKind::snapshot},
    {kPresenceSync, InboundKind::sync},
    {kPresenceBye, InboundKind::bye}};
const std::vector<const char*> kRoomEvents = {"new message", "typing", "stop typing", "user joined",
                                              "user left"};

// Values of every JSON type but the one a field has.
std::vector<json> wrong_types(const json& v) {
  std::vector<json> all = {nullptr, true, 12, -12, 1.5, "text", json::array({1}), json{{"a", 1}}};
  std::vector<json> out;
  for (auto& x : all)
    if (x.type() != v.type() && !(x.is_number_integer() && v.is_number_integer())) out.push_back(x);
  if (v.is_number_unsigned()) out.push_back(-1);  // counts and versions are never negative
  return out;
}

}  // namespace

TEST(Inbound, WhatThisVersionPublishesPasses) {
  for (const auto& [event, kind] : kControl) {
    const auto in = decode_inbound(control(event, json::parse(good_payload(event).dump())));
    EXPECT_TRUE(in.ok) << event;
    EXPECT_EQ(in.kind, kind) << event;
    EXPECT_FALSE(std::holds_alternative<std::monostate>(in.control)) << event;
  }
  for (const char* event : kRoomEvents) {
    const auto in = decode_inbound(room_event(event, json::parse(good_payload(event).dump())));
    EXPECT_TRUE(in.ok) << event;
    EXPECT_EQ(in.kind, InboundKind::room);
    EXPECT_TRUE(decode_inbound(room_text_event(event, good_payload(event))).ok) << event;
  }
}

// The broker message that took every replica down: a heartbeat whose replica is a number.
TEST(Inbound, HeartbeatWithNumericReplicaIsRefused) {
  auto p = good_payload(kPresenceHeartbeat);
  p["replica"] = 7;
  const auto in = decode_inbound(control(kPresenceHeartbeat, p));
  EXPECT_FALSE(in.ok);
  EXPECT_EQ(in.kind, InboundKind::heartbeat);
  EXPECT_STREQ(inbound_kind_name(in.kind), "presence.heartbeat");
}

TEST(Inbound, EveryFieldWrongOrMissingIsRefused) {
  // (event, 0: control, 1: room event with a DOM, 2: room event as text)
  std::vector<std::pair<std::string, int>> events;
  for (const auto& [event, kind] : kControl) events.emplace_back(event, 0);
  for (const char* event : kRoomEvents) events.emplace_back(event, 1);
  for (const char* event : kRoomEvents) events.emplace_back(event, 2);
  for (const auto& [event, form] : events) {
    const auto good = good_payload(event);
    auto make = [&, ev = event, f = form](json p) {
      if (f == 2) return room_text_event(ev.c_str(), p);
      return f == 1 ? room_event(ev.c_str(), std::move(p)) : control(ev.c_str(), std::move(p));
    };
    for (const auto& [key, value] : good.items()) {
      auto missing = good;
      missing.erase(key);
      EXPECT_FALSE(decode_inbound(make(missing)).ok) << event << " without " << key;
      for (const auto& wrong : wrong_types(value)) {
        auto p = good;
        p[key] = wrong;
        Inbound in;
        EXPECT_NO_THROW(in = decode_inbound(make(p)));
        EXPECT_FALSE(in.ok) << event << " " << key << "=" << wrong.dump();
      }
    }
    for (const auto& not_object : {json(nullptr), json(1), json("x"), json::array()})
      EXPECT_FALSE(decode_inbound(make(not_object)).ok)
          << event << " payload " << not_object.dump();
    // Fields a newer version adds do not matter.
    auto more = good;
    more["added_later"] = {{"x", {1, 2}}};
    EXPECT_TRUE(decode_inbound(make(more)).ok) << event;
  }
}

TEST(Inbound, ValuesOutOfBoundsAreRefused) {
  const std::string long_text(kMaxPresenceField + 1, 'x');
  auto d = good_payload(kPresenceDelta);
  d["op"] = "explode";
  EXPECT_FALSE(decode_inbound(control(kPresenceDelta, d)).ok);
  d = good_payload(kPresenceDelta);
  d["u"] = "";
  EXPECT_FALSE(decode_inbound(control(kPresenceDelta, d)).ok);
  d["u"] = long_text;
  EXPECT_FALSE(decode_inbound(control(kPresenceDelta, d)).ok);
  // join and leave need the room, login the name.
  d = {{"op", "join"}, {"v", 2}, {"u", "s1"}, {"replica", "r9"}};
  EXPECT_FALSE(decode_inbound(control(kPresenceDelta, d)).ok);
  d["r"] = "dev";
  EXPECT_TRUE(decode_inbound(control(kPresenceDelta, d)).ok);
  d = {{"op", "login"}, {"v", 2}, {"u", "s1"}, {"replica", "r9"}};
  EXPECT_FALSE(decode_inbound(control(kPresenceDelta, d)).ok);
  // Snapshot entries are checked one by one.
  auto s = good_payload(kPresenceSnapshot);
  for (const auto& bad_user :
       {json(1), json{{"u", "s2"}, {"n", "b"}, {"r", {"dev", 3}}},
        json{{"u", "s2"}, {"n", "b"}, {"r", "dev"}}, json{{"u", "s2"}, {"n", "b"}, {"r", {""}}},
        json{{"u", 2}, {"n", "b"}, {"r", json::array()}}}) {
    auto p = s;
    p["users"].push_back(bad_user);
    EXPECT_FALSE(decode_inbound(control(kPresenceSnapshot, p)).ok) << bad_user.dump();
  }
  auto sync = good_payload(kPresenceSync);
  sync["target"] = "";
  EXPECT_FALSE(decode_inbound(control(kPresenceSync, sync)).ok);
}

TEST(Inbound, RoomEventsMustNameTheirRoomAndBeKnown) {
  auto e = room_event("new message", good_payload("new message"));
  e.payload["room"] = "elsewhere";
  EXPECT_FALSE(decode_inbound(e).ok);
  EXPECT_FALSE(decode_inbound(room_text_event("new message", e.payload)).ok);
  // Given twice, a key counts with its last value (as clients read it).
  auto twice = good_payload("new message").dump();
  twice.insert(1, R"("room":"elsewhere",)");
  auto t = room_text_event("new message", nullptr);
  t.payload_text = twice;
  EXPECT_TRUE(decode_inbound(t).ok) << twice;
  twice = good_payload("new message").dump();
  twice.insert(twice.size() - 1, R"(,"room":"elsewhere")");
  t.payload_text = twice;
  EXPECT_FALSE(decode_inbound(t).ok) << twice;
  e = room_event("drop tables", good_payload("new message"));
  EXPECT_FALSE(decode_inbound(e).ok);
  const auto unknown = decode_inbound(control("presence.teleport", json::object()));
  EXPECT_FALSE(unknown.ok);
  EXPECT_EQ(unknown.kind, InboundKind::unknown_control);
  // A room event sent with the control key (empty room) is not a control message.
  EXPECT_FALSE(decode_inbound(control("new message", good_payload("new message"))).ok);
}

// A snapshot that lists a user twice counts it once, in its rooms once.
TEST(Inbound, SnapshotWithRepeatedUserKeepsTheCountsRight) {
  auto p = good_payload(kPresenceSnapshot);
  p["users"].push_back(p["users"][0]);
  const auto snap = decode_snapshot(p);
  ASSERT_TRUE(snap.has_value());
  Presence presence{"me", "r1"};
  presence.apply_snapshot("r9#1", *snap);
  EXPECT_EQ(presence.num_users(), 1u);
  EXPECT_EQ(presence.room_count("general"), 1u);
  EXPECT_TRUE(presence.consistent());
}
