// ChatService: wiring, the chat events and presence; see chat_service.hpp
// (recovery in chat_recovery.cpp, the bus side in chat_delivery.cpp).
#include "chat/chat_service.hpp"

#include "chat/chat_service_internal.hpp"

#include "chat/rate_limiter.hpp"
#include "runtime/workers.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <limits>
#include <set>

namespace chat::app {

using nlohmann::json;
using transport::Ack;

using namespace internal;

namespace {
json error_obj(const ChatError& e) {
  return json{{"code", e.code}, {"message", e.message}};
}

// A member as `list users` and `join room` list them.
json user_json(const UserInfo& x) {
  json j{{"userId", x.user_id}, {"username", x.username}, {"replica", x.replica}};
  if (!x.sub.empty()) j["sub"] = x.sub;
  return j;
}
}  // namespace

ChatService::ChatService(runtime::Workers& workers, transport::Server& server, bus::Bus& bus,
                         ChatOptions options)
    : workers_(workers),
      server_(server),
      bus_(bus),
      options_(std::move(options)),
      presence_(options_.instance_id, options_.replica_id),
      parts_(bus.partitions()),
      history_(options_.history, options_.history_rooms,
               options_.recovery_window.count() > 0 ? options_.recovery_messages : 0, parts_),
      sessions_(options_.recovery_window, options_.session_alive_interval, 1'000'000),
      rooms_(
          workers.size(), [this](const std::string& room) { bus_.bind_room(room); },
          [this](const std::string& room) { bus_.unbind_room(room); }),
      ip_limiter_(options_.limits.ip_rate_per_second, options_.limits.ip_burst),
      room_limiter_(options_.limits.room_rate_per_second, options_.limits.room_burst) {
  for (unsigned i = 0; i < workers_.size(); ++i) states_.push_back(std::make_unique<WorkerState>());
}

ChatService::~ChatService() = default;

std::int64_t ChatService::now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string ChatService::next_id() {
  return options_.instance_id + "-" +
         std::to_string(seq_.fetch_add(1, std::memory_order_relaxed) + 1);
}

std::shared_ptr<bus::Envelope> ChatService::make_envelope(std::string room, std::string event,
                                                          json payload, std::string sender) {
  auto e = std::make_shared<bus::Envelope>();
  e->origin = options_.instance_id;
  e->id = next_id();
  e->room = std::move(room);
  e->event = std::move(event);
  e->payload = std::move(payload);
  e->ts = now_ms();
  e->sender = std::move(sender);
  return e;
}

// ------------------------------------------------------------------ start/stop

void ChatService::start() {
  auto& nsp = server_.of("/");
  nsp.on_connection(
      [this](transport::SocketPtr socket, const json& auth) { on_connection(socket, auth); });
  register_events(nsp);
  // Recovery needs the session records of every replica: the in-process bus
  // or the history stream carries them (per-replica queues do not).
  recovery_ = options_.recovery_window.count() > 0 && bus_.status().history;
  if (recovery_)
    nsp.on_recover([this](const std::string& pid, const std::string& offset,
                          const transport::Handshake&) { return recoverable(pid, offset); });
  // A CONNECT costs a token of its client address: reconnecting in a loop
  // (each one fans out presence) is bounded like any other request.
  nsp.use([this](const transport::Handshake& h, const json&) -> std::optional<json> {
    if (ip_limiter_.allow(h.remote_address)) return std::nullopt;
    ip_refusals_.fetch_add(1, std::memory_order_relaxed);
    return json{{"message", "too many requests from your address: slow down"},
                {"data", {{"code", "RATE_LIMITED"}}}};
  });
  // --auth jwt: no token, no socket (CONNECT_ERROR with the reason).
  if (options_.verifier)
    nsp.use([this](const transport::Handshake&, const json& auth) { return check_token(auth); });

  bus_.start([this](std::vector<bus::EnvelopePtr> batch) { on_bus_batch(std::move(batch)); },
             [this](bool ready) { on_bus_state(ready); });

  timer_ = std::make_unique<boost::asio::steady_timer>(workers_.at(0));
  presence_tick();
}

void ChatService::presence_tick() {
  if (stopping_) return;
  const auto connections = server_.stats().connections_open;
  {
    auto lk = presence_.lock();
    bus_.publish(make_envelope("", kHeartbeat, presence_.heartbeat_locked(connections)), {});
  }
  const auto every =
      std::max<std::int64_t>(1, options_.session_alive_interval.count() /
                                    std::max<std::int64_t>(1, options_.presence_interval.count()));
  if (recovery_) settle_leaves();
  if (options_.verifier)
    for (unsigned w = 0; w < workers_.size(); ++w)
      boost::asio::post(workers_.at(w), [this, w] { expire_tokens(w); });
  if (parts_ > 1) expire_waiters();
  if (recovery_ && ++ticks_ % static_cast<unsigned>(every) == 0) {
    publish_alive();
    sessions_.sweep(now_ms());
  }
  if (bus_ready_) {
    auto gone = presence_.expire(options_.presence_ttl);
    if (!gone.empty()) {
      spdlog::info("presence: {} users of silent replicas removed", gone.size());
      announce_gone(gone);
    }
  }
  timer_->expires_after(options_.presence_interval);
  timer_->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) presence_tick();
  });
}

