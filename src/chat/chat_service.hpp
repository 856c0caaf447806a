// ChatService: the chat application on top of the transport and the bus.
//
// It handles the chat events of docs/protocol.md for sockets of the "/"
// namespace, publishes every room event and presence change to the bus, and
// delivers what the bus hands back to its local room members: it says what
// goes to whom; the transport's Rooms keeps the members per worker and
// broadcasts (the bus batch is encoded once here, posted once to each worker
// with a member, and each worker walks its own member lists without a lock).
#pragma once

#include "auth/identity.hpp"
#include "auth/jwt_verifier.hpp"
#include "bus/bus.hpp"
#include "chat/api_message.hpp"
#include "chat/first_copy.hpp"
#include "chat/history.hpp"
#include "chat/inbound.hpp"
#include "chat/limits.hpp"
#include "chat/presence.hpp"
#include "chat/sessions.hpp"
#include "chat/shared_limiter.hpp"
#include "chat/validation.hpp"
#include "runtime/last_resort.hpp"
#include "runtime/latency_histogram.hpp"
#include "transport/api.hpp"
#include "transport/rooms.hpp"

#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace chat::runtime {
class Workers;
}

namespace chat::app {

struct ChatOptions {
  std::string replica_id;   // shown to users
  std::string instance_id;  // unique per process (replica id + random suffix)
  Limits limits;
  std::chrono::milliseconds presence_interval{1000};
  std::chrono::milliseconds presence_ttl{5000};  // --presence-ttl
  std::size_t history = 50;           // --history: messages per room sent on join (0: none)
  std::size_t history_rooms = 10000;  // --history-rooms: rooms whose history is kept in memory
  // Connection state recovery (--recovery-window, 0: off; --recovery-messages).
  std::chrono::milliseconds recovery_window{120000};
  std::size_t recovery_messages = 100000;  // newest messages of all rooms kept for it
  std::chrono::milliseconds session_alive_interval{30000};
  // A dropped connection that may be recovered is announced gone after this (--leave-grace).
  std::chrono::milliseconds leave_grace{5000};
  // --auth jwt: who a user is comes from the token of the CONNECT (null:
  // --auth none, anyone logs in under any name); which rooms need a claim.
  std::shared_ptr<const auth::JwtVerifier> verifier;
  std::chrono::milliseconds token_leeway{30000};
  auth::RoomPolicy room_policy;
};

// The chat application's figures on /metrics, each declared once here as
// X(field, metric name, type, help); ChatStats, the per-worker counters, their
// sum and the /metrics lines are made from these lists.
// Counted on each worker (no shared atomic on the hot path), summed for /metrics:
#define CHAT_WORKER_COUNTERS(X)                                                            \
  X(messages_in_total, "chat_messages_in_total", counter, "Chat messages accepted")        \
  X(messages_acked_total, "chat_messages_acked_total", counter,                            \
    "Message acks sent after the bus confirmed")                                           \
  X(messages_failed_total, "chat_messages_failed_total", counter,                          \
    "Messages the bus could not store")                                                    \
  X(deliveries_total, "chat_deliveries_total", counter, "Packets queued to local sockets") \
  X(deliveries_dropped_total, "chat_deliveries_dropped_total", counter,                    \
    "Droppable packets skipped for slow sockets")                                          \
  X(deliveries_closed_total, "chat_deliveries_closed_total", counter,                      \
    "Deliveries to sockets that were closed")                                              \
  X(envelopes_in_total, "chat_envelopes_in_total", counter,                                \
    "Room envelopes handled (times workers)")                                              \
  X(errors_total, "chat_errors_total", counter, "Error replies sent to clients")           \
  X(rate_limited_total, "chat_rate_limited_total", counter, "Requests refused by the rate limit")
// Of the whole replica:
#define CHAT_REPLICA_STATS(X)                                                                     \
  X(users_local, "chat_users_local", gauge, "Logged-in users on this replica")                    \
  X(users_cluster, "chat_users_cluster", gauge, "Logged-in users on all live replicas")           \
  X(rooms_local, "chat_rooms_local", gauge, "Rooms with members on this replica")                 \
  X(replicas, "chat_replicas", gauge, "Live replicas known (this one included)")                  \
  X(delivery_posts_total, "chat_delivery_posts_total", counter,                                   \
    "Batches of room messages handed to I/O threads (only to threads with a member there)")       \
  X(exceptions_total, "chat_exceptions_total", counter,                                           \
    "Exceptions caught by a last resort (workers, bus input)")                                    \
  X(rate_limited_ip_total, "chat_rate_limited_ip_total", counter,                                 \
    "Requests and CONNECTs refused by the per-address limit")                                     \
  X(rate_limited_room_total, "chat_rate_limited_room_total", counter,                             \
    "Messages refused by the per-room limit")                                                     \
  X(auth_refused_total, "chat_auth_refused_total", counter,                                       \
    "CONNECTs and token refreshes refused for their token (--auth jwt)")                          \
  X(auth_expired_total, "chat_auth_expired_total", counter,                                       \
    "Sockets disconnected because their token expired")                                           \
  X(forbidden_total, "chat_forbidden_total", counter, "Joins and posts the token does not allow") \
  X(history_rooms, "chat_history_rooms", gauge, "Rooms whose last messages are kept in memory")   \
  X(history_messages, "chat_history_messages", gauge,                                             \
    "Messages kept in memory for history replies")                                                \
  X(sessions_known, "chat_sessions_known", gauge,                                                 \
    "Session records that can be recovered (all replicas)")                                       \
  X(recoveries_total, "chat_recoveries_total", counter,                                           \
    "Sockets given back their id, rooms and missed messages")                                     \
  X(recoveries_refused_total, "chat_recoveries_refused_total", counter,                           \
    "Recovery attempts refused (unknown or expired pid, messages no longer held)")                \
  X(leaves_held_total, "chat_leaves_held_total", counter,                                         \
    "Departures of dropped, recoverable users held back by --leave-grace")                        \
  X(leaves_avoided_total, "chat_leaves_avoided_total", counter,                                   \
    "Held-back departures not announced: the user was back in time")                              \
  X(recovered_messages_total, "chat_recovered_messages_total", counter,                           \
    "Missed messages sent to recovered sockets")                                                  \
  X(api_messages_total, "chat_api_messages_total", counter,                                       \
    "Messages posted through the publish API and stored")                                         \
  X(api_duplicates_total, "chat_api_duplicates_total", counter,                                   \
    "Second copies of publish-API messages dropped (a retry that reached another replica)")

struct ChatStats {
#define CHAT_STATS_FIELD(field, name, type, help) std::uint64_t field = 0;
  CHAT_WORKER_COUNTERS(CHAT_STATS_FIELD)
  CHAT_REPLICA_STATS(CHAT_STATS_FIELD)
#undef CHAT_STATS_FIELD
  std::array<std::uint64_t, kInboundKinds> bad_payloads{};  // bus input dropped, by InboundKind
  // From a message's timestamp (its sender's replica) to its hand-over to
  // this replica's members; from a publish to the bus's confirm (the ack).
  runtime::LatencyHistogram::Snapshot delivery_latency, ack_latency;
};

class ChatService {
 public:
  ChatService(runtime::Workers& workers, transport::Server& server, bus::Bus& bus,
              ChatOptions options);
  ~ChatService();
  ChatService(const ChatService&) = delete;
  ChatService& operator=(const ChatService&) = delete;

