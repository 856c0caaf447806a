// Connection over a plain TCP socket: the WebSocket upgrade is written by
// hand and the framing is the project's codec (protocol/websocket, reading
// server frames). Reads are large (a buffer per thread, until the socket is
// empty) and frames are parsed in place, so a delivery costs no allocation
// and no asynchronous operation of its own; sends queued while a write is in
// flight go out together in the next one.
#include "connection.hpp"

#include "connection_host.hpp"
#include "counters.hpp"
#include "http_head.hpp"
#include "protocol/websocket.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <string>

namespace loadgen {

namespace net = boost::asio;
namespace ws = chat::protocol::ws;
using tcp = net::ip::tcp;

namespace {

// One key for every connection: the load generator is not a browser, and a
// server must accept any key (the answer proves only that it read this one).
constexpr std::string_view kClientKey = "bG9hZGdlbi13cy1rZXkxNg==";  // 16 bytes in base64
const std::string& expected_accept() {
  static const std::string a = ws::accept_key(kClientKey);
  return a;
}

constexpr std::size_t kMaxMessage = 1 << 20;
constexpr std::size_t kMaxUpgradeResponse = 8192;
constexpr int kReadsPerTurn = 4;  // then let the thread's other connections run

// The thread's read buffer: every connection of a worker reads into it.
std::array<char, 256 * 1024>& read_buffer() {
  thread_local std::array<char, 256 * 1024> buf;
  return buf;
}

class WsConnection final : public Connection, public std::enable_shared_from_this<WsConnection> {
 public:
  WsConnection(net::io_context& ioc, ConnectionHost& host, Counters& counters, Endpoint ep)
      : sock_(ioc), timer_(ioc), host_(host), counters_(counters), ep_(std::move(ep)) {}

  void start() override {
    boost::system::error_code ec;
    const auto server = net::ip::make_address_v4(ep_.host, ec);
    if (ec) return finish("bad server address");
    const auto source = net::ip::make_address_v4(ep_.source, ec);
    if (ec) return finish("bad source address");
    sock_.open(tcp::v4(), ec);
    if (ec) return finish("socket: " + ec.message());
    // Let connect() pick the port so one source address serves many server
    // ports (the 4-tuple, not the local port, must be unique).
    int one = 1;
    ::setsockopt(sock_.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sock_.set_option(tcp::no_delay(true), ec);
    sock_.bind(tcp::endpoint(source, 0), ec);
    if (ec) return finish("bind: " + ec.message());
    // Connect and upgrade within 15 s.
    timer_.expires_after(std::chrono::seconds(15));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code e) {
      if (!e && !self->open_) self->finish("connect: timed out");
    });
    sock_.async_connect(
        tcp::endpoint(server, ep_.port),
        [self = shared_from_this()](boost::system::error_code e) { self->on_connect(e); });
  }

  void send(std::string packet) override {
    if (done_ || closing_) return;
    counters_.bytes_out += packet.size();
    ws::append_client_frame(out_, ws::Opcode::text, packet, mask_);
    if (!writing_ && open_) flush();
  }

  void close() override {
    if (done_ || closing_) return;
    closing_ = true;
    if (!open_) return abort_with("");
    // Our close frame; the server answers with its own and closes the TCP
    // connection, which the read loop sees.
    ws::append_client_frame(out_, ws::Opcode::close, std::string_view("\x03\xe8", 2), mask_);
    if (!writing_) flush();
  }

  void abort() override {
    done_ = true;
    boost::system::error_code ec;
    timer_.cancel();
    sock_.close(ec);
  }

 private:
  void on_connect(boost::system::error_code ec) {
    if (done_) return;
    if (ec) return finish("connect: " + ec.message());
    std::string req = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ";
    req += ep_.host;
    req += ':';
    req += std::to_string(ep_.port);
    req += "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
    req += kClientKey;
    req += "\r\nSec-WebSocket-Version: 13\r\n";
    if (ep_.deflate)
      req += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    req += "\r\n";
    wbuf_ = std::move(req);
    net::async_write(sock_, net::buffer(wbuf_),
                     [self = shared_from_this()](boost::system::error_code e, std::size_t) {
                       if (self->done_) return;
                       if (e) return self->finish("websocket handshake: " + e.message());
                       self->read_upgrade();
                     });
  }

  void read_upgrade() {
    const auto had = upgrade_.size();
    upgrade_.resize(had + 2048);
    sock_.async_read_some(
        net::buffer(upgrade_.data() + had, 2048),
        [self = shared_from_this(), had](boost::system::error_code e, std::size_t n) {
          self->upgrade_.resize(had + n);
          self->on_upgrade_read(e);
        });
  }

