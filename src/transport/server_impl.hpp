// ServerImpl: the transport::Server behind api.hpp. Owns the options, the
// namespaces, the session registry (sid -> session, sharded), the listener
// and the per-worker counters. Holds no Beast types.
#pragma once

#include "runtime/workers.hpp"
#include "transport/api.hpp"
#include "transport/net_policy.hpp"
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
class DelayedFlushes;
class Heartbeats;

class ServerImpl;

class NamespaceImpl final : public Namespace {
 public:
  NamespaceImpl(ServerImpl& server, std::string name) : server_(server), name_(std::move(name)) {}
  void use(AuthHook hook) override { hooks_.push_back(std::move(hook)); }
  void on_recover(RecoverHook hook) override { recover_ = std::move(hook); }
  bool recovers() const { return static_cast<bool>(recover_); }
  // The socket id to restore for a CONNECT auth with {pid, offset}, if any.
  std::optional<std::string> recover(const Handshake& h, const nlohmann::json& auth) const;
  void on_connection(std::function<void(SocketPtr, const nlohmann::json&)> handler) override {
    on_connection_ = std::move(handler);
  }
  // Runs the process checks (memory budget), then the hooks.
  AuthResult authorize(const Handshake& h, const nlohmann::json& auth) const;
  void connected(const SocketPtr& socket, const nlohmann::json& auth) const;
  void on_event(std::string event, SocketEventHandler handler) override {
    events_[std::move(event)] = std::move(handler);
  }
  void on_any_event(std::function<void(Socket&, const std::string&, const nlohmann::json&, Ack)>
                        handler) override {
    any_event_ = std::move(handler);
  }
  void use_async(AsyncAuthHook hook) override { async_hook_ = std::move(hook); }
  const AsyncAuthHook& async_hook() const { return async_hook_; }
  SocketObserver* observer() const;
  // The table's handler for event, or its on_any_event(); false when neither.
  bool dispatch(Socket& socket, const std::string& event, const nlohmann::json& args,
                Ack ack) const;

 private:
  ServerImpl& server_;
  std::string name_;
  std::vector<AuthHook> hooks_;
  RecoverHook recover_;
  std::function<void(SocketPtr, const nlohmann::json&)> on_connection_;
  std::unordered_map<std::string, SocketEventHandler> events_;
  std::function<void(Socket&, const std::string&, const nlohmann::json&, Ack)> any_event_;
  AsyncAuthHook async_hook_;
};

class ServerImpl final : public Server {
 public:
  ServerImpl(runtime::Workers& workers, Options options);
  ~ServerImpl() override;

  Namespace& of(const std::string& name) override;
  void set_http_handler(HttpHandler handler) override { http_handler_ = std::move(handler); }
  void set_async_http_handler(std::string prefix, AsyncHttpHandler handler) override {
    async_prefix_ = std::move(prefix);
    async_handler_ = std::move(handler);
  }
  std::uint16_t listen(const std::string& host, std::uint16_t port) override;
  void shutdown(std::function<void()> done) override;
  Stats stats() const override;
  std::uint16_t listen_admin(const std::string& host, std::uint16_t port,
                             HttpHandler handler) override;
  void set_observer(std::shared_ptr<SocketObserver> observer) override {
    observer_ = std::move(observer);
  }
  // The observer of every socket, or null.
  SocketObserver* observer() const { return observer_.get(); }

  // ---- for the connections and sessions
  runtime::Workers& workers() { return workers_; }
  const Options& options() const { return options_; }
  WorkerStats& worker_stats(unsigned w) { return stats_[w]; }
  DelayedFlushes& delayed_flushes(unsigned w) { return *delayed_[w]; }
  Heartbeats& heartbeats(unsigned w) { return *heartbeats_[w]; }
  const HttpHandler& http_handler() const { return http_handler_; }
  const HttpHandler& admin_handler() const { return admin_handler_; }
  // The handler for path, if it is under the async prefix (nullptr otherwise).
  const AsyncHttpHandler* async_handler(std::string_view path) const {
    return async_handler_ && path.starts_with(async_prefix_) ? &async_handler_ : nullptr;
  }
  NamespaceImpl* find_namespace(const std::string& name);
  std::string new_id();   // Socket.IO socket ids
  std::string new_sid();  // Engine.IO session ids (bearer credentials), a separate pool
  const TrustedProxies& trusted_proxies() const { return trusted_; }

  // ---- bounds per client IP and per process (docs/transport.md)
  enum class Admission { ok, ip_sessions, ip_pending, cap, memory };
  // Whether a new session from client address ip may open now.
  Admission admit_session(const std::string& ip);
  static const char* refusal_message(Admission a);
  void count_refusal(unsigned worker, Admission a);
  // One HTTP connection (not upgraded) of peer key; false when over the cap.
  bool acquire_http_slot(const std::string& key);
  void release_http_slot(const std::string& key);
  // A Socket.IO CONNECT succeeded on session sid: it is no longer pending.
  void session_connected(const std::string& sid);
  bool over_memory_budget() const { return over_budget_.load(std::memory_order_relaxed); }
  void count_memory_connect_refusal() {
    connects_refused_memory_.fetch_add(1, std::memory_order_relaxed);
  }
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
  struct Entry {
    std::shared_ptr<EngineSession> session;
    bool pending = false;  // counted as before-CONNECT for its client address
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Entry> sessions;
  };
  Shard& shard_for(const std::string& sid);
  struct IpCounts {
    std::size_t sessions = 0, pending = 0, http = 0;
  };
  struct IpShard {
    std::mutex mu;
    std::unordered_map<std::string, IpCounts> counts;
  };
  IpShard& ip_shard(const std::string& ip);
  // Apply fn to the counts of ip (created when missing, erased when all zero).
  template <class F>
  auto with_ip(const std::string& ip, F fn);
  void sample_memory();

  runtime::Workers& workers_;
  Options options_;
  std::map<std::string, std::unique_ptr<NamespaceImpl>> namespaces_;
  HttpHandler http_handler_;
  HttpHandler admin_handler_;
  std::string async_prefix_;
  AsyncHttpHandler async_handler_;
  TrustedProxies trusted_;
  std::array<IpShard, 16> ip_shards_;
  std::atomic<bool> over_budget_{false};
  std::atomic<std::uint64_t> connects_refused_memory_{0};  // rare: one counter is enough
  std::unique_ptr<boost::asio::steady_timer> memory_timer_;
  std::chrono::steady_clock::time_point last_trim_{};
  std::shared_ptr<Listener> admin_listener_;
  std::unique_ptr<WorkerStats[]> stats_;
  std::vector<std::unique_ptr<DelayedFlushes>> delayed_;  // per worker
  std::vector<std::unique_ptr<Heartbeats>> heartbeats_;   // per worker
  std::array<Shard, 16> shards_;
  std::atomic<std::size_t> session_count_{0};
  std::shared_ptr<Listener> listener_;
  std::shared_ptr<SocketObserver> observer_;
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
