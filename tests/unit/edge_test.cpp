// Pure parts of the edge policy: CIDR blocks, the client address behind
// trusted proxies, Origin matching, URL redaction and the id format.
#include "runtime/redact.hpp"
#include "transport/ids.hpp"
#include "transport/net_policy.hpp"

#include <gtest/gtest.h>

#include <set>

using namespace chat::transport;
namespace ip = boost::asio::ip;

namespace {
ip::address addr(const char* s) {
  return ip::make_address(s);
}
}  // namespace

TEST(Cidr, MatchesV4AndV6Blocks) {
  auto b = parse_cidr("10.1.0.0/16");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->contains(addr("10.1.255.3")));
  EXPECT_FALSE(b->contains(addr("10.2.0.1")));
  EXPECT_TRUE(b->contains(addr("::ffff:10.1.2.3")));  // v4-mapped
  EXPECT_FALSE(b->contains(addr("::1")));
  auto one = parse_cidr("192.168.1.7");
  ASSERT_TRUE(one);
  EXPECT_TRUE(one->contains(addr("192.168.1.7")));
  EXPECT_FALSE(one->contains(addr("192.168.1.8")));
  auto v6 = parse_cidr("fd00::/8");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(addr("fd12:3456::1")));
  EXPECT_FALSE(v6->contains(addr("fe80::1")));
  auto odd = parse_cidr("2001:db8::/33");
  ASSERT_TRUE(odd);
  EXPECT_TRUE(odd->contains(addr("2001:db8:7fff::1")));
  EXPECT_FALSE(odd->contains(addr("2001:db8:8000::1")));
  auto all = parse_cidr("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(addr("8.8.8.8")));
}

TEST(Cidr, RejectsGarbage) {
  for (const char* bad : {"", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "::/129", "host.example",
                          "10.0.0/8", "1.2.3.4/8/9"})
    EXPECT_FALSE(parse_cidr(bad)) << bad;
  EXPECT_THROW(TrustedProxies::parse("127.0.0.1,nonsense"), std::invalid_argument);
  EXPECT_TRUE(TrustedProxies::parse("none").empty());
  EXPECT_TRUE(TrustedProxies::parse("").empty());
}

TEST(ResolveClient, IgnoresForwardedForFromUntrustedPeers) {
  const auto trusted = TrustedProxies::parse("10.0.0.0/8");
  EXPECT_EQ(resolve_client(addr("203.0.113.9"), "1.2.3.4", trusted), addr("203.0.113.9"));
  EXPECT_EQ(resolve_client(addr("203.0.113.9"), "", trusted), addr("203.0.113.9"));
  EXPECT_EQ(resolve_client(addr("10.0.0.5"), "1.2.3.4", TrustedProxies{}), addr("10.0.0.5"));
}

TEST(ResolveClient, WalksTrustedHopsFromTheRight) {
  const auto trusted = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1");
  // The client put a fake first hop; the proxy appended the real address.
  EXPECT_EQ(resolve_client(addr("10.0.0.5"), "6.6.6.6, 198.51.100.7", trusted),
            addr("198.51.100.7"));
  // Two proxies in a row.
  EXPECT_EQ(resolve_client(addr("127.0.0.1"), "198.51.100.7, 10.0.0.9", trusted),
            addr("198.51.100.7"));
  // Ports and brackets are dropped; v4-mapped becomes v4.
  EXPECT_EQ(resolve_client(addr("10.0.0.5"), "198.51.100.7:4321", trusted), addr("198.51.100.7"));
  EXPECT_EQ(resolve_client(addr("10.0.0.5"), "[2001:db8::1]:443", trusted), addr("2001:db8::1"));
  EXPECT_EQ(resolve_client(addr("::ffff:10.0.0.5"), "198.51.100.7", trusted), addr("198.51.100.7"));
  // Garbage stops the walk at the last trusted hop.
  EXPECT_EQ(resolve_client(addr("10.0.0.5"), "1.2.3.4, not-an-ip", trusted), addr("10.0.0.5"));
  // Only trusted hops: the leftmost is the best guess.
  EXPECT_EQ(resolve_client(addr("10.0.0.5"), "10.0.0.7", trusted), addr("10.0.0.7"));
}

