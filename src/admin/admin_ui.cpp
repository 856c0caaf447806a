// AdminUi; see admin_ui.hpp.
#include "admin/admin_ui.hpp"

#include "runtime/workers.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <optional>
#include <random>

namespace chat::admin {

using nlohmann::json;
using transport::Socket;
using transport::SocketPtr;

namespace {
constexpr const char* kStats = "admin.stats";
constexpr const char* kFeed = "admin.feed";
constexpr const char* kFetch = "admin.fetch";
constexpr const char* kSockets = "admin.sockets";
constexpr const char* kCommand = "admin.command";
constexpr const char* kSession = "admin.session";
// A replica not heard from for this long has no admin sockets that count.
constexpr std::int64_t kPeerTtlMs = 10000;
// How long an all_sockets waits for the replicas' answers.
constexpr std::int64_t kGatherMs = 1500;
constexpr std::size_t kMaxSessions = 10000;
// Sockets in one all_sockets, whatever the replicas send.
constexpr std::size_t kMaxGathered = 100000;

std::string random_hex(std::size_t bytes) {
  std::random_device rd;  // the kernel's random source
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) out += fmt::format("{:02x}", rd() & 0xff);
  return out;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

// Fields of bus payloads, which come from the broker: any type may be
// there. nullptr when the field is missing or of another type.
const std::string* str_field(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}
std::optional<std::int64_t> int_field(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<std::int64_t>();
}

const std::string& string_or_empty(const json& v) {
  static const std::string empty;
  return v.is_string() ? v.get_ref<const std::string&>() : empty;
}
}  // namespace

struct AdminUi::Login {
  std::string session;  // the new session id, sent as the `session` event
};

struct AdminUi::Gathering {
  std::uint64_t id = 0;
  std::weak_ptr<Socket> admin;
  std::size_t expected = 1;
  std::size_t answered = 0;
  json sockets = json::array();
  bool done = false;
  std::unique_ptr<boost::asio::steady_timer> timer;
};

AdminUi::AdminUi(runtime::Workers& workers, transport::Server& server, bus::Bus& bus,
                 AdminOptions options, ChatControl chat)
    : workers_(workers),
      server_(server),
      bus_(bus),
      options_(std::move(options)),
      chat_(std::move(chat)),
      started_ms_(now_ms()) {
  if (options_.auth)
    checker_ = std::make_unique<PasswordChecker>(options_.user, options_.password_hash);
  for (unsigned w = 0; w < workers_.size(); ++w) states_.push_back(std::make_unique<WorkerState>());
}

AdminUi::~AdminUi() {
  checker_.reset();  // joins its thread first: a check in flight still finds the rest here
}

std::int64_t AdminUi::now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string AdminUi::iso_time(std::int64_t ms) {
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

void AdminUi::start() {
  auto& nsp = server_.of(options_.nsp);
  if (options_.auth) {
    nsp.use_async([this](const transport::Handshake&, const json& auth,
                         std::function<void(transport::AuthResult)> done) {
      authenticate(auth, std::move(done));
    });
  }
  nsp.on_connection([this](SocketPtr socket, const json&) { on_admin_connection(socket); });
  if (!options_.readonly) register_commands(nsp);
  // Anything else an admin socket sends is ignored, as in Node.
  nsp.on_any_event([](Socket&, const std::string&, const json&, transport::Ack) {});
  stats_timer_ = std::make_unique<boost::asio::steady_timer>(workers_.at(0));
  feed_timer_ = std::make_unique<boost::asio::steady_timer>(workers_.at(0));
  // The first stats soon after start, so the UI lists this replica at once.
  boost::asio::post(workers_.at(0), [this] { tick(); });
  flush_feed();
}

void AdminUi::stop() {
  stopping_ = true;
  boost::asio::post(workers_.at(0), [self = shared_from_this()] {
    if (self->stats_timer_) self->stats_timer_->cancel();
    if (self->feed_timer_) self->feed_timer_->cancel();
  });
}

AdminUi::Stats AdminUi::stats() const {
  Stats s;
  s.admin_sockets = static_cast<std::uint64_t>(std::max<std::int64_t>(0, local_admins_.load()));
  s.logins_refused = logins_refused_.load();
  s.feed_dropped = feed_dropped_.load();
  s.commands = commands_.load();
  s.bad_envelopes = bad_.load();
  return s;
}

// ------------------------------------------------------------------ login

void AdminUi::authenticate(const json& auth, std::function<void(transport::AuthResult)> done) {
  const auto refuse = [this](const char* message) {
    logins_refused_.fetch_add(1, std::memory_order_relaxed);
    return transport::AuthResult(std::optional<json>(json{{"message", message}}));
  };
  if (!auth.is_object()) return done(refuse("invalid credentials"));
  if (auto sid = auth.find("sessionId"); sid != auth.end() && sid->is_string()) {
    std::lock_guard lk(mu_);
    if (auto it = sessions_.find(sid->get<std::string>());
        it != sessions_.end() && it->second > now_ms())
      return done(transport::AuthResult{});
  }
  const auto user = auth.find("username");
  const auto password = auth.find("password");
  if (user == auth.end() || !user->is_string() || password == auth.end() ||
      !password->is_string() || password->get_ref<const std::string&>().size() > 1024)
    return done(refuse("invalid credentials"));
  checker_->check(user->get<std::string>(), password->get<std::string>(),
                  [this, done = std::move(done), refuse](PasswordChecker::Verdict v) {
                    using V = PasswordChecker::Verdict;
                    if (v == V::busy) return done(refuse("too many logins: try again later"));
                    if (v == V::bad) return done(refuse("invalid credentials"));
                    auto login = std::make_shared<Login>();
                    login->session = random_hex(8);
                    const auto expires =
                        now_ms() + std::chrono::duration_cast<std::chrono::milliseconds>(
                                       options_.session_lifetime)
                                       .count();
                    publish(kSession, json{{"id", login->session}, {"expires", expires}});
                    done(transport::AuthResult::accept(std::move(login)));
                  });
}

// ------------------------------------------------------------------ the admin namespace

void AdminUi::on_admin_connection(const SocketPtr& socket) {
  // The observer saw it first (connected()); here it becomes an admin.
  auto& ws = *states_[socket->worker()];
  std::erase_if(ws.admins, [](const auto& w) { return w.expired(); });
  ws.admins.push_back(socket);
  local_admins_.fetch_add(1, std::memory_order_relaxed);
  watched_.store(true, std::memory_order_relaxed);
  socket->on_disconnect(
      [this](const std::string&) { local_admins_.fetch_sub(1, std::memory_order_relaxed); });
  if (const auto& d = socket->data()) {
    // Right after the CONNECT reply, so the UI's listeners are there to keep it.
    socket->emit("session", json::array({std::static_pointer_cast<const Login>(d)->session}));
  }
  json features = json::array();
  if (!options_.readonly)
    for (const char* f : {"EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"})
      features.push_back(f);
  features.push_back("AGGREGATED_EVENTS");
  if (options_.development) features.push_back("ALL_EVENTS");
  socket->emit("config", json::array({json{{"supportedFeatures", std::move(features)}}}));
  if (!options_.development) return;
  // all_sockets: this replica's and every other's, gathered into one list.
  auto g = std::make_shared<Gathering>();
  g->admin = socket;
  {
    std::lock_guard lk(mu_);
    g->id = seq_.fetch_add(1) + 1;
    const auto now = now_ms();
    g->expected = 1;
    for (const auto& [origin, p] : peers_)
      if (origin != options_.instance_id && now - p.seen_ms < kPeerTtlMs) ++g->expected;
    gatherings_[g->id] = g;
  }
  g->timer = std::make_unique<boost::asio::steady_timer>(workers_.at(socket->worker()));
  g->timer->expires_after(std::chrono::milliseconds(kGatherMs));
  g->timer->async_wait([self = shared_from_this(), g](const boost::system::error_code& ec) {
    if (!ec) self->finish_gathering(g);
  });
  publish(kFetch, json{{"target", options_.instance_id}, {"req", g->id}});
}

void AdminUi::register_commands(transport::Namespace& nsp) {
  for (const char* cmd : {"emit", "join", "leave", "_disconnect"}) {
    nsp.on_event(cmd,
                 [this, cmd](Socket&, const json& args, transport::Ack) { command(cmd, args); });
  }
}

void AdminUi::command(const std::string& cmd, const json& args) {
  // emit(nsp, filter, event, ...args), join/leave(nsp, room, filter?),
  // _disconnect(nsp, close, filter?); anything malformed is ignored.
  if (args.empty() || !args[0].is_string()) return;
  json c{{"cmd", cmd}, {"nsp", args[0]}};
  if (cmd == "emit") {
    if (args.size() < 3 || !args[2].is_string()) return;
    c["filter"] = string_or_empty(args[1]);
    c["event"] = args[2];
    json rest = json::array();
    for (std::size_t i = 3; i < args.size(); ++i) rest.push_back(args[i]);
    c["args"] = std::move(rest);
  } else if (cmd == "join" || cmd == "leave") {
    if (args.size() < 2 || !args[1].is_string() || args[1].get_ref<const std::string&>().empty())
      return;
    c["room"] = args[1];
    c["filter"] = args.size() > 2 ? string_or_empty(args[2]) : std::string();
  } else {
    c["close"] = args.size() > 1 && args[1].is_boolean() && args[1].get<bool>();
    c["filter"] = args.size() > 2 ? string_or_empty(args[2]) : std::string();
  }
  publish(kCommand, std::move(c));
}

bool AdminUi::apply_command(const json& c) {
  // Checked in full here, on the bus thread: the workers get plain values.
  const auto* cmd = str_field(c, "cmd");
  const auto* nsp = str_field(c, "nsp");
  if (!cmd || !nsp) return false;
  auto it = c.find("filter");
  if (it != c.end() && !it->is_string()) return false;
  const std::string filter = it != c.end() ? it->get<std::string>() : std::string();
  std::string room, event;
  json args = json::array();
  bool close = false;
  if (*cmd == "emit") {
    const auto* e = str_field(c, "event");
    auto a = c.find("args");
    if (!e || a == c.end() || !a->is_array()) return false;
    event = *e;
    args = *a;
  } else if (*cmd == "join" || *cmd == "leave") {
    const auto* r = str_field(c, "room");
    if (!r || r->empty()) return false;
    room = *r;
  } else if (*cmd == "_disconnect") {
    auto cl = c.find("close");
    if (cl == c.end() || !cl->is_boolean()) return false;
    close = cl->get<bool>();
  } else {
    return false;
  }
  auto shared_args = std::make_shared<const json>(std::move(args));
  for (unsigned w = 0; w < workers_.size(); ++w) {
    boost::asio::post(
        workers_.at(w), [this, w, cmd = *cmd, nsp = *nsp, filter, room, event, shared_args, close] {
          // The sockets first: acting on one may change the registry.
          std::vector<SocketPtr> targets;
          for (const auto& [ptr, entry] : states_[w]->sockets) {
            auto s = entry.socket.lock();
            if (!s || s->nsp() != nsp) continue;
            if (!filter.empty() &&
                std::find(entry.rooms.begin(), entry.rooms.end(), filter) == entry.rooms.end())
              continue;
            targets.push_back(std::move(s));
          }
          for (auto& s : targets) {
            commands_.fetch_add(1, std::memory_order_relaxed);
            if (cmd == "emit") {
              s->emit(event, *shared_args);
            } else if (cmd == "_disconnect") {
              s->disconnect(close);
            } else if (nsp == "/") {
              // Rooms are the chat's: joined and left as the user could.
              if (cmd == "join" && chat_.join) chat_.join(*s, room);
              if (cmd == "leave" && chat_.leave) chat_.leave(*s, room);
            }
          }
        });
  }
  return true;
}

// ------------------------------------------------------------------ the observer

json AdminUi::serialize(Socket& s, const Entry& entry) const {
  const auto& h = s.handshake();
  json data = json::object();
  if (s.nsp() == "/" && chat_.data) data = chat_.data(s);
  const std::time_t secs = static_cast<std::time_t>(h.issued_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char when[64];
  std::strftime(when, sizeof(when), "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)",
                &tm);
  return json{{"id", s.id()},
              {"clientId", s.client_id()},
              {"transport", s.transport_name()},
              {"nsp", s.nsp()},
              {"data", std::move(data)},
              // The server keeps no request headers or query (docs/transport.md):
              // the UI gets what a session knows.
              {"handshake",
               {{"address", h.remote_address},
                {"headers", json::object()},
                {"query", {{"EIO", "4"}, {"transport", h.transport}}},
                {"issued", h.issued_ms},
                {"secure", false},
                {"time", when},
                {"url", "/socket.io/?EIO=4&transport=" + h.transport},
                {"xdomain", false}}},
              {"rooms", entry.rooms}};
}

std::atomic<std::int64_t>* AdminUi::count_of(const std::string& nsp) {
  if (nsp == "/") return &count_root_;
  if (nsp == options_.nsp) return &count_admin_;
  return nullptr;
}

void AdminUi::connected(const SocketPtr& socket) {
  if (auto* n = count_of(socket->nsp())) n->fetch_add(1, std::memory_order_relaxed);
  // Every socket is known here (the commands find them), in either mode.
  auto& e = states_[socket->worker()]->sockets[socket.get()];
  e.socket = socket;
  e.rooms = {socket->id()};
  if (!options_.development || !watched()) return;
  const auto ts = iso_time(now_ms());
  // Its own room first: the UI counts room_joined only for sockets it knows
  // from socket_connected... which carries the room already. Node sends
  // room_joined first; the UI drops it and keeps the one in `rooms`.
  feed(json::array({"room_joined", socket->nsp(), socket->id(), socket->id(), ts}));
  feed(json::array({"socket_connected", serialize(*socket, e), ts}));
}

void AdminUi::disconnected(Socket& socket, const std::string& reason) {
  if (auto* n = count_of(socket.nsp())) n->fetch_sub(1, std::memory_order_relaxed);
  auto& sockets = states_[socket.worker()]->sockets;
  auto it = sockets.find(&socket);
  if (it == sockets.end()) return;
  auto rooms = std::move(it->second.rooms);
  sockets.erase(it);
  if (!options_.development || !watched()) return;
  const auto ts = iso_time(now_ms());
  feed(json::array({"socket_disconnected", socket.nsp(), socket.id(), reason, ts}));
  for (const auto& r : rooms) feed(json::array({"room_left", socket.nsp(), r, socket.id(), ts}));
}

void AdminUi::upgraded(Socket& socket) {
  if (!options_.development || !watched()) return;
  feed(json::array({"socket_updated",
                    json{{"id", socket.id()}, {"nsp", socket.nsp()}, {"transport", "websocket"}}}));
}

void AdminUi::on_room(Socket& socket, const std::string& room, bool joined) {
  auto& sockets = states_[socket.worker()]->sockets;
  auto it = sockets.find(&socket);
  if (it == sockets.end()) return;
  auto& rooms = it->second.rooms;
  const auto at = std::find(rooms.begin(), rooms.end(), room);
  if (joined == (at != rooms.end())) return;  // no change
  if (joined)
    rooms.push_back(room);
  else
    rooms.erase(at);
  if (!options_.development || !watched()) return;
  feed(json::array(
      {joined ? "room_joined" : "room_left", socket.nsp(), room, socket.id(), iso_time(now_ms())}));
}

void AdminUi::on_data(Socket& socket) {
  if (!options_.development || !watched() || !chat_.data) return;
  feed(json::array(
      {"socket_updated",
       json{{"id", socket.id()}, {"nsp", socket.nsp()}, {"data", chat_.data(socket)}}}));
}

namespace {
// Event arguments as the feed shows them: cut beyond max bytes, binary named.
json shown_args(std::string_view event, const json& args, std::size_t max) {
  json out = json::array({event});
  for (const auto& a : args) out.push_back(a.is_binary() ? json("<binary>") : a);
  auto text = out.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() <= max) return out;
  return json::array({event, fmt::format("<{} bytes, not shown>", text.size())});
}
}  // namespace

void AdminUi::event_received(Socket& socket, const std::string& event, const json& args) {
  if (socket.nsp() == options_.nsp) return;  // the UI's own traffic: no feedback loop
  feed(json::array({"event_received", socket.nsp(), socket.id(),
                    shown_args(event, args, options_.max_event_bytes), iso_time(now_ms())}));
}

void AdminUi::event_sent(Socket& socket, std::string_view event, const json& args) {
  if (socket.nsp() == options_.nsp) return;
  feed(json::array({"event_sent", socket.nsp(), socket.id(),
                    shown_args(event, args, options_.max_event_bytes), iso_time(now_ms())}));
}

// ------------------------------------------------------------------ feed and stats

void AdminUi::feed(json entry) {
  std::lock_guard lk(feed_mu_);
  if (feed_.size() >= options_.max_feed) {
    feed_dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  feed_.push_back(std::move(entry));
}

void AdminUi::flush_feed() {
  if (stopping_) return;
  std::vector<json> events;
  {
    std::lock_guard lk(feed_mu_);
    events.swap(feed_);
  }
  if (!events.empty()) publish(kFeed, json{{"events", std::move(events)}});
  feed_timer_->expires_after(options_.feed_interval);
  feed_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->flush_feed();
  });
}

json AdminUi::server_stats() {
  const auto st = server_.stats();
  const auto now = now_ms();
  const auto second = now / 1000 * 1000;
  json events = json::array();
  const auto add = [&](const char* type, std::uint64_t now_v, std::uint64_t then_v) {
    if (now_v > then_v)
      events.push_back(json{{"timestamp", second}, {"type", type}, {"count", now_v - then_v}});
  };
  transport::Stats last;
  {
    std::lock_guard lk(mu_);
    last = last_;
    last_ = st;
  }
  add("rawConnection", st.connections_total, last.connections_total);
  // Sessions closed since the last tick: opened minus the change in open ones.
  const auto opened = st.connections_total - last.connections_total;
  const auto open_now = static_cast<std::int64_t>(st.connections_open);
  const auto open_then = static_cast<std::int64_t>(last.connections_open);
  const auto closed = static_cast<std::int64_t>(opened) - (open_now - open_then);
  if (closed > 0)
    events.push_back(json{{"timestamp", second}, {"type", "rawDisconnection"}, {"count", closed}});
  add("packetsIn", st.packets_in_total, last.packets_in_total);
  add("packetsOut", st.packets_out_total, last.packets_out_total);
  add("bytesIn", st.bytes_in_total, last.bytes_in_total);
  add("bytesOut", st.bytes_out_total, last.bytes_out_total);
  json namespaces = json::array(
      {json{{"name", "/"}, {"socketsCount", std::max<std::int64_t>(0, count_root_.load())}},
       json{{"name", options_.nsp},
            {"socketsCount", std::max<std::int64_t>(0, count_admin_.load())}}});
  static const std::string host = host_name();
  return json{{"serverId", options_.server_id},
              {"hostname", host},
              {"pid", static_cast<std::int64_t>(getpid())},
              {"uptime", static_cast<double>(now - started_ms_) / 1000.0},
              {"clientsCount", st.connections_open},
              {"pollingClientsCount", st.polling_open},
              {"aggregatedEvents", std::move(events)},
              {"namespaces", std::move(namespaces)}};
}

void AdminUi::tick() {
  if (stopping_) return;
  {
    // Watched while some replica (this one included) has an admin socket.
    std::lock_guard lk(mu_);
    const auto now = now_ms();
    bool any = local_admins_.load() > 0;
    for (auto it = peers_.begin(); it != peers_.end();) {
      if (now - it->second.seen_ms > 3 * kPeerTtlMs) {
        it = peers_.erase(it);
        continue;
      }
      if (it->first != options_.instance_id && now - it->second.seen_ms < kPeerTtlMs &&
          it->second.admins > 0)
        any = true;
      ++it;
    }
    std::erase_if(sessions_, [now](const auto& s) { return s.second <= now; });
    watched_.store(any, std::memory_order_relaxed);
  }
  publish(kStats, json{{"stats", server_stats()}, {"admins", local_admins_.load()}});
  stats_timer_->expires_after(options_.stats_interval);
  stats_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->tick();
  });
}

