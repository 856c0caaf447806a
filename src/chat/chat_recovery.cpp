// ChatService: connection state recovery (session records, restoring a
// socket on any replica) and the waits for history partitions.
#include "chat/chat_service_internal.hpp"

#include "runtime/workers.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <string_view>

namespace chat::app {

using nlohmann::json;
using transport::Ack;
using namespace internal;

namespace {
std::optional<std::int64_t> parse_offset(std::string_view s) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  return std::stoll(std::string(s));
}

// With history partitions a client's offset is a replica's cut:
// "p:position,p:position,..." (docs/protocol.md); nullopt when malformed.
std::optional<std::map<std::uint32_t, std::int64_t>> parse_cut(const std::string& s,
                                                               std::uint32_t parts) {
  std::map<std::uint32_t, std::int64_t> cut;
  if (s.size() > 16 * 1024) return std::nullopt;
  std::string_view rest = s;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const auto item = rest.substr(0, comma);
    const auto colon = item.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    const auto p = parse_offset(item.substr(0, colon));
    const auto pos = parse_offset(item.substr(colon + 1));
    if (!p || !pos || *p >= parts) return std::nullopt;
    cut[static_cast<std::uint32_t>(*p)] = *pos;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return cut;
}
}  // namespace

std::map<std::string, std::int64_t> ChatService::resume_points(const SessionRecord& rec,
                                                               const std::string& offset) const {
  // Per room: after the client's position in the room's partition, or after
  // where the room was joined when that is later (or the client has none).
  std::map<std::string, std::int64_t> from;
  const auto cut = parse_cut(offset, parts_);
  if (!cut) return from;
  for (const auto& room : rec.rooms) {
    const auto part = bus::partition_of(room, parts_);
    std::int64_t start = -1;
    if (auto it = cut->find(part); it != cut->end()) start = it->second;
    for (const auto& [r, at] : rec.joined_at)
      if (r == room) start = std::max(start, at);
    if (start < 0) return {};
    from[room] = start;
  }
  return from;
}

