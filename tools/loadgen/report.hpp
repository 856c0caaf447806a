// Report: the result of one run, or of several runs merged.
//
// The JSON form keeps raw counts, timings and full histograms, so reports of
// several load generator processes (one per 20,000 file descriptors) can be
// merged without losing precision; derived figures are recomputed on merge.
#pragma once

#include "counters.hpp"
#include "histogram.hpp"

#include <nlohmann/json.hpp>

#include <ostream>
#include <string>
#include <vector>

namespace loadgen {

class Report {
 public:
  std::string label, scenario, target;
  unsigned processes = 1;
  nlohmann::json config = nlohmann::json::object();
  Counters counters;
  double ramp_s = 0;    // first connect to last ready
  double window_s = 0;  // send phase, idle hold or churn time
  double drain_s = 0;
  Histogram latency, send_lag, connect_time;
  nlohmann::json server = nlohmann::json::array();  // ProcessSampler::to_json() entries
  // The load generator's own CPU over the send phase and the drain (or the
  // idle hold, or the churn), summed over its processes.
  double self_user_s = 0, self_sys_s = 0;
  // The same inside the window only, and what else shared the machine then:
  // the broker processes (--broker-pids) and the whole machine's CPU.
  double self_window_s = 0;
  nlohmann::json broker = nlohmann::json::array();
  nlohmann::json machine = nlohmann::json::object();  // ProcessSampler::machine_json()

  nlohmann::json to_json() const;
  static Report from_json(const nlohmann::json& j);
  static Report merge(const std::vector<Report>& parts);

  void print(std::ostream& os) const;
  // True when nothing was lost and errors stayed within max_errors.
  bool passed(std::uint64_t max_errors) const;

 private:
  nlohmann::json derived() const;
};

}  // namespace loadgen
