// WsConnection; see ws_connection.hpp.
#include "transport/ws_connection.hpp"

#include "transport/server_impl.hpp"
#include "transport/worker_stats.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket/error.hpp>

#include <vector>

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
  ws_.next_layer().set_owner(weak_from_this(),
                             [this](const beast::error_code& ec) { on_written(ec); });
  beast::get_lowest_layer(ws_).expires_never();
  ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws_.read_message_max(server_.options().max_payload);
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

namespace {
// Connections of this worker with something new to write. They are flushed
// together at the end of the current turn of the event loop, so that every
// packet queued in this turn (a burst of broadcasts) leaves in one write.
// The two vectors swap roles each turn and keep their capacity.
thread_local std::vector<std::shared_ptr<WsConnection>> t_dirty;
thread_local std::vector<std::shared_ptr<WsConnection>> t_flushing;
}  // namespace

void WsConnection::kick() {
  if (flush_scheduled_ || closed_ || !accepted_) return;
  flush_scheduled_ = true;
  if (t_dirty.empty()) {
    asio::post(ws_.get_executor(), [] {
      t_flushing.swap(t_dirty);  // a flush may mark others dirty: for the next turn
      for (auto& c : t_flushing) {
        c->flush_scheduled_ = false;
        c->flush();
      }
      t_flushing.clear();
    });
  }
  t_dirty.push_back(shared_from_this());
}

void WsConnection::flush() {
  if (closed_ || !accepted_) return;
  auto& out = ws_.next_layer();
  if (out.failed()) return;
  // Beast got a close frame from the peer and answered it: nothing may follow.
  if (!ws_.is_open()) return;
  const auto writes_before = out.socket_writes();
  bool drained = false;
  for (;;) {
    out.cork();
    while (out.waiting_bytes() < kCorkBytes) {
      OutPacket p;
      if (!own_.empty()) {
        p = std::move(own_.front());
        own_.pop_front();
      } else if (!session_ || !session_->pop_for_ws(this, p)) {
        drained = true;
        break;
      }
      out.write_frame(p.binary, std::move(p.data));
    }
    out.uncork();  // one write for all of them
    // Written at once and more is queued: take the next batch.
    if (drained || out.writing() || out.failed()) break;
  }
  WorkerStats::add(server_.worker_stats(worker_).ws_writes_total,
                   out.socket_writes() - writes_before);
  if (drained && closing_) {
    closed_ = true;
    server_.io_begin();
    // The close frame queues behind the data frames in the same stream.
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {
      self->server_.io_end();
      self->session_.reset();
    });
  }
}

void WsConnection::on_written(const beast::error_code& ec) {
  if (ec) return fail("transport error");
  flush();
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
