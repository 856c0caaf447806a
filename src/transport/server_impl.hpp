// ServerImpl: the transport::Server behind api.hpp. Owns the options, the
// namespaces, the session registry (sid -> session, sharded), the listener
// and the per-worker counters. Holds no Beast types.
#pragma once

#include "core/workers.hpp"
#include "transport/api.hpp"
#include "transport/worker_stats.hpp"

#include <boost/asio/steady_timer.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace chat::transport {

class EngineSession;
class Listener;

class NamespaceImpl final : public Namespace {
 public:
  explicit NamespaceImpl(std::string name) : name_(std::move(name)) {}
  void use(AuthHook hook) override { hooks_.push_back(std::move(hook)); }
  void on_connection(std::function<void(SocketPtr, const nlohmann::json&)> handler) override {
    on_connection_ = std::move(handler);
  }
  std::optional<nlohmann::json> authorize(const Handshake& h, const nlohmann::json& auth) const;
  void connected(const SocketPtr& socket, const nlohmann::json& auth) const;

 private:
  std::string name_;
  std::vector<AuthHook> hooks_;
  std::function<void(SocketPtr, const nlohmann::json&)> on_connection_;
};

class ServerImpl final : public Server {
 public:
  ServerImpl(core::Workers& workers, Options options);
  ~ServerImpl() override;

  Namespace& of(const std::string& name) override;
  void set_http_handler(HttpHandler handler) override { http_handler_ = std::move(handler); }
  std::uint16_t listen(const std::string& host, std::uint16_t port) override;
  void shutdown(std::function<void()> done) override;
  Stats stats() const override;

  // ---- for the connections and sessions
  core::Workers& workers() { return workers_; }
  const Options& options() const { return options_; }
  WorkerStats& worker_stats(unsigned w) { return stats_[w]; }
  const HttpHandler& http_handler() const { return http_handler_; }
  NamespaceImpl* find_namespace(const std::string& name);
  std::string new_id();
  bool shutting_down() const { return shutting_down_; }

  // Writes in flight (HTTP responses, WebSocket frames and closes). Shutdown
  // waits for them so the last DISCONNECT/close reaches the client before the
  // event loops stop.
  void io_begin() { pending_io_.fetch_add(1, std::memory_order_relaxed); }
  void io_end() { pending_io_.fetch_sub(1, std::memory_order_relaxed); }

  std::shared_ptr<EngineSession> create_session(unsigned worker, bool websocket, bool raw_echo,
                                                Handshake h);
  std::shared_ptr<EngineSession> find_session(const std::string& sid);
  void remove_session(const std::string& sid);

 private:
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::shared_ptr<EngineSession>> sessions;
  };
  Shard& shard_for(const std::string& sid);

  core::Workers& workers_;
  Options options_;
  std::map<std::string, std::unique_ptr<NamespaceImpl>> namespaces_;
  HttpHandler http_handler_;
  std::unique_ptr<WorkerStats[]> stats_;
  std::array<Shard, 16> shards_;
  std::atomic<std::size_t> session_count_{0};
  std::shared_ptr<Listener> listener_;
  std::atomic<bool> shutting_down_{false};
  std::mutex done_mu_;
  std::function<void()> on_drained_;
  std::atomic<std::int64_t> pending_io_{0};

  // Sessions are gone: call on_drained_ once the writes in flight are done.
  void finish_shutdown();
  void drain_step(std::shared_ptr<boost::asio::steady_timer> timer,
                  std::chrono::steady_clock::time_point deadline);
};

}  // namespace chat::transport
