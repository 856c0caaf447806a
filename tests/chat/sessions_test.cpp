// Unit tests for the session records of connection state recovery and the
// recovery buffer of the history: what a record says, how long it lasts, and
// that malformed records from the broker are refused without effect.
#include "chat/sessions.hpp"
#include "chat/history.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace chat::app;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {
json record(const std::string& pid, std::vector<std::string> rooms = {"general"}) {
  return json{{"pid", pid},
              {"sid", "sock-" + pid},
              {"username", "ann"},
              {"loggedIn", true},
              {"rooms", rooms}};
}

chat::bus::EnvelopePtr msg(const std::string& room, std::int64_t position) {
  auto e = std::make_shared<chat::bus::Envelope>();
  e->room = room;
  e->event = "new message";
  e->id = "m" + std::to_string(position);
  e->position = position;
  return e;
}
}  // namespace

TEST(Sessions, ARecordLastsItsWindowPlusTheAliveInterval) {
  Sessions s(2000ms, 1000ms, 100);
  ASSERT_TRUE(s.apply(kSessionEvent, record("p1", {"general", "dev"}), 10'000));
  auto r = s.find("p1", 12'900);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->sid, "sock-p1");
  EXPECT_EQ(r->rooms, (std::vector<std::string>{"general", "dev"}));
  EXPECT_FALSE(s.find("p1", 13'001)) << "past window + alive interval";
  // An alive list keeps it.
  ASSERT_TRUE(s.apply(kSessionAliveEvent, json{{"pids", {"p1", "unknown"}}}, 12'500));
  EXPECT_TRUE(s.find("p1", 15'400));
  s.sweep(16'000);
  EXPECT_EQ(s.size(), 0u);
}

TEST(Sessions, TheLastRecordReadWinsAndEndForgets) {
  Sessions s(120s, 30s, 100);
  ASSERT_TRUE(s.apply(kSessionEvent, record("p1", {"a"}), 2000));
  // Written later by a replica whose clock is behind: still the newer state.
  ASSERT_TRUE(s.apply(kSessionEvent, record("p1", {"a", "b"}), 1000));
  auto r = s.find("p1", 2000);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->rooms, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r->seen_ms, 2000) << "seen only moves forward";
  ASSERT_TRUE(s.apply(kSessionEndEvent, json{{"pid", "p1"}}, 3000));
  EXPECT_FALSE(s.find("p1", 3000));
}

TEST(Sessions, MalformedRecordsAreRefusedAndChangeNothing) {
  Sessions s(120s, 30s, 100);
  ASSERT_TRUE(s.apply(kSessionEvent, record("keep"), 1000));
  const json bad[] = {
      json::array(),
      json{{"pid", 1}},
      json{{"pid", ""},
           {"sid", "x"},
           {"username", "a"},
           {"loggedIn", true},
           {"rooms", json::array()}},
      json{{"pid", "p"},
           {"sid", "x"},
           {"username", "a"},
           {"loggedIn", "yes"},
           {"rooms", json::array()}},
      json{{"pid", "p"}, {"sid", "x"}, {"username", "a"}, {"loggedIn", true}, {"rooms", {1}}},
      json{{"pid", std::string(100, 'p')},
           {"sid", "x"},
           {"username", "a"},
           {"loggedIn", true},
           {"rooms", json::array()}},
      json{{"pid", "p"},
           {"sid", "x"},
           {"username", "a"},
           {"loggedIn", true},
           {"rooms", std::vector<std::string>(300, "r")}},
  };
  for (const auto& b : bad) EXPECT_FALSE(s.apply(kSessionEvent, b, 2000)) << b.dump();
  EXPECT_FALSE(
      s.apply(kSessionAliveEvent, json{{"pids", std::vector<std::string>(501, "p")}}, 2000));
  EXPECT_FALSE(s.apply(kSessionAliveEvent, json{{"pids", "keep"}}, 2000));
  EXPECT_FALSE(s.apply("session.other", record("p"), 2000));
  EXPECT_EQ(s.size(), 1u);
  EXPECT_TRUE(s.find("keep", 2000));
}

TEST(Sessions, BoundedTheLongestUnseenGoFirst) {
  Sessions s(120s, 30s, 3);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(s.apply(kSessionEvent, record("p" + std::to_string(i)), 1000 + i));
  EXPECT_EQ(s.size(), 3u);
  EXPECT_FALSE(s.find("p0", 2000));
  EXPECT_TRUE(s.find("p4", 2000));
}

TEST(HistoryRecovery, CoversOnlyWhatIsStillHeld) {
  History h(2, 10, 4);  // 2 per room for joins, the newest 4 overall for recovery
  h.add({msg("a", 10), msg("b", 20), msg("a", 30)});
  EXPECT_FALSE(h.covers(5)) << "read from 10 on: what came before is unknown";
  EXPECT_TRUE(h.covers(10));
  std::int64_t upto = 0;
  auto missed = h.since(10, {"a"}, upto);
  ASSERT_EQ(missed.size(), 1u);
  EXPECT_EQ(missed[0]->position, 30);
  EXPECT_EQ(upto, 30);
  h.add({msg("b", 40), msg("a", 50), msg("a", 60)});  // 10 and 20 trimmed
  EXPECT_FALSE(h.covers(10));
  EXPECT_TRUE(h.covers(20));
  missed = h.since(20, {"a", "b"}, upto);
  ASSERT_EQ(missed.size(), 4u);
  EXPECT_EQ(missed.front()->position, 30);
  EXPECT_EQ(upto, 60);
  // Joins still see the last 2 of a room.
  auto last = h.last("a", 50);
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[0]->position, 50);
}

// History partitions: positions are ordered within one partition only, so
// each keeps its own recovery buffer; a partition read from a time on covers
// any position of a client last seen after that time.
TEST(HistoryRecovery, PerPartitionBuffersAndReadSince) {
  History h(5, 10, 4000, 4);  // 4 partitions: at least 1000 each
  auto in = [](const std::string& room, std::int64_t position, std::uint32_t part) {
    auto e = std::const_pointer_cast<chat::bus::Envelope>(msg(room, position));
    e->partition = part;
    return chat::bus::EnvelopePtr(e);
  };
  h.add({in("a", 100, 0), in("b", 7, 2), in("a", 200, 0), in("b", 9, 2)});
  std::int64_t upto = 0;
  auto p0 = h.since(100, {"a", "b"}, upto, 0);
  ASSERT_EQ(p0.size(), 1u);
  EXPECT_EQ(p0[0]->position, 200);
  EXPECT_EQ(upto, 200);
  auto p2 = h.since(7, {"a", "b"}, upto, 2);
  ASSERT_EQ(p2.size(), 1u);
  EXPECT_EQ(p2[0]->position, 9);
  EXPECT_EQ(upto, 9) << "partition 0's positions say nothing about partition 2";
  EXPECT_EQ(h.newest(0), 200);
  EXPECT_EQ(h.newest(1), -1);
  // Before the first message held: unknown, unless the partition was read
  // from a time before the one the client needs.
  EXPECT_FALSE(h.covers(3, 2, 5000));
  h.read_since(2, 4000);
  EXPECT_TRUE(h.covers(3, 2, 5000));
  EXPECT_FALSE(h.covers(3, 2, 3000)) << "the client needs more than was read";
  EXPECT_FALSE(h.covers(3, 1, 5000)) << "another partition was not read";
}

TEST(Sessions, JoinPositionsTravelWithTheRecord) {
  Sessions s(120s, 30s, 100);
  SessionRecord r;
  r.pid = "p1";
  r.sid = "s1";
  r.username = "ann";
  r.logged_in = true;
  r.rooms = {"general", "x"};
  r.joined_at = {{"general", 1024}, {"x", 4096}};
  ASSERT_TRUE(s.apply(kSessionEvent, Sessions::record_payload(r), 1000));
  const auto got = s.find("p1", 1500);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->joined_at, r.joined_at);
  // A record without them (one partition) has none.
  ASSERT_TRUE(s.apply(kSessionEvent, record("p2"), 1000));
  EXPECT_TRUE(s.find("p2", 1500)->joined_at.empty());
  // Malformed ones are refused.
  auto bad = record("p3");
  bad["joinedAt"] = json::array({1});
  EXPECT_FALSE(s.apply(kSessionEvent, bad, 1000));
  bad["joinedAt"] = json{{"general", "x"}};
  EXPECT_FALSE(s.apply(kSessionEvent, bad, 1000));
  EXPECT_FALSE(s.find("p3", 1500));
}
