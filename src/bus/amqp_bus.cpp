// AmqpBus: publisher and consumer threads over two rabbitmq-c connections.
#include "bus/amqp_bus.hpp"

#include "bus/routing.hpp"

#include <poll.h>

#include <sys/eventfd.h>
#include <unistd.h>
#include <utility>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>

namespace chat::bus {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

amqp_bytes_t as_bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}

std::string to_string(const amqp_bytes_t& b) {
  return std::string(static_cast<const char*>(b.bytes), b.len);
}

// Answer connection.close so the broker can free the connection at once.
void close_ok(amqp_connection_state_t conn) {
  amqp_connection_close_ok_t ok{};
  amqp_send_method(conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
}

// Why the broker closed a channel or connection, from the method frame.
std::string close_reason(const amqp_frame_t& f) {
  if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
    const auto* m = static_cast<const amqp_channel_close_t*>(f.payload.method.decoded);
    return "channel closed by broker: " + std::to_string(m->reply_code) + " " +
           to_string(m->reply_text);
  }
  const auto* m = static_cast<const amqp_connection_close_t*>(f.payload.method.decoded);
  return "connection closed by broker: " + std::to_string(m->reply_code) + " " +
         to_string(m->reply_text);
}

// The stream offset RabbitMQ puts in the headers of a stream delivery; -1 if absent.
std::int64_t stream_offset_of(const amqp_basic_properties_t& props) {
  if (!(props._flags & AMQP_BASIC_HEADERS_FLAG)) return -1;
  for (int i = 0; i < props.headers.num_entries; ++i) {
    const auto& e = props.headers.entries[i];
    if (std::string_view(static_cast<const char*>(e.key.bytes), e.key.len) != "x-stream-offset")
      continue;
    switch (e.value.kind) {
      case AMQP_FIELD_KIND_I64:
        return e.value.value.i64;
      case AMQP_FIELD_KIND_U64:
        return static_cast<std::int64_t>(e.value.value.u64);
      case AMQP_FIELD_KIND_I32:
        return e.value.value.i32;
      case AMQP_FIELD_KIND_U32:
        return e.value.value.u32;
      default:
        return -1;
    }
  }
  return -1;
}

amqp_table_entry_t utf8_entry(const char* key, const std::string& value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = as_bytes(value);
  return e;
}

amqp_table_entry_t i64_entry(const char* key, std::int64_t value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_I64;
  e.value.value.i64 = value;
  return e;
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Heartbeats are serviced only inside library calls; poll at most this long.
int poll_budget_ms(int heartbeat_s) {
  const int half = heartbeat_s > 0 ? heartbeat_s * 1000 / 2 : 1000;
  return std::clamp(half, 50, 250);
}

}  // namespace

AmqpBus::AmqpBus(BusConfig config)
    : config_(std::move(config)),
      stream_(config_.stream.empty() ? config_.exchange + ".history" : config_.stream),
      nparts_(config_.history ? std::clamp<std::uint32_t>(config_.history_partitions, 1, 1024) : 1),
      urls_(parse_amqp_urls(config_.amqp_url)),
      dedupe_(dedupe_window_for(config_)) {
  publisher_node_ = consumer_node_ = std::hash<std::string>{}(config_.instance_id) % urls_.size();
  if (nparts_ == 1) {
    Part p;
    p.stream = stream_;
    p.binding = "room.#";
    p.always = true;
    parts_.push_back(std::move(p));
  } else {
    for (std::uint32_t i = 0; i <= nparts_; ++i) {
      Part p;
      p.stream = stream_ + "." + (i == nparts_ ? std::string("reserved") : std::to_string(i));
      p.binding = "part." + std::to_string(i) + ".#";
      p.always = i == nparts_;
      parts_.push_back(std::move(p));
    }
  }
  reading_ = std::make_unique<std::atomic<bool>[]>(parts_.size());
}

std::string AmqpBus::key_for(const std::string& room, std::uint32_t part) const {
  if (room.empty() || !config_.history || nparts_ == 1) return routing_key(room);
  return "part." + std::to_string(part) + "." + routing_key(room);
}

AmqpBus::~AmqpBus() {
  stop();
  if (publisher_wake_fd_ >= 0) ::close(publisher_wake_fd_);
  if (consumer_wake_fd_ >= 0) ::close(consumer_wake_fd_);
}

void AmqpBus::start(DeliveryHandler on_delivery, StateHandler on_state) {
  if (started_) return;
  started_ = true;
  on_delivery_ = std::move(on_delivery);
  on_state_ = std::move(on_state);
  publisher_wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  consumer_wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  threads_running_ = 2;
  publisher_thread_ = std::thread([this] {
    publisher_main();
    std::lock_guard lock(stop_mu_);
    --threads_running_;
    stop_cv_.notify_all();
  });
  consumer_thread_ = std::thread([this] {
    consumer_main();
    std::lock_guard lock(stop_mu_);
    --threads_running_;
    stop_cv_.notify_all();
  });
}

void AmqpBus::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  wake(publisher_wake_fd_);
  wake(consumer_wake_fd_);
  {
    // The publisher flushes the outbox for up to a second (so a last
    // "goodbye" gets out); a broker that hangs must not hold us longer.
    std::unique_lock lock(stop_mu_);
    stop_cv_.wait_for(lock, milliseconds(1500), [this] { return threads_running_ == 0; });
  }
  if (threads_running_ > 0) {
    spdlog::warn("bus: broker not answering, cutting the connections");
    publisher_conn_.interrupt();
    consumer_conn_.interrupt();
  }
  publisher_thread_.join();
  consumer_thread_.join();
  report_state();
}

// ------------------------------------------------------------------ publish side

void AmqpBus::publish(EnvelopePtr envelope, ConfirmHandler confirm) {
  if (!envelope) return;
  // Local members get it now; the consumer drops our own copy from the broker.
  // With history, room envelopes come back from the stream like everyone
  // else's: one order, and a position, for all members. While the broker is
  // unreachable local members get them now (and the stream copy later only
  // fills the history).
  const bool from_stream = config_.history && !envelope->room.empty();
  const bool broker_up =
      publisher_up_.load(std::memory_order_relaxed) && consumer_up_.load(std::memory_order_relaxed);
  if (from_stream && !broker_up) {
    std::lock_guard lock(local_mu_);
    if (local_ids_.insert(envelope->id).second) local_fifo_.push_back(envelope->id);
    while (local_fifo_.size() > std::max<std::size_t>(1, config_.outbox_max)) {
      local_ids_.erase(local_fifo_.front());
      local_fifo_.pop_front();
    }
    local_count_.store(local_ids_.size(), std::memory_order_relaxed);
  }
  if (on_delivery_ && (!from_stream || !broker_up))
    on_delivery_(std::vector<EnvelopePtr>{envelope});
  Pending p = pending_of(*envelope);
  p.confirm = std::move(confirm);
  p.bytes = p.body.size();
  PublishStatus refused = PublishStatus::ok;
  {
    std::lock_guard lock(outbox_mu_);
    if (outbox_closed_ || !started_) {
      refused = PublishStatus::unavailable;
    } else if (p.control) {
      // Small and few (a heartbeat a second, a delta per presence change);
      // bounded by count on its own so chat traffic cannot crowd it out.
      if (control_.size() >= kControlMax) {
        refused = PublishStatus::full;
      } else {
        p.bytes = 0;
        control_.push_back(std::move(p));
        if (publisher_idle_) {
          publisher_idle_ = false;
          wake(publisher_wake_fd_);
        }
      }
    } else if (outbox_.size() >= std::max<std::size_t>(1, config_.outbox_max) ||
               held_bytes_.load(std::memory_order_relaxed) + p.bytes > config_.outbox_max_bytes) {
      // Full: refuse the new one at once. What was accepted keeps its place
      // and its sender's ack, and this sender hears now, not after a timeout.
      refused = PublishStatus::full;
    } else {
      held_bytes_.fetch_add(p.bytes, std::memory_order_relaxed);
      outbox_.push_back(std::move(p));
      outbox_depth_.store(outbox_.size(), std::memory_order_relaxed);
      if (publisher_idle_) {
        publisher_idle_ = false;
        wake(publisher_wake_fd_);
      }
    }
  }
  // Confirm handlers run outside the lock.
  if (refused != PublishStatus::ok)
    (refused == PublishStatus::full ? refused_ : outbox_dropped_)
        .fetch_add(p.settle(refused, last_resort_), std::memory_order_relaxed);
}

