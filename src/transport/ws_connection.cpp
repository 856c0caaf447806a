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

namespace {
// A read buffer that grew past this for a large message is released after
// the message is handled, so an idle connection holds only a few KiB.
constexpr std::size_t kKeepReadCapacity = 16 * 1024;
}  // namespace

WsConnection::WsConnection(ServerImpl& server, unsigned worker, asio::ip::tcp::socket socket,
                           HttpConnection::Request req, std::shared_ptr<EngineSession> session,
                           bool raw_echo, Handshake handshake)
    : server_(server),
      worker_(worker),
      ws_(std::move(socket)),
      close_timer_(ws_.get_executor()),
      req_(std::move(req)),
      session_(std::move(session)),
      upgrade_(session_ != nullptr),
      raw_echo_(raw_echo),
      handshake_(std::move(handshake)) {}

void WsConnection::run() {
  ws_.next_layer().set_owner(weak_from_this(),
                             [this](const beast::error_code& ec) { on_written(ec); });
  const auto& o = server_.options();
  // Beast's frames (pongs, the close frame) fit only while they, the frames
  // in the stream and the session queue stay within the send bound.
  ws_.next_layer().set_limits(
      [this, max = o.max_send_queue_bytes](std::size_t n) {
        const std::size_t queued = session_ ? session_->queued_bytes_for(this) : 0;
        return queued + ws_.next_layer().buffered_bytes() + n <= max;
      },
      o.write_timeout);
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
    auto& st = server_.worker_stats(worker_);
    if (ec == websocket::error::message_too_big) WorkerStats::add(st.payload_too_large_total, 1);
    if (ws_.next_layer().overflowed()) {
      // Beast could not queue a pong (or close frame): the peer does not read.
      WorkerStats::add(st.slow_reader_closes_total, 1);
      spdlog::info("websocket closed: slow reader (control frames over the send bound)");
      return fail("slow reader");
    }
    if (ws_.next_layer().timed_out()) return fail("write timeout");
    return fail(ec == websocket::error::closed ? "transport close" : "transport error");
  }
  auto data = beast::buffers_to_string(buffer_.data());
  buffer_.consume(buffer_.size());
  if (buffer_.capacity() > kKeepReadCapacity) buffer_.shrink_to_fit();
  const bool binary = !ws_.got_text();
  if (session_) {
    auto s = session_;  // the frame may end the session
    s->on_ws_frame(this, std::move(data), binary);
  }
  if (!closed_) read();
}

void WsConnection::fail(const char* reason) {
  const bool was_closed = closed_;
  closed_ = true;
  close_timer_.cancel();
  auto& out = ws_.next_layer();
  if (out.timed_out() && !was_closed) {
    WorkerStats::add(server_.worker_stats(worker_).write_timeouts_total, 1);
    spdlog::info("websocket closed: a write took over {} ms",
                 server_.options().write_timeout.count());
  }
  // Nothing more goes out: a peer that does not read must not keep the
  // descriptor (and the frames in flight) until the kernel gives up.
  if (out.overflowed() || out.timed_out()) drop_socket();
  if (auto s = std::move(session_)) s->on_ws_closed(this, reason);
}

void WsConnection::drop_socket() {
  own_.clear();
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(ws_).socket().close(ignored);
}

void WsConnection::arm_close_timer() {
  const auto timeout = server_.options().close_timeout;
  if (timeout.count() <= 0) return;
  close_armed_ = true;
  close_timer_.expires_after(timeout);
  close_timer_.async_wait([self = shared_from_this()](const beast::error_code& ec) {
    if (ec) return;
    // The peer did not take the queued frames and the close frame in time.
    WorkerStats::add(self->server_.worker_stats(self->worker_).close_timeouts_total, 1);
    spdlog::debug("websocket aborted: close took over {} ms",
                  self->server_.options().close_timeout.count());
    self->closed_ = true;
    self->session_.reset();
    self->drop_socket();
  });
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

void DelayedFlushes::add(std::shared_ptr<WsConnection> c, Clock::time_point due) {
  due_.emplace_back(std::move(c), due);
  if (!armed_) arm();
}

void DelayedFlushes::arm() {
  armed_ = true;
  timer_.expires_at(due_.front().second);
  timer_.async_wait([this](const beast::error_code&) {
    armed_ = false;
    const auto now = Clock::now();
    while (!due_.empty() && due_.front().second <= now) {
      auto c = std::move(due_.front().first);
      due_.pop_front();
      c->flush_delayed();
    }
    if (!due_.empty()) arm();
  });
}

void WsConnection::flush_delayed() {
  flush_scheduled_ = false;
  flush();
}

void WsConnection::kick() {
  if (flush_scheduled_ || closed_ || !accepted_) return;
  flush_scheduled_ = true;
  // Busy (written within the write delay): what comes next waits for the
  // window's end and goes with what arrives meanwhile. Idle: at once.
  if (const auto delay = server_.options().write_delay; delay.count() > 0) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_write_ < delay) {
      server_.delayed_flushes(worker_).add(shared_from_this(), last_write_ + delay);
      return;
    }
  }
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
  if (server_.options().write_delay.count() > 0 && out.socket_writes() != writes_before)
    last_write_ = std::chrono::steady_clock::now();
  if (drained && closing_) {
    closed_ = true;
    server_.io_begin();
    // The close frame queues behind the data frames in the same stream.
    ws_.async_close(websocket::close_code::normal,
                    [self = shared_from_this()](beast::error_code ec) {
                      self->server_.io_end();
                      self->close_timer_.cancel();
                      self->session_.reset();
                      // A close that failed (the close frame over the send
                      // bound, say) leaves nothing to wait for.
                      if (ec) self->drop_socket();
                    });
  }
}

void WsConnection::on_written(const beast::error_code& ec) {
  if (ec) return fail(ws_.next_layer().timed_out() ? "write timeout" : "transport error");
  flush();
}

void WsConnection::close() {
  if (closed_) return;
  closing_ = true;
  if (!accepted_) return;
  if (!close_armed_) arm_close_timer();
  kick();
}

void WsConnection::abort() {
  if (closed_) return;
  closed_ = true;
  close_timer_.cancel();
  session_.reset();
  drop_socket();
}

}  // namespace chat::transport
