// AmqpCommon: what the RabbitMQ bus's threads share; see amqp_common.hpp.
#include "bus/amqp_common.hpp"

#include "bus/routing.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>
#include <utility>

namespace chat::bus {

namespace {

using std::chrono::milliseconds;

amqp_table_entry_t utf8_entry(const char* key, const std::string& value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = amqp::as_bytes(value);
  return e;
}

amqp_table_entry_t i64_entry(const char* key, std::int64_t value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_I64;
  e.value.value.i64 = value;
  return e;
}

std::uint32_t partitions_of(const BusConfig& c) {
  return c.history ? std::clamp<std::uint32_t>(c.history_partitions, 1, 1024) : 1;
}

std::vector<StreamDesc> layout(const BusConfig& c, std::uint32_t nparts) {
  const std::string stream = c.stream.empty() ? c.exchange + ".history" : c.stream;
  std::vector<StreamDesc> out;
  if (nparts == 1) {
    out.push_back({stream, "room.#", true});
    return out;
  }
  for (std::uint32_t i = 0; i <= nparts; ++i)
    out.push_back({stream + "." + (i == nparts ? std::string("reserved") : std::to_string(i)),
                   "part." + std::to_string(i) + ".#", i == nparts});
  return out;
}

}  // namespace

AmqpCommon::AmqpCommon(BusConfig c)
    : config(std::move(c)),
      urls(parse_amqp_urls(config.amqp_url)),
      nparts(partitions_of(config)),
      streams(layout(config, nparts)),
      reading_(std::make_unique<std::atomic<bool>[]>(streams.size())) {}

std::size_t AmqpCommon::first_node() const {
  return std::hash<std::string>{}(config.instance_id) % urls.size();
}

std::string AmqpCommon::key_for(const std::string& room, std::uint32_t part) const {
  if (room.empty() || !config.history || nparts == 1) return routing_key(room);
  return "part." + std::to_string(part) + "." + routing_key(room);
}

bool AmqpCommon::declare_stream(amqp_connection_state_t conn, amqp_channel_t ch,
                                const std::string& stream, bool confirm_mode,
                                std::string& error) const {
  const std::string type = "stream";
  const auto max_bytes =
      // The bound is the history's: shared evenly by its partitions' streams.
      static_cast<std::int64_t>(
          std::max<std::uint64_t>(config.stream_max_bytes / streams.size(), 1 << 20));
  // Retention drops whole segments: several per stream keep the bound close.
  const std::int64_t segment = std::clamp<std::int64_t>(max_bytes / 8, 1 << 20, 100 << 20);
  amqp_table_entry_t entries[] = {
      utf8_entry("x-queue-type", type),
      utf8_entry("x-max-age", config.stream_max_age),
      i64_entry("x-max-length-bytes", max_bytes),
      i64_entry("x-stream-max-segment-size-bytes", segment),
  };
  amqp_table_t args{static_cast<int>(std::size(entries)), entries};
  amqp_queue_declare(conn, ch, amqp::as_bytes(stream), 0, 1, 0, 0, args);
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
  amqp_queue_declare(conn, ch, amqp::as_bytes(stream), 1, 1, 0, 0, amqp_empty_table);
  r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "queue.declare (passive) " + stream + ": " + AmqpConnection::describe(r);
    return false;
  }
  return true;
}

void AmqpCommon::request_stop() {
  {
    std::lock_guard lock(state_mu_);
    stopped_ = true;
  }
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
}

bool AmqpCommon::backoff_sleep(int& attempt) {
  const int shift = std::min(attempt, 16);
  const long long base = std::min<long long>(
      config.reconnect_max_ms, static_cast<long long>(config.reconnect_min_ms) << shift);
  ++attempt;
  // Full jitter on the upper half: replicas cut by the same broker restart
  // do not all come back in the same millisecond.
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<long long> dist(base / 2, std::max(base / 2, base));
  std::unique_lock lock(stop_mu_);
  stop_cv_.wait_for(lock, milliseconds(dist(rng)), [this] { return stopping_.load(); });
  return !stopping_;
}