std::size_t AmqpBus::finish(Pending& p, PublishStatus status) {
  held_bytes_.fetch_sub(std::exchange(p.bytes, 0), std::memory_order_relaxed);
  return p.settle(status, last_resort_);
}

void AmqpBus::inflight_add(std::map<std::uint64_t, Pending>& inflight, std::uint64_t tag,
                           Pending p) {
  (p.control ? inflight_control_ : inflight_envelopes_) += p.count;
  inflight.emplace(tag, std::move(p));
}

void AmqpBus::publisher_main() {
  std::map<std::uint64_t, Pending> inflight;
  std::vector<Pending> batch;  // taken from the outbox, not yet sent
  int attempt = 0;
  std::size_t publisher_tried = 0;
  bool was_connected = false;
  bool failed_before = false;
  while (!stopping_) {
    std::string err;
    const auto& url = urls_[publisher_node_ % urls_.size()];
    if (!publisher_conn_.open(url, config_.instance_id + " publisher", config_.heartbeat_s,
                              milliseconds(config_.rpc_timeout_ms), err) ||
        !setup_publisher(publisher_conn_, err)) {
      publisher_conn_.abandon();
      ++publisher_node_;
      failed_before = true;
      // A cluster's other nodes are tried at once; the backoff is per round.
      if (++publisher_tried < urls_.size()) continue;
      publisher_tried = 0;
      if (attempt == 0 || attempt % 20 == 0) spdlog::warn("bus publisher: {}", err);
      set_error("publisher: " + err);
      if (!backoff_sleep(attempt)) break;
      continue;
    }
    attempt = 0;
    publisher_tried = 0;
    if (was_connected) reconnects_.fetch_add(1, std::memory_order_relaxed);
    const bool settle = was_connected || failed_before;
    was_connected = true;
    spdlog::info("bus publisher connected to {}:{}", url.host, url.port);
    try {
      // A channel the broker closed over one message opens again on the
      // same connection: the broker did not go away, so no settle time.
      bool hold = settle;
      for (;;) {
        publisher_channel_error_ = 0;
        run_publisher(publisher_conn_, inflight, batch, hold);
        if (publisher_channel_error_ == 0 || stopping_) break;
        hold = false;
        isolate_refused(inflight);
        if (!reopen_publisher_channel(publisher_conn_, err)) {
          set_error("publisher: reopening the channel: " + err);
          break;
        }
      }
    } catch (...) {
      // Out of memory, most likely: treat it like a lost connection, so
      // what was sent is sent again and the thread lives on.
      last_resort_.caught();
      set_error("publisher: internal error");
      for (auto& p : batch) outbox_dropped_.fetch_add(finish(p, PublishStatus::unavailable));
    }
    batch.clear();
    set_publisher_up(false);
    if (stopping_) {
      publisher_conn_.close();
    } else {
      spdlog::warn("bus publisher disconnected ({} unconfirmed will be sent again)",
                   inflight.size());
      publisher_conn_.abandon();
      failed_before = true;
      ++publisher_node_;  // that node may be gone: try the next one first
    }
    requeue(inflight);
  }
  // Stopping: whatever is left was never confirmed.
  std::deque<Pending> left;
  {
    std::lock_guard lock(outbox_mu_);
    outbox_closed_ = true;
    left.swap(outbox_);
    for (auto& p : control_) left.push_back(std::move(p));
    control_.clear();
    outbox_depth_ = 0;
  }
  checks_.clear();
  check_seq_.clear();
  check_bytes_ = 0;
  if (!left.empty()) spdlog::warn("bus: {} publishes not confirmed at stop", left.size());
  for (auto& p : left)
    outbox_dropped_.fetch_add(finish(p, PublishStatus::unavailable), std::memory_order_relaxed);
}

AmqpBus::Pending AmqpBus::pending_of(const Envelope& e) const {
  Pending p;
  p.body = serialize(e);
  p.part = e.room.empty() ? 0 : partition_of(e.room, nparts_);
  p.key = key_for(e.room, p.part);
  p.origin = e.origin;
  p.id = e.id;
  p.control = e.room.empty();
  return p;
}

std::size_t AmqpBus::Pending::settle(PublishStatus status, runtime::LastResort& lr) {
  auto call = [&](ConfirmHandler& cb) {
    if (!cb) return;
    try {
      std::exchange(cb, nullptr)(status);
    } catch (...) {
      lr.caught();
    }
  };
  call(confirm);
  for (auto& cb : more) call(cb);
  more.clear();
  return count;
}

// A joined message (kJoinMaxBytes, kJoinMaxEnvelopes) stays well under the
// broker's frame size and keeps one slow consumer's burst small.

void AmqpBus::join_runs(std::vector<Pending>& batch) {
  // Compacts in place: what goes to batch[w] is read from [i, j) with w <= i.
  std::size_t w = 0;
  std::size_t i = 0;
  while (i < batch.size()) {
    // [i, j): singles with the same routing key, within the limits.
    std::size_t j = i + 1;
    std::size_t bytes = batch[i].body.size();
    if (batch[i].count == 1 && !batch[i].suspect) {
      while (j < batch.size() && batch[j].count == 1 && !batch[j].suspect &&
             batch[j].key == batch[i].key && j - i < kJoinMaxEnvelopes &&
             bytes + batch[j].body.size() + 1 <= kJoinMaxBytes) {
        bytes += batch[j].body.size() + 1;
        ++j;
      }
    }
    if (j - i == 1) {
      if (w != i) batch[w] = std::move(batch[i]);
    } else {
      std::vector<const std::string*> bodies;
      bodies.reserve(j - i);
      for (std::size_t k = i; k < j; ++k) bodies.push_back(&batch[k].body);
      Pending joined;
      joined.body = join_batch(bodies);
      joined.key = batch[i].key;
      joined.control = batch[i].control;  // one key: all control or none
      joined.probe = batch[i].probe;
      joined.origin = batch[i].origin;
      joined.id = batch[i].id;  // message-id of the broker message: its first envelope
      joined.confirm = std::move(batch[i].confirm);
      joined.count = j - i;
      for (std::size_t k = i; k < j; ++k) joined.bytes += batch[k].bytes;
      joined.more.reserve(j - i - 1);
      for (std::size_t k = i + 1; k < j; ++k) joined.more.push_back(std::move(batch[k].confirm));
      batch[w] = std::move(joined);
    }
    ++w;
    i = j;
  }
  batch.resize(w);
}

bool AmqpBus::setup_publisher(AmqpConnection& c, std::string& error) {
  auto* conn = c.get();
  amqp_confirm_select(conn, 1);
  auto r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "confirm.select: " + AmqpConnection::describe(r);
    return false;
  }
  amqp_exchange_declare(conn, 1, amqp_cstring_bytes(config_.exchange.c_str()),
                        amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
  r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "exchange.declare: " + AmqpConnection::describe(r);
    return false;
  }
  if (config_.history) {
    // The stream is bound before anything is published: a confirm then
    // means the stream has the message.
    for (const auto& part : parts_) {
      if (!declare_stream(conn, 1, part.stream, true, error)) return false;
      amqp_queue_bind(conn, 1, as_bytes(part.stream), amqp_cstring_bytes(config_.exchange.c_str()),
                      as_bytes(part.binding), amqp_empty_table);
      r = amqp_get_rpc_reply(conn);
      if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        error = "queue.bind " + part.stream + ": " + AmqpConnection::describe(r);
        return false;
      }
    }
  }
  return true;
}