void AdminUi::publish(std::string event, json payload) {
  auto e = std::make_shared<bus::Envelope>();
  e->origin = options_.instance_id;
  e->id = options_.instance_id + "-admin-" + std::to_string(seq_.fetch_add(1) + 1);
  e->event = std::move(event);
  e->payload = std::move(payload);
  e->ts = now_ms();
  bus_.publish(std::move(e), {});
}

void AdminUi::to_admins(std::string_view event, const json& args) {
  if (local_admins_.load(std::memory_order_relaxed) <= 0) return;
  auto packet = transport::encode_event(options_.nsp, event, args);
  for (unsigned w = 0; w < workers_.size(); ++w) {
    boost::asio::post(workers_.at(w), [this, w, packet] {
      auto& admins = states_[w]->admins;
      std::erase_if(admins, [](const auto& a) { return a.expired(); });
      for (const auto& a : admins)
        if (auto s = a.lock(); s && s->connected()) s->send_encoded(packet);
    });
  }
}

// ------------------------------------------------------------------ from the bus

void AdminUi::on_envelope(const bus::EnvelopePtr& e) {
  if (stopping_) return;
  if (!handle_envelope(*e)) bad_.fetch_add(1, std::memory_order_relaxed);
}

bool AdminUi::handle_envelope(const bus::Envelope& e) {
  const auto payload = bus::payload_json(e);
  if (!payload.is_object()) return false;
  if (e.event == kStats) {
    auto stats = payload.find("stats");
    const auto admins = int_field(payload, "admins");
    if (stats == payload.end() || !stats->is_object() || !admins) return false;
    {
      std::lock_guard lk(mu_);
      auto& p = peers_[e.origin];
      p.seen_ms = now_ms();
      p.admins = *admins;
      if (p.admins > 0 && e.origin != options_.instance_id)
        watched_.store(true, std::memory_order_relaxed);
    }
    to_admins("server_stats", json::array({*stats}));
    return true;
  }
  if (e.event == kFeed) {
    auto events = payload.find("events");
    if (events == payload.end() || !events->is_array()) return false;
    const bool ok = std::all_of(events->begin(), events->end(), [](const json& ev) {
      return ev.is_array() && !ev.empty() && ev[0].is_string();
    });
    if (local_admins_.load(std::memory_order_relaxed) <= 0) return ok;
    for (const auto& ev : *events) {
      if (!ev.is_array() || ev.empty() || !ev[0].is_string()) continue;
      json args = json::array();
      for (std::size_t i = 1; i < ev.size(); ++i) args.push_back(ev[i]);
      to_admins(ev[0].get_ref<const std::string&>(), args);
    }
    return ok;
  }
  if (e.event == kFetch) return answer_fetch(payload);
  if (e.event == kSockets) return on_sockets(payload);
  if (e.event == kCommand) return options_.readonly || apply_command(payload);
  if (e.event == kSession) {
    const auto* id = str_field(payload, "id");
    const auto expires = int_field(payload, "expires");
    if (!id || id->size() != 16 || !expires) return false;
    if (*expires <= now_ms()) return true;
    std::lock_guard lk(mu_);
    if (sessions_.size() >= kMaxSessions) sessions_.erase(sessions_.begin());
    sessions_[*id] = *expires;
    return true;
  }
  return false;  // an admin. event nobody sends
}

