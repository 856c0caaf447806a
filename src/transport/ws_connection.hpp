// WsConnection: one WebSocket carrying an Engine.IO session (fresh, or the
// upgrade of a polling session). One write in flight; frames come from the
// session's bounded queue, probe answers from a small queue of its own.
#pragma once

#include "transport/engine_session.hpp"
#include "transport/http_connection.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <deque>
#include <memory>

namespace chat::transport {

class WsConnection final : public WsLink, public std::enable_shared_from_this<WsConnection> {
 public:
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
  void on_accept(boost::beast::error_code ec);
  void read();
  void on_read(boost::beast::error_code ec);
  void on_write(boost::beast::error_code ec);
  void fail(const char* reason);

  ServerImpl& server_;
  unsigned worker_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  boost::beast::flat_buffer buffer_;
  HttpConnection::Request req_;
  std::shared_ptr<EngineSession> session_;
  bool upgrade_;
  bool raw_echo_;
  Handshake handshake_;
  std::deque<OutPacket> own_;
  OutPacket current_;
  bool accepted_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool closed_ = false;
};

}  // namespace chat::transport