bool AmqpBus::declare_stream(amqp_connection_state_t conn, amqp_channel_t ch,
                             const std::string& stream, bool confirm_mode, std::string& error) {
  const std::string type = "stream";
  const auto max_bytes =
      // The bound is the history's: shared evenly by its partitions' streams.
      static_cast<std::int64_t>(
          std::max<std::uint64_t>(config_.stream_max_bytes / parts_.size(), 1 << 20));
  // Retention drops whole segments: several per stream keep the bound close.
  const std::int64_t segment = std::clamp<std::int64_t>(max_bytes / 8, 1 << 20, 100 << 20);
  amqp_table_entry_t entries[] = {
      utf8_entry("x-queue-type", type),
      utf8_entry("x-max-age", config_.stream_max_age),
      i64_entry("x-max-length-bytes", max_bytes),
      i64_entry("x-stream-max-segment-size-bytes", segment),
  };
  amqp_table_t args{static_cast<int>(std::size(entries)), entries};
  amqp_queue_declare(conn, ch, as_bytes(stream), 0, 1, 0, 0, args);
  auto r = amqp_get_rpc_reply(conn);
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return true;
  const bool other_settings =
      r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
      static_cast<const amqp_channel_close_t*>(r.reply.decoded)->reply_code == 406;
  if (!other_settings) {
    error = "queue.declare " + stream + ": " + AmqpConnection::describe(r);
    return false;
  }
  // The stream exists with other retention settings (set by an operator, a
  // policy or an older replica): keep them, and say so.
  spdlog::warn("bus: history stream {} exists with other settings ({}); using it as it is", stream,
               AmqpConnection::describe(r));
  amqp_channel_close_ok_t ok{};
  amqp_send_method(conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
  amqp_channel_open(conn, ch);
  r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "channel.open: " + AmqpConnection::describe(r);
    return false;
  }
  if (confirm_mode) {
    // The publisher's channel is in confirm mode: the new one needs it again.
    amqp_confirm_select(conn, ch);
    r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      error = "confirm.select: " + AmqpConnection::describe(r);
      return false;
    }
  }
  amqp_queue_declare(conn, ch, as_bytes(stream), 1, 1, 0, 0, amqp_empty_table);
  r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "queue.declare (passive) " + stream + ": " + AmqpConnection::describe(r);
    return false;
  }
  return true;
}

void AmqpBus::requeue(std::map<std::uint64_t, Pending>& inflight) {
  // Unconfirmed publishes go out again, first, in their original order.
  for (auto& [tag, p] : inflight) check_forget(p);
  std::lock_guard lock(outbox_mu_);
  for (auto it = inflight.rbegin(); it != inflight.rend(); ++it)
    (it->second.control ? control_ : outbox_).push_front(std::move(it->second));
  inflight.clear();
  inflight_envelopes_ = 0;
  inflight_control_ = 0;
  outbox_depth_.store(outbox_.size(), std::memory_order_relaxed);
}

void AmqpBus::isolate_refused(std::map<std::uint64_t, Pending>& inflight) {
  // The broker dropped the refused publish and everything after it on the
  // channel, and may not have confirmed those before it: any of them can be
  // the one. Each goes again alone (after the ones before it are confirmed),
  // so the next refusal names its message.
  const bool alone = inflight.size() == 1;
  for (auto& [tag, p] : inflight) {
    p.suspect = true;
    if (alone) ++p.failures;
  }
  std::optional<Pending> poison;
  if (alone && inflight.begin()->second.failures >= std::max(1, config_.max_publish_attempts)) {
    check_forget(inflight.begin()->second);
    poison.emplace(std::move(inflight.begin()->second));
    inflight.clear();
    inflight_envelopes_ = 0;
    inflight_control_ = 0;
  }
  requeue(inflight);
  if (poison) {
    std::string why;
    {
      std::lock_guard lock(error_mu_);
      why = last_error_;
    }
    spdlog::warn("bus: the broker refused a message {} times ({}), dropping it ({} envelopes)",
                 poison->failures, why, poison->count);
    rejected_.fetch_add(finish(*poison, PublishStatus::rejected), std::memory_order_relaxed);
  }
}

bool AmqpBus::reopen_publisher_channel(AmqpConnection& c, std::string& error) {
  auto* conn = c.get();
  amqp_channel_open(conn, 1);
  const auto r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "channel.open: " + AmqpConnection::describe(r);
    return false;
  }
  c.note_rx();
  return setup_publisher(c, error);
}

