// AdminUi: the server side of the official Socket.IO Admin UI
// (@socket.io/admin-ui 0.5.x), for the whole cluster.
//
// The UI is a Socket.IO client of the "/admin" namespace (docs/admin.md). It
// logs in (a bcrypt-hashed password checked off the I/O threads, then a
// session id it may reuse), gets `config`, then `all_sockets` (the sockets of
// every replica), `server_stats` of every replica every two seconds, and a
// live feed: socket_connected / socket_updated / socket_disconnected,
// room_joined / room_left, event_received / event_sent. Its commands
// (emit, join, leave, _disconnect) act on the sockets of every replica.
//
// The replicas do not know each other: what one sees goes to the others as
// control envelopes on the bus ("admin." events), and each hands what comes
// back to its own admin sockets:
//   admin.stats    every 2 s from every replica: its server_stats and how many
//                  admin sockets it has (a replica publishes the feed only while
//                  some replica has one)
//   admin.feed     the live feed of one replica, gathered every 100 ms
//   admin.fetch    an admin socket connected: every replica answers with
//   admin.sockets  its sockets (at most max_sockets), gathered into one all_sockets
//   admin.command  a command, applied by every replica to its own sockets
//   admin.session  a login's session id, valid on every replica
//
// Threads: the observer calls and the chat's room hooks run on the socket's
// worker and touch only that worker's registry; bus envelopes arrive on the
// bus thread and are posted to the workers. Nothing here is on the message
// path: with no admin socket anywhere, a socket event costs one relaxed load.
#pragma once

#include "admin/password.hpp"
#include "bus/bus.hpp"
#include "transport/api.hpp"

#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace chat::runtime {
class Workers;
}

namespace chat::admin {

struct AdminOptions {
  std::string nsp = "/admin";
  bool auth = true;  // false: --admin-ui-auth none (anyone who reaches the namespace)
  std::string user = "admin";
  std::string password_hash;  // bcrypt
  bool readonly = false;      // no commands
  bool development = true;    // the live feed and the socket list (ALL_EVENTS)
  std::string server_id;      // shown in the Servers page
  std::string instance_id;    // the bus origin of this process
  std::chrono::milliseconds stats_interval{2000};
  std::chrono::milliseconds feed_interval{100};
  std::size_t max_sockets = 10000;     // per replica, in all_sockets
  std::size_t max_feed = 5000;         // feed entries waiting for the next flush
  std::size_t max_event_bytes = 4096;  // event arguments shown beyond this are cut
  std::chrono::hours session_lifetime{24};
};

// What the chat application does for the Admin UI (ChatService implements
// it; all on the socket's worker).
struct ChatControl {
  std::function<nlohmann::json(transport::Socket&)> data;  // the socket's user, as socket.data
  std::function<void(transport::Socket&, const std::string&)> join;
  std::function<void(transport::Socket&, const std::string&)> leave;
};

class AdminUi final : public transport::SocketObserver,
                      public std::enable_shared_from_this<AdminUi> {
 public:
  AdminUi(runtime::Workers& workers, transport::Server& server, bus::Bus& bus, AdminOptions options,
          ChatControl chat);
  ~AdminUi() override;

  // Register the namespace (before listen()) and start the timers.
  void start();
  void stop();

  // The chat's hooks (ChatService::AdminHooks).
  void on_envelope(const bus::EnvelopePtr& e);  // bus thread
  void on_room(transport::Socket& socket, const std::string& room, bool joined);
  void on_data(transport::Socket& socket);

  // transport::SocketObserver
  void connected(const transport::SocketPtr& socket) override;
  void disconnected(transport::Socket& socket, const std::string& reason) override;
  void upgraded(transport::Socket& socket) override;
  bool watches_events() const override {
    return options_.development && watched_.load(std::memory_order_relaxed);
  }
  void event_received(transport::Socket& socket, const std::string& event,
                      const nlohmann::json& args) override;
  void event_sent(transport::Socket& socket, std::string_view event,
                  const nlohmann::json& args) override;

  // For /metrics.
  struct Stats {
    std::uint64_t admin_sockets = 0;   // connected here
    std::uint64_t logins_refused = 0;  // bad credentials or busy
    std::uint64_t feed_dropped = 0;    // feed entries over max_feed
    std::uint64_t commands = 0;        // commands applied here
    std::uint64_t bad_envelopes = 0;   // admin. envelopes from the bus that were malformed
  };
  Stats stats() const;

  // The Admin UI's date format: ISO 8601 UTC with milliseconds.
  static std::string iso_time(std::int64_t ms);

 private:
  struct Entry {
    std::weak_ptr<transport::Socket> socket;
    std::vector<std::string> rooms;  // the socket's own id first
  };
  struct WorkerState {
    std::unordered_map<const transport::Socket*, Entry> sockets;
    std::vector<std::weak_ptr<transport::Socket>> admins;
  };
  struct Login;      // socket data of an admin socket that logged in with a password
  struct Gathering;  // an all_sockets being gathered from the replicas

  void on_admin_connection(const transport::SocketPtr& socket);
  void authenticate(const nlohmann::json& auth, std::function<void(transport::AuthResult)> done);
  void register_commands(transport::Namespace& nsp);
  void command(const std::string& cmd, const nlohmann::json& args);

  // Serialized as the UI expects (docs/admin.md).
  nlohmann::json serialize(transport::Socket& socket, const Entry& entry) const;
  bool watched() const { return watched_.load(std::memory_order_relaxed); }
  void feed(nlohmann::json entry);  // [event, args...]
  void flush_feed();
  void tick();
  nlohmann::json server_stats();
  void publish(std::string event, nlohmann::json payload);
  // Send [event, args...] to every admin socket of this replica.
  void to_admins(std::string_view event, const nlohmann::json& args);
  // Each false when the payload is not what replicas send (counted, dropped).
  bool handle_envelope(const bus::Envelope& e);
  bool apply_command(const nlohmann::json& c);
  bool answer_fetch(const nlohmann::json& req);
  bool on_sockets(const nlohmann::json& answer);
  void finish_gathering(const std::shared_ptr<Gathering>& g);
  std::atomic<std::int64_t>* count_of(const std::string& nsp);
  static std::int64_t now_ms();

  runtime::Workers& workers_;
  transport::Server& server_;
  bus::Bus& bus_;
  const AdminOptions options_;
  const ChatControl chat_;
  std::unique_ptr<PasswordChecker> checker_;
  std::vector<std::unique_ptr<WorkerState>> states_;
  const std::int64_t started_ms_;

  std::atomic<bool> watched_{false};
  std::atomic<std::int64_t> local_admins_{0};
  std::atomic<std::int64_t> count_root_{0}, count_admin_{0};  // sockets of "/" and of nsp
  std::atomic<std::uint64_t> logins_refused_{0}, feed_dropped_{0}, commands_{0}, bad_{0}, seq_{0};

  std::mutex feed_mu_;
  std::vector<nlohmann::json> feed_;

  std::mutex mu_;  // the rest
  // Replicas heard from (admin.stats): when, and how many admin sockets they have.
  struct Peer {
    std::int64_t seen_ms = 0;
    std::int64_t admins = 0;
  };
  std::map<std::string, Peer> peers_;
  std::map<std::string, std::int64_t> sessions_;  // session id -> expiry (ms)
  std::map<std::uint64_t, std::shared_ptr<Gathering>> gatherings_;
  transport::Stats last_{};  // transport figures at the previous tick

  std::unique_ptr<boost::asio::steady_timer> stats_timer_, feed_timer_;
  std::atomic<bool> stopping_{false};
};

}  // namespace chat::admin
