// AmqpBus: the cluster bus over RabbitMQ (rabbitmq-c 0.11).
//
// Topology: one durable topic exchange; per process one server-named,
// exclusive, auto-delete queue bound to "cluster" (control) and to
// "room.<encoded room>" for every room with a local member.
//
// Threads: rabbitmq-c connections are blocking and not thread-safe, so there
// are two connections, each owned by one thread. The publisher thread drains a
// bounded outbox filled by publish() and tracks publisher confirms; the
// consumer thread receives deliveries, hands them to the application in
// batches, and applies queued room (un)bindings. Both reconnect on their own
// with exponential backoff and jitter and rebuild their part of the topology.
//
// Guarantees (see docs/cluster.md): a publish is confirmed true only after the
// broker's basic.ack; what was unconfirmed when a connection died is published
// again after the reconnect (at-least-once), and receivers drop the second
// copy with a per-origin id window, so nothing is delivered twice.
#pragma once

#include "bus/amqp_connection.hpp"
#include "bus/bus.hpp"
#include "bus/dedupe_window.hpp"
#include "bus/factory.hpp"
#include "runtime/last_resort.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace chat::bus {

class AmqpBus final : public Bus {
 public:
  // Throws std::invalid_argument for a malformed URL (start-up only).
  explicit AmqpBus(BusConfig config);
  ~AmqpBus() override;
  AmqpBus(const AmqpBus&) = delete;
  AmqpBus& operator=(const AmqpBus&) = delete;

  void start(DeliveryHandler on_delivery, StateHandler on_state) override;
  void stop() override;
  void publish(EnvelopePtr envelope, ConfirmHandler confirm) override;
  void bind_room(const std::string& room) override;
  void unbind_room(const std::string& room) override;
  std::uint32_t partitions() const override { return nparts_; }
  void attach(std::uint32_t partition) override;
  BusStatus status() const override;

 private:
  using Clock = std::chrono::steady_clock;
  // One publish waiting for the broker or for its confirm.
  // One broker message to publish: one envelope, or several of one room
  // joined by the publisher (count > 1, their confirms in `more`).
  struct Pending {
    std::string body;
    std::string key;
    std::string origin;
    std::string id;
    ConfirmHandler confirm;
    std::size_t count = 1;
    std::size_t bytes = 0;  // held against outbox_max_bytes (its envelopes' bodies)
    std::vector<ConfirmHandler> more;
    bool control = false;  // control key: its own queue, sent first
    // In flight when the broker refused a message: sent again alone.
    bool suspect = false;
    int failures = 0;        // refusals while it was the only message in flight
    std::uint64_t seq = 0;   // read-back check: its place in send order (0: none)
    bool probe = false;      // a read-back probe, not chat traffic
    std::uint32_t part = 0;  // history partition (stream) it goes to
    // Run every confirm handler once; returns how many envelopes it covered.
    // A handler that throws is counted in lr and does not stop the others.
    std::size_t settle(PublishStatus status, runtime::LastResort& lr);
  };
  // One envelope, serialized and routed (no confirm handler, not held).
  Pending pending_of(const Envelope& e) const;
  // Settle p and release what it held.
  std::size_t finish(Pending& p, PublishStatus status);
  void inflight_add(std::map<std::uint64_t, Pending>& inflight, std::uint64_t tag, Pending p);
  // Join runs of single envelopes with the same routing key into one message.
  static void join_runs(std::vector<Pending>& batch);

