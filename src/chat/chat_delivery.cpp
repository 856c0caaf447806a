// ChatService: the bus side. What the bus hands over is checked, kept in
// the history, encoded once and broadcast through the transport's Rooms.
#include "chat/chat_service_internal.hpp"

#include "runtime/workers.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <string_view>

namespace chat::app {

using nlohmann::json;
using transport::Ack;
using namespace internal;

json ChatService::message_json(const bus::Envelope& e) {
  json payload = bus::payload_json(e);
  payload["offset"] = std::to_string(e.position);
  return payload;
}

std::shared_ptr<const std::string> ChatService::encode_message(const bus::Envelope& e,
                                                               const std::string* cut) const {
  // The offset twice: in the message (for pages) and as the last argument,
  // where Socket.IO clients take it for connection state recovery. With
  // history partitions the last argument is a cut: a position per partition.
  const std::string* resume = cut ? cut : e.cut.empty() ? nullptr : &e.cut;
  if (e.payload_text.empty())
    return transport::encode_event(
        "/", e.event,
        json::array({message_json(e), resume ? *resume : std::to_string(e.position)}));
  // A payload the bus kept as text (one JSON object): the offset goes in
  // before its closing brace, no DOM built.
  const auto offset = "\"" + std::to_string(e.position) + "\"";
  const std::string_view text = e.payload_text;
  std::string payload;
  payload.reserve(text.size() + offset.size() + 12);
  payload.append(text.substr(0, text.size() - 1));
  if (text != "{}") payload += ',';
  payload += "\"offset\":";
  payload += offset;
  payload += '}';
  if (!resume) return transport::encode_event_text("/", e.event, {payload, offset});
  return transport::encode_event_text("/", e.event, {payload, "\"" + *resume + "\""});
}

std::shared_ptr<const std::string> ChatService::encode_room_event(const bus::Envelope& e) const {
  if (e.payload_text.empty())
    return transport::encode_event("/", e.event, json::array({e.payload}));
  return transport::encode_event_text("/", e.event, {e.payload_text});
}

// ------------------------------------------------------------------ bus side

void ChatService::on_bus_state(bool ready) {
  bus_ready_ = ready;
  spdlog::info("bus {}", ready ? "ready" : "not ready");
  if (ready) {
    // Silence while the bus was down says nothing about the others.
    presence_.touch_all();
    publish_snapshot();
  }
}

void ChatService::on_bus_batch(std::vector<bus::EnvelopePtr> batch) {
  auto prepared = std::make_shared<std::vector<Prepared>>();
  prepared->reserve(batch.size());
  std::vector<bus::EnvelopePtr> kept;
  for (auto& e : batch) {
    if (!e) continue;
    // One envelope nobody foresaw must not cost its neighbours their delivery.
    try {
      on_bus_envelope(e, *prepared, kept);
    } catch (...) {
      inbound_errors_.caught();
    }
  }
  // One lock per batch; the history is complete before any member sees the batch.
  history_.add(kept);
  // Only rooms with a member here go on, and only to the workers that have
  // one: a room nobody here is in costs no encode and no post (one lock per
  // batch). A member who joins after this check, on any worker, finds the
  // message in the history its join reads, which is later.
  std::vector<bool> to;
  rooms_.route(
      *prepared, [](const Prepared& p) -> const std::string& { return p.env->room; }, to);
  if (prepared->empty()) return;
  // One encode per envelope; the buffer is shared by every receiver on every worker.
  // A message with a position carries it as its offset (docs/protocol.md, "History"),
  // and its age when it reaches this replica's members goes in the latency histogram.
  const auto now = now_ms();
  for (auto& p : *prepared) {
    try {
      const bool message = History::kept(*p.env);
      if (message) delivery_latency_.observe_ms(static_cast<double>(now - p.env->ts));
      p.packet = message ? encode_message(*p.env) : encode_room_event(*p.env);
    } catch (...) {
      inbound_errors_.caught();
    }
  }
  std::erase_if(*prepared, [](const Prepared& p) { return !p.packet; });
  if (prepared->empty()) return;
  // One buffer per worker: each receiver's queue holds a reference, and a
  // buffer shared by several workers would move its reference count from
  // core to core on every delivery. A copy per worker (per message, not per
  // receiver) keeps each count on the core that uses it.
  bool first = true;
  for (unsigned w = 0; w < to.size(); ++w) {
    if (!to[w]) continue;
    std::shared_ptr<const std::vector<Prepared>> mine = prepared;
    if (!first) {
      auto copy = std::make_shared<std::vector<Prepared>>(*prepared);
      for (auto& p : *copy) p.packet = std::make_shared<const std::string>(*p.packet);
      mine = std::move(copy);
    }
    first = false;
    delivery_posts_.fetch_add(1, std::memory_order_relaxed);
    boost::asio::post(workers_.at(w), [this, mine, w] { deliver_batch(w, *mine); });
  }
}

void ChatService::on_bus_envelope(const bus::EnvelopePtr& e, std::vector<Prepared>& prepared,
                                  std::vector<bus::EnvelopePtr>& kept) {
  // Our own envelopes (local delivery) were built here; the others are checked.
  const bool own = e->origin == options_.instance_id;
  if (e->room.empty()) {
    if (admin_.envelope && std::string_view(e->event).starts_with("admin.")) {
      admin_.envelope(e);
      return;
    }
    if (own) return;
    auto in = decode_inbound(*e);
    if (!in.ok) return inbound_.count(in.kind);
    return handle_control(*e, in);
  }
  if (e->room == bus::kPartitionRoom) {
    if (own && e->event == bus::kSyncedEvent) {
      history_.read_since(e->partition, e->payload.value("since", std::int64_t{-1}));
      on_synced(e);
    }
    return;
  }
  if (e->room == kSessionsRoom) {
    if (!sessions_.apply(e->event, e->payload, e->ts)) inbound_.count(InboundKind::room);
    return;
  }
  if (!own && !valid_room_event(*e)) return inbound_.count(InboundKind::room);
  // A publish-API retry that reached another replica: one copy per member.
  if (std::string_view(e->id).starts_with(kApiIdPrefix) && !api_copies_.pass(e->id, e->origin)) {
    api_duplicates_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (History::kept(*e)) kept.push_back(e);
  // Read back from history at start: published before this replica was there.
  if (e->replay) return;
  prepared.push_back(Prepared{e, nullptr, !History::kept(*e) && droppable_event(e->event)});
}

json ChatService::history_json(const std::string& room) {
  json out = json::array();
  for (const auto& e : history_.last(room, options_.history)) out.push_back(message_json(*e));
  return out;
}

void ChatService::deliver_local(std::vector<bus::EnvelopePtr> batch) {
  on_bus_batch(std::move(batch));
}

void ChatService::deliver_batch(unsigned worker, const std::vector<Prepared>& batch) {
  std::uint64_t sent = 0, dropped = 0, closed = 0;
  for (const auto& p : batch) {
    const auto& e = *p.env;
    // The sender does not get its own message; a recovered member does not
    // get again what came with its missed messages.
    const auto r = rooms_.broadcast(
        worker, e.room, p.packet, p.droppable, e.sender, [&e](const LocalUser& member) {
          return e.position >= 0 && e.position <= member.replayed(e.partition);
        });
    sent += r.sent;
    dropped += r.dropped;
    closed += r.closed;
  }
  auto& c = states_[worker]->counters;
  c.envelopes_in_total.fetch_add(batch.size(), std::memory_order_relaxed);
  c.deliveries_total.fetch_add(sent, std::memory_order_relaxed);
  if (dropped) c.deliveries_dropped_total.fetch_add(dropped, std::memory_order_relaxed);
  if (closed) c.deliveries_closed_total.fetch_add(closed, std::memory_order_relaxed);
}

void ChatService::handle_control(const bus::Envelope& e, Inbound& in) {
  bool need_sync = false;
  if (auto* d = std::get_if<PresenceDelta>(&in.control)) {
    need_sync = presence_.apply_delta(e.origin, *d);
  } else if (auto* hb = std::get_if<PresenceHeartbeat>(&in.control)) {
    need_sync = presence_.apply_heartbeat(e.origin, *hb);
  } else if (auto* snap = std::get_if<PresenceSnapshot>(&in.control)) {
    presence_.apply_snapshot(e.origin, *snap);
  } else if (auto* sync = std::get_if<PresenceSync>(&in.control)) {
    if (sync->target == options_.instance_id) publish_snapshot();
  } else if (std::holds_alternative<PresenceBye>(in.control)) {
    auto gone = presence_.remove_replica(e.origin);
    if (!gone.empty()) announce_gone(gone);
  }
  if (need_sync) bus_.publish(make_envelope("", kSync, json{{"target", e.origin}}), {});
}

// Users of a replica that died or left: tell local room members, without the
// bus (every replica does this for its own users).
void ChatService::announce_gone(const std::vector<UserInfo>& users) {
  std::vector<bus::EnvelopePtr> batch;
  const auto num = presence_.num_users();
  for (const auto& u : users)
    for (const auto& room : u.rooms)
      batch.push_back(make_envelope(
          room, "user left", membership_json(u.user_id, u.username, num, room, u.replica, u.sub)));
  if (!batch.empty()) deliver_local(std::move(batch));
}

}  // namespace chat::app