void ChatService::publish_snapshot() {
  auto lk = presence_.lock();
  bus_.publish(make_envelope("", kSnapshot, presence_.snapshot_locked()), {});
}

void ChatService::announce_departure() {
  bus_.publish(make_envelope("", kBye, json{{"replica", options_.replica_id}}), {});
}

void ChatService::stop() {
  stopping_ = true;
  // Held-back departures: whoever is not back yet is gone.
  if (recovery_) settle_leaves(true);
  if (timer_) boost::asio::post(workers_.at(0), [this] { timer_->cancel(); });
}

// ------------------------------------------------------------------ sockets

std::shared_ptr<ChatService::LocalUser> ChatService::user_of(transport::Socket& socket) {
  auto& users = states_[socket.worker()]->users;
  auto it = users.find(&socket);
  return it == users.end() ? nullptr : it->second;
}

void ChatService::register_events(transport::Namespace& nsp) {
  // One table for every socket; each event finds its user on the socket's
  // worker (the map every delivery uses anyway).
  const auto bind = [&](const char* event, auto member) {
    nsp.on_event(event, [this, member](transport::Socket& s, const json& args, Ack ack) {
      if (auto u = user_of(s)) (this->*member)(*u, args, std::move(ack));
    });
  };
  bind("add user", &ChatService::on_add_user);
  bind("new message", &ChatService::on_new_message);
  bind("join room", &ChatService::on_join_room);
  bind("leave room", &ChatService::on_leave_room);
  bind("list users", &ChatService::on_list_users);
  if (options_.verifier) bind("refresh token", &ChatService::on_refresh_token);
  nsp.on_event("list rooms", [this](transport::Socket& s, const json&, Ack ack) {
    if (auto u = user_of(s)) on_list_rooms(*u, std::move(ack));
  });
  nsp.on_event("cluster info", [this](transport::Socket& s, const json&, Ack ack) {
    if (auto u = user_of(s)) on_cluster_info(*u, std::move(ack));
  });
  for (const char* ev : {"typing", "stop typing"}) {
    nsp.on_event(ev, [this, ev](transport::Socket& s, const json& args, Ack) {
      if (auto u = user_of(s)) on_typing(*u, ev, args);
    });
  }
  nsp.on_any_event([this](transport::Socket& s, const std::string& event, const json&, Ack ack) {
    auto u = user_of(s);
    if (!u) return;
    // An unknown event costs a token like any other request.
    if (!admit(*u, event.c_str(), ack, false)) return;
    fail(*u, event.c_str(), ack, ChatError{"UNKNOWN_EVENT", "unknown event \"" + event + "\""});
  });
}

