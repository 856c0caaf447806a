// API keys files, the first-copy filter and the publish API's own rules
// (idempotency, rate, in-flight retries) with a stand-in for the chat
// application; tests/integration/publish-api.test.mjs runs it for real.
#include "endpoints/publish_api.hpp"
#include "auth/api_keys.hpp"
#include "chat/first_copy.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using chat::app::ApiMessage;
using chat::app::ApiOutcome;
using chat::app::ChatError;
using chat::auth::find_api_key;
using chat::auth::hex;
using chat::auth::parse_api_keys;
using chat::auth::sha256;
using chat::endpoints::PublishApi;
using chat::endpoints::PublishApiOptions;
using chat::transport::HttpRequest;
using chat::transport::HttpResponse;
using nlohmann::json;

const std::string kSecret = "0123456789abcdef0123456789abcdef";

TEST(ApiKeysTest, ParsesNamesSecretsHashesAndOptions) {
  const auto h = sha256("another-secret-another-secret-xyz");
  const auto keys = parse_api_keys("# comment\n\nbackend " + kSecret +
                                   "\r\nnews sha256:" + hex(h.data(), h.size()) +
                                   " rooms=news-*,general rate=2.5 burst=5\n");
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].name, "backend");
  EXPECT_TRUE(keys[0].rooms.empty());
  EXPECT_EQ(keys[1].rooms, (std::vector<std::string>{"news-*", "general"}));
  EXPECT_DOUBLE_EQ(keys[1].rate, 2.5);
  EXPECT_DOUBLE_EQ(keys[1].burst, 5);
  EXPECT_EQ(find_api_key(keys, kSecret), &keys[0]);
  EXPECT_EQ(find_api_key(keys, "another-secret-another-secret-xyz"), &keys[1]);
  EXPECT_EQ(find_api_key(keys, kSecret + "x"), nullptr);
  EXPECT_EQ(find_api_key(keys, ""), nullptr);
  // The hash itself is no key.
  EXPECT_EQ(find_api_key(keys, "sha256:" + hex(h.data(), h.size())), nullptr);
}

