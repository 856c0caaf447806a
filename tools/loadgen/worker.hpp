// Worker: one thread, one io_context, and the clients that thread runs.
//
// It opens its share of the connections at the planned rate, logs them in,
// sends on an open-loop schedule (each message is stamped with the time it
// was due, not the time it went out) and accounts for every delivery. The
// runner talks to it only by posting to its io_context, and reads its
// results after the thread has been joined.
#pragma once

#include "connection_host.hpp"
#include "counters.hpp"
#include "histogram.hpp"
#include "options.hpp"
#include "plan.hpp"
#include "sequence_tracker.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <vector>

namespace loadgen {

class Connection;

// Progress every worker reports to the runner while it runs.
struct Progress {
  std::atomic<unsigned> settled{0};  // clients ready or given up on
  std::atomic<unsigned> ready{0};
  std::atomic<std::int64_t> last_ready_ns{0};
  std::atomic<std::uint64_t> handshakes{0};
};

class Worker final : public ConnectionHost {
 public:
  Worker(unsigned index, unsigned count, const Options& options, const Plan& plan,
         Progress& progress);
  ~Worker() override;

  void run();   // thread body
  void stop();  // from any thread

  // From any thread: each posts its work to this worker.
  void start_connecting(double rate_per_worker);
  void start_sending(std::int64_t first_due_ns, std::int64_t end_ns);
  void start_churn(std::int64_t end_ns);

  // After the thread was joined.
  std::uint64_t sent_by(std::size_t client) const;  // 0 when not ours
  void compute_loss(const std::function<std::uint64_t(std::size_t)>& sent_of);
  const Counters& counters() const { return counters_; }
  const Histogram& latency() const { return latency_; }
  const Histogram& send_lag() const { return send_lag_; }
  const Histogram& connect_time() const { return connect_time_; }

  void on_open(Connection& c) override;
  void on_packet(Connection& c, std::string_view sio) override;
  void on_closed(Connection& c, std::string_view what) override;

 private:
  enum class Phase : std::uint8_t { idle, connecting, login, joining, ready, closing, closed };
  struct Client {
    std::size_t index = 0;  // into plan.clients()
    std::shared_ptr<Connection> conn;
    SequenceTracker tracker;
    Phase phase = Phase::idle;
    bool settled = false;
    std::int64_t started_ns = 0;
    std::uint64_t sent = 0;
  };
  struct Due {
    std::int64_t due_ns;
    std::size_t slot;
    bool operator>(const Due& o) const { return due_ns > o.due_ns; }
  };

  void open(std::size_t slot, std::size_t plan_index);
  void settle(Client& c, bool ok);
  void connect_tick();
  void send_tick();
  void churn_next(std::size_t slot);
  void deliver(Client& c, std::string_view sio);
  void arm(boost::asio::steady_timer& t, std::int64_t at_ns, void (Worker::*fn)());

  const unsigned index_;
  const unsigned count_;
  const Options& options_;
  const Plan& plan_;
  Progress& progress_;
  boost::asio::io_context ioc_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_;
  boost::asio::steady_timer connect_timer_;
  boost::asio::steady_timer send_timer_;
  std::vector<Client> clients_;
  Counters counters_;
  Histogram latency_, send_lag_, connect_time_;

  // Connect ramp.
  std::size_t next_connect_ = 0;
  std::int64_t connect_start_ns_ = 0;
  double connect_interval_ns_ = 0;

  // Open-loop send schedule.
  std::priority_queue<Due, std::vector<Due>, std::greater<>> schedule_;
  std::int64_t period_ns_ = 0;
  std::int64_t send_end_ns_ = 0;
  std::string packet_head_;  // "42[\"new message\"," and the room part

  // Churn.
  std::int64_t churn_end_ns_ = 0;
  std::uint64_t churn_attempts_ = 0;
};

}  // namespace loadgen