void ChatService::on_connection(const transport::SocketPtr& socket, const json& auth) {
  auto& ws = *states_[socket->worker()];
  auto user = std::make_shared<LocalUser>(socket);
  user->user_id = socket->id();
  if (options_.verifier)
    user->identity = std::static_pointer_cast<const auth::Identity>(socket->data());
  ws.users[socket.get()] = user;
  if (!socket->pid().empty()) {
    std::lock_guard lk(pids_mu_);
    local_pids_.insert(socket->pid());
  }
  std::weak_ptr<LocalUser> weak = user;
  socket->on_disconnect([this, weak](const std::string& reason) {
    auto u = weak.lock();
    if (!u) return;
    spdlog::debug("socket {} disconnected: {}", u->user_id, reason);
    // Deferred: a disconnect can fire while a delivery walks the member lists.
    boost::asio::post(workers_.at(u->socket->worker()),
                      [this, u, reason] { on_disconnect(*u, reason); });
  });
  if (socket->recovered()) restore(*user, auth);
}

void ChatService::on_disconnect(LocalUser& u, const std::string& reason) {
  auto& ws = *states_[u.socket->worker()];
  if (!u.socket->pid().empty()) {
    {
      std::lock_guard lk(pids_mu_);
      local_pids_.erase(u.socket->pid());
    }
    // Left on purpose: nothing to recover. Otherwise the record stays for
    // the recovery window (the client may come back to any replica).
    if (recovery_ && reason == "client namespace disconnect")
      bus_.publish(make_envelope(kSessionsRoom, kSessionEndEvent, json{{"pid", u.socket->pid()}}),
                   {});
  }
  if (u.logged_in) {
    const auto rooms = u.rooms;
    for (const auto& room : rooms) leave_local(u, room);
    // A replica that shuts down closes its sockets so that their clients
    // reconnect elsewhere and are recovered there: they have not left. Its
    // goodbye removes its presence; users already back elsewhere stay listed.
    // A connection that dropped (not on purpose, not a ping timeout, which
    // already took pingInterval + pingTimeout) may come back within moments
    // and be recovered, here or elsewhere: its departure waits for the
    // grace, so a recovery is no "user left" / back pair.
    const bool may_return = recovery_ && options_.leave_grace.count() > 0 &&
                            !u.socket->pid().empty() && reason != "client namespace disconnect" &&
                            reason != "ping timeout";
    if (recovery_ && reason == "server shutting down") {
      // Gone with the replica's goodbye (see above).
    } else if (may_return) {
      leaves_held_.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard lk(leaves_mu_);
      leaves_.push_back(PendingLeave{now_ms() + options_.leave_grace.count(), u.socket->pid(),
                                     u.user_id, u.username, rooms, subject_of(u)});
    } else {
      depart(u.user_id, u.username, subject_of(u), rooms);
    }
    u.logged_in = false;
    --ws.logged_in;
  }
  ws.users.erase(u.socket.get());  // may free u: nothing after this line
}

// ------------------------------------------------------------------ helpers

void ChatService::depart(const std::string& user_id, const std::string& username,
                         const std::string& sub, const std::set<std::string>& rooms) {
  {
    auto lk = presence_.lock();
    publish_presence(presence_.logout(user_id));
  }
  const auto num = presence_.num_users();
  for (const auto& room : rooms)
    bus_.publish(
        make_envelope(room, "user left",
                      membership_json(user_id, username, num, room, options_.replica_id, sub),
                      user_id),
        {});
}