  void publisher_main();
  void consumer_main();
  // Returns when the connection fails or the bus stops; inflight holds what
  // was published but not confirmed.
  // hold_chat: just reconnected; control goes out at once, chat traffic
  // (and readiness) waits for the own consumer and the settle time.
  void run_publisher(AmqpConnection& c, std::map<std::uint64_t, Pending>& inflight,
                     std::vector<Pending>& batch, bool hold_chat);
  void run_consumer(AmqpConnection& c, const std::string& queue);
  // Parse one delivery body, count what is bad, drop duplicates, append the rest.
  // from_stream: a message of the history stream at offset (own envelopes
  // kept, positions set, -1: offset unknown); else the own queue (own skipped).
  // part: the partition of a stream delivery (-1: the own queue); notices:
  // where a synced partition's notice goes (it must follow the batch).
  void take_delivery(std::string_view body, std::vector<EnvelopePtr>& batch,
                     bool from_stream = false, std::int64_t offset = -1, int part = -1,
                     std::vector<EnvelopePtr>* notices = nullptr);
  // Declare the history stream (idempotent) on channel ch; history mode only.
  // A stream that exists with other settings is used as it is (a warning).
  bool declare_stream(amqp_connection_state_t conn, amqp_channel_t ch, const std::string& stream,
                      bool confirm_mode, std::string& error);
  // History partitions. One stream per partition; with several, rooms hash
  // over them and the reserved rooms have one more (the last). Consumer
  // thread only, except the constant fields.
  struct Part {
    std::string stream;   // constant
    std::string binding;  // constant: its binding key on the exchange
    bool always = false;  // constant: read whatever the rooms (one partition, or the reserved one)
    bool attached = false;
    bool catching_up = false;         // attached on demand, not yet read up to the present
    std::int64_t caught_from_ms = 0;  // wall clock of that attach: older envelopes are history
    bool synced = false;         // read up to the present on this connection (its probe came back)
    std::int64_t next = -1;      // next offset to read (-1: never attached)
    std::int64_t last_pos = -1;  // position of the last envelope read
    std::int64_t detached_ms = 0;
    std::int64_t read_since_ms = -1;  // attached by timestamp: everything since then is read
    std::uint64_t unacked_tag = 0;
    std::size_t rooms = 0;             // bound rooms that hash here
    Clock::time_point wanted_until{};  // attach() asked for it until then
    std::string sync_id;               // the probe whose read-back ends the catch-up
    Clock::time_point sync_sent{};
  };
  amqp_channel_t channel_of(std::size_t part) const {
    return static_cast<amqp_channel_t>(2 + part);
  }
  std::string key_for(const std::string& room, std::uint32_t part) const;
  // Open the partition's channel and consume its stream from where the
  // last connection stopped (or, the first time, history_backfill_s back).
  bool consume_stream(AmqpConnection& c, std::size_t part, std::string& error);
  // Partitions: read those wanted, stop those no longer wanted, send the
  // notices owed; false when the connection failed.
  bool apply_partitions(AmqpConnection& c, std::vector<EnvelopePtr>& notices);
  // A probe (reserved room, delivered to nobody) into a partition's stream,
  // sent first; any thread.
  void send_probe(std::uint32_t part, std::string id);
  void send_sync_probe(std::size_t part);
  EnvelopePtr synced_notice(std::size_t part) const;
  std::string cut_after(std::size_t part, std::int64_t position) const;
  std::uint32_t reading_count() const;
  bool setup_publisher(AmqpConnection& c, std::string& error);
  // The broker closed the publisher's channel (it refused a message): find
  // the refused one among what was in flight, drop it when it was refused
  // max_publish_attempts times alone, put the rest back at the outbox head.
  void isolate_refused(std::map<std::uint64_t, Pending>& inflight);
  void requeue(std::map<std::uint64_t, Pending>& inflight);
  bool reopen_publisher_channel(AmqpConnection& c, std::string& error);
  bool setup_consumer(AmqpConnection& c, std::string& queue, std::string& error);
  // Handle one frame read on the publisher connection; false = connection unusable.
  bool on_publisher_frame(const amqp_frame_t& frame, std::map<std::uint64_t, Pending>& inflight);
  // Apply queued (un)bindings; did_any tells whether RPCs were made.
  bool apply_room_ops(AmqpConnection& c, const std::string& queue, bool& did_any);
  // Sleep up to ms unless stop() is called; false when stopping.
  bool backoff_sleep(int& attempt);

  // Read-back check (history mode). A broker can confirm a message that a
  // change of stream leader then loses: with a RabbitMQ cluster, messages
  // published through a surviving node while the leader's node died were
  // confirmed and never stored. Our consumer reads our own envelopes back
  // from the stream, and the stream keeps one channel's messages in the
  // order sent: a confirmed message not read back while a later one is was
  // lost, and is published again (receivers drop a second copy by id). A
  // probe, sent when a confirmed message stays unread, finds a lost tail.
  // Publisher thread only, except seen_ids_.
  struct Check {
    std::string id;         // of the broker message (its first envelope)
    std::size_t bytes = 0;  // of the body kept, counted in check_bytes_
    Pending p;              // once confirmed: what to publish again (confirms settled)
    bool confirmed = false;
    bool seen = false;
    bool lost = false;       // found missing before its confirm came
    std::uint32_t part = 0;  // order holds per stream: checked against its partition only
    std::chrono::steady_clock::time_point confirmed_at;
  };
  void check_sent(Pending& p);
  // Confirm of a checked message: settle it, keep its body until read back.
  void check_confirmed(Pending& p, PublishStatus status);
  void check_forget(const Pending& p);
  void check_erase(std::map<std::uint64_t, Check>::iterator it);
  void check_read_back();
  void republish(Pending p);
  std::map<std::uint64_t, Check> checks_;  // by send order
  std::unordered_map<std::string, std::uint64_t> check_seq_;
  std::uint64_t send_seq_ = 0;
  std::size_t check_bytes_ = 0;
  std::uint64_t probe_count_ = 0;
  std::chrono::steady_clock::time_point last_probe_{};
  std::chrono::steady_clock::time_point last_sweep_{};  // checks of partitions not read
  std::mutex seen_mu_;
  std::vector<std::string> seen_ids_;    // own ids read back, in stream order
  std::vector<std::string> seen_local_;  // consumer thread: not yet handed over

  void set_publisher_up(bool up);
  void set_consumer_up(bool up);
  void report_state();
  void set_error(const std::string& error);
  void wake(int fd);
  void drain_wake(int fd);

