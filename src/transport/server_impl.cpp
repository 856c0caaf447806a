// ServerImpl; see server_impl.hpp.
#include "transport/server_impl.hpp"

#include "transport/engine_session.hpp"
#include "transport/heartbeats.hpp"
#include "transport/ids.hpp"
#include "transport/listener.hpp"
#include "transport/sio_socket.hpp"
#include "transport/ws_connection.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <random>

namespace chat::transport {

std::unique_ptr<Server> Server::create(runtime::Workers& workers, Options options) {
  return std::make_unique<ServerImpl>(workers, std::move(options));
}

AuthResult NamespaceImpl::authorize(const Handshake& h, const nlohmann::json& auth) const {
  if (server_.over_memory_budget()) {
    server_.count_memory_connect_refusal();
    return std::optional<nlohmann::json>(
        nlohmann::json{{"message", "server over its memory budget: try again later"},
                       {"data", {{"code", "OVER_MEMORY_BUDGET"}}}});
  }
  AuthResult accepted;
  for (const auto& hook : hooks_) {
    auto r = hook(h, auth);
    if (r.refusal) return r;
    if (r.data) accepted.data = std::move(r.data);
  }
  return accepted;
}

std::optional<std::string> NamespaceImpl::recover(const Handshake& h,
                                                  const nlohmann::json& auth) const {
  if (!recover_ || !auth.is_object()) return std::nullopt;
  const auto pid = auth.find("pid");
  const auto offset = auth.find("offset");
  if (pid == auth.end() || !pid->is_string() || offset == auth.end() || !offset->is_string())
    return std::nullopt;
  const auto& p = pid->get_ref<const std::string&>();
  const auto& o = offset->get_ref<const std::string&>();
  // Ids are 20 characters and offsets decimal: anything longer is not ours.
  if (p.empty() || p.size() > 64 || o.empty() || o.size() > 32) return std::nullopt;
  return recover_(p, o, h);
}

void NamespaceImpl::connected(const SocketPtr& socket, const nlohmann::json& auth) const {
  if (auto session = static_cast<SioSocket&>(*socket).session())
    server_.session_connected(session->sid());
  if (auto* o = server_.observer()) o->connected(socket);
  if (on_connection_) on_connection_(socket, auth);
}

SocketObserver* NamespaceImpl::observer() const {
  return server_.observer();
}

bool NamespaceImpl::dispatch(Socket& socket, const std::string& event, const nlohmann::json& args,
                             Ack ack) const {
  if (auto it = events_.find(event); it != events_.end()) {
    it->second(socket, args, std::move(ack));
    return true;
  }
  if (!any_event_) return false;
  any_event_(socket, event, args, std::move(ack));
  return true;
}

ServerImpl::ServerImpl(runtime::Workers& workers, Options options)
    : workers_(workers),
      options_(std::move(options)),
      trusted_(TrustedProxies::parse(options_.trusted_proxies)),
      stats_(new WorkerStats[workers.size()]) {
  namespaces_["/"] = std::make_unique<NamespaceImpl>(*this, "/");
  for (unsigned w = 0; w < workers.size(); ++w) {
    delayed_.push_back(
        std::make_unique<DelayedFlushes>(workers.at(w), options_.write_delay_min_rate));
    heartbeats_.push_back(
        std::make_unique<Heartbeats>(workers.at(w), options_.ping_interval, options_.ping_timeout));
  }
}

ServerImpl::~ServerImpl() = default;

Namespace& ServerImpl::of(const std::string& name) {
  auto& slot = namespaces_[name];
  if (!slot) slot = std::make_unique<NamespaceImpl>(*this, name);
  return *slot;
}

NamespaceImpl* ServerImpl::find_namespace(const std::string& name) {
  auto it = namespaces_.find(name);
  return it == namespaces_.end() ? nullptr : it->second.get();
}

std::string ServerImpl::new_id() {
  thread_local RandomPool pool;
  return random_id(pool);
}

std::string ServerImpl::new_sid() {
  thread_local RandomPool pool;  // not the socket id pool: socket ids are public
  return random_id(pool);
}

// ------------------------------------------------------------------ per-IP bounds

ServerImpl::IpShard& ServerImpl::ip_shard(const std::string& ip) {
  return ip_shards_[std::hash<std::string>{}(ip) % ip_shards_.size()];
}

template <class F>
auto ServerImpl::with_ip(const std::string& ip, F fn) {
  auto& shard = ip_shard(ip);
  std::lock_guard lk(shard.mu);
  auto it = shard.counts.try_emplace(ip).first;
  auto result = fn(it->second);
  if (it->second.sessions == 0 && it->second.pending == 0 && it->second.http == 0)
    shard.counts.erase(it);
  return result;
}

ServerImpl::Admission ServerImpl::admit_session(const std::string& ip) {
  const auto& o = options_;
  if (over_memory_budget()) return Admission::memory;
  if (o.max_connections > 0 && session_count_.load(std::memory_order_relaxed) >= o.max_connections)
    return Admission::cap;
  return with_ip(ip, [&](const IpCounts& c) {
    if (o.max_sessions_per_ip > 0 && c.sessions >= o.max_sessions_per_ip)
      return Admission::ip_sessions;
    if (o.max_pending_per_ip > 0 && c.pending >= o.max_pending_per_ip) return Admission::ip_pending;
    return Admission::ok;
  });
}

const char* ServerImpl::refusal_message(Admission a) {
  switch (a) {
    case Admission::ip_sessions:
      return "Too many sessions from this address";
    case Admission::ip_pending:
      return "Too many sessions from this address waiting for their Socket.IO CONNECT";
    case Admission::cap:
      return "Server at its session limit";
    case Admission::memory:
      return "Server over its memory budget";
    case Admission::ok:
      break;
  }
  return "ok";
}

void ServerImpl::count_refusal(unsigned worker, Admission a) {
  auto& s = stats_[worker];
  switch (a) {
    case Admission::ip_sessions:
      return WorkerStats::add(s.sessions_refused_ip_total, 1);
    case Admission::ip_pending:
      return WorkerStats::add(s.sessions_refused_pending_total, 1);
    case Admission::cap:
      return WorkerStats::add(s.sessions_refused_cap_total, 1);
    case Admission::memory:
      return WorkerStats::add(s.sessions_refused_memory_total, 1);
    case Admission::ok:
      return;
  }
}

bool ServerImpl::acquire_http_slot(const std::string& key) {
  const auto cap = options_.max_http_connections_per_ip;
  return with_ip(key, [&](IpCounts& c) {
    if (cap > 0 && c.http >= cap) return false;
    ++c.http;
    return true;
  });
}

void ServerImpl::release_http_slot(const std::string& key) {
  with_ip(key, [](IpCounts& c) {
    if (c.http > 0) --c.http;
    return 0;
  });
}

void ServerImpl::session_connected(const std::string& sid) {
  std::string ip;
  {
    auto& shard = shard_for(sid);
    std::lock_guard lk(shard.mu);
    auto it = shard.sessions.find(sid);
    if (it == shard.sessions.end() || !it->second.pending) return;
    it->second.pending = false;
    ip = it->second.session->handshake().remote_address;
  }
  with_ip(ip, [](IpCounts& c) {
    if (c.pending > 0) --c.pending;
    return 0;
  });
}

// ------------------------------------------------------------------ memory budget

namespace {
std::size_t resident_bytes() {
  // /proc/self/statm: two numbers; a few microseconds, done a few times a second.
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}
}  // namespace

void ServerImpl::sample_memory() {
  const auto budget = options_.memory_budget_bytes;
  auto rss = resident_bytes();
  const auto now = std::chrono::steady_clock::now();
  if (rss > budget && now - last_trim_ > std::chrono::seconds(1)) {
    // Hand freed heap back to the system before refusing work for it.
    last_trim_ = now;
    malloc_trim(0);
    rss = resident_bytes();
  }
  const bool over = rss > budget;
  if (over != over_budget_.load(std::memory_order_relaxed)) {
    over_budget_.store(over, std::memory_order_relaxed);
    if (over)
      spdlog::warn("resident memory {} MB over the budget of {} MB: refusing new sessions",
                   rss >> 20, budget >> 20);
    else
      spdlog::info("resident memory {} MB back under the budget of {} MB", rss >> 20, budget >> 20);
  }
  memory_timer_->expires_after(std::chrono::milliseconds(100));
  memory_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (!ec && !shutting_down_) sample_memory();
  });
}

