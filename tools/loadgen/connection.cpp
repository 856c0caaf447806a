// Connection over Boost.Beast: TCP connect from a chosen source address,
// WebSocket handshake at /socket.io/?EIO=4&transport=websocket, read loop.
#include "connection.hpp"

#include "connection_host.hpp"
#include "counters.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/asio/io_context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <chrono>
#include <deque>

namespace loadgen {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

namespace {

class WsConnection final : public Connection, public std::enable_shared_from_this<WsConnection> {
 public:
  WsConnection(net::io_context& ioc, ConnectionHost& host, Counters& counters, Endpoint ep)
      : ws_(ioc), host_(host), counters_(counters), ep_(std::move(ep)) {}

  void start() override {
    boost::system::error_code ec;
    const auto server = net::ip::make_address_v4(ep_.host, ec);
    if (ec) return finish("bad server address");
    const auto source = net::ip::make_address_v4(ep_.source, ec);
    if (ec) return finish("bad source address");
    auto& sock = beast::get_lowest_layer(ws_).socket();
    sock.open(tcp::v4(), ec);
    if (ec) return finish("socket: " + ec.message());
    // Let connect() pick the port so one source address serves many server
    // ports (the 4-tuple, not the local port, must be unique).
    int one = 1;
    ::setsockopt(sock.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sock.set_option(tcp::no_delay(true), ec);
    sock.bind(tcp::endpoint(source, 0), ec);
    if (ec) return finish("bind: " + ec.message());
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(15));
    beast::get_lowest_layer(ws_).async_connect(
        tcp::endpoint(server, ep_.port),
        [self = shared_from_this()](boost::system::error_code e) { self->on_connect(e); });
  }

  void send(std::string packet) override {
    if (done_ || closing_) return;
    counters_.bytes_out += packet.size();
    queue_.push_back(std::move(packet));
    if (!writing_ && open_) write_next();
  }

  void close() override {
    if (done_ || closing_) return;
    closing_ = true;
    if (!open_) return abort_with("");
    ws_.async_close(websocket::close_code::normal,
                    [self = shared_from_this()](boost::system::error_code) {
                      // The read loop sees the close and reports it.
                    });
  }

  void abort() override {
    done_ = true;
    boost::system::error_code ec;
    beast::get_lowest_layer(ws_).socket().close(ec);
  }

 private:
  void on_connect(boost::system::error_code ec) {
    if (ec) return finish("connect: " + ec.message());
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    ws_.read_message_max(1 << 20);
    ws_.auto_fragment(false);
    ws_.async_handshake(
        ep_.host + ":" + std::to_string(ep_.port), "/socket.io/?EIO=4&transport=websocket",
        [self = shared_from_this()](boost::system::error_code e) { self->on_handshake(e); });
  }

  void on_handshake(boost::system::error_code ec) {
    if (ec) return finish("websocket handshake: " + ec.message());
    open_ = true;
    ws_.text(true);
    read_next();
    if (!queue_.empty()) write_next();
  }

  void read_next() {
    ws_.async_read(buffer_, [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(boost::system::error_code ec) {
    if (ec) {
      if (closing_ && (ec == websocket::error::closed || ec == net::error::operation_aborted ||
                       ec == net::error::eof))
        return finish("");
      return finish(closing_ ? "" : "read: " + ec.message());
    }
    const auto data = buffer_.cdata();
    const std::string_view text(static_cast<const char*>(data.data()), data.size());
    counters_.bytes_in += text.size();
    handle(text);
    buffer_.consume(buffer_.size());
    if (!done_) read_next();
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

  void write_next() {
    writing_ = true;
    ws_.async_write(net::buffer(queue_.front()),
                    [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                      self->on_write(ec);
                    });
  }

  void on_write(boost::system::error_code ec) {
    writing_ = false;
    if (ec) return finish(closing_ ? "" : "write: " + ec.message());
    queue_.pop_front();
    if (!queue_.empty() && !done_) write_next();
  }

  void abort_with(const std::string& what) {
    abort();
    host_.on_closed(*this, what);
  }

  void finish(const std::string& what) {
    if (done_) return;
    abort_with(what);
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  std::deque<std::string> queue_;
  ConnectionHost& host_;
  Counters& counters_;
  Endpoint ep_;
  bool open_ = false;      // WebSocket handshake done
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
