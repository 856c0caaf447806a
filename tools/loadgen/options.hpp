// Options: every knob of one load generator run (filled from the command line).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loadgen {

struct Options {
  std::vector<std::string> urls{"http://127.0.0.1:3000"};  // one per replica
  std::string target = "chat";      // "chat" (rooms, acks) or "peer" (one implicit room)
  std::string scenario = "fanout";  // fanout | rooms | latency | idle | churn
  unsigned threads = 1;
  unsigned connections = 100;
  double connect_rate = 1000;    // new connections per second (all threads)
  unsigned source_addrs = 1;     // bind to 127.0.0.1 .. 127.0.0.<n>
  unsigned senders = 10;         // fanout / latency: how many members send
  unsigned room_size = 10;       // rooms: members per room
  double rate = 100;             // messages per second in, all senders together
  std::size_t payload = 64;      // message text bytes
  double duration = 10;          // seconds of sending (idle: holding, churn: churning)
  double drain = 3;              // seconds to wait for late deliveries
  double settle = 1;             // seconds between the last join and the first send
  double ready_timeout = 120;    // seconds to get every connection logged in
  unsigned concurrency = 64;     // churn: connections in flight
  std::int64_t start_at_ms = 0;  // epoch ms: do not start sending before (aligns processes)
  unsigned tag = 0;              // process number: keeps sender ids and rooms distinct
  std::vector<int> server_pids;  // sampled from /proc for RSS and CPU
  std::vector<int> broker_pids;  // the same, reported apart (the broker's share of the machine)
  std::uint64_t max_errors = 0;
  std::string json_path;
  std::string label;  // free text copied into the report (e.g. "ours", "peer")
  bool quiet = false;
  bool deflate = false;  // offer permessage-deflate
};

}  // namespace loadgen