std::thread AmqpCommon::spawn(std::function<void()> body) {
  {
    std::lock_guard lock(stop_mu_);
    ++threads_running_;
  }
  return std::thread([this, body = std::move(body)] {
    body();
    std::lock_guard lock(stop_mu_);
    --threads_running_;
    stop_cv_.notify_all();
  });
}

bool AmqpCommon::wait_threads(milliseconds timeout) {
  std::unique_lock lock(stop_mu_);
  return stop_cv_.wait_for(lock, timeout, [this] { return threads_running_ == 0; });
}

void AmqpCommon::set_publisher_up(bool up) {
  publisher_up_ = up;
  report_state();
}

void AmqpCommon::set_consumer_up(bool up) {
  consumer_up_ = up;
  report_state();
}

void AmqpCommon::report_state() {
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

void AmqpCommon::set_error(const std::string& error) {
  std::lock_guard lock(error_mu_);
  last_error_ = error;
}

std::string AmqpCommon::last_error() const {
  std::lock_guard lock(error_mu_);
  return last_error_;
}

void AmqpCommon::hand_seen(std::vector<std::string>& ids) {
  if (ids.empty()) return;
  std::lock_guard lock(seen_mu_);
  // Bounded: a publisher thread that is gone must not make this grow.
  if (seen_ids_.size() + ids.size() > 4 * std::max<std::size_t>(1024, config.outbox_max))
    seen_ids_.clear();
  if (seen_ids_.empty())
    seen_ids_.swap(ids);
  else
    seen_ids_.insert(seen_ids_.end(), std::make_move_iterator(ids.begin()),
                     std::make_move_iterator(ids.end()));
  ids.clear();
}

std::vector<std::string> AmqpCommon::take_seen() {
  std::vector<std::string> seen;
  std::lock_guard lock(seen_mu_);
  seen.swap(seen_ids_);
  return seen;
}

void AmqpCommon::note_delivered_locally(const std::string& id) {
  std::lock_guard lock(local_mu_);
  if (local_ids_.insert(id).second) local_fifo_.push_back(id);
  while (local_fifo_.size() > std::max<std::size_t>(1, config.outbox_max)) {
    local_ids_.erase(local_fifo_.front());
    local_fifo_.pop_front();
  }
  local_count_.store(local_ids_.size(), std::memory_order_relaxed);
}

bool AmqpCommon::delivered_locally(const std::string& id) {
  if (local_count_.load(std::memory_order_relaxed) == 0) return false;
  std::lock_guard lock(local_mu_);
  if (local_ids_.erase(id) == 0) return false;
  // Its place in the FIFO goes when it reaches the front; the set decides.
  while (!local_fifo_.empty() && !local_ids_.count(local_fifo_.front())) local_fifo_.pop_front();
  local_count_.store(local_ids_.size(), std::memory_order_relaxed);
  return true;
}

namespace amqp {

void close_ok(amqp_connection_state_t conn) {
  amqp_connection_close_ok_t ok{};
  amqp_send_method(conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
}

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

std::int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int poll_budget_ms(int heartbeat_s) {
  const int half = heartbeat_s > 0 ? heartbeat_s * 1000 / 2 : 1000;
  return std::clamp(half, 50, 250);
}

int make_wake_fd() {
  return ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

void wake(int fd) {
  if (fd < 0) return;
  const std::uint64_t one = 1;
  // A full counter still wakes the reader: the result does not matter.
  [[maybe_unused]] const auto n = ::write(fd, &one, sizeof one);
}

void drain_wake(int fd) {
  std::uint64_t v;
  [[maybe_unused]] const auto n = ::read(fd, &v, sizeof v);
}

}  // namespace amqp

}  // namespace chat::bus
