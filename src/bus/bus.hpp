// The cluster bus: how replicas exchange chat traffic.
//
// The chat application publishes every room event and every presence/control
// message here and delivers to its local users only what comes back through
// the delivery handler. Two implementations: InProcessBus (one replica, the
// default) and AmqpBus (RabbitMQ, many replicas).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace chat::bus {

// One message on the bus. Immutable once published; shared between threads.
struct Envelope {
  std::string origin;  // replica instance id that published it
  std::string id;      // unique message id (origin-scoped counter or uuid)
  std::string room;    // room name, or empty for the cluster-wide control key
  std::string event;   // chat event name ("new message", "user joined", "presence.heartbeat", ...)
  nlohmann::json payload;  // event data (a JSON object); see payload_text
  std::int64_t ts = 0;     // milliseconds since the epoch, set by the publisher
  std::string sender;  // socket id that must not receive it (the sender's own socket); may be empty
  // Set by the receiving bus, not serialized. position: where the envelope
  // sits in the cluster's history (the stream offset times kPositionScale
  // plus its index in a joined broker message; the in-process bus counts),
  // the same on every replica; -1 when the bus keeps no history.
  std::int64_t position = -1;
  // Set by the receiving bus: the history partition the envelope was read
  // from (0 without partitions), and, with several partitions, this
  // replica's position in each partition it reads once this envelope is
  // delivered ("p:position,..."; docs/cluster.md, "Partitions"): the offset
  // a client resumes from. Empty with one partition (position is enough).
  std::uint32_t partition = 0;
  std::string cut;
  // For the history, not for delivery to users: read back when the replica
  // started (published before it attached), or an own envelope its members
  // already got at publish while the broker was unreachable.
  bool replay = false;
  // Room envelopes read from the broker keep their payload as compact JSON
  // text (checked to be one JSON object) and leave payload null: a replica
  // builds no DOM for a message it only stores or relays. Control envelopes
  // and reserved rooms ('#') are parsed into payload. payload_json() gives
  // the DOM either way.
  std::string payload_text;
};
// The payload as a DOM: payload itself, or payload_text parsed (an empty
// object if that fails, which parse_batch has ruled out).
nlohmann::json payload_json(const Envelope& e);
// A joined broker message holds at most kMaxJoined envelopes (below), so
// stream offset * kPositionScale + index orders every envelope.
inline constexpr std::int64_t kPositionScale = 1024;
// The reserved room of the bus's read-back probes (not a valid room name for
// users, '#'): in the history stream, delivered to nobody.
inline constexpr const char* kProbeRoom = "#probe";
// The reserved room of the bus's own notices to the application, delivered
// in order with the traffic: event kSyncedEvent says that the partition in
// `partition` is read up to the present (after Bus::attach), with position
// the last position read there, cut the replica's positions then, and
// payload {"since": ms}: every message of the partition published after that
// wall-clock time has been read here (-1: unknown).
inline constexpr const char* kPartitionRoom = "#partition";
inline constexpr const char* kSyncedEvent = "synced";
using EnvelopePtr = std::shared_ptr<const Envelope>;

// Bounds on what a consumer accepts from the broker; anything beyond them is
// counted as a bad envelope and dropped (docs/cluster.md, "Bad input").
inline constexpr std::size_t kMaxBodyBytes = 16 * 1024 * 1024;  // one broker message (default)
inline constexpr std::size_t kMaxNesting = 32;                  // [ and { levels in a body
inline constexpr std::size_t kMaxJoined = 1024;                 // envelopes in one joined message
inline constexpr std::size_t kMaxOriginBytes = 256;
inline constexpr std::size_t kMaxIdBytes = 256;  // id and sender
inline constexpr std::size_t kMaxRoomBytes = 1024;
inline constexpr std::size_t kMaxEventBytes = 64;
// What a publisher joins into one broker message, at most.
inline constexpr std::size_t kJoinMaxEnvelopes = 128;
inline constexpr std::size_t kJoinMaxBytes = 64 * 1024;