void AmqpBus::run_publisher(AmqpConnection& c, std::map<std::uint64_t, Pending>& inflight,
                            std::vector<Pending>& batch, bool hold_chat) {
  auto* conn = c.get();
  std::uint64_t next_tag = 1;  // confirm-mode delivery tags count from 1 per channel
  std::optional<Clock::time_point> flush_deadline;
  const auto exchange = amqp_cstring_bytes(config_.exchange.c_str());
  const int budget = poll_budget_ms(config_.heartbeat_s);
  const std::size_t max_inflight = std::max<std::size_t>(1, config_.max_inflight);
  const auto max_batch = std::max<std::size_t>(1, config_.max_batch);
  // After a reconnect chat traffic waits until our own consumer is back and
  // then the settle time, so the other replicas have their queues bound
  // again and nothing is routed to nobody; readiness waits with it (the
  // application does not expire other replicas' presence meanwhile).
  // Control traffic goes at once: a heartbeat routed to nobody costs nothing
  // and the others hear from us as soon as their queues are back.
  const auto hold_start = Clock::now();
  const auto settle = milliseconds(config_.resume_settle_ms);
  std::optional<Clock::time_point> consumer_seen;
  // With history nothing is routed to nobody: the stream keeps it and every
  // replica reads on from its last position.
  if (config_.history) hold_chat = false;
  if (!hold_chat) set_publisher_up(true);
  for (;;) {
    if (hold_chat) {
      const auto now = Clock::now();
      if (consumer_up_ && !consumer_seen) consumer_seen = now;
      // Never wait for our own consumer forever: it may fail for other reasons.
      if ((consumer_seen && now - std::max(hold_start, *consumer_seen) >= settle) ||
          now - hold_start >= settle + milliseconds(30000)) {
        hold_chat = false;
        set_publisher_up(true);
      }
    }
    if (stopping_) {
      if (!flush_deadline) flush_deadline = Clock::now() + milliseconds(1000);
      bool empty;
      {
        std::lock_guard lock(outbox_mu_);
        empty = outbox_.empty() && control_.empty();
      }
      if ((empty && inflight.empty()) || Clock::now() >= *flush_deadline) return;
    }
    batch.clear();
    if (config_.history) check_read_back();
    {
      std::lock_guard lock(outbox_mu_);
      // Unconfirmed publishes are bounded too: a broker that reads but never
      // confirms must not make the in-flight map grow without limit. Counted
      // in envelopes, so the dedupe window can cover every re-publish.
      auto take = [&](std::deque<Pending>& q, std::size_t in_flight, std::size_t bound) {
        std::size_t taken = 0;
        while (!q.empty() && batch.size() < max_batch && in_flight + taken < bound) {
          // A suspect goes alone, once everything before it is confirmed.
          if (!batch.empty() && batch.back().suspect) return;
          if (q.front().suspect && (!batch.empty() || !inflight.empty())) return;
          batch.push_back(std::move(q.front()));
          q.pop_front();
          taken += batch.back().count;
        }
      };
      take(control_, inflight_control_, kControlInflight);
      if (!hold_chat) take(outbox_, inflight_envelopes_, max_inflight);
      outbox_depth_.store(outbox_.size(), std::memory_order_relaxed);
    }
    // What queued up while the previous round ran goes out joined: under load
    // the broker handles one message per room and round instead of one per
    // envelope; when idle a round holds one envelope and nothing waits.
    join_runs(batch);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto& p = batch[i];
      amqp_basic_properties_t props{};
      props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                     AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
      props.content_type = amqp_cstring_bytes("application/json");
      // Transient: the per-replica queues do not outlive the broker. The
      // history stream stores room messages on disk whatever this says.
      props.delivery_mode = config_.history && !p.control ? 2 : 1;
      props.app_id = as_bytes(p.origin);
      props.message_id = as_bytes(p.id);
      const int st =
          amqp_basic_publish(conn, 1, exchange, as_bytes(p.key), 0, 0, &props, as_bytes(p.body));
      if (st != AMQP_STATUS_OK) {
        set_error("publisher: publish: " + AmqpConnection::describe(st));
        std::lock_guard lock(outbox_mu_);
        for (std::size_t j = batch.size(); j-- > i;)
          (batch[j].control ? control_ : outbox_).push_front(std::move(batch[j]));
        outbox_depth_.store(outbox_.size(), std::memory_order_relaxed);
        batch.clear();
        return;
      }
      published_.fetch_add(p.count, std::memory_order_relaxed);
      broker_messages_.fetch_add(1, std::memory_order_relaxed);
      if (config_.history && !p.control) check_sent(p);
      inflight_add(inflight, next_tag++, std::move(p));
    }
    const bool sent_any = !batch.empty();
    batch.clear();
    // Read confirms (and send a heartbeat when due) without waiting.
    for (;;) {
      amqp_frame_t frame;
      timeval zero{0, 0};
      const int st = amqp_simple_wait_frame_noblock(conn, &frame, &zero);
      if (st == AMQP_STATUS_TIMEOUT) break;
      if (st != AMQP_STATUS_OK) {
        set_error("publisher: " + AmqpConnection::describe(st));
        return;
      }
      c.note_rx();
      if (!on_publisher_frame(frame, inflight)) return;
    }
    if (c.silent_too_long()) {
      set_error("publisher: the broker has been silent for two heartbeat intervals");
      return;
    }
    amqp_maybe_release_buffers(conn);
    if (sent_any) continue;
    {
      std::lock_guard lock(outbox_mu_);
      auto ready = [&](const std::deque<Pending>& q, std::size_t in_flight, std::size_t bound) {
        return !q.empty() && in_flight < bound && !(q.front().suspect && !inflight.empty());
      };
      const bool can_send = ready(control_, inflight_control_, kControlInflight) ||
                            (!hold_chat && ready(outbox_, inflight_envelopes_, max_inflight));
      if (can_send) continue;
      publisher_idle_ = true;
    }
    // The read loop above took every complete frame out of the library's
    // buffer, so whatever is left there is a partial frame: wait for the socket.
    {
      pollfd fds[2] = {{c.fd(), POLLIN, 0}, {publisher_wake_fd_, POLLIN, 0}};
      if (::poll(fds, 2, stopping_ ? 20 : budget) > 0 && fds[0].revents != 0) c.note_rx();
    }
    {
      std::lock_guard lock(outbox_mu_);
      publisher_idle_ = false;
    }
    drain_wake(publisher_wake_fd_);
  }
}

