// Worker: connection ramp, login, open-loop sending, churn and accounting.
#include "worker.hpp"

#include "clock.hpp"
#include "connection.hpp"
#include "message_text.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>

namespace loadgen {

namespace net = boost::asio;

namespace {
bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}
}  // namespace

Worker::Worker(unsigned index, unsigned count, const Options& options, const Plan& plan,
               Progress& progress)
    : index_(index),
      count_(count),
      options_(options),
      plan_(plan),
      progress_(progress),
      connect_timer_(ioc_),
      send_timer_(ioc_) {
  guard_.emplace(ioc_.get_executor());
  if (options_.scenario == "churn") {
    const unsigned slots = std::max(
        1U, options_.concurrency / count_ + (index_ < options_.concurrency % count_ ? 1U : 0U));
    clients_.resize(slots);
    return;
  }
  for (std::size_t i = index_; i < plan_.clients().size(); i += count_) {
    Client c;
    c.index = i;
    clients_.push_back(std::move(c));
  }
}

Worker::~Worker() {
  for (auto& c : clients_)
    if (c.conn) c.conn->abort();
}

void Worker::run() {
  ioc_.run();
}

void Worker::stop() {
  net::post(ioc_, [this] {
    for (auto& c : clients_)
      if (c.conn) c.conn->abort();
    guard_.reset();
    ioc_.stop();
  });
}

void Worker::arm(net::steady_timer& t, std::int64_t at_ns, void (Worker::*fn)()) {
  t.expires_after(std::chrono::nanoseconds(std::max<std::int64_t>(at_ns - now_ns(), 0)));
  t.async_wait([this, fn](boost::system::error_code ec) {
    if (!ec) (this->*fn)();
  });
}

// ------------------------------------------------------------- connecting

void Worker::start_connecting(double rate_per_worker) {
  net::post(ioc_, [this, rate_per_worker] {
    connect_start_ns_ = now_ns();
    connect_interval_ns_ = rate_per_worker > 0 ? 1e9 / rate_per_worker : 0;
    connect_tick();
  });
}

void Worker::connect_tick() {
  const std::int64_t now = now_ns();
  while (next_connect_ < clients_.size()) {
    const auto due =
        connect_start_ns_ +
        static_cast<std::int64_t>(static_cast<double>(next_connect_) * connect_interval_ns_);
    if (due > now) return arm(connect_timer_, due, &Worker::connect_tick);
    const std::size_t slot = next_connect_++;
    open(slot, clients_[slot].index);
  }
}

void Worker::open(std::size_t slot, std::size_t plan_index) {
  const auto& spec = plan_.clients()[plan_index];
  const auto& server = plan_.servers()[spec.url];
  auto& c = clients_[slot];
  c.index = plan_index;
  c.phase = Phase::connecting;
  c.settled = false;
  c.started_ns = now_ns();
  c.conn = Connection::create(ioc_, *this, counters_,
                              {server.host, server.port, spec.source, options_.deflate});
  c.conn->slot = slot;
  ++counters_.connect_attempts;
  c.conn->start();
}

void Worker::settle(Client& c, bool ok) {
  if (c.settled) return;
  c.settled = true;
  if (ok) {
    ++counters_.ready;
    progress_.ready.fetch_add(1, std::memory_order_relaxed);
    const std::int64_t now = now_ns();
    auto prev = progress_.last_ready_ns.load(std::memory_order_relaxed);
    while (prev < now && !progress_.last_ready_ns.compare_exchange_weak(prev, now)) {
    }
  }
  progress_.settled.fetch_add(1, std::memory_order_relaxed);
}

void Worker::on_open(Connection& conn) {
  auto& c = clients_[conn.slot];
  ++counters_.connected;
  connect_time_.record(now_ns() - c.started_ns);
  if (options_.scenario == "churn") {
    ++counters_.handshakes;
    progress_.handshakes.fetch_add(1, std::memory_order_relaxed);
    c.phase = Phase::closing;
    conn.close();
    return;
  }
  const auto& spec = plan_.clients()[c.index];
  if (!spec.login) {
    c.phase = Phase::ready;
    return settle(c, true);
  }
  c.phase = Phase::login;
  conn.send("42[\"add user\",\"u" + std::to_string(spec.id) + "\"]");
}

void Worker::on_packet(Connection& conn, std::string_view sio) {
  auto& c = clients_[conn.slot];
  if (sio.empty()) return;
  if (sio[0] == '2') {
    if (starts_with(sio, "2[\"new message\"")) return deliver(c, sio);
    if (starts_with(sio, "2[\"login\"") && c.phase == Phase::login) {
      const auto& spec = plan_.clients()[c.index];
      if (!spec.join) {
        c.phase = Phase::ready;
        return settle(c, true);
      }
      c.phase = Phase::joining;
      conn.send("421[\"join room\",\"" + spec.room + "\"]");
      return;
    }
    if (starts_with(sio, "2[\"chat error\"")) ++counters_.chat_errors;
    return;  // presence, typing ...: not measured
  }
  if (sio[0] == '3') {  // ack; only "join room" asks for one
    if (c.phase != Phase::joining || !starts_with(sio, "31[")) return;
    if (sio.find("\"ok\":true") == std::string_view::npos) {
      ++counters_.chat_errors;
      return settle(c, false);
    }
    c.phase = Phase::ready;
    return settle(c, true);
  }
  if (sio[0] == '4') {  // CONNECT_ERROR
    ++counters_.connect_errors;
    settle(c, false);
    c.phase = Phase::closing;
    conn.close();
    return;
  }
  if (sio[0] == '1') {  // the server removed us from the namespace
    ++counters_.disconnects;
    settle(c, false);
    c.phase = Phase::closing;
    conn.close();
  }
}

