// Checks of what the bus hands over; see inbound.hpp.
#include "chat/inbound.hpp"

#include <simdjson.h>

#include <optional>
#include <span>
#include <string_view>
#include <utility>

namespace chat::app {

using nlohmann::json;

const char* inbound_kind_name(InboundKind kind) {
  switch (kind) {
    case InboundKind::room:
      return "room";
    case InboundKind::delta:
      return kPresenceDelta;
    case InboundKind::heartbeat:
      return kPresenceHeartbeat;
    case InboundKind::snapshot:
      return kPresenceSnapshot;
    case InboundKind::sync:
      return kPresenceSync;
    case InboundKind::bye:
      return kPresenceBye;
    case InboundKind::unknown_control:
      break;
  }
  return "unknown";
}

namespace {

enum class T { string, integer, count };

bool has(const json& p, const char* key, T type) {
  const auto it = p.find(key);
  if (it == p.end()) return false;
  switch (type) {
    case T::string:
      return it->is_string();
    case T::integer:
      return it->is_number_integer();
    case T::count:
      return it->is_number_unsigned() || (it->is_number_integer() && it->get<std::int64_t>() >= 0);
  }
  return false;
}

struct Field {
  const char* key;
  T type;
};

bool has_all(const json& p, std::span<const Field> fields) {
  for (const auto& f : fields)
    if (!has(p, f.key, f.type)) return false;
  return true;
}

constexpr Field kNewMessage[] = {{"id", T::string},     {"username", T::string},
                                 {"userId", T::string}, {"message", T::string},
                                 {"ts", T::integer},    {"replica", T::string}};
constexpr Field kTyping[] = {{"username", T::string}, {"userId", T::string}};
constexpr Field kMembership[] = {{"username", T::string},
                                 {"userId", T::string},
                                 {"numUsers", T::count},
                                 {"replica", T::string},
                                 {"ts", T::integer}};

// The fields a room event must carry, by event; nullopt for an event this
// version does not know (its users would not either).
std::optional<std::span<const Field>> room_fields(std::string_view ev) {
  if (ev == "new message") return kNewMessage;
  if (ev == "typing" || ev == "stop typing") return kTyping;
  if (ev == "user joined" || ev == "user left") return kMembership;
  return std::nullopt;
}

// The same checks on a payload the bus kept as text (room traffic), with no
// DOM. A key given twice counts with its last value, as clients read it.
class TextPayload {
 public:
  bool parse(const std::string& text) {
    thread_local simdjson::dom::parser parser;
    simdjson::dom::element el;
    return parser.parse(text).get(el) == simdjson::SUCCESS &&
           el.get_object().get(obj_) == simdjson::SUCCESS;
  }
  bool find(std::string_view key, simdjson::dom::element& out) const {
    bool found = false;
    for (auto f : obj_)
      if (f.key == key) {
        out = f.value;
        found = true;
      }
    return found;
  }
  bool has(const char* key, T type) const {
    simdjson::dom::element v;
    if (!find(key, v)) return false;
    switch (type) {
      case T::string:
        return v.is_string();
      case T::integer:
        return v.is_int64() || v.is_uint64();
      case T::count:
        return v.is_uint64();
    }
    return false;
  }
  bool has_all(std::span<const Field> fields) const {
    for (const auto& f : fields)
      if (!has(f.key, f.type)) return false;
    return true;
  }

 private:
  simdjson::dom::object obj_;
};

bool valid_room_text(const bus::Envelope& e) {
  TextPayload p;
  simdjson::dom::element room;
  std::string_view name;
  if (!p.parse(e.payload_text) || !p.find("room", room) ||
      room.get_string().get(name) != simdjson::SUCCESS || name != e.room)
    return false;
  const auto fields = room_fields(e.event);
  return fields && p.has_all(*fields);
}

}  // namespace

bool valid_room_event(const bus::Envelope& e) {
  if (!e.room.empty() && !e.payload_text.empty()) return valid_room_text(e);
  const auto& p = e.payload;
  if (e.room.empty() || !p.is_object()) return false;
  const auto room = p.find("room");
  if (room == p.end() || !room->is_string() || room->get_ref<const std::string&>() != e.room)
    return false;
  const auto fields = room_fields(e.event);
  return fields && has_all(p, *fields);
}

Inbound decode_inbound(const bus::Envelope& e) {
  Inbound in;
  if (!e.room.empty()) {
    in.kind = InboundKind::room;
    in.ok = valid_room_event(e);
    return in;
  }
  const std::string_view ev = e.event;
  auto take = [&in](InboundKind kind, auto decoded) {
    in.kind = kind;
    in.ok = decoded.has_value();
    if (decoded) in.control = std::move(*decoded);
  };
  if (ev == kPresenceDelta)
    take(InboundKind::delta, decode_delta(e.payload));
  else if (ev == kPresenceHeartbeat)
    take(InboundKind::heartbeat, decode_heartbeat(e.payload));
  else if (ev == kPresenceSnapshot)
    take(InboundKind::snapshot, decode_snapshot(e.payload));
  else if (ev == kPresenceSync)
    take(InboundKind::sync, decode_sync(e.payload));
  else if (ev == kPresenceBye)
    take(InboundKind::bye, decode_bye(e.payload));
  else
    in.kind = InboundKind::unknown_control;
  return in;
}

}  // namespace chat::app
