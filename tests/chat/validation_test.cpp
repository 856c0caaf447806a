// Unit tests for the chat input rules (names, rooms, messages, rate limit).
#include "chat/validation.hpp"
#include "chat/rate_limiter.hpp"

#include <gtest/gtest.h>

using namespace chat::app;

TEST(Utf8, CountsCodePoints) {
  EXPECT_EQ(utf8_length("abc"), 3u);
  EXPECT_EQ(utf8_length("h\xc3\xa9llo"), 5u);         // é
  EXPECT_EQ(utf8_length("\xf0\x9f\x98\x80"), 1u);     // emoji
  EXPECT_FALSE(utf8_length("\xc3").has_value());      // truncated
  EXPECT_FALSE(utf8_length("\xc0\xaf").has_value());  // overlong
  EXPECT_FALSE(utf8_length("\xff").has_value());
}

TEST(Trim, StripsAsciiWhitespace) {
  EXPECT_EQ(trim("  bob \t\n"), "bob");
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(trim("   "), "");
}

TEST(Name, Limits) {
  Limits l;
  l.max_name = 5;
  EXPECT_FALSE(check_name("alice", l));
  EXPECT_EQ(check_name("alicia", l)->code, "INVALID_NAME");
  EXPECT_EQ(check_name("", l)->code, "INVALID_NAME");
  EXPECT_EQ(check_name("a\x01", l)->code, "INVALID_NAME");
  EXPECT_FALSE(
      check_name("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", l));  // 5 characters, 10 bytes
}

TEST(Room, Charset) {
  Limits l;
  EXPECT_FALSE(check_room("general", l));
  EXPECT_FALSE(check_room("Team-1_a.b c", l));
  EXPECT_EQ(check_room("", l)->code, "INVALID_ROOM");
  EXPECT_EQ(check_room("a/b", l)->code, "INVALID_ROOM");
  EXPECT_EQ(check_room("<script>", l)->code, "INVALID_ROOM");
  EXPECT_EQ(check_room(" lead", l)->code, "INVALID_ROOM");
  EXPECT_EQ(check_room(std::string(41, 'x'), l)->code, "INVALID_ROOM");
}

TEST(Message, Length) {
  Limits l;
  l.max_message = 10;
  EXPECT_FALSE(check_message("hello", l));
  EXPECT_EQ(check_message("", l)->code, "INVALID_MESSAGE");
  EXPECT_EQ(check_message(std::string(11, 'x'), l)->code, "MESSAGE_TOO_LONG");
  EXPECT_EQ(check_message("\xff", l)->code, "INVALID_MESSAGE");
}

TEST(RateLimiter, BurstThenRate) {
  RateLimiter r(10.0, 3.0);
  const auto t0 = RateLimiter::Clock::now();
  EXPECT_TRUE(r.allow(t0));
  EXPECT_TRUE(r.allow(t0));
  EXPECT_TRUE(r.allow(t0));
  EXPECT_FALSE(r.allow(t0));
  EXPECT_TRUE(r.allow(t0 + std::chrono::milliseconds(100)));  // one token per 100 ms
  EXPECT_FALSE(r.allow(t0 + std::chrono::milliseconds(100)));
}

TEST(Validation, MessageControlCharacters) {
  chat::app::Limits l;
  EXPECT_FALSE(chat::app::check_message("two\nlines\tand a tab", l));
  EXPECT_TRUE(chat::app::check_message("bell\x07", l));
  EXPECT_TRUE(chat::app::check_message("cr\r", l));
  EXPECT_TRUE(chat::app::check_message("esc\x1b[2J", l));
  EXPECT_TRUE(chat::app::check_message("del\x7f", l));
  EXPECT_TRUE(chat::app::check_message("nel\xc2\x85", l));                // U+0085
  EXPECT_FALSE(chat::app::check_message("nbsp\xc2\xa0 \xc3\xa9 ok", l));  // U+00A0, é
  EXPECT_EQ(chat::app::check_message("bell\x07", l)->code, "INVALID_MESSAGE");
}
