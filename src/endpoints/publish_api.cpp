// The publish API; see publish_api.hpp and docs/api.md.
#include "endpoints/publish_api.hpp"

#include "auth/identity.hpp"
#include "bus/bus.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

namespace chat::endpoints {

using nlohmann::json;
using transport::HttpResponse;

namespace {

constexpr std::size_t kMaxNesting = 8;           // [ and { levels in a request body
constexpr std::size_t kMaxIdempotencyKey = 255;  // bytes

HttpResponse json_response(unsigned status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::make_shared<const std::string>(body.dump());
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

HttpResponse error(unsigned status, const std::string& code, const std::string& message) {
  return json_response(status,
                       json{{"ok", false}, {"error", {{"code", code}, {"message", message}}}});
}

// The HTTP status of a refusal from the chat application or the bus.
unsigned status_of(const std::string& code) {
  if (code == "RATE_LIMITED") return 429;
  if (code == "OVERLOADED" || code == "UNAVAILABLE") return 503;
  if (code == "REJECTED") return 502;
  return 400;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    auto digit = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = digit(s[i + 1]), lo = digit(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

const std::string* header(const transport::HttpRequest& req, const char* name) {
  const auto it = req.headers.find(name);
  return it == req.headers.end() ? nullptr : &it->second;
}

}  // namespace

PublishApi::PublishApi(PublishApiOptions options, Check check, Post post)
    : options_(std::move(options)), check_(std::move(check)), post_(std::move(post)) {}

std::string PublishApi::message_id(const std::string& key, const std::string& idempotency_key,
                                   const std::string& room) {
  std::string data = key;
  data += '\0';
  data += idempotency_key;
  data += '\0';
  data += room;
  const auto h = auth::sha256(data);
  return app::kApiIdPrefix + auth::hex(h.data(), 16);
}

void PublishApi::answer(const transport::HttpRespond& respond, HttpResponse r) {
  if (r.status < 300)
    ok_.fetch_add(1, std::memory_order_relaxed);
  else if (r.status == 401)
    unauthorized_.fetch_add(1, std::memory_order_relaxed);
  else if (r.status == 429)
    rate_limited_.fetch_add(1, std::memory_order_relaxed);
  else if (r.status >= 500)
    failed_.fetch_add(1, std::memory_order_relaxed);
  else
    refused_.fetch_add(1, std::memory_order_relaxed);
  respond(std::move(r));
}

double PublishApi::take(const auth::ApiKey& key, double n, Clock::time_point now) {
  const double rate = key.rate > 0 ? key.rate : options_.rate;
  const double burst = std::max(key.burst > 0 ? key.burst : options_.burst, 1.0);
  if (rate <= 0) return 0;  // no limit
  auto [it, fresh] = buckets_.try_emplace(key.name);
  auto& b = it->second;
  if (fresh) {
    b.tokens = burst;
  } else {
    const std::chrono::duration<double> dt = now - b.last;
    b.tokens = std::min(burst, b.tokens + dt.count() * rate);
  }
  b.last = now;
  if (n > burst) return -1;  // never: more rooms than the bucket holds
  if (b.tokens < n) return (n - b.tokens) / rate;
  b.tokens -= n;
  return 0;
}

void PublishApi::expire(Clock::time_point now) {
  while (!order_.empty() &&
         (order_.front().first <= now || order_.size() > options_.idempotency_keys)) {
    const auto it = remembered_.find(order_.front().second);
    // A slot answered again later has a later deadline and a later entry.
    if (it != remembered_.end() && it->second.expires <= order_.front().first)
      remembered_.erase(it);
    order_.pop_front();
  }
}

void PublishApi::settle(const std::string& slot, const HttpResponse& r) {
  std::lock_guard lk(mu_);
  const auto it = remembered_.find(slot);
  if (it == remembered_.end()) return;  // pushed out meanwhile
  if (r.status >= 500 || r.status == 429) {
    remembered_.erase(it);
    return;
  }
  it->second.done = true;
  it->second.response = r;
}

void PublishApi::handle(transport::HttpRequest req, transport::HttpRespond respond) {
  // Which call.
  std::vector<std::string> rooms;
  bool single = false;
  static constexpr std::string_view kRooms = "/api/rooms/", kTail = "/messages";
  const std::string_view path = req.path;
  if (path == "/api/messages") {
  } else if (path.starts_with(kRooms) && path.ends_with(kTail) &&
             path.size() > kRooms.size() + kTail.size()) {
    auto room =
        percent_decode(path.substr(kRooms.size(), path.size() - kRooms.size() - kTail.size()));
    if (!room)
      return answer(respond, error(400, "BAD_REQUEST", "the room in the path is not valid"));
    rooms.push_back(std::move(*room));
    single = true;
  } else {
    return answer(respond, error(404, "NOT_FOUND", "no such API call: " + std::string(path)));
  }
  if (req.method != "POST") {
    auto r = error(405, "METHOD_NOT_ALLOWED", "use POST");
    r.headers.emplace_back("Allow", "POST");
    return answer(respond, std::move(r));
  }
  if (options_.keys.empty())
    return answer(respond, error(404, "API_DISABLED",
                                 "the publish API is off: the server has no --api-keys"));

  // Who.
  const auth::ApiKey* key = nullptr;
  {
    const auto* h = header(req, "authorization");
    std::string_view token;
    if (h && h->size() > 7 && lower(h->substr(0, 7)) == "bearer ")
      token = std::string_view(*h).substr(7);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    key = token.empty() ? nullptr : auth::find_api_key(options_.keys, token);
    if (!key) {
      auto r = error(
          401, "UNAUTHORIZED",
          token.empty() ? "an API key is needed: Authorization: Bearer <key>" : "unknown API key");
      r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"chat\"");
      return answer(respond, std::move(r));
    }
  }

  // What.
  const auto* type = header(req, "content-type");
  if (!type || !lower(*type).starts_with("application/json"))
    return answer(respond, error(415, "UNSUPPORTED_MEDIA_TYPE",
                                 "send the body as Content-Type: application/json"));
  if (req.body.size() > options_.max_body)
    return answer(respond,
                  error(413, "PAYLOAD_TOO_LARGE",
                        "the body is over " + std::to_string(options_.max_body) + " bytes"));
  if (bus::nesting_exceeds(req.body, kMaxNesting))
    return answer(respond, error(400, "BAD_JSON", "the body nests too deeply"));
  const json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return answer(respond, error(400, "BAD_JSON", "the body is not a JSON object"));
  const auto m = body.find("message");
  if (m == body.end() || !m->is_string())
    return answer(respond, error(400, "INVALID_MESSAGE", "message must be a string"));
  std::string username = key->name;
  if (const auto u = body.find("username"); u != body.end()) {
    if (!u->is_string())
      return answer(respond, error(400, "INVALID_NAME", "username must be a string"));
    username = u->get<std::string>();
  }
  if (!single) {
    const auto rs = body.find("rooms");
    if (rs == body.end() || !rs->is_array() || rs->empty())
      return answer(respond, error(400, "BAD_REQUEST", "rooms must be a non-empty array"));
    if (rs->size() > options_.max_rooms)
      return answer(respond, error(400, "BAD_REQUEST",
                                   "at most " + std::to_string(options_.max_rooms) +
                                       " rooms in one request"));
    std::set<std::string> seen;
    for (const auto& r : *rs) {
      if (!r.is_string())
        return answer(respond, error(400, "INVALID_ROOM", "rooms must be strings"));
      if (!seen.insert(r.get<std::string>()).second)
        return answer(respond, error(400, "BAD_REQUEST",
                                     "room \"" + r.get<std::string>() + "\" is named twice"));
      rooms.push_back(r.get<std::string>());
    }
  }
  std::vector<app::ApiMessage> messages;
  messages.reserve(rooms.size());
  for (const auto& room : rooms) {
    app::ApiMessage am{room, m->get<std::string>(), username, key->name, {}};
    if (auto err = check_(am))
      return answer(respond, error(status_of(err->code), err->code, err->message));
    if (!key->rooms.empty() && !auth::any_matches(key->rooms, room))
      return answer(respond,
                    error(403, "FORBIDDEN", "key \"" + key->name + "\" may not post in " + room));
    messages.push_back(std::move(am));
  }

  // Once.
  std::string slot;
  if (const auto* idem = header(req, "idempotency-key")) {
    const bool ok =
        !idem->empty() && idem->size() <= kMaxIdempotencyKey &&
        std::all_of(idem->begin(), idem->end(), [](char c) { return c > ' ' && c < 127; });
    if (!ok)
      return answer(
          respond, error(400, "BAD_REQUEST", "Idempotency-Key: 1 to 255 visible ASCII characters"));
    slot = key->name + '\n' + *idem;
    for (auto& am : messages) am.id = message_id(key->name, *idem, am.room);
  }
  const auto fingerprint = auth::sha256(std::string(path) + '\n' + req.body);
  {
    std::lock_guard lk(mu_);
    const auto now = Clock::now();
    if (!slot.empty()) {
      expire(now);
      if (auto it = remembered_.find(slot); it != remembered_.end()) {
        if (it->second.fingerprint != fingerprint)
          return answer(respond, error(422, "IDEMPOTENCY_MISMATCH",
                                       "this Idempotency-Key was used for another request"));
        if (!it->second.done) {
          auto r = error(409, "IDEMPOTENCY_IN_PROGRESS",
                         "a request with this Idempotency-Key is still in progress");
          r.headers.emplace_back("Retry-After", "1");
          return answer(respond, std::move(r));
        }
        auto r = it->second.response;
        r.headers.emplace_back("Idempotent-Replayed", "true");
        replayed_.fetch_add(1, std::memory_order_relaxed);
        respond(std::move(r));
        return;
      }
    }
    if (const double wait = take(*key, static_cast<double>(messages.size()), now); wait != 0) {
      auto r = wait < 0 ? error(429, "RATE_LIMITED",
                                "more rooms than the key's burst allows in one request")
                        : error(429, "RATE_LIMITED",
                                "too many messages for key \"" + key->name + "\": slow down");
      if (wait > 0)
        r.headers.emplace_back("Retry-After", std::to_string(static_cast<long>(std::ceil(wait))));
      return answer(respond, std::move(r));
    }
    if (!slot.empty()) {
      auto& rem = remembered_[slot];
      rem.fingerprint = fingerprint;
      rem.expires = now + options_.idempotency_ttl;
      order_.emplace_back(rem.expires, slot);
      expire(now);
    }
  }

  // Post every message; answer when the last one is stored or refused.
  struct Pending {
    std::mutex mu;
    std::size_t left = 0;
    std::vector<app::ApiOutcome> outcomes;
  };
  auto pending = std::make_shared<Pending>();
  pending->left = messages.size();
  pending->outcomes.resize(messages.size());
  auto finish = [this, pending, rooms, single, slot, respond]() {
    const app::ChatError* first_error = nullptr;
    json list = json::array();
    for (std::size_t i = 0; i < rooms.size(); ++i) {
      const auto& o = pending->outcomes[i];
      if (o.error) {
        if (!first_error) first_error = &*o.error;
        list.push_back({{"room", rooms[i]},
                        {"error", {{"code", o.error->code}, {"message", o.error->message}}}});
      } else {
        list.push_back({{"room", rooms[i]}, {"id", o.id}, {"ts", o.ts}});
      }
    }
    HttpResponse r;
    if (!first_error) {
      json out{{"ok", true}, {"replica", options_.replica}};
      if (single) {
        out["room"] = rooms[0];
        out["id"] = list[0]["id"];
        out["ts"] = list[0]["ts"];
      } else {
        out["messages"] = std::move(list);
      }
      r = json_response(200, out);
    } else {
      json out{{"ok", false},
               {"error", {{"code", first_error->code}, {"message", first_error->message}}}};
      if (!single) out["messages"] = std::move(list);
      r = json_response(status_of(first_error->code), out);
      if (r.status == 503 || r.status == 429) r.headers.emplace_back("Retry-After", "1");
    }
    if (!slot.empty()) settle(slot, r);
    answer(respond, std::move(r));
  };
  for (std::size_t i = 0; i < messages.size(); ++i) {
    post_(std::move(messages[i]), [pending, i, finish](app::ApiOutcome o) {
      bool last = false;
      {
        std::lock_guard lk(pending->mu);
        pending->outcomes[i] = std::move(o);
        last = --pending->left == 0;
      }
      if (last) finish();
    });
  }
}

std::string PublishApi::metrics() const {
  std::string out =
      "# HELP chat_api_requests_total Publish API requests by answer\n"
      "# TYPE chat_api_requests_total counter\n";
  const std::pair<const char*, const std::atomic<std::uint64_t>*> rows[] = {
      {"ok", &ok_},         {"replayed", &replayed_},         {"refused", &refused_},
      {"failed", &failed_}, {"rate_limited", &rate_limited_}, {"unauthorized", &unauthorized_}};
  for (const auto& [name, v] : rows)
    out += "chat_api_requests_total{replica=\"" + options_.replica + "\",result=\"" +
           std::string(name) + "\"} " + std::to_string(v->load(std::memory_order_relaxed)) + "\n";
  return out;
}

}  // namespace chat::endpoints
