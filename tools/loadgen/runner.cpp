// Runner phases.
#include "runner.hpp"

#include "clock.hpp"
#include "plan.hpp"
#include "process_sampler.hpp"
#include "worker.hpp"

#include <fmt/format.h>

#include <sys/resource.h>

#include <chrono>
#include <memory>
#include <thread>
#include <utility>

namespace loadgen {

namespace {
void sleep_until_ns(std::int64_t t) {
  const std::int64_t d = t - now_ns();
  if (d > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(d));
}
double seconds(std::int64_t ns) {
  return static_cast<double>(ns) / 1e9;
}
// This process's CPU time so far: user and system seconds.
std::pair<double, double> own_cpu() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const auto s = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return {s(ru.ru_utime), s(ru.ru_stime)};
}
}  // namespace

Runner::Runner(Options options) : options_(std::move(options)) {}

Report Runner::run() {
  const Options& o = options_;
  const Plan plan(o);
  Progress progress;
  const unsigned n_threads = std::max(1U, o.threads);
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < n_threads; ++i)
    workers.push_back(std::make_unique<Worker>(i, n_threads, o, plan, progress));
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

  ProcessSampler sampler(o.server_pids);
  ProcessSampler brokers(o.broker_pids);
  sampler.start();
  brokers.start();
  // Marks the measurement window on both samplers; the load generator's own
  // CPU inside the window goes with the machine's breakdown.
  std::pair<double, double> self_window_from{};
  double report_self_window_s = 0;
  const auto window_start = [&] {
    sampler.mark_window_start();
    brokers.mark_window_start();
    self_window_from = own_cpu();
  };
  const auto window_end = [&] {
    sampler.mark_window_end();
    brokers.mark_window_end();
    const auto to = own_cpu();
    report_self_window_s =
        (to.first - self_window_from.first) + (to.second - self_window_from.second);
  };
  const auto say = [&](const std::string& s) {
    if (!o.quiet) fmt::print(stderr, "[loadgen {}] {}\n", o.tag, s);
  };

  Report report;
  report.label = o.label;
  report.scenario = o.scenario;
  report.target = o.target;
  report.config = {{"urls", o.urls},
                   {"threads", n_threads},
                   {"connections", o.connections},
                   {"connect_rate", o.connect_rate},
                   {"source_addrs", o.source_addrs},
                   {"senders", o.senders},
                   {"room_size", o.room_size},
                   {"rate", o.rate},
                   {"payload", o.payload},
                   {"duration", o.duration},
                   {"drain", o.drain},
                   {"concurrency", o.concurrency}};

  std::pair<double, double> self_from{}, self_to{};
  const std::int64_t t_start = now_ns();
  if (o.scenario == "churn") {
    const std::int64_t end = t_start + static_cast<std::int64_t>(o.duration * 1e9);
    window_start();
    self_from = own_cpu();
    for (auto& w : workers) w->start_churn(end);
    while (now_ns() < end) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      say(fmt::format("churn: {} handshakes", progress.handshakes.load()));
    }
    window_end();
    self_to = own_cpu();
    report.window_s = seconds(now_ns() - t_start);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let in-flight ones finish
  } else {
    for (auto& w : workers) w->start_connecting(o.connect_rate / n_threads);
    const std::int64_t deadline = t_start + static_cast<std::int64_t>(o.ready_timeout * 1e9);
    std::int64_t next_say = t_start + 2'000'000'000;
    while (progress.settled.load() < o.connections && now_ns() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (now_ns() >= next_say) {
        next_say += 2'000'000'000;
        say(fmt::format("ready {} / {}", progress.ready.load(), o.connections));
      }
    }
    const auto last_ready = progress.last_ready_ns.load();
    report.ramp_s = last_ready > t_start ? seconds(last_ready - t_start) : 0;
    say(fmt::format("ready {} / {} after {:.2f} s", progress.ready.load(), o.connections,
                    report.ramp_s));

    if (o.scenario == "idle") {
      const std::int64_t a = now_ns();
      window_start();
      self_from = own_cpu();
      sleep_until_ns(a + static_cast<std::int64_t>(o.duration * 1e9));
      window_end();
      self_to = own_cpu();
      report.window_s = seconds(now_ns() - a);
    } else {
      // Joins may still be travelling to the other replicas' brokers bindings.
      std::this_thread::sleep_for(std::chrono::duration<double>(o.settle));
      std::int64_t t0 = now_ns() + 100'000'000;
      if (o.start_at_ms > 0) t0 = std::max(t0, o.start_at_ms * 1'000'000);
      const std::int64_t end = t0 + static_cast<std::int64_t>(o.duration * 1e9);
      for (auto& w : workers) w->start_sending(t0, end);
      sleep_until_ns(t0);
      window_start();
      self_from = own_cpu();
      say(fmt::format("sending {:.0f} msg/s for {:.1f} s", o.rate, o.duration));
      sleep_until_ns(end);
      window_end();
      report.window_s = seconds(end - t0);
      sleep_until_ns(end + static_cast<std::int64_t>(o.drain * 1e9));
      self_to = own_cpu();
      report.drain_s = o.drain;
    }
  }

  for (auto& w : workers) w->stop();
  for (auto& t : threads) t.join();
  sampler.stop();
  brokers.stop();

  const auto sent_of = [&](std::size_t client) {
    return workers[client % n_threads]->sent_by(client);
  };
  for (auto& w : workers) {
    w->compute_loss(sent_of);
    report.counters.add(w->counters());
    report.latency.merge(w->latency());
    report.send_lag.merge(w->send_lag());
    report.connect_time.merge(w->connect_time());
  }
  // Clients that never became ready in time are errors even when no
  // callback said why (e.g. a login that was never answered).
  if (o.scenario != "churn" && report.counters.ready < o.connections) {
    const std::uint64_t not_ready = o.connections - report.counters.ready;
    if (report.counters.errors() < not_ready)
      report.counters.protocol_errors += not_ready - report.counters.errors();
  }
  report.server = sampler.to_json();
  report.broker = brokers.to_json();
  report.machine = sampler.machine_json();
  report.self_window_s = report_self_window_s;
  report.self_user_s = self_to.first - self_from.first;
  report.self_sys_s = self_to.second - self_from.second;
  return report;
}

}  // namespace loadgen