  // Register the "/" namespace handlers, start the bus and the presence timer.
  void start();
  // Tell the cluster this replica is leaving (after the sessions were closed).
  void announce_departure();
  void stop();

  ChatStats stats();
  const ChatOptions& options() const { return options_; }

  // The publish API (src/endpoints/publish_api.hpp): a message from a
  // backend, posted into a room like a user's message (checked, limited per
  // room, stored, ordered, recovered) and delivered to every member.
  // The checks alone (room, message, name), so that a post to several rooms
  // is refused before any of it is published.
  std::optional<ChatError> check_api_message(const ApiMessage& m) const;
  // Check and publish; done runs once, when the bus confirmed or refused
  // (on a bus thread, or on this one for a refusal).
  void post_api_message(ApiMessage m, std::function<void(ApiOutcome)> done);

  // The Admin UI (src/admin) sees the rooms of local sockets and the
  // cluster's "admin." control traffic through these hooks. Set before start().
  struct AdminHooks {
    // Bus thread: every control envelope whose event starts with "admin.", own ones too.
    std::function<void(const bus::EnvelopePtr&)> envelope;
    // The socket's worker: a local socket joined (true) or left a room.
    std::function<void(transport::Socket&, const std::string& room, bool joined)> room;
    // The socket's worker: what admin_data() says changed (the user logged in).
    std::function<void(transport::Socket&)> data;
  };
  void set_admin_hooks(AdminHooks hooks) { admin_ = std::move(hooks); }
  // On the socket's worker. What the Admin UI shows as the socket's data
  // (its user), and joins or leaves a room as if its user had asked (the
  // same checks; a socket not logged in is refused).
  nlohmann::json admin_data(transport::Socket& socket);
  void admin_join(transport::Socket& socket, const std::string& room);
  void admin_leave(transport::Socket& socket, const std::string& room);

