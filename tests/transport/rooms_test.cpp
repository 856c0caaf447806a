// transport::Rooms: membership per worker, the first/last member hooks,
// routing to the workers with a member, broadcast with except and skip.
#include "transport/rooms.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using chat::transport::Ack;
using chat::transport::Handshake;
using chat::transport::Rooms;
using chat::transport::SendResult;

// A socket that records what it is sent.
class FakeSocket final : public chat::transport::Socket {
 public:
  FakeSocket(std::string id, unsigned worker) : id_(std::move(id)), worker_(worker) {}
  const std::string& id() const override { return id_; }
  const std::string& nsp() const override { return nsp_; }
  unsigned worker() const override { return worker_; }
  const Handshake& handshake() const override { return handshake_; }
  std::string transport_name() const override { return "websocket"; }
  bool connected() const override { return true; }
  const std::string& pid() const override { return nsp_; }
  bool recovered() const override { return false; }
  const std::shared_ptr<const void>& data() const override { return data_; }
  std::string client_id() const override { return "000000000000"; }
  void on(std::string, EventHandler) override {}
  void on_any(std::function<void(const std::string&, const nlohmann::json&, Ack)>) override {}
  void on_disconnect(std::function<void(const std::string&)>) override {}
  SendResult emit(std::string_view, nlohmann::json, bool) override { return SendResult::ok; }
  SendResult send_encoded(const std::shared_ptr<const std::string>& packet,
                          bool droppable) override {
    if (droppable && slow) return SendResult::dropped;
    got.push_back(*packet);
    return SendResult::ok;
  }
  bool take_tokens(double) override { return true; }
  void disconnect(bool) override {}

  std::vector<std::string> got;
  bool slow = false;

 private:
  std::shared_ptr<const void> data_;
  std::string id_;
  std::string nsp_ = "/";
  unsigned worker_;
  Handshake handshake_;
};

struct Member {
  int skip_below = 0;
};

struct RoomsTest : ::testing::Test {
  std::vector<std::string> events;
  Rooms<Member> rooms{3, [this](const std::string& r) { events.push_back("first " + r); },
                      [this](const std::string& r) { events.push_back("last " + r); }};
};

TEST_F(RoomsTest, FirstAndLastMemberOfTheReplicaAreToldOnceEach) {
  FakeSocket a("a", 0), b("b", 2);
  Member ma, mb;
  rooms.join(ma, a, "general");
  rooms.join(mb, b, "general");
  rooms.join(ma, a, "other");
  EXPECT_EQ(rooms.size(), 2u);
  rooms.leave(ma, a, "general");
  rooms.leave(ma, a, "general");  // not a member any more: nothing
  rooms.leave(mb, b, "general");
  rooms.leave(ma, a, "other");
  EXPECT_EQ(events, (std::vector<std::string>{"first general", "first other", "last general",
                                              "last other"}));
  EXPECT_EQ(rooms.size(), 0u);
}

TEST_F(RoomsTest, RouteKeepsRoomsWithAMemberAndMarksTheirWorkers) {
  FakeSocket a("a", 0), b("b", 2), c("c", 2);
  Member ma, mb, mc;
  rooms.join(ma, a, "x");
  rooms.join(mb, b, "y");
  rooms.join(mc, c, "y");
  std::vector<std::string> items{"x", "nobody", "y"};
  std::vector<bool> to;
  rooms.route(
      items, [](const std::string& s) -> const std::string& { return s; }, to);
  EXPECT_EQ(items, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(to, (std::vector<bool>{true, false, true}));
  // Worker 2 loses its last member of y while worker 0 gets one: y is
  // still routed, to worker 0 only.
  rooms.join(ma, a, "y");
  rooms.leave(mb, b, "y");
  rooms.leave(mc, c, "y");
  items = {"y", "x"};
  rooms.route(
      items, [](const std::string& s) -> const std::string& { return s; }, to);
  EXPECT_EQ(items, (std::vector<std::string>{"y", "x"}));
  EXPECT_EQ(to, (std::vector<bool>{true, false, false}));
  // Its last member leaves: y is no longer routed.
  rooms.leave(ma, a, "y");
  items = {"y"};
  rooms.route(
      items, [](const std::string& s) -> const std::string& { return s; }, to);
  EXPECT_TRUE(items.empty());
}

TEST_F(RoomsTest, BroadcastReachesTheWorkersMembersButExceptAndSkipped) {
  FakeSocket a("a", 1), b("b", 1), c("c", 1), other("o", 0);
  Member ma, mb{5}, mc;
  rooms.join(ma, a, "r");
  rooms.join(mb, b, "r");
  rooms.join(mc, c, "r");
  rooms.join(ma, other, "r");  // another worker: not reached from worker 1
  c.slow = true;
  const auto packet = std::make_shared<const std::string>("42[\"m\"]");
  auto r =
      rooms.broadcast(1, "r", packet, true, "a", [](const Member& m) { return m.skip_below > 3; });
  EXPECT_EQ(r.sent, 0u);     // a is the sender, b skipped
  EXPECT_EQ(r.dropped, 1u);  // c is slow and the packet droppable
  EXPECT_TRUE(a.got.empty());
  EXPECT_TRUE(b.got.empty());
  r = rooms.broadcast(1, "r", packet, false, "", [](const Member&) { return false; });
  EXPECT_EQ(r.sent, 3u);
  EXPECT_EQ(a.got.size(), 1u);
  EXPECT_EQ(c.got.size(), 1u);
  EXPECT_TRUE(other.got.empty());
  EXPECT_EQ(rooms.broadcast(1, "none", packet, false, "", [](const Member&) { return false; }).sent,
            0u);
}

}  // namespace