ServerImpl::Shard& ServerImpl::shard_for(const std::string& sid) {
  return shards_[std::hash<std::string>{}(sid) % shards_.size()];
}

std::shared_ptr<EngineSession> ServerImpl::create_session(unsigned worker, bool websocket,
                                                          bool raw_echo, Handshake h) {
  auto sid = new_sid();
  const auto ip = h.remote_address;
  auto s = std::make_shared<EngineSession>(
      *this, worker, sid, websocket ? EngineSession::Kind::websocket : EngineSession::Kind::polling,
      raw_echo, std::move(h));
  auto& shard = shard_for(sid);
  {
    std::lock_guard lk(shard.mu);
    shard.sessions.emplace(sid, Entry{s, !raw_echo});
  }
  with_ip(ip, [&](IpCounts& c) {
    ++c.sessions;
    if (!raw_echo) ++c.pending;
    return 0;
  });
  session_count_.fetch_add(1);
  return s;
}

std::shared_ptr<EngineSession> ServerImpl::find_session(const std::string& sid) {
  auto& shard = shard_for(sid);
  std::lock_guard lk(shard.mu);
  auto it = shard.sessions.find(sid);
  return it == shard.sessions.end() ? nullptr : it->second.session;
}

void ServerImpl::remove_session(const std::string& sid) {
  auto& shard = shard_for(sid);
  std::shared_ptr<EngineSession> doomed;  // released outside the lock
  bool pending = false;
  {
    std::lock_guard lk(shard.mu);
    auto it = shard.sessions.find(sid);
    if (it == shard.sessions.end()) return;
    doomed = std::move(it->second.session);
    pending = it->second.pending;
    shard.sessions.erase(it);
  }
  with_ip(doomed->handshake().remote_address, [&](IpCounts& c) {
    if (c.sessions > 0) --c.sessions;
    if (pending && c.pending > 0) --c.pending;
    return 0;
  });
  if (session_count_.fetch_sub(1) == 1 && shutting_down_) finish_shutdown();
  // The session may be in its own close(): let it finish before it is freed.
  auto& ctx = workers_.at(doomed->worker());
  boost::asio::post(ctx, [doomed = std::move(doomed)] {});
}