 private:
  struct LocalUser;
  struct Prepared;
  struct Waiter;
  // The bus's notices that partitions are read up to the present, by partition.
  using Synced = std::map<std::uint32_t, bus::EnvelopePtr>;
  // How long a join, login or recovery waits for its partitions.
  static constexpr std::int64_t kPartitionWaitMs = 10000;
  struct alignas(64) Counters {
#define CHAT_WORKER_COUNTER(field, name, type, help) std::atomic<std::uint64_t> field{0};
    CHAT_WORKER_COUNTERS(CHAT_WORKER_COUNTER)
#undef CHAT_WORKER_COUNTER
  };
  struct WorkerState {
    std::unordered_map<const transport::Socket*, std::shared_ptr<LocalUser>> users;
    std::uint64_t logged_in = 0;
    Counters counters;
  };

  void on_connection(const transport::SocketPtr& socket, const nlohmann::json& auth);
  // --auth jwt (chat_auth.cpp): the CONNECT hook checks the token; the
  // socket carries its identity (Socket::data()).
  transport::AuthResult check_token(const nlohmann::json& auth);
  void on_refresh_token(LocalUser& u, const nlohmann::json& args, transport::Ack ack);
  // Disconnect the sockets of worker w whose token expired (every presence tick).
  void expire_tokens(unsigned w);
  bool may_join(const LocalUser& u, const std::string& room);
  bool may_post(const LocalUser& u, const std::string& room);
  // Adds "sub" (the token's subject) to a payload about u, with --auth jwt.
  static void add_subject(const LocalUser& u, nlohmann::json& payload);
  // Connection state recovery: the socket id for {pid, offset}, if the state can come back.
  std::optional<std::string> recoverable(const std::string& pid, const std::string& offset);
  void restore(LocalUser& u, const nlohmann::json& auth);
  // Partitions: where each of a record's rooms resumes (empty: not possible).
  std::map<std::string, std::int64_t> resume_points(const SessionRecord& rec,
                                                    const std::string& offset) const;
  void restore_rooms(LocalUser& u, const std::map<std::string, std::int64_t>& from,
                     std::int64_t since_ms);
  std::int64_t resume_since(const SessionRecord& rec) const;
  // Run done on u's worker once the partitions of rooms are read up to the
  // present (at once without partitions), or failed after kPartitionWaitMs.
  void when_read(LocalUser& u, const std::vector<std::string>& rooms,
                 std::function<void(LocalUser&, const Synced&)> done,
                 std::function<void(LocalUser&)> failed);
  void on_synced(const bus::EnvelopePtr& notice);  // bus thread
  void expire_waiters();
  void note_joined(LocalUser& u, const std::string& room, const Synced& synced);
  void login(LocalUser& u, std::string name, transport::Ack ack, const Synced& synced);
  void join_room(LocalUser& u, const std::string& room, transport::Ack ack, const Synced& synced);
  void publish_session(const LocalUser& u);
  void publish_alive();
  // A kept message as clients see it: its payload with its offset.
  static nlohmann::json message_json(const bus::Envelope& e);
  // cut: the offset to send instead of the envelope's (a recovering socket's own).
  std::shared_ptr<const std::string> encode_message(const bus::Envelope& e,
                                                    const std::string* cut = nullptr) const;
  // Any other room event as clients see it: [event, payload].
  std::shared_ptr<const std::string> encode_room_event(const bus::Envelope& e) const;
  // What `login` and the `add user` ack carry.
  nlohmann::json login_info(const LocalUser& u, const std::string& room);
  void on_add_user(LocalUser& u, const nlohmann::json& args, transport::Ack ack);
  void on_new_message(LocalUser& u, const nlohmann::json& args, transport::Ack ack);
  void on_typing(LocalUser& u, const std::string& event, const nlohmann::json& args);
  void on_join_room(LocalUser& u, const nlohmann::json& args, transport::Ack ack);
  void on_leave_room(LocalUser& u, const nlohmann::json& args, transport::Ack ack);
  void on_list_rooms(LocalUser& u, transport::Ack ack);
  void on_list_users(LocalUser& u, const nlohmann::json& args, transport::Ack ack);
  void on_cluster_info(LocalUser& u, transport::Ack ack);
  void on_disconnect(LocalUser& u, const std::string& reason);

