// AmqpConsumer: the bus's receiving thread; see amqp_consumer.hpp.
#include "bus/amqp_consumer.hpp"

#include "bus/routing.hpp"

#include <poll.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace chat::bus {

namespace {

using std::chrono::milliseconds;

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

}  // namespace

AmqpConsumer::AmqpConsumer(AmqpCommon& common, AmqpPublisher& probes)
    : common_(common),
      probes_out_(probes),
      config_(common.config),
      nparts_(common.nparts),
      node_(common.first_node()),
      dedupe_(dedupe_window_for(common.config)) {
  parts_.resize(common.streams.size());
}

AmqpConsumer::~AmqpConsumer() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void AmqpConsumer::start(Bus::DeliveryHandler on_delivery) {
  on_delivery_ = std::move(on_delivery);
  wake_fd_ = amqp::make_wake_fd();
  thread_ = common_.spawn([this] { main(); });
}

void AmqpConsumer::wake() {
  amqp::wake(wake_fd_);
}

void AmqpConsumer::join() {
  if (thread_.joinable()) thread_.join();
}

void AmqpConsumer::bind_room(const std::string& room) {
  if (room.empty()) return;  // the control key is always bound
  {
    std::lock_guard lock(rooms_mu_);
    if (!rooms_.insert(room).second) return;
    room_ops_.emplace_back(true, room);
  }
  amqp::wake(wake_fd_);
}

void AmqpConsumer::unbind_room(const std::string& room) {
  if (room.empty()) return;
  {
    std::lock_guard lock(rooms_mu_);
    if (rooms_.erase(room) == 0) return;
    room_ops_.emplace_back(false, room);
  }
  amqp::wake(wake_fd_);
}

void AmqpConsumer::attach(std::uint32_t partition) {
  if (nparts_ == 1 || partition >= parts_.size()) return;
  {
    std::lock_guard lock(rooms_mu_);
    attach_ops_.push_back(partition);
  }
  amqp::wake(wake_fd_);
}

void AmqpConsumer::main() {
  int attempt = 0;
  std::size_t consumer_tried = 0;
  bool was_connected = false;
  while (!common_.stopping()) {
    std::string err;
    std::string queue;
    const auto& url = common_.urls[node_ % common_.urls.size()];
    if (!conn_.open(url, config_.instance_id + " consumer", config_.heartbeat_s,
                    milliseconds(config_.rpc_timeout_ms), err) ||
        !setup(queue, err)) {
      conn_.abandon();
      ++node_;
      // A cluster's other nodes are tried at once; the backoff is per round.
      if (++consumer_tried < common_.urls.size()) continue;
      consumer_tried = 0;
      if (attempt == 0 || attempt % 20 == 0) spdlog::warn("bus consumer: {}", err);
      common_.set_error("consumer: " + err);
      if (!common_.backoff_sleep(attempt)) break;
      continue;
    }
    attempt = 0;
    consumer_tried = 0;
    if (was_connected) common_.reconnects.fetch_add(1, std::memory_order_relaxed);
    was_connected = true;
    spdlog::info("bus consumer connected to {}:{}, queue {} ({} rooms bound)", url.host, url.port,
                 queue, stats_.bound_rooms.load());
    common_.set_consumer_up(true);
    try {
      run(queue);
    } catch (...) {
      // Out of memory, most likely: start over on a new connection.
      common_.last_resort.caught();
      common_.set_error("consumer: internal error");
    }
    common_.set_consumer_up(false);
    stats_.bound_rooms = 0;
    if (common_.stopping()) {
      conn_.close();
    } else {
      spdlog::warn("bus consumer disconnected");
      conn_.abandon();
      ++node_;
    }
  }
}

bool AmqpConsumer::setup(std::string& queue, std::string& error) {
  auto& c = conn_;
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
  queue = amqp::to_string(q->queue);
  const auto qb = amqp::as_bytes(queue);
  const std::string control(kControlKey);
  amqp_queue_bind(conn, 1, qb, exchange, amqp::as_bytes(control), amqp_empty_table);
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
    amqp_queue_bind(conn, 1, qb, exchange, amqp::as_bytes(key), amqp_empty_table);
    r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      // Put them back so the next attempt starts from the same wanted set.
      error = "queue.bind " + key + ": " + AmqpConnection::describe(r);
      return false;
    }
  }
  stats_.bound_rooms = rooms.size();
  if (config_.history) {
    std::lock_guard lock(rooms_mu_);
    stats_.bound_rooms = rooms_.size();
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
    part.forget_unacked();
  }
  for (std::size_t i = 0; i < parts_.size(); ++i) common_.set_reading(i, false);
  {
    std::lock_guard lock(rooms_mu_);
    for (const auto& room : rooms_) ++parts_[partition_of(room, nparts_)].rooms;
  }
  const auto now = Clock::now();
  for (std::size_t i = 0; i < parts_.size(); ++i) {
    if (!wanted(i, now)) continue;
    if (!consume_stream(i, error)) return false;
    // Up to the present once its probe is back; until then a join waits.
    if (nparts_ > 1) send_sync_probe(i);
  }
  parts_read_.store(reading_count(), std::memory_order_relaxed);
  return true;
}

