// render_metrics; see metrics.hpp. Names: chat_<layer>_<what>[_total].
#include "server/metrics.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <fstream>

namespace chat::server {

namespace {
struct Writer {
  std::string out;
  std::string labels;
  void put(const char* name, const char* type, const char* help, std::uint64_t v) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n{}{{{}}} {}\n", name, help,
                   name, type, name, labels, v);
  }
  void histogram(const char* name, const char* help, const runtime::LatencyHistogram::Snapshot& h) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} histogram\n", name, help,
                   name);
    std::uint64_t cum = 0;
    const auto& bounds = runtime::LatencyHistogram::kBoundsMs;
    for (std::size_t i = 0; i < h.buckets.size(); ++i) {
      cum += h.buckets[i];
      const std::string le = i < bounds.size() ? fmt::format("{:g}", bounds[i] / 1000.0) : "+Inf";
      fmt::format_to(std::back_inserter(out), "{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, le,
                     cum);
    }
    fmt::format_to(std::back_inserter(out), "{}_sum{{{}}} {:.6f}\n{}_count{{{}}} {}\n", name,
                   labels, static_cast<double>(h.sum_us) / 1e6, name, labels, h.count);
  }
  // One metric, one sample per value of an extra label.
  template <class Name, class Value>
  void put_labelled(const char* name, const char* type, const char* help, const char* label,
                    std::size_t n, Name name_of, Value value_of) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (std::size_t i = 0; i < n; ++i)
      fmt::format_to(std::back_inserter(out), "{}{{{},{}=\"{}\"}} {}\n", name, labels, label,
                     name_of(i), value_of(i));
  }
};

// Resident set size in bytes, from /proc/self/statm.
std::uint64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}
}  // namespace

std::string render_metrics(const std::string& replica, const transport::Stats& t,
                           const bus::BusStatus& b, const app::ChatStats* c) {
  Writer w;
  w.labels = fmt::format("replica=\"{}\"", replica);
  const char* G = "gauge";
  const char* C = "counter";
#define CHAT_TRANSPORT_METRIC(field, type, help) \
  w.put("chat_transport_" #field, #type, help, t.field);
  CHAT_TRANSPORT_WORKER_GAUGES(CHAT_TRANSPORT_METRIC)
  CHAT_TRANSPORT_WORKER_COUNTERS(CHAT_TRANSPORT_METRIC)
  CHAT_TRANSPORT_SERVER_COUNTERS(CHAT_TRANSPORT_METRIC)
#undef CHAT_TRANSPORT_METRIC
  w.put("chat_process_memory_over_budget", G, "1 while resident memory is over the budget",
        t.memory_over_budget);

#define CHAT_BUS_METRIC(field, name, type, help) w.put(name, #type, help, b.field);
  CHAT_BUS_STATS(CHAT_BUS_METRIC)
#undef CHAT_BUS_METRIC
  w.put("chat_bus_ready", G, "1 when publishing and consuming work", b.ready ? 1 : 0);
  w.put("chat_bus_publisher_up", G, "Publisher connection up", b.publisher_up ? 1 : 0);
  w.put("chat_bus_consumer_up", G, "Consumer connection up", b.consumer_up ? 1 : 0);
  w.put("chat_bus_history", G, "1 when room traffic is read from the history stream",
        b.history ? 1 : 0);
  w.put("chat_bus_stream_next_offset", G, "History stream offset the replica reads next",
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, b.stream_offset + 1)));
  w.put("chat_bus_history_partitions", G, "Partitions of the history (streams by room hash)",
        b.partitions);
  w.put("chat_bus_history_streams_read", G,
        "History streams this replica reads now (its rooms' partitions and the reserved one)",
        b.partitions_read);

  if (c) {
#define CHAT_METRIC(field, name, type, help) w.put(name, #type, help, c->field);
    CHAT_WORKER_COUNTERS(CHAT_METRIC)
    CHAT_REPLICA_STATS(CHAT_METRIC)
#undef CHAT_METRIC
    w.put_labelled(
        "chat_bus_bad_payloads_total", C, "Envelopes whose payload failed its checks (dropped)",
        "kind", app::kInboundKinds,
        [](std::size_t k) { return app::inbound_kind_name(static_cast<app::InboundKind>(k)); },
        [c](std::size_t k) { return c->bad_payloads[k]; });
    w.histogram("chat_delivery_latency_seconds",
                "Age of a room message when it is handed to this replica's members (from its "
                "sender replica's clock)",
                c->delivery_latency);
    w.histogram("chat_ack_latency_seconds",
                "From a user's message to the bus's confirm (the ack): storing it in the broker",
                c->ack_latency);
  }
  w.put("process_resident_memory_bytes", G, "Resident memory", rss_bytes());
  return std::move(w.out);
}

std::string render_admin_metrics(const std::string& replica, const admin::AdminUi::Stats& a) {
  Writer w;
  w.labels = fmt::format("replica=\"{}\"", replica);
  w.put("chat_admin_sockets", "gauge", "Admin UI sockets connected to this replica",
        a.admin_sockets);
  w.put("chat_admin_logins_refused_total", "counter",
        "Admin UI logins refused (bad credentials, or too many at once)", a.logins_refused);
  w.put("chat_admin_feed_dropped_total", "counter",
        "Admin UI live-feed entries dropped (over the bound between two flushes)", a.feed_dropped);
  w.put("chat_admin_commands_total", "counter",
        "Admin UI commands applied to sockets of this replica", a.commands);
  w.put("chat_admin_bad_envelopes_total", "counter",
        "Admin UI messages from the bus that were malformed (dropped)", a.bad_envelopes);
  return w.out;
}

}  // namespace chat::server