  // Shared pieces of the handlers.
  bool admit(LocalUser& u, const char* event, const transport::Ack& ack, bool need_login = true);
  void fail(LocalUser& u, const char* event, const transport::Ack& ack, const ChatError& err);
  void reply(const transport::Ack& ack, nlohmann::json obj);
  void join_local(LocalUser& u, const std::string& room);
  void leave_local(LocalUser& u, const std::string& room);
  void publish_presence(const nlohmann::json& delta);  // caller holds presence lock
  void publish_room_event(LocalUser& u, const std::string& room, const char* event,
                          nlohmann::json payload, bus::Bus::ConfirmHandler confirm = {});
  nlohmann::json membership_payload(const LocalUser& u, const std::string& room);
  // The payload of "user joined" / "user left" (docs/protocol.md).
  static nlohmann::json membership_json(const std::string& user_id, const std::string& username,
                                        std::size_t num_users, const std::string& room,
                                        const std::string& replica, const std::string& sub = {});
  // The token's subject of a user (--auth jwt), or empty.
  static const std::string& subject_of(const LocalUser& u);

  // Bus side.
  void on_bus_batch(std::vector<bus::EnvelopePtr> batch);
  void on_bus_state(bool ready);
  // Appends what local members get to prepared, what history keeps to kept.
  // The namespace's event table (once, at start) and the user behind a socket.
  void register_events(transport::Namespace& nsp);
  std::shared_ptr<LocalUser> user_of(transport::Socket& socket);
  void on_bus_envelope(const bus::EnvelopePtr& e, std::vector<Prepared>& prepared,
                       std::vector<bus::EnvelopePtr>& kept);
  // A room's last messages as sent in replies: payloads with their offset.
  nlohmann::json history_json(const std::string& room);
  void handle_control(const bus::Envelope& e, Inbound& in);
  void deliver_batch(unsigned worker, const std::vector<Prepared>& batch);
  void deliver_local(std::vector<bus::EnvelopePtr> batch);  // no bus round trip
  void announce_gone(const std::vector<UserInfo>& users);
  // This replica's user is gone: presence logout and "user left" in its rooms.
  void depart(const std::string& user_id, const std::string& username, const std::string& sub,
              const std::set<std::string>& rooms);
  // Departures held back by leave_grace whose time has come (presence tick).
  void settle_leaves(bool all = false);
  void presence_tick();
  void publish_snapshot();  // in version order with the deltas

  std::shared_ptr<bus::Envelope> make_envelope(std::string room, std::string event,
                                               nlohmann::json payload, std::string sender = {});
  std::string next_id();
  static std::int64_t now_ms();

  runtime::Workers& workers_;
  transport::Server& server_;
  bus::Bus& bus_;
  ChatOptions options_;
  Presence presence_;
  const std::uint32_t parts_;  // the bus's history partitions
  History history_;
  Sessions sessions_;
  bool recovery_ = false;  // set in start(): on, and the bus carries session records
  std::mutex pids_mu_;
  std::unordered_set<std::string> local_pids_;  // pids of this replica's sockets
  unsigned ticks_ = 0;                          // presence ticks, for the alive interval
  // Users whose connection dropped and who may come back (recovery): their
  // departure waits for leave_grace, and is not announced if they are back.
  struct PendingLeave {
    std::int64_t due_ms = 0;
    std::string pid;
    std::string user_id;
    std::string username;
    std::set<std::string> rooms;
    std::string sub;
  };
  std::mutex leaves_mu_;
  std::vector<PendingLeave> leaves_;
  std::atomic<std::uint64_t> leaves_held_{0};     // departures held back by the grace
  std::atomic<std::uint64_t> leaves_avoided_{0};  // of those, users back in time
  std::atomic<std::uint64_t> recoveries_{0}, recoveries_refused_{0}, recovered_messages_{0};
  std::vector<std::unique_ptr<WorkerState>> states_;
  std::mutex waiters_mu_;
  std::vector<std::shared_ptr<Waiter>> waiters_;

  // Local room members, per worker; a room's first and last member here
  // bind and unbind it on the bus.
  transport::Rooms<LocalUser> rooms_;
  std::atomic<std::uint64_t> delivery_posts_{0};  // batches posted to workers

  SharedLimiter ip_limiter_;    // per client address
  SharedLimiter room_limiter_;  // per room, messages on this replica
  std::atomic<std::uint64_t> ip_refusals_{0}, room_refusals_{0};  // refusals only: rare
  std::atomic<std::uint64_t> auth_refused_{0}, auth_expired_{0}, forbidden_{0};  // rare too
  std::atomic<std::uint64_t> api_messages_{0}, api_duplicates_{0};
  runtime::LatencyHistogram delivery_latency_, ack_latency_;
  FirstCopy api_copies_{65536};  // publish-API ids: which origin's copy came first

  std::atomic<std::uint64_t> seq_{0};
  InboundCounters inbound_;
  runtime::LastResort inbound_errors_{"bus delivery"};
  std::atomic<bool> bus_ready_{false};
  std::atomic<bool> stopping_{false};
  std::unique_ptr<boost::asio::steady_timer> timer_;
  AdminHooks admin_;
};

}  // namespace chat::app
