// AmqpPublisher: the bus's publishing thread; see amqp_publisher.hpp.
#include "bus/amqp_publisher.hpp"

#include <poll.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <utility>

namespace chat::bus {

namespace {
using std::chrono::milliseconds;
}  // namespace

AmqpPublisher::AmqpPublisher(AmqpCommon& common)
    : common_(common), config_(common.config), node_(common.first_node()) {}

AmqpPublisher::~AmqpPublisher() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void AmqpPublisher::start() {
  {
    std::lock_guard lock(outbox_mu_);
    started_ = true;
  }
  wake_fd_ = amqp::make_wake_fd();
  thread_ = common_.spawn([this] { main(); });
}

void AmqpPublisher::wake() {
  amqp::wake(wake_fd_);
}

void AmqpPublisher::join() {
  if (thread_.joinable()) thread_.join();
}

void AmqpPublisher::publish(const Envelope& e, Bus::ConfirmHandler confirm) {
  Pending p = pending_of(e);
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
        if (idle_) {
          idle_ = false;
          amqp::wake(wake_fd_);
        }
      }
    } else if (outbox_.size() >= std::max<std::size_t>(1, config_.outbox_max) ||
               stats_.held_bytes.load(std::memory_order_relaxed) + p.bytes >
                   config_.outbox_max_bytes) {
      // Full: refuse the new one at once. What was accepted keeps its place
      // and its sender's ack, and this sender hears now, not after a timeout.
      refused = PublishStatus::full;
    } else {
      stats_.held_bytes.fetch_add(p.bytes, std::memory_order_relaxed);
      outbox_.push_back(std::move(p));
      stats_.outbox_depth.store(outbox_.size(), std::memory_order_relaxed);
      if (idle_) {
        idle_ = false;
        amqp::wake(wake_fd_);
      }
    }
  }
  // Confirm handlers run outside the lock.
  if (refused != PublishStatus::ok)
    (refused == PublishStatus::full ? stats_.refused : stats_.outbox_dropped)
        .fetch_add(p.settle(refused, common_.last_resort), std::memory_order_relaxed);
}

std::size_t AmqpPublisher::finish(Pending& p, PublishStatus status) {
  stats_.held_bytes.fetch_sub(std::exchange(p.bytes, 0), std::memory_order_relaxed);
  return p.settle(status, common_.last_resort);
}

void AmqpPublisher::inflight_add(Inflight& inflight, std::uint64_t tag, Pending p) {
  (p.control ? inflight_control_ : inflight_envelopes_) += p.count;
  inflight.emplace(tag, std::move(p));
}

