// chat-loadgen: load generator for Socket.IO chat servers (ours and the peer).
//
//   chat-loadgen --scenario fanout --urls http://127.0.0.1:3001,http://127.0.0.1:3002 ...
//   chat-loadgen --merge a.json b.json --json all.json   (combine several processes)
//
// Prints a table, writes JSON with --json, exits 1 when messages were lost or
// errors exceeded --max-errors, 2 on bad usage.
#include "report.hpp"
#include "runner.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <fstream>
#include <iostream>

using loadgen::Options;
using loadgen::Report;

namespace {

// Connections are files: use all the descriptors the hard limit allows.
void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

bool write_json(const std::string& path, const Report& r) {
  std::ofstream f(path);
  f << r.to_json().dump() << '\n';
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::vector<std::string> merge;
  CLI::App app{"chat-loadgen: Socket.IO chat load generator"};
  app.add_option("--urls", o.urls, "Server URLs, one per replica (comma separated)")
      ->delimiter(',');
  app.add_option("--target", o.target, "chat (rooms, acks) or peer (one implicit room)")
      ->check(CLI::IsMember({"chat", "peer"}));
  app.add_option("--scenario", o.scenario, "fanout | rooms | latency | idle | churn")
      ->check(CLI::IsMember({"fanout", "rooms", "latency", "idle", "churn"}));
  app.add_option("--threads", o.threads, "Event loop threads");
  app.add_option("--connections,-n", o.connections, "Connections (clients) to open");
  app.add_option("--connect-rate", o.connect_rate, "New connections per second");
  app.add_option("--source-addrs", o.source_addrs, "Bind to 127.0.0.1..127.0.0.N (loopback)");
  app.add_option("--senders", o.senders, "fanout/latency: how many clients send");
  app.add_option("--room-size", o.room_size, "rooms: members per room");
  app.add_option("--rate", o.rate, "Messages per second in, all senders together");
  app.add_option("--payload", o.payload, "Message text bytes");
  app.add_option("--duration", o.duration, "Seconds of sending / holding / churning");
  app.add_option("--drain", o.drain, "Seconds to wait for late deliveries");
  app.add_option("--settle", o.settle, "Seconds between the last join and the first send");
  app.add_option("--ready-timeout", o.ready_timeout, "Seconds to get every client ready");
  app.add_option("--concurrency", o.concurrency, "churn: connections in flight");
  app.add_option("--start-at", o.start_at_ms, "Epoch ms before which no message is sent");
  app.add_option("--tag", o.tag, "Process number (distinct per process of one run)");
  app.add_option("--server-pids", o.server_pids, "Server PIDs to sample (comma separated)")
      ->delimiter(',');
  app.add_option("--broker-pids", o.broker_pids,
                 "Broker PIDs to sample, reported apart from the servers (comma separated)")
      ->delimiter(',');
  app.add_option("--max-errors", o.max_errors, "Errors tolerated before exiting 1");
  app.add_option("--json", o.json_path, "Write the report as JSON to this file");
  app.add_option("--label", o.label, "Name for this run in the report");
  app.add_flag("--quiet,-q", o.quiet, "No progress lines");
  app.add_flag("--deflate", o.deflate,
               "Offer permessage-deflate (the server's --ws-deflate); inflate compressed frames");
  app.add_option("--merge", merge, "Merge these report files instead of running");
  CLI11_PARSE(app, argc, argv);

  Report report;
  if (!merge.empty()) {
    std::vector<Report> parts;
    for (const auto& path : merge) {
      std::ifstream f(path);
      const auto j = nlohmann::json::parse(f, nullptr, false);
      if (j.is_discarded() || !j.contains("counters")) {
        std::cerr << "chat-loadgen: not a report: " << path << '\n';
        return 2;
      }
      parts.push_back(Report::from_json(j));
    }
    report = Report::merge(parts);
    if (!o.label.empty()) report.label = o.label;
  } else {
    raise_fd_limit();
    try {
      report = loadgen::Runner(o).run();
    } catch (const std::exception& e) {
      std::cerr << "chat-loadgen: " << e.what() << '\n';
      return 2;
    }
  }
  report.print(std::cout);
  if (!o.json_path.empty() && !write_json(o.json_path, report)) {
    std::cerr << "chat-loadgen: cannot write " << o.json_path << '\n';
    return 2;
  }
  const bool ok = report.passed(o.max_errors);
  if (!ok) std::cout << "  verdict       FAIL (lost messages or too many errors)\n";
  return ok ? 0 : 1;
}