bool AdminUi::answer_fetch(const json& req) {
  const auto* target_p = str_field(req, "target");
  const auto id_p = int_field(req, "req");
  if (!target_p || target_p->empty() || !id_p) return false;
  if (!options_.development) return true;
  const auto target = *target_p;
  const auto id = *id_p;
  // Each worker serializes its own sockets; the last one publishes the answer.
  struct Answer {
    std::mutex mu;
    json sockets = json::array();
    unsigned left = 0;
  };
  auto a = std::make_shared<Answer>();
  a->left = workers_.size();
  for (unsigned w = 0; w < workers_.size(); ++w) {
    boost::asio::post(workers_.at(w), [this, w, a, target, id] {
      json mine = json::array();
      for (const auto& [ptr, entry] : states_[w]->sockets) {
        if (mine.size() >= options_.max_sockets) break;
        if (auto s = entry.socket.lock(); s && s->connected()) mine.push_back(serialize(*s, entry));
      }
      std::lock_guard lk(a->mu);
      for (auto& s : mine)
        if (a->sockets.size() < options_.max_sockets) a->sockets.push_back(std::move(s));
      if (--a->left == 0)
        publish(kSockets,
                json{{"target", target}, {"req", id}, {"sockets", std::move(a->sockets)}});
    });
  }
  return true;
}

