// Listener: accepts TCP connections and spreads them over the workers.
// On EMFILE/ENFILE (out of file descriptors) it counts the error and waits
// before accepting again, instead of spinning or dying.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace chat::transport {

class ServerImpl;

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // admin: the operations listener (plain HTTP to the admin handler, no
  // Engine.IO, no per-IP bound).
  Listener(ServerImpl& server, bool admin);
  // Bind, listen and start accepting; returns the bound port. Throws on failure.
  std::uint16_t open(const std::string& host, std::uint16_t port);
  void close();

 private:
  void accept();
  void on_accept(const boost::system::error_code& ec, boost::asio::ip::tcp::socket socket,
                 unsigned worker);

  ServerImpl& server_;
  bool admin_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer backoff_;
  std::chrono::steady_clock::time_point last_error_log_{};
};

}  // namespace chat::transport
