// WsConnection; see ws_connection.hpp.
#include "transport/ws_connection.hpp"

#include "transport/deflate_cache.hpp"
#include "transport/server_impl.hpp"
#include "transport/worker_stats.hpp"

#include "protocol/deflate.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http.hpp>

#include <memory>
#include <string>
#include <vector>

namespace chat::transport {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace ws = protocol::ws;
using boost::system::error_code;

namespace {
// Each worker reads every connection into one buffer of this size; frames are
// parsed in place. Only a frame cut by the end of a read is kept per
// connection (by the Reader).
constexpr std::size_t kReadChunk = 64 * 1024;
// Reads of one connection in a row before the worker's other work goes on.
constexpr int kReadsPerTurn = 4;

char* worker_read_buffer() {
  thread_local std::unique_ptr<char[]> buf(new char[kReadChunk]);
  return buf.get();
}
// TLS: ciphertext is fed to the channel a record's worth at a time and
// decrypted into this, so the channel never holds more than one piece.
constexpr std::size_t kTlsPiece = 16 * 1024 + 512;
constexpr std::size_t kPlainChunk = 16 * 1024;
char* worker_plain_buffer() {
  thread_local std::unique_ptr<char[]> buf(new char[kPlainChunk]);
  return buf.get();
}
}  // namespace

WsConnection::WsConnection(ServerImpl& server, unsigned worker, asio::ip::tcp::socket socket,
                           std::shared_ptr<EngineSession> session, bool raw_echo,
                           std::unique_ptr<TlsChannel> tls)
    : server_(server),
      worker_(worker),
      out_(std::move(socket)),
      reader_(server.options().max_payload),
      session_(std::move(session)),
      raw_echo_(raw_echo),
      upgrade_(session_ != nullptr) {
  if (tls) out_.set_tls(std::move(tls));
}

void WsConnection::run(const HttpConnection::Request& req, Handshake handshake) {
  out_.set_owner(weak_from_this(), [this](const error_code& ec) { on_written(ec); });
  const auto& o = server_.options();
  // Control frames (pongs, the close frame) fit only while they, the frames
  // in the stream and the session queue stay within the send bound.
  out_.set_limits(
      [this, max = o.max_send_queue_bytes](std::size_t n) {
        const std::size_t queued = session_ ? session_->queued_bytes_for(this) : 0;
        return queued + out_.buffered_bytes() + n <= max;
      },
      o.write_timeout);
  error_code ec;
  out_.next_layer().non_blocking(true, ec);  // reads are tried when the socket is readable
  if (ec) return;
  // HttpConnection checked the upgrade itself (GET, HTTP/1.1, Connection and
  // Upgrade headers); what is left is the WebSocket part (RFC 6455 4.2.1).
  if (req[http::field::sec_websocket_version] != "13")
    return refuse(426, "Unsupported WebSocket version", "Sec-WebSocket-Version: 13\r\n");
  const auto key = req[http::field::sec_websocket_key];
  if (!ws::valid_client_key(std::string_view(key.data(), key.size())))
    return refuse(400, "Bad Sec-WebSocket-Key", "");
  std::string res =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ";
  res += ws::accept_key(std::string_view(key.data(), key.size()));
  res += "\r\n";
  if (o.ws_deflate) {
    const auto offers = req[http::field::sec_websocket_extensions];
    if (auto answer =
            protocol::deflate::negotiate(std::string_view(offers.data(), offers.size()))) {
      deflate_ = true;
      reader_.set_deflate(true);
      WorkerStats::add(server_.worker_stats(worker_).deflate_sessions_total, 1);
      res += "Sec-WebSocket-Extensions: ";
      res += *answer;
      res += "\r\n";
    }
  }
  res += "\r\n";
  out_.write_control(res);
  on_accept(std::move(handshake));
}

void WsConnection::refuse(int status, std::string_view reason, std::string_view extra_header) {
  // No WebSocket: an HTTP answer, then the connection ends.
  session_.reset();
  closed_ = true;
  std::string res = "HTTP/1.1 " + std::to_string(status) +
                    (status == 426 ? " Upgrade Required\r\n" : " Bad Request\r\n");
  res += extra_header;
  res += "Content-Type: text/plain\r\nConnection: close\r\nContent-Length: ";
  res += std::to_string(reason.size());
  res += "\r\n\r\n";
  res += reason;
  out_.write_control(res);
  close_sent_ = true;
  linger();
}

void WsConnection::on_accept(Handshake handshake) {
  accepted_ = true;
  auto self = shared_from_this();
  if (upgrade_) {
    if (!session_->attach_probe(self)) {
      session_.reset();
      close();
      wait_read();
      return;
    }
  } else if (server_.shutting_down()) {
    close();  // accepted while the server began to drain: no new session
    wait_read();
    return;
  } else {
    session_ = server_.create_session(worker_, true, raw_echo_, std::move(handshake));
    session_->attach_websocket(self);
    send_direct(OutPacket{std::make_shared<const std::string>(session_->open()), false});
  }
  if (auto* tls = out_.tls(); tls && tls->has_buffered_input()) {
    // Records that came with the upgrade request are in the channel, not
    // the socket: a readiness wait would not see them.
    std::string pending;
    for (;;) {
      char* plain = worker_plain_buffer();
      const auto r = tls->read(plain, kPlainChunk);
      if (r.status != TlsChannel::Status::ok) break;
      pending.append(plain, r.n);
    }
    if (!pending.empty() && !feed_frames(pending.data(), pending.size())) return;
  }
  wait_read();
}

void WsConnection::wait_read() {
  if (reading_) return;
  auto& sock = out_.next_layer();
  if (!sock.is_open()) return;
  reading_ = true;
  sock.async_wait(asio::ip::tcp::socket::wait_read,
                  [self = shared_from_this()](const error_code& ec) {
                    self->reading_ = false;
                    self->on_readable(ec);
                  });
}

void WsConnection::on_readable(const error_code& wait_ec) {
  auto& sock = out_.next_layer();
  if (wait_ec || !sock.is_open()) {
    if (lingering_) finish();
    return;
  }
  char* buf = worker_read_buffer();
  // Read until the socket has nothing more (only then does a readiness wait
  // see the next bytes), at most kReadsPerTurn times before the other
  // connections of this worker get their turn.
  for (int reads = 0;; ++reads) {
    if (closed_ && !lingering_) return;  // the session is gone and nothing waits for the peer
    if (reads == kReadsPerTurn) {
      reading_ = true;
      asio::post(out_.get_executor(), [self = shared_from_this()] {
        self->reading_ = false;
        self->on_readable({});
      });
      return;
    }
    error_code ec;
    const std::size_t n = sock.read_some(asio::buffer(buf, kReadChunk), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      if (auto* tls = out_.tls()) tls->trim();
      return wait_read();
    }
    if (ec) {
      // The peer ended the connection (or reset it).
      if (lingering_) {
        drop_socket();
        return finish();
      }
      return fail("transport error");
    }
    if (close_sent_) continue;  // after our close frame: read and drop
    if (out_.tls()) {
      if (!feed_tls(buf, n)) return;
    } else if (!feed_frames(buf, n)) {
      return;
    }
    if (!sock.is_open()) return;
  }
}

bool WsConnection::feed_frames(char* buf, std::size_t n) {
  const bool ok = reader_.feed(buf, n, [this](const ws::Event& e) { return on_event(e); });
  if (!ok) {
    const auto& err = reader_.error();
    if (err.code == ws::kCloseTooBig)
      WorkerStats::add(server_.worker_stats(worker_).payload_too_large_total, 1);
    spdlog::debug("websocket closed: {}", err.what);
    send_close(err.code);
    fail("transport error");
    return false;
  }
  return true;
}

bool WsConnection::feed_tls(const char* buf, std::size_t n) {
  auto& tls = *out_.tls();
  char* plain = worker_plain_buffer();
  std::size_t at = 0;
  do {
    const std::size_t piece = std::min(n - at, kTlsPiece);
    tls.feed(buf + at, piece);
    at += piece;
    for (;;) {
      const auto r = tls.read(plain, kPlainChunk);
      if (r.status == TlsChannel::Status::want_input) break;
      if (r.status != TlsChannel::Status::ok) {
        // A bad record, or the peer's close_notify: the connection is over.
        if (r.status == TlsChannel::Status::error)
          spdlog::debug("websocket closed: TLS: {}", tls.error());
        if (lingering_) {
          drop_socket();
          finish();
          return false;
        }
        fail("transport error");
        drop_socket();
        finish();
        return false;
      }
      if (close_sent_) continue;  // after our close frame: read and drop
      if (!feed_frames(plain, r.n)) return false;
      if (!out_.next_layer().is_open()) return false;
    }
  } while (at < n);
  // What the channel wrote by itself (a key update) leaves with the next batch.
  if (tls.pending_output() > 0) out_.flush_tls();
  return true;
}

bool WsConnection::on_event(const ws::Event& e) {
  switch (e.op) {
    case ws::Opcode::text:
    case ws::Opcode::binary:
      if (closed_ || close_sent_) return false;
      if (session_) {
        auto s = session_;  // the frame may end the session
        s->on_ws_frame(this, std::string(e.payload), e.op == ws::Opcode::binary);
      }
      return !closed_;
    case ws::Opcode::ping:
      if (close_sent_) return true;
      if (!out_.write_control(ws::frame(ws::Opcode::pong, e.payload))) {
        // The pong does not fit in the send bound: the peer does not read.
        WorkerStats::add(server_.worker_stats(worker_).slow_reader_closes_total, 1);
        spdlog::info("websocket closed: slow reader (control frames over the send bound)");
        fail("slow reader");
        return false;
      }
      return true;
    case ws::Opcode::pong:
      return true;
    case ws::Opcode::close:
      // Answered with the same code (RFC 6455 5.5.1), after what is queued.
      send_close(e.code == ws::kCloseNoStatus ? 0 : e.code);
      fail("transport close");
      return false;
    case ws::Opcode::continuation:
      break;
  }
  return false;
}

void WsConnection::fail(const char* reason) {
  const bool was_closed = closed_;
  closed_ = true;
  if (!lingering_ && close_timer_) close_timer_->cancel();
  if (out_.timed_out() && !was_closed) {
    WorkerStats::add(server_.worker_stats(worker_).write_timeouts_total, 1);
    spdlog::info("websocket closed: a write took over {} ms",
                 server_.options().write_timeout.count());
  }
  // Nothing more goes out: a peer that does not read must not keep the
  // descriptor (and the frames in flight) until the kernel gives up.
  if (out_.overflowed() || out_.timed_out()) {
    drop_socket();
    finish();
  }
  if (auto s = std::move(session_)) s->on_ws_closed(this, reason);
}

void WsConnection::send_close(std::uint16_t code) {
  if (close_sent_) return;
  close_sent_ = true;
  own_.clear();
  const auto f = code != 0 ? ws::close_frame(code) : ws::frame(ws::Opcode::close, {});
  if (!out_.write_control(f)) {
    // Over the send bound (or the socket failed): nothing to wait for.
    drop_socket();
    return finish();
  }
  linger();
}

void WsConnection::linger() {
  if (lingering_) return;
  lingering_ = true;
  if (!io_held_) {
    io_held_ = true;
    server_.io_begin();  // the server's shutdown waits for the close
  }
  if (!close_armed_) arm_close_timer();
  out_.when_drained([self = shared_from_this()] {
    auto& sock = self->out_.next_layer();
    if (!sock.is_open()) return self->finish();
    if (self->out_.failed()) {
      self->drop_socket();
      return self->finish();
    }
    error_code ignored;
    if (auto* tls = self->out_.tls()) {
      // close_notify before the FIN, on a best-effort basis: the close frame is already out.
      tls->shutdown();
      std::string alert;
      tls->take_output(alert);
      if (!alert.empty()) sock.write_some(asio::buffer(alert), ignored);
    }
    sock.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    self->wait_read();  // until the peer's end
  });
  wait_read();
}

void WsConnection::finish() {
  if (close_timer_) close_timer_->cancel();
  session_.reset();
  if (io_held_) {
    io_held_ = false;
    server_.io_end();
  }
}

void WsConnection::drop_socket() {
  own_.clear();
  error_code ignored;
  auto& sock = out_.next_layer();
  sock.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  sock.close(ignored);
}

void WsConnection::arm_close_timer() {
  const auto timeout = server_.options().close_timeout;
  if (timeout.count() <= 0) return;
  close_armed_ = true;
  if (!close_timer_)
    close_timer_ = std::make_unique<boost::asio::steady_timer>(out_.get_executor());
  close_timer_->expires_after(timeout);
  close_timer_->async_wait([self = shared_from_this()](const error_code& ec) {
    if (ec) return;
    // The peer did not take the queued frames and the close frame in time.
    WorkerStats::add(self->server_.worker_stats(self->worker_).close_timeouts_total, 1);
    spdlog::debug("websocket aborted: close took over {} ms",
                  self->server_.options().close_timeout.count());
    self->closed_ = true;
    self->drop_socket();
    self->finish();
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

bool DelayedFlushes::holds(Clock::time_point now, std::uint64_t frames_sent) {
  if (min_rate_ <= 0) return true;
  constexpr auto kPeriod = std::chrono::milliseconds(100);
  if (const auto dt = now - since_; dt >= kPeriod) {
    const double seconds = std::chrono::duration<double>(dt).count();
    busy_ = static_cast<double>(frames_sent - frames_at_since_) >= min_rate_ * seconds;
    since_ = now;
    frames_at_since_ = frames_sent;
  }
  return busy_;
}

void DelayedFlushes::add(std::shared_ptr<WsConnection> c, Clock::time_point due) {
  due_.emplace_back(std::move(c), due);
  if (!armed_) arm();
}

void DelayedFlushes::arm() {
  armed_ = true;
  timer_.expires_at(due_.front().second);
  timer_.async_wait([this](const error_code&) {
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
    auto& delayed = server_.delayed_flushes(worker_);
    if (now - last_write_ < delay &&
        delayed.holds(
            now, server_.worker_stats(worker_).packets_out_total.load(std::memory_order_relaxed))) {
      delayed.add(shared_from_this(), last_write_ + delay);
      return;
    }
  }
  if (t_dirty.empty()) {
    asio::post(out_.get_executor(), [] {
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
  auto& out = out_;
  if (out.failed()) return;
  if (close_sent_) return;  // nothing may follow a close frame
  const auto writes_before = out.socket_writes();
  const std::size_t threshold = server_.options().compress_threshold;
  std::uint64_t compressed = 0;
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
      if (deflate_ && p.data && p.data->size() >= threshold) {
        // Compressed once per worker for every receiver (DeflateCache).
        if (auto z = DeflateCache::here().get(p.data)) {
          out.write_frame(p.binary, std::move(z), true);
          ++compressed;
          continue;
        }
      }
      out.write_frame(p.binary, std::move(p.data));
    }
    out.uncork();  // one write for all of them
    // Written at once and more is queued: take the next batch.
    if (drained || out.writing() || out.failed()) break;
  }
  WorkerStats::add(server_.worker_stats(worker_).ws_writes_total,
                   out.socket_writes() - writes_before);
  if (compressed)
    WorkerStats::add(server_.worker_stats(worker_).compressed_frames_total, compressed);
  if (server_.options().write_delay.count() > 0 && out.socket_writes() != writes_before)
    last_write_ = std::chrono::steady_clock::now();
  if (drained && closing_) {
    closed_ = true;
    send_close(ws::kCloseNormal);  // behind the data frames in the same stream
  }
}

void WsConnection::on_written(const error_code& ec) {
  if (ec) {
    if (closed_) return;
    return fail(out_.timed_out() ? "write timeout" : "transport error");
  }
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
  if (closed_ && !lingering_) return;
  closed_ = true;
  drop_socket();
  finish();
}

}  // namespace chat::transport
