// Unit tests for the presence directory: deltas, gaps, snapshots, expiry.
#include "chat/presence.hpp"

#include <gtest/gtest.h>

using namespace chat::app;
using nlohmann::json;

namespace {
// What travels on the bus, decoded as the receiving replica does.
PresenceDelta D(const json& j) {
  auto d = decode_delta(json::parse(j.dump()));
  EXPECT_TRUE(d.has_value()) << j.dump();
  return d.value_or(PresenceDelta{});
}
PresenceSnapshot S(const json& j) {
  auto s = decode_snapshot(json::parse(j.dump()));
  EXPECT_TRUE(s.has_value()) << j.dump();
  return s.value_or(PresenceSnapshot{});
}
PresenceHeartbeat H(const json& j) {
  auto h = decode_heartbeat(json::parse(j.dump()));
  EXPECT_TRUE(h.has_value()) << j.dump();
  return h.value_or(PresenceHeartbeat{});
}
// Apply every delta of `from` (instance "a") to `to`.
struct Pair {
  Presence a{"a", "r1"};
  Presence b{"b", "r2"};
};
}  // namespace

TEST(Presence, DeltasInOrderAreApplied) {
  Pair p;
  json d1, d2;
  {
    auto lk = p.a.lock();
    d1 = p.a.login("u1", "alice");
    d2 = p.a.join("u1", "general");
  }
  // b has never heard of a: the first delta asks for a snapshot.
  EXPECT_TRUE(p.b.apply_delta("a", D(d1)));
  p.b.apply_snapshot("a", S(p.a.snapshot()));
  EXPECT_EQ(p.b.num_users(), 1u);
  EXPECT_EQ(p.b.room_count("general"), 1u);
  {
    auto lk = p.a.lock();
    const auto d3 = p.a.join("u1", "dev");
    lk.unlock();
    EXPECT_FALSE(p.b.apply_delta("a", D(d3)));
  }
  EXPECT_EQ(p.b.room_count("dev"), 1u);
  auto users = p.b.room_users("dev", 10);
  ASSERT_EQ(users.size(), 1u);
  EXPECT_EQ(users[0].username, "alice");
  EXPECT_EQ(users[0].replica, "r1");
}

TEST(Presence, GapTriggersSync) {
  Pair p;
  p.b.apply_snapshot("a", S(p.a.snapshot()));
  json d1, d2;
  {
    auto lk = p.a.lock();
    d1 = p.a.login("u1", "alice");
    d2 = p.a.login("u2", "bob");
  }
  EXPECT_TRUE(p.b.apply_delta("a", D(d2)));  // d1 was lost
  EXPECT_EQ(p.b.num_users(), 0u);
  p.b.apply_snapshot("a", S(p.a.snapshot()));
  EXPECT_EQ(p.b.num_users(), 2u);
  // A heartbeat with the same version needs nothing.
  EXPECT_FALSE(p.b.apply_heartbeat("a", H(p.a.heartbeat(2))));
}

TEST(Presence, ExpiryRemovesSilentReplica) {
  Pair p;
  {
    auto lk = p.a.lock();
    p.a.login("u1", "alice");
    p.a.join("u1", "general");
  }
  p.b.apply_snapshot("a", S(p.a.snapshot()));
  EXPECT_EQ(p.b.num_users(), 1u);
  auto later = Presence::Clock::now() + std::chrono::seconds(10);
  auto gone = p.b.expire(std::chrono::seconds(4), later);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].username, "alice");
  EXPECT_EQ(gone[0].rooms.count("general"), 1u);
  EXPECT_EQ(p.b.num_users(), 0u);
  EXPECT_EQ(p.b.room_count("general"), 0u);
  // Its own entry never expires.
  EXPECT_EQ(p.b.replicas().size(), 1u);
}