void ChatService::settle_leaves(bool all) {
  std::vector<PendingLeave> due;
  {
    std::lock_guard lk(leaves_mu_);
    const auto now = all ? std::numeric_limits<std::int64_t>::max() : now_ms();
    auto keep = std::partition(leaves_.begin(), leaves_.end(),
                               [now](const PendingLeave& l) { return l.due_ms > now; });
    due.assign(std::make_move_iterator(keep), std::make_move_iterator(leaves_.end()));
    leaves_.erase(keep, leaves_.end());
  }
  for (const auto& l : due) {
    bool here;
    {
      std::lock_guard lk(pids_mu_);
      here = local_pids_.count(l.pid) > 0;
    }
    if (here) {
      // Recovered on this replica: the same entry is logged in again.
      leaves_avoided_.fetch_add(1, std::memory_order_relaxed);
    } else if (presence_.listed_elsewhere(l.user_id)) {
      // Recovered on another replica, which lists it now: drop our stale
      // entry without telling the rooms it left.
      leaves_avoided_.fetch_add(1, std::memory_order_relaxed);
      auto lk = presence_.lock();
      publish_presence(presence_.logout(l.user_id));
    } else {
      depart(l.user_id, l.username, l.sub, l.rooms);
    }
  }
}

void ChatService::reply(const Ack& ack, json obj) {
  if (ack) ack(json::array({std::move(obj)}));
}

void ChatService::fail(LocalUser& u, const char* event, const Ack& ack, const ChatError& err) {
  states_[u.socket->worker()]->counters.errors_total.fetch_add(1, std::memory_order_relaxed);
  if (ack) {
    reply(ack, json{{"ok", false}, {"error", error_obj(err)}});
  } else {
    u.socket->emit(
        "chat error",
        json::array({json{{"code", err.code}, {"message", err.message}, {"event", event}}}));
  }
}

bool ChatService::admit(LocalUser& u, const char* event, const Ack& ack, bool need_login) {
  // The rate budget belongs to the Engine.IO session: a namespace reconnect
  // does not refill it.
  if (!u.socket->take_tokens(1.0)) {
    states_[u.socket->worker()]->counters.rate_limited_total.fetch_add(1,
                                                                       std::memory_order_relaxed);
    fail(u, event, ack, ChatError{"RATE_LIMITED", "too many requests: slow down"});
    return false;
  }
  if (!ip_limiter_.allow(u.socket->handshake().remote_address)) {
    ip_refusals_.fetch_add(1, std::memory_order_relaxed);
    fail(u, event, ack,
         ChatError{"RATE_LIMITED", "too many requests from your address: slow down"});
    return false;
  }
  if (need_login && !u.logged_in) {
    fail(u, event, ack, ChatError{"NOT_LOGGED_IN", "send \"add user\" first"});
    return false;
  }
  return true;
}

void ChatService::publish_presence(const json& delta) {
  bus_.publish(make_envelope("", kDelta, delta), {});
}

void ChatService::publish_room_event(LocalUser& u, const std::string& room, const char* event,
                                     json payload, bus::Bus::ConfirmHandler confirm) {
  bus_.publish(make_envelope(room, event, std::move(payload), u.socket->id()), std::move(confirm));
}

json ChatService::login_info(const LocalUser& u, const std::string& room) {
  json info{{"numUsers", presence_.num_users()},
            {"username", u.username},
            {"replica", options_.replica_id},
            {"room", room},
            {"userId", u.user_id}};
  add_subject(u, info);
  return info;
}

json ChatService::membership_payload(const LocalUser& u, const std::string& room) {
  auto payload =
      membership_json(u.user_id, u.username, presence_.num_users(), room, options_.replica_id);
  add_subject(u, payload);
  return payload;
}

json ChatService::membership_json(const std::string& user_id, const std::string& username,
                                  std::size_t num_users, const std::string& room,
                                  const std::string& replica, const std::string& sub) {
  json j{{"username", username}, {"userId", user_id},  {"numUsers", num_users},
         {"room", room},         {"replica", replica}, {"ts", now_ms()}};
  if (!sub.empty()) j["sub"] = sub;
  return j;
}

void ChatService::join_local(LocalUser& u, const std::string& room) {
  if (!u.rooms.insert(room).second) return;
  rooms_.join(u, *u.socket, room);
  if (admin_.room) admin_.room(*u.socket, room, true);
}