bool AmqpConsumer::consume_stream(std::size_t index, std::string& error) {
  auto& c = conn_;
  auto* conn = c.get();
  auto& part = parts_[index];
  const auto& stream = common_.streams[index].stream;
  const auto ch = channel_of(index);
  amqp_channel_open(conn, ch);
  auto r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "channel.open " + std::to_string(ch) + ": " + AmqpConnection::describe(r);
    return false;
  }
  if (!common_.declare_stream(conn, ch, stream, false, error)) return false;
  // Streams need acknowledgements and a prefetch bound on their consumers.
  amqp_basic_qos(conn, ch, 0, std::max<std::uint16_t>(1, config_.stream_prefetch), 0);
  r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "basic.qos: " + AmqpConnection::describe(r);
    return false;
  }
  if (attach_ms_ == 0) attach_ms_ = amqp::wall_ms();
  const auto backfill_ms = 1000LL * std::max(0, config_.history_backfill_s);
  amqp_table_entry_t from{};
  from.key = amqp_cstring_bytes("x-stream-offset");
  // Resume exactly where the last read stopped: nothing missed, whatever
  // happened meanwhile (a retention trim starts at the first kept). A
  // partition put down longer ago than the backfill starts afresh.
  if (part.next >= 0 &&
      (part.detached_ms == 0 || amqp::wall_ms() - part.detached_ms < backfill_ms)) {
    from.value.kind = AMQP_FIELD_KIND_I64;
    from.value.value.i64 = part.next;
  } else {
    // The first time: history_backfill_s back from the bus's first attach
    // (or from now, for a partition read on demand later).
    const auto base = part.detached_ms == 0 && !part.catching_up ? attach_ms_ : amqp::wall_ms();
    part.read_since_ms = std::max<std::int64_t>(0, base - backfill_ms);
    from.value.kind = AMQP_FIELD_KIND_TIMESTAMP;
    from.value.value.u64 =
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, (base - backfill_ms) / 1000));
  }
  amqp_table_t args{1, &from};
  amqp_basic_consume(conn, ch, amqp::as_bytes(stream), amqp_empty_bytes, 0, 0, 0, args);
  r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "basic.consume " + stream + ": " + AmqpConnection::describe(r);
    return false;
  }
  part.forget_unacked();
  part.attached = true;
  common_.set_reading(index, true);
  part.synced = false;
  part.detached_ms = 0;
  return true;
}

bool AmqpConsumer::wanted(std::size_t i, Clock::time_point now) const {
  const auto& part = parts_[i];
  return common_.streams[i].always || part.rooms > 0 || part.catching_up || now < part.wanted_until;
}

std::uint32_t AmqpConsumer::reading_count() const {
  std::uint32_t n = 0;
  for (const auto& part : parts_) n += part.attached ? 1 : 0;
  return n;
}

namespace {
// How long a partition asked for by attach() stays read with no bound room in it.
constexpr auto kPartitionLinger = std::chrono::seconds(60);
// And after its last bound room was unbound.
constexpr auto kUnboundLinger = std::chrono::seconds(5);
// A stream delivery is acknowledged at the latest this long after it came.
constexpr auto kAckAge = std::chrono::milliseconds(100);
// A catch-up whose probe has not come back after this gets another one.
constexpr auto kSyncRetry = milliseconds(1000);
}  // namespace

void AmqpConsumer::send_sync_probe(std::size_t index) {
  auto& part = parts_[index];
  part.sync_id = "sync-" + std::to_string(index) + "-" + std::to_string(++sync_count_);
  part.sync_sent = Clock::now();
  probes_out_.send_probe(static_cast<std::uint32_t>(index), part.sync_id);
}