bool AdminUi::on_sockets(const json& answer) {
  const auto* target = str_field(answer, "target");
  const auto req = int_field(answer, "req");
  auto sockets = answer.find("sockets");
  if (!target || !req || sockets == answer.end() || !sockets->is_array()) return false;
  if (*target != options_.instance_id) return true;
  std::shared_ptr<Gathering> g;
  {
    std::lock_guard lk(mu_);
    auto it = gatherings_.find(static_cast<std::uint64_t>(*req));
    if (it == gatherings_.end()) return true;
    g = it->second;
    for (const auto& s : *sockets)
      if (s.is_object() && g->sockets.size() < kMaxGathered) g->sockets.push_back(s);
    if (++g->answered < g->expected) return true;
  }
  auto admin = g->admin.lock();
  if (!admin) return true;
  boost::asio::post(workers_.at(admin->worker()),
                    [self = shared_from_this(), g] { self->finish_gathering(g); });
  return true;
}

void AdminUi::finish_gathering(const std::shared_ptr<Gathering>& g) {
  {
    std::lock_guard lk(mu_);
    if (g->done) return;
    g->done = true;
    gatherings_.erase(g->id);
  }
  if (g->timer) g->timer->cancel();
  if (auto admin = g->admin.lock(); admin && admin->connected()) {
    json sockets;
    {
      std::lock_guard lk(mu_);
      sockets = std::move(g->sockets);
    }
    admin->emit("all_sockets", json::array({std::move(sockets)}));
  }
}

}  // namespace chat::admin