void ChatService::note_joined(LocalUser& u, const std::string& room, const Synced& synced) {
  if (auto it = synced.find(bus::partition_of(room, parts_)); it != synced.end())
    u.joined_at.emplace_back(room, it->second->position);
}

void ChatService::leave_local(LocalUser& u, const std::string& room) {
  if (u.rooms.erase(room) == 0) return;
  std::erase_if(u.joined_at, [&](const auto& j) { return j.first == room; });
  rooms_.leave(u, *u.socket, room);
  if (admin_.room) admin_.room(*u.socket, room, false);
}

json ChatService::admin_data(transport::Socket& socket) {
  json d = json::object();
  auto u = user_of(socket);
  if (!u || !u->logged_in) return d;
  d["username"] = u->username;
  d["userId"] = u->user_id;
  if (const auto& sub = subject_of(*u); !sub.empty()) d["sub"] = sub;
  return d;
}

void ChatService::admin_join(transport::Socket& socket, const std::string& room) {
  if (auto u = user_of(socket)) on_join_room(*u, json::array({room}), {});
}

void ChatService::admin_leave(transport::Socket& socket, const std::string& room) {
  if (auto u = user_of(socket)) on_leave_room(*u, json::array({room}), {});
}

// ------------------------------------------------------------------ events

void ChatService::on_add_user(LocalUser& u, const json& args, Ack ack) {
  if (!admit(u, "add user", ack, false)) return;
  // With --auth jwt the name is the token's, whatever the client asks for:
  // nobody speaks under a name their token does not give.
  std::optional<std::string> requested;
  if (u.identity)
    requested = trim(u.identity->name);
  else if (!args.empty() && args[0].is_string())
    requested = trim(args[0].get_ref<const std::string&>());
  if (u.logged_in) {
    // The same name again is what a client that logs in on every connect
    // sends after a recovery: answered like the first time, nothing changes.
    if (requested && *requested == u.username) {
      const auto& room = options_.limits.default_room;
      json info = login_info(u, room);
      info["ok"] = true;
      if (options_.history > 0 && u.rooms.count(room)) info["history"] = history_json(room);
      return reply(ack, std::move(info));
    }
    return fail(u, "add user", ack,
                ChatError{"ALREADY_LOGGED_IN", "already logged in as " + u.username});
  }
  if (!requested)
    return fail(u, "add user", ack,
                ChatError{"BAD_REQUEST", "\"add user\" takes the user name (a string)"});
  auto name = std::move(*requested);
  if (auto err = check_name(name, options_.limits)) {
    if (u.identity) err->message = "the token's name claim: " + err->message;
    return fail(u, "add user", ack, *err);
  }
  // With history partitions the login waits until the default room's
  // partition is read up to the present here (its history, and live traffic).
  when_read(
      u, {options_.limits.default_room},
      [this, name, ack](LocalUser& v, const Synced& synced) mutable {
        login(v, std::move(name), std::move(ack), synced);
      },
      [this, ack](LocalUser& v) {
        fail(v, "add user", ack,
             ChatError{"UNAVAILABLE", "the room's history could not be read; try again"});
      });
}

void ChatService::login(LocalUser& u, std::string name, Ack ack, const Synced& synced) {
  if (u.logged_in)  // two logins raced: the first one counts
    return fail(u, "add user", ack,
                ChatError{"ALREADY_LOGGED_IN", "already logged in as " + u.username});
  const auto& room = options_.limits.default_room;
  u.username = std::move(name);
  u.logged_in = true;
  ++states_[u.socket->worker()]->logged_in;
  {
    auto lk = presence_.lock();
    publish_presence(presence_.login(u.user_id, u.username, subject_of(u)));
    publish_presence(presence_.join(u.user_id, room));
  }
  join_local(u, room);
  note_joined(u, room, synced);
  json info = login_info(u, room);
  // With recovery, the login event carries the current position as its last
  // argument: a client that has received no message yet can recover too.
  std::string resume;
  if (recovery_ && parts_ == 1) {
    if (const auto newest = history_.newest(); newest >= 0) resume = std::to_string(newest);
  } else if (recovery_) {
    if (auto it = synced.find(bus::partition_of(room, parts_)); it != synced.end())
      resume = it->second->cut;
  }
  u.socket->emit("login", resume.empty() ? json::array({info}) : json::array({info, resume}));
  publish_room_event(u, room, "user joined", membership_payload(u, room));
  info["ok"] = true;
  if (options_.history > 0) info["history"] = history_json(room);
  reply(ack, std::move(info));
  publish_session(u);
  if (admin_.data) admin_.data(*u.socket);
  spdlog::debug("user {} logged in as \"{}\"", u.user_id, u.username);
}

