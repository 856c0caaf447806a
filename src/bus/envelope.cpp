// Envelope wire format: one compact JSON object per AMQP message body.
//
// "v" is the format version so a replica running newer code can refuse (not
// misread) envelopes it does not understand during a rolling update.
//
// Everything read here comes from the broker, where any client with publish
// rights can put anything: every field is type-checked and bounded, nothing
// throws, and a body is refused before parsing when it is too large or nests
// too deep (nlohmann's parser is iterative, but dump() and copies recurse).
#include "bus/bus.hpp"

namespace chat::bus {

namespace {
constexpr int kVersion = 1;
}

std::string serialize(const Envelope& e) {
  nlohmann::json j = {{"v", kVersion},  {"origin", e.origin}, {"id", e.id},
                      {"room", e.room}, {"event", e.event},   {"payload", e.payload},
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

EnvelopePtr from_json(nlohmann::json& j) {
  if (!j.is_object()) return nullptr;
  const auto v = j.find("v");
  // Compare as a JSON number: a cast would let 2^32+1 pass as 1.
  if (v == j.end() || !v->is_number_integer() || *v != kVersion) return nullptr;
  auto str = [&j](const char* key, std::string& out, bool required, std::size_t max) {
    const auto it = j.find(key);
    if (it == j.end()) return !required;
    if (!it->is_string()) return false;
    auto& s = it->get_ref<std::string&>();
    if (s.size() > max) return false;
    out = std::move(s);
    return true;
  };
  auto e = std::make_shared<Envelope>();
  if (!str("origin", e->origin, true, kMaxOriginBytes) || e->origin.empty()) return nullptr;
  if (!str("id", e->id, true, kMaxIdBytes) || e->id.empty()) return nullptr;
  if (!str("room", e->room, true, kMaxRoomBytes)) return nullptr;
  if (!str("event", e->event, true, kMaxEventBytes) || e->event.empty()) return nullptr;
  if (!str("sender", e->sender, false, kMaxIdBytes)) return nullptr;
  const auto p = j.find("payload");
  if (p == j.end() || !p->is_object()) return nullptr;
  e->payload = std::move(*p);
  const auto ts = j.find("ts");
  if (ts != j.end()) {
    if (!ts->is_number_integer()) return nullptr;
    if (ts->is_number_unsigned() && ts->get<std::uint64_t>() > INT64_MAX) return nullptr;
    e->ts = ts->get<std::int64_t>();
  }
  return e;
}

// Parse a body, or a discarded value when it is too large, too deep or not JSON.
nlohmann::json parse_body(std::string_view bytes, std::size_t max_bytes) {
  if (bytes.size() > max_bytes || nesting_exceeds(bytes, kMaxNesting))
    return nlohmann::json(nlohmann::json::value_t::discarded);
  return nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
}

}  // namespace

EnvelopePtr parse(std::string_view bytes) {
  auto j = parse_body(bytes, kMaxBodyBytes);
  return from_json(j);
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
  auto j = parse_body(bytes, max_bytes);
  if (j.is_array()) {
    if (j.empty() || j.size() > kMaxJoined) {
      bad += j.empty() ? 1 : j.size();
      return out;
    }
    out.reserve(j.size());
    for (auto& item : j) {
      if (auto e = from_json(item))
        out.push_back(std::move(e));
      else
        ++bad;
    }
    return out;
  }
  if (auto e = from_json(j))
    out.push_back(std::move(e));
  else
    ++bad;
  return out;
}

}  // namespace chat::bus