bool AmqpBus::on_publisher_frame(const amqp_frame_t& frame,
                                 std::map<std::uint64_t, Pending>& inflight) {
  // basic.return is followed by header and body frames: nothing to do with them.
  if (frame.frame_type != AMQP_FRAME_METHOD) return true;
  const auto id = frame.payload.method.id;
  if (id == AMQP_BASIC_ACK_METHOD || id == AMQP_BASIC_NACK_METHOD) {
    const bool ok = id == AMQP_BASIC_ACK_METHOD;
    std::uint64_t tag;
    bool multiple;
    if (ok) {
      const auto* m = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
      tag = m->delivery_tag;
      multiple = m->multiple;
    } else {
      const auto* m = static_cast<const amqp_basic_nack_t*>(frame.payload.method.decoded);
      tag = m->delivery_tag;
      multiple = m->multiple;
    }
    std::vector<Pending> done;
    if (multiple) {
      auto end = inflight.upper_bound(tag);
      for (auto it = inflight.begin(); it != end; ++it) done.push_back(std::move(it->second));
      inflight.erase(inflight.begin(), end);
    } else if (auto it = inflight.find(tag); it != inflight.end()) {
      done.push_back(std::move(it->second));
      inflight.erase(it);
    }
    std::size_t envelopes = 0;
    for (auto& p : done) {
      envelopes += p.count;
      auto& n = p.control ? inflight_control_ : inflight_envelopes_;
      n -= std::min(n, p.count);
    }
    (ok ? confirmed_ : nacked_).fetch_add(envelopes, std::memory_order_relaxed);
    for (auto& p : done) {
      const auto status = ok ? PublishStatus::ok : PublishStatus::unavailable;
      if (p.seq != 0)
        check_confirmed(p, status);
      else
        finish(p, status);
    }
    return true;
  }
  if (id == AMQP_BASIC_RETURN_METHOD) {
    returned_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  if (id == AMQP_CONNECTION_CLOSE_METHOD) {
    set_error("publisher: " + close_reason(frame));
    close_ok(publisher_conn_.get());
    return false;
  }
  if (id == AMQP_CHANNEL_CLOSE_METHOD) {
    // The broker refused something we sent (message too large, no write
    // permission on the routing key, exchange gone): it drops what follows
    // on the channel until we acknowledge the close.
    set_error("publisher: " + close_reason(frame));
    const auto* m = static_cast<const amqp_channel_close_t*>(frame.payload.method.decoded);
    publisher_channel_error_ = m->reply_code ? m->reply_code : 1;
    amqp_channel_close_ok_t ok{};
    amqp_send_method(publisher_conn_.get(), 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    return false;
  }
  return true;
}

// ------------------------------------------------------------------ read-back check

namespace {
// A confirmed message still unread this long gets a probe behind it.
constexpr auto kProbeAfter = milliseconds(300);
}  // namespace

void AmqpBus::check_sent(Pending& p) {
  p.seq = ++send_seq_;
  Check c;
  c.id = p.id;
  c.part = p.part;
  checks_.emplace(p.seq, std::move(c));
  check_seq_[p.id] = p.seq;
}

void AmqpBus::check_erase(std::map<std::uint64_t, Check>::iterator it) {
  check_bytes_ -= std::min(check_bytes_, it->second.bytes);
  if (auto s = check_seq_.find(it->second.id); s != check_seq_.end() && s->second == it->first)
    check_seq_.erase(s);
  checks_.erase(it);
}

void AmqpBus::check_forget(const Pending& p) {
  if (p.seq == 0) return;
  if (auto it = checks_.find(p.seq); it != checks_.end()) check_erase(it);
}

void AmqpBus::check_confirmed(Pending& p, PublishStatus status) {
  auto it = checks_.find(p.seq);
  finish(p, status);                // the sender hears now: ok is the broker's confirm
  if (it == checks_.end()) return;  // no longer checked
  if (status != PublishStatus::ok || it->second.seen) {
    // Nacked (the sender was told), or read back already.
    check_erase(it);
    return;
  }
  if (it->second.lost) {
    // Missing from the stream while later ones were read: send it again.
    check_erase(it);
    if (!p.probe) republish(std::move(p));
    return;
  }
  auto& c = it->second;
  c.confirmed = true;
  c.confirmed_at = Clock::now();
  c.bytes = p.body.size();
  check_bytes_ += c.bytes;
  c.p = std::move(p);
  // Bounded: a consumer far behind (or gone) must not make this grow.
  const std::size_t max_count = std::max<std::size_t>(1024, config_.outbox_max);
  while (!checks_.empty() &&
         (checks_.size() > max_count || check_bytes_ > config_.outbox_max_bytes)) {
    auto oldest = checks_.begin();
    if (!oldest->second.confirmed) break;
    if (!oldest->second.p.probe)
      unchecked_.fetch_add(oldest->second.p.count, std::memory_order_relaxed);
    check_erase(oldest);
  }
}

void AmqpBus::republish(Pending p) {
  p.seq = 0;
  p.bytes = 0;  // not held against the outbox bound: it was accepted long ago
  p.suspect = false;
  p.failures = 0;
  p.confirm = nullptr;
  p.more.clear();
  republished_.fetch_add(p.count, std::memory_order_relaxed);
  spdlog::warn(
      "bus: message {} was confirmed by the broker but is not in the history stream; "
      "publishing it again",
      p.id);
  std::lock_guard lock(outbox_mu_);
  outbox_.push_front(std::move(p));
  outbox_depth_.store(outbox_.size(), std::memory_order_relaxed);
}

void AmqpBus::check_read_back() {
  std::vector<std::string> seen;
  {
    std::lock_guard lock(seen_mu_);
    seen.swap(seen_ids_);
  }
  // Per partition: each stream keeps one channel's order, not the streams together.
  std::vector<std::uint64_t> newest(parts_.size(), 0);
  std::uint64_t newest_any = 0;
  for (const auto& id : seen) {
    auto s = check_seq_.find(id);
    if (s == check_seq_.end()) continue;
    if (auto it = checks_.find(s->second); it != checks_.end()) {
      it->second.seen = true;
      auto& n = newest[std::min<std::size_t>(it->second.part, parts_.size() - 1)];
      n = std::max(n, it->first);
      newest_any = std::max(newest_any, it->first);
    }
  }
  // Everything sent to a stream before the newest message read back from it
  // was read back too, or the stream lost it.
  for (auto it = checks_.begin(); it != checks_.end() && it->first <= newest_any;) {
    auto& c = it->second;
    if (it->first > newest[std::min<std::size_t>(c.part, parts_.size() - 1)]) {
      ++it;
    } else if (c.seen) {
      check_erase(it++);
    } else if (!c.confirmed) {
      c.lost = true;  // sent again when its confirm comes
      ++it;
    } else {
      Pending again = std::move(c.p);
      check_erase(it++);
      if (!again.probe) republish(std::move(again));
    }
  }
  // Partitions: a message of a stream this replica does not read (any more)
  // cannot be read back; it goes unchecked rather than waiting, and probed,
  // forever. Not while the consumer is away: then nothing is read.
  if (nparts_ > 1 && consumer_up_.load(std::memory_order_relaxed) &&
      Clock::now() - last_sweep_ >= kProbeAfter) {
    last_sweep_ = Clock::now();
    for (auto it = checks_.begin(); it != checks_.end();) {
      const auto part = std::min<std::size_t>(it->second.part, parts_.size() - 1);
      if (!it->second.confirmed || reading_[part].load(std::memory_order_relaxed)) {
        ++it;
        continue;
      }
      if (!it->second.p.probe) unchecked_.fetch_add(it->second.p.count, std::memory_order_relaxed);
      check_erase(it++);
    }
  }
  // A confirmed message unread for a while: a probe behind it tells whether
  // it is lost or the consumer is only behind.
  checking_.store(check_seq_.size(), std::memory_order_relaxed);
  const auto now = Clock::now();
  if (now - last_probe_ < kProbeAfter) return;
  for (const auto& [seq, c] : checks_) {
    if (!c.confirmed) continue;
    if (now - c.confirmed_at < kProbeAfter) return;
    last_probe_ = now;
    // Behind the message it looks for, in its stream.
    send_probe(c.part, "probe-" + std::to_string(++probe_count_));
    return;
  }
}

// ------------------------------------------------------------------ consume side

void AmqpBus::bind_room(const std::string& room) {
  if (room.empty()) return;  // the control key is always bound
  {
    std::lock_guard lock(rooms_mu_);
    if (!rooms_.insert(room).second) return;
    room_ops_.emplace_back(true, room);
  }
  wake(consumer_wake_fd_);
}

void AmqpBus::unbind_room(const std::string& room) {
  if (room.empty()) return;
  {
    std::lock_guard lock(rooms_mu_);
    if (rooms_.erase(room) == 0) return;
    room_ops_.emplace_back(false, room);
  }
  wake(consumer_wake_fd_);
}

void AmqpBus::attach(std::uint32_t partition) {
  if (nparts_ == 1 || partition >= parts_.size()) return;
  {
    std::lock_guard lock(rooms_mu_);
    attach_ops_.push_back(partition);
  }
  wake(consumer_wake_fd_);
}

void AmqpBus::consumer_main() {
  int attempt = 0;
  std::size_t consumer_tried = 0;
  bool was_connected = false;
  while (!stopping_) {
    std::string err;
    std::string queue;
    const auto& url = urls_[consumer_node_ % urls_.size()];
    if (!consumer_conn_.open(url, config_.instance_id + " consumer", config_.heartbeat_s,
                             milliseconds(config_.rpc_timeout_ms), err) ||
        !setup_consumer(consumer_conn_, queue, err)) {
      consumer_conn_.abandon();
      ++consumer_node_;
      // A cluster's other nodes are tried at once; the backoff is per round.
      if (++consumer_tried < urls_.size()) continue;
      consumer_tried = 0;
      if (attempt == 0 || attempt % 20 == 0) spdlog::warn("bus consumer: {}", err);
      set_error("consumer: " + err);
      if (!backoff_sleep(attempt)) break;
      continue;
    }
    attempt = 0;
    consumer_tried = 0;
    if (was_connected) reconnects_.fetch_add(1, std::memory_order_relaxed);
    was_connected = true;
    spdlog::info("bus consumer connected to {}:{}, queue {} ({} rooms bound)", url.host, url.port,
                 queue, bound_rooms_.load());
    set_consumer_up(true);
    try {
      run_consumer(consumer_conn_, queue);
    } catch (...) {
      // Out of memory, most likely: start over on a new connection.
      last_resort_.caught();
      set_error("consumer: internal error");
    }
    set_consumer_up(false);
    bound_rooms_ = 0;
    if (stopping_) {
      consumer_conn_.close();
    } else {
      spdlog::warn("bus consumer disconnected");
      consumer_conn_.abandon();
      ++consumer_node_;
    }
  }
}

bool AmqpBus::setup_consumer(AmqpConnection& c, std::string& queue, std::string& error) {
  auto* conn = c.get();
  const auto exchange = amqp_cstring_bytes(config_.exchange.c_str());
  amqp_exchange_declare(conn, 1, exchange, amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                        amqp_empty_table);
  auto r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "exchange.declare: " + AmqpConnection::describe(r);
    return false;
  }
  const auto* q = amqp_queue_declare(conn, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
  r = amqp_get_rpc_reply(conn);
  if (!q || r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "queue.declare: " + AmqpConnection::describe(r);
    return false;
  }
  queue = to_string(q->queue);
  const auto qb = as_bytes(queue);
  const std::string control(kControlKey);
  amqp_queue_bind(conn, 1, qb, exchange, as_bytes(control), amqp_empty_table);
  r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "queue.bind cluster: " + AmqpConnection::describe(r);
    return false;
  }
  // The new queue has no bindings: apply the full wanted set, which makes
  // the queued changes moot.
  std::set<std::string> rooms;
  {
    std::lock_guard lock(rooms_mu_);
    rooms = rooms_;
    room_ops_.clear();
  }
  // With history, room traffic comes from the stream, not from bindings.
  if (config_.history) rooms.clear();
  for (const auto& room : rooms) {
    const auto key = routing_key(room);
    amqp_queue_bind(conn, 1, qb, exchange, as_bytes(key), amqp_empty_table);
    r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      // Put them back so the next attempt starts from the same wanted set.
      error = "queue.bind " + key + ": " + AmqpConnection::describe(r);
      return false;
    }
  }
  bound_rooms_ = rooms.size();
  if (config_.history) {
    std::lock_guard lock(rooms_mu_);
    bound_rooms_ = rooms_.size();
  }
  // no-ack: the queue is exclusive and dies with the connection, so acks
  // could not save anything; they would only cost a round trip per batch.
  amqp_basic_consume(conn, 1, qb, amqp_empty_bytes, 0, 1, 1, amqp_empty_table);
  r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "basic.consume: " + AmqpConnection::describe(r);
    return false;
  }
  if (!config_.history) return true;
  // The rooms wanted now say which partitions to read; those read before
  // the connection was lost are read on from where they stopped.
  for (auto& part : parts_) {
    part.rooms = 0;
    part.attached = false;
    part.unacked_tag = 0;
  }
  for (std::size_t i = 0; i < parts_.size(); ++i) set_reading(i, false);
  {
    std::lock_guard lock(rooms_mu_);
    for (const auto& room : rooms_) ++parts_[partition_of(room, nparts_)].rooms;
  }
  const auto now = Clock::now();
  for (std::size_t i = 0; i < parts_.size(); ++i) {
    auto& part = parts_[i];
    if (!(part.always || part.rooms > 0 || part.catching_up || now < part.wanted_until)) continue;
    if (!consume_stream(c, i, error)) return false;
    // Up to the present once its probe is back; until then a join waits.
    if (nparts_ > 1) send_sync_probe(i);
  }
  parts_read_.store(reading_count(), std::memory_order_relaxed);
  return true;
}