void ChatService::on_new_message(LocalUser& u, const json& args, Ack ack) {
  if (!admit(u, "new message", ack)) return;
  std::string room = options_.limits.default_room;
  const json* text = nullptr;
  if (!args.empty() && args[0].is_string()) {
    text = &args[0];
  } else if (!args.empty() && args[0].is_object()) {
    const auto& o = args[0];
    if (auto r = o.find("room"); r != o.end()) {
      if (!r->is_string())
        return fail(u, "new message", ack, ChatError{"BAD_REQUEST", "room must be a string"});
      room = r->get<std::string>();
    }
    if (auto m = o.find("message"); m != o.end() && m->is_string()) text = &*m;
  }
  if (!text)
    return fail(u, "new message", ack, ChatError{"INVALID_MESSAGE", "message must be a string"});
  const auto& message = text->get_ref<const std::string&>();
  if (auto err = check_message(message, options_.limits)) return fail(u, "new message", ack, *err);
  if (!u.rooms.count(room))
    return fail(u, "new message", ack, ChatError{"NOT_IN_ROOM", "not a member of " + room});
  if (!may_post(u, room))
    return fail(u, "new message", ack,
                ChatError{"FORBIDDEN", "your token does not allow posting in " + room});
  if (!room_limiter_.allow(room)) {
    room_refusals_.fetch_add(1, std::memory_order_relaxed);
    return fail(u, "new message", ack,
                ChatError{"RATE_LIMITED", "too many messages in " + room + ": slow down"});
  }

  auto& counters = states_[u.socket->worker()]->counters;
  counters.messages_in_total.fetch_add(1, std::memory_order_relaxed);
  auto env = make_envelope(room, "new message", json{}, u.socket->id());
  auto& e = *env;  // filled in before it is shared
  e.payload = json{{"id", e.id},
                   {"username", u.username},
                   {"userId", u.user_id},
                   {"message", message},
                   {"room", room},
                   {"ts", e.ts},
                   {"replica", options_.replica_id}};
  add_subject(u, e.payload);
  json ok{
      {"ok", true}, {"id", e.id}, {"ts", e.ts}, {"room", room}, {"replica", options_.replica_id}};
  std::weak_ptr<transport::Socket> weak_socket = u.socket;
  bus_.publish(env, [this, ack = std::move(ack), ok = std::move(ok), weak_socket, &counters,
                     t0 = std::chrono::steady_clock::now()](bus::PublishStatus status) mutable {
    if (status == bus::PublishStatus::ok) {
      ack_latency_.observe_ms(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      counters.messages_acked_total.fetch_add(ack ? 1 : 0, std::memory_order_relaxed);
      reply(ack, std::move(ok));
      return;
    }
    counters.messages_failed_total.fetch_add(1, std::memory_order_relaxed);
    const ChatError err = publish_error(status);
    if (ack) return reply(ack, json{{"ok", false}, {"error", error_obj(err)}});
    auto s = weak_socket.lock();
    if (!s) return;
    boost::asio::post(workers_.at(s->worker()), [s, err] {
      s->emit("chat error",
              json::array(
                  {json{{"code", err.code}, {"message", err.message}, {"event", "new message"}}}));
    });
  });
}

void ChatService::on_typing(LocalUser& u, const std::string& event, const json& args) {
  if (!admit(u, event.c_str(), {})) return;
  std::string room = options_.limits.default_room;
  if (!args.empty() && args[0].is_object()) {
    if (auto r = args[0].find("room"); r != args[0].end() && r->is_string())
      room = r->get<std::string>();
  }
  if (!u.rooms.count(room))
    return fail(u, event.c_str(), {}, ChatError{"NOT_IN_ROOM", "not a member of " + room});
  if (!may_post(u, room))
    return fail(u, event.c_str(), {},
                ChatError{"FORBIDDEN", "your token does not allow posting in " + room});
  json payload{{"username", u.username}, {"userId", u.user_id}, {"room", room}};
  add_subject(u, payload);
  publish_room_event(u, room, event.c_str(), std::move(payload));
}

void ChatService::on_join_room(LocalUser& u, const json& args, Ack ack) {
  if (!admit(u, "join room", ack)) return;
  if (args.empty() || !args[0].is_string())
    return fail(u, "join room", ack,
                ChatError{"BAD_REQUEST", "\"join room\" takes the room name (a string)"});
  const auto room = args[0].get<std::string>();
  if (auto err = check_room(room, options_.limits)) return fail(u, "join room", ack, *err);
  if (!may_join(u, room))
    return fail(u, "join room", ack,
                ChatError{"FORBIDDEN", "your token does not allow joining " + room});
  if (u.rooms.count(room)) return join_room(u, room, std::move(ack), {});
  // With history partitions the join is answered once the room's partition
  // is read up to the present here: its history, and every message after.
  when_read(
      u, {room},
      [this, room, ack](LocalUser& v, const Synced& synced) mutable {
        join_room(v, room, std::move(ack), synced);
      },
      [this, ack](LocalUser& v) {
        fail(v, "join room", ack,
             ChatError{"UNAVAILABLE", "the room's history could not be read; try again"});
      });
}

void ChatService::join_room(LocalUser& u, const std::string& room, Ack ack, const Synced& synced) {
  if (!u.rooms.count(room)) {
    if (u.rooms.size() >= options_.limits.max_rooms_per_user)
      return fail(u, "join room", ack,
                  ChatError{"TOO_MANY_ROOMS",
                            "a user may be in at most " +
                                std::to_string(options_.limits.max_rooms_per_user) + " rooms"});
    {
      auto lk = presence_.lock();
      publish_presence(presence_.join(u.user_id, room));
    }
    join_local(u, room);
    note_joined(u, room, synced);
    publish_room_event(u, room, "user joined", membership_payload(u, room));
  }
  json users = json::array();
  for (const auto& x : presence_.room_users(room, options_.limits.max_list_users))
    users.push_back(user_json(x));
  json res{{"ok", true}, {"room", room}, {"users", std::move(users)}};
  if (options_.history > 0) res["history"] = history_json(room);
  reply(ack, std::move(res));
  publish_session(u);
}

void ChatService::on_leave_room(LocalUser& u, const json& args, Ack ack) {
  if (!admit(u, "leave room", ack)) return;
  if (args.empty() || !args[0].is_string())
    return fail(u, "leave room", ack,
                ChatError{"BAD_REQUEST", "\"leave room\" takes the room name (a string)"});
  const auto room = args[0].get<std::string>();
  if (!u.rooms.count(room))
    return fail(u, "leave room", ack, ChatError{"NOT_IN_ROOM", "not a member of " + room});
  leave_local(u, room);
  {
    auto lk = presence_.lock();
    publish_presence(presence_.leave(u.user_id, room));
  }
  publish_room_event(u, room, "user left", membership_payload(u, room));
  reply(ack, json{{"ok", true}, {"room", room}});
  publish_session(u);
}

void ChatService::on_list_rooms(LocalUser& u, Ack ack) {
  if (!admit(u, "list rooms", ack, false)) return;
  // The largest rooms first, at most max_list_rooms of them; total says how
  // many there are.
  auto all = presence_.rooms();
  const auto total = all.size();
  const auto n = std::min(all.size(), options_.limits.max_list_rooms);
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                    [](const auto& a, const auto& b) {
                      return a.second != b.second ? a.second > b.second : a.first < b.first;
                    });
  json rooms = json::array();
  for (std::size_t i = 0; i < n; ++i)
    rooms.push_back(json{{"name", all[i].first}, {"members", all[i].second}});
  reply(ack, json{{"ok", true}, {"rooms", std::move(rooms)}, {"total", total}});
}

