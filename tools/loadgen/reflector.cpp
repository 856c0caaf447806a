// chat-reflector: the least a chat server can do, to measure the load
// generator alone.
//
//   chat-reflector --port 3990 [--tick-us 1000]
//
// It speaks just enough Engine.IO v4 / Socket.IO v5 over WebSocket for
// chat-loadgen (either target): the open packet, CONNECT, "add user" (a
// "login" event), "join room" (an ok ack), and every "new message" sent
// to every other connection as {"username","message"}. Frames queued for a
// connection go out together once per tick, so the reflector spends little
// per delivery and the load generator, not the server, is what a run
// measures. One thread; no rooms, no limits, nothing kept. Not a server
// for users.
#include "http_head.hpp"
#include "protocol/websocket.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <sys/resource.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>

namespace {

namespace net = boost::asio;
namespace ws = chat::protocol::ws;
using tcp = net::ip::tcp;

constexpr std::size_t kMaxQueued = 64u << 20;  // per connection, then it is dropped

class Reflector;

class Peer : public std::enable_shared_from_this<Peer> {
 public:
  Peer(tcp::socket s, Reflector& r, std::uint64_t n) : sock_(std::move(s)), r_(r), n_(n) {}
  void start() { read_head(); }
  void queue(std::string_view frame_bytes);
  void flush();  // start a write of what is queued, unless one is in flight
  void close();

 private:
  void read_head();
  void on_head();
  void read_frames();
  void on_text(std::string_view p);
  void send_text(std::string_view text) { queue(ws::frame(ws::Opcode::text, text)); }

  tcp::socket sock_;
  Reflector& r_;
  std::uint64_t n_;
  std::string head_;
  std::array<char, 64 * 1024> buf_{};
  ws::Reader reader_{1 << 20};
  std::string out_, wbuf_;
  bool writing_ = false, open_ = false, closed_ = false;
};

class Reflector {
 public:
  Reflector(net::io_context& ioc, std::uint16_t port, std::chrono::microseconds tick)
      : ioc_(ioc), acceptor_(ioc, tcp::endpoint(tcp::v4(), port)), timer_(ioc), tick_(tick) {}

  void start() {
    accept();
    arm();
  }
  void add(const std::shared_ptr<Peer>& p) { peers_.insert(p); }
  void remove(const std::shared_ptr<Peer>& p) { peers_.erase(p); }
  // Every connection but the sender gets the frame at the next tick.
  void broadcast(const Peer* from, std::string_view message_json) {
    const std::string text =
        fmt::format(R"(42["new message",{{"username":"u","message":{}}}])", message_json);
    const std::string frame = ws::frame(ws::Opcode::text, text);
    for (const auto& p : peers_) {
      if (p.get() == from) continue;
      p->queue(frame);
      ++deliveries_;
    }
    ++messages_;
  }
  std::uint64_t messages() const { return messages_; }
  std::uint64_t deliveries() const { return deliveries_; }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (!ec) {
        s.set_option(tcp::no_delay(true), ec);
        std::make_shared<Peer>(std::move(s), *this, ++accepted_)->start();
      }
      accept();
    });
  }
  void arm() {
    timer_.expires_after(tick_);
    timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      for (const auto& p : peers_) p->flush();
      arm();
    });
  }

  net::io_context& ioc_;
  tcp::acceptor acceptor_;
  net::steady_timer timer_;
  std::chrono::microseconds tick_;
  std::unordered_set<std::shared_ptr<Peer>> peers_;
  std::uint64_t accepted_ = 0, messages_ = 0, deliveries_ = 0;
};

void Peer::read_head() {
  const auto had = head_.size();
  head_.resize(had + 2048);
  sock_.async_read_some(
      net::buffer(head_.data() + had, 2048),
      [self = shared_from_this(), had](boost::system::error_code ec, std::size_t n) {
        self->head_.resize(had + n);
        if (ec) return self->close();
        self->on_head();
      });
}