// Serialise an envelope for the wire and back (compact JSON object with keys
// v, origin, id, room, event, payload, ts, sender). parse returns nullptr on
// bad input: not JSON, over the bounds above, a field missing or of the wrong
// type, a payload that is not an object. Never throws.
std::string serialize(const Envelope& e);
EnvelopePtr parse(std::string_view bytes);

// True when bytes (JSON text) open more than max_depth arrays/objects at once.
// Linear, no allocation; strings are skipped.
bool nesting_exceeds(std::string_view bytes, std::size_t max_depth);

// Several envelopes of one replica for one room may travel as one broker
// message: a JSON array of serialized envelopes. join_batch builds it from
// serialize() outputs; parse_batch accepts one envelope or such an array,
// returns the envelopes that parse and counts the ones that do not.
std::string join_batch(const std::vector<const std::string*>& bodies);
std::vector<EnvelopePtr> parse_batch(std::string_view bytes, std::size_t& bad,
                                     std::size_t max_bytes = kMaxBodyBytes);

// How a publish ended, as its confirm handler hears it.
enum class PublishStatus : std::uint8_t {
  ok,           // safely in the broker (publisher confirm), or delivered (in-process)
  unavailable,  // no broker to take it: nacked, or still unconfirmed when the bus stopped
  rejected,     // the broker refused this message every time it was sent (poison): dropped
  full,         // refused at once: the outbox holds its bound (count or bytes)
};
const char* to_string(PublishStatus status);

// Snapshot of the bus state for /readyz and /metrics.
// The bus's figures on /metrics that are plain counts, each declared once
// here as X(field, metric, type, help), in three lists by the thread that
// keeps them: the publisher's, the consumer's, the bus front's. The
// BusStatus fields, the threads' counters and their /metrics lines are all
// made from these lists (the other fields are below).
#define CHAT_BUS_PUBLISHER_STATS(X)                                                          \
  X(published, "chat_bus_published_total", counter, "Envelopes handed to the broker")        \
  X(broker_messages, "chat_bus_broker_messages_total", counter,                              \
    "Broker messages published (envelopes queued together travel in one)")                   \
  X(confirmed, "chat_bus_confirmed_total", counter, "Publishes confirmed by the broker")     \
  X(nacked, "chat_bus_nacked_total", counter, "Publishes refused by the broker")             \
  X(returned, "chat_bus_returned_total", counter, "Publishes returned unroutable")           \
  X(outbox_depth, "chat_bus_outbox_depth", gauge, "Envelopes waiting for the broker")        \
  X(outbox_dropped, "chat_bus_outbox_dropped_total", counter,                                \
    "Envelopes unconfirmed when the bus stopped")                                            \
  X(refused, "chat_bus_outbox_refused_total", counter,                                       \
    "Publishes refused at once: the outbox held its bound (count or bytes)")                 \
  X(held_bytes, "chat_bus_held_bytes", gauge, "Bytes of publishes queued or unconfirmed")    \
  X(rejected, "chat_bus_rejected_total", counter,                                            \
    "Envelopes dropped after the broker refused them repeatedly")                            \
  X(republished, "chat_bus_republished_total", counter,                                      \
    "Envelopes the broker confirmed that never reached the history stream, published again") \
  X(unchecked, "chat_bus_unchecked_total", counter,                                          \
    "Confirmed envelopes not checked against the stream (the check window was full)")        \
  X(probes, "chat_bus_probes_total", counter, "Read-back probes sent to the history stream") \
  X(checking, "chat_bus_checking", gauge,                                                    \
    "Published envelopes not yet read back from the history stream")