bool AmqpBus::consume_stream(AmqpConnection& c, std::size_t index, std::string& error) {
  auto* conn = c.get();
  auto& part = parts_[index];
  const auto ch = channel_of(index);
  amqp_channel_open(conn, ch);
  auto r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "channel.open " + std::to_string(ch) + ": " + AmqpConnection::describe(r);
    return false;
  }
  if (!declare_stream(conn, ch, part.stream, false, error)) return false;
  // Streams need acknowledgements and a prefetch bound on their consumers.
  amqp_basic_qos(conn, ch, 0, std::max<std::uint16_t>(1, config_.stream_prefetch), 0);
  r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "basic.qos: " + AmqpConnection::describe(r);
    return false;
  }
  if (attach_ms_ == 0) attach_ms_ = wall_ms();
  const auto backfill_ms = 1000LL * std::max(0, config_.history_backfill_s);
  amqp_table_entry_t from{};
  from.key = amqp_cstring_bytes("x-stream-offset");
  // Resume exactly where the last read stopped: nothing missed, whatever
  // happened meanwhile (a retention trim starts at the first kept). A
  // partition put down longer ago than the backfill starts afresh.
  if (part.next >= 0 && (part.detached_ms == 0 || wall_ms() - part.detached_ms < backfill_ms)) {
    from.value.kind = AMQP_FIELD_KIND_I64;
    from.value.value.i64 = part.next;
  } else {
    // The first time: history_backfill_s back from the bus's first attach
    // (or from now, for a partition read on demand later).
    const auto base = part.detached_ms == 0 && !part.catching_up ? attach_ms_ : wall_ms();
    part.read_since_ms = std::max<std::int64_t>(0, base - backfill_ms);
    from.value.kind = AMQP_FIELD_KIND_TIMESTAMP;
    from.value.value.u64 =
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, (base - backfill_ms) / 1000));
  }
  amqp_table_t args{1, &from};
  amqp_basic_consume(conn, ch, as_bytes(part.stream), amqp_empty_bytes, 0, 0, 0, args);
  r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "basic.consume " + part.stream + ": " + AmqpConnection::describe(r);
    return false;
  }
  part.unacked_tag = 0;
  part.attached = true;
  set_reading(index, true);
  part.synced = false;
  part.detached_ms = 0;
  return true;
}

std::uint32_t AmqpBus::reading_count() const {
  std::uint32_t n = 0;
  for (const auto& part : parts_) n += part.attached ? 1 : 0;
  return n;
}

namespace {
// How long a partition asked for by attach() stays read with no bound room in it.
constexpr auto kPartitionLinger = std::chrono::seconds(60);
// And after its last bound room was unbound.
constexpr auto kUnboundLinger = std::chrono::seconds(5);
// A catch-up whose probe has not come back after this gets another one.
constexpr auto kSyncRetry = milliseconds(1000);
}  // namespace

void AmqpBus::send_probe(std::uint32_t part, std::string id) {
  Envelope e;
  e.origin = config_.instance_id;
  e.id = std::move(id);
  e.room = kProbeRoom;
  e.event = "probe";
  e.payload = nlohmann::json::object();
  e.ts = wall_ms();
  Pending p = pending_of(e);
  p.part = part;
  p.key = key_for(e.room, part);
  p.probe = true;
  probes_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(outbox_mu_);
  outbox_.push_front(std::move(p));
  outbox_depth_.store(outbox_.size(), std::memory_order_relaxed);
  if (publisher_idle_) {
    publisher_idle_ = false;
    wake(publisher_wake_fd_);
  }
}

void AmqpBus::send_sync_probe(std::size_t index) {
  auto& part = parts_[index];
  part.sync_id = "sync-" + std::to_string(index) + "-" + std::to_string(++sync_count_);
  part.sync_sent = Clock::now();
  send_probe(static_cast<std::uint32_t>(index), part.sync_id);
}

std::string AmqpBus::cut_after(std::size_t index, std::int64_t position) const {
  std::string cut;
  for (std::size_t i = 0; i < nparts_; ++i) {
    const auto& part = parts_[i];
    const auto pos = i == index ? position : part.last_pos;
    if (pos < 0 || (i != index && (!part.attached || part.catching_up))) continue;
    if (!cut.empty()) cut += ',';
    cut += std::to_string(i);
    cut += ':';
    cut += std::to_string(pos);
  }
  return cut;
}

EnvelopePtr AmqpBus::synced_notice(std::size_t index) const {
  auto e = std::make_shared<Envelope>();
  e->origin = config_.instance_id;
  e->id = "synced-" + std::to_string(index);
  e->room = kPartitionRoom;
  e->event = kSyncedEvent;
  // since: every message of the partition published after it has been read here.
  e->payload = nlohmann::json{{"since", parts_[index].read_since_ms}};
  e->ts = wall_ms();
  e->partition = static_cast<std::uint32_t>(index);
  e->position = parts_[index].last_pos;
  e->cut = cut_after(index, parts_[index].last_pos);
  return e;
}