void AmqpPublisher::main() {
  Inflight inflight;
  std::vector<Pending> batch;  // taken from the outbox, not yet sent
  int attempt = 0;
  std::size_t publisher_tried = 0;
  bool was_connected = false;
  bool failed_before = false;
  while (!common_.stopping()) {
    std::string err;
    const auto& url = common_.urls[node_ % common_.urls.size()];
    if (!conn_.open(url, config_.instance_id + " publisher", config_.heartbeat_s,
                    milliseconds(config_.rpc_timeout_ms), err) ||
        !setup(err)) {
      conn_.abandon();
      ++node_;
      failed_before = true;
      // A cluster's other nodes are tried at once; the backoff is per round.
      if (++publisher_tried < common_.urls.size()) continue;
      publisher_tried = 0;
      if (attempt == 0 || attempt % 20 == 0) spdlog::warn("bus publisher: {}", err);
      common_.set_error("publisher: " + err);
      if (!common_.backoff_sleep(attempt)) break;
      continue;
    }
    attempt = 0;
    publisher_tried = 0;
    if (was_connected) common_.reconnects.fetch_add(1, std::memory_order_relaxed);
    const bool settle = was_connected || failed_before;
    was_connected = true;
    spdlog::info("bus publisher connected to {}:{}", url.host, url.port);
    try {
      // A channel the broker closed over one message opens again on the
      // same connection: the broker did not go away, so no settle time.
      bool hold = settle;
      for (;;) {
        channel_error_ = 0;
        run(inflight, batch, hold);
        if (channel_error_ == 0 || common_.stopping()) break;
        hold = false;
        isolate_refused(inflight);
        if (!reopen_channel(err)) {
          common_.set_error("publisher: reopening the channel: " + err);
          break;
        }
      }
    } catch (...) {
      // Out of memory, most likely: treat it like a lost connection, so
      // what was sent is sent again and the thread lives on.
      common_.last_resort.caught();
      common_.set_error("publisher: internal error");
      for (auto& p : batch) stats_.outbox_dropped.fetch_add(finish(p, PublishStatus::unavailable));
    }
    batch.clear();
    common_.set_publisher_up(false);
    if (common_.stopping()) {
      conn_.close();
    } else {
      spdlog::warn("bus publisher disconnected ({} unconfirmed will be sent again)",
                   inflight.size());
      conn_.abandon();
      failed_before = true;
      ++node_;  // that node may be gone: try the next one first
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
    stats_.outbox_depth = 0;
  }
  checks_.clear();
  check_seq_.clear();
  check_bytes_ = 0;
  if (!left.empty()) spdlog::warn("bus: {} publishes not confirmed at stop", left.size());
  for (auto& p : left)
    stats_.outbox_dropped.fetch_add(finish(p, PublishStatus::unavailable),
                                    std::memory_order_relaxed);
}

AmqpPublisher::Pending AmqpPublisher::pending_of(const Envelope& e) const {
  Pending p;
  p.body = serialize(e);
  p.part = e.room.empty() ? 0 : partition_of(e.room, common_.nparts);
  p.key = common_.key_for(e.room, p.part);
  p.origin = e.origin;
  p.id = e.id;
  p.control = e.room.empty();
  return p;
}

std::size_t AmqpPublisher::Pending::settle(PublishStatus status, runtime::LastResort& lr) {
  auto call = [&](Bus::ConfirmHandler& cb) {
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

void AmqpPublisher::join_runs(std::vector<Pending>& batch) {
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

bool AmqpPublisher::setup(std::string& error) {
  auto& c = conn_;
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
    for (const auto& part : common_.streams) {
      if (!common_.declare_stream(conn, 1, part.stream, true, error)) return false;
      amqp_queue_bind(conn, 1, amqp::as_bytes(part.stream),
                      amqp_cstring_bytes(config_.exchange.c_str()), amqp::as_bytes(part.binding),
                      amqp_empty_table);
      r = amqp_get_rpc_reply(conn);
      if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        error = "queue.bind " + part.stream + ": " + AmqpConnection::describe(r);
        return false;
      }
    }
  }
  return true;
}

void AmqpPublisher::requeue(Inflight& inflight) {
  // Unconfirmed publishes go out again, first, in their original order.
  for (auto& [tag, p] : inflight) check_forget(p);
  std::lock_guard lock(outbox_mu_);
  for (auto it = inflight.rbegin(); it != inflight.rend(); ++it)
    (it->second.control ? control_ : outbox_).push_front(std::move(it->second));
  inflight.clear();
  inflight_envelopes_ = 0;
  inflight_control_ = 0;
  stats_.outbox_depth.store(outbox_.size(), std::memory_order_relaxed);
}

void AmqpPublisher::isolate_refused(Inflight& inflight) {
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
    const std::string why = common_.last_error();
    spdlog::warn("bus: the broker refused a message {} times ({}), dropping it ({} envelopes)",
                 poison->failures, why, poison->count);
    stats_.rejected.fetch_add(finish(*poison, PublishStatus::rejected), std::memory_order_relaxed);
  }
}

bool AmqpPublisher::reopen_channel(std::string& error) {
  auto& c = conn_;
  auto* conn = c.get();
  amqp_channel_open(conn, 1);
  const auto r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "channel.open: " + AmqpConnection::describe(r);
    return false;
  }
  c.note_rx();
  return setup(error);
}