  const BusConfig config_;
  const std::string stream_;               // history stream name (history mode)
  const std::uint32_t nparts_;             // room partitions (1: one stream for everything)
  std::vector<Part> parts_;                // nparts_, plus the reserved rooms' one when nparts_ > 1
  std::vector<std::uint32_t> attach_ops_;  // attach() requests, under rooms_mu_
  std::uint64_t sync_count_ = 0;           // consumer thread
  std::atomic<std::uint32_t> parts_read_{0};
  // Per partition: read now (the consumer writes, the publisher's check reads).
  std::unique_ptr<std::atomic<bool>[]> reading_;
  void set_reading(std::size_t part, bool on) {
    reading_[part].store(on, std::memory_order_relaxed);
  }
  // The broker's nodes. Each thread starts at a node picked by the instance id
  // (so replicas spread over a RabbitMQ cluster) and moves to the next one
  // whenever a connection fails or is lost. Each index is touched by its thread only.
  const std::vector<AmqpUrl> urls_;
  std::size_t publisher_node_ = 0;
  std::size_t consumer_node_ = 0;
  DeliveryHandler on_delivery_;
  StateHandler on_state_;

  // Outbox: filled by publish() on any thread, drained by the publisher thread.
  std::mutex outbox_mu_;
  std::deque<Pending> outbox_;
  // Control traffic (presence heartbeats, deltas, snapshots): its own queue,
  // drained first, so it never waits behind chat traffic.
  std::deque<Pending> control_;
  bool outbox_closed_ = false;       // the publisher thread has exited
  bool publisher_idle_ = false;      // the publisher thread sleeps in poll(): wake it
  int publisher_wake_fd_ = -1;       // eventfd
  int publisher_channel_error_ = 0;  // reply code of a channel.close (publisher thread only)

  // Room bindings wanted by the application, and changes not yet applied.
  std::mutex rooms_mu_;
  std::set<std::string> rooms_;
  std::vector<std::pair<bool, std::string>> room_ops_;  // (bind?, room)
  int consumer_wake_fd_ = -1;                           // eventfd
  DedupeWindow dedupe_;  // consumer thread only; survives reconnects on purpose
  // History stream, consumer thread only: the wall clock of the first
  // attach (older envelopes are replays: history, not news).
  std::int64_t attach_ms_ = 0;
  // History mode, broker unreachable: own room envelopes are delivered to
  // local members at publish (local rooms keep working); their copies from
  // the stream then go to the history only. Bounded by outbox_max ids.
  std::mutex local_mu_;
  std::unordered_set<std::string> local_ids_;
  std::deque<std::string> local_fifo_;
  std::atomic<std::size_t> local_count_{0};
  bool delivered_locally(const std::string& id);  // and forget it

  // State reporting: readiness changes are reported in order, once each.
  std::mutex state_mu_;
  bool reported_ready_ = false;
  std::atomic<bool> publisher_up_{false};
  std::atomic<bool> consumer_up_{false};

  mutable std::mutex error_mu_;
  std::string last_error_;

  std::atomic<bool> stopping_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::atomic<int> threads_running_{0};
  bool started_ = false;
  std::atomic<bool> stopped_{false};

  // Connections are members so stop() can interrupt a call stuck on a frozen broker.
  AmqpConnection publisher_conn_;
  AmqpConnection consumer_conn_;
  std::thread publisher_thread_;
  std::thread consumer_thread_;

  std::atomic<std::uint64_t> published_{0};
  std::atomic<std::uint64_t> broker_messages_{0};
  std::atomic<std::uint64_t> confirmed_{0};
  std::atomic<std::uint64_t> nacked_{0};
  std::atomic<std::uint64_t> returned_{0};
  std::atomic<std::uint64_t> consumed_{0};
  std::atomic<std::uint64_t> outbox_depth_{0};
  std::atomic<std::uint64_t> outbox_dropped_{0};
  std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> refused_{0};
  std::atomic<std::size_t> held_bytes_{0};  // chat publishes not yet settled
  std::size_t inflight_envelopes_ = 0;      // chat, publisher thread only
  std::size_t inflight_control_ = 0;        // control, publisher thread only
  std::atomic<std::uint64_t> reconnects_{0};
  std::atomic<std::uint64_t> bound_rooms_{0};
  std::atomic<std::uint64_t> duplicates_{0};
  std::atomic<std::uint64_t> bad_envelopes_{0};
  std::atomic<std::uint64_t> replayed_{0};
  std::atomic<std::uint64_t> republished_{0};  // confirmed, not in the stream, sent again
  std::atomic<std::uint64_t> unchecked_{0};    // left unchecked: the check window was full
  std::atomic<std::uint64_t> probes_{0};
  std::atomic<std::uint64_t> checking_{0};       // check_seq_.size(), for status()
  std::atomic<std::int64_t> stream_offset_{-1};  // last stream offset read
  runtime::LastResort last_resort_{"bus"};
};

}  // namespace chat::bus