std::uint16_t ServerImpl::listen(const std::string& host, std::uint16_t port) {
  listener_ = std::make_shared<Listener>(*this, false);
  const auto bound = listener_->open(host, port);
  if (options_.memory_budget_bytes > 0 && !memory_timer_) {
    memory_timer_ = std::make_unique<boost::asio::steady_timer>(workers_.at(0));
    boost::asio::post(workers_.at(0), [this] { sample_memory(); });
  }
  return bound;
}

std::uint16_t ServerImpl::listen_admin(const std::string& host, std::uint16_t port,
                                       HttpHandler handler) {
  admin_handler_ = std::move(handler);
  admin_listener_ = std::make_shared<Listener>(*this, true);
  return admin_listener_->open(host, port);
}

void ServerImpl::shutdown(std::function<void()> done) {
  shutting_down_ = true;
  if (listener_) listener_->close();
  if (admin_listener_) admin_listener_->close();
  if (memory_timer_) boost::asio::post(workers_.at(0), [this] { memory_timer_->cancel(); });
  {
    std::lock_guard lk(done_mu_);
    on_drained_ = std::move(done);
  }
  std::vector<std::shared_ptr<EngineSession>> all;
  for (auto& shard : shards_) {
    std::lock_guard lk(shard.mu);
    for (auto& [sid, e] : shard.sessions) all.push_back(e.session);
  }
  spdlog::info("closing {} sessions", all.size());
  if (all.empty() || session_count_.load() == 0) {
    finish_shutdown();
    return;
  }
  const auto window = options_.drain_jitter.count();
  std::uniform_int_distribution<std::int64_t> pick(0, window > 0 ? window : 0);
  std::minstd_rand spread{std::random_device{}()};  // spreading only: no secret here
  for (auto& s : all) {
    auto& ctx = workers_.at(s->worker());
    const auto delay = std::chrono::milliseconds(window > 0 ? pick(spread) : 0);
    if (delay.count() == 0) {
      boost::asio::post(ctx, [s] { s->shutdown("server shutting down"); });
      continue;
    }
    boost::asio::post(ctx, [s, delay, &ctx] {
      auto timer = std::make_shared<boost::asio::steady_timer>(ctx, delay);
      timer->async_wait(
          [s, timer](const boost::system::error_code&) { s->shutdown("server shutting down"); });
    });
  }
}

void ServerImpl::finish_shutdown() {
  auto timer = std::make_shared<boost::asio::steady_timer>(workers_.at(0));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  boost::asio::post(workers_.at(0), [this, timer, deadline] { drain_step(timer, deadline); });
}

void ServerImpl::drain_step(std::shared_ptr<boost::asio::steady_timer> timer,
                            std::chrono::steady_clock::time_point deadline) {
  // Poll the in-flight writes every 10 ms for at most one second: the last
  // responses are small, and a stuck client must not hold the shutdown.
  if (pending_io_.load(std::memory_order_relaxed) > 0 &&
      std::chrono::steady_clock::now() < deadline) {
    timer->expires_after(std::chrono::milliseconds(10));
    timer->async_wait(
        [this, timer, deadline](const boost::system::error_code&) { drain_step(timer, deadline); });
    return;
  }
  std::function<void()> done;
  {
    std::lock_guard lk(done_mu_);
    done = std::move(on_drained_);
    on_drained_ = nullptr;
  }
  if (done) done();
}

Stats ServerImpl::stats() const {
  Stats out;
  for (unsigned i = 0; i < workers_.size(); ++i) {
    const auto& s = stats_[i];
    const auto ld = [](const auto& a) { return a.load(std::memory_order_relaxed); };
#define CHAT_TRANSPORT_SUM_GAUGE(field, type, help) \
  out.field += static_cast<std::uint64_t>(ld(s.field));
#define CHAT_TRANSPORT_SUM(field, type, help) out.field += ld(s.field);
    CHAT_TRANSPORT_WORKER_GAUGES(CHAT_TRANSPORT_SUM_GAUGE)
    CHAT_TRANSPORT_WORKER_COUNTERS(CHAT_TRANSPORT_SUM)
#undef CHAT_TRANSPORT_SUM_GAUGE
#undef CHAT_TRANSPORT_SUM
  }
  out.connects_refused_memory_total = connects_refused_memory_.load(std::memory_order_relaxed);
  out.memory_over_budget = over_memory_budget() ? 1 : 0;
  return out;
}

}  // namespace chat::transport
