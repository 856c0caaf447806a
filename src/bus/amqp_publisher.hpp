// AmqpPublisher: the RabbitMQ bus's publishing side, one thread on one
// rabbitmq-c connection (blocking and not thread-safe, so it is this
// thread's alone).
//
// publish() (any thread) puts a serialized envelope into a bounded outbox
// (control traffic in a queue of its own, sent first); the thread joins
// runs of one room into one broker message, publishes, and settles each
// envelope's confirm handler when the broker acks or nacks it. What was
// unconfirmed when the connection died is published again after the
// reconnect (at-least-once; receivers drop the second copy by id). With
// history it also checks that what the broker confirmed is read back from
// the stream (read_back below) and publishes again what a change of stream
// leader lost.
#pragma once

#include "bus/amqp_common.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace chat::bus {

class AmqpPublisher {
 public:
  explicit AmqpPublisher(AmqpCommon& common);
  ~AmqpPublisher();
  AmqpPublisher(const AmqpPublisher&) = delete;
  AmqpPublisher& operator=(const AmqpPublisher&) = delete;

  void start();
  // Stopping: wake the thread (it flushes for up to a second), cut a
  // connection stuck on a frozen broker, wait for the thread.
  void wake();
  void interrupt() { conn_.interrupt(); }
  void join();

  // Any thread. Queue e for the broker; confirm hears how it ended (at once
  // when it is refused: outbox full, or the bus stopped).
  void publish(const Envelope& e, Bus::ConfirmHandler confirm);
  // Any thread. A probe (reserved room, delivered to nobody) into a
  // partition's stream, sent first.
  void send_probe(std::uint32_t part, std::string id);
  void fill(BusStatus& s) const;

 private:
  using Clock = std::chrono::steady_clock;
  // One broker message to publish: one envelope, or several of one room
  // joined by the publisher (count > 1, their confirms in `more`).
  struct Pending {
    std::string body;
    std::string key;
    std::string origin;
    std::string id;
    Bus::ConfirmHandler confirm;
    std::size_t count = 1;
    std::size_t bytes = 0;  // held against outbox_max_bytes (its envelopes' bodies)
    std::vector<Bus::ConfirmHandler> more;
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
  using Inflight = std::map<std::uint64_t, Pending>;
  // One envelope, serialized and routed (no confirm handler, not held).
  Pending pending_of(const Envelope& e) const;
  // Settle p and release what it held.
  std::size_t finish(Pending& p, PublishStatus status);
  void inflight_add(Inflight& inflight, std::uint64_t tag, Pending p);
  // Join runs of single envelopes with the same routing key into one message.
  static void join_runs(std::vector<Pending>& batch);

  void main();
  // Returns when the connection fails or the bus stops; inflight holds what
  // was published but not confirmed.
  // hold_chat: just reconnected; control goes out at once, chat traffic
  // (and readiness) waits for the own consumer and the settle time.
  void run(Inflight& inflight, std::vector<Pending>& batch, bool hold_chat);
  bool setup(std::string& error);
  // The broker closed the channel (it refused a message): find the refused
  // one among what was in flight, drop it when it was refused
  // max_publish_attempts times alone, put the rest back at the outbox head.
  void isolate_refused(Inflight& inflight);
  void requeue(Inflight& inflight);
  bool reopen_channel(std::string& error);
  // Handle one frame read on the connection; false = connection unusable.
  bool on_frame(const amqp_frame_t& frame, Inflight& inflight);

  // Read-back check (history mode). A broker can confirm a message that a
  // change of stream leader then loses: with a RabbitMQ cluster, messages
  // published through a surviving node while the leader's node died were
  // confirmed and never stored. Our consumer reads our own envelopes back
  // from the stream, and the stream keeps one channel's messages in the
  // order sent: a confirmed message not read back while a later one is was
  // lost, and is published again (receivers drop a second copy by id). A
  // probe, sent when a confirmed message stays unread, finds a lost tail.
  // This thread only.
  struct Check {
    std::string id;         // of the broker message (its first envelope)
    std::size_t bytes = 0;  // of the body kept, counted in check_bytes_
    Pending p;              // once confirmed: what to publish again (confirms settled)
    bool confirmed = false;
    bool seen = false;
    bool lost = false;       // found missing before its confirm came
    std::uint32_t part = 0;  // order holds per stream: checked against its partition only
    Clock::time_point confirmed_at;
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
  Clock::time_point last_probe_{};
  Clock::time_point last_sweep_{};  // checks of partitions not read

  AmqpCommon& common_;
  const BusConfig& config_;
  std::size_t node_ = 0;  // index into the broker's nodes; this thread only

  // Outbox: filled by publish() on any thread, drained by this thread.
  std::mutex outbox_mu_;
  bool started_ = false;  // under outbox_mu_
  std::deque<Pending> outbox_;
  // Control traffic (presence heartbeats, deltas, snapshots): its own queue,
  // drained first, so it never waits behind chat traffic.
  std::deque<Pending> control_;
  bool outbox_closed_ = false;          // the thread has exited
  bool idle_ = false;                   // the thread sleeps in poll(): wake it
  int wake_fd_ = -1;                    // eventfd
  int channel_error_ = 0;               // reply code of a channel.close (this thread only)
  std::size_t inflight_envelopes_ = 0;  // chat, this thread only
  std::size_t inflight_control_ = 0;    // control, this thread only

  // The connection is a member so stop can interrupt a call stuck on a frozen broker.
  AmqpConnection conn_;
  std::thread thread_;

  // held_bytes: chat publishes not yet settled; republished: confirmed, not in
  // the stream, sent again; unchecked: left unchecked, the check window was
  // full; checking: check_seq_.size(), for fill().
  PublisherStats stats_;
};

}  // namespace chat::bus
