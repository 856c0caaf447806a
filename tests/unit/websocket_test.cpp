// WebSocket framing: the reader of client frames (and, for a client such as
// the load generator, of server frames), the frame encoders and the
// handshake's accept key.
#include "protocol/websocket.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ws = chat::protocol::ws;

namespace {

// A client frame: masked with a fixed key unless masked is false.
std::string client_frame(unsigned first_byte, std::string_view payload, bool masked = true,
                         std::uint64_t announced = UINT64_MAX) {
  const std::uint64_t len = announced == UINT64_MAX ? payload.size() : announced;
  std::string f;
  f += static_cast<char>(first_byte);
  const char mask_bit = masked ? static_cast<char>(0x80) : 0;
  if (len < 126) {
    f += static_cast<char>(mask_bit | static_cast<char>(len));
  } else if (len <= 0xFFFF) {
    f += static_cast<char>(mask_bit | 126);
    f += static_cast<char>(len >> 8);
    f += static_cast<char>(len & 0xFF);
  } else {
    f += static_cast<char>(mask_bit | 127);
    for (int shift = 56; shift >= 0; shift -= 8) f += static_cast<char>((len >> shift) & 0xFF);
  }
  const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
  if (masked) f.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < payload.size(); ++i)
    f += masked ? static_cast<char>(payload[i] ^ static_cast<char>(key[i % 4])) : payload[i];
  return f;
}

constexpr unsigned kFin = 0x80;

struct Got {
  ws::Opcode op;
  std::string payload;
  std::uint16_t code;
};

struct Feeder {
  explicit Feeder(std::size_t max = 1 << 20, ws::From from = ws::From::client)
      : reader(max, from) {}
  ws::Reader reader;
  std::vector<Got> got;
  bool stop_after_first = false;
  // Feeds bytes in pieces of `step` (copied: the reader unmasks in place).
  bool feed(const std::string& bytes, std::size_t step = SIZE_MAX) {
    for (std::size_t at = 0; at < bytes.size(); at += step) {
      std::string piece = bytes.substr(at, step);
      const bool ok = reader.feed(piece.data(), piece.size(), [&](const ws::Event& e) {
        got.push_back(Got{e.op, std::string(e.payload), e.code});
        return !stop_after_first;
      });
      if (!ok) return false;
      if (step == SIZE_MAX) break;
    }
    return true;
  }
};

}  // namespace