void AmqpPublisher::run(Inflight& inflight, std::vector<Pending>& batch, bool hold_chat) {
  auto& c = conn_;
  auto* conn = c.get();
  std::uint64_t next_tag = 1;  // confirm-mode delivery tags count from 1 per channel
  std::optional<Clock::time_point> flush_deadline;
  const auto exchange = amqp_cstring_bytes(config_.exchange.c_str());
  const int budget = amqp::poll_budget_ms(config_.heartbeat_s);
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
  if (!hold_chat) common_.set_publisher_up(true);
  for (;;) {
    if (hold_chat) {
      const auto now = Clock::now();
      if (common_.consumer_up() && !consumer_seen) consumer_seen = now;
      // Never wait for our own consumer forever: it may fail for other reasons.
      if ((consumer_seen && now - std::max(hold_start, *consumer_seen) >= settle) ||
          now - hold_start >= settle + milliseconds(30000)) {
        hold_chat = false;
        common_.set_publisher_up(true);
      }
    }
    if (common_.stopping()) {
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
      stats_.outbox_depth.store(outbox_.size(), std::memory_order_relaxed);
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
      props.app_id = amqp::as_bytes(p.origin);
      props.message_id = amqp::as_bytes(p.id);
      const int st = amqp_basic_publish(conn, 1, exchange, amqp::as_bytes(p.key), 0, 0, &props,
                                        amqp::as_bytes(p.body));
      if (st != AMQP_STATUS_OK) {
        common_.set_error("publisher: publish: " + AmqpConnection::describe(st));
        std::lock_guard lock(outbox_mu_);
        for (std::size_t j = batch.size(); j-- > i;)
          (batch[j].control ? control_ : outbox_).push_front(std::move(batch[j]));
        stats_.outbox_depth.store(outbox_.size(), std::memory_order_relaxed);
        batch.clear();
        return;
      }
      stats_.published.fetch_add(p.count, std::memory_order_relaxed);
      stats_.broker_messages.fetch_add(1, std::memory_order_relaxed);
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
        common_.set_error("publisher: " + AmqpConnection::describe(st));
        return;
      }
      c.note_rx();
      if (!on_frame(frame, inflight)) return;
    }
    if (c.silent_too_long()) {
      common_.set_error("publisher: the broker has been silent for two heartbeat intervals");
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
      idle_ = true;
    }
    // The read loop above took every complete frame out of the library's
    // buffer, so whatever is left there is a partial frame: wait for the socket.
    {
      pollfd fds[2] = {{c.fd(), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      if (::poll(fds, 2, common_.stopping() ? 20 : budget) > 0 && fds[0].revents != 0) c.note_rx();
    }
    {
      std::lock_guard lock(outbox_mu_);
      idle_ = false;
    }
    amqp::drain_wake(wake_fd_);
  }
}

bool AmqpPublisher::on_frame(const amqp_frame_t& frame, Inflight& inflight) {
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
    (ok ? stats_.confirmed : stats_.nacked).fetch_add(envelopes, std::memory_order_relaxed);
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
    stats_.returned.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  if (id == AMQP_CONNECTION_CLOSE_METHOD) {
    common_.set_error("publisher: " + amqp::close_reason(frame));
    amqp::close_ok(conn_.get());
    return false;
  }
  if (id == AMQP_CHANNEL_CLOSE_METHOD) {
    // The broker refused something we sent (message too large, no write
    // permission on the routing key, exchange gone): it drops what follows
    // on the channel until we acknowledge the close.
    common_.set_error("publisher: " + amqp::close_reason(frame));
    const auto* m = static_cast<const amqp_channel_close_t*>(frame.payload.method.decoded);
    channel_error_ = m->reply_code ? m->reply_code : 1;
    amqp_channel_close_ok_t ok{};
    amqp_send_method(conn_.get(), 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    return false;
  }
  return true;
}

// ------------------------------------------------------------------ read-back check

namespace {
// A confirmed message still unread this long gets a probe behind it.
constexpr auto kProbeAfter = milliseconds(300);
}  // namespace

void AmqpPublisher::check_sent(Pending& p) {
  p.seq = ++send_seq_;
  Check c;
  c.id = p.id;
  c.part = p.part;
  checks_.emplace(p.seq, std::move(c));
  check_seq_[p.id] = p.seq;
}

void AmqpPublisher::check_erase(std::map<std::uint64_t, Check>::iterator it) {
  check_bytes_ -= std::min(check_bytes_, it->second.bytes);
  if (auto s = check_seq_.find(it->second.id); s != check_seq_.end() && s->second == it->first)
    check_seq_.erase(s);
  checks_.erase(it);
}

void AmqpPublisher::check_forget(const Pending& p) {
  if (p.seq == 0) return;
  if (auto it = checks_.find(p.seq); it != checks_.end()) check_erase(it);
}

void AmqpPublisher::check_confirmed(Pending& p, PublishStatus status) {
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
      stats_.unchecked.fetch_add(oldest->second.p.count, std::memory_order_relaxed);
    check_erase(oldest);
  }
}

void AmqpPublisher::republish(Pending p) {
  p.seq = 0;
  p.bytes = 0;  // not held against the outbox bound: it was accepted long ago
  p.suspect = false;
  p.failures = 0;
  p.confirm = nullptr;
  p.more.clear();
  stats_.republished.fetch_add(p.count, std::memory_order_relaxed);
  spdlog::warn(
      "bus: message {} was confirmed by the broker but is not in the history stream; "
      "publishing it again",
      p.id);
  std::lock_guard lock(outbox_mu_);
  outbox_.push_front(std::move(p));
  stats_.outbox_depth.store(outbox_.size(), std::memory_order_relaxed);
}

void AmqpPublisher::check_read_back() {
  const std::vector<std::string> seen = common_.take_seen();
  // Per partition: each stream keeps one channel's order, not the streams together.
  std::vector<std::uint64_t> newest(common_.streams.size(), 0);
  std::uint64_t newest_any = 0;
  for (const auto& id : seen) {
    auto s = check_seq_.find(id);
    if (s == check_seq_.end()) continue;
    if (auto it = checks_.find(s->second); it != checks_.end()) {
      it->second.seen = true;
      auto& n = newest[std::min<std::size_t>(it->second.part, common_.streams.size() - 1)];
      n = std::max(n, it->first);
      newest_any = std::max(newest_any, it->first);
    }
  }
  // Everything sent to a stream before the newest message read back from it
  // was read back too, or the stream lost it.
  for (auto it = checks_.begin(); it != checks_.end() && it->first <= newest_any;) {
    auto& c = it->second;
    if (it->first > newest[std::min<std::size_t>(c.part, common_.streams.size() - 1)]) {
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
  if (common_.nparts > 1 && common_.consumer_up() && Clock::now() - last_sweep_ >= kProbeAfter) {
    last_sweep_ = Clock::now();
    for (auto it = checks_.begin(); it != checks_.end();) {
      const auto part = std::min<std::size_t>(it->second.part, common_.streams.size() - 1);
      if (!it->second.confirmed || common_.reading(part)) {
        ++it;
        continue;
      }
      if (!it->second.p.probe)
        stats_.unchecked.fetch_add(it->second.p.count, std::memory_order_relaxed);
      check_erase(it++);
    }
  }
  // A confirmed message unread for a while: a probe behind it tells whether
  // it is lost or the consumer is only behind.
  stats_.checking.store(check_seq_.size(), std::memory_order_relaxed);
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

void AmqpPublisher::send_probe(std::uint32_t part, std::string id) {
  Envelope e;
  e.origin = config_.instance_id;
  e.id = std::move(id);
  e.room = kProbeRoom;
  e.event = "probe";
  e.payload = nlohmann::json::object();
  e.ts = amqp::wall_ms();
  Pending p = pending_of(e);
  p.part = part;
  p.key = common_.key_for(e.room, part);
  p.probe = true;
  stats_.probes.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(outbox_mu_);
  outbox_.push_front(std::move(p));
  stats_.outbox_depth.store(outbox_.size(), std::memory_order_relaxed);
  if (idle_) {
    idle_ = false;
    amqp::wake(wake_fd_);
  }
}

void AmqpPublisher::fill(BusStatus& s) const {
  stats_.fill(s);
}

}  // namespace chat::bus