bool AmqpBus::apply_partitions(AmqpConnection& c, std::vector<EnvelopePtr>& notices) {
  if (nparts_ == 1) return true;
  std::vector<std::uint32_t> asked;
  {
    std::lock_guard lock(rooms_mu_);
    asked.swap(attach_ops_);
  }
  const auto now = Clock::now();
  std::string error;
  for (std::size_t i = 0; i < parts_.size(); ++i)
    if (!parts_[i].attached && parts_[i].rooms > 0) asked.push_back(static_cast<std::uint32_t>(i));
  for (const auto i : asked) {
    auto& part = parts_[i];
    part.wanted_until = std::max(part.wanted_until, now + kPartitionLinger);
    if (part.attached && part.synced) {
      notices.push_back(synced_notice(i));
      continue;
    }
    if (part.attached) continue;  // its notice comes when its probe is back
    part.catching_up = true;
    part.caught_from_ms = wall_ms();
    if (!consume_stream(c, i, error)) {
      set_error("consumer: " + error);
      return false;
    }
    send_sync_probe(i);
  }
  for (std::size_t i = 0; i < parts_.size(); ++i) {
    auto& part = parts_[i];
    if (!part.attached) continue;
    if (!part.synced && now - part.sync_sent >= kSyncRetry) send_sync_probe(i);
    // Put down what no room here needs any more: its traffic costs nothing then.
    if (part.always || part.rooms > 0 || part.catching_up || now < part.wanted_until) continue;
    auto* conn = c.get();
    if (part.unacked_tag != 0) amqp_basic_ack(conn, channel_of(i), part.unacked_tag, 1);
    amqp_channel_close(conn, channel_of(i), AMQP_REPLY_SUCCESS);
    const auto r = amqp_get_rpc_reply(conn);
    part.attached = false;
    set_reading(i, false);
    part.unacked_tag = 0;
    part.detached_ms = wall_ms();
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      set_error("consumer: channel.close: " + AmqpConnection::describe(r));
      return false;
    }
  }
  parts_read_.store(reading_count(), std::memory_order_relaxed);
  return true;
}

bool AmqpBus::apply_room_ops(AmqpConnection& c, const std::string& queue, bool& did_any) {
  std::vector<std::pair<bool, std::string>> ops;
  {
    std::lock_guard lock(rooms_mu_);
    if (room_ops_.empty()) return true;
    ops.swap(room_ops_);
  }
  if (config_.history) {
    // The streams bring the rooms: nothing to bind, only the counts to keep
    // (a partition is read while a bound room hashes to it).
    const auto now = Clock::now();
    for (const auto& [bind, room] : ops) {
      auto& part = parts_[partition_of(room, nparts_)];
      part.rooms = bind ? part.rooms + 1 : (part.rooms > 0 ? part.rooms - 1 : 0);
      // Read on a little after the last room left: what was just published
      // there is read back (the publisher's check) before it is put down.
      if (!bind) part.wanted_until = std::max(part.wanted_until, now + kUnboundLinger);
    }
    std::lock_guard lock(rooms_mu_);
    bound_rooms_ = rooms_.size();
    return true;
  }
  did_any = true;
  auto* conn = c.get();
  const auto exchange = amqp_cstring_bytes(config_.exchange.c_str());
  const auto qb = as_bytes(queue);
  for (const auto& [bind, room] : ops) {
    const auto key = routing_key(room);
    if (bind)
      amqp_queue_bind(conn, 1, qb, exchange, as_bytes(key), amqp_empty_table);
    else
      amqp_queue_unbind(conn, 1, qb, exchange, as_bytes(key), amqp_empty_table);
    const auto r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      // The reconnect re-applies the whole wanted set, including this one.
      set_error("consumer: queue." + std::string(bind ? "bind " : "unbind ") + key + ": " +
                AmqpConnection::describe(r));
      return false;
    }
    if (bind)
      bound_rooms_.fetch_add(1, std::memory_order_relaxed);
    else if (bound_rooms_ > 0)
      bound_rooms_.fetch_sub(1, std::memory_order_relaxed);
  }
  return true;
}

void AmqpBus::run_consumer(AmqpConnection& c, const std::string& queue) {
  auto* conn = c.get();
  const int budget = poll_budget_ms(config_.heartbeat_s);
  const auto max_batch = std::max<std::size_t>(1, config_.max_batch);
  std::vector<EnvelopePtr> batch;
  auto flush = [&] {
    if (!batch.empty()) {
      try {
        if (on_delivery_) on_delivery_(std::move(batch));
      } catch (...) {
        last_resort_.caught();
      }
      batch = {};
    }
    // Stream deliveries are acknowledged once handed over, one ack per batch.
    for (std::size_t i = 0; i < parts_.size(); ++i)
      if (parts_[i].unacked_tag != 0)
        amqp_basic_ack(conn, channel_of(i), std::exchange(parts_[i].unacked_tag, 0), 1);
    if (!seen_local_.empty()) {
      std::lock_guard lock(seen_mu_);
      // Bounded: a publisher thread that is gone must not make this grow.
      if (seen_ids_.size() + seen_local_.size() >
          4 * std::max<std::size_t>(1024, config_.outbox_max))
        seen_ids_.clear();
      if (seen_ids_.empty())
        seen_ids_.swap(seen_local_);
      else
        seen_ids_.insert(seen_ids_.end(), std::make_move_iterator(seen_local_.begin()),
                         std::make_move_iterator(seen_local_.end()));
      seen_local_.clear();
    }
  };
  // After an RPC (setup, bind, unbind) complete deliveries may sit in the
  // library's buffer where poll() cannot see them: read before waiting.
  bool read_first = true;
  // The bus's notices (a partition synced) go alone, after what came before them.
  std::vector<EnvelopePtr> notices;
  auto notify = [&] {
    if (notices.empty()) return;
    flush();
    for (auto& n : notices) {
      try {
        if (on_delivery_) on_delivery_(std::vector<EnvelopePtr>{std::move(n)});
      } catch (...) {
        last_resort_.caught();
      }
    }
    notices.clear();
  };
  while (!stopping_) {
    bool did_ops = false;
    if (!apply_room_ops(c, queue, did_ops)) return;
    if (!apply_partitions(c, notices)) return;
    if (!notices.empty()) did_ops = true;
    notify();
    // Otherwise only a partial frame can be buffered (the read loop below
    // takes every complete one), so waiting for the socket is right.
    if (!read_first && !did_ops && !amqp_frames_enqueued(conn)) {
      pollfd fds[2] = {{c.fd(), POLLIN, 0}, {consumer_wake_fd_, POLLIN, 0}};
      // A partition catching up, or one to put down later, is looked at again soon.
      const bool partitioned = nparts_ > 1 && parts_read_.load(std::memory_order_relaxed) > 1;
      if (::poll(fds, 2, partitioned ? std::min(budget, 200) : budget) > 0 && fds[0].revents != 0)
        c.note_rx();
      drain_wake(consumer_wake_fd_);
    }
    read_first = false;
    if (c.silent_too_long()) {
      flush();
      set_error("consumer: the broker has been silent for two heartbeat intervals");
      return;
    }
    for (;;) {
      amqp_maybe_release_buffers(conn);
      amqp_envelope_t env;
      timeval zero{0, 0};
      const auto r = amqp_consume_message(conn, &env, &zero, 0);
      if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        c.note_rx();
        consumed_.fetch_add(1, std::memory_order_relaxed);
        const auto& props = env.message.properties;
        const bool from_stream = env.channel >= 2 && env.channel < 2 + parts_.size();
        const int part = from_stream ? env.channel - 2 : -1;
        // What a partition put down still had on its way is not read.
        const bool gone = from_stream && !parts_[part].attached;
        const bool own = !from_stream && (props._flags & AMQP_BASIC_APP_ID_FLAG) &&
                         to_string(props.app_id) == config_.instance_id;
        std::int64_t offset = -1;
        if (from_stream && !gone) {
          parts_[part].unacked_tag = env.delivery_tag;
          offset = stream_offset_of(props);
          if (offset >= 0) {
            parts_[part].next = offset + 1;
            stream_offset_.store(offset, std::memory_order_relaxed);
          }
        }
        if (!own && !gone && env.channel != 0) {
          try {
            take_delivery(std::string_view(static_cast<const char*>(env.message.body.bytes),
                                           env.message.body.len),
                          batch, from_stream, offset, part, &notices);
          } catch (...) {
            last_resort_.caught();
          }
        }
        amqp_destroy_envelope(&env);
        if (!notices.empty()) notify();
        if (batch.size() >= max_batch) flush();
        continue;
      }
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
        break;
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
          r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // Not a delivery: the frame was put back; read it to see what it is.
        amqp_frame_t frame;
        const int st = amqp_simple_wait_frame_noblock(conn, &frame, &zero);
        if (st == AMQP_STATUS_TIMEOUT) break;
        if (st != AMQP_STATUS_OK) {
          flush();
          set_error("consumer: " + AmqpConnection::describe(st));
          return;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD) continue;
        const auto id = frame.payload.method.id;
        if (id == AMQP_CONNECTION_CLOSE_METHOD || id == AMQP_CHANNEL_CLOSE_METHOD) {
          flush();
          set_error("consumer: " + close_reason(frame));
          if (id == AMQP_CONNECTION_CLOSE_METHOD) close_ok(conn);
          return;
        }
        if (id == AMQP_BASIC_CANCEL_METHOD) {
          flush();
          set_error("consumer: consumer cancelled by broker (queue deleted?)");
          return;
        }
        continue;
      }
      flush();
      set_error("consumer: " + AmqpConnection::describe(r));
      return;
    }
    flush();
  }
}