void ChatService::on_list_users(LocalUser& u, const json& args, Ack ack) {
  if (!admit(u, "list users", ack, false)) return;
  std::string room = options_.limits.default_room;
  if (!args.empty() && args[0].is_string()) room = args[0].get<std::string>();
  if (auto err = check_room(room, options_.limits)) return fail(u, "list users", ack, *err);
  json users = json::array();
  for (const auto& x : presence_.room_users(room, options_.limits.max_list_users))
    users.push_back(user_json(x));
  reply(ack, json{{"ok", true},
                  {"room", room},
                  {"users", std::move(users)},
                  {"count", presence_.room_count(room)}});
}

void ChatService::on_cluster_info(LocalUser& u, Ack ack) {
  if (!admit(u, "cluster info", ack, false)) return;
  json replicas = json::array();
  for (const auto& r : presence_.replicas())
    replicas.push_back(json{{"id", r.replica},
                            {"users", r.users},
                            {"connections", r.connections},
                            {"ageMs", r.age_ms},
                            {"self", r.self}});
  reply(ack, json{{"ok", true},
                  {"replica", options_.replica_id},
                  {"replicas", std::move(replicas)},
                  {"numUsers", presence_.num_users()}});
}

// ------------------------------------------------------------------ stats

ChatStats ChatService::stats() {
  ChatStats s;
  for (const auto& ws : states_) {
    const auto& c = ws->counters;
#define CHAT_SUM(field, name, type, help) s.field += c.field.load(std::memory_order_relaxed);
    CHAT_WORKER_COUNTERS(CHAT_SUM)
#undef CHAT_SUM
  }
  for (std::size_t k = 0; k < kInboundKinds; ++k)
    s.bad_payloads[k] = inbound_.bad[k].load(std::memory_order_relaxed);
  s.exceptions_total = workers_.exceptions() + inbound_errors_.count();
  s.rate_limited_ip_total = ip_refusals_.load(std::memory_order_relaxed);
  s.rate_limited_room_total = room_refusals_.load(std::memory_order_relaxed);
  s.auth_refused_total = auth_refused_.load(std::memory_order_relaxed);
  s.auth_expired_total = auth_expired_.load(std::memory_order_relaxed);
  s.forbidden_total = forbidden_.load(std::memory_order_relaxed);
  s.api_messages_total = api_messages_.load(std::memory_order_relaxed);
  s.api_duplicates_total = api_duplicates_.load(std::memory_order_relaxed);
  s.delivery_latency = delivery_latency_.snapshot();
  s.ack_latency = ack_latency_.snapshot();
  s.rooms_local = rooms_.size();
  s.delivery_posts_total = delivery_posts_.load(std::memory_order_relaxed);
  const auto reps = presence_.replicas();
  s.replicas = reps.size();
  for (const auto& r : reps)
    if (r.self) s.users_local = r.users;
  s.users_cluster = presence_.num_users();
  s.history_rooms = history_.rooms();
  s.history_messages = history_.messages();
  s.sessions_known = sessions_.size();
  s.recoveries_total = recoveries_.load(std::memory_order_relaxed);
  s.recoveries_refused_total = recoveries_refused_.load(std::memory_order_relaxed);
  s.leaves_held_total = leaves_held_.load(std::memory_order_relaxed);
  s.leaves_avoided_total = leaves_avoided_.load(std::memory_order_relaxed);
  s.recovered_messages_total = recovered_messages_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace chat::app
