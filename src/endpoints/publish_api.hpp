// The publish API: backends post into rooms over HTTP (docs/api.md).
//
//   POST /api/rooms/{room}/messages   {"message": "...", "username": "..."}
//   POST /api/messages                {"rooms": [...], "message": "...", ...}
//
// An API key as bearer token says which backend it is and where it may post
// (auth/api_keys.hpp); each key has a token bucket on each replica. With an
// Idempotency-Key header a retried request is delivered once: this replica
// answers a repeat from its memory of the first answer, and the message id
// is made from the key, so a retry that reaches another replica carries the
// same id and every replica keeps only the first copy (chat/first_copy.hpp).
// The answer comes when the bus confirmed the message (stored), or with the
// reason it was not: every refusal is a JSON error {"ok": false, "error":
// {"code", "message"}} with its HTTP status.
#pragma once

#include "auth/api_keys.hpp"
#include "chat/api_message.hpp"
#include "transport/api.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace chat::endpoints {

struct PublishApiOptions {
  std::vector<auth::ApiKey> keys;  // none: the API answers 404 API_DISABLED
  double rate = 20;                // messages per second per key on this replica
  double burst = 40;
  std::size_t max_rooms = 100;           // rooms of one broadcast
  std::size_t max_body = 64 * 1024;      // bytes of a request body
  std::size_t idempotency_keys = 10000;  // answers kept per replica (oldest go first)
  std::chrono::seconds idempotency_ttl{24 * 3600};
  std::string replica;  // named in answers
};

class PublishApi {
 public:
  using Check = std::function<std::optional<app::ChatError>(const app::ApiMessage&)>;
  using Post = std::function<void(app::ApiMessage, std::function<void(app::ApiOutcome)>)>;
  using Clock = std::chrono::steady_clock;

  PublishApi(PublishApiOptions options, Check check, Post post);

  // Any thread; respond is called once (from a bus thread when the message
  // went to the bus).
  void handle(transport::HttpRequest req, transport::HttpRespond respond);

  // Lines for /metrics: requests by answer (options.replica as the label).
  std::string metrics() const;

  // The message id for (key, idempotency key, room): kApiIdPrefix + 32 hex digits.
  static std::string message_id(const std::string& key, const std::string& idempotency_key,
                                const std::string& room);

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point last{};
  };
  struct Remembered {
    std::array<unsigned char, 32> fingerprint{};  // of the request it answered
    bool done = false;                            // false: still in flight
    transport::HttpResponse response;
    Clock::time_point expires{};
  };
  void answer(const transport::HttpRespond& respond, transport::HttpResponse r);
  // Take n tokens of key's bucket: 0 when taken, else the seconds to wait.
  // Caller holds mu_.
  double take(const auth::ApiKey& key, double n, Clock::time_point now);
  // The answer to an idempotent request: kept (a success or a refusal that
  // a retry would get again) or forgotten (the retry may do better).
  void settle(const std::string& slot, const transport::HttpResponse& r);
  void expire(Clock::time_point now);  // caller holds mu_

  PublishApiOptions options_;
  Check check_;
  Post post_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // by key name
  std::unordered_map<std::string, Remembered> remembered_;
  std::deque<std::pair<Clock::time_point, std::string>> order_;  // insertion order
  // Answers by status class, for /metrics.
  std::atomic<std::uint64_t> ok_{0}, replayed_{0}, refused_{0}, failed_{0}, rate_limited_{0},
      unauthorized_{0};
};

}  // namespace chat::endpoints
