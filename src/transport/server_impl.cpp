// ServerImpl; see server_impl.hpp.
#include "transport/server_impl.hpp"

#include "transport/engine_session.hpp"
#include "transport/listener.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <random>

namespace chat::transport {

std::unique_ptr<Server> Server::create(core::Workers& workers, Options options) {
  return std::make_unique<ServerImpl>(workers, std::move(options));
}

std::optional<nlohmann::json> NamespaceImpl::authorize(const Handshake& h,
                                                       const nlohmann::json& auth) const {
  for (const auto& hook : hooks_)
    if (auto refusal = hook(h, auth)) return refusal;
  return std::nullopt;
}

void NamespaceImpl::connected(const SocketPtr& socket, const nlohmann::json& auth) const {
  if (on_connection_) on_connection_(socket, auth);
}

ServerImpl::ServerImpl(core::Workers& workers, Options options)
    : workers_(workers), options_(std::move(options)), stats_(new WorkerStats[workers.size()]) {
  namespaces_["/"] = std::make_unique<NamespaceImpl>("/");
}

ServerImpl::~ServerImpl() = default;

Namespace& ServerImpl::of(const std::string& name) {
  auto& slot = namespaces_[name];
  if (!slot) slot = std::make_unique<NamespaceImpl>(name);
  return *slot;
}

NamespaceImpl* ServerImpl::find_namespace(const std::string& name) {
  auto it = namespaces_.find(name);
  return it == namespaces_.end() ? nullptr : it->second.get();
}

std::string ServerImpl::new_id() {
  // 20 characters of base64url from a per-thread generator: unguessable enough
  // for session ids that are never used as credentials.
  static constexpr char kChars[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id(20, ' ');
  std::uint64_t bits = rng();
  for (int i = 0; i < 20; ++i) {
    if (i == 10) bits = rng();
    id[static_cast<std::size_t>(i)] = kChars[bits & 63];
    bits >>= 6;
  }
  return id;
}

ServerImpl::Shard& ServerImpl::shard_for(const std::string& sid) {
  return shards_[std::hash<std::string>{}(sid) % shards_.size()];
}

std::shared_ptr<EngineSession> ServerImpl::create_session(unsigned worker, bool websocket,
                                                          bool raw_echo, Handshake h) {
  auto sid = new_id();
  auto s = std::make_shared<EngineSession>(
      *this, worker, sid, websocket ? EngineSession::Kind::websocket : EngineSession::Kind::polling,
      raw_echo, std::move(h));
  auto& shard = shard_for(sid);
  {
    std::lock_guard lk(shard.mu);
    shard.sessions.emplace(sid, s);
  }
  session_count_.fetch_add(1);
  return s;
}

std::shared_ptr<EngineSession> ServerImpl::find_session(const std::string& sid) {
  auto& shard = shard_for(sid);
  std::lock_guard lk(shard.mu);
  auto it = shard.sessions.find(sid);
  return it == shard.sessions.end() ? nullptr : it->second;
}

void ServerImpl::remove_session(const std::string& sid) {
  auto& shard = shard_for(sid);
  std::shared_ptr<EngineSession> doomed;  // released outside the lock
  {
    std::lock_guard lk(shard.mu);
    auto it = shard.sessions.find(sid);
    if (it == shard.sessions.end()) return;
    doomed = std::move(it->second);
    shard.sessions.erase(it);
  }
  if (session_count_.fetch_sub(1) == 1 && shutting_down_) finish_shutdown();
  // The session may be in its own close(): let it finish before it is freed.
  auto& ctx = workers_.at(doomed->worker());
  boost::asio::post(ctx, [doomed = std::move(doomed)] {});
}

std::uint16_t ServerImpl::listen(const std::string& host, std::uint16_t port) {
  listener_ = std::make_shared<Listener>(*this);
  return listener_->open(host, port);
}

void ServerImpl::shutdown(std::function<void()> done) {
  shutting_down_ = true;
  if (listener_) listener_->close();
  {
    std::lock_guard lk(done_mu_);
    on_drained_ = std::move(done);
  }
  std::vector<std::shared_ptr<EngineSession>> all;
  for (auto& shard : shards_) {
    std::lock_guard lk(shard.mu);
    for (auto& [sid, s] : shard.sessions) all.push_back(s);
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
    out.connections_open += static_cast<std::uint64_t>(ld(s.connections_open));
    out.websocket_open += static_cast<std::uint64_t>(ld(s.websocket_open));
    out.polling_open += static_cast<std::uint64_t>(ld(s.polling_open));
    out.connections_total += ld(s.connections_total);
    out.upgrades_total += ld(s.upgrades_total);
    out.http_requests_total += ld(s.http_requests_total);
    out.bad_requests_total += ld(s.bad_requests_total);
    out.payload_too_large_total += ld(s.payload_too_large_total);
    out.protocol_errors_total += ld(s.protocol_errors_total);
    out.ping_timeouts_total += ld(s.ping_timeouts_total);
    out.slow_reader_closes_total += ld(s.slow_reader_closes_total);
    out.dropped_packets_total += ld(s.dropped_packets_total);
    out.packets_in_total += ld(s.packets_in_total);
    out.packets_out_total += ld(s.packets_out_total);
    out.bytes_in_total += ld(s.bytes_in_total);
    out.bytes_out_total += ld(s.bytes_out_total);
    out.accept_errors_total += ld(s.accept_errors_total);
    out.connections_refused_total += ld(s.connections_refused_total);
    out.ws_writes_total += ld(s.ws_writes_total);
    out.write_timeouts_total += ld(s.write_timeouts_total);
    out.close_timeouts_total += ld(s.close_timeouts_total);
    out.binary_packet_aborts_total += ld(s.binary_packet_aborts_total);
    out.connects_limited_total += ld(s.connects_limited_total);
    out.invalid_packets_total += ld(s.invalid_packets_total);
  }
  return out;
}

}  // namespace chat::transport
