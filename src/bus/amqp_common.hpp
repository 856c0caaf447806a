// What the RabbitMQ bus's two threads share (docs/cluster.md): the
// configuration and the broker's nodes, the history's stream layout, the
// connection state they report, and the two hand-overs between them: the
// own envelopes the consumer read back (for the publisher's read-back check)
// and which partitions the consumer reads now. Everything here is either
// constant after construction or guarded (mutex or atomic); nothing else is
// touched by both threads.
#pragma once

#include "bus/amqp_connection.hpp"
#include "bus/bus.hpp"
#include "bus/factory.hpp"
#include "runtime/last_resort.hpp"

#include <amqp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace chat::bus {

// The counts of CHAT_BUS_STATS (bus.hpp) that the publisher and the consumer
// keep, as relaxed atomics (counts, not synchronization): status() reads
// them from any thread.
#define CHAT_BUS_ATOMIC_FIELD(field, name, type, help) std::atomic<std::uint64_t> field{0};
#define CHAT_BUS_LOAD_FIELD(field, name, type, help) \
  out.field = field.load(std::memory_order_relaxed);
struct PublisherStats {
  CHAT_BUS_PUBLISHER_STATS(CHAT_BUS_ATOMIC_FIELD)
  void fill(BusStatus& out) const { CHAT_BUS_PUBLISHER_STATS(CHAT_BUS_LOAD_FIELD) }
};
struct ConsumerStats {
  CHAT_BUS_CONSUMER_STATS(CHAT_BUS_ATOMIC_FIELD)
  void fill(BusStatus& out) const { CHAT_BUS_CONSUMER_STATS(CHAT_BUS_LOAD_FIELD) }
};
#undef CHAT_BUS_ATOMIC_FIELD
#undef CHAT_BUS_LOAD_FIELD

// One history stream: a partition's, or (the last, with several) the
// reserved rooms'. Constant.
struct StreamDesc {
  std::string stream;   // its name
  std::string binding;  // its binding key on the exchange
  bool always = false;  // read whatever the rooms (one partition, or the reserved one)
};

class AmqpCommon {
 public:
  // Throws std::invalid_argument for a malformed URL (start-up only).
  explicit AmqpCommon(BusConfig config);
  AmqpCommon(const AmqpCommon&) = delete;
  AmqpCommon& operator=(const AmqpCommon&) = delete;

  const BusConfig config;
  const std::vector<AmqpUrl> urls;  // the broker's nodes
  const std::uint32_t nparts;       // room partitions (1: one stream for everything)
  // nparts streams, plus the reserved rooms' one when nparts > 1.
  const std::vector<StreamDesc> streams;
  // Each thread starts at a node picked by the instance id (so replicas
  // spread over a RabbitMQ cluster) and moves to the next one whenever a
  // connection fails or is lost.
  std::size_t first_node() const;

  // The routing key of a room's envelopes (in its partition with several).
  std::string key_for(const std::string& room, std::uint32_t part) const;
  // Declare a history stream (idempotent) on channel ch. A stream that
  // exists with other settings is used as it is (a warning).
  bool declare_stream(amqp_connection_state_t conn, amqp_channel_t ch, const std::string& stream,
                      bool confirm_mode, std::string& error) const;

  // Stopping, once: no longer ready, and the threads end. stopping() is
  // read by both threads at every turn.
  bool stopping() const { return stopping_.load(); }
  void request_stop();
  // Sleep the next backoff of attempt (exponential, jittered) unless stop
  // is requested; false when stopping.
  bool backoff_sleep(int& attempt);
  // A thread of the bus, running body: counted until body returns, so
  // wait_threads can wait for all of them, up to timeout.
  std::thread spawn(std::function<void()> body);
  bool wait_threads(std::chrono::milliseconds timeout);

  // Connection state, reported to the application in order, once each change.
  void set_state_handler(Bus::StateHandler on_state) { on_state_ = std::move(on_state); }
  void set_publisher_up(bool up);
  void set_consumer_up(bool up);
  bool publisher_up() const { return publisher_up_.load(std::memory_order_relaxed); }
  bool consumer_up() const { return consumer_up_.load(std::memory_order_relaxed); }
  void report_state();
  void set_error(const std::string& error);
  std::string last_error() const;

  // Hand-over 1: own envelope ids the consumer read back from the streams,
  // in stream order, for the publisher's read-back check. Bounded.
  void hand_seen(std::vector<std::string>& ids);  // consumer: takes them (ids left empty)
  std::vector<std::string> take_seen();           // publisher
  // Hand-over 2: whether a partition's stream is read now.
  void set_reading(std::size_t part, bool on) {
    reading_[part].store(on, std::memory_order_relaxed);
  }
  bool reading(std::size_t part) const { return reading_[part].load(std::memory_order_relaxed); }

  // History mode, broker unreachable: own room envelopes are delivered to
  // local members at publish (local rooms keep working); their copies from
  // the stream then go to the history only. Bounded by outbox_max ids.
  void note_delivered_locally(const std::string& id);
  // True once for an id noted above (and forgets it); any thread.
  bool delivered_locally(const std::string& id);

  runtime::LastResort last_resort{"bus"};
  std::atomic<std::uint64_t> reconnects{0};

 private:
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;  // under state_mu_
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  int threads_running_ = 0;  // under stop_mu_

  Bus::StateHandler on_state_;
  std::mutex state_mu_;
  bool reported_ready_ = false;
  std::atomic<bool> publisher_up_{false};
  std::atomic<bool> consumer_up_{false};
  mutable std::mutex error_mu_;
  std::string last_error_;

  std::mutex seen_mu_;
  std::vector<std::string> seen_ids_;
  std::unique_ptr<std::atomic<bool>[]> reading_;

  std::mutex local_mu_;
  std::unordered_set<std::string> local_ids_;
  std::deque<std::string> local_fifo_;
  std::atomic<std::size_t> local_count_{0};
};

// Small helpers of both threads.
namespace amqp {
inline amqp_bytes_t as_bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}
inline std::string to_string(const amqp_bytes_t& b) {
  return std::string(static_cast<const char*>(b.bytes), b.len);
}
// Answer connection.close so the broker can free the connection at once.
void close_ok(amqp_connection_state_t conn);
// Why the broker closed a channel or connection, from the method frame.
std::string close_reason(const amqp_frame_t& f);
std::int64_t wall_ms();
// Heartbeats are serviced only inside library calls; poll at most this long.
int poll_budget_ms(int heartbeat_s);
// An eventfd that wakes a thread sleeping in poll(), and its reset.
int make_wake_fd();
void wake(int fd);
void drain_wake(int fd);
}  // namespace amqp

}  // namespace chat::bus