TEST(Origin, Normalizes) {
  EXPECT_EQ(normalize_origin("HTTP://Chat.Example.com:80"), "http://chat.example.com");
  EXPECT_EQ(normalize_origin("https://chat.example.com:443"), "https://chat.example.com");
  EXPECT_EQ(normalize_origin("https://chat.example.com:8443"), "https://chat.example.com:8443");
  EXPECT_EQ(normalize_origin("http://[::1]:3000"), "http://[::1]:3000");
  EXPECT_EQ(normalize_origin("http://[::1]"), "http://[::1]");
  for (const char* bad : {"null", "", "chat.example.com", "http://", "http://a/b", "http://u@a",
                          "http://a:", "http://a:x", "ht tp://a"})
    EXPECT_FALSE(normalize_origin(bad)) << bad;
}

TEST(Origin, AllowsOwnOriginAndTheList) {
  const std::vector<std::string> none;
  EXPECT_TRUE(origin_allowed("http://127.0.0.1:3000", "http", "127.0.0.1:3000", none));
  EXPECT_TRUE(origin_allowed("http://chat.example.com", "http", "chat.example.com:80", none));
  EXPECT_TRUE(origin_allowed("https://chat.example.com", "https", "chat.example.com", none));
  EXPECT_FALSE(origin_allowed("https://chat.example.com", "http", "chat.example.com", none));
  EXPECT_FALSE(origin_allowed("http://evil.example", "http", "chat.example.com", none));
  EXPECT_FALSE(
      origin_allowed("http://chat.example.com.evil.example", "http", "chat.example.com", none));
  EXPECT_FALSE(origin_allowed("null", "http", "chat.example.com", none));
  EXPECT_FALSE(origin_allowed("http://chat.example.com", "http", "", none));
  const std::vector<std::string> list{"https://app.example.com"};
  EXPECT_TRUE(origin_allowed("https://APP.example.com:443", "http", "chat.example.com", list));
  EXPECT_FALSE(origin_allowed("http://app.example.com", "http", "chat.example.com", list));
}

TEST(RedactUrl, HidesPasswords) {
  using chat::runtime::redact_url;
  EXPECT_EQ(redact_url("amqp://guest:secret@127.0.0.1:5672/vh"),
            "amqp://guest:***@127.0.0.1:5672/vh");
  EXPECT_EQ(redact_url("amqp://user:p@ss:w@rd@host"), "amqp://user:***@host");
  EXPECT_EQ(redact_url("amqp://token@host/x"), "amqp://***@host/x");
  EXPECT_EQ(redact_url("amqp://host:5672"), "amqp://host:5672");
  EXPECT_EQ(redact_url("amqp://host/path@x"), "amqp://host/path@x");
  EXPECT_EQ(redact_url("guest:secret@host"), "guest:***@host");
  EXPECT_EQ(redact_url("amqp://u:s@"), "amqp://u:***@");
  EXPECT_EQ(redact_url(""), "");
}

TEST(Ids, TwentyBase64UrlCharactersAllDifferent) {
  RandomPool pool;
  std::set<std::string> seen;
  std::array<int, 64> used{};
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (int i = 0; i < 20000; ++i) {
    const auto id = random_id(pool);
    ASSERT_EQ(id.size(), 20u);
    for (char c : id) {
      const auto pos = alphabet.find(c);
      ASSERT_NE(pos, std::string::npos) << id;
      ++used[pos];
    }
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 20000u);
  // 400,000 characters over 64 symbols: each near 6,250 (a stuck bit would show).
  for (int n : used) {
    EXPECT_GT(n, 5500);
    EXPECT_LT(n, 7000);
  }
}

TEST(Ids, PoolsAreIndependent) {
  RandomPool a, b;
  std::set<std::string> fromA;
  for (int i = 0; i < 1000; ++i) fromA.insert(random_id(a));
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(fromA.count(random_id(b)));
}
