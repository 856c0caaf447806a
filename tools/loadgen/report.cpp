// Report JSON, merging and the human-readable table.
#include "report.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace loadgen {

namespace {
double ms(std::int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

nlohmann::json percentiles(const Histogram& h) {
  return {{"count", h.count()},
          {"p50_ms", ms(h.quantile(0.5))},
          {"p90_ms", ms(h.quantile(0.9))},
          {"p99_ms", ms(h.quantile(0.99))},
          {"p999_ms", ms(h.quantile(0.999))},
          {"max_ms", ms(h.max())},
          {"mean_ms", h.mean() / 1e6}};
}
}  // namespace

nlohmann::json Report::derived() const {
  const auto& c = counters;
  nlohmann::json d;
  d["messages_in_per_s"] = window_s > 0 ? static_cast<double>(c.sent) / window_s : 0;
  d["deliveries_per_s"] = window_s > 0 ? static_cast<double>(c.delivered) / window_s : 0;
  d["connects_per_s"] = ramp_s > 0 ? static_cast<double>(c.ready) / ramp_s : 0;
  d["handshakes_per_s"] = window_s > 0 ? static_cast<double>(c.handshakes) / window_s : 0;
  d["latency"] = percentiles(latency);
  d["send_lag"] = percentiles(send_lag);
  d["connect_time"] = percentiles(connect_time);
  std::uint64_t base = 0, peak = 0;
  double cpu_s = 0, user_s = 0, win = 0;
  for (const auto& s : server) {
    base += s.value("rss_base_kb", std::uint64_t{0});
    peak += s.value("rss_peak_kb", std::uint64_t{0});
    cpu_s += s.value("cpu_s", 0.0);
    user_s += s.value("user_s", 0.0);
    win = std::max(win, s.value("window_s", 0.0));
  }
  d["server_rss_base_mb"] = static_cast<double>(base) / 1024;
  d["server_rss_peak_mb"] = static_cast<double>(peak) / 1024;
  d["server_kb_per_connection"] =
      c.ready ? static_cast<double>(peak - std::min(peak, base)) / static_cast<double>(c.ready) : 0;
  d["server_cpu_pct"] = win > 0 ? 100.0 * cpu_s / win : 0;  // sum over replicas, 100 = one core
  // The servers' CPU over the window per delivery at the window's rate.
  const double delivered_in_window =
      window_s > 0 && win > 0 ? static_cast<double>(c.delivered) * win / window_s : 0.0;
  const auto server_per_delivery = [&](double s) {
    return delivered_in_window > 0 ? 1e6 * s / delivered_in_window : 0.0;
  };
  d["server_user_us_per_delivery"] = server_per_delivery(user_s);
  d["server_sys_us_per_delivery"] = server_per_delivery(cpu_s - user_s);
  const double span = window_s + drain_s;
  d["loadgen_cpu_pct"] = span > 0 ? 100.0 * (self_user_s + self_sys_s) / span : 0;
  const auto per_delivery = [&](double s) {
    return c.delivered ? 1e6 * s / static_cast<double>(c.delivered) : 0.0;
  };
  double broker_cpu_s = 0, broker_win = 0;
  for (const auto& s : broker) {
    broker_cpu_s += s.value("cpu_s", 0.0);
    broker_win = std::max(broker_win, s.value("window_s", 0.0));
  }
  d["broker_cpu_pct"] = broker_win > 0 ? 100.0 * broker_cpu_s / broker_win : 0;
  d["loadgen_window_cpu_pct"] = window_s > 0 ? 100.0 * self_window_s / window_s : 0;
  d["loadgen_user_us_per_delivery"] = per_delivery(self_user_s);
  d["loadgen_sys_us_per_delivery"] = per_delivery(self_sys_s);
  return d;
}

nlohmann::json Report::to_json() const {
  return {{"version", 1},
          {"label", label},
          {"scenario", scenario},
          {"target", target},
          {"processes", processes},
          {"config", config},
          {"counters", counters.to_json()},
          {"timing", {{"ramp_s", ramp_s}, {"window_s", window_s}, {"drain_s", drain_s}}},
          {"latency", latency.to_json()},
          {"send_lag", send_lag.to_json()},
          {"connect_time", connect_time.to_json()},
          {"server", server},
          {"self", {{"user_s", self_user_s}, {"sys_s", self_sys_s}, {"window_s", self_window_s}}},
          {"broker", broker},
          {"machine", machine},
          {"derived", derived()}};
}

Report Report::from_json(const nlohmann::json& j) {
  Report r;
  r.label = j.value("label", "");
  r.scenario = j.value("scenario", "");
  r.target = j.value("target", "");
  r.processes = j.value("processes", 1U);
  r.config = j.value("config", nlohmann::json::object());
  r.counters = Counters::from_json(j.at("counters"));
  const auto& t = j.at("timing");
  r.ramp_s = t.value("ramp_s", 0.0);
  r.window_s = t.value("window_s", 0.0);
  r.drain_s = t.value("drain_s", 0.0);
  r.latency = Histogram::from_json(j.at("latency"));
  r.send_lag = Histogram::from_json(j.at("send_lag"));
  r.connect_time = Histogram::from_json(j.at("connect_time"));
  r.server = j.value("server", nlohmann::json::array());
  const auto self = j.value("self", nlohmann::json::object());
  r.self_user_s = self.value("user_s", 0.0);
  r.self_sys_s = self.value("sys_s", 0.0);
  r.self_window_s = self.value("window_s", 0.0);
  r.broker = j.value("broker", nlohmann::json::array());
  r.machine = j.value("machine", nlohmann::json::object());
  return r;
}

Report Report::merge(const std::vector<Report>& parts) {
  Report r;
  if (parts.empty()) return r;
  r.label = parts[0].label;
  r.scenario = parts[0].scenario;
  r.target = parts[0].target;
  r.config = parts[0].config;
  r.processes = 0;
  for (const auto& p : parts) {
    r.processes += p.processes;
    r.counters.add(p.counters);
    // The processes ran side by side: the phases overlap, so take the longest.
    r.ramp_s = std::max(r.ramp_s, p.ramp_s);
    r.window_s = std::max(r.window_s, p.window_s);
    r.drain_s = std::max(r.drain_s, p.drain_s);
    r.latency.merge(p.latency);
    r.send_lag.merge(p.send_lag);
    r.connect_time.merge(p.connect_time);
    for (const auto& s : p.server) r.server.push_back(s);
    r.self_user_s += p.self_user_s;
    r.self_sys_s += p.self_sys_s;
    r.self_window_s += p.self_window_s;
    for (const auto& s : p.broker) r.broker.push_back(s);
    // The processes ran side by side on one machine: one machine figure.
    if (r.machine.empty()) r.machine = p.machine;
  }
  return r;
}

bool Report::passed(std::uint64_t max_errors) const {
  return counters.lost == 0 && counters.errors() <= max_errors;
}

void Report::print(std::ostream& os) const {
  const auto d = derived();
  const auto& c = counters;
  os << fmt::format("== {} {} on {} ({} process{})\n", label.empty() ? "run" : label, scenario,
                    target, processes, processes == 1 ? "" : "es");
  os << fmt::format("  connections   ready {} / attempts {}, connect errors {}, disconnects {}\n",
                    c.ready, c.connect_attempts, c.connect_errors, c.disconnects);
  os << fmt::format("  ramp          {:.2f} s, {:.0f} connects/s\n", ramp_s,
                    d["connects_per_s"].get<double>());
  const auto line = [&](const char* name, const nlohmann::json& p) {
    os << fmt::format("  {:<13} n={} p50 {:.2f} p90 {:.2f} p99 {:.2f} p99.9 {:.2f} max {:.2f} ms\n",
                      name, p["count"].get<std::uint64_t>(), p["p50_ms"].get<double>(),
                      p["p90_ms"].get<double>(), p["p99_ms"].get<double>(),
                      p["p999_ms"].get<double>(), p["max_ms"].get<double>());
  };
  line("connect time", d["connect_time"]);
  if (scenario == "churn") {
    os << fmt::format("  churn         {} handshakes in {:.1f} s = {:.0f}/s\n", c.handshakes,
                      window_s, d["handshakes_per_s"].get<double>());
  } else if (scenario != "idle") {
    os << fmt::format("  messages      sent {} ({:.0f}/s in), delivered {} ({:.0f}/s)\n", c.sent,
                      d["messages_in_per_s"].get<double>(), c.delivered,
                      d["deliveries_per_s"].get<double>());
    os << fmt::format(
        "  accounting    expected {}, lost {}, duplicates {}, reordered {}, "
        "foreign {}, self-echo {}\n",
        c.expected, c.lost, c.duplicates, c.reordered, c.foreign, c.self_echo);
    line("latency", d["latency"]);
    line("send lag", d["send_lag"]);
    os << fmt::format(
        "  load gen      CPU {:.1f}% of one core, {:.2f} us user + {:.2f} us sys per delivery\n",
        d["loadgen_cpu_pct"].get<double>(), d["loadgen_user_us_per_delivery"].get<double>(),
        d["loadgen_sys_us_per_delivery"].get<double>());
  }
  os << fmt::format("  errors        {} (chat {}, protocol {})\n", c.errors(), c.chat_errors,
                    c.protocol_errors);
  os << fmt::format("  traffic       in {:.1f} MB, out {:.1f} MB\n",
                    static_cast<double>(c.bytes_in) / 1e6, static_cast<double>(c.bytes_out) / 1e6);
  if (!server.empty()) {
    os << fmt::format(
        "  server        RSS {:.1f} -> {:.1f} MB peak ({:.2f} KB/connection), "
        "CPU {:.1f}% of one core\n",
        d["server_rss_base_mb"].get<double>(), d["server_rss_peak_mb"].get<double>(),
        d["server_kb_per_connection"].get<double>(), d["server_cpu_pct"].get<double>());
    if (c.delivered > 0)
      os << fmt::format("  server CPU    {:.2f} us user + {:.2f} us sys per delivery\n",
                        d["server_user_us_per_delivery"].get<double>(),
                        d["server_sys_us_per_delivery"].get<double>());
  }
  if (machine.contains("busy_pct")) {
    // Where the machine's CPU went in the window (100 = one core): a tail
    // latency on a machine with no idle core is a queue for the CPU.
    const double busy = machine.value("busy_pct", 0.0);
    const double srv = d["server_cpu_pct"].get<double>();
    const double lg = d["loadgen_window_cpu_pct"].get<double>();
    const double brk = d["broker_cpu_pct"].get<double>();
    os << fmt::format(
        "  machine       CPU {:.0f}% busy of {}00% (user {:.0f}, system {:.0f}, softirq {:.0f}): "
        "servers {:.0f}, load gen {:.0f}, broker {}, rest {:.0f}\n",
        busy, machine.value("cores", 0), machine.value("user_pct", 0.0),
        machine.value("system_pct", 0.0), machine.value("softirq_pct", 0.0), srv, lg,
        broker.empty() ? std::string("-") : fmt::format("{:.0f}", brk),
        std::max(0.0, busy - srv - lg - brk));
  }
}

}  // namespace loadgen
