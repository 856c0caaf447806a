// Listener; see listener.hpp.
#include "transport/listener.hpp"

#include "transport/http_connection.hpp"
#include "transport/server_impl.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

namespace chat::transport {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Listener::Listener(ServerImpl& server, bool admin)
    : server_(server),
      admin_(admin),
      acceptor_(server.workers().at(0)),
      backoff_(server.workers().at(0)) {}

std::uint16_t Listener::open(const std::string& host, std::uint16_t port) {
  // An IP literal, or a host name such as "localhost" (first address wins).
  boost::system::error_code parse_error;
  auto address = asio::ip::make_address(host, parse_error);
  if (parse_error) {
    tcp::resolver resolver(acceptor_.get_executor());
    const auto results = resolver.resolve(host, std::to_string(port));  // throws on failure
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint ep(address, port);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  const auto bound = acceptor_.local_endpoint().port();
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] { self->accept(); });
  return bound;
}

void Listener::close() {
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    boost::system::error_code ec;
    self->acceptor_.close(ec);
    self->backoff_.cancel();
  });
}

void Listener::accept() {
  if (!acceptor_.is_open()) return;
  const unsigned worker = server_.workers().next_index();
  acceptor_.async_accept(
      server_.workers().at(worker),
      [self = shared_from_this(), worker](const boost::system::error_code& ec, tcp::socket socket) {
        self->on_accept(ec, std::move(socket), worker);
      });
}

void Listener::on_accept(const boost::system::error_code& ec, tcp::socket socket, unsigned worker) {
  if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
  if (ec) {
    WorkerStats::add(server_.worker_stats(0).accept_errors_total, 1);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_error_log_ > std::chrono::seconds(1)) {
      last_error_log_ = now;
      spdlog::warn("accept failed: {} (backing off)", ec.message());
    }
    // Out of descriptors (or another transient failure): wait, then retry.
    backoff_.expires_after(std::chrono::milliseconds(100));
    backoff_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
      if (!e) self->accept();
    });
    return;
  }
  // Sessions are bounded at the handshake (an HTTP answer); here only the
  // connections of one peer are, so health checks are never refused for the
  // session cap. Trusted proxies carry many clients and are not bounded.
  std::string slot;
  boost::system::error_code ep_error;
  const auto peer = socket.remote_endpoint(ep_error);
  if (!admin_ && !ep_error && !server_.trusted_proxies().contains(peer.address())) {
    slot = unmap(peer.address()).to_string();
    if (!server_.acquire_http_slot(slot)) {
      WorkerStats::add(server_.worker_stats(0).connections_refused_total, 1);
      boost::system::error_code ignored;
      socket.close(ignored);
      return accept();
    }
  }
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  asio::post(server_.workers().at(worker), [this, worker, s = std::move(socket),
                                            slot = std::move(slot)]() mutable {
    std::make_shared<HttpConnection>(server_, worker, std::move(s), std::move(slot), admin_)->run();
  });
  accept();
}

}  // namespace chat::transport
