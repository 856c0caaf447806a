// WsConnection: one WebSocket carrying an Engine.IO session (fresh, or the
// upgrade of a polling session). It answers the handshake, reads frames with
// protocol::ws::Reader and writes through the CorkedStream, so a burst of
// queued packets leaves in one socket write. One write in flight; frames come
// from the session's bounded queue, probe answers from a small queue of its
// own, and at most kCorkBytes wait behind the write in flight.
//
// An idle connection holds no read buffer and no read operation with one: it
// waits for readiness only, and reads into its worker's buffer; only a frame
// cut by the end of a read, or a fragmented message, is kept per connection
// (at most the message bound, Options::max_payload).
//
// Bounds: control frames (pongs, close) and the session queue share one byte
// limit (Options::max_send_queue_bytes): a peer that sends pings and never
// reads is closed as a slow reader. Every socket write has a deadline
// (Options::write_timeout), a graceful close too (Options::close_timeout).
//
// Closing: a close frame (ours after the queue drains, or the answer to the
// peer's), then, once it is written, the sending side of the socket is shut
// and what the peer still sends is read and dropped until it closes too (or
// the close timeout): closing at once with unread bytes would reset the
// connection and could destroy the close frame before the peer reads it.
#pragma once

#include "transport/corked_stream.hpp"
#include "transport/engine_session.hpp"
#include "transport/http_connection.hpp"

#include "protocol/websocket.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <utility>

namespace chat::transport {

class WsConnection;

// Flushes of busy WebSocket connections of one worker, held back for the
// write delay (Options::write_delay) so that what arrives for them meanwhile
// leaves in the same socket write. One delay for all, so due times grow in
// the order connections are added: a FIFO and one timer per worker.
//
// The delay applies only while the worker sends many frames
// (Options::write_delay_min_rate per second, judged over the last 100 ms):
// a lightly loaded worker writes every frame at once, whatever a connection
// receives. The gate counts frames, not writes, so holding (fewer writes)
// does not switch it off again.
class DelayedFlushes {
 public:
  using Clock = std::chrono::steady_clock;
  DelayedFlushes(boost::asio::io_context& ctx, double min_rate)
      : timer_(ctx), min_rate_(min_rate) {}
  // Whether a busy connection's flush is held now; frames_sent: the worker's
  // frames so far (packets_out_total).
  bool holds(Clock::time_point now, std::uint64_t frames_sent);
  void add(std::shared_ptr<WsConnection> c, Clock::time_point due);

 private:
  void arm();
  boost::asio::steady_timer timer_;
  std::deque<std::pair<std::shared_ptr<WsConnection>, Clock::time_point>> due_;
  bool armed_ = false;
  // The load gate.
  double min_rate_;
  Clock::time_point since_{};
  std::uint64_t frames_at_since_ = 0;
  bool busy_ = false;
};

class WsConnection final : public WsLink, public std::enable_shared_from_this<WsConnection> {
 public:
  // Frames are taken from the session queue while fewer bytes than this wait
  // behind the socket write in flight.
  static constexpr std::size_t kCorkBytes = 64 * 1024;

  // session is the polling session to upgrade, or null for a new WebSocket session.
  // tls: the connection's TLS session (null: plain TCP), handshake done.
  WsConnection(ServerImpl& server, unsigned worker, boost::asio::ip::tcp::socket socket,
               std::shared_ptr<EngineSession> session, bool raw_echo,
               std::unique_ptr<TlsChannel> tls = nullptr);
  // Answers the upgrade request (101, or an error and a close) and starts;
  // handshake is the new session's (unused for an upgrade).
  void run(const HttpConnection::Request& req, Handshake handshake);

  void kick() override;
  void send_direct(OutPacket p) override;
  void close() override;
  void abort() override;
  std::size_t buffered_bytes() const override { return out_.buffered_bytes(); }
  // A held-back flush is due (DelayedFlushes).
  void flush_delayed();

 private:
  void flush();  // move queued packets into the stream (now)
  void on_accept(Handshake handshake);
  void wait_read();
  void on_readable(const boost::system::error_code& ec);
  // Decrypt n bytes of ciphertext read into buf and feed the frames; false
  // when the connection ended (TLS failure, the peer's close_notify or a
  // frame error): the caller returns.
  bool feed_tls(const char* buf, std::size_t n);
  // Frames read in plaintext; false: the connection is closing (caller returns).
  bool feed_frames(char* buf, std::size_t n);
  bool on_event(const protocol::ws::Event& e);
  void on_written(const boost::system::error_code& ec);
  void fail(const char* reason);
  // Queue a close frame (nothing may follow it), then linger (below).
  void send_close(std::uint16_t code);
  // Once everything queued is written: shut the sending side and read until
  // the peer closes (bounded by the close timer), then close the socket.
  void linger();
  void refuse(int status, std::string_view reason, std::string_view extra_header);
  void drop_socket();
  void finish();  // the socket is gone: release what the close held
  void arm_close_timer();

  ServerImpl& server_;
  unsigned worker_;
  CorkedStream out_;
  protocol::ws::Reader reader_;
  std::unique_ptr<boost::asio::steady_timer> close_timer_;  // made when a close begins
  std::shared_ptr<EngineSession> session_;
  bool raw_echo_;
  PacketFifo own_;
  std::chrono::steady_clock::time_point last_write_{};  // with a write delay only
  bool upgrade_;
  bool deflate_ = false;  // permessage-deflate negotiated
  bool accepted_ = false;
  bool flush_scheduled_ = false;
  bool reading_ = false;      // a readiness wait is pending
  bool closing_ = false;      // close() asked: the queue drains, then our close frame
  bool close_armed_ = false;  // the close timer runs
  bool close_sent_ = false;   // a close frame is queued: nothing more is written
  bool lingering_ = false;    // waiting for the close frame's write, then the peer's end
  bool io_held_ = false;      // the server's shutdown waits for this close
  bool closed_ = false;       // the session is told (or never had this link)
};

}  // namespace chat::transport
