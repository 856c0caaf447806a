// Envelope wire format: one compact JSON object per AMQP message body.
//
// "v" is the format version so a replica running newer code can refuse (not
// misread) envelopes it does not understand during a rolling update.
//
// Everything read here comes from the broker, where any client with publish
// rights can put anything: every field is type-checked and bounded, nothing
// throws, and a body is refused before parsing when it is too large or nests
// too deep (nlohmann's parser is iterative, but dump() and copies recurse).
//
// Bodies are parsed with simdjson (validated in full, no allocation per
// value); a room envelope's payload stays compact JSON text, so relaying or
// storing a message builds no DOM (docs/cluster.md, "The envelope").
#include "bus/bus.hpp"

#include <simdjson.h>

#include <optional>

namespace chat::bus {

namespace {
constexpr int kVersion = 1;
}

nlohmann::json payload_json(const Envelope& e) {
  if (e.payload_text.empty()) return e.payload;
  auto j = nlohmann::json::parse(e.payload_text, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : nlohmann::json::object();
}

std::string serialize(const Envelope& e) {
  nlohmann::json j = {{"v", kVersion},  {"origin", e.origin}, {"id", e.id},
                      {"room", e.room}, {"event", e.event},   {"payload", payload_json(e)},
                      {"ts", e.ts},     {"sender", e.sender}};
  // Replace invalid UTF-8 instead of throwing: payloads come from users.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

const char* to_string(PublishStatus status) {
  switch (status) {
    case PublishStatus::ok:
      return "ok";
    case PublishStatus::unavailable:
      return "unavailable";
    case PublishStatus::rejected:
      return "rejected";
    case PublishStatus::full:
      return "full";
  }
  return "unknown";
}

bool nesting_exceeds(std::string_view bytes, std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : bytes) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

namespace {

bool is_integer(simdjson::dom::element v) {
  return v.is_int64() || v.is_uint64();
}

EnvelopePtr from_element(simdjson::dom::element el) {
  simdjson::dom::object obj;
  if (el.get_object().get(obj) != simdjson::SUCCESS) return nullptr;
  auto e = std::make_shared<Envelope>();
  // A key given twice counts with its last value (as a DOM parser keeps it).
  bool v_ok = false, origin = false, id = false, room = false, event = false, sender = true,
       ts = true;
  simdjson::dom::element payload;
  bool have_payload = false;
  auto str = [](simdjson::dom::element v, std::string& out, std::size_t max) {
    std::string_view s;
    if (v.get_string().get(s) != simdjson::SUCCESS || s.size() > max) return false;
    out.assign(s);
    return true;
  };
  for (auto field : obj) {
    const std::string_view key = field.key;
    const auto v = field.value;
    if (key == "v") {
      // A JSON integer equal to the version: 1.0 or 2^32+1 are not 1.
      v_ok = is_integer(v) && (v.is_int64() ? v.get_int64().value_unsafe() == kVersion
                                            : v.get_uint64().value_unsafe() == kVersion);
    } else if (key == "origin") {
      origin = str(v, e->origin, kMaxOriginBytes) && !e->origin.empty();
    } else if (key == "id") {
      id = str(v, e->id, kMaxIdBytes) && !e->id.empty();
    } else if (key == "room") {
      room = str(v, e->room, kMaxRoomBytes);
    } else if (key == "event") {
      event = str(v, e->event, kMaxEventBytes) && !e->event.empty();
    } else if (key == "sender") {
      sender = str(v, e->sender, kMaxIdBytes);
    } else if (key == "payload") {
      payload = v;
      have_payload = v.is_object();
    } else if (key == "ts") {
      // Within int64: simdjson types larger integers as uint64.
      ts = v.is_int64();
      if (ts) e->ts = v.get_int64().value_unsafe();
    }
  }
  if (!v_ok || !origin || !id || !room || !event || !sender || !ts || !have_payload) return nullptr;
  auto text = simdjson::minify(payload);
  // Control and reserved rooms ('#': session records, probes) are read as a
  // DOM by whoever handles them; room traffic keeps the text.
  if (e->room.empty() || e->room.front() == '#') {
    e->payload = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!e->payload.is_object()) return nullptr;
  } else {
    e->payload_text = std::move(text);
  }
  return e;
}

// One parser per thread (the consumer's, a fuzzer's) for ordinary bodies
// (a joined message is at most 64 KiB): its buffers are reused. A body over
// kReusedBytes gets a parser of its own, freed after it, so a rare large
// message does not keep its buffers (about 14 times its size) for good.
constexpr std::size_t kReusedBytes = 256 * 1024;

class BodyParser {
 public:
  // False when the body is too large, too deep or not JSON (UTF-8 included:
  // simdjson validates every string).
  bool parse(std::string_view bytes, std::size_t max_bytes, simdjson::dom::element& out) {
    // An empty body is no JSON (and simdjson must not be handed a null pointer).
    if (bytes.empty() || bytes.size() > max_bytes || nesting_exceeds(bytes, kMaxNesting))
      return false;
    thread_local simdjson::dom::parser reused;
    auto& p = bytes.size() <= kReusedBytes ? reused : big_.emplace();
    return p.parse(bytes.data(), bytes.size(), /*realloc_if_needed=*/true).get(out) ==
           simdjson::SUCCESS;
  }

 private:
  std::optional<simdjson::dom::parser> big_;
};

}  // namespace

EnvelopePtr parse(std::string_view bytes) {
  BodyParser parser;
  simdjson::dom::element el;
  if (!parser.parse(bytes, kMaxBodyBytes, el)) return nullptr;
  return from_element(el);
}

std::string join_batch(const std::vector<const std::string*>& bodies) {
  std::size_t size = 2 + bodies.size();
  for (const auto* b : bodies) size += b->size();
  std::string out;
  out.reserve(size);
  out += '[';
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    if (i) out += ',';
    out += *bodies[i];
  }
  out += ']';
  return out;
}

std::vector<EnvelopePtr> parse_batch(std::string_view bytes, std::size_t& bad,
                                     std::size_t max_bytes) {
  std::vector<EnvelopePtr> out;
  BodyParser parser;
  simdjson::dom::element el;
  if (!parser.parse(bytes, max_bytes, el)) {
    ++bad;
    return out;
  }
  simdjson::dom::array items;
  if (el.get_array().get(items) == simdjson::SUCCESS) {
    const auto n = items.size();
    if (n == 0 || n > kMaxJoined) {
      bad += n == 0 ? 1 : n;
      return out;
    }
    out.reserve(n);
    for (auto item : items) {
      if (auto e = from_element(item))
        out.push_back(std::move(e));
      else
        ++bad;
    }
    return out;
  }
  if (auto e = from_element(el))
    out.push_back(std::move(e));
  else
    ++bad;
  return out;
}

}  // namespace chat::bus