std::string AmqpConsumer::cut_after(std::size_t index, std::int64_t position) const {
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

EnvelopePtr AmqpConsumer::synced_notice(std::size_t index) const {
  auto e = std::make_shared<Envelope>();
  e->origin = config_.instance_id;
  e->id = "synced-" + std::to_string(index);
  e->room = kPartitionRoom;
  e->event = kSyncedEvent;
  // since: every message of the partition published after it has been read here.
  e->payload = nlohmann::json{{"since", parts_[index].read_since_ms}};
  e->ts = amqp::wall_ms();
  e->partition = static_cast<std::uint32_t>(index);
  e->position = parts_[index].last_pos;
  e->cut = cut_after(index, parts_[index].last_pos);
  return e;
}

bool AmqpConsumer::apply_partitions(std::vector<EnvelopePtr>& notices) {
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
    part.caught_from_ms = amqp::wall_ms();
    if (!consume_stream(i, error)) {
      common_.set_error("consumer: " + error);
      return false;
    }
    send_sync_probe(i);
  }
  for (std::size_t i = 0; i < parts_.size(); ++i) {
    auto& part = parts_[i];
    if (!part.attached) continue;
    if (!part.synced && now - part.sync_sent >= kSyncRetry) send_sync_probe(i);
    // Put down what no room here needs any more: its traffic costs nothing then.
    if (wanted(i, now)) continue;
    auto& c = conn_;
    auto* conn = c.get();
    if (part.unacked_tag != 0) amqp_basic_ack(conn, channel_of(i), part.unacked_tag, 1);
    amqp_channel_close(conn, channel_of(i), AMQP_REPLY_SUCCESS);
    const auto r = amqp_get_rpc_reply(conn);
    part.attached = false;
    common_.set_reading(i, false);
    part.forget_unacked();
    part.detached_ms = amqp::wall_ms();
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      common_.set_error("consumer: channel.close: " + AmqpConnection::describe(r));
      return false;
    }
  }
  parts_read_.store(reading_count(), std::memory_order_relaxed);
  return true;
}

bool AmqpConsumer::apply_room_ops(const std::string& queue, bool& did_any) {
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
    stats_.bound_rooms = rooms_.size();
    return true;
  }
  did_any = true;
  auto& c = conn_;
  auto* conn = c.get();
  const auto exchange = amqp_cstring_bytes(config_.exchange.c_str());
  const auto qb = amqp::as_bytes(queue);
  for (const auto& [bind, room] : ops) {
    const auto key = routing_key(room);
    if (bind)
      amqp_queue_bind(conn, 1, qb, exchange, amqp::as_bytes(key), amqp_empty_table);
    else
      amqp_queue_unbind(conn, 1, qb, exchange, amqp::as_bytes(key), amqp_empty_table);
    const auto r = amqp_get_rpc_reply(conn);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      // The reconnect re-applies the whole wanted set, including this one.
      common_.set_error("consumer: queue." + std::string(bind ? "bind " : "unbind ") + key + ": " +
                        AmqpConnection::describe(r));
      return false;
    }
    if (bind)
      stats_.bound_rooms.fetch_add(1, std::memory_order_relaxed);
    else if (stats_.bound_rooms > 0)
      stats_.bound_rooms.fetch_sub(1, std::memory_order_relaxed);
  }
  return true;
}