  void on_upgrade_read(boost::system::error_code ec) {
    if (done_) return;
    if (ec) return finish("websocket handshake: " + ec.message());
    const auto end = upgrade_.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (upgrade_.size() > kMaxUpgradeResponse) return finish("websocket handshake: too long");
      return read_upgrade();
    }
    const std::string_view head(upgrade_.data(), end + 2);
    if (head.rfind("HTTP/1.1 101", 0) != 0)
      return finish("websocket handshake: " + std::string(head.substr(0, head.find('\r'))));
    if (header_value(head, "sec-websocket-accept") != expected_accept())
      return finish("websocket handshake: wrong Sec-WebSocket-Accept");
    if (ep_.deflate &&
        header_value(head, "sec-websocket-extensions").rfind("permessage-deflate", 0) == 0)
      reader_.set_deflate(true);
    boost::system::error_code e;
    timer_.cancel();
    sock_.non_blocking(true, e);
    if (e) return finish("socket: " + e.message());
    open_ = true;
    // Frames that came with the answer.
    std::string rest = upgrade_.substr(end + 4);
    std::string().swap(upgrade_);
    if (!rest.empty() && !feed(rest.data(), rest.size())) return;
    if (!out_.empty() && !writing_) flush();
    wait_read();
  }

  void wait_read() {
    sock_.async_wait(
        tcp::socket::wait_read,
        [self = shared_from_this()](boost::system::error_code e) { self->on_readable(e); });
  }

  // Read what the socket holds, at most kReadsPerTurn buffers before the
  // thread's other connections get a turn. A read that did not fill the
  // buffer emptied the socket: wait again without a read that would only
  // say so. (The reactor reports edges; one arriving after that read is
  // harvested after this handler has queued its wait, since the io_context
  // runs on this thread alone.)
  void on_readable(boost::system::error_code ec) {
    if (done_) return;
    if (ec) return finish(closing_ ? "" : "read: " + ec.message());
    auto& buf = read_buffer();
    for (int i = 0; i < kReadsPerTurn; ++i) {
      boost::system::error_code e;
      const auto n = sock_.read_some(net::buffer(buf), e);
      if (e == net::error::would_block || e == net::error::try_again) return wait_read();
      if (e) {
        const bool eof = e == net::error::eof || e == net::error::connection_reset;
        return finish(closing_ && eof ? "" : "read: " + e.message());
      }
      if (!feed(buf.data(), n)) return;
      if (n < buf.size()) return wait_read();
    }
    net::post(sock_.get_executor(), [self = shared_from_this()] { self->on_readable({}); });
  }

  // False when the connection is finished.
  bool feed(char* data, std::size_t n) {
    const bool ok = reader_.feed(data, n, [this](const ws::Event& e) {
      switch (e.op) {
        case ws::Opcode::text:
          counters_.bytes_in += e.payload.size();
          handle(e.payload);
          break;
        case ws::Opcode::ping:
          ws::append_client_frame(out_, ws::Opcode::pong, e.payload, mask_);
          if (!writing_) flush();
          break;
        case ws::Opcode::close:
          finish(closing_ ? "" : "websocket closed by the server");
          break;
        default:  // binary, pong: not used by the chat
          break;
      }
      return !done_;
    });
    if (!ok && !done_) finish(std::string("websocket: ") + reader_.error().what);
    return !done_;
  }

  // One Engine.IO packet per WebSocket message.
  void handle(std::string_view p) {
    if (p.empty()) return;
    switch (p[0]) {
      case '0':  // open: join the main namespace
        send("40");
        return;
      case '2':  // ping
        send("3");
        return;
      case '4':
        if (p.size() >= 2 && p[1] == '0' && !sio_open_) {
          sio_open_ = true;
          host_.on_open(*this);
          return;
        }
        host_.on_packet(*this, p.substr(1));
        return;
      case '1':  // server closed the Engine.IO session
        return finish("engine.io close");
      default:  // noop, pong, upgrade: nothing to do
        return;
    }
  }

  void flush() {
    writing_ = true;
    wbuf_.swap(out_);
    out_.clear();
    net::async_write(sock_, net::buffer(wbuf_),
                     [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                       self->on_write(ec);
                     });
  }

  void on_write(boost::system::error_code ec) {
    writing_ = false;
    if (done_) return;
    if (ec) return finish(closing_ ? "" : "write: " + ec.message());
    if (!out_.empty()) flush();
  }

  void abort_with(const std::string& what) {
    abort();
    host_.on_closed(*this, what);
  }

  void finish(const std::string& what) {
    if (done_) return;
    abort_with(what);
  }

  tcp::socket sock_;
  net::steady_timer timer_;  // connect and upgrade deadline
  ws::Reader reader_{kMaxMessage, ws::From::server};
  std::string upgrade_;  // the server's answer to the upgrade while it comes in
  std::string out_;      // frames queued while a write is in flight
  std::string wbuf_;     // the write in flight
  ConnectionHost& host_;
  Counters& counters_;
  Endpoint ep_;
  unsigned char mask_[4] = {0x5a, 0x17, 0xc3, 0x8e};
  bool open_ = false;      // WebSocket upgrade done
  bool sio_open_ = false;  // Socket.IO CONNECT answered
  bool writing_ = false;
  bool closing_ = false;  // we asked to close
  bool done_ = false;     // on_closed was called or abort() ran
};

}  // namespace

std::shared_ptr<Connection> Connection::create(net::io_context& ioc, ConnectionHost& host,
                                               Counters& counters, Endpoint endpoint) {
  return std::make_shared<WsConnection>(ioc, host, counters, std::move(endpoint));
}

}  // namespace loadgen
