// Socket.IO v5 codec: packet decoding (valid and malformed), encoding and
// binary placeholders.
#include "protocol/socketio.hpp"

#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

namespace sio = chat::protocol::sio;
using nlohmann::json;

namespace {
sio::Packet ok(std::string_view text, const sio::DecodeLimits& limits = {}) {
  auto r = sio::decode(text, limits);
  if (auto* e = std::get_if<sio::DecodeError>(&r)) {
    ADD_FAILURE() << "decode(" << text << ") failed: " << e->reason;
    return {};
  }
  return std::get<sio::Packet>(std::move(r));
}

bool bad(std::string_view text, const sio::DecodeLimits& limits = {}) {
  return std::holds_alternative<sio::DecodeError>(sio::decode(text, limits));
}
}  // namespace

TEST(SocketIoDecode, ConnectMainNamespace) {
  auto p = ok("0");
  EXPECT_EQ(p.type, sio::Type::connect);
  EXPECT_EQ(p.nsp, "/");
  EXPECT_FALSE(p.data);
  EXPECT_FALSE(p.ack_id);
}

TEST(SocketIoDecode, ConnectWithAuth) {
  auto p = ok(R"(0{"token":"123"})");
  ASSERT_TRUE(p.data);
  EXPECT_EQ((*p.data)["token"], "123");
}

TEST(SocketIoDecode, NamespaceEndsAtCommaOrEnd) {
  EXPECT_EQ(ok("0/custom,").nsp, "/custom");
  EXPECT_EQ(ok("0/custom").nsp, "/custom");
  EXPECT_EQ(ok("1/custom").nsp, "/custom");
  auto p = ok(R"(0/custom,{"token":"abc"})");
  EXPECT_EQ(p.nsp, "/custom");
  EXPECT_EQ((*p.data)["token"], "abc");
}

TEST(SocketIoDecode, EventWithAckId) {
  auto p = ok(R"(2456["message-with-ack",1,"2",{"3":[false]}])");
  EXPECT_EQ(p.type, sio::Type::event);
  ASSERT_TRUE(p.ack_id);
  EXPECT_EQ(*p.ack_id, 456u);
  EXPECT_EQ(p.data->size(), 4u);
}

TEST(SocketIoDecode, EventInNamespaceWithAck) {
  auto p = ok(R"(2/admin,12["x"])");
  EXPECT_EQ(p.nsp, "/admin");
  EXPECT_EQ(*p.ack_id, 12u);
  EXPECT_EQ(p.data->at(0), "x");
}

TEST(SocketIoDecode, AckPacket) {
  auto p = ok(R"(37["ok"])");
  EXPECT_EQ(p.type, sio::Type::ack);
  EXPECT_EQ(*p.ack_id, 7u);
}

TEST(SocketIoDecode, BinaryEventAttachments) {
  auto p = ok(R"(52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}])");
  EXPECT_EQ(p.type, sio::Type::binary_event);
  EXPECT_EQ(p.attachments, 2u);
  auto q = ok(R"(61-/nsp,9[{"_placeholder":true,"num":0}])");
  EXPECT_EQ(q.type, sio::Type::binary_ack);
  EXPECT_EQ(q.nsp, "/nsp");
  EXPECT_EQ(*q.ack_id, 9u);
}

TEST(SocketIoDecode, MalformedPacketsAreErrors) {
  EXPECT_TRUE(bad(""));
  EXPECT_TRUE(bad("7"));
  EXPECT_TRUE(bad("abc"));
  EXPECT_TRUE(bad("2{}"));           // event payload must be an array
  EXPECT_TRUE(bad("2[]"));           // ... and not empty
  EXPECT_TRUE(bad("2"));             // ... and present
  EXPECT_TRUE(bad(R"(2abc["x"])"));  // non-numeric ack id
  EXPECT_TRUE(bad(R"(2["x")"));      // truncated JSON
  EXPECT_TRUE(bad("0[1]"));          // CONNECT payload must be an object
  EXPECT_TRUE(bad(R"(1{"a":1})"));   // DISCONNECT carries nothing
  EXPECT_TRUE(bad("3"));             // ACK needs an array
  EXPECT_TRUE(bad(R"(5["x"])"));     // binary without attachment count
  EXPECT_TRUE(bad(R"(5x-["x"])"));
  EXPECT_TRUE(bad(R"(2[{}])"));  // event name must be a string (or number)
}