// A user of the silent replica that was recovered here (same user id) is not
// announced as gone when the silent replica expires; the others are.
TEST(Presence, ExpiryDoesNotAnnounceAUserRecoveredElsewhere) {
  Pair p;
  {
    auto lk = p.a.lock();
    p.a.login("u1", "alice");
    p.a.join("u1", "general");
    p.a.login("u2", "bob");
    p.a.join("u2", "general");
  }
  p.b.apply_snapshot("a", S(p.a.snapshot()));
  {
    auto lk = p.b.lock();
    p.b.login("u1", "alice");  // alice's socket recovered on b
    p.b.join("u1", "general");
  }
  auto later = Presence::Clock::now() + std::chrono::seconds(10);
  auto gone = p.b.expire(std::chrono::seconds(4), later);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].username, "bob");
  EXPECT_EQ(p.b.num_users(), 1u);
  EXPECT_EQ(p.b.room_count("general"), 1u);
}

// A dropped user whose socket was recovered on another replica: the replica
// it dropped from sees it listed there (and so announces no "user left").
TEST(Presence, ListedElsewhereSeesOnlyOtherReplicas) {
  Pair p;
  {
    auto lk = p.a.lock();
    p.a.login("u1", "alice");
  }
  EXPECT_FALSE(p.a.listed_elsewhere("u1"));  // only here
  {
    auto lk = p.b.lock();
    p.b.login("u1", "alice");  // recovered on b
  }
  p.a.apply_snapshot("b", S(p.b.snapshot()));
  EXPECT_TRUE(p.a.listed_elsewhere("u1"));
  EXPECT_FALSE(p.a.listed_elsewhere("u2"));
}

TEST(Presence, LogoutLeavesRooms) {
  Presence a{"a", "r1"};
  auto lk = a.lock();
  a.login("u1", "alice");
  a.join("u1", "general");
  a.join("u1", "dev");
  a.logout("u1");
  lk.unlock();
  EXPECT_EQ(a.num_users(), 0u);
  EXPECT_TRUE(a.rooms().empty());
}

TEST(Presence, ByeForgetsAtOnce) {
  Pair p;
  {
    auto lk = p.a.lock();
    p.a.login("u1", "alice");
  }
  p.b.apply_snapshot("a", S(p.a.snapshot()));
  EXPECT_EQ(p.b.remove_replica("a").size(), 1u);
  EXPECT_EQ(p.b.num_users(), 0u);
}

TEST(Presence, TheTokensSubjectTravelsWithLoginsAndSnapshots) {
  Pair p;
  json d1, d2;
  {
    auto lk = p.a.lock();
    d1 = p.a.login("u1", "Ada", "user-ada");
    d2 = p.a.join("u1", "team");
    p.a.login("u2", "Bob");  // --auth none: no subject
    p.a.join("u2", "team");
  }
  EXPECT_EQ(d1["s"], "user-ada");
  p.b.apply_snapshot("a", S(p.a.snapshot()));
  auto users = p.b.room_users("team", 10);
  ASSERT_EQ(users.size(), 2u);
  for (const auto& u : users) EXPECT_EQ(u.sub, u.user_id == "u1" ? "user-ada" : "");
  // A delta carries it too.
  Presence c{"c", "r3"};
  c.apply_snapshot(
      "a", S(json{{"v", 0}, {"replica", "r1"}, {"connections", 0}, {"users", json::array()}}));
  EXPECT_FALSE(c.apply_delta("a", D(d1)));
  EXPECT_FALSE(c.apply_delta("a", D(d2)));
  users = c.room_users("team", 10);
  ASSERT_EQ(users.size(), 1u);
  EXPECT_EQ(users[0].sub, "user-ada");
  // A subject that is not a string is refused.
  d1["s"] = 7;
  EXPECT_FALSE(decode_delta(d1).has_value());
  auto snap = p.a.snapshot();
  snap["users"][0]["s"] = json::array();
  EXPECT_FALSE(decode_snapshot(snap).has_value());
}