void Worker::on_closed(Connection& conn, std::string_view what) {
  auto& c = clients_[conn.slot];
  const bool asked = c.phase == Phase::closing;
  if (!asked) {
    if (c.phase == Phase::connecting) {
      ++counters_.connect_errors;
    } else {
      ++counters_.disconnects;
    }
    if (counters_.errors() <= 5)
      fprintf(stderr, "connection %zu: %.*s\n", c.index, static_cast<int>(what.size()),
              what.data());
  }
  settle(c, false);
  c.phase = Phase::closed;
  if (options_.scenario == "churn") churn_next(conn.slot);
}

// ----------------------------------------------------------------- churn

void Worker::start_churn(std::int64_t end_ns) {
  net::post(ioc_, [this, end_ns] {
    churn_end_ns_ = end_ns;
    for (std::size_t s = 0; s < clients_.size(); ++s) churn_next(s);
  });
}

void Worker::churn_next(std::size_t slot) {
  if (now_ns() >= churn_end_ns_) return;
  const std::size_t n = plan_.clients().size();
  const std::size_t plan_index = (churn_attempts_++ * count_ + index_) % n;
  // Post, so the finished connection's handler unwinds before it is replaced.
  net::post(ioc_, [this, slot, plan_index] { open(slot, plan_index); });
}

// --------------------------------------------------------------- sending

void Worker::start_sending(std::int64_t first_due_ns, std::int64_t end_ns) {
  net::post(ioc_, [this, first_due_ns, end_ns] {
    const double per_message_ns = 1e9 / options_.rate;
    period_ns_ = static_cast<std::int64_t>(per_message_ns * plan_.sender_count());
    send_end_ns_ = end_ns;
    for (std::size_t s = 0; s < clients_.size(); ++s) {
      const auto& spec = plan_.clients()[clients_[s].index];
      if (!spec.sender || clients_[s].phase != Phase::ready) continue;
      // Stagger the senders so the total rate is smooth, not bursts per period.
      const auto offset = static_cast<std::int64_t>(per_message_ns * spec.sender_ordinal);
      schedule_.push(Due{first_due_ns + offset, s});
    }
    if (!schedule_.empty()) arm(send_timer_, schedule_.top().due_ns, &Worker::send_tick);
  });
}

void Worker::send_tick() {
  const std::int64_t now = now_ns();
  const bool peer = options_.target == "peer";
  while (!schedule_.empty() && schedule_.top().due_ns <= now) {
    const Due d = schedule_.top();
    schedule_.pop();
    if (d.due_ns >= send_end_ns_) continue;
    auto& c = clients_[d.slot];
    if (c.phase != Phase::ready) continue;
    const auto& spec = plan_.clients()[c.index];
    const auto text = MessageText::make(spec.room, spec.id, c.sent, d.due_ns, options_.payload);
    std::string packet;
    packet.reserve(text.size() + spec.room.size() + 48);
    if (peer) {
      packet.append("42[\"new message\",\"").append(text).append("\"]");
    } else {
      packet.append("42[\"new message\",{\"room\":\"")
          .append(spec.room)
          .append("\",\"message\":\"")
          .append(text)
          .append("\"}]");
    }
    c.conn->send(std::move(packet));
    ++c.sent;
    ++counters_.sent;
    send_lag_.record(now - d.due_ns);
    schedule_.push(Due{d.due_ns + period_ns_, d.slot});
  }
  if (!schedule_.empty()) arm(send_timer_, schedule_.top().due_ns, &Worker::send_tick);
}

// ------------------------------------------------------------- receiving

void Worker::deliver(Client& c, std::string_view sio) {
  const auto m = MessageText::find_in(sio);
  if (!m) return;
  const auto& spec = plan_.clients()[c.index];
  if (m->room != spec.room) {
    ++counters_.foreign;
    return;
  }
  if (m->sender == spec.id) {
    ++counters_.self_echo;
    return;
  }
  switch (c.tracker.record(m->sender, m->seq)) {
    case SequenceTracker::Result::duplicate:
      ++counters_.duplicates;
      return;
    case SequenceTracker::Result::reordered:
      ++counters_.reordered;
      [[fallthrough]];
    case SequenceTracker::Result::fresh:
      ++counters_.delivered;
      latency_.record(now_ns() - m->due_ns);
      return;
  }
}

// --------------------------------------------------------------- results

std::uint64_t Worker::sent_by(std::size_t client) const {
  if (options_.scenario == "churn" || client % count_ != index_) return 0;
  const std::size_t slot = client / count_;
  return slot < clients_.size() ? clients_[slot].sent : 0;
}

void Worker::compute_loss(const std::function<std::uint64_t(std::size_t)>& sent_of) {
  if (options_.scenario == "churn" || options_.scenario == "idle") return;
  for (const auto& c : clients_) {
    if (c.phase != Phase::ready) continue;  // a client that failed is counted as an error
    const auto& spec = plan_.clients()[c.index];
    std::vector<std::uint64_t> local_ids;
    for (const std::size_t s : plan_.senders_in(spec.room)) {
      if (s == c.index) continue;
      const std::uint64_t sent = sent_of(s);
      const std::uint64_t id = plan_.clients()[s].id;
      local_ids.push_back(id);
      counters_.expected += sent;
      if (sent) counters_.lost += c.tracker.missing(id, sent);
    }
    // Senders of other load generator processes: only gaps are visible.
    c.tracker.for_each_sender([&](std::uint64_t id) {
      if (std::find(local_ids.begin(), local_ids.end(), id) != local_ids.end()) return;
      const auto miss = c.tracker.missing(id, 0);
      counters_.expected += c.tracker.received(id) + miss;
      counters_.lost += miss;
    });
  }
}

}  // namespace loadgen