#define CHAT_BUS_CONSUMER_STATS(X)                                        \
  X(consumed, "chat_bus_consumed_total", counter,                         \
    "Broker messages received (own copies included)")                     \
  X(bound_rooms, "chat_bus_bound_rooms", gauge, "Room bindings in place") \
  X(duplicates, "chat_bus_duplicates_total", counter,                     \
    "Re-published copies dropped by the consumer")                        \
  X(bad_envelopes, "chat_bus_bad_envelopes_total", counter,               \
    "Deliveries that did not parse (dropped)")                            \
  X(replayed, "chat_bus_replayed_total", counter,                         \
    "Envelopes read back from history when the replica started")
#define CHAT_BUS_FRONT_STATS(X)                                               \
  X(reconnects, "chat_bus_reconnects_total", counter, "Broker reconnections") \
  X(exceptions, "chat_bus_exceptions_total", counter,                         \
    "Exceptions caught by the bus threads' last resort")
#define CHAT_BUS_STATS(X) \
  CHAT_BUS_PUBLISHER_STATS(X) CHAT_BUS_CONSUMER_STATS(X) CHAT_BUS_FRONT_STATS(X)

struct BusStatus {
  std::string kind;    // "inprocess" or "amqp"
  bool ready = false;  // publishing and consuming both work
  bool publisher_up = false;
  bool consumer_up = false;
#define CHAT_BUS_STATS_FIELD(field, name, type, help) std::uint64_t field = 0;
  CHAT_BUS_STATS(CHAT_BUS_STATS_FIELD)
#undef CHAT_BUS_STATS_FIELD
  bool history = false;               // room traffic read from the history stream
  std::int64_t stream_offset = -1;    // last history stream offset read
  std::uint32_t partitions = 1;       // history partitions of the cluster (rooms hash over them)
  std::uint32_t partitions_read = 0;  // of them (and the sessions stream) read now
  std::string last_error;
};

class Bus {
 public:
  // Called with batches of envelopes that this replica must deliver locally.
  // Runs on a bus-owned thread (or the publisher's thread for the in-process
  // bus); the handler must only hand the batch over (post), never block.
  using DeliveryHandler = std::function<void(std::vector<EnvelopePtr> batch)>;
  // Called once per publish with how it ended (PublishStatus::ok when the
  // message is safely in the broker or delivered). Runs on a bus-owned
  // thread, or on the publishing thread when the publish is refused at once.
  using ConfirmHandler = std::function<void(PublishStatus status)>;
  // Called when readiness changes (e.g. to re-announce presence after reconnect).
  using StateHandler = std::function<void(bool ready)>;

  virtual ~Bus() = default;

  virtual void start(DeliveryHandler on_delivery, StateHandler on_state) = 0;
  virtual void stop() = 0;

  // Thread-safe. The envelope is delivered to every replica that has the room
  // bound (control envelopes, room == "", go to every replica), including this
  // one: the implementation delivers locally itself and never twice.
  // confirm may be empty when the caller does not need it.
  virtual void publish(EnvelopePtr envelope, ConfirmHandler confirm) = 0;

  // Thread-safe. Start/stop receiving a room's traffic. The application calls
  // bind when the first local member joins and unbind when the last leaves;
  // implementations may batch the broker calls.
  virtual void bind_room(const std::string& room) = 0;
  virtual void unbind_room(const std::string& room) = 0;

  // History partitions (docs/cluster.md, "Partitions"): rooms hash over
  // partitions() streams and a replica reads only those of its rooms (and
  // the reserved rooms' stream). attach(p) asks to read partition p (kept
  // while a bound room is in it, or for a minute); a kPartitionRoom
  // envelope (kSyncedEvent) follows in the delivery order once p is read up
  // to the present, at once when it is already. Thread-safe. With one
  // partition (and the in-process bus) everything is always read and
  // attach() is never needed.
  virtual std::uint32_t partitions() const { return 1; }
  virtual void attach(std::uint32_t /*partition*/) {}

  virtual BusStatus status() const = 0;
};

// The partition of a room among n: reserved rooms ('#') have a stream of
// their own (index n) when n > 1; every other room hashes (FNV-1a) to [0, n).
std::uint32_t partition_of(std::string_view room, std::uint32_t n);

}  // namespace chat::bus
