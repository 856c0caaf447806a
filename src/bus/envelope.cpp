// Envelope wire format: one compact JSON object per AMQP message body.
//
// "v" is the format version so a replica running newer code can refuse (not
// misread) envelopes it does not understand during a rolling update.
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

namespace {

EnvelopePtr from_json(nlohmann::json& j) {
  if (!j.is_object()) return nullptr;
  const auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer() || v->get<int>() != kVersion) return nullptr;
  auto str = [&j](const char* key, std::string& out, bool required) {
    const auto it = j.find(key);
    if (it == j.end()) return !required;
    if (!it->is_string()) return false;
    out = it->get<std::string>();
    return true;
  };
  auto e = std::make_shared<Envelope>();
  if (!str("origin", e->origin, true) || e->origin.empty()) return nullptr;
  if (!str("id", e->id, true) || e->id.empty()) return nullptr;
  if (!str("room", e->room, true)) return nullptr;
  if (!str("event", e->event, true) || e->event.empty()) return nullptr;
  if (!str("sender", e->sender, false)) return nullptr;
  const auto p = j.find("payload");
  if (p == j.end()) return nullptr;
  e->payload = std::move(*p);
  const auto ts = j.find("ts");
  if (ts != j.end()) {
    if (!ts->is_number_integer()) return nullptr;
    e->ts = ts->get<std::int64_t>();
  }
  return e;
}

}  // namespace

EnvelopePtr parse(std::string_view bytes) {
  auto j = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
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

std::vector<EnvelopePtr> parse_batch(std::string_view bytes, std::size_t& bad) {
  std::vector<EnvelopePtr> out;
  auto j = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_array()) {
    out.reserve(j.size());
    for (auto& item : j) {
      if (auto e = from_json(item))
        out.push_back(std::move(e));
      else
        ++bad;
    }
    if (j.empty()) ++bad;
    return out;
  }
  if (auto e = from_json(j))
    out.push_back(std::move(e));
  else
    ++bad;
  return out;
}

}  // namespace chat::bus