void AmqpConsumer::run(const std::string& queue) {
  auto& c = conn_;
  auto* conn = c.get();
  const int budget = amqp::poll_budget_ms(config_.heartbeat_s);
  const auto max_batch = std::max<std::size_t>(1, config_.max_batch);
  const std::size_t ack_every = std::max<std::size_t>(1, config_.stream_prefetch / 4);
  std::vector<EnvelopePtr> batch;
  auto flush = [&] {
    if (!batch.empty()) {
      try {
        if (on_delivery_) on_delivery_(std::move(batch));
      } catch (...) {
        common_.last_resort.caught();
      }
      batch = {};
    }
    // Stream deliveries are acknowledged once handed over. An ack only gives
    // the broker credit back (a stream deletes nothing on it), and each one
    // costs the broker's channel as much as a delivery: one ack covers a
    // quarter of the prefetch window, or whatever came in the last kAckAge.
    const auto now = Clock::now();
    for (std::size_t i = 0; i < parts_.size(); ++i) {
      auto& part = parts_[i];
      if (part.unacked_tag == 0) continue;
      if (part.unacked < ack_every && now - part.unacked_since < kAckAge) continue;
      amqp_basic_ack(conn, channel_of(i), part.unacked_tag, 1);
      part.forget_unacked();
    }
    // Our own envelopes read back: the publisher's check hears of them.
    common_.hand_seen(seen_local_);
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
        common_.last_resort.caught();
      }
    }
    notices.clear();
  };
  while (!common_.stopping()) {
    bool did_ops = false;
    if (!apply_room_ops(queue, did_ops)) return;
    if (!apply_partitions(notices)) return;
    if (!notices.empty()) did_ops = true;
    notify();
    // Otherwise only a partial frame can be buffered (the read loop below
    // takes every complete one), so waiting for the socket is right.
    if (!read_first && !did_ops && !amqp_frames_enqueued(conn)) {
      pollfd fds[2] = {{c.fd(), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      // A partition catching up, or one to put down later, is looked at again soon.
      const bool partitioned = nparts_ > 1 && parts_read_.load(std::memory_order_relaxed) > 1;
      // Deliveries not yet acknowledged are, at the latest kAckAge from now.
      const bool unacked = std::any_of(parts_.begin(), parts_.end(),
                                       [](const Part& p) { return p.unacked_tag != 0; });
      int wait_ms = partitioned ? std::min(budget, 200) : budget;
      if (unacked) wait_ms = std::min<int>(wait_ms, static_cast<int>(kAckAge.count()));
      if (::poll(fds, 2, wait_ms) > 0 && fds[0].revents != 0) c.note_rx();
      amqp::drain_wake(wake_fd_);
    }
    read_first = false;
    if (c.silent_too_long()) {
      flush();
      common_.set_error("consumer: the broker has been silent for two heartbeat intervals");
      return;
    }
    for (;;) {
      amqp_maybe_release_buffers(conn);
      amqp_envelope_t env;
      timeval zero{0, 0};
      const auto r = amqp_consume_message(conn, &env, &zero, 0);
      if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        c.note_rx();
        stats_.consumed.fetch_add(1, std::memory_order_relaxed);
        const auto& props = env.message.properties;
        const bool from_stream = env.channel >= 2 && env.channel < 2 + parts_.size();
        const int part = from_stream ? env.channel - 2 : -1;
        // What a partition put down still had on its way is not read.
        const bool gone = from_stream && !parts_[part].attached;
        const bool own = !from_stream && (props._flags & AMQP_BASIC_APP_ID_FLAG) &&
                         amqp::to_string(props.app_id) == config_.instance_id;
        std::int64_t offset = -1;
        if (from_stream && !gone) {
          auto& p = parts_[part];
          if (p.unacked++ == 0) p.unacked_since = Clock::now();
          p.unacked_tag = env.delivery_tag;
          offset = stream_offset_of(props);
          if (offset >= 0) {
            p.next = offset + 1;
            stream_offset_.store(offset, std::memory_order_relaxed);
          }
        }
        if (!own && !gone && env.channel != 0) {
          try {
            take_delivery(std::string_view(static_cast<const char*>(env.message.body.bytes),
                                           env.message.body.len),
                          batch, from_stream, offset, part, &notices);
          } catch (...) {
            common_.last_resort.caught();
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
          common_.set_error("consumer: " + AmqpConnection::describe(st));
          return;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD) continue;
        const auto id = frame.payload.method.id;
        if (id == AMQP_CONNECTION_CLOSE_METHOD || id == AMQP_CHANNEL_CLOSE_METHOD) {
          flush();
          common_.set_error("consumer: " + amqp::close_reason(frame));
          if (id == AMQP_CONNECTION_CLOSE_METHOD) amqp::close_ok(conn);
          return;
        }
        if (id == AMQP_BASIC_CANCEL_METHOD) {
          flush();
          common_.set_error("consumer: consumer cancelled by broker (queue deleted?)");
          return;
        }
        continue;
      }
      flush();
      common_.set_error("consumer: " + AmqpConnection::describe(r));
      return;
    }
    flush();
  }
}

void AmqpConsumer::take_delivery(std::string_view body, std::vector<EnvelopePtr>& batch,
                                 bool from_stream, std::int64_t offset, int part,
                                 std::vector<EnvelopePtr>* notices) {
  std::size_t bad = 0;
  auto got = parse_batch(body, bad, config_.max_message_bytes);
  if (bad) stats_.bad_envelopes.fetch_add(bad, std::memory_order_relaxed);
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
        stats_.replayed.fetch_add(1, std::memory_order_relaxed);
      } else if (e->ts < attach_ms_) {
        m.replay = true;
        stats_.replayed.fetch_add(1, std::memory_order_relaxed);
      } else if (e->origin == config_.instance_id && common_.delivered_locally(e->id)) {
        m.replay = true;
      }
      // A room envelope in the stream is room traffic, whatever it claims.
      if (e->room.empty()) {
        stats_.bad_envelopes.fetch_add(1, std::memory_order_relaxed);
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
      stats_.duplicates.fetch_add(1, std::memory_order_relaxed);
  }
}

void AmqpConsumer::fill(BusStatus& s) const {
  stats_.fill(s);
  s.stream_offset = stream_offset_.load(std::memory_order_relaxed);
  s.partitions_read = parts_read_.load(std::memory_order_relaxed);
}

}  // namespace chat::bus
