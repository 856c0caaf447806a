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
  w.put("chat_transport_connections_open", G, "Engine.IO sessions open", t.connections_open);
  w.put("chat_transport_websocket_open", G, "Sessions on WebSocket", t.websocket_open);
  w.put("chat_transport_polling_open", G, "Sessions on long-polling", t.polling_open);
  w.put("chat_transport_connections_total", C, "Sessions opened", t.connections_total);
  w.put("chat_transport_upgrades_total", C, "Polling to WebSocket upgrades", t.upgrades_total);
  w.put("chat_transport_http_requests_total", C, "HTTP requests", t.http_requests_total);
  w.put("chat_transport_bad_requests_total", C, "Engine.IO requests refused with 4xx",
        t.bad_requests_total);
  w.put("chat_transport_payload_too_large_total", C, "Bodies or messages over max payload",
        t.payload_too_large_total);
  w.put("chat_transport_protocol_errors_total", C, "Sessions closed for invalid packets",
        t.protocol_errors_total);
  w.put("chat_transport_ping_timeouts_total", C, "Sessions closed for a missing pong",
        t.ping_timeouts_total);
  w.put("chat_transport_slow_reader_closes_total", C,
        "Connections closed because their send queue overflowed", t.slow_reader_closes_total);
  w.put("chat_transport_dropped_packets_total", C, "Droppable packets skipped for slow readers",
        t.dropped_packets_total);
  w.put("chat_transport_packets_in_total", C, "Engine.IO packets received", t.packets_in_total);
  w.put("chat_transport_packets_out_total", C, "Engine.IO packets sent", t.packets_out_total);
  w.put("chat_transport_bytes_in_total", C, "Payload bytes received", t.bytes_in_total);
  w.put("chat_transport_bytes_out_total", C, "Payload bytes sent", t.bytes_out_total);
  w.put("chat_transport_accept_errors_total", C,
        "Failed accepts (EMFILE and others); the loop backs off", t.accept_errors_total);
  w.put("chat_transport_connections_refused_total", C,
        "TCP connections refused: peer at max-connections-per-ip", t.connections_refused_total);
  w.put("chat_transport_ws_writes_total", C,
        "Socket writes on WebSockets; each carries every frame queued at the time",
        t.ws_writes_total);
  w.put("chat_transport_write_timeouts_total", C,
        "Connections closed: a write took over write-timeout", t.write_timeouts_total);
  w.put("chat_transport_close_timeouts_total", C,
        "WebSockets aborted: the graceful close took over close-timeout", t.close_timeouts_total);
  w.put("chat_transport_binary_packet_aborts_total", C,
        "Sessions closed: a binary packet over its byte budget or deadline",
        t.binary_packet_aborts_total);
  w.put("chat_transport_connects_limited_total", C,
        "Socket.IO CONNECTs refused over the per-session budget", t.connects_limited_total);
  w.put("chat_transport_invalid_packets_total", C,
        "Invalid packets that cost a token of the session's rate budget", t.invalid_packets_total);
  w.put("chat_transport_sessions_refused_ip_total", C,
        "Handshakes refused (503): client address at max-sessions-per-ip",
        t.sessions_refused_ip_total);
  w.put("chat_transport_sessions_refused_pending_total", C,
        "Handshakes refused (503): client address at max-pending-per-ip",
        t.sessions_refused_pending_total);
  w.put("chat_transport_sessions_refused_cap_total", C,
        "Handshakes refused (503): server at max-connections sessions",
        t.sessions_refused_cap_total);
  w.put("chat_transport_sessions_refused_memory_total", C,
        "Handshakes refused (503): resident memory over the budget",
        t.sessions_refused_memory_total);
  w.put("chat_transport_connects_refused_memory_total", C,
        "Socket.IO CONNECTs refused (CONNECT_ERROR): resident memory over the budget",
        t.connects_refused_memory_total);
  w.put("chat_transport_origin_refused_total", C,
        "Engine.IO requests refused (403) for their Origin", t.origin_refused_total);
  w.put("chat_process_memory_over_budget", G, "1 while resident memory is over the budget",
        t.memory_over_budget);

  w.put("chat_bus_ready", G, "1 when publishing and consuming work", b.ready ? 1 : 0);
  w.put("chat_bus_publisher_up", G, "Publisher connection up", b.publisher_up ? 1 : 0);
  w.put("chat_bus_consumer_up", G, "Consumer connection up", b.consumer_up ? 1 : 0);
  w.put("chat_bus_published_total", C, "Envelopes handed to the broker", b.published);
  w.put("chat_bus_broker_messages_total", C,
        "Broker messages published (envelopes queued together travel in one)", b.broker_messages);
  w.put("chat_bus_confirmed_total", C, "Publishes confirmed by the broker", b.confirmed);
  w.put("chat_bus_nacked_total", C, "Publishes refused by the broker", b.nacked);
  w.put("chat_bus_returned_total", C, "Publishes returned unroutable", b.returned);
  w.put("chat_bus_consumed_total", C, "Broker messages received (own copies included)", b.consumed);
  w.put("chat_bus_outbox_depth", G, "Envelopes waiting for the broker", b.outbox_depth);
  w.put("chat_bus_outbox_dropped_total", C, "Envelopes unconfirmed when the bus stopped",
        b.outbox_dropped);
  w.put("chat_bus_outbox_refused_total", C,
        "Publishes refused at once: the outbox held its bound (count or bytes)", b.refused);
  w.put("chat_bus_held_bytes", G, "Bytes of publishes queued or unconfirmed", b.held_bytes);
  w.put("chat_bus_rejected_total", C, "Envelopes dropped after the broker refused them repeatedly",
        b.rejected);
  w.put("chat_bus_reconnects_total", C, "Broker reconnections", b.reconnects);
  w.put("chat_bus_bound_rooms", G, "Room bindings in place", b.bound_rooms);
  w.put("chat_bus_duplicates_total", C, "Re-published copies dropped by the consumer",
        b.duplicates);
  w.put("chat_bus_bad_envelopes_total", C, "Deliveries that did not parse (dropped)",
        b.bad_envelopes);
  w.put("chat_bus_exceptions_total", C, "Exceptions caught by the bus threads' last resort",
        b.exceptions);
  w.put("chat_bus_history", G, "1 when room traffic is read from the history stream",
        b.history ? 1 : 0);
  w.put("chat_bus_replayed_total", C, "Envelopes read back from history when the replica started",
        b.replayed);
  w.put("chat_bus_stream_next_offset", G, "History stream offset the replica reads next",
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, b.stream_offset + 1)));
  w.put("chat_bus_republished_total", C,
        "Envelopes the broker confirmed that never reached the history stream, published again",
        b.republished);
  w.put("chat_bus_unchecked_total", C,
        "Confirmed envelopes not checked against the stream (the check window was full)",
        b.unchecked);
  w.put("chat_bus_probes_total", C, "Read-back probes sent to the history stream", b.probes);
  w.put("chat_bus_history_partitions", G, "Partitions of the history (streams by room hash)",
        b.partitions);
  w.put("chat_bus_history_streams_read", G,
        "History streams this replica reads now (its rooms' partitions and the reserved one)",
        b.partitions_read);
  w.put("chat_bus_checking", G, "Published envelopes not yet read back from the history stream",
        b.checking);

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
  }
  w.put("process_resident_memory_bytes", G, "Resident memory", rss_bytes());
  return std::move(w.out);
}

}  // namespace chat::server
