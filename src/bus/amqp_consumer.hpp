// AmqpConsumer: the RabbitMQ bus's receiving side, one thread on one
// rabbitmq-c connection (blocking and not thread-safe, so it is this
// thread's alone).
//
// It owns a server-named, exclusive, auto-delete queue bound to "cluster"
// (control traffic) and, without history, to "room.<encoded room>" for
// every room with a local member; with history, room traffic is read from
// the history streams instead (one channel per stream read), each from
// where the last read stopped, and acknowledged once handed over. With
// several partitions it reads only those of its rooms' (and the reserved
// rooms' stream), attaching others on demand with a catch-up that ends when
// its own probe comes back. Deliveries go to the application in batches;
// (un)bindings queued by bind_room/unbind_room are applied between reads.
#pragma once

#include "bus/amqp_common.hpp"
#include "bus/amqp_publisher.hpp"
#include "bus/dedupe_window.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace chat::bus {

class AmqpConsumer {
 public:
  // probes: where the consumer's sync probes are published.
  AmqpConsumer(AmqpCommon& common, AmqpPublisher& probes);
  ~AmqpConsumer();
  AmqpConsumer(const AmqpConsumer&) = delete;
  AmqpConsumer& operator=(const AmqpConsumer&) = delete;

  void start(Bus::DeliveryHandler on_delivery);
  void wake();
  void interrupt() { conn_.interrupt(); }
  void join();

  // Any thread (Bus's contract).
  void bind_room(const std::string& room);
  void unbind_room(const std::string& room);
  void attach(std::uint32_t partition);
  void fill(BusStatus& s) const;

 private:
  using Clock = std::chrono::steady_clock;
  // A history partition's stream (common_.streams, same index) as this
  // thread reads it. This thread only.
  struct Part {
    bool attached = false;
    bool catching_up = false;         // attached on demand, not yet read up to the present
    std::int64_t caught_from_ms = 0;  // wall clock of that attach: older envelopes are history
    bool synced = false;         // read up to the present on this connection (its probe came back)
    std::int64_t next = -1;      // next offset to read (-1: never attached)
    std::int64_t last_pos = -1;  // position of the last envelope read
    std::int64_t detached_ms = 0;
    std::int64_t read_since_ms = -1;    // attached by timestamp: everything since then is read
    std::uint64_t unacked_tag = 0;      // the newest delivery not yet acknowledged (0: none)
    std::size_t unacked = 0;            // deliveries since the last ack
    Clock::time_point unacked_since{};  // when the oldest of them came
    std::size_t rooms = 0;              // bound rooms that hash here
    Clock::time_point wanted_until{};   // attach() asked for it until then
    std::string sync_id;                // the probe whose read-back ends the catch-up
    Clock::time_point sync_sent{};
    void forget_unacked() {
      unacked_tag = 0;
      unacked = 0;
    }
  };
  static amqp_channel_t channel_of(std::size_t part) {
    return static_cast<amqp_channel_t>(2 + part);
  }

  void main();
  bool setup(std::string& queue, std::string& error);
  void run(const std::string& queue);
  // Parse one delivery body, count what is bad, drop duplicates, append the rest.
  // from_stream: a message of the history stream at offset (own envelopes
  // kept, positions set, -1: offset unknown); else the own queue (own skipped).
  // part: the partition of a stream delivery (-1: the own queue); notices:
  // where a synced partition's notice goes (it must follow the batch).
  void take_delivery(std::string_view body, std::vector<EnvelopePtr>& batch,
                     bool from_stream = false, std::int64_t offset = -1, int part = -1,
                     std::vector<EnvelopePtr>* notices = nullptr);
  // Open the partition's channel and consume its stream from where the
  // last connection stopped (or, the first time, history_backfill_s back).
  bool consume_stream(std::size_t part, std::string& error);
  // Partitions: read those wanted, stop those no longer wanted, send the
  // notices owed; false when the connection failed.
  bool apply_partitions(std::vector<EnvelopePtr>& notices);
  // Apply queued (un)bindings; did_any tells whether RPCs were made.
  bool apply_room_ops(const std::string& queue, bool& did_any);
  void send_sync_probe(std::size_t part);
  EnvelopePtr synced_notice(std::size_t part) const;
  std::string cut_after(std::size_t part, std::int64_t position) const;
  std::uint32_t reading_count() const;
  // Whether partition i is to be read now: always, a bound room in it, a
  // catch-up under way, or asked for by attach() lately.
  bool wanted(std::size_t i, Clock::time_point now) const;

  AmqpCommon& common_;
  AmqpPublisher& probes_out_;
  const BusConfig& config_;
  const std::uint32_t nparts_;
  std::vector<Part> parts_;
  std::size_t node_ = 0;  // index into the broker's nodes; this thread only
  Bus::DeliveryHandler on_delivery_;

  // Room bindings wanted by the application, and changes not yet applied.
  std::mutex rooms_mu_;
  std::set<std::string> rooms_;
  std::vector<std::pair<bool, std::string>> room_ops_;  // (bind?, room)
  std::vector<std::uint32_t> attach_ops_;               // attach() requests
  int wake_fd_ = -1;                                    // eventfd
  DedupeWindow dedupe_;  // this thread only; survives reconnects on purpose
  // The wall clock of the first attach (older envelopes are replays:
  // history, not news). This thread only.
  std::int64_t attach_ms_ = 0;
  std::uint64_t sync_count_ = 0;
  std::vector<std::string> seen_local_;  // own ids read back, not yet handed over

  // The connection is a member so stop can interrupt a call stuck on a frozen broker.
  AmqpConnection conn_;
  std::thread thread_;

  ConsumerStats stats_;
  std::atomic<std::int64_t> stream_offset_{-1};  // last stream offset read
  std::atomic<std::uint32_t> parts_read_{0};
};

}  // namespace chat::bus
