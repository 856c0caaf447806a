// WsConnection: one WebSocket carrying an Engine.IO session (fresh, or the
// upgrade of a polling session). Beast does the handshake, reading and close;
// outgoing data frames go straight into the CorkedStream under it, so a burst
// of queued packets leaves in one socket write. One write in flight; frames
// come from the session's bounded queue, probe answers from a small queue of
// its own, and at most kCorkBytes wait behind the write in flight.
//
// Bounds: Beast's own frames (pongs, close) and the session queue share one
// byte limit (Options::max_send_queue_bytes): a peer that sends pings and
// never reads is closed as a slow reader. Every socket write has a deadline
// (Options::write_timeout), a graceful close too (Options::close_timeout),
// and the read buffer is released after a large message.
#pragma once

#include "transport/corked_stream.hpp"
#include "transport/engine_session.hpp"
#include "transport/http_connection.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>

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
class DelayedFlushes {
 public:
  using Clock = std::chrono::steady_clock;
  explicit DelayedFlushes(boost::asio::io_context& ctx) : timer_(ctx) {}
  void add(std::shared_ptr<WsConnection> c, Clock::time_point due);

 private:
  void arm();
  boost::asio::steady_timer timer_;
  std::deque<std::pair<std::shared_ptr<WsConnection>, Clock::time_point>> due_;
  bool armed_ = false;
};

class WsConnection final : public WsLink, public std::enable_shared_from_this<WsConnection> {
 public:
  // Frames are taken from the session queue while fewer bytes than this wait
  // behind the socket write in flight.
  static constexpr std::size_t kCorkBytes = 64 * 1024;

  // session is the polling session to upgrade, or null for a new WebSocket session.
  WsConnection(ServerImpl& server, unsigned worker, boost::asio::ip::tcp::socket socket,
               HttpConnection::Request req, std::shared_ptr<EngineSession> session, bool raw_echo,
               Handshake handshake);
  void run();

  void kick() override;
  void send_direct(OutPacket p) override;
  void close() override;
  void abort() override;
  std::size_t buffered_bytes() const override { return ws_.next_layer().buffered_bytes(); }
  // A held-back flush is due (DelayedFlushes).
  void flush_delayed();

 private:
  void flush();  // move queued packets into the stream (now)
  void on_accept(boost::beast::error_code ec);
  void read();
  void on_read(boost::beast::error_code ec);
  void on_written(const boost::beast::error_code& ec);
  void fail(const char* reason);
  void drop_socket();
  void arm_close_timer();

  ServerImpl& server_;
  unsigned worker_;
  boost::beast::websocket::stream<CorkedStream> ws_;
  boost::beast::flat_buffer buffer_;
  boost::asio::steady_timer close_timer_;
  HttpConnection::Request req_;
  std::shared_ptr<EngineSession> session_;
  bool upgrade_;
  bool raw_echo_;
  Handshake handshake_;
  PacketFifo own_;
  bool accepted_ = false;
  bool flush_scheduled_ = false;
  std::chrono::steady_clock::time_point last_write_{};  // with a write delay only
  bool closing_ = false;
  bool close_armed_ = false;
  bool closed_ = false;
};

}  // namespace chat::transport
