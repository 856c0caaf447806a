// permessage-deflate: the negotiation, the compressor and the bounded
// decompressor, and the WebSocket reader taking compressed client messages.
#include "protocol/deflate.hpp"
#include "protocol/websocket.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace deflate = chat::protocol::deflate;
namespace ws = chat::protocol::ws;

namespace {

constexpr const char* kAnswer =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

TEST(DeflateNegotiation, TheOffersOfBrowsersAndNodeAreTakenWithoutContextTakeover) {
  EXPECT_EQ(deflate::negotiate("permessage-deflate; client_max_window_bits"),
            kAnswer);  // ws, Chrome
  EXPECT_EQ(deflate::negotiate("permessage-deflate"), kAnswer);
  EXPECT_EQ(deflate::negotiate("permessage-deflate;client_max_window_bits=10"), kAnswer);
  EXPECT_EQ(deflate::negotiate("permessage-deflate; server_no_context_takeover; "
                               "client_no_context_takeover; server_max_window_bits=15"),
            kAnswer);
  EXPECT_EQ(deflate::negotiate("permessage-deflate; server_max_window_bits=\"15\""), kAnswer);
  // The second offer when the first asks what a shared compressor cannot do.
  EXPECT_EQ(deflate::negotiate("permessage-deflate; server_max_window_bits=10, permessage-deflate"),
            kAnswer);
}

TEST(DeflateNegotiation, BadOrUnknownOffersAreDeclined) {
  for (const char* offer :
       {"", "x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=10",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=08", "permessage-deflate; mystery",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_max_window_bits; client_max_window_bits"})
    EXPECT_FALSE(deflate::negotiate(offer).has_value()) << offer;
}

TEST(DeflateCodec, MessagesRoundTripOneAtATime) {
  deflate::Deflater d;
  deflate::Inflater in;
  const std::vector<std::string> messages = {
      "a", std::string(10000, 'x'), R"(42["new message",{"message":"hello hello hello hello"}])",
      std::string(200000, 'y') + "end"};
  for (const auto& m : messages) {
    const auto z = d.compress(m);
    std::string out;
    ASSERT_EQ(in.decompress(z, 1 << 20, out), deflate::Inflater::Result::ok);
    EXPECT_EQ(out, m);
  }
  EXPECT_LT(d.compress(std::string(10000, 'x')).size(), 100u);
}

TEST(DeflateCodec, InflatingStopsAtTheBoundAndRefusesGarbage) {
  deflate::Deflater d;
  deflate::Inflater in;
  const auto bomb = d.compress(std::string(10 * 1024 * 1024, 'a'));  // ~10 KB for 10 MB
  std::string out;
  EXPECT_EQ(in.decompress(bomb, 100000, out), deflate::Inflater::Result::too_big);
  EXPECT_LE(out.size(), 100000u);
  EXPECT_EQ(in.decompress("\xff\xff\xff\xff garbage", 100000, out),
            deflate::Inflater::Result::bad_data);
  // And the inflater still works after a failure.
  ASSERT_EQ(in.decompress(d.compress("fine"), 100, out), deflate::Inflater::Result::ok);
  EXPECT_EQ(out, "fine");
}

TEST(DeflateCodec, GzipMakesAWholeStream) {
  deflate::Deflater d;
  const auto gz = d.gzip(std::string(5000, 'z'));
  ASSERT_GE(gz.size(), 18u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  EXPECT_LT(gz.size(), 200u);
}

// A masked client frame with the given first byte.
std::string client_frame(unsigned first, const std::string& payload) {
  std::string f;
  f += static_cast<char>(first);
  const unsigned char key[4] = {1, 2, 3, 4};
  if (payload.size() < 126) {
    f += static_cast<char>(0x80 | payload.size());
  } else {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>(payload.size() >> 8);
    f += static_cast<char>(payload.size() & 0xff);
  }
  f.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < payload.size(); ++i) f += static_cast<char>(payload[i] ^ key[i % 4]);
  return f;
}

struct Read {
  bool ok = false;
  std::uint16_t code = 0;
  std::vector<std::string> messages;
};
Read read(std::string bytes, bool deflate_on, std::size_t max = 100000) {
  ws::Reader r(max);
  r.set_deflate(deflate_on);
  Read out;
  out.ok = r.feed(bytes.data(), bytes.size(), [&](const ws::Event& e) {
    out.messages.emplace_back(e.payload);
    return true;
  });
  out.code = r.error().code;
  return out;
}

TEST(DeflateReader, CompressedMessagesAreInflatedPlainOnesPassAsTheyAre) {
  deflate::Deflater d;
  const std::string big(3000, 'q');
  const auto z = d.compress(big);
  auto r = read(client_frame(0x80 | 0x40 | 0x1, z) + client_frame(0x81, "plain"), true);
  ASSERT_TRUE(r.ok);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0], big);
  EXPECT_EQ(r.messages[1], "plain");
  // Fragmented: RSV1 on the first frame only.
  const auto half = z.size() / 2;
  r = read(client_frame(0x40 | 0x1, z.substr(0, half)) + client_frame(0x80, z.substr(half)), true);
  ASSERT_TRUE(r.ok);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0], big);
}

TEST(DeflateReader, RsvBitsWhereTheyDoNotBelongAreProtocolErrors) {
  deflate::Deflater d;
  const auto z = d.compress("hello");
  EXPECT_EQ(read(client_frame(0xC1, z), false).code, ws::kCloseProtocolError) << "not negotiated";
  EXPECT_EQ(read(client_frame(0x80 | 0x40 | 0x9, "p"), true).code, ws::kCloseProtocolError)
      << "on a ping";
  EXPECT_EQ(read(client_frame(0x01, "a") + client_frame(0x80 | 0x40, "b"), true).code,
            ws::kCloseProtocolError)
      << "on a continuation";
  EXPECT_EQ(read(client_frame(0x80 | 0x20 | 0x1, "x"), true).code, ws::kCloseProtocolError)
      << "RSV2";
}

TEST(DeflateReader, ABombClosesWithTooBigAndGarbageWithInvalidData) {
  deflate::Deflater d;
  const auto bomb = d.compress(std::string(5 * 1024 * 1024, 'a'));
  ASSERT_LT(bomb.size(), 65536u);
  EXPECT_EQ(read(client_frame(0xC1, bomb), true, 1 << 20).code, ws::kCloseTooBig);
  EXPECT_EQ(read(client_frame(0xC1, "\xff\xfe garbage"), true).code, ws::kCloseInvalidData);
  // Inflated text must be UTF-8 too.
  EXPECT_EQ(read(client_frame(0xC1, d.compress("\xc3\x28")), true).code, ws::kCloseInvalidData);
}

}  // namespace