TEST(ApiKeysTest, RefusesBadLinesWithTheLineNumber) {
  auto refused = [](const std::string& text, const std::string& what) {
    try {
      parse_api_keys(text);
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "accepted: " << text;
  };
  refused("a short\n", "line 1");
  refused("a short\n", "shorter than 32");
  refused("\nonlyname\n", "line 2");
  refused("bad/name " + kSecret + "\n", "key name");
  refused("a " + kSecret + "\na " + kSecret + "x\n", "named twice");
  refused("a sha256:abcd\n", "64 hex");
  refused("a sha256:" + std::string(64, 'g') + "\n", "64 hex");
  refused("a " + kSecret + " rate=0\n", "positive");
  refused("a " + kSecret + " rate=x\n", "positive");
  refused("a " + kSecret + " colour=red\n", "unknown option");
  refused("a " + kSecret + " rooms=a,,b\n", "room pattern");
}

TEST(FirstCopyTest, KeepsTheFirstOriginAndForgetsTheOldest) {
  chat::app::FirstCopy f(2);
  EXPECT_TRUE(f.pass("api-1", "r1"));
  EXPECT_TRUE(f.pass("api-1", "r1")) << "the same origin again (its read-back)";
  EXPECT_FALSE(f.pass("api-1", "r2"));
  EXPECT_TRUE(f.pass("api-2", "r2"));
  EXPECT_TRUE(f.pass("api-3", "r3"));
  EXPECT_EQ(f.size(), 2u);
  EXPECT_TRUE(f.pass("api-1", "r2")) << "forgotten: bounded";
}

// The publish API with a chat application that holds its answers until told.
struct Harness {
  std::vector<std::pair<ApiMessage, std::function<void(ApiOutcome)>>> posted;
  std::vector<HttpResponse> answers;
  PublishApi api;

  explicit Harness(double rate = 0, double burst = 10)
      : api(
            options(rate, burst),
            [](const ApiMessage& m) -> std::optional<ChatError> {
              if (m.room == "bad") return ChatError{"INVALID_ROOM", "bad room"};
              return std::nullopt;
            },
            [this](ApiMessage m, std::function<void(ApiOutcome)> done) {
              posted.emplace_back(std::move(m), std::move(done));
            }) {}

  static PublishApiOptions options(double rate, double burst) {
    PublishApiOptions o;
    o.keys = parse_api_keys("backend " + kSecret + "\n");
    o.rate = rate;
    o.burst = burst;
    o.replica = "r1";
    return o;
  }
  void send(const std::string& path, const json& body, const std::string& idem = {}) {
    HttpRequest r;
    r.method = "POST";
    r.path = path;
    r.target = path;
    r.headers["authorization"] = "Bearer " + kSecret;
    r.headers["content-type"] = "application/json";
    if (!idem.empty()) r.headers["idempotency-key"] = idem;
    r.body = body.dump();
    api.handle(r, [this](HttpResponse res) { answers.push_back(std::move(res)); });
  }
  json last() const { return json::parse(*answers.back().body); }
  void confirm(std::size_t i, std::optional<ChatError> err = std::nullopt) {
    posted[i].second(ApiOutcome{std::move(err), "id" + std::to_string(i), 1000});
  }
};

TEST(PublishApiTest, AnswersWhenTheBusConfirmedAndNotBefore) {
  Harness h;
  h.send("/api/messages", json{{"rooms", {"a", "b"}}, {"message", "hi"}});
  ASSERT_EQ(h.posted.size(), 2u);
  EXPECT_TRUE(h.answers.empty());
  h.confirm(1);
  EXPECT_TRUE(h.answers.empty()) << "one of two stored";
  h.confirm(0);
  ASSERT_EQ(h.answers.size(), 1u);
  EXPECT_EQ(h.answers[0].status, 200u);
  EXPECT_EQ(h.last()["messages"].size(), 2u);
  EXPECT_EQ(h.posted[0].first.username, "backend");
  EXPECT_EQ(h.posted[0].first.key, "backend");
  EXPECT_TRUE(h.posted[0].first.id.empty()) << "no idempotency key: a new id";
}

TEST(PublishApiTest, ARetryWhileInFlightIsToldToWaitAndAFailureIsForgotten) {
  Harness h;
  const json body{{"message", "hi"}};
  h.send("/api/rooms/a/messages", body, "k1");
  ASSERT_EQ(h.posted.size(), 1u);
  const auto id = h.posted[0].first.id;
  EXPECT_EQ(id, PublishApi::message_id("backend", "k1", "a"));
  EXPECT_EQ(id.rfind("api-", 0), 0u);
  h.send("/api/rooms/a/messages", body, "k1");
  ASSERT_EQ(h.answers.size(), 1u);
  EXPECT_EQ(h.answers[0].status, 409u);
  EXPECT_EQ(h.posted.size(), 1u) << "not posted twice";
  // The bus could not store it: 503, and the retry is tried again (same id).
  h.confirm(0, ChatError{"UNAVAILABLE", "down"});
  ASSERT_EQ(h.answers.size(), 2u);
  EXPECT_EQ(h.answers[1].status, 503u);
  h.send("/api/rooms/a/messages", body, "k1");
  ASSERT_EQ(h.posted.size(), 2u);
  EXPECT_EQ(h.posted[1].first.id, id);
  h.confirm(1);
  EXPECT_EQ(h.answers.back().status, 200u);
  // Now a retry is answered from memory, with the same body.
  const auto first = *h.answers.back().body;
  h.send("/api/rooms/a/messages", body, "k1");
  EXPECT_EQ(h.posted.size(), 2u);
  EXPECT_EQ(*h.answers.back().body, first);
  // Another room with the same key string is another request.
  h.send("/api/rooms/b/messages", body, "k1");
  EXPECT_EQ(h.answers.back().status, 422u);
}

TEST(PublishApiTest, ARefusalCostsNoToken) {
  Harness h(/*rate=*/1000, /*burst=*/2);
  h.send("/api/rooms/bad/messages", json{{"message", "hi"}});
  EXPECT_EQ(h.answers.back().status, 400u);
  EXPECT_EQ(h.last()["error"]["code"], "INVALID_ROOM");
  h.send("/api/messages", json{{"rooms", {"a", "b", "c"}}, {"message", "hi"}});
  EXPECT_EQ(h.answers.back().status, 429u) << "more rooms than the burst";
  h.send("/api/messages", json{{"rooms", {"a", "b"}}, {"message", "hi"}});
  EXPECT_EQ(h.posted.size(), 2u) << "the refusals took no token";
  h.send("/api/rooms/a/messages", json{{"message", "hi"}});
  EXPECT_EQ(h.answers.back().status, 429u);
  EXPECT_EQ(h.posted.size(), 2u);
}

}  // namespace
