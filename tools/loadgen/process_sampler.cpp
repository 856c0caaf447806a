// ProcessSampler: parsing of /proc/<pid>/stat and /proc/<pid>/status.
#include "process_sampler.hpp"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

namespace loadgen {

namespace {
double steady_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

ProcessSampler::ProcessSampler(std::vector<int> pids) {
  for (int p : pids) pids_.push_back(PerPid{p, {}, {}, {}, {}, {}});
}

ProcessSampler::~ProcessSampler() {
  stop();
}

ProcessSampler::Sample ProcessSampler::read(int pid) {
  Sample s;
  s.t = steady_s();
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return s;
  // The command name may hold spaces: fields are counted after its ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  const auto tck = static_cast<double>(sysconf(_SC_CLK_TCK));
  s.cpu_s = static_cast<double>(utime + stime) / tck;
  s.user_s = static_cast<double>(utime) / tck;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      s.rss_kb = std::stoull(line.substr(6));
      s.ok = true;
      break;
    }
  }
  return s;
}

ProcessSampler::MachineSample ProcessSampler::read_machine() {
  MachineSample m;
  m.t = steady_s();
  std::ifstream stat("/proc/stat");
  std::string cpu;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                     steal = 0;
  if (!(stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) ||
      cpu != "cpu")
    return m;
  const auto tck = static_cast<double>(sysconf(_SC_CLK_TCK));
  m.user = static_cast<double>(user + nice) / tck;
  m.system = static_cast<double>(system + irq + steal) / tck;
  m.softirq = static_cast<double>(softirq) / tck;
  m.idle = static_cast<double>(idle + iowait) / tck;
  m.ok = true;
  return m;
}

nlohmann::json ProcessSampler::machine_json() const {
  std::lock_guard lk(mu_);
  const MachineSample& a = machine_start_;
  const MachineSample& b = machine_end_;
  if (!a.ok || !b.ok || b.t <= a.t) return nlohmann::json::object();
  const double w = b.t - a.t;
  const auto pct = [w](double s) { return 100.0 * s / w; };
  const double user = b.user - a.user, system = b.system - a.system,
               softirq = b.softirq - a.softirq;
  return {{"cores", sysconf(_SC_NPROCESSORS_ONLN)},
          {"window_s", w},
          {"busy_pct", pct(user + system + softirq)},
          {"user_pct", pct(user)},
          {"system_pct", pct(system)},
          {"softirq_pct", pct(softirq)}};
}

void ProcessSampler::sample_all() {
  std::lock_guard lk(mu_);
  for (auto& p : pids_) {
    const Sample s = read(p.pid);
    if (!s.ok) continue;
    if (!p.base.ok) p.base = s;
    if (!p.peak.ok || s.rss_kb > p.peak.rss_kb) p.peak = s;
    p.last = s;
  }
}

void ProcessSampler::start() {
  if (pids_.empty() || running_.exchange(true)) return;
  sample_all();
  thread_ = std::thread([this] {
    while (running_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      sample_all();
    }
  });
}

void ProcessSampler::stop() {
  if (!running_.exchange(false)) return;
  if (thread_.joinable()) thread_.join();
  sample_all();
}

void ProcessSampler::mark_window_start() {
  sample_all();
  std::lock_guard lk(mu_);
  machine_start_ = read_machine();
  for (auto& p : pids_) p.window_start = p.last;
}

void ProcessSampler::mark_window_end() {
  sample_all();
  std::lock_guard lk(mu_);
  machine_end_ = read_machine();
  for (auto& p : pids_) p.window_end = p.last;
}

nlohmann::json ProcessSampler::to_json() const {
  std::lock_guard lk(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& p : pids_) {
    if (!p.base.ok) continue;
    const Sample& a = p.window_start.ok ? p.window_start : p.base;
    const Sample& b = p.window_end.ok ? p.window_end : p.last;
    const double window = b.t - a.t;
    const double cpu = b.cpu_s - a.cpu_s;
    const double user = b.user_s - a.user_s;
    out.push_back({{"pid", p.pid},
                   {"rss_base_kb", p.base.rss_kb},
                   {"rss_peak_kb", p.peak.rss_kb},
                   {"rss_end_kb", p.last.rss_kb},
                   {"cpu_s", cpu},
                   {"user_s", user},
                   {"sys_s", cpu - user},
                   {"window_s", window},
                   {"cpu_pct", window > 0 ? 100.0 * cpu / window : 0.0}});
  }
  return out;
}

}  // namespace loadgen