void Peer::on_head() {
  const auto end = head_.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (head_.size() > 8192) return close();
    return read_head();
  }
  const auto key =
      loadgen::header_value(std::string_view(head_).substr(0, end + 2), "sec-websocket-key");
  if (!ws::valid_client_key(key)) return close();
  out_ =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      ws::accept_key(key) + "\r\n\r\n";
  std::string().swap(head_);
  open_ = true;
  r_.add(shared_from_this());
  send_text(fmt::format(R"(0{{"sid":"r{}","upgrades":[],"pingInterval":600000,)"
                        R"("pingTimeout":600000,"maxPayload":1000000}})",
                        n_));
  flush();
  read_frames();
}

void Peer::read_frames() {
  sock_.async_read_some(
      net::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
        if (ec) return self->close();
        const bool ok = self->reader_.feed(self->buf_.data(), n, [&](const ws::Event& e) {
          if (e.op == ws::Opcode::text) self->on_text(e.payload);
          if (e.op == ws::Opcode::close) {
            self->queue(ws::close_frame(ws::kCloseNormal));
            self->flush();
            return false;
          }
          return !self->closed_;
        });
        if (!ok) return self->close();
        if (!self->closed_) self->read_frames();
      });
}

void Peer::on_text(std::string_view p) {
  if (p == "40") return send_text(fmt::format(R"(40{{"sid":"s{}"}})", n_));
  if (p.rfind("42[\"add user\"", 0) == 0) return send_text(R"(42["login",{"numUsers":1}])");
  if (p.rfind("421[\"join room\"", 0) == 0) return send_text(R"(431[{"ok":true}])");
  constexpr std::string_view kMessage = "42[\"new message\",";
  if (p.rfind(kMessage, 0) != 0 || p.back() != ']') return;
  auto arg = p.substr(kMessage.size(), p.size() - kMessage.size() - 1);
  if (!arg.empty() && arg.front() == '{') {  // {"room":...,"message":"..."}
    const auto at = arg.find("\"message\":");
    if (at == std::string_view::npos) return;
    arg = arg.substr(at + 10);
    const auto q = arg.find('"', 1);  // the load generator's text has no escapes
    if (q == std::string_view::npos) return;
    arg = arg.substr(0, q + 1);
  }
  r_.broadcast(this, arg);
}

void Peer::queue(std::string_view frame_bytes) {
  if (closed_) return;
  if (out_.size() + frame_bytes.size() > kMaxQueued) return close();
  out_.append(frame_bytes);
}

void Peer::flush() {
  if (writing_ || out_.empty() || closed_) return;
  writing_ = true;
  wbuf_.swap(out_);
  out_.clear();
  net::async_write(sock_, net::buffer(wbuf_),
                   [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                     self->writing_ = false;
                     if (ec) self->close();
                   });
}

void Peer::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  sock_.close(ec);
  if (open_) r_.remove(shared_from_this());
}

}  // namespace

int main(int argc, char** argv) {
  std::uint16_t port = 3990;
  unsigned tick_us = 1000;
  CLI::App app{"chat-reflector: a minimal broadcast server to measure chat-loadgen alone"};
  app.add_option("--port", port, "TCP port")->envname("REFLECTOR_PORT");
  app.add_option("--tick-us", tick_us, "Microseconds between flushes of queued frames")
      ->envname("REFLECTOR_TICK_US")
      ->check(CLI::Range(50U, 1000000U));
  CLI11_PARSE(app, argc, argv);

  net::io_context ioc(1);
  Reflector r(ioc, port, std::chrono::microseconds(tick_us));
  r.start();
  net::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) { ioc.stop(); });
  fmt::print(stderr, "chat-reflector: listening on {}\n", port);
  ioc.run();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  fmt::print("chat-reflector: {} messages, {} deliveries, CPU {:.2f} s user {:.2f} s sys\n",
             r.messages(), r.deliveries(),
             static_cast<double>(ru.ru_utime.tv_sec) + ru.ru_utime.tv_usec / 1e6,
             static_cast<double>(ru.ru_stime.tv_sec) + ru.ru_stime.tv_usec / 1e6);
  return 0;
}
