// EngineSession: one Engine.IO v4 session (one "sid"), whatever carries it:
// long-polling requests, a WebSocket, or polling upgraded to WebSocket.
//
// It lives on one worker and is touched only there. It owns the outgoing
// queue (bounded in bytes), the heartbeat, the upgrade state machine and the
// upper layer (Socket.IO client, or the raw echo of the conformance mode).
// Connections talk to it through small interfaces so it holds no Beast types.
#pragma once

#include "protocol/engineio.hpp"
#include "transport/api.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace chat::transport {

class ServerImpl;
class SioClient;
struct WorkerStats;

// One queued outgoing Engine.IO packet. Text packets hold the whole packet
// ("4...", "2"); binary ones the raw bytes.
struct OutPacket {
  std::shared_ptr<const std::string> data;
  bool binary = false;
};

// A FIFO of packets that costs nothing while it has never held one
// (std::deque allocates about 600 bytes when constructed: per connection,
// twice). Amortized O(1) per packet; its buffer goes when it empties after
// a burst, so an idle connection holds none.
class PacketFifo {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  OutPacket& front() { return items_[head_]; }
  void push_back(OutPacket p) { items_.push_back(std::move(p)); }
  void pop_front() {
    items_[head_] = {};
    if (++head_ == items_.size()) {
      clear();
    } else if (head_ >= 64 && head_ * 2 >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  void clear() {
    if (items_.capacity() > kKept)
      std::vector<OutPacket>().swap(items_);
    else
      items_.clear();
    head_ = 0;
  }
  auto begin() { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  auto end() { return items_.end(); }

 private:
  static constexpr std::size_t kKept = 8;  // capacity kept when it empties
  std::vector<OutPacket> items_;
  std::size_t head_ = 0;
};

// What a WebSocket connection offers to the session.
class WsLink {
 public:
  virtual ~WsLink() = default;
  // Something is queued (in the session or directly): write if idle.
  virtual void kick() = 0;
  // Send one frame outside the session queue (probe answers).
  virtual void send_direct(OutPacket p) = 0;
  // Flush what is queued, then send a close frame.
  virtual void close() = 0;
  // Drop everything and close the socket now (slow reader).
  virtual void abort() = 0;
  // Bytes the connection holds for writing (they count against the send bound).
  virtual std::size_t buffered_bytes() const = 0;
};

class EngineSession : public std::enable_shared_from_this<EngineSession> {
 public:
  enum class Kind { polling, websocket };
  // Polling GET answer: body, or empty optional for "no body, just close".
  using PollResponder = std::function<void(std::string body)>;

  EngineSession(ServerImpl& server, unsigned worker, std::string sid, Kind kind, bool raw_echo,
                Handshake handshake);
  ~EngineSession();

  // Start timers and the upper layer. Returns the open packet ("0{...}").
  std::string open();

  const std::string& sid() const { return sid_; }
  unsigned worker() const { return worker_; }
  // Read from other workers when routing a request, hence atomic.
  Kind kind() const { return kind_.load(std::memory_order_relaxed); }
  bool closed() const { return closed_; }
  SioClient* sio() { return sio_.get(); }  // null for a raw Engine.IO session
  // Bytes queued for link: the session queue when link carries the session
  // (not while it is only an upgrade probe).
  std::size_t queued_bytes_for(const WsLink* link) const {
    return link == ws_.get() ? queued_bytes_ : 0;
  }
  const Handshake& handshake() const { return *handshake_; }
  const std::shared_ptr<const Handshake>& shared_handshake() const { return handshake_; }
  ServerImpl& server() { return server_; }
  boost::asio::io_context& context();

  // ---- outgoing (upper layer)
  SendResult send(OutPacket p, bool droppable);
  std::string transport_name() const { return kind_ == Kind::websocket ? "websocket" : "polling"; }

  // ---- polling
  // A GET for this session. Answered now or when something is queued.
  // Returns false (and answers nothing) when the request must get 400.
  enum class PollResult { ok, bad_request };
  // owner identifies the HTTP connection that carries the GET.
  PollResult poll(PollResponder respond, const void* owner);
  // The parked GET's TCP connection went away.
  // Ignored unless that connection's GET is still the parked one.
  void poll_aborted(const void* owner);
  // A POST body. Returns false when the session was closed for bad input.
  PollResult post(std::string_view body);

  // ---- websocket
  void attach_websocket(std::shared_ptr<WsLink> link);  // fresh WebSocket session
  bool attach_probe(std::shared_ptr<WsLink> link);      // upgrade candidate; false: refuse it
  void on_ws_frame(WsLink* link, std::string data, bool binary);
  void on_ws_closed(WsLink* link, const char* reason);
  // The WebSocket connection popped one queued packet for writing.
  bool pop_for_ws(WsLink* link, OutPacket& out);

  // ---- rate budget (Options::session_rate/session_burst), shared by the
  // session's namespace sockets: chat events, invalid packets.
  bool take_tokens(double cost);
  // A tolerated invalid packet: costs a token; an empty budget closes the
  // session as a protocol error. Returns false when it did.
  bool charge_invalid(const char* what);

  // ---- heartbeat (Heartbeats calls this when a wait of this session is due)
  void on_heartbeat();

  // ---- closing
  // Close now. Pending polling GET gets "1" (or "6" when the client asked).
  void close(const std::string& reason, bool client_initiated = false);
  // Close after the queue drained (server disconnect, shutdown).
  void close_gracefully(const std::string& reason);
  // A socket left its namespace from the server side.
  void forget_socket(const std::string& nsp);
  // Server shutdown: close the transport (no Socket.IO DISCONNECT), so
  // clients reconnect by themselves.
  void shutdown(const std::string& reason);
  // Called by the upper layer on protocol errors.
  void protocol_error(const std::string& reason);

 private:
  void on_packet(protocol::eio::Packet p);
  void flush();
  void schedule_flush();
  std::string take_polling_body();
  void schedule_ping();
  WorkerStats& stats();

  ServerImpl& server_;
  unsigned worker_;
  std::string sid_;
  std::atomic<Kind> kind_;
  bool raw_echo_;
  std::shared_ptr<const Handshake> handshake_;
  std::unique_ptr<SioClient> sio_;

  double tokens_ = 0;
  std::chrono::steady_clock::time_point tokens_at_;

  PacketFifo queue_;
  std::size_t queued_bytes_ = 0;

  PollResponder pending_get_;
  const void* pending_owner_ = nullptr;
  std::shared_ptr<WsLink> ws_;
  std::shared_ptr<WsLink> probe_;
  bool upgrading_ = false;  // probe answered, waiting for "5"

  std::uint32_t heartbeat_slot_ = UINT32_MAX;  // in the worker's Heartbeats, until closed
  std::unique_ptr<boost::asio::steady_timer> linger_timer_;   // a graceful polling close
  std::unique_ptr<boost::asio::steady_timer> upgrade_timer_;  // while a probe waits
  bool awaiting_pong_ = false;
  bool closing_ = false;  // graceful close requested: close when the queue is empty
  bool closed_ = false;
  bool flush_posted_ = false;     // a polling flush is posted for this turn
  bool protocol_failed_ = false;  // closed for invalid input
  bool doomed_ = false;           // slow reader: close is posted, nothing more is queued
  std::string close_reason_;
};

}  // namespace chat::transport
