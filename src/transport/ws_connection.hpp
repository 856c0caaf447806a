// WsConnection: one WebSocket carrying an Engine.IO session (fresh, or the
// upgrade of a polling session). Beast does the handshake, reading and close;
// outgoing data frames go straight into the CorkedStream under it, so a burst
// of queued packets leaves in one socket write. One write in flight; frames
// come from the session's bounded queue, probe answers from a small queue of
// its own, and at most kCorkBytes wait behind the write in flight.
#pragma once

#include "transport/corked_stream.hpp"
#include "transport/engine_session.hpp"
#include "transport/http_connection.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <deque>
#include <memory>

namespace chat::transport {

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

 private:
  void flush();  // move queued packets into the stream (now)
  void on_accept(boost::beast::error_code ec);
  void read();
  void on_read(boost::beast::error_code ec);
  void on_written(const boost::beast::error_code& ec);
  void fail(const char* reason);

  ServerImpl& server_;
  unsigned worker_;
  boost::beast::websocket::stream<CorkedStream> ws_;
  boost::beast::flat_buffer buffer_;
  HttpConnection::Request req_;
  std::shared_ptr<EngineSession> session_;
  bool upgrade_;
  bool raw_echo_;
  Handshake handshake_;
  std::deque<OutPacket> own_;
  bool accepted_ = false;
  bool flush_scheduled_ = false;
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace chat::transport