TEST(WebSocketHandshake, AcceptKeyOfTheRfcExample) {
  // RFC 6455 1.3.
  EXPECT_TRUE(ws::valid_client_key("dGhlIHNhbXBsZSBub25jZQ=="));
  EXPECT_EQ(ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WebSocketHandshake, KeysThatAreNotSixteenBytesInBase64AreRefused) {
  EXPECT_FALSE(ws::valid_client_key(""));
  EXPECT_FALSE(ws::valid_client_key("abc"));
  EXPECT_FALSE(ws::valid_client_key("dGhlIHNhbXBsZSBub25jZQ="));   // 23 characters
  EXPECT_FALSE(ws::valid_client_key("dGhlIHNhbXBsZSBub25jZQ!!"));  // not base64
  EXPECT_FALSE(ws::valid_client_key("dGhlIHNhbXBsZSBub25jZSE="));  // 17 bytes
}

TEST(WebSocketFrames, ServerFrameHeadersOfEveryLengthForm) {
  unsigned char h[10];
  EXPECT_EQ(ws::frame_header(ws::Opcode::text, 0, h), 2u);
  EXPECT_EQ(h[0], 0x81);
  EXPECT_EQ(h[1], 0);
  EXPECT_EQ(ws::frame_header(ws::Opcode::binary, 125, h), 2u);
  EXPECT_EQ(h[0], 0x82);
  EXPECT_EQ(h[1], 125);
  EXPECT_EQ(ws::frame_header(ws::Opcode::text, 126, h), 4u);
  EXPECT_EQ(h[1], 126);
  EXPECT_EQ(h[2], 0);
  EXPECT_EQ(h[3], 126);
  EXPECT_EQ(ws::frame_header(ws::Opcode::text, 65535, h), 4u);
  EXPECT_EQ(ws::frame_header(ws::Opcode::text, 65536, h), 10u);
  EXPECT_EQ(h[1], 127);
  EXPECT_EQ(h[7], 1);
  EXPECT_EQ(h[8], 0);
  EXPECT_EQ(h[9], 0);
}

TEST(WebSocketFrames, CloseFrameCarriesCodeAndAReasonCutToFit) {
  const auto f = ws::close_frame(1001, "bye");
  EXPECT_EQ(f, std::string("\x88\x05\x03\xe9") + "bye");
  // 200 two-byte characters: cut to at most 123 bytes, never inside one.
  std::string reason;
  for (int i = 0; i < 200; ++i) reason += "\xc3\xa9";
  const auto g = ws::close_frame(1000, reason);
  ASSERT_EQ(static_cast<unsigned char>(g[1]), 2u + 122u);
  EXPECT_EQ(g.substr(4), reason.substr(0, 122));
}

TEST(WebSocketReader, MaskedMessagesOfEveryLengthForm) {
  for (std::size_t n : {0u, 1u, 125u, 126u, 127u, 65535u, 65536u, 70000u}) {
    std::string payload(n, '\0');
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>('a' + i % 26);
    Feeder f;
    ASSERT_TRUE(f.feed(client_frame(kFin | 0x2, payload))) << n;
    ASSERT_EQ(f.got.size(), 1u) << n;
    EXPECT_EQ(f.got[0].op, ws::Opcode::binary);
    EXPECT_TRUE(f.got[0].payload == payload) << n;
    EXPECT_EQ(f.reader.held_bytes(), 0u);
  }
}

TEST(WebSocketReader, FramesCutAtEveryByteAreReassembled) {
  const std::string bytes = client_frame(kFin | 0x1, "40") + client_frame(kFin | 0x9, "hi") +
                            client_frame(kFin | 0x1, std::string(300, 'x'));
  for (std::size_t step : {1u, 2u, 3u, 7u, 100u}) {
    Feeder f;
    ASSERT_TRUE(f.feed(bytes, step)) << step;
    ASSERT_EQ(f.got.size(), 3u) << step;
    EXPECT_EQ(f.got[0].payload, "40");
    EXPECT_EQ(f.got[1].op, ws::Opcode::ping);
    EXPECT_EQ(f.got[1].payload, "hi");
    EXPECT_EQ(f.got[2].payload, std::string(300, 'x'));
    EXPECT_EQ(f.reader.held_bytes(), 0u);
  }
}

TEST(WebSocketReader, FragmentsJoinAndControlFramesMayComeBetween) {
  Feeder f;
  const std::string bytes = client_frame(0x1, "4") + client_frame(kFin | 0x9, "p") +
                            client_frame(0x0, "0{") + client_frame(kFin | 0x0, "}");
  ASSERT_TRUE(f.feed(bytes.substr(0, 9)));
  EXPECT_GT(f.reader.held_bytes(), 0u);  // a fragment waits for the rest
  ASSERT_TRUE(f.feed(bytes.substr(9)));
  ASSERT_EQ(f.got.size(), 2u);
  EXPECT_EQ(f.got[0].op, ws::Opcode::ping);
  EXPECT_EQ(f.got[1].op, ws::Opcode::text);
  EXPECT_EQ(f.got[1].payload, "40{}");
  EXPECT_EQ(f.reader.held_bytes(), 0u);
}

TEST(WebSocketReader, CloseFrameCodeAndReason) {
  Feeder f;
  ASSERT_TRUE(f.feed(client_frame(kFin | 0x8, std::string("\x03\xe9", 2) + "bye")));
  ASSERT_EQ(f.got.size(), 1u);
  EXPECT_EQ(f.got[0].op, ws::Opcode::close);
  EXPECT_EQ(f.got[0].code, 1001);
  EXPECT_EQ(f.got[0].payload, "bye");
  Feeder empty;
  ASSERT_TRUE(empty.feed(client_frame(kFin | 0x8, "")));
  ASSERT_EQ(empty.got.size(), 1u);
  EXPECT_EQ(empty.got[0].code, ws::kCloseNoStatus);
}

TEST(WebSocketReader, ProtocolErrorsNameTheirCloseCode) {
  struct Case {
    std::string bytes;
    std::uint16_t code;
  };
  const std::vector<Case> cases{
      {client_frame(kFin | 0x1, "40", false), ws::kCloseProtocolError},  // not masked
      {client_frame(kFin | 0x40 | 0x1, "40"), ws::kCloseProtocolError},  // RSV1
      {client_frame(kFin | 0x3, "x"), ws::kCloseProtocolError},          // opcode 3
      {client_frame(kFin | 0xB, "x"), ws::kCloseProtocolError},          // opcode 11
      {client_frame(0x9, "p"), ws::kCloseProtocolError},                 // fragmented ping
      {client_frame(kFin | 0x9, std::string(126, 'p')), ws::kCloseProtocolError},  // long ping
      {client_frame(kFin | 0x0, "x"), ws::kCloseProtocolError},  // continuation, no message
      {client_frame(0x1, "a") + client_frame(kFin | 0x1, "b"), ws::kCloseProtocolError},
      {client_frame(kFin | 0x8, "\x03"), ws::kCloseProtocolError},  // 1-byte close
      {client_frame(kFin | 0x8, std::string("\x03\xed", 2)), ws::kCloseProtocolError},  // 1005
      {client_frame(kFin | 0x8, std::string("\x03\xe9\xc3\x28", 4)), ws::kCloseInvalidData},
      {client_frame(kFin | 0x1, "\xc3\x28"), ws::kCloseInvalidData},  // text not UTF-8
      {client_frame(0x1, "\xc3") + client_frame(kFin | 0x0, "\x28"), ws::kCloseInvalidData},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    Feeder f;
    EXPECT_FALSE(f.feed(cases[i].bytes)) << "case " << i;
    EXPECT_EQ(f.reader.error().code, cases[i].code)
        << "case " << i << ": " << f.reader.error().what;
    EXPECT_TRUE(f.got.empty()) << "case " << i;
    EXPECT_EQ(f.reader.held_bytes(), 0u);
    // Nothing more is read after an error.
    std::string more = client_frame(kFin | 0x1, "40");
    EXPECT_FALSE(f.reader.feed(more.data(), more.size(), [](const ws::Event&) { return true; }));
  }
  // A UTF-8 character cut between two fragments is fine.
  Feeder split;
  ASSERT_TRUE(split.feed(client_frame(0x1, "\xc3") + client_frame(kFin | 0x0, "\xa9")));
  ASSERT_EQ(split.got.size(), 1u);
  EXPECT_EQ(split.got[0].payload, "\xc3\xa9");
}

TEST(WebSocketReader, OverTheBoundIsRefusedOnTheHeaderAlone) {
  Feeder f(1000);
  // Only the header of a 2,000-byte frame: refused before its payload comes.
  const auto header = client_frame(kFin | 0x2, "", true, 2000);
  EXPECT_FALSE(f.feed(header));
  EXPECT_EQ(f.reader.error().code, ws::kCloseTooBig);
  // Fragments that together pass the bound.
  Feeder g(1000);
  EXPECT_TRUE(g.feed(client_frame(0x2, std::string(600, 'a'))));
  EXPECT_FALSE(g.feed(client_frame(kFin | 0x0, std::string(600, 'b'))));
  EXPECT_EQ(g.reader.error().code, ws::kCloseTooBig);
  EXPECT_EQ(g.reader.held_bytes(), 0u);
  // A 63-bit length is a protocol error, not a huge allocation.
  Feeder h;
  std::string huge = client_frame(kFin | 0x2, "", true, 0x8000000000000000ull);
  EXPECT_FALSE(h.feed(huge));
  EXPECT_EQ(h.reader.error().code, ws::kCloseProtocolError);
  // At the bound exactly: fine.
  Feeder k(1000);
  EXPECT_TRUE(k.feed(client_frame(kFin | 0x2, std::string(1000, 'c'))));
  EXPECT_EQ(k.got.size(), 1u);
}

TEST(WebSocketReader, StoppingDropsTheRestAndAnIdleReaderHoldsNothing) {
  Feeder f;
  f.stop_after_first = true;
  ASSERT_TRUE(f.feed(client_frame(kFin | 0x1, "a") + client_frame(kFin | 0x1, "b")));
  EXPECT_EQ(f.got.size(), 1u);
  EXPECT_EQ(f.reader.held_bytes(), 0u);
  // A large frame cut in two, then finished: the buffer it needed is released.
  Feeder g;
  const auto big = client_frame(kFin | 0x2, std::string(50000, 'z'));
  ASSERT_TRUE(g.feed(big.substr(0, 20000)));
  EXPECT_EQ(g.reader.held_bytes(), 20000u);
  ASSERT_TRUE(g.feed(big.substr(20000)));
  EXPECT_EQ(g.got.size(), 1u);
  EXPECT_LT(g.reader.held_capacity(), 100u);  // no more than two empty strings
}

TEST(WebSocketReader, ClientSideReadsUnmaskedServerFramesAndRefusesMaskedOnes) {
  // What a client (the load generator) reads: server frames, never masked.
  std::string bytes;
  for (std::size_t n : {0u, 5u, 125u, 126u, 65536u})
    bytes += ws::frame(ws::Opcode::text, std::string(n, 'q'));
  bytes += ws::close_frame(ws::kCloseGoingAway, "bye");
  for (std::size_t step : {std::size_t{1}, std::size_t{3}, std::size_t{1000}, SIZE_MAX}) {
    Feeder f(1 << 20, ws::From::server);
    ASSERT_TRUE(f.feed(bytes, step)) << step;
    ASSERT_EQ(f.got.size(), 6u) << step;
    EXPECT_EQ(f.got[4].payload, std::string(65536, 'q'));
    EXPECT_EQ(f.got[5].op, ws::Opcode::close);
    EXPECT_EQ(f.got[5].code, ws::kCloseGoingAway);
    EXPECT_EQ(f.got[5].payload, "bye");
  }
  Feeder masked(1 << 20, ws::From::server);
  EXPECT_FALSE(masked.feed(client_frame(kFin | 0x1, "40")));
  EXPECT_EQ(masked.reader.error().code, ws::kCloseProtocolError);
  // And a server's reader still refuses an unmasked frame.
  Feeder server;
  EXPECT_FALSE(server.feed(ws::frame(ws::Opcode::text, "40")));
}

TEST(WebSocketFrames, ClientFramesAreMaskedAndReadBackByAServer) {
  const unsigned char key[4] = {0x01, 0x80, 0xfe, 0x7f};
  std::string bytes;
  ws::append_client_frame(bytes, ws::Opcode::text, "42[\"new message\",\"hi\"]", key);
  ws::append_client_frame(bytes, ws::Opcode::binary, std::string(70000, 'b'), key);
  ws::append_client_frame(bytes, ws::Opcode::pong, "", key);
  EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 0x80u | 22u);  // mask bit and the length
  EXPECT_EQ(bytes.find("new message"), std::string::npos);       // not sent in the clear
  Feeder f;
  ASSERT_TRUE(f.feed(bytes, 7));
  ASSERT_EQ(f.got.size(), 3u);
  EXPECT_EQ(f.got[0].payload, "42[\"new message\",\"hi\"]");
  EXPECT_EQ(f.got[1].op, ws::Opcode::binary);
  EXPECT_EQ(f.got[1].payload, std::string(70000, 'b'));
  EXPECT_EQ(f.got[2].op, ws::Opcode::pong);
}