void AmqpBus::take_delivery(std::string_view body, std::vector<EnvelopePtr>& batch,
                            bool from_stream, std::int64_t offset, int part,
                            std::vector<EnvelopePtr>* notices) {
  std::size_t bad = 0;
  auto got = parse_batch(body, bad, config_.max_message_bytes);
  if (bad) bad_envelopes_.fetch_add(bad, std::memory_order_relaxed);
  std::int64_t index = 0;
  for (auto& e : got) {
    if (from_stream) {
      // Not shared with anyone yet: the position is filled in before it is.
      auto& m = const_cast<Envelope&>(*e);
      Part* p = part >= 0 ? &parts_[part] : nullptr;
      if (offset >= 0) m.position = offset * kPositionScale + index;
      ++index;
      if (p) {
        m.partition = static_cast<std::uint32_t>(part);
        if (m.position >= 0) p->last_pos = m.position;
        if (nparts_ > 1 && static_cast<std::uint32_t>(part) < nparts_)
          m.cut = cut_after(part, m.position);
      }
      if (p && p->catching_up && e->ts < p->caught_from_ms) {
        // Read on demand, from before the attach: history, not news. (What
        // came after it goes to the room's members here, if any: those
        // that joined while the broker was away.)
        m.replay = true;
        replayed_.fetch_add(1, std::memory_order_relaxed);
      } else if (e->ts < attach_ms_) {
        m.replay = true;
        replayed_.fetch_add(1, std::memory_order_relaxed);
      } else if (e->origin == config_.instance_id &&
                 local_count_.load(std::memory_order_relaxed) > 0 && delivered_locally(e->id)) {
        m.replay = true;
      }
      // A room envelope in the stream is room traffic, whatever it claims.
      if (e->room.empty()) {
        bad_envelopes_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      // Our own, read back: the publisher's check hears of it (all of them,
      // replays too: they may be what it waits for).
      if (e->origin == config_.instance_id) seen_local_.push_back(e->id);
      if (e->room == kProbeRoom) {  // the check's own traffic
        if (p && !p->synced && e->origin == config_.instance_id && e->id == p->sync_id) {
          // Our probe sent after the attach is back: the partition is read
          // up to the present, and what follows is news.
          p->catching_up = false;
          p->synced = true;
          if (notices) notices->push_back(synced_notice(part));
        }
        continue;
      }
    } else if (e->origin == config_.instance_id) {
      continue;
    }
    if (dedupe_.first_time(e->origin, e->id))
      batch.push_back(std::move(e));
    else
      duplicates_.fetch_add(1, std::memory_order_relaxed);
  }
}

bool AmqpBus::delivered_locally(const std::string& id) {
  std::lock_guard lock(local_mu_);
  if (local_ids_.erase(id) == 0) return false;
  // Its place in the FIFO goes when it reaches the front; the set decides.
  while (!local_fifo_.empty() && !local_ids_.count(local_fifo_.front())) local_fifo_.pop_front();
  local_count_.store(local_ids_.size(), std::memory_order_relaxed);
  return true;
}

// ------------------------------------------------------------------ state

bool AmqpBus::backoff_sleep(int& attempt) {
  const int shift = std::min(attempt, 16);
  const long long base = std::min<long long>(
      config_.reconnect_max_ms, static_cast<long long>(config_.reconnect_min_ms) << shift);
  ++attempt;
  // Full jitter on the upper half: replicas cut by the same broker restart
  // do not all come back in the same millisecond.
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<long long> dist(base / 2, std::max(base / 2, base));
  std::unique_lock lock(stop_mu_);
  stop_cv_.wait_for(lock, milliseconds(dist(rng)), [this] { return stopping_.load(); });
  return !stopping_;
}

void AmqpBus::set_publisher_up(bool up) {
  publisher_up_ = up;
  report_state();
}

void AmqpBus::set_consumer_up(bool up) {
  consumer_up_ = up;
  report_state();
}

void AmqpBus::report_state() {
  std::lock_guard lock(state_mu_);
  const bool ready = publisher_up_ && consumer_up_ && !stopped_;
  if (ready == reported_ready_) return;
  reported_ready_ = ready;
  if (ready) {
    std::lock_guard el(error_mu_);
    last_error_.clear();
  }
  spdlog::info("bus: {}",
               ready ? "broker connected (publishing and consuming)" : "broker unavailable");
  if (on_state_) on_state_(ready);
}

void AmqpBus::set_error(const std::string& error) {
  std::lock_guard lock(error_mu_);
  last_error_ = error;
}

void AmqpBus::wake(int fd) {
  if (fd < 0) return;
  const std::uint64_t one = 1;
  // A full counter still wakes the reader: the result does not matter.
  [[maybe_unused]] const auto n = ::write(fd, &one, sizeof one);
}

void AmqpBus::drain_wake(int fd) {
  std::uint64_t v;
  [[maybe_unused]] const auto n = ::read(fd, &v, sizeof v);
}

BusStatus AmqpBus::status() const {
  BusStatus s;
  s.kind = "amqp";
  s.publisher_up = publisher_up_;
  s.consumer_up = consumer_up_;
  s.ready = s.publisher_up && s.consumer_up && !stopping_;
  s.published = published_.load(std::memory_order_relaxed);
  s.broker_messages = broker_messages_.load(std::memory_order_relaxed);
  s.confirmed = confirmed_.load(std::memory_order_relaxed);
  s.nacked = nacked_.load(std::memory_order_relaxed);
  s.returned = returned_.load(std::memory_order_relaxed);
  s.consumed = consumed_.load(std::memory_order_relaxed);
  s.outbox_depth = outbox_depth_.load(std::memory_order_relaxed);
  s.outbox_dropped = outbox_dropped_.load(std::memory_order_relaxed);
  s.rejected = rejected_.load(std::memory_order_relaxed);
  s.refused = refused_.load(std::memory_order_relaxed);
  s.held_bytes = held_bytes_.load(std::memory_order_relaxed);
  s.reconnects = reconnects_.load(std::memory_order_relaxed);
  s.bound_rooms = bound_rooms_.load(std::memory_order_relaxed);
  s.duplicates = duplicates_.load(std::memory_order_relaxed);
  s.bad_envelopes = bad_envelopes_.load(std::memory_order_relaxed);
  s.exceptions = last_resort_.count();
  s.history = config_.history;
  s.replayed = replayed_.load(std::memory_order_relaxed);
  s.stream_offset = stream_offset_.load(std::memory_order_relaxed);
  s.republished = republished_.load(std::memory_order_relaxed);
  s.unchecked = unchecked_.load(std::memory_order_relaxed);
  s.probes = probes_.load(std::memory_order_relaxed);
  s.checking = checking_.load(std::memory_order_relaxed);
  s.partitions = nparts_;
  s.partitions_read = parts_read_.load(std::memory_order_relaxed);
  std::lock_guard lock(error_mu_);
  s.last_error = last_error_;
  return s;
}

}  // namespace chat::bus