std::optional<std::string> ChatService::recoverable(const std::string& pid,
                                                    const std::string& offset) {
  auto rec = sessions_.find(pid, now_ms());
  bool ok = false;
  if (rec && parts_ == 1) {
    // Every message after the offset must still be here: never a silent gap.
    const auto pos = parse_offset(offset);
    ok = pos && history_.covers(*pos);
  } else if (rec) {
    // Partitions: each room from its own point. One this replica reads must
    // be covered now; one it does not read yet is checked once it has been
    // read up to the present (restore()).
    const auto from = resume_points(*rec, offset);
    ok = !from.empty() || rec->rooms.empty();
    for (const auto& [room, start] : from) {
      const auto part = bus::partition_of(room, parts_);
      if (history_.newest(part) >= 0 && !history_.covers(start, part, resume_since(*rec)))
        ok = false;
    }
  }
  spdlog::debug("recovery of {} at {}: {}", pid, offset,
                rec ? fmt::format("record seen {} ms ago, {}", now_ms() - rec->seen_ms,
                                  ok ? "recovered" : "not covered")
                    : std::string("no record"));
  if (!ok) {
    recoveries_refused_.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  return rec->sid;
}

void ChatService::restore(LocalUser& u, const json& auth) {
  const auto rec = sessions_.find(u.socket->pid(), now_ms());
  const auto offset = auth.value("offset", std::string());
  const auto pos = parts_ == 1 ? parse_offset(offset) : std::optional<std::int64_t>(0);
  if (!rec || !pos) return;  // expired in between: a fresh socket with the old id
  // --auth jwt: only a token of the same user takes the session back; any
  // other one (a pid learnt by someone else) is sent away.
  if ((u.identity ? u.identity->subject : std::string()) != rec->subject) {
    recoveries_refused_.fetch_add(1, std::memory_order_relaxed);
    u.socket->disconnect(true);
    return;
  }
  auto& ws = *states_[u.socket->worker()];
  if (rec->logged_in) {
    u.username = rec->username;
    u.logged_in = true;
    ++ws.logged_in;
    auto lk = presence_.lock();
    publish_presence(presence_.login(u.user_id, u.username, subject_of(u)));
    for (const auto& room : rec->rooms) publish_presence(presence_.join(u.user_id, room));
  }
  if (parts_ > 1) {
    // The rooms come back once their partitions are read up to the present.
    auto from = resume_points(*rec, offset);
    when_read(
        u, rec->rooms,
        [this, from = std::move(from), since = resume_since(*rec)](LocalUser& v, const Synced&) {
          restore_rooms(v, from, since);
        },
        [](LocalUser& v) {
          // Not possible after all: the client comes back as a new socket.
          v.socket->disconnect(true);
        });
    return;
  }
  for (const auto& room : rec->rooms) join_local(u, room);
  // The messages missed, in stream order, before any live one (this runs on
  // the socket's worker, as every delivery to it does).
  std::int64_t upto = *pos;
  const auto missed = history_.since(*pos, rec->rooms, upto);
  u.replayed_upto.assign(1, upto);
  std::uint64_t sent = 0;
  for (const auto& e : missed) {
    if (e->sender == u.user_id) continue;  // a sender does not get its own messages
    u.socket->send_encoded(encode_message(*e));
    ++sent;
  }
  recoveries_.fetch_add(1, std::memory_order_relaxed);
  recovered_messages_.fetch_add(sent, std::memory_order_relaxed);
  publish_session(u);
  spdlog::debug("socket {} recovered: {} rooms, {} missed messages", u.user_id, rec->rooms.size(),
                sent);
}

std::int64_t ChatService::resume_since(const SessionRecord& rec) const {
  // What the client missed was published after it was last seen alive, less
  // an alive interval, less a minute for what was in flight to it then.
  return rec.seen_ms - options_.session_alive_interval.count() - 60000;
}

void ChatService::restore_rooms(LocalUser& u, const std::map<std::string, std::int64_t>& from,
                                std::int64_t since_ms) {
  // Per partition: the rooms, and the earliest point any of them resumes at.
  std::map<std::uint32_t, std::pair<std::vector<std::string>, std::int64_t>> parts;
  for (const auto& [room, start] : from) {
    auto& [rooms, earliest] =
        parts.try_emplace(bus::partition_of(room, parts_), std::vector<std::string>{}, start)
            .first->second;
    rooms.push_back(room);
    earliest = std::min(earliest, start);
  }
  for (const auto& [part, v] : parts) {
    if (!history_.covers(v.second, part, since_ms)) {
      // Trimmed meanwhile, or read from later than the client needs: never
      // a silent gap. The client reconnects and is a new socket then.
      recoveries_refused_.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("socket {}: partition {} no longer holds {}", u.user_id, part, v.second);
      u.socket->disconnect(true);
      return;
    }
  }
  u.replayed_upto.assign(parts_, -1);
  // The client's own position per partition so far: what each frame sent
  // here carries as its offset (the socket's own cut, not the replica's).
  std::map<std::uint32_t, std::int64_t> cut;
  for (const auto& [part, v] : parts) cut[part] = v.second;
  std::uint64_t sent = 0;
  for (const auto& [part, v] : parts) {
    for (const auto& room : v.first) {
      join_local(u, room);
      u.joined_at.emplace_back(room, from.at(room));
    }
    std::int64_t upto = v.second;
    const auto missed = history_.since(v.second, v.first, upto, part);
    u.replayed_upto[part] = upto;
    for (const auto& e : missed) {
      if (e->position <= from.at(e->room)) continue;
      cut[part] = e->position;
      if (e->sender == u.user_id) continue;  // a sender does not get its own messages
      std::string offset;
      for (const auto& [p, pos] : cut)
        offset += (offset.empty() ? "" : ",") + std::to_string(p) + ":" + std::to_string(pos);
      u.socket->send_encoded(encode_message(*e, &offset));
      ++sent;
    }
  }
  recoveries_.fetch_add(1, std::memory_order_relaxed);
  recovered_messages_.fetch_add(sent, std::memory_order_relaxed);
  publish_session(u);
  spdlog::debug("socket {} recovered: {} rooms, {} missed messages", u.user_id, from.size(), sent);
}

// ------------------------------------------------------------------ partitions

void ChatService::when_read(LocalUser& u, const std::vector<std::string>& rooms,
                            std::function<void(LocalUser&, const Synced&)> done,
                            std::function<void(LocalUser&)> failed) {
  // Without a broker nothing can be read: local rooms work as they do with
  // one stream, and the partitions are read once it is back (bound rooms).
  if (parts_ == 1 || rooms.empty() || !bus_ready_) return done(u, {});
  auto w = std::make_shared<Waiter>();
  w->user = user_of(*u.socket);
  w->worker = u.socket->worker();
  for (const auto& room : rooms) w->parts.insert(bus::partition_of(room, parts_));
  w->done = std::move(done);
  w->failed = std::move(failed);
  w->deadline_ms = now_ms() + kPartitionWaitMs;
  const auto parts = w->parts;
  {
    std::lock_guard lk(waiters_mu_);
    waiters_.push_back(std::move(w));
  }
  // After the waiter is listed: any notice from now on counts.
  for (const auto part : parts) bus_.attach(part);
}

void ChatService::on_synced(const bus::EnvelopePtr& notice) {
  std::vector<std::shared_ptr<Waiter>> ready;
  {
    std::lock_guard lk(waiters_mu_);
    std::erase_if(waiters_, [&](const std::shared_ptr<Waiter>& w) {
      if (w->parts.erase(notice->partition) == 0) return false;
      w->synced[notice->partition] = notice;
      if (!w->parts.empty()) return false;
      ready.push_back(w);
      return true;
    });
  }
  // Posted now, so on each worker it runs before the deliveries that follow
  // the notice (posted after it).
  for (auto& w : ready)
    boost::asio::post(workers_.at(w->worker), [w] {
      auto u = w->user.lock();
      if (u && u->socket->connected()) w->done(*u, w->synced);
    });
}

void ChatService::expire_waiters() {
  std::vector<std::shared_ptr<Waiter>> late;
  {
    std::lock_guard lk(waiters_mu_);
    const auto now = now_ms();
    std::erase_if(waiters_, [&](const std::shared_ptr<Waiter>& w) {
      if (w->deadline_ms > now && !w->user.expired()) return false;
      late.push_back(w);
      return true;
    });
  }
  for (auto& w : late) {
    const auto u = w->user.lock();
    if (!u) continue;
    spdlog::warn("partitions not read in time for a request of user {}", u->user_id);
    boost::asio::post(workers_.at(w->worker), [w] {
      const auto user = w->user.lock();
      if (user && user->socket->connected()) w->failed(*user);
    });
  }
}

void ChatService::publish_session(const LocalUser& u) {
  if (!recovery_ || u.socket->pid().empty()) return;
  SessionRecord r;
  r.pid = u.socket->pid();
  r.sid = u.user_id;
  r.username = u.username;
  if (u.identity) r.subject = u.identity->subject;
  r.logged_in = u.logged_in;
  r.rooms.assign(u.rooms.begin(), u.rooms.end());
  r.joined_at = u.joined_at;
  bus_.publish(make_envelope(kSessionsRoom, kSessionEvent, Sessions::record_payload(r)), {});
}

void ChatService::publish_alive() {
  std::vector<std::string> pids;
  {
    std::lock_guard lk(pids_mu_);
    pids.assign(local_pids_.begin(), local_pids_.end());
  }
  for (std::size_t i = 0; i < pids.size(); i += kMaxAlivePids) {
    const auto end = std::min(pids.size(), i + kMaxAlivePids);
    json list = json::array();
    for (std::size_t k = i; k < end; ++k) list.push_back(pids[k]);
    bus_.publish(make_envelope(kSessionsRoom, kSessionAliveEvent, json{{"pids", std::move(list)}}),
                 {});
  }
}

}  // namespace chat::app
