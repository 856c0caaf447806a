// Engine.IO v4 codec: packet decoding, polling payloads and base64.
#include "protocol/engineio.hpp"

#include <gtest/gtest.h>

#include <string>

namespace eio = chat::protocol::eio;

TEST(EngineIoDecode, TextPacketsOfEveryType) {
  for (char t = '0'; t <= '6'; ++t) {
    auto p = eio::decode_text(std::string(1, t) + "xyz", false);
    ASSERT_TRUE(p) << t;
    EXPECT_EQ(static_cast<char>(p->type), t);
    EXPECT_EQ(p->data, "xyz");
    EXPECT_FALSE(p->binary);
  }
}

TEST(EngineIoDecode, RejectsEmptyAndUnknownTypes) {
  EXPECT_FALSE(eio::decode_text("", false));
  EXPECT_FALSE(eio::decode_text("", true));
  EXPECT_FALSE(eio::decode_text("7", false));
  EXPECT_FALSE(eio::decode_text("abc", false));
  EXPECT_FALSE(eio::decode_text("abc", true));
  EXPECT_FALSE(eio::decode_text(std::string(1, '\0'), false));
}

TEST(EngineIoDecode, BinaryOnlyInPolling) {
  auto p = eio::decode_text("bAQIDBA==", true);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->binary);
  EXPECT_EQ(p->type, eio::PacketType::message);
  EXPECT_EQ(p->data, std::string("\x01\x02\x03\x04", 4));
  // Over WebSocket binary comes in binary frames; "b" is not a packet type.
  EXPECT_FALSE(eio::decode_text("bAQIDBA==", false));
}

TEST(EngineIoDecode, BadBase64IsRejected) {
  EXPECT_FALSE(eio::decode_text("b!!!!", true));
  EXPECT_FALSE(eio::decode_text("bA", true));  // one character left over cannot be a byte
}

TEST(EngineIoPayload, SplitOnRecordSeparator) {
  auto parts = eio::split_payload(
      "4test1\x1e"
      "4test2\x1e"
      "4test3");
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0], "4test1");
  EXPECT_EQ(parts[1], "4test2");
  EXPECT_EQ(parts[2], "4test3");
}

TEST(EngineIoPayload, SplitKeepsEmptyRecords) {
  auto parts = eio::split_payload("4a\x1e\x1e");
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[1], "");
  EXPECT_EQ(parts[2], "");
  EXPECT_EQ(eio::split_payload("").size(), 1u);
}

TEST(EngineIoPayload, JoinTextAndBinary) {
  std::string body;
  eio::append_polling(body, "4hello", false);
  body += eio::kRecordSeparator;
  eio::append_polling(body, std::string("\x01\x02\x03\x04", 4), true);
  EXPECT_EQ(body,
            "4hello\x1e"
            "bAQIDBA==");
}

TEST(EngineIoPayload, EncodePolling) {
  EXPECT_EQ(eio::encode_polling({eio::PacketType::ping, "", false}), "2");
  EXPECT_EQ(eio::encode_polling({eio::PacketType::message, "hi", false}), "4hi");
  EXPECT_EQ(eio::encode_polling({eio::PacketType::message, "\xff", true}), "b/w==");
}

TEST(Base64, KnownVectors) {
  EXPECT_EQ(eio::base64_encode(""), "");
  EXPECT_EQ(eio::base64_encode("f"), "Zg==");
  EXPECT_EQ(eio::base64_encode("fo"), "Zm8=");
  EXPECT_EQ(eio::base64_encode("foo"), "Zm9v");
  EXPECT_EQ(eio::base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(eio::base64_decode("Zm9vYmE="), "fooba");
  EXPECT_EQ(eio::base64_decode("Zm9vYg"), "foob");  // padding is optional
}

TEST(Base64, RoundTripAllBytes) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t n = 0; n <= all.size(); n += 17) {
    const auto s = all.substr(0, n);
    EXPECT_EQ(eio::base64_decode(eio::base64_encode(s)), s);
  }
}

TEST(Base64, RejectsForeignCharacters) {
  EXPECT_FALSE(eio::base64_decode("Zm9v\n"));
  EXPECT_FALSE(eio::base64_decode("Zm-v"));
  EXPECT_FALSE(eio::base64_decode("Z"));
}

TEST(EngineIoVersion, OnlyFour) {
  EXPECT_TRUE(eio::supported_version("4"));
  EXPECT_FALSE(eio::supported_version("3"));
  EXPECT_FALSE(eio::supported_version("abc"));
  EXPECT_FALSE(eio::supported_version(""));
  EXPECT_FALSE(eio::supported_version("40"));
}