TEST(SocketIoDecode, ReservedEventNames) {
  for (const char* name :
       {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"})
    EXPECT_TRUE(bad(std::string(R"(2[")") + name + "\"]")) << name;
  EXPECT_FALSE(bad(R"(2["connected"])"));
}

TEST(SocketIoDecode, AttachmentLimit) {
  sio::DecodeLimits limits;
  limits.max_attachments = 10;
  EXPECT_FALSE(bad(R"(510-["x"])", limits));
  EXPECT_TRUE(bad(R"(511-["x"])", limits));
  EXPECT_TRUE(bad(R"(599999999999-["x"])", limits));
  EXPECT_TRUE(bad(R"(50-["x"])", limits));  // a binary packet without binary
}

TEST(SocketIoDecode, HugeAckIdIsRefused) {
  EXPECT_TRUE(bad(R"(21234567890123456789["x"])"));
}

TEST(SocketIoDecode, DeepNestingIsRefused) {
  sio::DecodeLimits limits;
  limits.max_depth = 8;
  EXPECT_TRUE(bad("2" + std::string(20, '[') + std::string(20, ']'), limits));
  // Brackets inside strings do not count.
  EXPECT_FALSE(bad(R"(2["[[[[[[[[[[[[[[[[[["])", limits));
}

TEST(SocketIoEncode, Shapes) {
  sio::Packet p;
  p.type = sio::Type::connect;
  p.data = json{{"sid", "abc"}};
  EXPECT_EQ(sio::encode(p), R"(0{"sid":"abc"})");
  p.nsp = "/custom";
  EXPECT_EQ(sio::encode(p), R"(0/custom,{"sid":"abc"})");

  sio::Packet ack;
  ack.type = sio::Type::ack;
  ack.ack_id = 456;
  ack.data = json::array({1, "2"});
  EXPECT_EQ(sio::encode(ack), R"(3456[1,"2"])");

  sio::Packet d;
  d.type = sio::Type::disconnect;
  d.nsp = "/x";
  EXPECT_EQ(sio::encode(d), "1/x,");
}

TEST(SocketIoEncode, RoundTrip) {
  for (std::string_view text : {R"(2["message",1,"2",{"3":[true]}])", R"(2/a,5["e",null])",
                                R"(3/b,17[])", R"(0/c,{"x":1})", "1"}) {
    EXPECT_EQ(sio::encode(ok(text)), text);
  }
}

TEST(SocketIoBinary, DeconstructAndReconstruct) {
  json data =
      json::array({"message", json::binary({1, 2, 3}), json{{"k", json::binary({4, 5, 6})}}});
  ASSERT_TRUE(sio::has_binary(data));
  auto att = sio::deconstruct(data);
  ASSERT_EQ(att.size(), 2u);
  EXPECT_EQ(att[0], std::string("\x01\x02\x03", 3));
  EXPECT_FALSE(sio::has_binary(data));
  EXPECT_EQ(data.dump(),
            R"(["message",{"_placeholder":true,"num":0},{"k":{"_placeholder":true,"num":1}}])");

  ASSERT_TRUE(sio::reconstruct(data, att));
  ASSERT_TRUE(data[1].is_binary());
  EXPECT_EQ(std::vector<std::uint8_t>(data[1].get_binary()), std::vector<std::uint8_t>({1, 2, 3}));
  EXPECT_EQ(std::vector<std::uint8_t>(data[2]["k"].get_binary()),
            std::vector<std::uint8_t>({4, 5, 6}));
}

TEST(SocketIoBinary, BadPlaceholders) {
  std::vector<std::string> att{"a"};
  json out_of_range = json::parse(R"([{"_placeholder":true,"num":1}])");
  EXPECT_FALSE(sio::reconstruct(out_of_range, att));
  json not_a_number = json::parse(R"([{"_placeholder":true,"num":"0"}])");
  EXPECT_FALSE(sio::reconstruct(not_a_number, att));
  json missing = json::parse(R"([{"_placeholder":true}])");
  EXPECT_FALSE(sio::reconstruct(missing, att));
}
