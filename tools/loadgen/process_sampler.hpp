// ProcessSampler: RSS and CPU time of server processes, read from /proc.
//
// A background thread samples every pid twice a second. The runner marks a
// measurement window (e.g. the send phase, or the idle hold) and the report
// gives the CPU share inside that window, the RSS before any connection
// (baseline) and the highest RSS seen.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace loadgen {

class ProcessSampler {
 public:
  explicit ProcessSampler(std::vector<int> pids);
  ~ProcessSampler();
  ProcessSampler(const ProcessSampler&) = delete;
  ProcessSampler& operator=(const ProcessSampler&) = delete;

  void start();
  void stop();
  void mark_window_start();
  void mark_window_end();

  // [{pid, rss_base_kb, rss_peak_kb, rss_end_kb, cpu_s, user_s, sys_s, cpu_pct, window_s}]
  nlohmann::json to_json() const;

  // The whole machine's CPU over the window, from /proc/stat (100 = one
  // core): {cores, window_s, busy_pct, user_pct, system_pct, softirq_pct}.
  // What the measured processes leave of busy_pct is everyone else's.
  nlohmann::json machine_json() const;

 private:
  struct Sample {
    bool ok = false;
    std::uint64_t rss_kb = 0;
    double cpu_s = 0;   // utime + stime
    double user_s = 0;  // utime
    double t = 0;       // steady seconds
  };
  struct PerPid {
    int pid = 0;
    Sample base, peak, last, window_start, window_end;
  };
  static Sample read(int pid);
  struct MachineSample {
    bool ok = false;
    double t = 0;
    // Seconds of all cores together: user (with nice), system (with irq),
    // softirq, idle (with iowait).
    double user = 0, system = 0, softirq = 0, idle = 0;
  };
  static MachineSample read_machine();
  MachineSample machine_start_, machine_end_;
  void sample_all();

  std::vector<PerPid> pids_;
  mutable std::mutex mu_;
  std::atomic<bool> running_{false};
  std::thread thread_;
};

}  // namespace loadgen
