// WsConnection; see ws_connection.hpp.
#include "transport/ws_connection.hpp"

#include "transport/server_impl.hpp"
#include "transport/worker_stats.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket/error.hpp>

namespace chat::transport {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

WsConnection::WsConnection(ServerImpl& server, unsigned worker, asio::ip::tcp::socket socket,
                           HttpConnection::Request req, std::shared_ptr<EngineSession> session,
                           bool raw_echo, Handshake handshake)
    : server_(server),
      worker_(worker),
      ws_(std::move(socket)),
      req_(std::move(req)),
      session_(std::move(session)),
      upgrade_(session_ != nullptr),
      raw_echo_(raw_echo),
      handshake_(std::move(handshake)) {}

void WsConnection::run() {
  beast::get_lowest_layer(ws_).expires_never();
  ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws_.read_message_max(server_.options().max_payload);
  ws_.auto_fragment(false);
  ws_.async_accept(req_,
                   [self = shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
}

void WsConnection::on_accept(beast::error_code ec) {
  req_ = {};
  if (ec) return;
  accepted_ = true;
  auto self = shared_from_this();
  if (upgrade_) {
    if (!session_->attach_probe(self)) {
      session_.reset();
      return close();
    }
  } else if (server_.shutting_down()) {
    return close();  // accepted while the server began to drain: no new session
  } else {
    session_ = server_.create_session(worker_, true, raw_echo_, std::move(handshake_));
    session_->attach_websocket(self);
    send_direct(OutPacket{std::make_shared<const std::string>(session_->open()), false});
  }
  read();
}

void WsConnection::read() {
  ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    self->on_read(ec);
  });
}

void WsConnection::on_read(beast::error_code ec) {
  if (ec) {
    if (ec == websocket::error::message_too_big)
      WorkerStats::add(server_.worker_stats(worker_).payload_too_large_total, 1);
    return fail(ec == websocket::error::closed ? "transport close" : "transport error");
  }
  auto data = beast::buffers_to_string(buffer_.data());
  buffer_.consume(buffer_.size());
  const bool binary = !ws_.got_text();
  if (session_) {
    auto s = session_;  // the frame may end the session
    s->on_ws_frame(this, std::move(data), binary);
  }
  if (!closed_) read();
}

void WsConnection::fail(const char* reason) {
  closed_ = true;
  if (auto s = std::move(session_)) s->on_ws_closed(this, reason);
}

void WsConnection::send_direct(OutPacket p) {
  own_.push_back(std::move(p));
  kick();
}

void WsConnection::kick() {
  if (writing_ || closed_ || !accepted_) return;
  OutPacket p;
  if (!own_.empty()) {
    p = std::move(own_.front());
    own_.pop_front();
  } else if (!session_ || !session_->pop_for_ws(this, p)) {
    if (closing_) {
      closed_ = true;
      server_.io_begin();
      ws_.async_close(websocket::close_code::normal,
                      [self = shared_from_this()](beast::error_code) {
                        self->server_.io_end();
                        self->session_.reset();
                      });
    }
    return;
  }
  writing_ = true;
  current_ = std::move(p);
  ws_.binary(current_.binary);
  server_.io_begin();
  ws_.async_write(
      asio::buffer(*current_.data),
      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
}

void WsConnection::on_write(beast::error_code ec) {
  server_.io_end();
  writing_ = false;
  current_.data.reset();
  if (ec) return fail("transport error");
  kick();
}

void WsConnection::close() {
  if (closed_) return;
  closing_ = true;
  if (!accepted_) return;
  kick();
}

void WsConnection::abort() {
  if (closed_) return;
  closed_ = true;
  own_.clear();
  session_.reset();
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(ws_).socket().close(ignored);
}

}  // namespace chat::transport
